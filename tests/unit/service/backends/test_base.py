"""The backend interface: a backend is health, largest batch and embed; the batcher drives any of them."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from vectorizer_module.admission import QueueBudget
from vectorizer_module.backends.base import Backend
from vectorizer_module.backends.torch_backend import TorchBackend
from vectorizer_module.batching import Batcher
from vectorizer_module.engine import Engine
from vectorizer_module.metrics import Metrics
from vectorizer_module.models.loading import detect, load_towers


class Recording(Backend):
    """A backend of a few lines: each row is its number of attention-masked tokens, repeated."""

    name = "recording"

    @classmethod
    def create(cls, towers, source, settings, dtype):
        return cls(None)

    def __init__(self, max_batch: int | None) -> None:
        self.max_batch = max_batch
        self.batches: list[int] = []

    def embed(self, modality, batch):
        self.batches.append(len(batch["input_ids"]))
        tokens = batch["attention_mask"].sum(dim=1).numpy().astype(np.float32)
        return np.repeat(tokens[:, None], 4, axis=1)


@pytest.fixture()
def towers(tiny_model):
    return load_towers(detect(tiny_model))


@pytest.mark.parametrize("backend_limit, expected_largest", [(3, 3), (None, 8)])
def test_the_batcher_drives_any_backend_within_its_largest_batch(towers, backend_limit, expected_largest):
    backend = Recording(backend_limit)
    budget = QueueBudget(64)
    batcher = Batcher(
        towers, backend, max_batch=8, max_wait=0, per_request=False, fixed_shape=True, budget=budget, metrics=Metrics()
    )
    try:
        texts = [f"text number {i}" for i in range(10)]
        rows = batcher.submit(texts, [], time.monotonic() + 30)[0].result()
    finally:
        batcher.stop()
    assert max(backend.batches) == expected_largest  # fixed shapes: every pass is padded to the largest batch
    want = towers.query.preprocess(texts)["attention_mask"].sum(dim=1).numpy()
    assert np.array_equal(rows[:, 0], want)  # each request's rows came back to it, in order


def test_health_passes_a_sound_model_and_names_a_model_that_overflows(towers):
    backend = TorchBackend(towers, torch.device("cpu"), torch.float32)
    examples = Engine._examples(towers)
    backend.health(examples)
    rows = backend.embed("text", examples["text"])
    assert rows.shape == (2, towers.info.dimension) and rows.dtype == np.float32
    with torch.no_grad():
        next(p for n, p in towers.query.named_parameters() if "projection" in n).fill_(float("inf"))
    with pytest.raises(RuntimeError, match="non-finite text embeddings.*VECTORIZER_DTYPE=float32"):
        backend.health(examples)
    backend.health({"image": examples["image"]})  # the other tower is sound


def test_a_backend_that_fails_stops_the_health_check_with_its_reason(towers):
    class Broken(Recording):
        def embed(self, modality, batch):
            raise RuntimeError("CUDA error: an illegal memory access was encountered")

    with pytest.raises(RuntimeError, match="recording backend fails on a text batch: CUDA error"):
        Broken(None).health({"text": towers.query.preprocess(["x"])})
