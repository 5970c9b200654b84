"""Serving: gunicorn's arbiter pre-forks ``VECTORIZER_WORKERS`` worker processes on one listening socket.

Each worker runs the service's own HTTP front (``front.py``): an event loop that reads whole requests
and a pool of ``VECTORIZER_THREADS`` threads that run the Flask app, whose embedding routes are answered
by that worker's own model process (``model_process.py``: engine, batcher and model replica, at a lower
CPU priority). Neither the arbiter nor a worker imports torch: each worker forks its model process,
which loads the model (CUDA does not survive a fork), with its torch and OpenMP threads set to the
worker's share of the cores first. A worker that dies, or whose model process dies, is replaced by the
arbiter.

Start-up: the port is opened first (a port in use fails at once, in one line), then the workers start;
each answers ``live`` at once and ``ready`` with 503 until every worker has its model loaded and warm.
A worker whose model cannot load exits with status 3, which stops the whole service with status 3.
A replacement worker started later accepts no connection until its model is loaded, so the service
stays ready while it loads and no request meets a worker without a model.

SIGTERM: the arbiter closes the listening socket and passes SIGTERM to every worker; each one answers
``ready`` and new work with 503, finishes the requests it has (up to ``VECTORIZER_SHUTDOWN_GRACE``
seconds; the arbiter kills what is left a little after that), then exits; the service exits 0. SIGINT
or SIGQUIT stops at once. SIGHUP, SIGTTIN and SIGTTOU are logged and ignored. A worker whose arbiter
has died (SIGKILL) notices within a second, closes its copy of the socket and drains as on SIGTERM.

What the workers share lives on a ``board`` (``board.py``) in memory shared among them, and in
prometheus_client's multiprocess directory for ``/metrics``; both are made before the first fork. A
worker writes its metric files under its board slot's number, not its pid, so a replacement continues
its predecessor's files instead of adding new ones.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import re
import resource
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gunicorn import glogging
from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.workers.base import Worker

from vectorizer_module.config import Settings
from vectorizer_module.errors import ServiceError
from vectorizer_module.models.loading import ModelSource
from vectorizer_module.server import priority
from vectorizer_module.server.board import WorkerBoard
from vectorizer_module.server.front import Front
from vectorizer_module.server.model_process import LOAD_FAILED_EXIT, metrics_identifier

log = logging.getLogger(__name__)
LISTEN_BACKLOG = 2048
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
MAX_AUTO_CONNECTIONS = 10_000
# a worker ends its own drain at the grace period; the arbiter kills it this much later, so that the
# worker, not the kill, ends it and says what was still running
KILL_MARGIN_SECONDS = 2
METRICS_PREFIX = "clip-vectorizer-metrics-"


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


class ServiceArbiter(Arbiter):
    """gunicorn's arbiter, except that SIGHUP (reload) and SIGTTIN/SIGTTOU (one worker more or less) are
    logged and ignored: a reload would fork new workers beside the old ones, beyond the board's slots,
    and the worker count is a setting. Restart the service to change its settings or model."""

    def handle_hup(self) -> None:
        log.warning("SIGHUP ignored: the service does not reload; restart it to change its settings or model")

    def handle_ttin(self) -> None:
        log.warning("SIGTTIN ignored: the worker count is fixed by VECTORIZER_WORKERS; restart to change it")

    def handle_ttou(self) -> None:
        log.warning("SIGTTOU ignored: the worker count is fixed by VECTORIZER_WORKERS; restart to change it")


class ModelWorker(Worker):
    """A gunicorn worker (its documented extension point: ``init_process``, ``run``, ``notify``,
    ``handle_exit``) whose main loop is the service's own HTTP front (``front.py``). It accepts
    connections only when the service would answer them (``WorkerService.may_accept``); SIGTERM, or the
    arbiter's death, starts the drain; SIGHUP, SIGTTIN and SIGTTOU are ignored."""

    app: ServiceApplication
    front: Front | None = None

    def init_signals(self) -> None:
        super().init_signals()
        for ignored in (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU):
            signal.signal(ignored, signal.SIG_IGN)

    def run(self) -> None:
        settings, service = self.app.settings, self.app.service
        self.front = Front(
            self.sockets[0],
            service.wsgi,
            threads=settings.server_threads,
            max_connections=max_connections(settings),
            max_body=settings.max_body_bytes,
            client_timeout=settings.client_timeout,
            grace=settings.shutdown_grace,
            multiprocess=settings.worker_count > 1,
            may_accept=service.may_accept,
            on_tick=self._tick,
            on_refusal=service.refused,
        )
        service.wake = self.front.wake
        service.on_model_exit = self._model_exited
        if not self.alive:  # SIGTERM came while the front was being built
            self._drain("SIGTERM received")
        if service.model_exit_status is not None:  # the model process ended before the front was built
            self._model_exited(service.model_exit_status)
        drained = self.front.run()
        service.report_exit(drained)
        # Exit now: nothing is left to flush (answers are in the kernel's buffers, metrics in shared files).
        # The model process sees its pipe close and exits too.
        logging.shutdown()
        os._exit(0 if service.model_exit_status is None else 1)

    def _model_exited(self, status: int) -> None:
        self.alive = False
        self._drain(f"the model process exited (status {status})")

    def _tick(self) -> None:
        self.notify()  # the arbiter's heartbeat
        if self.alive and os.getppid() != self.ppid:
            self.alive = False
            self._drain(f"the arbiter (pid {self.ppid}) is gone")

    def _drain(self, why: str) -> None:
        self.app.service.begin_drain(why)
        if self.front is not None:
            self.front.begin_drain()

    def handle_exit(self, sig: int, frame: Any) -> None:
        self.alive = False
        if self.app.service is not None:
            self._drain("SIGTERM received")


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
    """One worker's lifecycle and Flask app, built after the fork, and its model process
    (``model_process.py``), forked from it before anything imports torch."""

    def __init__(self, settings: Settings, source: ModelSource, board: WorkerBoard, slot: int) -> None:
        from prometheus_client import values

        from vectorizer_module.metrics import Metrics, multiprocess
        from vectorizer_module.server import model_process
        from vectorizer_module.server.app import create_app
        from vectorizer_module.server.lifecycle import Lifecycle

        self.board = board
        self.slot = slot
        if multiprocess():  # each worker's metric files are named by its slot, not its pid
            values.ValueClass = values.MultiProcessValue(functools.partial(str, slot))
        self.metrics = metrics = Metrics()
        metrics.worker_starts.inc()
        metrics.set_worker_ready(False)
        self.wake: Callable[[], None] = lambda: None  # the front's, once it runs
        self.on_model_exit: Callable[[int], None] = lambda status: None  # the worker's, once it runs
        self.model_exit_status: int | None = None
        self.engine = model_process.start(settings, source, board, slot, metrics, self._loaded, self._model_exited)
        priority.for_front()  # after the fork: the model process keeps the default
        self.lifecycle = Lifecycle(gauge=metrics.in_flight, peers_loading=board.peers_loading)
        self.wsgi = self.lifecycle.wrap(create_app(self.engine, self.lifecycle))

    def may_accept(self) -> bool:
        """At start-up every worker accepts at once (``live`` answers, ``ready`` says 503); a worker
        started after the service was ready (a replacement) accepts only once its model is loaded."""
        return self.engine.ready or not self.board.started()

    def begin_drain(self, why: str) -> None:
        if not self.lifecycle.draining:
            log.info("%s: refusing new work, waiting for %d request(s) in flight", why, self.lifecycle.in_flight)
        self.lifecycle.begin_drain()

    def report_exit(self, drained: bool) -> None:
        if drained:
            log.info("shutdown: the requests in flight finished")
        else:
            log.warning(
                "shutdown: grace period over with %d request(s) still running; exiting", self.lifecycle.in_flight
            )

    def refused(self, error: ServiceError, path: str) -> None:
        """A request the HTTP front answered itself (framing, size, timeout, connection limit)."""
        self.metrics.rejected.labels(error.reason).inc()
        log.info("%d before the app (%s): %s", error.status, path, error.message)

    def _loaded(self) -> None:
        self.board.mark_loaded(self.slot)
        self.metrics.set_worker_ready(True)
        self.wake()

    def _model_exited(self, status: int) -> None:
        """The model process is gone: a model that cannot load stops the service (status 3, as before
        the fork); otherwise this worker drains, exits, and the arbiter starts another."""
        if status == LOAD_FAILED_EXIT:
            logging.shutdown()
            os._exit(LOAD_FAILED_EXIT)
        log.error("the model process exited with status %d; this worker will be replaced", status)
        self.model_exit_status = status
        self.metrics.set_worker_ready(False)
        self.on_model_exit(status)
        self.wake()


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

    def run(self) -> None:
        """gunicorn's ``BaseApplication.run``, with the arbiter above."""
        try:
            ServiceArbiter(self).run()
        except RuntimeError as exc:
            print(f"\nError: {exc}\n", file=sys.stderr)
            sys.exit(1)

    def load_config(self) -> None:
        settings = self.settings
        values = {
            "bind": [f"fd://{self.listener_fd}"],
            "workers": settings.worker_count,
            "worker_class": ModelWorker,
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
            "when_ready": self._when_ready,
        }
        for key, value in values.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        """In each worker, after the fork: its service, whose model loads in the background."""
        self.service = WorkerService(self.settings, self.source, self.board, self._worker.board_slot)
        return self.service.wsgi

    # -- hooks, in the arbiter ---------------------------------------------------------------------
    def _pre_fork(self, arbiter: Any, worker: ModelWorker) -> None:
        worker.board_slot = self.board.claim_slot(live=arbiter.WORKERS.keys())

    def _child_exit(self, _arbiter: Any, worker: ModelWorker) -> None:
        from prometheus_client import multiprocess

        self.board.clear_slot(worker.board_slot)
        multiprocess.mark_process_dead(str(worker.board_slot))  # its live gauges; counters stay, by slot
        multiprocess.mark_process_dead(metrics_identifier(worker.board_slot))  # its model process's

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


def remove_stale_metrics(folder: str) -> list[str]:
    """Delete the metrics folders of services that died without cleaning up (their arbiter was killed);
    a folder's name carries its arbiter's pid. The folders removed."""
    removed = []
    for path in Path(folder).glob(METRICS_PREFIX + "*"):
        found = re.match(re.escape(METRICS_PREFIX) + r"(\d+)-", path.name)
        if found is None or not path.is_dir() or _alive(int(found.group(1))):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(str(path))
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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


def serve(settings: Settings, source: ModelSource, notes: Sequence[str] = ()) -> int:
    """Run the service until it is stopped; its exit status (0, or 3 when a model failed to load).
    ``notes``: start-up decisions to log once the port is ours (a port in use stays a one-line error)."""
    raise_file_limit()
    listener = open_listener(settings)
    for note in notes:
        log.info("%s", note)
    for stale in remove_stale_metrics(tempfile.gettempdir()):
        log.info("removed the metrics folder of a service that is gone: %s", stale)
    shared = tempfile.mkdtemp(prefix=f"{METRICS_PREFIX}{os.getpid()}-")
    # read by prometheus_client's multiprocess collector, and by each worker (``WorkerService``)
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
