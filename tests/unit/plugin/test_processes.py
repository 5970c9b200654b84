"""The stack's process handling, with small stand-in processes (no Weaviate needed)."""

from __future__ import annotations

import stat
import sys
import time

import pytest

from plugin_api.binary import find_weaviate_server
from plugin_api.errors import StackError, WeaviateBinaryNotFound
from plugin_api.processes import ManagedProcess, free_ports, http_status


def test_free_ports_are_distinct():
    ports = free_ports(8)
    assert len(set(ports)) == 8


def test_exit_before_ready_raises_with_the_log_tail(tmp_path):
    proc = ManagedProcess(
        "crasher",
        [sys.executable, "-c", "print('bad model dir'); raise SystemExit(2)"],
        log_path=tmp_path / "crasher.log",
        ready_url=f"http://127.0.0.1:{free_ports(1)[0]}/",
    )
    proc.start()
    with pytest.raises(StackError, match=r"(?s)crasher exited with status 2.*bad model dir"):
        proc.wait_ready(30)


def test_ready_when_the_url_answers_and_stop_is_sigterm(tmp_path):
    port = free_ports(1)[0]
    code = (
        f"import http.server, signal, sys\n"
        f"signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
        f"http.server.HTTPServer(('127.0.0.1', {port}), http.server.SimpleHTTPRequestHandler).serve_forever()"
    )
    proc = ManagedProcess(
        "web", [sys.executable, "-c", code], log_path=tmp_path / "web.log", ready_url=f"http://127.0.0.1:{port}/"
    )
    proc.start()
    proc.wait_ready(30)
    assert http_status(f"http://127.0.0.1:{port}/") == 200
    assert proc.stop() == 0 and not proc.running
    assert http_status(f"http://127.0.0.1:{port}/") is None


def test_stop_kills_a_process_that_ignores_sigterm(tmp_path):
    code = (
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ignoring' + ' now', flush=True)\ntime.sleep(60)"
    )
    proc = ManagedProcess(
        "stubborn", [sys.executable, "-c", code], log_path=tmp_path / "s.log", ready_url="http://127.0.0.1:9/"
    )
    proc.start()
    deadline = time.monotonic() + 20
    while "ignoring now" not in proc.log_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    started = time.monotonic()
    assert proc.stop(timeout=0.5) == -9
    assert time.monotonic() - started < 10


def _executable(path):
    path.write_text("#!/bin/sh\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_binary_from_env_var_and_clear_error_when_missing(tmp_path, monkeypatch):
    fake = _executable(tmp_path / "weaviate-server")
    monkeypatch.setenv("WEAVIATE_SERVER_BIN", str(fake))
    assert find_weaviate_server() == fake
    monkeypatch.setenv("WEAVIATE_SERVER_BIN", str(tmp_path / "nope"))
    with pytest.raises(WeaviateBinaryNotFound, match="not an executable file"):
        find_weaviate_server()


def test_binary_found_in_go_bin_and_error_names_the_places(tmp_path, monkeypatch):
    monkeypatch.delenv("WEAVIATE_SERVER_BIN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("GOPATH", str(tmp_path / "gopath"))
    monkeypatch.delenv("GOBIN", raising=False)
    with pytest.raises(WeaviateBinaryNotFound, match=r"scripts/install\.sh.*WEAVIATE_SERVER_BIN"):
        find_weaviate_server()
    (tmp_path / "go" / "bin").mkdir(parents=True)
    fake = _executable(tmp_path / "go" / "bin" / "weaviate-server")
    assert find_weaviate_server() == fake


def test_local_stack_fails_before_starting_anything_without_a_binary(tmp_path, monkeypatch):
    from plugin_api.stack import LocalStack

    monkeypatch.setenv("WEAVIATE_SERVER_BIN", str(tmp_path / "missing"))
    with pytest.raises(WeaviateBinaryNotFound):
        LocalStack(tmp_path, workdir=tmp_path / "w")
    assert not (tmp_path / "w").exists()


def test_weaviate_ports_given_are_used_and_the_others_picked_free(tmp_path):
    from plugin_api.stack import WeaviateServer

    http, raft_rpc = free_ports(2)
    server = WeaviateServer(
        tmp_path / "weaviate-server",  # not started: only its command and environment are read
        inference_url="http://127.0.0.1:1",
        data_dir=tmp_path / "data",
        log_path=tmp_path / "weaviate.log",
        http_port=http,
        raft_rpc_port=raft_rpc,
        gossip_port=7946,
    )
    env = server.process.env
    assert server.process.command[-3] == str(http) and server.url.endswith(f":{http}")
    assert env["RAFT_INTERNAL_RPC_PORT"] == str(raft_rpc) and env["CLUSTER_GOSSIP_BIND_PORT"] == "7946"
    chosen = [env[k] for k in ("GRPC_PORT", "CLUSTER_DATA_BIND_PORT", "RAFT_PORT")]
    everything = chosen + [str(http), str(raft_rpc), "7946"]
    assert len(set(everything)) == 6  # the free ones are distinct, and none is a port given
    assert server.cluster_ports == {
        "gossip": 7946,
        "data": int(chosen[1]),
        "raft": int(chosen[2]),
        "raft_rpc": raft_rpc,
    }


def test_local_stack_refuses_an_unknown_cluster_port(tmp_path):
    from plugin_api.stack import LocalStack

    binary = tmp_path / "weaviate-server"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    with pytest.raises(ValueError, match=r"\['gossip_port'\]; its keys are \['gossip', 'data', 'raft', 'raft_rpc'\]"):
        LocalStack(None, workdir=tmp_path, weaviate_binary=binary, cluster_ports={"gossip_port": 1})
