"""Several worker processes behind one port (``--workers 2``): readiness, a worker that dies, SIGTERM,
metrics that add up, and vectors that do not depend on which worker or batch computed them."""

from __future__ import annotations

import os
import signal
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import requests

from tests import media
from tests.helpers import log_lines, vectors_by_input
from tests.reference import strict_json
from tests.server_process import ServerProcess, metric_series, metric_value, running


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def ready_worker_pids(server: ServerProcess) -> set[int]:
    series = metric_series(server.get("/metrics").text, "clip_worker_ready")
    return {int(labels.split('"')[1]) for labels, value in series.items() if value == 1}


def loaded_pids(server: ServerProcess) -> set[int]:
    """The workers whose front has heard from its model process that the model is loaded."""
    return ready_worker_pids(server)


def test_ready_only_once_every_worker_has_its_model(tiny_model):
    server = ServerProcess(tiny_model, "--workers", "2").start()
    try:
        wait_for(lambda: len(server.worker_pids()) == 2, 30, "two workers")
        late, early = sorted(server.worker_pids())
        for pid in (late, early):  # both stopped before torch is even imported
            os.kill(pid, signal.SIGSTOP)
        os.kill(early, signal.SIGCONT)
        wait_for(lambda: early in loaded_pids(server), 60, "the first worker's model")
        for _ in range(5):  # only the first worker can answer, and it must not say ready
            response = server.get("/.well-known/ready")
            assert response.status_code == 503, response.text
            assert "1 of 2 workers" in strict_json(response.text)["error"]
            refused = server.post("/vectorize", {"texts": ["too early"]})
            assert refused.status_code == 503 and refused.headers["Retry-After"]
        assert late not in loaded_pids(server)
        os.kill(late, signal.SIGCONT)
        server.wait_ready(60)
        assert loaded_pids(server) == {late, early}
    finally:
        assert server.stop() == 0


def test_a_killed_worker_is_replaced_while_the_service_stays_ready(tiny_model):
    server = ServerProcess(tiny_model, "--workers", "2").start()
    server.wait_ready()
    try:
        before = ready_worker_pids(server)
        assert before == server.worker_pids() and len(before) == 2
        stop = threading.Event()
        outcomes: list[tuple] = []
        probes: list[object] = []

        def client(index: int) -> None:
            session = requests.Session()
            count = 0
            while not stop.is_set():
                count += 1
                try:
                    response = session.post(
                        server.url + "/vectorize", json={"texts": [f"client {index} text {count}"]}, timeout=30
                    )
                    outcomes.append((response.status_code, response.text[:200]))
                except requests.RequestException as exc:
                    outcomes.append(("error", str(exc)[:200]))

        def prober() -> None:
            while not stop.is_set():
                try:
                    probes.append(requests.get(server.url + "/.well-known/ready", timeout=10).status_code)
                except requests.RequestException as exc:
                    probes.append(exc)
                time.sleep(0.05)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(4)] + [threading.Thread(target=prober)]
        for thread in threads:
            thread.start()
        wait_for(lambda: len(outcomes) >= 20, 30, "the load to run")
        victim = min(before)
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: len(ready_worker_pids(server) - before) == 1, 90, "a replacement worker with its model")
        served = len(outcomes)
        wait_for(lambda: len(outcomes) >= served + 20, 30, "the load to go on after the replacement")
        stop.set()
        for thread in threads:
            thread.join(60)
        after = ready_worker_pids(server)
        assert victim not in after and len(after) == 2 and after & before == before - {victim}
        assert metric_value(server.get("/metrics").text, "clip_worker_starts_total") == 3
        failed = [o for o in outcomes if o[0] != 200]
        assert len(failed) <= 4, f"more failures than requests in flight: {failed}"  # one per client at most
        assert not [o for o in failed if o[0] == 503], f"a request met a worker without its model: {failed}"
        assert [p for p in probes if p != 204 and not isinstance(p, Exception)] == [], probes
        assert sum(isinstance(p, Exception) for p in probes) <= 1
        assert server.post("/vectorize", {"texts": ["after the replacement"]}).status_code == 200
    finally:
        assert server.stop() == 0


