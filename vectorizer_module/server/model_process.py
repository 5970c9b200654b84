"""A worker's model in a process of its own: the worker runs the HTTP front and the Flask app, and a child
of the worker runs the engine (preprocessing, batching, forward passes), with a socket pair between them.

Why: on a small host the forward passes keep every core busy. In one process, the event loop that
answers the probes (live, ready and ``/meta``, which Weaviate asks on each of its readiness checks)
waited for a core behind torch's threads, then for the GIL behind the torch glue and the request threads
(2 cores, saturating object load: ``/meta`` p99 7.6 ms; with the loop's thread made real-time, 3.4 ms;
niceness or a shorter switch interval within the one process changed nothing). Here the model runs at a
lower CPU priority (``VECTORIZER_MODEL_NICE``) and the front's GIL is held only for HTTP, JSON and base64.
A nice value weighs a process against the others of its cgroup (a container) or session only, so the
service does not lose CPU to the rest of the host by it.

The child is forked before torch is imported (CUDA does not survive a fork; nothing in the front imports
it), takes a nice value, ignores the signals (the worker decides; the child ends when the worker's end
of the pipe closes, or with the worker through ``PR_SET_PDEATHSIG``) and serves the forward passes on
its initial thread (``batching.ModelThread``). Messages, pickled, on ``multiprocessing.connection``:

- front -> model: ``("answer", id, route, body, deadline)`` (an embedding route's work, ``answers.py``, so
  that its JSON and base64 work runs at the model's priority too); ``("cancel", id)`` once that
  request's client has gone;
- model -> front: ``("loaded", meta_body)`` once the model is loaded and warm; ``("result", id, Answer)``;
  ``("error", id, ServiceError)``. A model that cannot load ends the child with ``LOAD_FAILED_EXIT``.
"""

from __future__ import annotations

import ctypes
import functools
import gc
import itertools
import logging
import os
import signal
import socket
import stat
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from multiprocessing.connection import Connection, Pipe
from typing import NoReturn

from vectorizer_module.admission import Cancelled, never_cancelled
from vectorizer_module.answers import Answer
from vectorizer_module.config import Settings
from vectorizer_module.errors import ServiceError, Unavailable, past_deadline, still_loading
from vectorizer_module.metrics import Metrics
from vectorizer_module.models.loading import ModelSource
from vectorizer_module.server import priority
from vectorizer_module.server.board import WorkerBoard

log = logging.getLogger(__name__)
LOAD_FAILED_EXIT = 3  # also gunicorn's WORKER_BOOT_ERROR: the arbiter stops the service with it
CANCEL_POLL_SECONDS = 0.05  # how often a waiting request looks whether its client has gone
DEADLINE_SLACK_SECONDS = 5.0  # past its deadline, a request stops waiting for a model process that hangs
# signals the worker acts on; the model process leaves them to it (a terminal's Ctrl-C reaches both)
WORKER_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
WORKER_SIGNALS += (signal.SIGTTIN, signal.SIGTTOU, signal.SIGWINCH)
PR_SET_PDEATHSIG = 1


class _Pipe:
    """One end of the pipe: any thread sends, one message at a time; False once the other end is gone."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self._lock = threading.Lock()

    def send(self, message: tuple) -> bool:
        try:
            with self._lock:
                self.connection.send(message)
        except OSError:
            return False
        return True


def metrics_identifier(slot: int) -> str:
    """The name the model process's metric files carry (the worker's carry the slot number alone)."""
    return f"{slot}-model"


class RemoteEngine:
    """The engine as the Flask app sees it (``engine.Embedder``), served by the model process."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        connection: Connection,
        pid: int,
        on_loaded: Callable[[], None],
        on_exit: Callable[[int], None],
    ) -> None:
        """``on_loaded()`` once the model is loaded; ``on_exit(status)`` once the model process has exited
        (a signal's as its negative number); both on the thread that reads the pipe."""
        self.settings = settings
        self.metrics = metrics
        self.pid = pid
        self.on_loaded = on_loaded
        self.on_exit = on_exit
        self._pipe = _Pipe(connection)
        self._ids = itertools.count()
        self._pending: dict[int, Future] = {}
        self._meta_body = b""
        self._loaded = threading.Event()
        self._gone: ServiceError | None = None
        threading.Thread(target=self._read, name="model-process-reader", daemon=True).start()

    @property
    def ready(self) -> bool:
        return self._loaded.is_set() and self._gone is None

    @property
    def meta_body(self) -> bytes:
        return self._meta_body

    def answer(
        self, route: str, body: bytes, *, deadline: float | None = None, cancelled: Cancelled = never_cancelled
    ) -> Answer:
        if not self.ready:
            raise self._gone or still_loading()
        if deadline is None:
            deadline = time.monotonic() + self.settings.request_deadline
        call_id = next(self._ids)
        future: Future = Future()
        self._pending[call_id] = future
        try:
            self._send(("answer", call_id, route, body, deadline))
            while True:
                try:
                    return future.result(timeout=CANCEL_POLL_SECONDS)
                except TimeoutError:
                    pass
                if cancelled is not never_cancelled and cancelled():
                    self._send(("cancel", call_id))  # the model process answers it at once
                    cancelled = never_cancelled
                if time.monotonic() > deadline + DEADLINE_SLACK_SECONDS:
                    self._send(("cancel", call_id))
                    raise past_deadline()
        finally:
            self._pending.pop(call_id, None)

    def _send(self, message: tuple) -> None:
        if not self._pipe.send(message):
            raise self._gone or Unavailable("the model process is gone; retry")

    def _read(self) -> None:
        try:
            while True:
                kind, *rest = self._pipe.connection.recv()
                if kind == "loaded":
                    self._meta_body = rest[0]
                    self._loaded.set()
                    self.on_loaded()
                    continue
                future = self._pending.get(rest[0])
                if future is None or future.done():
                    continue  # its request stopped waiting
                if kind == "result":
                    future.set_result(rest[1])
                else:
                    future.set_exception(rest[1])
        except (EOFError, OSError):
            pass
        _, wait_status = os.waitpid(self.pid, 0)
        status = os.waitstatus_to_exitcode(wait_status)
        self._gone = Unavailable(f"the worker's model process exited (status {status}); retry", reason="model_exited")
        for future in list(self._pending.values()):
            if not future.done():
                future.set_exception(self._gone)
        self.on_exit(status)


