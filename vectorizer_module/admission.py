"""A bounded queue in front of the model.

At most ``max_queue`` requests wait for the model at once; past that, new work is refused at once
with 503 and ``Retry-After`` instead of piling up memory. A request that has waited past its deadline,
or whose client has disconnected, is dropped before it reaches the model.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

from vectorizer_module.errors import Unavailable

Cancelled = Callable[[], bool]


def never_cancelled() -> bool:
    return False


class ClientGone(Unavailable):
    """The client disconnected while its request waited; nobody will read the answer."""


class ModelQueue:
    def __init__(self, max_waiting: int) -> None:
        self.max_waiting = max_waiting
        self._model = threading.Lock()
        self._count_lock = threading.Lock()
        self._waiting = 0

    @property
    def depth(self) -> int:
        return self._waiting

    @contextlib.contextmanager
    def turn(self, deadline: float, cancelled: Cancelled = never_cancelled) -> Iterator[None]:
        """Hold the model until the block ends. ``deadline`` is a ``time.monotonic()`` instant."""
        with self._count_lock:
            if self._waiting >= self.max_waiting:
                raise Unavailable(
                    f"the service is at capacity ({self._waiting} requests waiting for the model); "
                    "retry shortly, or raise VECTORIZER_MAX_QUEUE",
                    reason="queue_full",
                    retry_after=1,
                )
            self._waiting += 1
        try:
            acquired = False
            while not acquired:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise Unavailable(
                        "the request waited for the model past its deadline and was dropped; see "
                        "VECTORIZER_REQUEST_DEADLINE",
                        reason="deadline",
                        retry_after=1,
                    )
                if cancelled():
                    raise ClientGone(
                        "the client disconnected before its request reached the model", reason="client_gone"
                    )
                acquired = self._model.acquire(timeout=min(remaining, 0.25))
        finally:
            with self._count_lock:
                self._waiting -= 1
        try:
            yield
        finally:
            self._model.release()
