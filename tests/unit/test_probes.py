"""The probes and /meta are answered on waitress's I/O thread, in the server that `serve` builds."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
import requests

from tests import media
from tests.unit.test_engine import make_engine
from vectorizer_module.config import Settings
from vectorizer_module.engine import Engine
from vectorizer_module.models.loading import detect
from vectorizer_module.server.lifecycle import Lifecycle
from vectorizer_module.server.wsgi import build_server


class Served:
    def __init__(self, engine: Engine, **settings) -> None:
        self.engine, self.lifecycle = engine, Lifecycle()
        self.server = build_server(Settings(host="127.0.0.1", port=0, **settings), engine, self.lifecycle)
        self.url = f"http://127.0.0.1:{self.server.effective_port}"
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.task_dispatcher.shutdown(cancel_pending=True, timeout=1)
        self.server.close()


@pytest.fixture
def serve(tiny_model):
    started = []

    def start(engine: Engine | None = None, **settings) -> Served:
        started.append(Served(engine or make_engine(tiny_model, batching="dynamic", cache_size=0), **settings))
        return started[-1]

    yield start
    for served in started:
        served.close()


def exchange(sock: socket.socket, request: bytes) -> tuple[str, dict[str, str], bytes]:
    """Send one request on ``sock`` and read one whole response (status line, headers, body)."""
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, value in (line.split(":", 1) for line in lines)}
    while len(body) < int(headers.get("content-length", 0)):
        body += sock.recv(65536)
    return status, headers, body


def test_probes_are_answered_while_the_only_worker_waits_for_the_model(serve):
    served = serve(server_threads=1)
    engine = served.engine
    image = media.b64(media.encode(media.photo(seed=1), "JPEG"))
    answered = {}
    with engine.batcher.lanes["text"]._model_lock:  # the model is busy: the one worker waits in /vectorize
        worker = threading.Thread(
            target=lambda: answered.update(
                vectorize=requests.post(
                    served.url + "/vectorize", json={"texts": ["a cat"], "images": [image]}, timeout=60
                )
            )
        )
        worker.start()
        deadline = time.monotonic() + 10
        while engine.batcher.depth < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert engine.batcher.depth == 2
        meta = requests.get(served.url + "/meta", timeout=5)
        ready = requests.get(served.url + "/.well-known/ready", timeout=5)
        live = requests.get(served.url + "/.well-known/live", timeout=5)
        with pytest.raises(requests.Timeout):  # any other route needs the busy worker
            requests.get(served.url + "/openapi.json", timeout=1)
    worker.join(30)
    assert (meta.status_code, ready.status_code, live.status_code) == (200, 204, 204)
    assert meta.content == engine.meta_body and meta.headers["Content-Type"] == "application/json"
    assert answered["vectorize"].status_code == 200


def test_probe_answers_keep_the_connection_echo_the_request_id_and_follow_the_state(serve):
    served = serve()
    with socket.create_connection(("127.0.0.1", served.server.effective_port), timeout=10) as sock:
        status, headers, body = exchange(sock, b"GET //meta/ HTTP/1.1\r\nHost: x\r\nX-Request-Id: abc-1\r\n\r\n")
        assert status == "HTTP/1.1 200 OK" and headers["x-request-id"] == "abc-1"
        assert json.loads(body)["model"]["dimension"] == served.engine.dimension
        status, headers, body = exchange(sock, b"GET /.well-known/ready HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == "HTTP/1.1 204 No Content" and body == b"" and len(headers["x-request-id"]) == 32
        served.lifecycle.begin_drain()  # from now on ready and /meta are Flask's 503s, on the same connection
        status, _, body = exchange(sock, b"GET /.well-known/ready HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status.startswith("HTTP/1.1 503") and "shutting down" in json.loads(body)["error"]
        # (a worker may still be finishing the 503 when this arrives: then it queues behind it, for Flask)
        status, _, _ = exchange(sock, b"GET /.well-known/live HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status.split(" ")[1] == "204"
    with socket.create_connection(("127.0.0.1", served.server.effective_port), timeout=10) as sock:
        status, headers, _ = exchange(sock, b"GET /.well-known/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert status == "HTTP/1.1 204 No Content" and headers["connection"] == "close"
        assert sock.recv(1) == b""  # closed, as asked
    counted = requests.get(served.url + "/metrics", timeout=5).text
    assert 'clip_requests_total{endpoint="/meta",status="200"} 1.0' in counted
    assert 'clip_requests_total{endpoint="/.well-known/ready",status="503"} 1.0' in counted


def test_probes_before_the_model_is_loaded_and_with_an_api_key_go_through_flask(serve, tiny_model):
    loading = Engine(Settings(model=str(tiny_model)), detect(tiny_model))  # never loaded
    served = serve(loading)
    assert requests.get(served.url + "/.well-known/live", timeout=5).status_code == 204
    for path in ("/.well-known/ready", "/meta"):
        early = requests.get(served.url + path, timeout=5)
        assert early.status_code == 503 and "loading" in early.json()["error"]

    keyed = serve(make_engine(tiny_model, api_key="s3cret"))
    assert requests.get(keyed.url + "/meta", timeout=5).status_code == 401
    assert requests.get(keyed.url + "/meta", headers={"X-API-Key": "s3cret"}, timeout=5).status_code == 200
    assert requests.get(keyed.url + "/.well-known/ready", timeout=5).status_code == 204
