"""The folders of packages the parity tests run apart from the main environment (installed by
``scripts/install.sh``): open_clip 3.3.0 with torchvision (``.openclip-env``), and the reference image's
own transformers, huggingface_hub and open_clip (``.reference-env``, used with ``.openclip-env``'s
torchvision). The scripts run there are in ``tests/`` and never imported by the service."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OPENCLIP_ENV = Path(os.environ.get("CLIP_VECTORIZER_OPENCLIP_ENV", REPO / ".openclip-env"))
REFERENCE_ENV = Path(os.environ.get("CLIP_VECTORIZER_REFERENCE_ENV", REPO / ".reference-env"))


def run_apart(script: str, spec: dict, scratch: Path, *, reference: bool = False) -> None:
    """Run ``tests/SCRIPT SPEC.json`` with open_clip's folder (and, with ``reference``, the reference
    image's in front of it) on PYTHONPATH; skip the test if a folder is not installed."""
    folders = ([REFERENCE_ENV] if reference else []) + [OPENCLIP_ENV]
    needed = {REFERENCE_ENV: "transformers", OPENCLIP_ENV: "torchvision"}
    for folder in folders:
        if not (folder / needed[folder]).is_dir():
            pytest.skip(f"{folder} is not installed: run scripts/install.sh")
    spec_file = scratch / f"{Path(script).stem}-{len(list(scratch.glob('*.spec.json')))}.spec.json"
    spec_file.write_text(json.dumps(spec))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(map(str, folders)))
    done = subprocess.run(
        [sys.executable, str(REPO / "tests" / script), str(spec_file)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def build_with_open_clip(spec: dict, scratch: Path) -> Path:
    """Have open_clip write a random model and embed ``spec``'s inputs (see ``openclip_reference.py``)."""
    run_apart("openclip_reference.py", spec, scratch)
    return Path(spec["target"])


def build_with_colpali_engine(scratch: Path, repo: str, texts: list[str], images: list[str]) -> dict:
    """Have colpali-engine (in ``.reference-env``) build a tiny ModernVBERT in the reference image's ColPali
    layout under ``scratch`` (``models/`` and the encoders' ``hf-cache/``) and embed ``texts`` and the image
    files as its clip.py does (see ``reference_colpali.py``); its vectors. Skips where it is not installed."""
    if not (REFERENCE_ENV / "colpali_engine").is_dir():
        pytest.skip(f"colpali-engine is not installed in {REFERENCE_ENV}: run scripts/install.sh")
    out = scratch / "reference-vectors.json"
    spec = {"target": str(scratch), "repo": repo, "texts": texts, "images": images, "out": str(out)}
    run_apart("reference_colpali.py", spec, scratch, reference=True)
    return json.loads(out.read_text())
