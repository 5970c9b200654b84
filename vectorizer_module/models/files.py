"""Reading a model directory's small files, telling whether it holds CLIP's tokenizer files, and finding
the snapshots of a Hugging Face hub cache in it; shared by the loader and the families (which import
this, never the loader)."""

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


# transformers' CLIP tokenizer files: any one group, whole
TOKENIZER_FILES = (("tokenizer.json",), ("vocab.json", "merges.txt"))


def has_tokenizer_files(folder: Path) -> bool:
    """Whether ``folder`` holds transformers' files of a CLIP tokenizer (``TOKENIZER_FILES``)."""
    return any(all((folder / name).is_file() for name in group) for group in TOKENIZER_FILES)


def _snapshot(repo_folder: Path) -> Path | None:
    ref = repo_folder / "refs" / "main"
    if ref.is_file():
        snapshot = repo_folder / "snapshots" / ref.read_text().strip()
        return snapshot if snapshot.is_dir() else None
    snapshots = sorted(p for p in (repo_folder / "snapshots").glob("*") if p.is_dir())
    return snapshots[0] if len(snapshots) == 1 else None


def hub_snapshot(cache: Path, repo_id: str) -> Path | None:
    """The snapshot of ``repo_id`` in a Hugging Face hub cache folder (``models--ORG--NAME/snapshots/REV``,
    the revision ``refs/main`` names, else the only one), or None."""
    return _snapshot(cache / ("models--" + repo_id.replace("/", "--")))


def hub_snapshots(cache: Path) -> dict[str, Path]:
    """Repository id → snapshot, for each model repository in a hub cache folder that has one."""
    found = {}
    for folder in sorted(cache.glob("models--*")):
        snapshot = _snapshot(folder)
        if snapshot is not None:
            found[folder.name.removeprefix("models--").replace("--", "/")] = snapshot
    return found
