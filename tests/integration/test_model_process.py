"""Each worker's model in a process of its own (``server/model_process.py``): where torch lives, the
model's lower CPU priority, and what happens when either process of a worker dies."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import requests

from tests.helpers import log_lines
from tests.integration.test_workers import ready_worker_pids, wait_for
from tests.reference import strict_json
from tests.server_process import ServerProcess, child_pids, running


def nice_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def maps_torch(pid: int) -> bool:
    return "libtorch" in Path(f"/proc/{pid}/maps").read_text()


def test_each_worker_forks_one_model_process_holding_torch_at_the_lower_priority(tiny_model):
    server = ServerProcess(tiny_model, "--workers", "2", "--model-nice", "7").start()
    server.wait_ready()
    try:
        workers = server.worker_pids()
        models = {worker: child_pids(worker) for worker in workers}
        assert all(len(children) == 1 for children in models.values()), models
        for worker, (model,) in models.items():
            assert nice_of(model) - nice_of(worker) == 7
            assert maps_torch(model)
            assert not maps_torch(worker), "the HTTP front imported torch"
        response = server.post("/vectorize", {"texts": ["a red circle"]})
        assert (
            response.status_code == 200
            and len(response.json()["textVectors"][0]) == server.get("/meta").json()["projection_dim"]
        )
        computed = {e["pid"] for e in log_lines(server) if "ready on cpu" in e.get("message", "")}
        assert computed == {model for (model,) in models.values()}  # the models loaded there, not in the fronts
    finally:
        assert server.stop() == 0
    assert not any(running(pid) for children in models.values() for pid in children)


def test_an_error_raised_in_the_model_process_reaches_the_client_as_its_json_error(tiny_model):
    server = ServerProcess(tiny_model).start()
    server.wait_ready()
    try:
        response = server.post("/vectorize", {"texts": ["fine"], "images": ["bm90IGFuIGltYWdl"]})  # "not an image"
        assert response.status_code == 400
        assert "images[0]" in strict_json(response.text)["error"]
        counts = requests.post(server.url + "/v1/embeddings", json={"input": ["one two three"]}, timeout=30)
        assert counts.status_code == 200 and counts.json()["usage"]["prompt_tokens"] > 3
    finally:
        assert server.stop() == 0


def test_a_killed_model_process_takes_its_worker_along_and_both_are_replaced(tiny_model):
    server = ServerProcess(tiny_model, "--workers", "2").start()
    server.wait_ready()
    try:
        before = ready_worker_pids(server)
        victim_worker = min(before)
        (victim,) = child_pids(victim_worker)
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: not running(victim_worker), 30, "the worker of the killed model process to exit")
        wait_for(lambda: len(ready_worker_pids(server) - before) == 1, 90, "a replacement worker with its model")
        assert all(len(child_pids(worker)) == 1 for worker in server.worker_pids())
        assert server.post("/vectorize", {"texts": ["after the replacement"]}).status_code == 200
        assert "exited with status -9" in server.log
    finally:
        assert server.stop() == 0


def test_a_killed_worker_takes_its_model_process_along(tiny_model):
    server = ServerProcess(tiny_model).start()
    server.wait_ready()
    try:
        (worker,) = server.worker_pids()
        (model,) = child_pids(worker)
        os.kill(worker, signal.SIGKILL)
        started = time.monotonic()
        wait_for(lambda: not running(model), 10, "the orphaned model process to exit")
        assert time.monotonic() - started < 5
        server.wait_ready(90)  # the arbiter's replacement
    finally:
        assert server.stop() == 0
