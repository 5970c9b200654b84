"""The isolated open_clip environment of the OpenCLIP parity tests (installed by ``scripts/install.sh``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OPENCLIP_ENV = Path(os.environ.get("CLIP_VECTORIZER_OPENCLIP_ENV", REPO / ".openclip-env"))
SCRIPT = REPO / "tests" / "openclip_reference.py"


def build_with_open_clip(spec: dict, scratch: Path) -> Path:
    """Have open_clip write a random model and embed ``spec``'s inputs (see ``openclip_reference.py``)."""
    if not (OPENCLIP_ENV / "open_clip").is_dir():
        pytest.skip(f"open_clip is not installed in {OPENCLIP_ENV}: run scripts/install.sh")
    spec_file = scratch / f"{Path(spec['target']).name}.json"
    spec_file.write_text(json.dumps(spec))
    env = dict(os.environ, PYTHONPATH=str(OPENCLIP_ENV))
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(spec_file)], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return Path(spec["target"])
