"""Batching: one lane per tower, one thread per lane, one forward pass at a time in a worker.

A request thread submits its texts and its images together: the service-wide queue bound
(``admission``) is checked once for all of them, then the thread prepares its own items one by one
(tokenise; or decode, resize and normalise, with what the engine gives as ``prepare``), stopping at the
request's deadline or when its client has gone, and each item, carrying a future, joins its tower's lane.
A lane's thread takes what is waiting once the model is free and runs one forward pass:

- ``dynamic``: up to ``max_batch`` items of any requests; while requests come together it waits at most
  ``max_wait`` until as many items are here as the largest batch of the last second held (a request
  that arrives alone never waits);
- ``per-request``: the items of the request at the head of the queue only (up to ``max_batch`` per
  pass), the reference image's one-request-at-a-time design.

Before the forward pass the lane drops items whose deadline passed or whose client left. With fixed
shapes the batch is padded to ``max_batch`` rows and texts to the model's context, so that a row's
result depends on that row alone; otherwise texts are padded to the longest in the batch (the tower's
``collate``). The backend (``backends/``) computes the batch; each future gets its own row. If a pass
fails, its items are retried one by one, so one input that breaks the model fails only its own request.

Where the forward passes run: on the lane's thread, or, given a ``ModelThread``, on the thread that
serves it (a worker's initial thread). torch's intra-op threads are OpenMP's, and libgomp keeps its
workers spinning between a team's parallel regions only while the threads it manages are no more than
the CPUs; a team started by any other thread than the process's first counts that thread too, so on a
small host its workers sleep and wake at every operator (a ViT-B/32 text batch: 27 ms on a lane's
thread, 17 ms on the initial one, two cores).
"""

from __future__ import annotations

import collections
import functools
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from vectorizer_module.admission import Cancelled, QueueBudget, never_cancelled
from vectorizer_module.backends.base import Backend
from vectorizer_module.errors import ModelFailure, client_gone, past_deadline
from vectorizer_module.metrics import Metrics
from vectorizer_module.models.base import Tower, Towers

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)
RECENT_SECONDS = 1.0  # how far back Lane._expected looks
# one raw item (and its request's deadline) -> the tower's inputs for it, batch dimension 1
Prepare = Callable[[Any, float], "dict[str, torch.Tensor]"]


@dataclass
class _Work:
    inputs: dict[str, torch.Tensor]  # one item, batch dimension 1
    future: Future
    deadline: float
    cancelled: Cancelled
    request: object  # shared by the items of one submission


class ModelThread:
    """Runs work handed over by the lanes on the one thread that calls ``serve`` (see above)."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], None], Future]] = queue.SimpleQueue()

    def run(self, work: Callable[[], None]) -> None:
        """Run ``work`` on the serving thread and wait for it to finish (its exception is raised here)."""
        done: Future = Future()
        self._jobs.put((work, done))
        done.result()

    def serve(self, until: Callable[[], bool], poll: float = 0.1) -> None:
        """Run the work handed over, one at a time, until ``until()`` (checked at least every ``poll`` s)."""
        while not until():
            try:
                work, done = self._jobs.get(timeout=poll)
            except queue.Empty:
                continue
            try:
                work()
            except BaseException as exc:  # noqa: BLE001 - the lane that handed it over gets it
                done.set_exception(exc)
            else:
                done.set_result(None)


class Lane:
    """The queue and the thread of one tower."""

    def __init__(
        self,
        tower: Tower,
        backend: Backend,
        model_lock: threading.Lock,
        *,
        max_batch: int,
        max_wait: float,
        per_request: bool,
        fixed_shape: bool,
        budget: QueueBudget,
        metrics: Metrics,
        model_thread: ModelThread | None = None,
    ) -> None:
        self.tower = tower  # its collate and row_groups: the preprocessing side
        self.backend = backend
        self.model_thread = model_thread
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.per_request = per_request
        self.fixed_rows = max_batch if fixed_shape else None
        self.budget = budget
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

    def put(self, work: list[_Work]) -> None:
        """Queue items already counted in the budget."""
        if not work:
            return
        with self._condition:
            self._waiting.extend(work)
            self._condition.notify()

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
        """The next batch: the head request's items (per-request), or what is waiting, up to
        ``max_batch``, after waiting up to ``max_wait`` for as many items as recent batches held."""
        with self._condition:
            if self.per_request:
                head = self._waiting[0].request
                taken: list[_Work] = []
                while self._waiting and len(taken) < self.max_batch and self._waiting[0].request is head:
                    taken.append(self._waiting.popleft())
            else:
                now = time.monotonic()
                expected = min(self.max_batch, self._expected(now))
                flush_at = now + (self.max_wait if expected > 1 else 0.0)
                while len(self._waiting) < expected:
                    remaining = flush_at - time.monotonic()
                    if remaining <= 0 or not self._condition.wait(remaining):
                        break
                taken = [self._waiting.popleft() for _ in range(min(self.max_batch, len(self._waiting)))]
                self._recent.append((time.monotonic(), len(taken)))
        self.budget.release(len(taken))
        self.metrics.queue_depth.set(self.budget.own_waiting)
        return taken

    def _admit(self, batch: list[_Work]) -> list[_Work]:
        """The items still worth computing; the others' futures are answered with why they were dropped."""
        now = time.monotonic()
        live = []
        for work in batch:
            if not work.future.set_running_or_notify_cancel():
                continue  # its request already gave up
            if now > work.deadline:
                work.future.set_exception(past_deadline())
            elif work.cancelled():
                work.future.set_exception(client_gone())
            else:
                live.append(work)
        return live

    def _loop(self) -> None:
        # The batch is taken once the model is ours, so it holds everything that arrived while the
        # other lane was running, and no item is computed after its deadline.
        while self._wait_for_work():
            with self._model_lock:
                live = self._admit(self._take())
                if live and self.model_thread is not None:
                    self.model_thread.run(functools.partial(self._run, live))
                elif live:
                    self._run(live)

    def _forward(self, batch: list[_Work]) -> list[np.ndarray]:
        """One row per item; one forward pass per group of items the tower lets share one (all of them,
        but for towers whose rows must not be padded)."""
        parts = [w.inputs for w in batch]
        rows: list[np.ndarray] = [np.empty(0)] * len(batch)
        for group in self.tower.row_groups(parts):
            inputs = self.tower.collate([parts[i] for i in group], fixed_rows=self.fixed_rows)
            output = self.backend.embed(self.tower.modality, inputs)[: len(group)]
            for index, row in zip(group, output):
                rows[index] = row
            self.metrics.batch_size.labels(self.tower.modality).observe(len(group))
        self.metrics.embedded.labels(self.tower.modality).inc(len(batch))
        return rows

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
            raise past_deadline() from None
        finally:
            self.cancel()

    def cancel(self) -> None:
        for future in self.futures:
            future.cancel()  # no-op for finished ones; unstarted ones are skipped by the lane