def start(
    settings: Settings,
    source: ModelSource,
    board: WorkerBoard,
    slot: int,
    metrics: Metrics,
    on_loaded: Callable[[], None],
    on_exit: Callable[[int], None],
) -> RemoteEngine:
    """Fork the model process of the worker in ``slot``; the engine as the worker's app uses it."""
    ours, theirs = Pipe(duplex=True)
    pid = os.fork()
    if pid == 0:  # the model process
        ours.close()
        _run_model_process(theirs, settings, source, board, slot)
    theirs.close()
    return RemoteEngine(settings, metrics, ours, pid, on_loaded, on_exit)


def _run_model_process(
    connection: Connection, settings: Settings, source: ModelSource, board: WorkerBoard, slot: int
) -> NoReturn:
    try:
        _close_listeners()
        for number in WORKER_SIGNALS:
            signal.signal(number, signal.SIG_IGN)
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() == 1:  # the worker died before the line above
            os._exit(0)
        priority.for_model(settings.model_nice)
        ModelServer(connection, settings, source, board, slot).run()
    except BaseException:  # noqa: BLE001 - a child of the worker must not return into gunicorn's code
        log.exception("could not start the model process")  # as a model that cannot load: stop, no restarts
        logging.shutdown()
        os._exit(LOAD_FAILED_EXIT)
    logging.shutdown()
    os._exit(0)


def _close_listeners() -> None:
    """Close this process's copies of the listening sockets: one kept open here after the workers closed
    theirs at shutdown would let the kernel queue connections that are then reset, not refused."""
    for fd in map(int, os.listdir("/proc/self/fd")):
        try:
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                continue
            sock = socket.socket(fileno=fd)
        except OSError:  # the listing's own descriptor, closed already
            continue
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            sock.close()
        else:
            sock.detach()


class ModelServer:
    """The model process: the engine, the calls from the front on a pool of threads, and the forward passes
    on this process's initial thread."""

    def __init__(
        self, connection: Connection, settings: Settings, source: ModelSource, board: WorkerBoard, slot: int
    ) -> None:
        from prometheus_client import values

        from vectorizer_module.admission import QueueBudget
        from vectorizer_module.batching import ModelThread
        from vectorizer_module.engine import Engine
        from vectorizer_module.metrics import multiprocess

        if multiprocess():
            values.ValueClass = values.MultiProcessValue(functools.partial(metrics_identifier, slot))
        self.pipe = _Pipe(connection)
        self.model_thread = ModelThread()
        budget = QueueBudget(settings.max_queue, board.waiting_cells(), slot)
        self.engine = Engine(settings, source, Metrics(), budget, self.model_thread)
        self.pool = ThreadPoolExecutor(settings.server_threads, thread_name_prefix="model-call")
        self.cancelled: dict[int, threading.Event] = {}
        self._closed = threading.Event()

    def run(self) -> None:
        threading.Thread(target=self._load, name="model-loader", daemon=True).start()
        threading.Thread(target=self._read, name="front-reader", daemon=True).start()
        self.model_thread.serve(until=self._closed.is_set)

    def _load(self) -> None:
        try:
            self.engine.load()
        except BaseException as exc:  # noqa: BLE001 - the worker cannot serve without its model
            log.critical(
                "could not load the model from %s: %s: %s",
                self.engine.source.root,
                type(exc).__name__,
                exc,
                exc_info=not isinstance(exc, (RuntimeError, OSError)),
            )
            logging.shutdown()
            os._exit(LOAD_FAILED_EXIT)
        # torch, transformers and the model leave ~10^5 long-lived objects; a full collection scans them
        # all (140 ms on our 2-core host, every thread stopped). Frozen, they are never scanned again.
        gc.freeze()
        self._send(("loaded", self.engine.meta_body))

    def _read(self) -> None:
        try:
            while True:
                kind, call_id, *rest = self.pipe.connection.recv()
                if kind == "cancel":
                    event = self.cancelled.get(call_id)
                    if event is not None:
                        event.set()
                elif kind == "answer":
                    self.cancelled[call_id] = threading.Event()
                    self.pool.submit(self._answer, call_id, *rest)
        except (EOFError, OSError):
            pass  # the worker closed its end: it is exiting
        self._closed.set()

    def _answer(self, call_id: int, route: str, body: bytes, deadline: float) -> None:
        try:
            found = self.engine.answer(route, body, deadline=deadline, cancelled=self.cancelled[call_id].is_set)
            answer: tuple = ("result", call_id, found)
        except ServiceError as exc:
            answer = ("error", call_id, exc)
        except Exception as exc:  # noqa: BLE001 - the front answers it with a 500
            log.exception("%s failed in the model process", route)
            answer = ("error", call_id, ServiceError(f"internal error in the model process: {type(exc).__name__}"))
        finally:
            self.cancelled.pop(call_id, None)
        self._send(answer)

    def _send(self, message: tuple) -> None:
        if not self.pipe.send(message):
            self._closed.set()
