"""Process-level state the HTTP layer needs: requests in flight, and whether we are shutting down.

Two WSGI wrappers sit outside Flask: one counts requests in flight (so that SIGTERM can wait for
them), one collapses repeated slashes in the path, because Weaviate builds URLs by concatenation and a
base URL ending in '/' gives ``//vectorize`` (Flask would answer that with a redirect, which Weaviate
does not follow).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

_SLASHES = re.compile(r"/{2,}")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def collapse_slashes(path: str) -> str:
    return _SLASHES.sub("/", path or "/")


class Lifecycle:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._in_flight = 0
        self.draining = False

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def begin_drain(self) -> None:
        self.draining = True

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no request is in flight; False if ``timeout`` seconds passed first."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def wrap(self, app: WSGIApp) -> WSGIApp:
        def counted(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            environ["PATH_INFO"] = collapse_slashes(environ.get("PATH_INFO", ""))
            with self._lock:
                self._in_flight += 1
            try:
                # Our responses are small and fully built, so materialising them here is cheap and lets
                # the counter cover the whole request.
                return list(app(environ, start_response))
            finally:
                with self._idle:
                    self._in_flight -= 1
                    if not self._in_flight:
                        self._idle.notify_all()

        return counted