def _preprocess(tower: Tower) -> Prepare:
    return lambda item, _deadline: tower.preprocess([item])


class Batcher:
    """Both lanes of a worker, sharing one model lock so that one forward pass runs at a time, on
    ``backend``; ``max_batch`` is bounded by the backend's own largest batch.
    ``prepare`` turns a raw item of a modality into its tower's inputs (default: the tower's own
    ``preprocess``; the engine gives the image lane one that decodes image bytes first)."""

    def __init__(
        self,
        towers: Towers,
        backend: Backend,
        *,
        max_batch: int,
        max_wait: float,
        per_request: bool,
        fixed_shape: bool,
        budget: QueueBudget,
        metrics: Metrics,
        prepare: Mapping[str, Prepare] | None = None,
        model_thread: ModelThread | None = None,
    ) -> None:
        lock = threading.Lock()
        self.budget = budget
        self.metrics = metrics
        self.prepare = {tower.modality: _preprocess(tower) for tower in (towers.query, towers.items)}
        self.prepare.update(prepare or {})
        if backend.max_batch is not None:
            max_batch = min(max_batch, backend.max_batch)
        self.lanes = {
            tower.modality: Lane(
                tower,
                backend,
                lock,
                max_batch=max_batch,
                max_wait=max_wait,
                per_request=per_request,
                fixed_shape=fixed_shape,
                budget=budget,
                metrics=metrics,
                model_thread=model_thread,
            )
            for tower in (towers.query, towers.items)
        }

    @property
    def depth(self) -> int:
        return sum(lane.depth for lane in self.lanes.values())

    def submit(
        self, texts: Sequence[str], images: Sequence[Any], deadline: float, cancelled: Cancelled = never_cancelled
    ) -> tuple[Pending, Pending]:
        """Queue a request's texts and images, both before the request waits for either, so that an
        object's caption and image join the next batches of both lanes; the rows come from the results.
        All or none: the queue bound is checked once for every item, and an item that cannot be prepared
        (a bad image), the deadline or the client's leaving ends the request before anything is queued."""
        count = len(texts) + len(images)
        self.budget.reserve(count)
        try:
            request = object()
            work: dict[str, list[_Work]] = {"text": [], "image": []}
            for modality, items in (("text", texts), ("image", images)):
                for item in items:
                    if time.monotonic() > deadline:
                        raise past_deadline()
                    if cancelled():
                        raise client_gone()
                    inputs = self.prepare[modality](item, deadline)
                    work[modality].append(_Work(inputs, Future(), deadline, cancelled, request))
        except BaseException:
            self.budget.release(count)
            raise
        finally:
            self.metrics.queue_depth.set(self.budget.own_waiting)
        for modality, items in work.items():
            self.lanes[modality].put(items)
        return tuple(Pending([w.future for w in work[m]], deadline) for m in ("text", "image"))  # type: ignore[return-value]

    def stop(self) -> None:
        for lane in self.lanes.values():
            lane.stop()
