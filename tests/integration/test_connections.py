"""Connections that are idle, slow, pipelined, never reading, half-closed, malformed or too many: none of
them may starve the others, and every refusal is a JSON 4xx/503. (The same faults, with figures, in
``bench/faults.py``.)"""

from __future__ import annotations

import json
import re
import socket
import time

import pytest
import requests

from tests import fault_clients as faults
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


def test_an_idle_flood_past_the_connection_limit_locks_nobody_out(guarded):
    """120 silent connections against a limit of 50: the oldest idle ones are closed to make room, so a
    new client is answered at once (it used to wait in the backlog for rounds of the client timeout)."""
    idle = open_idle(guarded, 120)
    try:
        time.sleep(0.3)
        results = faults.probe_all(guarded.url)
        assert faults.all_answered_within(results, 1.0), results
        assert closed_by_server(idle[0], within=1)
    finally:
        faults.close_all(idle)


def test_kept_alive_idle_connections_past_the_limit_make_room_for_new_ones(tiny_model):
    server = ServerProcess(tiny_model, "--max-connections", "40").start()
    server.wait_ready()
    kept = faults.open_kept_alive(server.port, 60)
    try:
        results = faults.probe_all(server.url)
        assert faults.all_answered_within(results, 1.0), results
        assert closed_by_server(kept[0], within=1)  # the oldest idle one made room
        assert not closed_by_server(kept[-1], within=0.2)
    finally:
        faults.close_all(kept)
        assert server.stop() == 0


def test_with_every_connection_busy_a_new_one_gets_a_json_503_at_once(guarded):
    with faults.slow_bodies(guarded.port, 50):  # the limit, all in the middle of a request
        time.sleep(0.3)
        sock = faults.connect(guarded.port)
        sock.sendall(faults.request_bytes())
        started = time.monotonic()
        status, headers, body = faults.read_response(sock, timeout=5)
        assert time.monotonic() - started < 1
        assert status == 503 and headers["connection"] == "close"
        assert "VECTORIZER_MAX_CONNECTIONS" in strict_json(body.decode())["error"]
        sock.close()


def test_more_than_a_thousand_connections_do_not_turn_work_away(tiny_model):
    """File descriptors above 1023 were taken for closed clients (select.select raised for them): every
    model route answered 503 "the client disconnected"."""
    faults.raise_file_limit()
    server = ServerProcess(tiny_model).start()
    server.wait_ready()
    idle = faults.open_kept_alive(server.port, 1100)
    try:
        response = server.post("/vectorize", {"texts": ["past fd 1024"]})
        assert response.status_code == 200, response.text
    finally:
        faults.close_all(idle)
        assert server.stop() == 0


@pytest.mark.parametrize("fault", ["slow_bodies", "long_heads"])
def test_slow_clients_hold_no_thread(guarded, fault):
    """Twice as many clients as HTTP threads, each trickling a body (or a head past 64 KiB) at a byte
    every 2 s: probes and a normal client are answered at once throughout."""
    with getattr(faults, fault)(guarded.port, 8):
        for _ in range(3):
            time.sleep(0.7)
            results = faults.probe_all(guarded.url)
            assert faults.all_answered_within(results, 1.0), results


def test_a_head_past_64_kib_gets_a_json_431(server):
    with faults.connect(server.port) as sock:
        sock.sendall(b"GET /meta HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 70_000 + b"\r\n\r\n")
        status, headers, body = faults.read_response(sock)
    assert status == 431 and headers["connection"] == "close"
    assert "longer than 65536 bytes" in strict_json(body.decode())["error"]


def test_clients_that_never_read_hold_up_nobody_and_log_no_error(guarded):
    stuck = faults.never_reading(guarded.port, 12)
    try:
        for _ in range(3):
            time.sleep(0.5)
            results = faults.probe_all(guarded.url)
            assert faults.all_answered_within(results, 1.0), results
    finally:
        faults.close_all(stuck)
    time.sleep(0.5)
    assert "Traceback" not in guarded.log and '"level": "error"' not in guarded.log


def test_a_client_that_half_closes_after_its_request_gets_the_answer(server):
    with faults.connect(server.port) as sock:
        sock.sendall(faults.request_bytes())
        sock.shutdown(socket.SHUT_WR)
        status, headers, body = faults.read_response(sock)
    assert status == 200, body
    assert len(json.loads(body)["textVectors"]) == 1


@pytest.mark.parametrize(
    "raw",
    [
        b"POST /vectorize HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"POST /vectorize HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcdefgh\r\n0\r\n\r\n",
        b"POST /vectorize HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST /vectorize HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
        b"POST /vectorize HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n",
        b"GET /meta HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n",
        b"GET /meta\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,
    ],
    ids=[
        "bad-chunk-size",
        "chunk-longer",
        "cl-and-te",
        "two-lengths",
        "gzip-te",
        "openai-negative-chunk",
        "space-in-name",
        "http-0.9",
        "tls-hello",
    ],
)
def test_framing_errors_are_json_4xx_that_close_the_connection(server, raw):
    with faults.connect(server.port) as sock:
        sock.sendall(raw)
        status, headers, body = faults.read_response(sock)
        assert 400 <= status < 500 and headers["connection"] == "close", (status, body)
        error = strict_json(body.decode())["error"]
        assert "malformed HTTP/1.1 request" in (error["message"] if isinstance(error, dict) else error)
        assert sock.recv(1) == b""  # and the connection closes
    assert server.get("/.well-known/ready").status_code == 204


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


def test_an_absolute_form_request_target_is_served_like_its_path(server):
    """RFC 9112 3.2.2: a server must accept ``GET http://host/path``."""
    with faults.connect(server.port) as sock:
        sock.sendall(b"GET http://127.0.0.1/.well-known/ready?x=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, _ = faults.read_response(sock)
        sock.sendall(faults.request_bytes(f"http://127.0.0.1:{server.port}/vectorize"))
        vectorized, _, body = faults.read_response(sock)
    assert (status, vectorized) == (204, 200), body
