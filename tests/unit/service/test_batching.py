import contextlib
import threading
import time

import numpy as np
import pytest
import torch

from tests import media
from tests.helpers import make_engine
from tests.reference import cosine
from vectorizer_module.admission import QueueBudget, never_cancelled
from vectorizer_module.backends.torch_backend import TorchBackend
from vectorizer_module.batching import Batcher
from vectorizer_module.errors import ClientGone, ModelFailure, Unavailable
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


@contextlib.contextmanager
def spied_batcher(towers, *, max_batch=8, max_wait=0.0, per_request=False, fixed_shape=False, limit=64):
    """A batcher whose text forward passes record their input shapes; yields (batcher, submit, shapes),
    where ``submit(*texts)`` queues one request's texts and gives its Pending."""
    shapes: list[tuple[int, ...]] = []
    forward = towers.query.forward
    towers.query.forward = lambda *x: shapes.append(tuple(x[0].shape)) or forward(*x)
    batcher = Batcher(
        towers,
        TorchBackend(towers, torch.device("cpu"), torch.float32),
        max_batch=max_batch,
        max_wait=max_wait,
        per_request=per_request,
        fixed_shape=fixed_shape,
        budget=QueueBudget(limit),
        metrics=Metrics(),
    )

    def submit(*texts: str, deadline: float = 30.0, cancelled=never_cancelled):
        return batcher.submit(list(texts), [], time.monotonic() + deadline, cancelled)[0]

    try:
        yield batcher, submit, shapes
    finally:
        del towers.query.forward
        batcher.stop()


@contextlib.contextmanager
def model_busy(batcher):
    """Hold the model (the lock both lanes share), so that submissions wait in the queue."""
    with batcher.lanes["text"]._model_lock:
        yield


def test_a_full_queue_refuses_at_once(towers):
    with spied_batcher(towers, max_batch=1, limit=3) as (batcher, submit, _):
        with model_busy(batcher):
            first = submit("x")
            queued = submit("a", "b")
            started = time.monotonic()
            with pytest.raises(Unavailable) as caught:
                submit("c")
            assert time.monotonic() - started < 0.1
            assert caught.value.reason == "queue_full"
            assert batcher.budget.waiting == 3
        assert [row.shape for row in [*first.result(), *queued.result()]] == [(16,)] * 3
        assert batcher.budget.waiting == 0


def test_items_past_their_deadline_are_dropped_not_computed(towers):
    with spied_batcher(towers) as (batcher, submit, shapes):
        with model_busy(batcher):
            late = submit("late", deadline=0.05)
            time.sleep(0.3)
        with pytest.raises(Unavailable, match="deadline"):
            late.result()
        assert shapes == []


def test_work_of_a_disconnected_client_is_dropped_not_computed(towers):
    gone = threading.Event()
    with spied_batcher(towers) as (batcher, submit, shapes):
        with model_busy(batcher):
            orphan = submit("nobody will read this", cancelled=gone.is_set)
            kept = submit("still wanted")
            gone.set()
        with pytest.raises(ClientGone):
            orphan.result()
        assert kept.result().shape == (1, 16)
        assert shapes == [(1, kept_length(towers, "still wanted"))]


def kept_length(towers, text: str) -> int:
    return towers.query.preprocess([text])["input_ids"].shape[1]


def test_per_request_lanes_batch_one_request_at_a_time(towers):
    """The reference image's design: a forward pass holds one request's items, never two requests'."""
    with spied_batcher(towers, max_batch=2, per_request=True, max_wait=0.5) as (batcher, submit, shapes):
        with model_busy(batcher):
            pending = [submit("one", "two", "three"), submit("four"), submit("five", "six")]
        started = time.monotonic()
        assert [p.result().shape[0] for p in pending] == [3, 1, 2]
        assert time.monotonic() - started < 0.4, "a per-request lane waited for company"
        assert [shape[0] for shape in shapes] == [2, 1, 1, 2]


