"""Misbehaving clients on raw sockets (idle, silent, slow, never reading, half-closing), and timed calls
of a well-behaved one: shared by the connection tests and ``bench/faults.py``."""

from __future__ import annotations

import contextlib
import json
import resource
import socket
import threading
import time
from collections.abc import Iterator

import requests

VECTORIZE = json.dumps({"texts": ["a well-behaved client"]}).encode()


def raise_file_limit() -> None:
    """This process may open as many sockets as its hard limit allows."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def request_bytes(path: str = "/vectorize", body: bytes = VECTORIZE, *, close: bool = False) -> bytes:
    method = "POST" if body else "GET"
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\n"
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    if close:
        head += "Connection: close\r\n"
    return head.encode() + b"\r\n" + body


def read_response(sock: socket.socket, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    """One whole response (Content-Length framed): status, headers (lower-case names), body."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {data[:200]!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    while len(body) < int(headers.get("content-length", 0)):
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port))


def open_silent(port: int, count: int) -> list[socket.socket]:
    """Connections that never send a byte."""
    return [connect(port) for _ in range(count)]


def open_kept_alive(port: int, count: int) -> list[socket.socket]:
    """Connections that made one request (a probe), read its answer and stay open, idle."""
    sockets = []
    for _ in range(count):
        sock = connect(port)
        sock.sendall(request_bytes("/.well-known/live", b""))
        read_response(sock)
        sockets.append(sock)
    return sockets


def close_all(sockets: list[socket.socket]) -> None:
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.close()


@contextlib.contextmanager
def trickling(port: int, count: int, first: bytes, every: float = 2.0) -> Iterator[list[socket.socket]]:
    """``count`` clients that send ``first`` at once, then one more byte every ``every`` seconds."""
    sockets = [connect(port) for _ in range(count)]
    stop = threading.Event()

    def drip() -> None:
        while not stop.wait(every):
            for sock in sockets:
                with contextlib.suppress(OSError):
                    sock.send(b"a")

    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.sendall(first)
    thread = threading.Thread(target=drip, daemon=True)
    thread.start()
    try:
        yield sockets
    finally:
        stop.set()
        thread.join(every + 1)
        close_all(sockets)


def slow_bodies(port: int, count: int) -> contextlib.AbstractContextManager[list[socket.socket]]:
    """A head announcing 100,000 bytes of body, then the body at one byte every 2 s."""
    head = b"POST /vectorize HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{"
    return trickling(port, count, head)


def long_heads(port: int, count: int) -> contextlib.AbstractContextManager[list[socket.socket]]:
    """A request head that runs past 64 KiB without ending, then goes on a byte every 2 s."""
    return trickling(port, count, b"GET /meta HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 70_000)


def never_reading(port: int, count: int, requests_each: int = 200) -> list[socket.socket]:
    """Clients that pipeline many requests and never read an answer (small receive buffers, so that the
    service's answers back up)."""
    sockets = []
    burst = request_bytes() * requests_each
    for _ in range(count):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        sock.setblocking(False)
        with contextlib.suppress(OSError):
            sock.send(burst)
        sockets.append(sock)
    return sockets


def timed(call) -> tuple[int | str, float]:
    """(status, or the error's name; seconds) of one call."""
    started = time.monotonic()
    try:
        status = call().status_code
    except requests.RequestException as exc:
        status = type(exc).__name__
    return status, time.monotonic() - started


def probe_all(url: str, timeout: float = 30) -> dict[str, tuple[int | str, float]]:
    """A new client's live, ready, /meta and /vectorize: each one's status and seconds."""
    return {
        "live": timed(lambda: requests.get(url + "/.well-known/live", timeout=timeout)),
        "ready": timed(lambda: requests.get(url + "/.well-known/ready", timeout=timeout)),
        "meta": timed(lambda: requests.get(url + "/meta", timeout=timeout)),
        "vectorize": timed(lambda: requests.post(url + "/vectorize", data=VECTORIZE, timeout=timeout)),
    }


def all_answered_within(results: dict[str, tuple[int | str, float]], seconds: float) -> bool:
    expected = {"live": 204, "ready": 204, "meta": 200, "vectorize": 200}
    return all(results[name][0] == status and results[name][1] < seconds for name, status in expected.items())
