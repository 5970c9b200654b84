"""Serving: gunicorn's arbiter pre-forks ``VECTORIZER_WORKERS`` worker processes on one listening socket.

Each worker is gunicorn's threaded worker (``gthread``): a pool of ``VECTORIZER_THREADS`` threads runs
the Flask app and feeds that worker's own batcher and model replica. The arbiter never imports torch:
each worker loads its model after the fork (CUDA does not survive a fork), with its torch and OpenMP
threads set to its share of the cores first. A worker that dies is replaced by the arbiter.

Start-up: the port is opened first (a port in use fails at once, in one line), then the workers start;
each answers ``live`` at once and ``ready`` with 503 until every worker has its model loaded and warm.
A worker whose model cannot load exits with status 3, which stops the whole service with status 3.
A replacement worker started later accepts no connection until its model is loaded, so the service
stays ready while it loads and no request meets a worker without a model.

SIGTERM: the arbiter closes the listening socket and passes SIGTERM to every worker; each one answers
``ready`` and new work with 503, finishes the requests it has (up to ``VECTORIZER_SHUTDOWN_GRACE``
seconds; the arbiter kills what is left after that), then exits; the service exits 0. SIGINT or SIGQUIT
stops at once.

What the workers share lives on a ``board`` (``board.py``) in memory shared among them, and in
prometheus_client's multiprocess directory for ``/metrics``; both are made before the first fork.
"""

from __future__ import annotations

import errno
import functools
import gc
import logging
import math
import os
import resource
import selectors
import shutil
import socket
import tempfile
import threading
import time
from typing import Any

from gunicorn import glogging, http
from gunicorn.app.base import BaseApplication
from gunicorn.workers.gthread import TConn, ThreadWorker

from vectorizer_module.config import Settings
from vectorizer_module.models.loading import ModelSource
from vectorizer_module.server.board import WorkerBoard

log = logging.getLogger(__name__)
LOAD_FAILED_EXIT = 3  # also gunicorn's WORKER_BOOT_ERROR: the arbiter stops the service with it
LISTEN_BACKLOG = 2048
# kept-alive connections stay open this long between requests (Go's HTTP client, which Weaviate uses,
# keeps idle connections 90 s; closing them sooner only costs new handshakes)
KEEPALIVE_SECONDS = 120
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
HEAD_READ = 65536
HEAD_LIMIT = 65536  # a head this long without its end goes on to gunicorn's parser, which refuses it
MAX_AUTO_CONNECTIONS = 10_000
# at shutdown a worker stops waiting for its requests once the grace period is over, but notices that
# up to a second late (gthread waits for events in 1 s steps); the arbiter kills it this much later, so
# that the worker, not the kill, ends it and says what was still running
KILL_MARGIN_SECONDS = 2


class PortInUse(OSError):
    """The address cannot be listened on; the message names the address and the settings."""


