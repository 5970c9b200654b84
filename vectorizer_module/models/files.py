"""Reading a model directory's small files, shared by the loader and the families (which import it,
never the loader)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vectorizer_module.errors import ModelLayoutError


def read_json(path: Path) -> Any:
    """A JSON file of a model directory; ModelLayoutError naming it when it cannot be read."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLayoutError(f"cannot read {path}: {exc}") from None
