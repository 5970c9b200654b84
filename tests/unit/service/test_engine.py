import time

import numpy as np
import pytest

from tests import media
from tests.helpers import make_engine
from tests.reference import ReferenceClip, assert_parity, unit
from vectorizer_module.config import Settings
from vectorizer_module.engine import Engine
from vectorizer_module.errors import BadInput, Unavailable
from vectorizer_module.models.loading import detect


@pytest.fixture(scope="module")
def engine(tiny_model):
    return make_engine(tiny_model)


def jpeg(seed: int) -> bytes:
    return media.encode(media.photo(seed=seed), "JPEG", quality=92)


def test_not_ready_before_load(tiny_model):
    engine = Engine(Settings(model=str(tiny_model)), detect(tiny_model))
    with pytest.raises(Unavailable):
        engine.embed(["a"], [])


def test_vectors_are_normalised_unless_turned_off(tiny_model, engine):
    raw = make_engine(tiny_model, normalize=False)
    texts = ["a cat", "a dog on a sofa"]
    reference = ReferenceClip(tiny_model).texts(texts)
    unnormalised, _ = raw.embed(texts, [])
    normalised, _ = engine.embed(texts, [])
    assert_parity(unnormalised, reference)
    assert_parity(normalised, unit(reference))
    assert np.allclose(np.linalg.norm(normalised, axis=1), 1.0, atol=1e-6)
    assert not np.allclose(np.linalg.norm(unnormalised, axis=1), 1.0, atol=1e-3)


def test_repeats_are_computed_once_and_identical(tiny_model):
    engine = make_engine(tiny_model, cache_size=0)
    calls = []
    submit = engine.batcher.submit
    engine.batcher.submit = lambda texts, images, *rest: (
        calls.append((len(texts), len(images))) or submit(texts, images, *rest)
    )
    texts, images = engine.embed(["a", "b", "a"], [jpeg(1), jpeg(2), jpeg(1)])
    assert calls == [(2, 2)]
    assert np.array_equal(texts[0], texts[2]) and np.array_equal(images[0], images[2])


def test_cache_keeps_repeats_bit_identical_across_batch_compositions(tiny_model):
    engine = make_engine(tiny_model, cache_size=8)
    alone, _ = engine.embed(["query"], [])
    crowded, _ = engine.embed(["x", "y", "query", "z"], [])
    assert np.array_equal(crowded[2], alone[0])
    assert len(engine.cache) == 4


def test_cache_is_bounded(tiny_model):
    engine = make_engine(tiny_model, cache_size=3)
    engine.embed([f"text {i}" for i in range(10)], [])
    assert len(engine.cache) == 3


def test_a_bad_image_fails_before_any_model_work(tiny_model):
    engine = make_engine(tiny_model, cache_size=0)
    calls = []
    for tower in (engine.towers.query, engine.towers.items):
        forward = tower.forward
        tower.forward = lambda *inputs, forward=forward: calls.append(len(inputs)) or forward(*inputs)
    with pytest.raises(BadInput, match=r"images\[1\]"):
        engine.embed(["text"], [jpeg(1), b"not an image"])
    time.sleep(0.2)  # a lane that had been given an item would have run it by now
    assert calls == [] and engine.batcher.depth == 0
    assert engine.budget.waiting == 0 and engine.pixels.held == 0


def test_empty_request_gives_empty_arrays_of_the_right_width(engine):
    texts, images = engine.embed([], [])
    assert texts.shape == images.shape == (0, 16)


def test_large_requests_run_in_bounded_forward_passes(tiny_model):
    engine = make_engine(tiny_model, cache_size=0, max_batch_size=4)
    reference = make_engine(tiny_model, cache_size=0)
    sizes = []
    forward = engine.towers.query.forward
    engine.towers.query.forward = lambda *inputs: sizes.append(inputs[0].shape[0]) or forward(*inputs)
    texts = [f"text number {i}" for i in range(10)]
    chunked, _ = engine.embed(texts, [])
    assert sizes == [4, 4, 2]
    whole, _ = reference.embed(texts, [])
    assert np.allclose(chunked, whole, atol=1e-6)


def test_a_request_queues_its_texts_and_images_before_waiting_for_either(tiny_model):
    """So that an object's caption and image go into the next text and image batches together, rather
    than the image waiting for the caption's batch to finish first."""
    import threading
    import time

    engine = make_engine(tiny_model, cache_size=0, batching="dynamic")
    lock = engine.batcher.lanes["text"]._model_lock  # shared by both lanes: one forward at a time
    result = {}
    with lock:  # the model is busy
        worker = threading.Thread(target=lambda: result.update(vectors=engine.embed(["a cat"], [jpeg(3)])))
        worker.start()
        deadline = time.monotonic() + 10
        while engine.batcher.depth < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        depths = {modality: lane.depth for modality, lane in engine.batcher.lanes.items()}
    worker.join(30)
    assert depths == {"text": 1, "image": 1}
    texts, images = result["vectors"]
    assert texts.shape == images.shape == (1, 16)
