import threading
import time

import pytest

from vectorizer_module.admission import ClientGone, ModelQueue
from vectorizer_module.errors import Unavailable


def hold(queue: ModelQueue, release: threading.Event, entered: threading.Event) -> threading.Thread:
    def run():
        with queue.turn(time.monotonic() + 10):
            entered.set()
            release.wait(10)

    thread = threading.Thread(target=run)
    thread.start()
    assert entered.wait(5)
    return thread


def test_full_queue_refuses_at_once_with_retry_after():
    queue = ModelQueue(max_waiting=1)
    release, entered = threading.Event(), threading.Event()
    holder = hold(queue, release, entered)
    waiter = threading.Thread(target=lambda: queue.turn(time.monotonic() + 10).__enter__())
    waiter.start()
    deadline = time.monotonic() + 5
    while queue.depth < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.perf_counter()
    with pytest.raises(Unavailable) as caught:
        with queue.turn(time.monotonic() + 10):
            pass
    assert time.perf_counter() - started < 0.1
    assert caught.value.reason == "queue_full" and caught.value.headers["Retry-After"]
    release.set()
    holder.join()
    waiter.join()


def test_work_past_its_deadline_is_dropped():
    queue = ModelQueue(max_waiting=4)
    release, entered = threading.Event(), threading.Event()
    holder = hold(queue, release, entered)
    with pytest.raises(Unavailable) as caught:
        with queue.turn(time.monotonic() + 0.3):
            pytest.fail("must not run")
    assert caught.value.reason == "deadline"
    release.set()
    holder.join()
    assert queue.depth == 0


def test_work_of_a_disconnected_client_is_dropped():
    queue = ModelQueue(max_waiting=4)
    release, entered = threading.Event(), threading.Event()
    holder = hold(queue, release, entered)
    gone = threading.Event()
    threading.Timer(0.2, gone.set).start()
    with pytest.raises(ClientGone):
        with queue.turn(time.monotonic() + 10, cancelled=gone.is_set):
            pytest.fail("must not run")
    release.set()
    holder.join()


def test_a_fault_in_one_batch_fails_only_that_request(tiny_model):
    from tests.unit.test_engine import make_engine
    from vectorizer_module.errors import ModelFailure

    engine = make_engine(tiny_model, cache_size=0)
    forward = engine.towers.query.forward

    def fragile(input_ids, attention_mask):
        if input_ids.shape[1] > 30:
            raise RuntimeError("simulated kernel fault")
        return forward(input_ids, attention_mask)

    engine.towers.query.forward = fragile
    with pytest.raises(ModelFailure, match="simulated kernel fault"):
        engine.embed(["a" * 40], [])
    texts, _ = engine.embed(["short"], [])
    assert texts.shape == (1, 16)