def test_sigterm_drains_every_worker_and_drops_no_accepted_request(tiny_model):
    server = ServerProcess(tiny_model, "--workers", "2").start()
    server.wait_ready()
    images = [media.b64(media.encode(media.photo(1200, 900, seed=700 + i), "JPEG", quality=80)) for i in range(40)]
    results: list[requests.Response] = []

    def slow_request() -> None:
        results.append(requests.post(server.url + "/vectorize", json={"images": images}, timeout=120))

    requests_ = [threading.Thread(target=slow_request) for _ in range(4)]
    for thread in requests_:
        thread.start()
    # 4 requests are being served (the scrape is the fifth)
    wait_for(lambda: metric_value(server.get("/metrics").text, "clip_requests_in_flight") >= 5, 60, "4 in flight")
    assert not results, "the requests finished before the signal could be sent"
    server.terminate()
    for thread in requests_:
        thread.join(120)
    assert server.process.wait(60) == 0
    assert [r.status_code for r in results] == [200] * 4, [r.text[:200] for r in results]
    assert all(len(r.json()["imageVectors"]) == 40 for r in results)
    drained = {e["pid"] for e in log_lines(server) if e.get("message", "").startswith("SIGTERM received")}
    assert len(drained) == 2, server.log[-3000:]  # every worker heard it and drained
    assert "still running" not in server.log


def test_vectors_are_bit_identical_whichever_worker_and_batch_computes_them(tiny_model):
    """With fixed shapes and no cache, concurrent requests of different compositions, spread over both
    workers, give each input the same bits; the workers' request counts add up in /metrics."""
    server = ServerProcess(tiny_model, "--workers", "2", "--fixed-shape", "true", "--cache-size", "0").start()
    server.wait_ready()
    try:
        texts = ["a red circle", "a blue square on the left", "x", "a much longer caption of a yellow triangle"]
        images = [media.b64(media.encode(media.photo(64, 48, seed=s), "PNG")) for s in range(3)]
        seen = vectors_by_input(server, texts, images, clients=8, each=6)
        sent = 8 * 6
        assert len(seen) == len(texts) + len(images)
        assert {key: len(vectors) for key, vectors in seen.items()} == dict.fromkeys(seen, 1)
        serving = {e["pid"] for e in log_lines(server) if e.get("message") == "POST /vectorize 200"}
        assert len(serving) == 2, "one worker served every request"
        metrics = server.get("/metrics").text
        assert metric_value(metrics, "clip_requests_total", endpoint="/vectorize", status="200") == sent
        embedded = metric_value(metrics, "clip_items_embedded_total", modality="text")
        assert embedded >= len(texts) + 2  # both workers' warm-ups and at least each text once
        vectors = np.array([next(iter(v)) for v in seen.values()])
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    finally:
        assert server.stop() == 0


def metrics_files(server: ServerProcess) -> list[Path]:
    (folder,) = Path(tempfile.gettempdir()).glob(f"clip-vectorizer-metrics-{server.process.pid}-*")
    return sorted(folder.iterdir())


def test_replaced_workers_leave_no_metrics_files_behind(tiny_model):
    """Each restart used to add a worker's files (200 restarts: 10 files -> 219, 14 MB); now a replacement
    continues its predecessor's files, and the counters keep adding up across the restarts."""
    server = ServerProcess(tiny_model, "--workers", "2").start()
    server.wait_ready()
    try:
        live = metrics_files(server)
        for round_ in range(4):
            server.post("/vectorize", {"texts": [f"before restart {round_}"]})
            victim = min(ready_worker_pids(server))
            os.kill(victim, signal.SIGKILL)
            wait_for(lambda v=victim: len(ready_worker_pids(server) - {v}) == 2, 60, "the replacement's model")
        assert [f.name for f in metrics_files(server)] == [f.name for f in live]
        metrics = server.get("/metrics").text
        assert metric_value(metrics, "clip_worker_starts_total") == 6
        assert metric_value(metrics, "clip_requests_total", endpoint="/vectorize", status="200") == 4
    finally:
        assert server.stop() == 0


def test_workers_of_a_killed_arbiter_release_the_port_and_a_restart_binds_at_once(tiny_model):
    server = ServerProcess(tiny_model, "--workers", "2").start()
    server.wait_ready()
    workers = server.worker_pids()
    folder = metrics_files(server)[0].parent
    kept = requests.Session()
    assert kept.get(server.url + "/.well-known/ready").status_code == 204  # a kept-alive client
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(10)
    killed = time.monotonic()
    wait_for(lambda: not any(running(pid) for pid in workers), 10, "the orphaned workers to exit")
    gone_after = time.monotonic() - killed
    again = ServerProcess(tiny_model, "--workers", "2")
    again.port, again.url = server.port, server.url
    again.start()
    try:
        again.wait_ready(60)  # exit status 2 ("cannot listen") would fail here
        assert gone_after < 3.5  # noticed within a second; kept-alive connections get 2 s for a request
        assert not folder.exists(), "the dead service's metrics folder was left behind"
        assert "removed the metrics folder of a service that is gone" in again.log
    finally:
        assert again.stop() == 0
