"""Dynamic batching across requests: one lane per tower, one model thread per lane, one forward at a time.

A request thread preprocesses its own items (tokenise, or decode + resize + normalise) and submits
them; each item carries a future. A lane's thread takes what is waiting (up to ``max_batch``; while
requests come together, it waits at most ``max_wait`` until as many items are here as the largest batch
of the last second held; a request that arrives alone never waits), drops items whose deadline passed
or whose client left, collates the rest (texts padded to the longest in the batch, not to 77), runs the tower, and
answers each future with its own row. If a batch fails, its items are retried one by one, so one
input that breaks the model fails only its own request.

The queue is bounded: a submission that would exceed ``max_queue`` waiting items is refused at once
(503 with Retry-After), never buffered.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from vectorizer_module.admission import Cancelled, ClientGone, never_cancelled
from vectorizer_module.errors import ModelFailure, Unavailable
from vectorizer_module.metrics import Metrics
from vectorizer_module.models.base import Tower

log = logging.getLogger(__name__)
RECENT_SECONDS = 1.0  # how far back Lane._expected looks


@dataclass
class _Work:
    inputs: dict[str, torch.Tensor]  # one item, batch dimension 1
    future: Future
    deadline: float
    cancelled: Cancelled


class Lane:
    """The batching queue and model thread of one tower."""

    def __init__(
        self,
        tower: Tower,
        model_lock: threading.Lock,
        *,
        max_batch: int,
        max_wait: float,
        max_queue: int,
        metrics: Metrics,
    ) -> None:
        self.tower = tower
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.max_queue = max_queue
        self.metrics = metrics
        self._model_lock = model_lock
        self._waiting: collections.deque[_Work] = collections.deque()
        self._condition = threading.Condition()
        self._stopped = False
        self._recent: collections.deque[tuple[float, int]] = collections.deque()  # (time, size) of batches taken
        self._thread = threading.Thread(target=self._loop, name=f"batcher-{tower.modality}", daemon=True)
        self._thread.start()

    @property
    def depth(self) -> int:
        return len(self._waiting)

    def submit(
        self, items: list[dict[str, torch.Tensor]], deadline: float, cancelled: Cancelled = never_cancelled
    ) -> list[Future]:
        """Queue preprocessed items (all or none); their futures give one float32 row each."""
        work = [_Work(inputs, Future(), deadline, cancelled) for inputs in items]
        with self._condition:
            if len(self._waiting) + len(work) > self.max_queue:
                raise Unavailable(
                    f"the service is at capacity ({len(self._waiting)} {self.tower.modality} items "
                    "waiting for the model); retry shortly, or raise VECTORIZER_MAX_QUEUE",
                    reason="queue_full",
                    retry_after=1,
                )
            self._waiting.extend(work)
            self._condition.notify()
        return [w.future for w in work]

    def stop(self) -> None:
        with self._condition:
            self._stopped = True
            self._condition.notify_all()

    # -- the model thread --------------------------------------------------------------------------
    def _wait_for_work(self) -> bool:
        with self._condition:
            while not self._waiting and not self._stopped:
                self._condition.wait()
            return not self._stopped

    def _expected(self, now: float) -> int:
        """How many items to wait for: the largest batch taken in the last second. Under a closed-loop
        load (Weaviate's import workers) the clients answered by one batch come back together a few
        milliseconds after the next batch would otherwise start; without waiting for them, they split
        into two half-size cohorts that alternate. Once that many are here, waiting longer only idles
        the model. The largest of the last second, not the last batch's size, so that one batch that
        happened to be small does not lock the lane into small batches. 1 (no wait) when requests
        come alone."""
        while self._recent and now - self._recent[0][0] > RECENT_SECONDS:
            self._recent.popleft()
        return max((size for _, size in self._recent), default=1)

    def _take(self) -> list[_Work]:
        """What is waiting, up to ``max_batch``; waits up to ``max_wait`` until as many items are here
        as recent batches held."""
        with self._condition:
            now = time.monotonic()
            expected = min(self.max_batch, self._expected(now))
            flush_at = now + (self.max_wait if expected > 1 else 0.0)
            while len(self._waiting) < expected:
                remaining = flush_at - time.monotonic()
                if remaining <= 0 or not self._condition.wait(remaining):
                    break
            taken = [self._waiting.popleft() for _ in range(min(self.max_batch, len(self._waiting)))]
            self._recent.append((time.monotonic(), len(taken)))
            return taken

    def _admit(self, batch: list[_Work]) -> list[_Work]:
        """The items still worth computing; the others' futures are answered with why they were dropped."""
        now = time.monotonic()
        live = []
        for work in batch:
            if not work.future.set_running_or_notify_cancel():
                continue  # its request already gave up
            if now > work.deadline:
                work.future.set_exception(
                    Unavailable(
                        "the request waited for the model past its deadline and was dropped; see "
                        "VECTORIZER_REQUEST_DEADLINE",
                        reason="deadline",
                    )
                )
            elif work.cancelled():
                work.future.set_exception(
                    ClientGone("the client disconnected before its request reached the model", reason="client_gone")
                )
            else:
                live.append(work)
        return live

    def _loop(self) -> None:
        # The batch is taken once the model is ours, so it holds everything that arrived while the
        # other lane was running, and no item is computed after its deadline.
        while self._wait_for_work():
            with self._model_lock:
                live = self._admit(self._take())
                if live:
                    self._run(live)

    def _forward(self, batch: list[_Work]) -> np.ndarray:
        inputs = self.tower.collate([w.inputs for w in batch])
        with torch.inference_mode():
            output = self.tower(*self.tower.to_model_inputs(inputs)).float().cpu().numpy()
        self.metrics.batch_size.labels(self.tower.modality).observe(len(batch))
        self.metrics.embedded.labels(self.tower.modality).inc(len(batch))
        return output

    def _run(self, batch: list[_Work]) -> None:
        try:
            rows = self._forward(batch)
        except Exception as exc:  # noqa: BLE001 - isolate the input that broke the batch
            if len(batch) == 1:
                log.exception("the %s tower failed on one item", self.tower.modality)
                batch[0].future.set_exception(
                    ModelFailure(f"the {self.tower.modality} model failed on this input: {type(exc).__name__}: {exc}")
                )
                return
            log.warning(
                "a %s batch of %d failed (%s); retrying its items one by one", self.tower.modality, len(batch), exc
            )
            for work in batch:
                self._run([work])
            return
        for work, row in zip(batch, rows):
            work.future.set_result(row)


class Pending:
    """The queued items of one request in one lane."""

    def __init__(self, futures: list[Future], deadline: float) -> None:
        self.futures = futures
        self.deadline = deadline

    def result(self) -> np.ndarray:
        """The rows, in order, once all are computed; Unavailable past the deadline."""
        try:
            return np.stack([f.result(timeout=max(0.0, self.deadline - time.monotonic()) + 1.0) for f in self.futures])
        except TimeoutError:
            raise Unavailable(
                "the request waited for the model past its deadline and was dropped; see VECTORIZER_REQUEST_DEADLINE",
                reason="deadline",
            ) from None
        finally:
            self.cancel()

    def cancel(self) -> None:
        for future in self.futures:
            future.cancel()  # no-op for finished ones; unstarted ones are skipped by the lane


class DynamicBatcher:
    """Both lanes, sharing one model lock so that one forward pass runs at a time."""

    def __init__(self, towers: Any, *, max_batch: int, max_wait: float, max_queue: int, metrics: Metrics) -> None:
        lock = threading.Lock()
        self.lanes = {
            tower.modality: Lane(
                tower, lock, max_batch=max_batch, max_wait=max_wait, max_queue=max_queue, metrics=metrics
            )
            for tower in (towers.query, towers.items)
        }

    @property
    def depth(self) -> int:
        return sum(lane.depth for lane in self.lanes.values())

    def submit(self, tower: Tower, items: list[Any], deadline: float, cancelled: Cancelled) -> Pending:
        """Preprocess ``items`` (raw texts or RGB images) and queue them; the rows come from the result.
        A request submits its texts and its images before waiting for either, so that both lanes can
        take them in their next batches."""
        futures = self.lanes[tower.modality].submit([tower.preprocess([item]) for item in items], deadline, cancelled)
        return Pending(futures, deadline)

    def stop(self) -> None:
        for lane in self.lanes.values():
            lane.stop()
