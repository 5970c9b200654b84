"""Start ``clip-vectorizer`` as a real subprocess on a free loopback port, and stop it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from plugin_api.processes import free_ports, stop_process


def metric_value(text: str, name: str, **labels: str) -> float:
    """The value of one Prometheus series in a /metrics text, 0.0 if it is absent."""
    selector = ",".join(f'{k}="{v}"' for k, v in labels.items())
    series = name + ("{" + selector + "}" if selector else "")
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return 0.0


def metric_series(text: str, name: str) -> dict[str, float]:
    """Every series of one Prometheus metric in a /metrics text: {labels as written: value}."""
    found = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            series, value = line.rsplit(" ", 1)
            found[series[len(name) :]] = float(value)
    return found


def peak_rss_mb(pid: int) -> float:
    """A process's peak resident memory so far (``VmHWM``), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for {pid}")


def running(pid: int) -> bool:
    """Whether ``pid`` is a process that has not exited (a zombie, exited but not yet reaped, has)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class ServerProcess:
    def __init__(self, model: Path | str | None, *args: str, env: dict[str, str] | None = None) -> None:
        self.model = None if model is None else str(model)  # None: no --model (the built-in demo model)
        self.args = list(args)
        self.env = env or {}
        self.port = free_ports(1)[0]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_file = tempfile.NamedTemporaryFile(prefix="clip-vectorizer-", suffix=".log", delete=False)
        self.process: subprocess.Popen | None = None

    def start(self) -> ServerProcess:
        env = dict(os.environ, **self.env)
        model = [] if self.model is None else ["--model", self.model]
        command = [
            sys.executable,
            "-m",
            "vectorizer_module",
            *model,
            "--port",
            str(self.port),
            "--threads",
            "8",
            *self.args,
        ]
        self.process = subprocess.Popen(command, stdout=self.log_file, stderr=subprocess.STDOUT, env=env)
        return self

    @property
    def log(self) -> str:
        return Path(self.log_file.name).read_text(errors="replace")

    def wait_live(self, timeout: float = 60) -> None:
        self._wait("/.well-known/live", timeout)

    def wait_ready(self, timeout: float = 120) -> None:
        self._wait("/.well-known/ready", timeout)

    def _wait(self, path: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log}")
            try:
                if requests.get(self.url + path, timeout=1).status_code == 204:
                    return
            except requests.RequestException:  # not listening yet, or too busy loading to answer in time
                pass
            time.sleep(0.05)
        raise TimeoutError(f"{path} did not answer 204 within {timeout} s:\n{self.log}")

    def worker_pids(self) -> set[int]:
        """The pids of the service's worker processes (the children of the arbiter we started)."""
        return child_pids(self.process.pid)

    def model_pids(self) -> set[int]:
        """The pids of the workers' model processes (``server/model_process.py``)."""
        return {child for worker in self.worker_pids() for child in child_pids(worker)}

    def terminate(self) -> None:
        self.process.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 30) -> int:
        return stop_process(self.process, timeout)

    def post(self, path: str, body, **kwargs) -> requests.Response:
        if isinstance(body, (bytes, str)):
            return requests.post(self.url + path, data=body, timeout=60, **kwargs)
        return requests.post(self.url + path, json=body, timeout=60, **kwargs)

    def get(self, path: str, **kwargs) -> requests.Response:
        return requests.get(self.url + path, timeout=60, **kwargs)


def child_pids(parent: int) -> set[int]:
    """The pids of ``parent``'s children, from /proc."""
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            children.add(int(stat.parent.name))
    return children
