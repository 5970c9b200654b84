"""A worker's HTTP front: one event loop that owns every client socket, and a pool of HTTP threads that
only ever see whole requests.

The loop (this process's main thread) accepts connections, reads each request in full (``connection.py``:
head and body, within ``VECTORIZER_CLIENT_TIMEOUT`` from its first byte), hands it to a pool thread,
which runs the Flask app (``wsgi_bridge.py``), and writes the answer back without blocking. Idle,
slow, silent and never-reading clients therefore cost a socket and a timer each, never a thread, and
nothing one client does can hold up another or the probes. The probes themselves (live, ready and
``/meta``, which Weaviate asks on each of its own readiness checks) are answered on the loop's thread,
so they stay quick when every HTTP thread is busy with the model.

Limits, and what a client sees at each:

- a request (head and body) not whole ``client_timeout`` seconds after its first byte: 408 once the
  head is in, else the connection is closed; an answer the client does not read for as long: closed;
- ``max_connections`` open: the oldest idle connection (kept alive, or opened and silent) is closed to
  make room, or, with none idle, the new one is answered 503 and closed;
- a kept-alive connection idle for ``KEEPALIVE_SECONDS``: closed;
- request bytes held by the worker (bodies being read, answered or written) past ``body_budget``: the
  other bodies wait unread (the oldest one being read goes on), until room is made or their time is up.

Every selector here is ``selectors.DefaultSelector`` (epoll): no file-descriptor number is too large.
"""

from __future__ import annotations

import collections
import errno
import heapq
import itertools
import logging
import queue
import selectors
import socket
import threading
import time
from collections.abc import Callable

from vectorizer_module.errors import ServiceError, request_too_slow, too_many_connections
from vectorizer_module.server import wsgi_bridge
from vectorizer_module.server.connection import PIPELINE_LIMIT, Connection, Refusal, Request, Response, State
from vectorizer_module.server.errors import error_payload
from vectorizer_module.server.lifecycle import WSGIApp, collapse_slashes

log = logging.getLogger(__name__)

# kept-alive connections stay open this long between requests (Go's HTTP client, which Weaviate uses,
# keeps idle connections 90 s; closing them sooner only costs new handshakes)
KEEPALIVE_SECONDS = 120.0
LINGER_SECONDS = 2.0  # after an answer that closes the connection, what the client still sends is dropped
DRAIN_IDLE_SECONDS = 2.0  # at shutdown, an idle connection stays open this long for a request on its way
TICK_SECONDS = 0.5  # the loop looks at its timers, the parent process and the accept state this often
ACCEPT_BATCH = 64
MAX_CLOSING = 4096  # connections lingering after their last answer (not counted in max_connections)
BODY_BUDGET_FLOOR = 256 * 1024 * 1024  # request bytes a worker holds at once: at least this, or two bodies
# answered on the loop's own thread: cheap, and asked often by orchestrators and Weaviate
INLINE_PATHS = frozenset({"/.well-known/live", "/.well-known/ready", "/meta"})