def open_listener(settings: Settings) -> socket.socket:
    """The listening socket, opened here rather than by gunicorn so that an address in use fails at
    once with one clear line (gunicorn would retry five times, logging each), and port 0 is resolved."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    try:
        return socket.create_server((settings.host, settings.port), family=family, backlog=LISTEN_BACKLOG)
    except OSError as exc:
        raise PortInUse(
            f"cannot listen on {settings.host}:{settings.port} ({exc.strerror or exc}); choose another port with "
            "--port / VECTORIZER_PORT, or another address with --host / VECTORIZER_HOST"
        ) from None


class PatientSocket(socket.socket):
    """A client socket whose blocking mode has a timeout: a client that stops sending in the middle of a
    body raises ``TimeoutError`` in the reading thread instead of holding it for ever."""

    __slots__ = ()
    timeout_seconds = 10.0  # VECTORIZER_CLIENT_TIMEOUT, set once per worker

    def setblocking(self, flag: bool) -> None:
        if flag:
            self.settimeout(self.timeout_seconds)
        else:
            super().setblocking(False)


class ModelWorker(ThreadWorker):
    """gunicorn's threaded worker, with these changes:

    - it accepts connections only when the service would answer them (``WorkerService.may_accept``);
    - SIGTERM marks it draining at once, and once it stops accepting it takes in its listen backlog
      and closes its copy of the socket (``_stop_listening``);
    - a connection reaches an HTTP thread only once its request head is complete: until then it waits in
      the event loop, which closes it after ``VECTORIZER_CLIENT_TIMEOUT``. gunicorn's own worker hands a
      new connection to a thread that waits up to 5 s for its first byte, so a few hundred idle
      connections held every thread for minutes, probes included. Client sockets are ``PatientSocket``s;
    - it stops waiting for its requests at the grace period, ahead of the arbiter's kill.
    """

    app: ServiceApplication

    def init_process(self) -> None:
        PatientSocket.timeout_seconds = self.app.settings.client_timeout
        # this process's copy of the config: the worker gives up at the grace period itself, before the
        # arbiter's kill at the grace period + KILL_MARGIN_SECONDS
        self.cfg.set("graceful_timeout", grace_seconds(self.app.settings))
        super().init_process()

    def set_accept_enabled(self, enabled: bool) -> None:
        super().set_accept_enabled(enabled and self.app.service.may_accept())
        if not enabled and not self.alive:
            self._stop_listening()

    def _stop_listening(self) -> None:
        """At shutdown: take in every connection already waiting in the listen backlog (each is answered,
        503 with ``Connection: close``), then close this worker's copy of the socket. Once every process
        has closed it, new connections are refused at once; left open until the worker exits, they would
        queue unanswered and be reset then."""
        for listener in self.sockets:
            listener.setblocking(False)
            while self._take(listener):
                pass
            listener.close()

    def accept(self, listener: socket.socket) -> None:
        self._take(listener)

    def _take(self, listener: socket.socket) -> bool:
        """Accept one connection into the event loop; False when none was waiting."""
        try:
            client, address = listener.accept()
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE):
                log.warning("cannot accept a connection: %s; see VECTORIZER_MAX_CONNECTIONS", exc.strerror)
                time.sleep(0.05)  # the listener stays readable: do not spin
            elif exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.ECONNABORTED, errno.EBADF):
                raise
            return False
        self.nr_conns += 1
        self._await_head(TConn(self.cfg, PatientSocket(fileno=client.detach()), address, listener.getsockname()))
        return True

    def on_client_socket_readable(self, conn: TConn, client: socket.socket) -> None:
        """A kept-alive connection has bytes of a next request: wait for all of its head, as for a new one."""
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self._await_head(conn)

    def _await_head(self, conn: TConn) -> None:
        conn.head = bytearray()
        conn.timeout = time.monotonic() + self.app.settings.client_timeout
        conn.sock.setblocking(False)
        self.pending_conns.append(conn)  # murder_pending closes it once its timeout passes
        self.poller.register(conn.sock, selectors.EVENT_READ, functools.partial(self._read_head, conn))

    def _read_head(self, conn: TConn, client: socket.socket) -> None:
        try:
            data = client.recv(HEAD_READ)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            conn.head += data
            if b"\r\n\r\n" not in conn.head and len(conn.head) < HEAD_LIMIT:
                return  # not a whole request head yet (an oversized one goes on to be refused)
        self.poller.unregister(client)
        self.pending_conns.remove(conn)
        if not data:  # closed before sending a request
            self.nr_conns -= 1
            conn.close()
            return
        if conn.parser is None:
            conn.parser = http.get_parser(self.cfg, conn.sock, conn.client)
        conn.parser.unreader.unread(bytes(conn.head))
        conn.data_ready = True
        self.enqueue_req(conn)

    def handle_exit(self, sig: int, frame: Any) -> None:
        self.app.service.begin_drain()
        super().handle_exit(sig, frame)

    def wake(self) -> None:
        """Have the worker's main loop look again at once (thread-safe)."""
        self.method_queue.defer(lambda: None)


class GunicornLogs(glogging.Logger):
    """gunicorn's own messages go through the service's log handler (JSON lines or text); its access
    log stays off (the app logs each request itself, with request ids and sizes)."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for logger in (self.error_log, self.access_log):
            for handler in list(logger.handlers):
                logger.removeHandler(handler)
            logger.propagate = True


class WorkerService:
    """One worker's engine, lifecycle and Flask app, built after the fork."""

    def __init__(self, settings: Settings, source: ModelSource, board: WorkerBoard, worker: ModelWorker) -> None:
        from vectorizer_module.admission import QueueBudget
        from vectorizer_module.engine import Engine
        from vectorizer_module.metrics import Metrics
        from vectorizer_module.server.app import create_app
        from vectorizer_module.server.lifecycle import Lifecycle

        self.board = board
        self.slot: int = worker.board_slot
        self.worker = worker
        metrics = Metrics()
        metrics.worker_starts.inc()
        metrics.worker_ready.set(0)
        budget = QueueBudget(settings.max_queue, board.waiting_cells(), self.slot)
        self.engine = Engine(settings, source, metrics, budget)
        self.lifecycle = Lifecycle(gauge=metrics.in_flight, peers_loading=board.peers_loading)
        self.wsgi = self.lifecycle.wrap(create_app(self.engine, self.lifecycle))
        threading.Thread(target=self._load, name="model-loader", daemon=True).start()

    def may_accept(self) -> bool:
        """At start-up every worker accepts at once (``live`` answers, ``ready`` says 503); a worker
        started after the service was ready (a replacement) accepts only once its model is loaded."""
        return self.engine.ready or not self.board.started()

    def begin_drain(self) -> None:
        if not self.lifecycle.draining:
            log.info(
                "SIGTERM received: refusing new work, waiting for %d request(s) in flight", self.lifecycle.in_flight
            )
        self.lifecycle.begin_drain()

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
        self.board.mark_loaded(self.slot)
        self.engine.metrics.worker_ready.set(1)
        # torch, transformers and the model leave ~10^5 long-lived objects; a full collection scans them
        # all (140 ms on our 2-core host, every thread stopped). Frozen, they are never scanned again.
        gc.freeze()
        self.worker.wake()


