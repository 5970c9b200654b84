"""The service-wide queue bound, over one worker's cell or the cells of several workers; a worker's
budget of decoded pixels."""

import threading
import time

import pytest

from tests.helpers import make_engine
from vectorizer_module.admission import PixelBudget, QueueBudget
from vectorizer_module.errors import ModelFailure, TooLarge, Unavailable
from vectorizer_module.server.board import WorkerBoard


def test_a_full_queue_refuses_at_once_with_retry_after_until_items_are_taken():
    budget = QueueBudget(limit=5)
    budget.reserve(3)
    budget.reserve(2)
    with pytest.raises(Unavailable) as caught:
        budget.reserve(1)
    assert caught.value.reason == "queue_full" and caught.value.headers["Retry-After"]
    assert "5 items waiting" in caught.value.message and "VECTORIZER_MAX_QUEUE" in caught.value.message
    budget.release(2)
    budget.reserve(2)
    assert budget.waiting == 5


def test_a_request_larger_than_the_queue_is_the_clients_error_not_a_retry():
    budget = QueueBudget(limit=8)
    with pytest.raises(TooLarge) as caught:
        budget.reserve(10)
    assert caught.value.status == 413 and "VECTORIZER_MAX_QUEUE" in caught.value.message
    assert budget.waiting == 0


def test_the_bound_counts_what_waits_in_every_worker():
    board = WorkerBoard(3)
    workers = [QueueBudget(10, board.waiting_cells(), own=slot) for slot in range(3)]
    workers[0].reserve(4)
    workers[2].reserve(5)
    assert [w.own_waiting for w in workers] == [4, 0, 5]
    assert all(w.waiting == 9 for w in workers)
    with pytest.raises(Unavailable):
        workers[1].reserve(2)
    workers[1].reserve(1)
    board.clear_slot(2)  # that worker died: what it held no longer waits
    assert workers[0].waiting == 5
    workers[1].reserve(5)


def test_a_fault_in_one_batch_fails_only_that_request(tiny_model):
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
    assert engine.budget.waiting == 0


def test_the_pixel_budget_lets_one_large_image_decode_at_a_time():
    budget = PixelBudget(100)
    order = []

    def decode(name: str, pixels: int) -> None:
        with budget.hold(pixels, time.monotonic() + 5):
            order.append(f"{name} in")
            time.sleep(0.1)
            order.append(f"{name} out")

    first = threading.Thread(target=decode, args=("first", 80))
    first.start()
    time.sleep(0.03)
    decode("second", 80)  # waits for the first to be done with its pixels
    first.join()
    assert order == ["first in", "first out", "second in", "second out"]
    with budget.hold(10_000, time.monotonic() + 1):  # larger than the budget: capped, never stuck
        assert budget.held == 100


def test_a_decode_waiting_for_pixels_gives_up_at_the_request_deadline():
    budget = PixelBudget(100)
    with budget.hold(100, time.monotonic() + 5):
        started = time.monotonic()
        with pytest.raises(Unavailable, match="deadline"):
            with budget.hold(1, time.monotonic() + 0.2):
                pass
        assert 0.15 < time.monotonic() - started < 2
    assert budget.held == 0
