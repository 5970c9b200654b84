"""One client connection's HTTP/1.1, on h11: bytes in, whole requests out; responses in, bytes out.

The event loop (``front.py``) owns every socket and calls these methods from its one thread; nothing
here blocks. A request leaves only once its head and body are both complete (the body buffered up to
``VECTORIZER_MAX_BODY_BYTES``, as a buffering proxy would), so no HTTP thread ever waits on a client.
Framing errors (a bad chunk, conflicting lengths, a head too long) become ``Refusal``s, which the loop
answers with a JSON 4xx and ``Connection: close``.

A client that half-closes its side after a complete request (``shutdown(SHUT_WR)``) still gets its
answer; one that closed entirely must not cost the model anything. TCP shows both the same way (end of
stream), so on end of stream the first byte of the answer (``H`` of ``HTTP/1.1``) is sent at once: a
half-closed client takes it, a closed one answers with a reset, which ``peer_reset`` sees.
"""

from __future__ import annotations

import enum
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

import h11

from vectorizer_module.errors import ServiceError, body_too_large, head_too_large, malformed_http

HEAD_LIMIT = 65536  # request line and headers, bytes
READ_SIZE = 262144
PIPELINE_LIMIT = HEAD_LIMIT  # bytes of later requests read while one is being answered
_EARLY = b"H"  # sent ahead on end of stream: every answer starts with "HTTP/1.1 "
_TCP_CLOSE = 7  # tcp_info.tcpi_state once the peer has reset the connection


class State(enum.Enum):
    WAITING = "waiting"  # for (the rest of) a request
    BUSY = "busy"  # a whole request is being answered
    WRITING = "writing"  # its answer is on its way out
    CLOSING = "closing"  # our side is shut; what the client still sends is read and dropped


@dataclass
class Request:
    """One whole request, as the loop hands it over."""

    method: str
    target: bytes
    http_version: str
    headers: list[tuple[bytes, bytes]]
    body: bytes
    received: float  # time.monotonic() when its last byte arrived
    peer: tuple
    local: tuple
    cancelled: Callable[[], bool] = field(repr=False, default=lambda: False)

    @property
    def path(self) -> bytes:
        return split_target(self.target)[0]


@dataclass
class Response:
    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes


@dataclass
class Refusal:
    """A request refused by the HTTP layer itself, before it reaches the app; the connection closes.
    ``path`` (when the head was read) says which protocol's error shape the answer takes."""

    error: ServiceError
    path: bytes = b"/"


