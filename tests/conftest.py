"""Shared fixtures: random-weight CLIP models built on the fly, and a real server process."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.server_process import ServerProcess

# The parity tests compare with float32 references: every service and engine the tests start computes in
# float32 unless a test asks for another dtype (VECTORIZER_DTYPE=auto picks bfloat16 on CPUs with native
# bfloat16; tests/unit/service/test_precision.py covers that choice and its bounds).
os.environ.setdefault("VECTORIZER_DTYPE", "float32")
# and in torch: VECTORIZER_BACKEND=auto runs float32 in ONNX Runtime, exporting each model first (the ONNX
# tests, and test_precision.py for the auto choice, ask for it)
os.environ.setdefault("VECTORIZER_BACKEND", "torch")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny random CLIP in the Hugging Face layout (transformers 5 files)."""
    from clip_training.random_models.clip import save_random_model

    return save_random_model(tmp_path_factory.mktemp("models") / "tiny", "tiny", "huggingface", seed=0)


@pytest.fixture(scope="session")
def vit_model(tmp_path_factory) -> Path:
    """The exact openai/clip-vit-base-patch32 architecture, random weights (~600 MB, ~15 s to build).
    Slow enough on a CPU to keep the model busy in shutdown and overload tests."""
    from clip_training.random_models.clip import save_random_model

    return save_random_model(tmp_path_factory.mktemp("models") / "vit-b-32", "vit-b-32", "huggingface", seed=3)


@pytest.fixture(scope="session")
def server(tiny_model) -> ServerProcess:
    """One real server process over the tiny model, shared by the contract tests."""
    process = ServerProcess(tiny_model)
    process.start()
    process.wait_ready()
    yield process
    process.stop()
