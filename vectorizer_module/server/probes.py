"""The health probes and ``/meta``, answered on waitress's I/O thread.

Weaviate asks ``/meta`` on each of its own readiness probes, and orchestrators poll live and ready;
they must be answered at once while the model keeps the machine busy. Through Flask each probe goes
from waitress's I/O thread to a worker thread and its answer back again: two thread wake-ups that on
a saturated host cost far more than the answer (p99 13-20 ms each way on two busy cores, against a
handler of 1-2 ms). Their answers are fixed bytes, so the I/O thread writes them itself as soon as it
has parsed the request.

Only the plain case is answered here: a GET over HTTP/1.1 without a body, the only request queued on
its connection, the model ready and the service not draining, and for ``/meta`` no API key set.
Everything else (503 while loading or draining, 401, HEAD, HTTP/1.0, a request pipelined behind
another) goes the usual way through Flask, which stays the one place that builds errors.
"""

from __future__ import annotations

import email.utils
import logging
import threading
import time
import uuid
from http import HTTPStatus
from typing import Any, NamedTuple

from waitress.channel import ClientDisconnected

from vectorizer_module.engine import Engine
from vectorizer_module.server import access
from vectorizer_module.server.lifecycle import Lifecycle, collapse_slashes

log = logging.getLogger(__name__)
META, LIVE, READY = "/meta", "/.well-known/live", "/.well-known/ready"


class Answer(NamedTuple):
    endpoint: str
    status: int
    request_id: str
    payload: bytes  # the whole HTTP response


class ProbeAnswers:
    """Decides whether a parsed request is a plain probe, and writes its whole response."""

    def __init__(self, engine: Engine, lifecycle: Lifecycle, server_name: str) -> None:
        self.engine = engine
        self.lifecycle = lifecycle
        self.server_name = server_name  # the Server header waitress sends on every other response

    def answer(self, request: Any) -> Answer | None:
        """The response to ``request`` (a waitress request parser), or None to leave it to Flask."""
        if (
            request.error is not None
            or request.command != "GET"
            or request.version != "1.1"
            or request.content_length
            or request.chunked
        ):
            return None
        endpoint = collapse_slashes(request.path).rstrip("/")
        if endpoint == LIVE:
            status, body = 204, None
        elif endpoint in (META, READY) and self.engine.ready and not self.lifecycle.draining:
            if endpoint == READY:
                status, body = 204, None
            elif self.engine.settings.api_key:
                return None  # the key is checked in one place: the Flask app
            else:
                status, body = 200, self.engine.meta_body
        else:
            return None
        request_id = request.headers.get("X_REQUEST_ID", "")[:64] or uuid.uuid4().hex
        head = [
            f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
            f"Date: {email.utils.formatdate(usegmt=True)}",
            f"Server: {self.server_name}",
            f"X-Request-Id: {request_id}",
        ]
        if body is not None:
            head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        if request.connection_close:
            head.append("Connection: close")
        payload = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + (body or b"")
        return Answer(endpoint, status, request_id, payload)


def answer_probes_inline(server: Any, answers: ProbeAnswers) -> None:
    """Make the waitress ``server`` answer plain probes on the thread that runs its loop.

    A channel hands its first queued request to ``task_dispatcher.add_task`` from the loop's thread
    (inside ``received``, holding the channel's ``requests_lock``); a plain probe is answered there
    instead: its response goes into the channel's output buffer, which the loop sends on its next turn.
    Requests queued behind another one reach ``add_task`` from a worker thread and go to a worker.
    """
    dispatcher = server.task_dispatcher
    queue_for_worker = dispatcher.add_task
    run = server.run
    loop_thread: list[int] = []
    metrics = answers.engine.metrics

    def run_loop() -> None:
        loop_thread.append(threading.get_ident())
        run()

    def add_task(channel: Any) -> None:
        if threading.get_ident() not in loop_thread or len(channel.requests) != 1:
            queue_for_worker(channel)
            return
        started = time.perf_counter()
        request = channel.requests[0]
        try:
            found = answers.answer(request)
        except Exception:  # noqa: BLE001 - the loop must survive; Flask will answer instead
            log.exception("probe fast path failed; passing the request to a worker")
            found = None
        if found is None:
            queue_for_worker(channel)
            return
        channel.requests.pop()
        request.close()
        try:
            channel.write_soon(found.payload)
        except ClientDisconnected:
            return
        if request.connection_close:
            channel.close_when_flushed = True
        access.record(metrics, "GET", found.endpoint, found.status, time.perf_counter() - started, found.request_id)

    server.run = run_loop
    dispatcher.add_task = add_task
