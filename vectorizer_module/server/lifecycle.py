"""A worker's state as the HTTP layer sees it: requests in flight, draining, and whether the service's
other workers have their models yet.

One WSGI wrapper sits outside Flask: it counts requests in flight (the ``clip_requests_in_flight``
gauge, which is what a SIGTERM drains) and collapses repeated slashes in the path, because Weaviate
builds URLs by concatenation and a base URL ending in '/' gives ``//vectorize`` (Flask would answer
that with a redirect, which Weaviate does not follow).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable
from typing import Any, Protocol

_SLASHES = re.compile(r"/{2,}")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _Gauge(Protocol):
    def set(self, value: float) -> None: ...


def collapse_slashes(path: str) -> str:
    return _SLASHES.sub("/", path or "/")


def _all_loaded() -> str | None:
    return None


class Lifecycle:
    """``peers_loading`` says why the service as a whole cannot serve yet (other workers still loading
    their models), or None once it can; alone, a worker has no peers to wait for."""

    def __init__(self, gauge: _Gauge | None = None, peers_loading: Callable[[], str | None] = _all_loaded) -> None:
        self._lock = threading.Lock()
        self._in_flight = 0
        self._gauge = gauge
        self.peers_loading = peers_loading
        self.draining = False

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def begin_drain(self) -> None:
        self.draining = True

    def _count(self, step: int) -> None:
        with self._lock:
            self._in_flight += step
            if self._gauge is not None:
                self._gauge.set(self._in_flight)

    def wrap(self, app: WSGIApp) -> WSGIApp:
        def counted(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            environ["PATH_INFO"] = collapse_slashes(environ.get("PATH_INFO", ""))
            self._count(1)
            try:
                # Our responses are small and fully built, so materialising them here is cheap and lets
                # the counter cover the whole request.
                return list(app(environ, start_response))
            finally:
                self._count(-1)

        return counted
