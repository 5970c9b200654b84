import contextlib
import threading
import time

import numpy as np
import pytest
import torch

from tests import media
from tests.reference import cosine
from tests.unit.test_engine import make_engine
from vectorizer_module.batching import Lane
from vectorizer_module.errors import ModelFailure, Unavailable
from vectorizer_module.metrics import Metrics
from vectorizer_module.models.loading import detect, load_towers


@pytest.fixture(scope="module")
def towers(tiny_model):
    return load_towers(detect(tiny_model))


def test_collate_pads_to_the_longest_like_the_tokenizer(towers):
    texts = ["a", "a rather longer caption here", "", "mid length"]
    one_by_one = towers.query.collate([towers.query.preprocess([t]) for t in texts])
    together = towers.query.preprocess(texts)
    assert torch.equal(one_by_one["input_ids"], together["input_ids"])
    assert torch.equal(one_by_one["attention_mask"], together["attention_mask"])
    assert one_by_one["input_ids"].shape[1] < 77


def batch_stats(engine) -> tuple[float, float]:
    """(items, forward passes) of the text tower so far, from the batch-size histogram."""
    family = next(m for m in engine.metrics.registry.collect() if m.name == "clip_batch_size")
    values = {
        s.name: s.value for s in family.samples if s.labels.get("modality") == "text" and not s.name.endswith("_bucket")
    }
    return values.get("clip_batch_size_sum", 0.0), values.get("clip_batch_size_count", 0.0)


