"""Helpers shared by the tests (and only by them)."""

from __future__ import annotations

import importlib.util
import json
import random
import threading
from pathlib import Path
from types import ModuleType

import requests

from vectorizer_module.config import Settings
from vectorizer_module.engine import Engine
from vectorizer_module.models.loading import detect

REPO = Path(__file__).resolve().parents[1]


def download_script() -> ModuleType:
    """docker/download_model.py, the image's model download step, as a module (it is not a package's)."""
    spec = importlib.util.spec_from_file_location("download_model", REPO / "docker" / "download_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# the build arguments docker/download_model.py reads: the image's own and the reference image's
BUILD_ARGUMENTS = (
    "MODEL_ID",
    "CLIP_MODEL_NAME",
    "TEXT_MODEL_NAME",
    "CLIP_MODEL_TYPE",
    "TRUST_REMOTE_CODE",
    "SIGLIP_MODEL_NAME",
    "OPEN_CLIP_MODEL_NAME",
    "OPEN_CLIP_PRETRAINED",
    "COLPALI_ENGINE_MODEL_NAME",
)


def build_arguments(monkeypatch, **values: str) -> None:
    """The model stage's environment for a test: exactly these build arguments set, the others unset."""
    for key in BUILD_ARGUMENTS:
        monkeypatch.delenv(key, raising=False)
    for key, value in values.items():
        monkeypatch.setenv(key, value)


def make_engine(model: Path | str, **overrides) -> Engine:
    """A loaded engine over ``model``, with ``Settings`` fields overridden by keyword."""
    overrides.setdefault("dtype", "float32")  # as every test service (conftest.py); auto: test_precision.py
    overrides.setdefault("backend", "torch")  # auto would run float32 in ONNX Runtime (precision.py)
    settings = Settings(model=str(model), **overrides)
    engine = Engine(settings, detect(model, clip_tokenizer=settings.clip_tokenizer))
    engine.load()
    return engine


def log_lines(server) -> list[dict]:
    """The JSON lines of a ``ServerProcess``'s log (other lines skipped)."""
    lines = []
    for line in server.log.splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            continue
    return lines


def vectors_by_input(server, texts: list[str], images: list[str], clients: int = 8, each: int = 6) -> dict:
    """Send ``clients`` x ``each`` requests at once, each a random subset of ``texts`` and ``images`` (base64)
    in random order, every one on a new connection so that every worker gets some. Returns each input's
    set of distinct vectors (as tuples): one vector per input when results do not depend on the batch."""
    seen: dict[str, set[tuple]] = {}
    lock = threading.Lock()
    failures: list[str] = []

    def client(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(each):
            chosen_texts = rng.sample(texts, rng.randint(1, len(texts)))
            chosen_images = rng.sample(images, rng.randint(0, len(images)))
            response = requests.post(
                server.url + "/vectorize", json={"texts": chosen_texts, "images": chosen_images}, timeout=120
            )
            if response.status_code != 200:
                failures.append(response.text[:300])
                continue
            body = response.json()
            with lock:
                for text, vector in zip(chosen_texts, body["textVectors"]):
                    seen.setdefault(text, set()).add(tuple(vector))
                for image, vector in zip(chosen_images, body["imageVectors"]):
                    seen.setdefault(f"image {images.index(image)}", set()).add(tuple(vector))

    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert not failures, failures
    return seen


class OnnxRun:
    """A model directory's towers run by the ONNX backend (exported into ``cache``): the vectors of texts or
    images as the service computes them, through the towers' preprocessing and the backend's embed."""

    def __init__(self, source, cache: Path) -> None:
        from vectorizer_module.backends.onnx_backend import OnnxBackend, weights_of
        from vectorizer_module.models.loading import load_towers

        self.towers = load_towers(source)
        self.backend = OnnxBackend.load(self.towers, weights_of(source), cache, threads=1)

    def texts(self, texts):
        return self.backend.embed("text", self.towers.query.preprocess(list(texts)))

    def images(self, images):
        return self.backend.embed("image", self.towers.items.preprocess(list(images)))