def test_fixed_shapes_make_a_vector_independent_of_its_batch(towers):
    """Every forward pass at one shape (rows and tokens): a text's vector is the same bits alone, among
    longer or shorter texts, and at any row of the batch."""
    with spied_batcher(towers, max_batch=6, fixed_shape=True) as (batcher, submit, shapes):
        alone = submit("a red circle").result()[0]
        crowds = [
            ["x", "a red circle"],
            ["a much longer caption about a square on a gradient background", "y", "z", "a red circle"],
            ["a red circle", "w"],
        ]
        for crowd in crowds:
            with model_busy(batcher):
                pending = [submit(text) for text in crowd]
            rows = [p.result()[0] for p in pending]
            assert np.array_equal(rows[crowd.index("a red circle")], alone)
        assert set(shapes) == {(6, towers.query.max_length)}


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


def test_a_lone_request_never_waits_but_requests_arriving_together_are_gathered(towers):
    with spied_batcher(towers, max_wait=0.6) as (_, submit, shapes):
        started = time.monotonic()
        submit("alone").result()
        assert time.monotonic() - started < 0.3, "a request arriving alone waited for company"
        submit("two", "together").result()  # the lane is busy now
        first = submit("a")  # arrives first ...
        time.sleep(0.1)
        second = submit("b")  # ... and this one, 100 ms later, joins its batch
        first.result()
        second.result()
        assert [shape[0] for shape in shapes] == [1, 2, 2]
        time.sleep(1.1)  # idle again: a lone request goes at once
        started = time.monotonic()
        submit("alone again").result()
        assert time.monotonic() - started < 0.3 and shapes[-1][0] == 1


def test_the_wait_ends_once_as_many_items_as_recent_batches_held_are_here(towers):
    """Closed-loop clients answered together come back together: the lane waits for that many items,
    no longer, and one batch that came out small does not lower what it waits for."""
    with spied_batcher(towers, max_wait=0.5) as (_, submit, shapes):
        submit("one", "two", "three").result()  # a batch of 3: three clients
        started = time.monotonic()
        submit("only one came back").result()
        assert time.monotonic() - started >= 0.45, "the lane did not wait for the other two"
        pending = [submit("a")]
        time.sleep(0.05)
        pending.append(submit("b"))
        time.sleep(0.05)
        started = time.monotonic()
        pending.append(submit("c"))
        [p.result() for p in pending]
        assert time.monotonic() - started < 0.3, "the lane kept waiting after the third item came"
        assert [shape[0] for shape in shapes] == [3, 1, 3], "a batch of 1 made the lane stop waiting for three"


@pytest.mark.parametrize("stop", ["deadline", "client gone"])
def test_preparing_a_request_stops_at_its_deadline_or_when_its_client_leaves(towers, stop):
    """Tokenising (or decoding) is part of the request's time: 256 long texts used to be tokenised for
    56 s before the deadline was first looked at. Nothing is queued and the queue bound is freed."""
    prepared = []
    budget = QueueBudget(512)
    batcher = Batcher(
        towers,
        TorchBackend(towers, torch.device("cpu"), torch.float32),
        max_batch=8,
        max_wait=0.0,
        per_request=False,
        fixed_shape=False,
        budget=budget,
        metrics=Metrics(),
        prepare={"text": lambda text, _: prepared.append(text) or time.sleep(0.05) or towers.query.preprocess([text])},
    )
    gone = threading.Event()
    threading.Timer(0.2, gone.set).start()
    deadline = time.monotonic() + (0.2 if stop == "deadline" else 30)
    try:
        with pytest.raises(Unavailable, match="deadline" if stop == "deadline" else "disconnected"):
            batcher.submit([f"text {i}" for i in range(100)], [], deadline, gone.is_set)
        assert 2 <= len(prepared) < 10
        assert batcher.depth == 0 and budget.waiting == 0
    finally:
        batcher.stop()