def test_concurrent_requests_get_their_own_results_in_order(tiny_model):
    engine = make_engine(tiny_model, cache_size=0, max_wait_ms=20.0, max_batch_size=32)
    alone = make_engine(tiny_model, cache_size=0, batching="per-request")
    requests_ = [[f"request {r} text {i}" for i in range(1 + r % 3)] for r in range(24)]
    images = {r: [media.encode(media.photo(40, 30, seed=r), "PNG")] for r in range(0, 24, 4)}
    warm_sum, warm_count = batch_stats(engine)
    results: dict[int, tuple] = {}
    barrier = threading.Barrier(len(requests_))

    def client(r: int) -> None:
        barrier.wait()
        results[r] = engine.embed(requests_[r], images.get(r, []))

    threads = [threading.Thread(target=client, args=(r,)) for r in range(len(requests_))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for r, texts in enumerate(requests_):
        got_texts, got_images = results[r]
        want_texts, want_images = alone.embed(texts, images.get(r, []))
        assert got_texts.shape == want_texts.shape and got_images.shape == want_images.shape
        for got, want in zip(np.concatenate([got_texts, got_images]), np.concatenate([want_texts, want_images])):
            assert cosine(got, want) > 0.99999
    text_sum, text_count = batch_stats(engine)
    assert text_sum - warm_sum == sum(len(t) for t in requests_)
    assert text_count - warm_count < text_sum - warm_sum, "requests were never batched together"


def test_a_full_queue_refuses_at_once(towers):
    lock = threading.Lock()
    lock.acquire()  # the model is busy
    lane = Lane(towers.query, lock, max_batch=1, max_wait=0.0, max_queue=3, metrics=Metrics())
    try:
        first = lane.submit([towers.query.preprocess(["x"])], time.monotonic() + 10)
        time.sleep(0.1)  # the lane takes it and blocks on the model lock
        queued = lane.submit([towers.query.preprocess([t]) for t in ("a", "b")], time.monotonic() + 10)
        with pytest.raises(Unavailable) as caught:
            lane.submit([towers.query.preprocess([t]) for t in ("c", "d")], time.monotonic() + 10)
        assert caught.value.reason == "queue_full"
    finally:
        lock.release()
    assert [f.result(10).shape for f in first + queued] == [(16,)] * 3
    lane.stop()


def test_items_past_their_deadline_are_dropped_not_computed(towers):
    lock = threading.Lock()
    calls = []
    forward = towers.query.forward
    lane = Lane(towers.query, lock, max_batch=8, max_wait=0.0, max_queue=8, metrics=Metrics())
    towers.query.forward = lambda *x: calls.append(1) or forward(*x)
    try:
        lock.acquire()
        late = lane.submit([towers.query.preprocess(["late"])], time.monotonic() + 0.05)
        time.sleep(0.3)
        lock.release()
        with pytest.raises(Unavailable, match="deadline"):
            late[0].result(10)
        assert calls == []
    finally:
        del towers.query.forward
        lane.stop()


def test_an_input_that_breaks_the_model_fails_only_its_request(tiny_model):
    engine = make_engine(tiny_model, cache_size=0, max_wait_ms=50.0)
    forward = engine.towers.query.forward
    poison = engine.towers.query.preprocess(["POISON"])["input_ids"][0, 1].item()

    def fragile(input_ids, attention_mask):
        if (input_ids[:, 1] == poison).any():
            raise RuntimeError("simulated fault on one input")
        return forward(input_ids, attention_mask)

    engine.towers.query.forward = fragile
    outcomes: dict[str, object] = {}

    def client(text: str) -> None:
        try:
            outcomes[text] = engine.embed([text], [])[0]
        except ModelFailure as exc:
            outcomes[text] = exc

    threads = [threading.Thread(target=client, args=(t,)) for t in ("good one", "POISON", "good two", "good 3")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert isinstance(outcomes["POISON"], ModelFailure)
    assert all(isinstance(outcomes[t], np.ndarray) for t in ("good one", "good two", "good 3"))


@contextlib.contextmanager
def spied_lane(towers, max_wait: float):
    """A text lane whose forward passes record their batch sizes; yields (submit, sizes)."""
    sizes: list[int] = []
    forward = towers.query.forward
    lane = Lane(towers.query, threading.Lock(), max_batch=8, max_wait=max_wait, max_queue=16, metrics=Metrics())
    towers.query.forward = lambda *x: sizes.append(x[0].shape[0]) or forward(*x)

    def submit(*texts: str):
        return lane.submit([towers.query.preprocess([t]) for t in texts], time.monotonic() + 30)

    try:
        yield submit, sizes
    finally:
        del towers.query.forward
        lane.stop()


def test_a_lone_request_never_waits_but_requests_arriving_together_are_gathered(towers):
    with spied_lane(towers, max_wait=0.6) as (submit, sizes):
        started = time.monotonic()
        submit("alone")[0].result(10)
        assert time.monotonic() - started < 0.3, "a request arriving alone waited for company"
        [f.result(10) for f in submit("two", "together")]  # the lane is busy now
        first = submit("a")  # arrives first ...
        time.sleep(0.1)
        second = submit("b")  # ... and this one, 100 ms later, joins its batch
        [f.result(10) for f in first + second]
        assert sizes == [1, 2, 2]
        time.sleep(1.1)  # idle again: a lone request goes at once
        started = time.monotonic()
        submit("alone again")[0].result(10)
        assert time.monotonic() - started < 0.3 and sizes[-1] == 1


def test_the_wait_ends_once_as_many_items_as_recent_batches_held_are_here(towers):
    """Closed-loop clients answered together come back together: the lane waits for that many items,
    no longer, and one batch that came out small does not lower what it waits for."""
    with spied_lane(towers, max_wait=0.5) as (submit, sizes):
        [f.result(10) for f in submit("one", "two", "three")]  # a batch of 3: three clients
        started = time.monotonic()
        late = submit("only one came back")
        late[0].result(10)
        assert time.monotonic() - started >= 0.45, "the lane did not wait for the other two"
        futures = submit("a")
        time.sleep(0.05)
        futures += submit("b")
        time.sleep(0.05)
        started = time.monotonic()
        futures += submit("c")
        [f.result(10) for f in futures]
        assert time.monotonic() - started < 0.3, "the lane kept waiting after the third item came"
        assert sizes == [3, 1, 3], "a batch of 1 made the lane stop waiting for three"
