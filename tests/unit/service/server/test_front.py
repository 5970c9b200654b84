"""The HTTP front in-process, on a WSGI app of its own: what it holds in memory, and how it drains."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

from tests import fault_clients as faults
from vectorizer_module.server.connection import HEAD_LIMIT, READ_SIZE
from vectorizer_module.server.front import Front

MIB = 1 << 20


def echo_length(environ, start_response):
    body = str(len(environ["wsgi.input"].read())).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


@contextlib.contextmanager
def running_front(**settings) -> Iterator[tuple[Front, int]]:
    listener = socket.create_server(("127.0.0.1", 0))
    options = {"threads": 2, "max_connections": 100, "max_body": MIB, "client_timeout": 10.0, "grace": 1.0}
    front = Front(listener, echo_length, **(options | settings))
    port = listener.getsockname()[1]
    thread = threading.Thread(target=front.run, daemon=True)
    thread.start()
    try:
        yield front, port
    finally:
        front.begin_drain()
        thread.join(10)


def test_bodies_past_the_budget_wait_unread_and_the_oldest_one_goes_on():
    with running_front() as (front, port):
        front.body_budget = 2 * MIB
        clients = []
        for _ in range(6):  # 6 bodies of 1 MiB announced; 600 KiB of each sent at once
            sock = faults.connect(port)
            sock.sendall(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % MIB + b"a" * 600_000)
            clients.append(sock)
        time.sleep(0.5)
        # 3.6 MiB sent; read: the budget, one read past it, and each connection's first read (its head's)
        assert front.buffered <= front.body_budget + READ_SIZE + 6 * (HEAD_LIMIT + 1)
        assert len(front.starved) >= 2
        for sock in clients:  # the rest of every body; each request is answered in turn as room is made
            with contextlib.suppress(OSError):
                sock.sendall(b"a" * (MIB - 600_000))
        answers = [faults.read_response(sock, timeout=10) for sock in clients]
        assert [(status, body) for status, _, body in answers] == [(200, str(MIB).encode())] * 6
        faults.close_all(clients)
        time.sleep(0.2)
        assert front.buffered == 0 and not front.starved


def test_a_drain_answers_what_is_held_and_returns_once_nothing_is():
    with running_front() as (front, port):
        sock = faults.connect(port)
        sock.sendall(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n01234")
        time.sleep(0.2)
        front.begin_drain()
        sock.sendall(b"56789")
        status, headers, body = faults.read_response(sock)
        assert (status, body, headers["connection"]) == (200, b"10", "close")
        refused = socket.socket()
        assert refused.connect_ex(("127.0.0.1", port)) != 0  # the listening socket is closed
        sock.close()
