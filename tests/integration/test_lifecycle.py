"""Start-up, readiness and shutdown of the real server process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest
import requests

from tests import media
from tests.reference import strict_json
from tests.server_process import ServerProcess, metric_value


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vectorizer_module", *args], capture_output=True, text=True, timeout=timeout
    )


def test_live_before_ready_while_the_model_loads(tiny_model):
    server = ServerProcess(tiny_model).start()
    try:
        server.wait_live()
        # The port opens before torch is even imported, so the model cannot be ready yet.
        ready = server.get("/.well-known/ready")
        assert ready.status_code == 503
        assert "loading" in strict_json(ready.text)["error"]
        early = server.post("/vectorize", {"texts": ["a cat"]})
        assert early.status_code == 503 and "loading" in strict_json(early.text)["error"]
        assert early.headers["Retry-After"]
        assert strict_json(server.get("/meta").text)  # still a JSON object for Weaviate's probe
        server.wait_ready()
        assert server.post("/vectorize", {"texts": ["a cat"]}).status_code == 200
    finally:
        assert server.stop() == 0


def test_sigterm_finishes_the_request_in_flight_then_exits(tiny_model):
    server = ServerProcess(tiny_model).start()
    server.wait_ready()
    # Enough distinct large images to keep the model busy for a while.
    images = [media.b64(media.encode(media.photo(1200, 900, seed=100 + i), "JPEG", quality=80)) for i in range(40)]
    result: dict = {}

    def slow_request() -> None:
        result["response"] = server.post("/vectorize", {"images": images})

    def in_flight() -> float:  # this scrape included
        return metric_value(server.get("/metrics").text, "clip_requests_in_flight")

    assert in_flight() == 1
    worker = threading.Thread(target=slow_request)
    worker.start()
    deadline = time.monotonic() + 30
    while in_flight() < 2 and time.monotonic() < deadline:  # the upload is over and the request is served
        time.sleep(0.01)
    assert "response" not in result, "the request finished before the signal could be sent"
    server.terminate()
    time.sleep(0.1)
    try:
        refused = server.post("/vectorize", {"texts": ["too late"]})
    except requests.ConnectionError:
        refused = None  # the port may already be closed: also a refusal
    worker.join(60)
    assert server.process.wait(30) == 0
    response = result["response"]
    assert response.status_code == 200, response.text
    assert len(response.json()["imageVectors"]) == 40
    assert "waiting for 1 request(s) in flight" in server.log, server.log
    if refused is not None:
        assert refused.status_code == 503 and "shutting down" in strict_json(refused.text)["error"]


def test_a_directory_that_is_no_model_fails_at_start_up_with_what_was_expected(tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    result = run_cli("--model", str(tmp_path), "--port", "0")
    assert result.returncode == 2
    assert "is not a CLIP model directory" in result.stderr
    assert "Expected one of" in result.stderr and "notes.txt" in result.stderr


def test_no_model_configured_serves_the_builtin_demo_model_and_says_so():
    server = ServerProcess(None).start()
    try:
        server.wait_ready()
        meta = strict_json(server.get("/meta").text)["clip-vectorizer"]["model"]
        assert meta["builtin_demo"] is True and meta["name"] == "clip-vectorizer-demo-shapes"
        assert meta["path"].endswith("default_model")
        vectors = server.post("/vectorize", {"texts": ["a red circle"]}).json()["textVectors"]
        assert len(vectors) == 1 and len(vectors[0]) == meta["dimension"]
        assert "built-in demo model" in server.log and "VECTORIZER_MODEL" in server.log
    finally:
        assert server.stop() == 0


def test_a_bad_setting_names_its_flag():
    result = run_cli("--model", ".", "--dtype", "float8")
    assert result.returncode == 2
    assert "--dtype" in result.stderr and "float8" in result.stderr


def test_unloadable_weights_stop_the_process_with_status_3(tiny_model, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for path in tiny_model.iterdir():
        (broken / path.name).write_bytes(path.read_bytes())
    (broken / "model.safetensors").write_bytes(b"\x00" * 64)
    server = ServerProcess(broken).start()
    assert server.process.wait(120) == 3
    assert "could not load the model" in server.log


@pytest.mark.parametrize(
    "variable,value,says",
    [
        ("VECTORIZER_PORT", "http", "VECTORIZER_PORT"),
        ("VECTORIZER_WORKERS", "many", "VECTORIZER_WORKERS"),
        # not an error, as in the reference image (CUDA stays off), but a warning naming the value
        ("ENABLE_CUDA", "maybe", "ENABLE_CUDA='maybe' leaves CUDA off"),
    ],
)
def test_bad_environment_values_name_the_variable(variable, value, says):
    result = subprocess.run(
        [sys.executable, "-m", "vectorizer_module", "--model", "."],
        capture_output=True,
        text=True,
        timeout=60,
        env={**__import__("os").environ, variable: value},
    )
    assert result.returncode == 2 and says in result.stderr


def wait_for_queue(server: ServerProcess, depth: int, timeout: float = 30) -> None:
    """Until at least ``depth`` items wait for the model (the busy request has really arrived)."""
    deadline = time.monotonic() + timeout
    while metric_value(server.get("/metrics").text, "clip_queue_depth") < depth:
        assert time.monotonic() < deadline, "the busy request never queued"
        time.sleep(0.05)


def busy_images(count: int, seed: int) -> list[str]:
    return [media.b64(media.encode(media.photo(640, 480, seed=seed + i), "JPEG", quality=85)) for i in range(count)]


def test_sigterm_exits_within_the_grace_period_even_if_work_is_still_running(vit_model):
    server = ServerProcess(vit_model, "--shutdown-grace", "0.5", "--max-batch-size", "4").start()
    server.wait_ready()
    images = busy_images(32, 300)  # about 8 forward passes of ~0.5 s on 2 cores
    worker = threading.Thread(target=lambda: _swallow(lambda: server.post("/vectorize", {"images": images})))
    worker.start()
    wait_for_queue(server, 8)
    server.terminate()
    started = time.monotonic()
    assert server.process.wait(30) == 0
    assert time.monotonic() - started < 4
    assert "grace period over with 1 request(s) still running" in server.log, server.log
    worker.join(60)


def _swallow(call) -> None:
    try:
        call()
    except requests.RequestException:
        pass


def test_work_of_a_client_that_gave_up_is_dropped(vit_model):
    server = ServerProcess(vit_model, "--max-batch-size", "4").start()
    server.wait_ready()
    heavy, light = busy_images(24, 400), busy_images(4, 500)
    try:
        busy = threading.Thread(target=lambda: server.post("/vectorize", {"images": heavy}))
        busy.start()
        wait_for_queue(server, 8)
        with pytest.raises(requests.Timeout):  # its items wait behind the heavy ones
            requests.post(server.url + "/vectorize", json={"images": light}, timeout=0.5)
        busy.join(60)

        def dropped() -> float:
            return metric_value(server.get("/metrics").text, "clip_rejected_total", reason="client_gone")

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not dropped():
            time.sleep(0.2)
        assert dropped() == 1.0, server.get("/metrics").text + server.log[-3000:]
        embedded = metric_value(server.get("/metrics").text, "clip_items_embedded_total", modality="image")
        assert embedded == 1 + 24  # warm-up and the patient request; none of the 4
    finally:
        assert server.stop() == 0


def test_sigterm_under_keep_alive_load_resets_no_request(tiny_model):
    """Clients hold kept-alive connections and send without pause while the service stops: every
    request gets an answer (200, or 503 with Connection: close) or a refused connection, never a reset."""
    server = ServerProcess(tiny_model, "--workers", "2").start()
    server.wait_ready()
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    stop = threading.Event()

    def client(index: int) -> None:
        session = requests.Session()
        sent = 0
        while not stop.is_set():
            sent += 1
            try:
                response = session.post(server.url + "/vectorize", json={"texts": [f"{index} {sent}"]}, timeout=30)
                kind = str(response.status_code)
            except requests.ConnectionError as exc:
                kind = "refused" if "Connection refused" in str(exc) else f"reset: {exc}"
            with lock:
                outcomes[kind] += 1
            if kind == "refused":
                time.sleep(0.02)

    clients = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for thread in clients:
        thread.start()
    deadline = time.monotonic() + 30
    while outcomes["200"] < 100 and time.monotonic() < deadline:
        time.sleep(0.05)
    server.terminate()
    assert server.process.wait(30) == 0
    time.sleep(0.5)  # a few refused connections after the exit
    stop.set()
    for thread in clients:
        thread.join(30)
    resets = {kind: n for kind, n in outcomes.items() if kind.startswith("reset")}
    assert not resets, (resets, outcomes)
    assert outcomes["200"] >= 100 and outcomes["refused"] > 0
    assert set(outcomes) <= {"200", "503", "refused"}, outcomes


def test_a_port_in_use_is_one_line_naming_the_port_and_the_setting(tiny_model):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = run_cli("--model", str(tiny_model), "--port", str(port))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"127.0.0.1:{port}" in lines[0] and "VECTORIZER_PORT" in lines[0] and "--port" in lines[0]


@pytest.mark.parametrize("name", ["SIGHUP", "SIGTTIN", "SIGTTOU"])
def test_reload_and_worker_count_signals_are_logged_and_ignored(tiny_model, name):
    """SIGHUP used to reload, SIGTTIN to add a worker: both forked workers beyond the board's slots and
    the service exited 255. Sent to the arbiter and to the workers, they change nothing now."""
    server = ServerProcess(tiny_model, "--workers", "2").start()
    server.wait_ready()
    try:
        workers = server.worker_pids()
        for pid in [server.process.pid, *workers]:
            os.kill(pid, getattr(signal, name))
        time.sleep(1.5)
        assert server.process.poll() is None, server.log[-2000:]
        assert server.worker_pids() == workers
        assert server.get("/.well-known/ready").status_code == 204
        assert server.post("/vectorize", {"texts": ["still here"]}).status_code == 200
        assert f"{name} ignored" in server.log
    finally:
        assert server.stop() == 0
