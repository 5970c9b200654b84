"""Connections that are idle, slow, pipelined or too many: none of them may starve the others."""

from __future__ import annotations

import json
import re
import socket
import time

import pytest
import requests

from tests.reference import strict_json
from tests.server_process import ServerProcess


@pytest.fixture(scope="module")
def guarded(tiny_model):
    """A service with few HTTP threads and connections, and a short client timeout."""
    server = ServerProcess(tiny_model, "--threads", "4", "--max-connections", "50", "--client-timeout", "2").start()
    server.wait_ready()
    yield server
    assert server.stop() == 0


def open_idle(server: ServerProcess, count: int) -> list[socket.socket]:
    return [socket.create_connection(("127.0.0.1", server.port)) for _ in range(count)]


def closed_by_server(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except (TimeoutError, ConnectionResetError):
        return False


def test_idle_connections_hold_no_thread(server):
    """300 connections that send nothing, on the shared server's defaults: a probe answers at once
    (gunicorn's own worker gave each new connection a thread for 5 s: the probe waited a minute)."""
    idle = open_idle(server, 300)
    try:
        time.sleep(0.3)
        started = time.monotonic()
        assert requests.get(server.url + "/.well-known/ready", timeout=30).status_code == 204
        assert time.monotonic() - started < 2
    finally:
        for sock in idle:
            sock.close()


def test_an_idle_flood_past_the_connection_limit_locks_nobody_out_for_long(guarded):
    idle = open_idle(guarded, 120)  # 50 are taken in; the rest wait in the backlog
    try:
        started = time.monotonic()
        assert requests.get(guarded.url + "/.well-known/ready", timeout=60).status_code == 204
        assert time.monotonic() - started < 10  # three rounds of the 2 s client timeout, with room
        assert closed_by_server(idle[0], within=5)
    finally:
        for sock in idle:
            sock.close()


def test_slow_request_heads_hold_no_thread_and_are_closed(guarded):
    slow = open_idle(guarded, 20)  # five times the worker's HTTP threads
    for sock in slow:
        sock.sendall(b"POST /vectorize HTTP/1.1\r\nHost: x\r\nContent-Type: app")  # and then nothing
    try:
        time.sleep(0.3)
        started = time.monotonic()
        response = requests.post(guarded.url + "/vectorize", json={"texts": ["still served"]}, timeout=30)
        assert response.status_code == 200 and time.monotonic() - started < 1.5
        assert all(closed_by_server(sock, within=5) for sock in slow)
    finally:
        for sock in slow:
            sock.close()


def test_a_body_that_stops_arriving_gets_408_naming_the_setting(guarded):
    with socket.create_connection(("127.0.0.1", guarded.port)) as sock:
        sock.sendall(b'POST /vectorize HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"texts": [')
        sock.settimeout(10)
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), answer
    assert "VECTORIZER_CLIENT_TIMEOUT" in strict_json(body.decode())["error"]


def test_pipelined_requests_are_all_answered_in_order(server):
    vectorize = json.dumps({"texts": ["pipelined"]}).encode()
    requests_ = [
        b"GET /.well-known/ready HTTP/1.1\r\nHost: x\r\n\r\n",
        b"HEAD /meta HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /vectorize HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(vectorize), vectorize),
        b"GET /meta HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /.well-known/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ]
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"".join(requests_))
        sock.settimeout(20)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    statuses = [int(status) for status in re.findall(rb"HTTP/1\.1 (\d{3}) ", answer)]
    assert statuses == [204, 200, 200, 200, 204], answer[:2000]
    assert b'"textVectors"' in answer


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_an_oversized_body_gets_a_json_413_naming_the_setting(server, chunked):
    """70 MiB against the default 64 MiB limit, announced or chunked: the answer arrives (as JSON) before
    the connection closes, and a chunked body is never cut at the limit and read as if whole."""
    body = b'{"texts": ["' + b"a" * (70 * 1024 * 1024) + b'"]}'
    data = iter(body[i : i + (1 << 20)] for i in range(0, len(body), 1 << 20)) if chunked else body
    response = requests.post(server.url + "/vectorize", data=data, timeout=60)
    assert response.status_code == 413
    assert "VECTORIZER_MAX_BODY_BYTES" in strict_json(response.text)["error"]