class ServiceApplication(BaseApplication):
    """gunicorn's application: its settings from ours, its hooks, and a ``WorkerService`` per worker."""

    def __init__(self, settings: Settings, source: ModelSource, listener: socket.socket, board: WorkerBoard) -> None:
        self.settings = settings
        self.source = source
        self.address = listener.getsockname()[:2]
        self.listener_fd = listener.detach()  # gunicorn owns (and closes) the socket from here on
        self.board = board
        self.service: WorkerService | None = None
        self._worker: ModelWorker | None = None
        super().__init__(prog="clip-vectorizer")

    def load_config(self) -> None:
        settings = self.settings
        values = {
            "bind": [f"fd://{self.listener_fd}"],
            "workers": settings.worker_count,
            "worker_class": ModelWorker,
            "threads": settings.server_threads,
            "worker_connections": max_connections(settings),
            "keepalive": KEEPALIVE_SECONDS,
            "graceful_timeout": grace_seconds(settings) + KILL_MARGIN_SECONDS,  # the arbiter's kill
            "backlog": LISTEN_BACKLOG,
            "accesslog": None,
            "errorlog": "-",
            "loglevel": settings.log_level,
            "logger_class": GunicornLogs,
            "proc_name": "clip-vectorizer",
            "control_socket_disable": True,
            "pre_fork": self._pre_fork,
            "post_fork": self._post_fork,
            "child_exit": self._child_exit,
            "worker_exit": self._worker_exit,
            "when_ready": self._when_ready,
        }
        for key, value in values.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        """In each worker, after the fork: its service, whose model loads in the background."""
        self.service = WorkerService(self.settings, self.source, self.board, self._worker)
        return self.service.wsgi

    # -- hooks, in the arbiter ---------------------------------------------------------------------
    def _pre_fork(self, arbiter: Any, worker: ModelWorker) -> None:
        worker.board_slot = self.board.claim_slot(live=arbiter.WORKERS.keys())

    def _child_exit(self, _arbiter: Any, worker: ModelWorker) -> None:
        from prometheus_client import multiprocess

        self.board.clear_slot(worker.board_slot)
        multiprocess.mark_process_dead(worker.pid)

    def _when_ready(self, _arbiter: Any) -> None:
        host, port = self.address
        log.info(
            "listening on http://%s:%s (model %s, %s layout; %d worker(s) x %d HTTP threads, %d torch thread(s) "
            "each); loading the model",
            host,
            port,
            self.source.root,
            self.source.layout,
            self.settings.worker_count,
            self.settings.server_threads,
            self.settings.threads_per_worker,
        )

    # -- hooks, in the worker ----------------------------------------------------------------------
    def _post_fork(self, _arbiter: Any, worker: ModelWorker) -> None:
        self._worker = worker
        self.board.take_slot(worker.board_slot)
        for variable in THREAD_VARIABLES:  # read by torch's OpenMP and BLAS when torch is imported
            os.environ[variable] = str(self.settings.threads_per_worker)

    def _worker_exit(self, _arbiter: Any, _worker: ModelWorker) -> None:
        if self.service is None or not self.service.lifecycle.draining:
            return
        left = self.service.lifecycle.in_flight
        if left:
            log.warning("shutdown: grace period over with %d request(s) still running; exiting", left)
        else:
            log.info("shutdown: the requests in flight finished")


def grace_seconds(settings: Settings) -> int:
    """``VECTORIZER_SHUTDOWN_GRACE`` in whole seconds, as gunicorn counts them."""
    return math.ceil(settings.shutdown_grace)


def raise_file_limit() -> int:
    """Raise this process's open-file limit to its hard limit (workers inherit it); the soft limit then."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (OSError, ValueError):
            pass
    return soft


def max_connections(settings: Settings) -> int:
    """Connections per worker: the setting, or half the file limit (the rest is for the model's files,
    pipes and the like), at most ``MAX_AUTO_CONNECTIONS``; never fewer than the HTTP threads."""
    limit = settings.max_connections or min(MAX_AUTO_CONNECTIONS, resource.getrlimit(resource.RLIMIT_NOFILE)[0] // 2)
    return max(limit, settings.server_threads + 1)


def serve(settings: Settings, source: ModelSource) -> int:
    """Run the service until it is stopped; its exit status (0, or 3 when a model failed to load)."""
    raise_file_limit()
    listener = open_listener(settings)
    shared = tempfile.mkdtemp(prefix="clip-vectorizer-metrics-")
    # read when prometheus_client is first imported, which only the workers do (after this)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = shared
    arbiter = os.getpid()
    try:
        ServiceApplication(settings, source, listener, WorkerBoard(settings.worker_count)).run()
    except SystemExit as stop:
        if os.getpid() != arbiter:
            raise  # a worker leaving (forked inside run): gunicorn's exit status stands
        return stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    finally:
        if os.getpid() == arbiter:
            shutil.rmtree(shared, ignore_errors=True)
    return 0
