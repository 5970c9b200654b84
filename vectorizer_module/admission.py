"""How many items may wait for the model: one bound for the whole service, whatever its worker count.
How many decoded pixels a worker holds at once: ``PixelBudget``. (And how a waiting request says that its
client has gone: ``Cancelled``.)

Each worker process counts the items waiting in its own lanes in one cell of a table that every worker
reads (``server/board.py`` puts the table in memory shared by the workers; alone, it is a table of one
cell). A submission is refused at once with 503 and ``Retry-After`` when the sum over the cells would
pass ``VECTORIZER_MAX_QUEUE``, and with 413 when it alone holds more items than the queue ever could.

A cell is written only by its own worker, so no lock spans processes: a worker killed in the middle of
an update cannot wedge the others. The price: two workers admitting at the same instant may each see
room for their request, so the bound can be passed by at most one request per other worker.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

from vectorizer_module.errors import at_capacity, more_than_the_queue_holds, past_deadline

# Whether a waiting request's client has gone (then its work is dropped before it reaches the model).
Cancelled = Callable[[], bool]


def never_cancelled() -> bool:
    return False


def local_cells() -> memoryview:
    """A table of one cell, for a service of one process (and for tests)."""
    return memoryview(bytearray(8)).cast("q")


class QueueBudget:
    """The service-wide count of items waiting for the model, and its bound."""

    def __init__(self, limit: int, cells: memoryview | None = None, own: int = 0) -> None:
        self.limit = limit
        self._cells = local_cells() if cells is None else cells
        self._own = own
        self._lock = threading.Lock()  # the cell's read-modify-write, among this worker's threads

    @property
    def waiting(self) -> int:
        """Items waiting in the whole service."""
        return sum(self._cells)

    @property
    def own_waiting(self) -> int:
        """Items waiting in this worker."""
        return self._cells[self._own]

    def reserve(self, count: int) -> None:
        """Count ``count`` more items as waiting, or refuse them all."""
        if count > self.limit:
            raise more_than_the_queue_holds(count, self.limit)
        with self._lock:
            waiting = sum(self._cells)
            if waiting + count > self.limit:
                raise at_capacity(waiting)
            self._cells[self._own] += count

    def release(self, count: int) -> None:
        """``count`` items stopped waiting (taken into a batch)."""
        with self._lock:
            self._cells[self._own] -= count


class PixelBudget:
    """Pixels of full-size decoded images a worker holds at once, across all its request threads.

    A decoded image lives only until the tower's preprocessing has made its small input from it, but
    64 images of 7000 x 7000 decoded together by 16 threads would hold gigabytes. An image's decode
    waits here until its pixels fit; one image alone always fits (its pixels are capped at the budget,
    which is the largest image accepted), so nothing waits for ever; a wait ends at the request's deadline.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.held = 0
        self._condition = threading.Condition()

    @contextlib.contextmanager
    def hold(self, pixels: int, deadline: float) -> Iterator[None]:
        pixels = min(pixels, self.capacity)
        with self._condition:
            while self.held + pixels > self.capacity:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise past_deadline()
                self._condition.wait(remaining)
            self.held += pixels
        try:
            yield
        finally:
            with self._condition:
                self.held -= pixels
                self._condition.notify_all()
