"""Serving: waitress (a production WSGI server, threaded, one process) in front of the Flask app.

Start-up order: the model directory's layout is checked first (a wrong directory fails at once with a
clear message), then the port opens (``live`` answers 204, ``ready`` 503), then the model loads and
warms up in the background and ``ready`` turns 204. If loading fails the process exits with status 3.

SIGTERM (or SIGINT): ``ready`` turns 503 and new work gets 503 at once; requests in flight finish
(up to ``VECTORIZER_SHUTDOWN_GRACE`` seconds); then the process exits 0. A second signal exits at once.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import threading
import time
from typing import Any

import waitress

from vectorizer_module.config import Settings
from vectorizer_module.engine import Engine
from vectorizer_module.models.loading import ModelSource
from vectorizer_module.server.app import create_app
from vectorizer_module.server.lifecycle import Lifecycle
from vectorizer_module.server.probes import ProbeAnswers, answer_probes_inline

log = logging.getLogger(__name__)
LOAD_FAILED_EXIT = 3
STOP_SIGNAL = signal.SIGUSR1  # sent to ourselves once draining is over


def _load_or_exit(engine: Engine) -> None:
    try:
        engine.load()
        # torch, transformers and the model leave ~10^5 long-lived objects; a full collection scans them
        # all (140 ms on our 2-core host, every thread stopped). Frozen, they are never scanned again.
        gc.freeze()
    except BaseException as exc:  # noqa: BLE001 - the process cannot serve without its model
        log.critical(
            "could not load the model from %s: %s: %s",
            engine.source.root,
            type(exc).__name__,
            exc,
            exc_info=not isinstance(exc, (RuntimeError, OSError)),
        )
        logging.shutdown()
        os._exit(LOAD_FAILED_EXIT)


def _install_signal_handlers(lifecycle: Lifecycle, grace: float) -> None:
    def drain_then_stop() -> None:
        started = time.monotonic()
        if lifecycle.wait_idle(grace):
            log.info("shutdown: requests in flight finished after %.2f s", time.monotonic() - started)
            os.kill(os.getpid(), STOP_SIGNAL)
            return
        # waitress would wait for its busy workers again; the grace period is the promise, so go now
        log.warning("shutdown: grace period over with %d request(s) still running; exiting", lifecycle.in_flight)
        logging.shutdown()
        os._exit(0)

    def on_signal(signum: int, _frame: Any) -> None:
        if lifecycle.draining:
            log.warning("second %s: exiting now", signal.Signals(signum).name)
            os._exit(1)
        log.info(
            "%s received: refusing new work, waiting for %d request(s) in flight",
            signal.Signals(signum).name,
            lifecycle.in_flight,
        )
        lifecycle.begin_drain()
        threading.Thread(target=drain_then_stop, name="drain", daemon=True).start()

    def on_stop(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt  # waitress's loop stops its workers and closes on KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(STOP_SIGNAL, on_stop)


def build_server(settings: Settings, engine: Engine, lifecycle: Lifecycle) -> Any:
    """The waitress server in front of the app, with the probes answered on its I/O thread."""
    server = waitress.create_server(
        lifecycle.wrap(create_app(engine, lifecycle)),
        host=settings.host,
        port=settings.port,
        threads=settings.server_threads,
        # our own limit answers with a JSON 413; waitress's must not trigger first
        max_request_body_size=settings.max_body_bytes + 1024 * 1024,
        ident="clip-vectorizer",
        channel_timeout=120,
        connection_limit=1000,
        expose_tracebacks=False,
        channel_request_lookahead=1,
    )  # lets a waiting request see that its client disconnected
    answer_probes_inline(server, ProbeAnswers(engine, lifecycle, server.adj.ident))
    return server


def serve(settings: Settings, source: ModelSource) -> int:
    engine = Engine(settings, source)
    lifecycle = Lifecycle()
    server = build_server(settings, engine, lifecycle)
    _install_signal_handlers(lifecycle, settings.shutdown_grace)
    log.info(
        "listening on http://%s:%s (model %s, %s layout); loading the model",
        settings.host,
        getattr(server, "effective_port", settings.port),
        source.root,
        source.layout,
    )
    threading.Thread(target=_load_or_exit, args=(engine,), name="model-loader", daemon=True).start()
    try:
        server.run()
    finally:
        server.task_dispatcher.shutdown(cancel_pending=True, timeout=1)
    log.info("stopped")
    return 0