class Connection:
    def __init__(self, sock: socket.socket, peer: tuple, local: tuple, max_body: int, now: float) -> None:
        self.sock = sock
        self.peer = peer
        self.local = local
        self.max_body = max_body
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=HEAD_LIMIT)
        self.state = State.WAITING
        self.started = now  # when the request now awaited began (the connection opened, or its first byte)
        self.seen = 0  # bytes of the request now awaited (or, while busy, of the ones after it)
        self.charged = 0  # bytes received and not yet answered, as the front counts them against its budget
        self.head: h11.Request | None = None
        self.body: list[bytes] = []
        self.body_size = 0
        self.peer_done = False  # end of stream from the client
        self.ahead = b""  # bytes of the next answer already sent
        self.out = bytearray()
        self.close_after = False
        self.timer = 0  # the loop's timer generation; a fired timer of an older one is ignored

    # -- reading -----------------------------------------------------------------------------------
    def receive(self) -> bytes | None:
        """Bytes from the client; b"" at end of stream (or a broken connection); None if none yet."""
        if self.state is State.CLOSING or self.head is not None:
            size = READ_SIZE
        else:  # a head, or requests after the one being answered: never more than h11 may hold incomplete
            size = max(1, HEAD_LIMIT + 1 - self.seen)
        try:
            data = self.sock.recv(size)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            data = b""
        if not data:
            self.peer_done = True
        self.seen += len(data)
        if self.state is not State.CLOSING:
            self.h11.receive_data(data)
        return data

    @property
    def idle(self) -> bool:
        """Waiting, and not one byte of a request yet: nothing is lost by closing it."""
        return self.state is State.WAITING and self.seen == 0

    @property
    def mid_body(self) -> bool:
        return self.head is not None

    @property
    def head_path(self) -> bytes:
        return split_target(bytes(self.head.target))[0] if self.head is not None else b"/"

    def next_request(self, now: float) -> Request | Refusal | None:
        """The next whole request from what was received, a refusal, or None (more bytes needed)."""
        while True:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as exc:
                if exc.error_status_hint == 431:
                    return self._refuse(head_too_large(HEAD_LIMIT))
                return self._refuse(malformed_http(str(exc)))
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return None
            if isinstance(event, h11.Request):
                refusal = self._begin(event)
                if refusal is not None:
                    return refusal
            elif isinstance(event, h11.Data):
                self.body.append(bytes(event.data))
                self.body_size += len(event.data)
                if self.body_size > self.max_body:
                    return self._refuse(body_too_large(self.max_body))
            elif isinstance(event, h11.EndOfMessage):
                return self._complete(now)
            elif isinstance(event, h11.ConnectionClosed):
                return None

    def _begin(self, head: h11.Request) -> Refusal | None:
        self.head = head
        names = {name for name, _ in head.headers}
        if b"transfer-encoding" in names and b"content-length" in names:
            # RFC 9112 6.1: such a message may be an attempt at request smuggling; never guess its length
            return self._refuse(malformed_http("a request may not carry both Content-Length and Transfer-Encoding"))
        length = next((int(value) for name, value in head.headers if name == b"content-length"), 0)
        if length > self.max_body:
            return self._refuse(body_too_large(self.max_body))
        if self.h11.they_are_waiting_for_100_continue:
            self.out += self.h11.send(h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue"))
        return None

    def _complete(self, now: float) -> Request:
        head = self.head
        request = Request(
            method=head.method.decode("latin-1"),
            target=bytes(head.target),
            http_version=head.http_version.decode("latin-1"),
            headers=[(bytes(name), bytes(value)) for name, value in head.headers],
            body=b"".join(self.body),
            received=now,
            peer=self.peer,
            local=self.local,
            cancelled=self.peer_reset,
        )
        self.head, self.body, self.body_size = None, [], 0
        self.state = State.BUSY
        self.seen = len(self.h11.trailing_data[0])  # bytes of the requests after it (pipelined)
        return request

    def _refuse(self, error: ServiceError) -> Refusal:
        return Refusal(error, self.head_path)

    # -- the client gone, or only half-closed ------------------------------------------------------
    def send_ahead(self) -> None:
        """At end of stream while busy: send the answer's first byte now (see the module's docstring)."""
        if self.ahead or self.out:
            return
        try:
            if self.sock.send(_EARLY) == 1:
                self.ahead = _EARLY
        except OSError:
            pass

    def peer_reset(self) -> bool:
        """Whether the client has reset the connection (it closed, and the byte sent ahead hit nothing).
        Called from other threads: reads the kernel's TCP state, never the socket's data."""
        try:
            return self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] == _TCP_CLOSE
        except (OSError, AttributeError):
            return self.sock.fileno() < 0

    # -- writing -----------------------------------------------------------------------------------
    def respond(self, response: Response, *, close: bool) -> None:
        """Frame ``response`` (h11 knows HEAD, 204 and HTTP/1.0) after anything already queued."""
        headers = [(n, v) for n, v in response.headers if n.lower() not in _HOP_BY_HOP]
        if close:
            headers.append((b"Connection", b"close"))
        try:
            data = self.h11.send(h11.Response(status_code=response.status, headers=headers, reason=response.reason))
            if response.body:
                data += self.h11.send(h11.Data(data=response.body))
            data += self.h11.send(h11.EndOfMessage())
        except h11.LocalProtocolError:  # h11 cannot frame an answer in this state: write a closing one by hand
            data, close = _raw_response(response, headers), True
        if self.ahead:
            data = data[len(self.ahead) :]  # it began with those bytes, already sent
            self.ahead = b""
        self.out += data
        self.state = State.WRITING
        self.close_after = close or self.h11.our_state is not h11.DONE

    def flush(self) -> bool | None:
        """Send what is queued: True once all is sent, False if the client is not reading yet, None if
        the connection broke."""
        while self.out:
            try:
                sent = self.sock.send(self.out)
            except (BlockingIOError, InterruptedError):
                return False
            except OSError:
                return None
            del self.out[:sent]
        return True

    def next_cycle(self, now: float) -> bool:
        """After a kept-alive answer: ready for the next request (True), or the connection must close."""
        if self.close_after or self.h11.our_state is not h11.DONE or self.h11.their_state is not h11.DONE:
            return False
        self.h11.start_next_cycle()
        self.state = State.WAITING
        self.started = now
        return True

    def shut(self) -> None:
        """Stop sending (a FIN after the answer), and read and drop what the client still sends, so that
        unread bytes do not make the kernel reset the connection before the client reads the answer."""
        self.state = State.CLOSING
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def split_target(target: bytes) -> tuple[bytes, bytes]:
    """A request target's path and query; the absolute form (``http://host/path``), which a server must
    accept too (RFC 9112 3.2.2), gives its path."""
    if target[:7].lower() == b"http://" or target[:8].lower() == b"https://":
        target = b"/" + target.split(b"://", 1)[1].partition(b"/")[2]
    path, _, query = target.partition(b"?")
    return path, query


# framing is h11's to decide (the app's Content-Length is kept: it is right, and HEAD needs it)
_HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"transfer-encoding", b"upgrade"})


def _raw_response(response: Response, headers: list[tuple[bytes, bytes]]) -> bytes:
    lines = [b"HTTP/1.1 %d %s" % (response.status, response.reason)]
    lines += [name + b": " + value for name, value in headers if name.lower() != b"connection"]
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + response.body