class Front:
    def __init__(
        self,
        listener: socket.socket,
        app: WSGIApp,
        *,
        threads: int,
        max_connections: int,
        max_body: int,
        client_timeout: float,
        grace: float,
        multiprocess: bool = False,
        may_accept: Callable[[], bool] = lambda: True,
        on_tick: Callable[[], None] = lambda: None,
        on_refusal: Callable[[ServiceError, str], None] = lambda error, path: None,
    ) -> None:
        self.listener = listener
        self.app = app
        self.max_connections = max_connections
        self.max_body = max_body
        self.client_timeout = client_timeout
        self.grace = grace
        self.multiprocess = multiprocess
        self.may_accept = may_accept
        self.on_tick = on_tick
        self.on_refusal = on_refusal
        self.selector = selectors.DefaultSelector()
        self.conns: dict[Connection, int] = {}  # open connections -> their selector mask
        self.idle: collections.OrderedDict[Connection, None] = collections.OrderedDict()  # oldest first
        self.closing: dict[Connection, int] = {}
        self.timers: list[tuple[float, int, Connection]] = []  # (when, generation, connection), a heap
        self._to_parse: collections.deque[Connection] = collections.deque()  # kept alive, with bytes waiting
        self._order = itertools.count(1)  # timer generations; 0 is "no timer"
        self.accepting = False
        self.draining = False
        self.drain_deadline = 0.0
        self.body_budget = max(2 * max_body, BODY_BUDGET_FLOOR)
        self.buffered = 0  # bytes of requests received and not yet answered, over every connection
        self.bodies: collections.OrderedDict[Connection, None] = collections.OrderedDict()  # being read, oldest first
        self.starved: set[Connection] = set()  # bodies left unread while the budget is spent
        self._posted: collections.deque[tuple[Connection, Response]] = collections.deque()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.selector.register(self._wake_r, selectors.EVENT_READ, None)
        listener.setblocking(False)
        self._work: queue.SimpleQueue[tuple[Connection, Request]] = queue.SimpleQueue()
        for index in range(threads):
            threading.Thread(target=self._serve_forever, name=f"http-{index}", daemon=True).start()

    # -- control, from any thread ------------------------------------------------------------------
    def wake(self) -> None:
        """Have the loop look at its state at once."""
        try:
            self._wake_w.send(b"x")
        except OSError:  # full (the loop has plenty to read already) or closed
            pass

    def begin_drain(self) -> None:
        """Stop accepting, answer what is held (``Connection: close``), exit once done or at the grace."""
        if not self.draining:
            self.draining = True
            self.drain_deadline = time.monotonic() + self.grace
            self.wake()

    # -- the loop ----------------------------------------------------------------------------------
    def run(self) -> bool:
        """Serve until drained; False when the grace period ended it with requests still held."""
        stopped_listening = False
        while True:
            self.on_tick()
            if self.draining and not stopped_listening:
                self._stop_listening()
                stopped_listening = True
            elif not self.draining:
                self._set_accepting(self.may_accept())
            now = time.monotonic()
            if self.draining and not self.conns and not self.closing:
                return True
            if self.draining and now >= self.drain_deadline:
                return False
            timeout = TICK_SECONDS
            if self.timers:
                timeout = max(0.0, min(timeout, self.timers[0][0] - now))
            if self._to_parse:
                timeout = 0.0
            for key, mask in self.selector.select(timeout):
                self._on_event(key, mask)
            self._answer_posted()
            self._parse_pipelined()
            self._fire_timers(time.monotonic())

    def _on_event(self, key: selectors.SelectorKey, mask: int) -> None:
        conn = key.data
        if conn is None:  # the wake-up socket
            try:
                while self._wake_r.recv(4096):
                    pass
            except OSError:
                pass
        elif conn == "listener":
            self._accept_some()
        else:
            if mask & selectors.EVENT_WRITE:
                self._flush(conn)
            if mask & selectors.EVENT_READ and (conn in self.conns or conn in self.closing):
                self._on_readable(conn)

    # -- accepting ---------------------------------------------------------------------------------
    def _set_accepting(self, wanted: bool) -> None:
        if wanted == self.accepting:
            return
        self.accepting = wanted
        if wanted:
            self.selector.register(self.listener, selectors.EVENT_READ, "listener")
        else:
            self.selector.unregister(self.listener)

    def _accept_some(self, limit: int = ACCEPT_BATCH) -> bool:
        """Accept up to ``limit`` waiting connections; False once none was left waiting."""
        for _ in range(limit):
            try:
                sock, peer = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return False
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE):
                    log.warning("cannot accept a connection: %s; see VECTORIZER_MAX_CONNECTIONS", exc.strerror)
                    if not self._evict():
                        return False
                    continue
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO):
                    continue
                return False
            self._admit(sock, peer)
        return True

    def _admit(self, sock: socket.socket, peer: tuple) -> None:
        sock.setblocking(False)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            local = sock.getsockname()
        except OSError:
            local = ("", 0)
        now = time.monotonic()
        conn = Connection(sock, peer, local, self.max_body, now)
        if len(self.conns) >= self.max_connections and not self._evict():
            self.conns[conn] = 0
            self._refuse(conn, Refusal(too_many_connections(self.max_connections)))
            return
        self.conns[conn] = 0
        self.idle[conn] = None
        self._arm(conn, now + (DRAIN_IDLE_SECONDS if self.draining else self.client_timeout))
        self._watch(conn)

    def _evict(self) -> bool:
        """Close the oldest idle connection to make room for a new one; False if none is idle."""
        if not self.idle:
            return False
        victim, _ = self.idle.popitem(last=False)
        self._close(victim)
        return True

    def _stop_listening(self) -> None:
        """At shutdown: take in the connections already waiting in the listen backlog (each is answered,
        503 with ``Connection: close``), then close this process's copy of the socket: once every worker
        has, new connections are refused at once instead of waiting unanswered. Idle connections get
        ``DRAIN_IDLE_SECONDS`` for a request already on its way."""
        self._set_accepting(False)
        while self._accept_some(limit=1024):
            pass
        self.listener.close()
        deadline = time.monotonic() + DRAIN_IDLE_SECONDS
        for conn in list(self.idle):
            self._arm(conn, deadline)

    # -- reading -----------------------------------------------------------------------------------
    def _on_readable(self, conn: Connection) -> None:
        if conn.state is State.WAITING and self._starved(conn):
            self._watch(conn)  # events of this round came before the budget was spent: stop reading now
            return
        was_idle = conn.idle
        data = conn.receive()
        if data is None:
            return
        if conn.state is not State.CLOSING:
            conn.charged += len(data)
            self.buffered += len(data)
        if conn.state is State.CLOSING:
            if not data:
                self._close(conn)
            return
        if conn.state is State.WAITING:
            if not data:
                self._close(conn)  # closed before or in the middle of a request: nobody to answer
                return
            if was_idle:
                self.idle.pop(conn, None)
                conn.started = time.monotonic()
                self._arm(conn, conn.started + self.client_timeout)
            self._parse(conn)
            return
        if not data and conn.state is State.BUSY:
            conn.send_ahead()  # half-closed, or gone: see connection.py
        self._watch(conn)

    def _parse(self, conn: Connection) -> None:
        outcome = conn.next_request(time.monotonic())
        if conn.mid_body and outcome is None:
            self.bodies.setdefault(conn, None)
        else:
            self.bodies.pop(conn, None)
        if isinstance(outcome, Refusal):
            self._refuse(conn, outcome)
        elif isinstance(outcome, Request):
            self._disarm(conn)
            self._dispatch(conn, outcome)
        elif conn.out:
            self._flush(conn)  # 100 Continue
        else:
            self._watch(conn)

    def _parse_pipelined(self) -> None:
        for _ in range(len(self._to_parse)):  # one request each per pass, so that one client cannot hog the loop
            conn = self._to_parse.popleft()
            if conn in self.conns and conn.state is State.WAITING:
                self._parse(conn)

    def _dispatch(self, conn: Connection, request: Request) -> None:
        self._watch(conn)
        if request.method in ("GET", "HEAD") and not request.body and self._inline(request):
            self._respond(conn, self._call(request))
        else:
            self._work.put((conn, request))

    @staticmethod
    def _inline(request: Request) -> bool:
        return collapse_slashes(request.path.decode("latin-1")) in INLINE_PATHS

    # -- the HTTP threads --------------------------------------------------------------------------
    def _serve_forever(self) -> None:
        while True:
            conn, request = self._work.get()
            response = self._call(request)
            self._posted.append((conn, response))
            self.wake()

    def _call(self, request: Request) -> Response:
        try:
            return wsgi_bridge.call(self.app, request, multiprocess=self.multiprocess)
        except Exception as exc:  # noqa: BLE001 - the app answers its own errors; this is a bug of ours
            log.exception("unexpected error in the WSGI bridge")
            return self._error_response(ServiceError(f"internal error: {type(exc).__name__}: {exc}"), request.path)

    # -- writing -----------------------------------------------------------------------------------
    def _answer_posted(self) -> None:
        while self._posted:
            conn, response = self._posted.popleft()
            if conn in self.conns:
                self._respond(conn, response)

    def _respond(self, conn: Connection, response: Response) -> None:
        conn.respond(response, close=self.draining or conn.peer_done)
        self._flush(conn)

    def _refuse(self, conn: Connection, refusal: Refusal) -> None:
        path = refusal.path.decode("latin-1")
        self.on_refusal(refusal.error, path)
        self._disarm(conn)
        self.idle.pop(conn, None)
        conn.respond(self._error_response(refusal.error, refusal.path), close=True)
        self._flush(conn)

    def _error_response(self, error: ServiceError, path: bytes) -> Response:
        body = error_payload(error, collapse_slashes(path.decode("latin-1")))
        headers = [(b"Content-Type", b"application/json"), (b"Content-Length", str(len(body)).encode())]
        headers += [(k.encode(), v.encode()) for k, v in error.headers.items()]
        return Response(error.status, wsgi_bridge.reason_phrase(error.status), headers, body)

    def _flush(self, conn: Connection) -> None:
        before = len(conn.out)
        done = conn.flush()
        if done is None:
            self._close(conn)
            return
        if not done:
            if len(conn.out) < before or conn.timer == 0:
                self._arm(conn, time.monotonic() + self.client_timeout)  # no progress for this long: closed
            self._watch(conn)
            return
        if conn.state is State.CLOSING or conn.state is not State.WRITING:
            self._watch(conn)
            return
        self._release(conn, keep=conn.seen)  # the answer is out: only bytes of later requests stay held
        now = time.monotonic()
        if not conn.next_cycle(now):
            self._shut(conn)
        elif conn.seen:  # the next request (pipelined) is already here, in part or whole
            self._arm(conn, now + self.client_timeout)
            self._to_parse.append(conn)  # by the loop, not from here: no recursion however many are queued
            self._watch(conn)
        else:
            self.idle[conn] = None
            self._arm(conn, now + (DRAIN_IDLE_SECONDS if self.draining else KEEPALIVE_SECONDS))
            self._watch(conn)

    # -- closing -----------------------------------------------------------------------------------
    def _shut(self, conn: Connection) -> None:
        """The answer is out and the connection ends: FIN, then linger a little reading what is left."""
        if conn.peer_done:
            self._close(conn)
            return
        conn.shut()
        self._release(conn)
        mask = self.conns.pop(conn, 0)
        self.idle.pop(conn, None)
        self.closing[conn] = mask
        if len(self.closing) > MAX_CLOSING:
            self._close(next(iter(self.closing)))
        self._arm(conn, time.monotonic() + LINGER_SECONDS)
        self._watch(conn)

    def _close(self, conn: Connection) -> None:
        mask = self.conns.pop(conn, None)
        if mask is None:
            mask = self.closing.pop(conn, None)
        self.idle.pop(conn, None)
        self.bodies.pop(conn, None)
        self.starved.discard(conn)
        self._release(conn)
        conn.timer = -1
        if mask:
            try:
                self.selector.unregister(conn.sock)
            except (KeyError, ValueError, OSError):
                pass
        conn.close()

    # -- the budget of request bytes ----------------------------------------------------------------
    def _release(self, conn: Connection, keep: int = 0) -> None:
        """``conn`` holds only ``keep`` bytes now; bodies left unread for want of room are read again."""
        self.buffered -= conn.charged - keep
        conn.charged = keep
        if self.starved and self.buffered < self.body_budget:
            waiting, self.starved = self.starved, set()
            for other in waiting:
                self._watch(other)

    def _starved(self, conn: Connection) -> bool:
        """A body that must wait unread: the budget is spent, and it is not the oldest one being read (which
        always goes on, so that some request always completes)."""
        if not conn.mid_body or self.buffered < self.body_budget or next(iter(self.bodies), None) is conn:
            self.starved.discard(conn)
            return False
        self.starved.add(conn)
        return True

    # -- selector masks and timers -----------------------------------------------------------------
    def _watch(self, conn: Connection) -> None:
        """Register the events this connection's state calls for."""
        table = self.closing if conn in self.closing else self.conns
        if conn not in table:
            return
        mask = 0
        if conn.out:
            mask |= selectors.EVENT_WRITE
        if conn.peer_done:
            reading = False
        elif conn.state is State.WAITING:
            reading = not self._starved(conn)
        else:
            reading = conn.state is State.CLOSING or conn.seen <= PIPELINE_LIMIT
        if reading:
            mask |= selectors.EVENT_READ
        old = table[conn]
        if mask == old:
            return
        if not old:
            self.selector.register(conn.sock, mask, conn)
        elif not mask:
            self.selector.unregister(conn.sock)
        else:
            self.selector.modify(conn.sock, mask, conn)
        table[conn] = mask

    def _arm(self, conn: Connection, when: float) -> None:
        conn.timer = next(self._order)
        heapq.heappush(self.timers, (when, conn.timer, conn))

    @staticmethod
    def _disarm(conn: Connection) -> None:
        conn.timer = 0

    def _fire_timers(self, now: float) -> None:
        while self.timers and self.timers[0][0] <= now:
            _, generation, conn = heapq.heappop(self.timers)
            if conn.timer != generation:
                continue
            if conn.state is State.WAITING and conn.mid_body:
                self._refuse(conn, Refusal(request_too_slow(self.client_timeout), conn.head_path))
            else:
                self._close(conn)  # idle, silent, a head that never ended, an answer never read, lingering
