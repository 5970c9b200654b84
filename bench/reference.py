"""Weaviate's reference ``multi2vec-clip-inference`` server as a baseline for ``bench.bench --reference DIR``.

DIR is a checkout of https://github.com/weaviate/multi2vec-clip-inference (tag 1.5.0 measured here). Its
packages are installed apart, with ``pip --target`` into ``DIR/.bench-packages`` (once; again when its
requirements.txt changes), so the project's environment stays as it is: the versions its requirements.txt
pins and their dependencies as pip resolves them beside this environment's torch, which it uses (its own
pin, 2.6.0, is not the one installed here, and a second torch is gigabytes; torchvision is the release
built for this torch), and
colpali-engine, whose torch<2.9 pin cannot be met beside this torch: it is installed without its
dependencies, as only its import at the top of ``clip.py`` needs it. The model is served in the
reference image's ``models/openai_clip`` + ``models/openai_clip_processor`` layout (what its download.py
writes for ``openai/...`` names), split from the same Hugging Face CLIP directory the bench gives ours,
and the server is its ``uvicorn app:app``, one process, as the image's CMD starts it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from plugin_api.processes import free_ports

PACKAGES = ".bench-packages"
# from this environment: the torch installed here, and the CUDA libraries and compiler its wheel pulls
FROM_HERE = re.compile(r"^(torch|triton|nvidia-.*|cuda-.*)$")
INSTALLED_APART_WITHOUT_DEPENDENCIES = ("colpali-engine",)
# the files of a transformers CLIP directory that the reference's download.py saves with CLIPModel
MODEL_FILES = ("config.json", "model.safetensors", "pytorch_model.bin")


def _requirements(checkout: Path) -> list[str]:
    lines = (checkout / "requirements.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def _name(requirement: str) -> str:
    return re.split(r"[\[=<>!~ ;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def install(checkout: Path, python: str = sys.executable) -> Path:
    """The reference's packages in ``checkout/.bench-packages``, installed unless already there for this
    requirements.txt; the folder."""
    target = checkout / PACKAGES
    requirements = _requirements(checkout)
    stamp = hashlib.sha256("\n".join(requirements).encode()).hexdigest()
    if (target / ".requirements-sha256").is_file() and (target / ".requirements-sha256").read_text() == stamp:
        return target
    import torch

    apart = [r for r in requirements if _name(r) in INSTALLED_APART_WITHOUT_DEPENDENCIES]
    resolved = [r for r in requirements if _name(r) != "torch" and r not in apart]
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "report.json"
        pins = [f"torch=={torch.__version__.split('+')[0]}", *resolved]
        subprocess.run(
            [python, "-m", "pip", "install", "--quiet", "--dry-run", "--ignore-installed", "--report", str(report)]
            + pins,
            check=True,
        )
        chosen = [
            f"{item['metadata']['name']}=={item['metadata']['version']}"
            for item in json.loads(report.read_text())["install"]
            if not FROM_HERE.match(item["metadata"]["name"].lower())
        ]
    shutil.rmtree(target, ignore_errors=True)
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), *chosen, *apart],
        check=True,
    )
    (target / ".requirements-sha256").write_text(stamp)
    return target


def write_models(hf_clip: Path, folder: Path) -> Path:
    """``folder/models`` in the reference image's OpenAI-CLIP layout, from a transformers CLIP directory:
    the config and weights in ``openai_clip``, the tokenizer and image-processor files in
    ``openai_clip_processor``."""
    weights, processor = folder / "models" / "openai_clip", folder / "models" / "openai_clip_processor"
    weights.mkdir(parents=True)
    processor.mkdir(parents=True)
    for path in hf_clip.iterdir():
        if path.is_file():
            shutil.copy(path, (weights if path.name in MODEL_FILES else processor) / path.name)
    shutil.copy(hf_clip / "config.json", processor / "config.json")  # CLIPProcessor reads the model type there
    return folder / "models"


class ReferenceServer:
    """The reference's ``uvicorn app:app`` on a free loopback port, serving ``workdir/models``; the
    subset of ``tests.server_process.ServerProcess`` that the bench uses."""

    def __init__(self, checkout: Path, packages: Path, workdir: Path) -> None:
        self.checkout, self.packages, self.workdir = checkout, packages, workdir
        self.port = free_ports(1)[0]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_file = tempfile.NamedTemporaryFile(prefix="reference-", suffix=".log", delete=False)
        self.process: subprocess.Popen | None = None

    def start(self) -> ReferenceServer:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(self.packages), str(self.checkout)]))
        command = [sys.executable, "-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port", str(self.port)]
        self.process = subprocess.Popen(
            command, cwd=self.workdir, env=env, stdout=self.log_file, stderr=subprocess.STDOUT
        )
        return self

    @property
    def log(self) -> str:
        return Path(self.log_file.name).read_text(errors="replace")

    def worker_pids(self) -> set[int]:
        return set()  # one process

    def model_pids(self) -> set[int]:
        return set()

    def wait_ready(self, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the reference server exited ({self.process.returncode}):\n{self.log[-3000:]}")
            try:
                if requests.get(self.url + "/.well-known/ready", timeout=2).status_code == 204:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.25)
        raise RuntimeError(f"the reference server was not ready within {timeout:.0f} s:\n{self.log[-3000:]}")

    def stop(self, timeout: float = 30) -> int:
        self.process.terminate()
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()
