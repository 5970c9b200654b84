"""The CUDA path (ENABLE_CUDA, CUDA_CORE, half precision). Skipped where torch sees no GPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests import media
from tests.helpers import log_lines, vectors_by_input
from tests.reference import ReferenceClip, assert_parity, cosine, strict_json, unit
from tests.server_process import ServerProcess

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

TEXTS = ["a photo of a cat", "a red circle on the left", " ".join(["long"] * 300)]


@pytest.fixture(scope="module")
def vit_model(tmp_path_factory):
    from clip_training.random_models.clip import save_random_model

    return save_random_model(tmp_path_factory.mktemp("cuda") / "vit", "vit-b-32", "huggingface", seed=7)


@pytest.mark.parametrize("dtype,min_cosine", [("float32", 0.99999), ("auto", 0.999), ("bfloat16", 0.99)])
def test_cuda_vectors_match_the_cpu_reference(vit_model, dtype, min_cosine):
    pictures = [media.photo(640, 480, seed=s) for s in (1, 2)]
    server = ServerProcess(vit_model, "--dtype", dtype, env={"ENABLE_CUDA": "true", "CUDA_CORE": "cuda:0"})
    server.start()
    try:
        server.wait_ready(300)
        meta = strict_json(server.get("/meta").text)["clip-vectorizer"]
        assert meta["device"] == "cuda:0"
        assert meta["dtype"] == ("float16" if dtype == "auto" else dtype)
        body = server.post(
            "/vectorize", {"texts": TEXTS, "images": [media.b64(media.encode(p, "PNG")) for p in pictures]}
        )
        assert body.status_code == 200, body.text
        vectors = strict_json(body.text)
        again = strict_json(server.post("/vectorize", {"texts": TEXTS[:1]}).text)
    finally:
        assert server.stop() == 0
    reference = ReferenceClip(vit_model)
    expected_texts, expected_images = unit(reference.texts(TEXTS)), unit(reference.images(pictures))
    if dtype == "float32":
        assert_parity(vectors["textVectors"], expected_texts, max_abs=1e-4)
        assert_parity(vectors["imageVectors"], expected_images, max_abs=1e-4)
    for ours, theirs in zip(
        vectors["textVectors"] + vectors["imageVectors"], list(expected_texts) + list(expected_images)
    ):
        assert cosine(ours, theirs) >= min_cosine
        assert abs(np.linalg.norm(ours) - 1) < 1e-5  # normalised in float32 even when computed in half
    assert again["textVectors"][0] == vectors["textVectors"][0]


def test_on_cuda_each_input_has_one_vector_whichever_worker_and_batch(vit_model):
    """ENABLE_CUDA turns fixed shapes on (auto): every forward pass at max-batch rows and 77 tokens, so a
    row's result depends on that row alone. Two workers, no cache, requests of mixed compositions."""
    server = ServerProcess(vit_model, "--workers", "2", "--cache-size", "0", env={"ENABLE_CUDA": "true"})
    server.start()
    try:
        server.wait_ready(300)
        assert strict_json(server.get("/meta").text)["clip-vectorizer"]["batching"]["fixed_shape"] is True
        texts = ["a photo of a cat", "x", "a red circle on the left", " ".join(["long"] * 30)]
        images = [media.b64(media.encode(media.photo(320, 240, seed=s), "JPEG", quality=90)) for s in range(3)]
        seen = vectors_by_input(server, texts, images, clients=16, each=8)
        assert {key: len(vectors) for key, vectors in seen.items()} == dict.fromkeys(seen, 1)
        serving = {e["pid"] for e in log_lines(server) if e.get("message") == "POST /vectorize 200"}
        assert len(serving) == 2
    finally:
        assert server.stop() == 0
