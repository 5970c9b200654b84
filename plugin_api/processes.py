"""A child process with a log file, an HTTP readiness probe, and a clean stop (SIGTERM, then kill)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path

from plugin_api.errors import StackError


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct TCP ports that were free a moment ago (all held open together while picked)."""
    with ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket())
            sock.bind((host, 0))
            ports.append(sock.getsockname()[1])
        return ports


def stop_process(process: subprocess.Popen, timeout: float) -> int:
    """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL. Returns the exit status."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def http_status(url: str, timeout: float = 1.0) -> int | None:
    """The status code of ``GET url``, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, ValueError):
        return None


class ManagedProcess:
    """One server process. Output goes to ``log_path`` (appended, so a restart keeps the earlier run)."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        *,
        log_path: Path,
        ready_url: str,
        env: Mapping[str, str] | None = None,
        ready_statuses: tuple[int, ...] = (200, 204),
    ) -> None:
        self.name = name
        self.command = [str(part) for part in command]
        self.log_path = Path(log_path)
        self.ready_url = ready_url
        self.env = dict(env) if env is not None else None
        self.ready_statuses = ready_statuses
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self) -> ManagedProcess:
        if self.running:
            raise StackError(f"{self.name} is already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"=== {time.strftime('%H:%M:%S')} starting {self.name}: {' '.join(self.command)}\n".encode())
            log.flush()
            # A session of its own: Ctrl-C in a terminal reaches only us, and we stop children in order.
            self.process = subprocess.Popen(
                self.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                start_new_session=True,
            )
        return self

    def wait_ready(self, timeout: float) -> None:
        """Poll ``ready_url`` until it answers one of ``ready_statuses``; fail early if the process exits."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process is None or self.process.poll() is not None:
                code = None if self.process is None else self.process.returncode
                raise StackError(
                    f"{self.name} exited with status {code} before it was ready; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            if http_status(self.ready_url) in self.ready_statuses:
                return
            if time.monotonic() > deadline:
                raise StackError(
                    f"{self.name} was not ready at {self.ready_url} within {timeout:.0f} s; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL. Returns the exit status."""
        if self.process is None:
            return None
        return stop_process(self.process, timeout)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


def inherited_env(**overrides: str) -> dict[str, str]:
    """The current environment with ``overrides`` on top."""
    env = dict(os.environ)
    env.update(overrides)
    return env
