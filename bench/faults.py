"""The HTTP front under connection-level faults: each probe of issue 32, against a real service, with the
figures it gives and whether they meet the target.

    python3 -m bench.faults                       # every probe, the built-in demo model, 1 worker
    python3 -m bench.faults --only slow_bodies,long_heads --restarts 20 --out docs/bench/faults.json

Each probe starts its own ``clip-vectorizer`` on a free loopback port (so one cannot disturb the next),
does its damage with the raw-socket clients of ``tests/fault_clients.py``, and meanwhile times what a
new, well-behaved client gets: live, ready and ``/meta`` (204/204/200) and a one-text ``/vectorize``
(200). The target for those is 1 s throughout. Loopback only; needs about 20,000 file descriptors for
the 10,000-connection probe (raised to the hard limit here).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import os
import platform
import signal
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import requests
from PIL import Image

from tests import fault_clients as faults
from tests.media import png_with_text
from tests.server_process import ServerProcess, peak_rss_mb, running

TARGET_SECONDS = 1.0


def worst(results: dict[str, tuple]) -> str:
    return ", ".join(f"{name} {status} in {seconds * 1000:.0f} ms" for name, (status, seconds) in results.items())


def during(server: ServerProcess, rounds: int = 3, pause: float = 0.7) -> tuple[bool, str]:
    """Probe ``rounds`` times while a fault holds; (all within the target, the slowest round's figures)."""
    slowest, ok = None, True
    for _ in range(rounds):
        time.sleep(pause)
        results = faults.probe_all(server.url)
        ok = ok and faults.all_answered_within(results, TARGET_SECONDS)
        if slowest is None or max(s for _, s in results.values()) > max(s for _, s in slowest.values()):
            slowest = results
    return ok, worst(slowest)


@contextlib.contextmanager
def served(model: str | None, *args: str, port: int | None = None) -> Iterator[ServerProcess]:
    server = ServerProcess(model, *args)
    if port is not None:
        server.port, server.url = port, f"http://127.0.0.1:{port}"
    server.start()
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def holding(sockets: list[socket.socket]) -> Iterator[list[socket.socket]]:
    try:
        yield sockets
    finally:
        faults.close_all(sockets)


# -- the probes: each returns (met the target, figures) ----------------------------------------------------
def many_descriptors(model: str | None, _: argparse.Namespace) -> tuple[bool, str]:
    with served(model) as server, holding(faults.open_kept_alive(server.port, 1100)):
        return during(server, rounds=1, pause=0)


def kept_alive_10000(model: str | None, _: argparse.Namespace) -> tuple[bool, str]:
    with served(model, "--workers", "1") as server:
        started = time.monotonic()
        with holding(faults.open_kept_alive(server.port, 10_000)):
            opened = time.monotonic() - started
            ok, figures = during(server, rounds=2)
            return ok, f"10,000 kept-alive connections opened in {opened:.1f} s; then {figures}"


def silent_past_the_limit(model: str | None, _: argparse.Namespace) -> tuple[bool, str]:
    with served(model, "--max-connections", "100") as server, holding(faults.open_silent(server.port, 400)):
        return during(server, rounds=2)


def all_busy_past_the_limit(model: str | None, _: argparse.Namespace) -> tuple[bool, str]:
    with served(model, "--max-connections", "100") as server, faults.slow_bodies(server.port, 100):
        time.sleep(0.5)
        with faults.connect(server.port) as sock:
            sock.sendall(faults.request_bytes())
            started = time.monotonic()
            status, headers, _ = faults.read_response(sock, timeout=30)
            seconds = time.monotonic() - started
    ok = status == 503 and headers.get("connection") == "close" and seconds < TARGET_SECONDS
    return ok, f"the 101st connection: {status} Connection: {headers.get('connection')} in {seconds * 1000:.0f} ms"


def trickling_probe(kind: str) -> Callable[[str | None, argparse.Namespace], tuple[bool, str]]:
    def probe(model: str | None, _: argparse.Namespace) -> tuple[bool, str]:
        with served(model) as server, getattr(faults, kind)(server.port, 64):
            return during(server, rounds=4)

    return probe


def never_reading(model: str | None, _: argparse.Namespace) -> tuple[bool, str]:
    with served(model) as server:
        with holding(faults.never_reading(server.port, 64)):
            ok, figures = during(server, rounds=4)
        time.sleep(0.5)
        errors = sum(1 for line in server.log.splitlines() if '"level": "error"' in line or "Traceback" in line)
        return ok and errors == 0, f"{figures}; {errors} error lines in the log"


def reload_signals(model: str | None, _: argparse.Namespace) -> tuple[bool, str]:
    with served(model, "--workers", "2") as server:
        for name in ("SIGHUP", "SIGTTIN", "SIGTTOU"):
            os.kill(server.process.pid, getattr(signal, name))
        time.sleep(1.5)
        alive = server.process.poll() is None
        results = faults.probe_all(server.url) if alive else {}
        ok = alive and faults.all_answered_within(results, TARGET_SECONDS)
        return ok, f"service {'running' if alive else f'exited {server.process.returncode}'}; {worst(results)}"


def metrics_folder(server: ServerProcess) -> Path:
    (folder,) = Path(tempfile.gettempdir()).glob(f"clip-vectorizer-metrics-{server.process.pid}-*")
    return folder


def arbiter_killed(model: str | None, _: argparse.Namespace) -> tuple[bool, str]:
    with served(model, "--workers", "2") as server:
        workers, folder = server.worker_pids(), metrics_folder(server)
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(10)
        killed = time.monotonic()
        while any(running(pid) for pid in workers) and time.monotonic() - killed < 60:
            time.sleep(0.02)
        released = time.monotonic() - killed
        started = time.monotonic()
        with served(model, "--workers", "2", port=server.port):
            ready = time.monotonic() - started
    ok = released < 1 + 2.5 and not folder.exists()  # noticed within 1 s; idle connections get 2 s
    return ok, (
        f"orphaned workers exited {released:.2f} s after the kill; a restart on the same port was ready "
        f"{ready:.1f} s later; the dead service's metrics folder {'left' if folder.exists() else 'removed'}"
    )


def worker_restarts(model: str | None, args: argparse.Namespace) -> tuple[bool, str]:
    with served(model, "--workers", "2") as server:
        folder = metrics_folder(server)

        def size() -> tuple[int, int]:
            files = list(folder.iterdir())
            return len(files), sum(f.stat().st_size for f in files)

        before = size()
        for _ in range(args.restarts):
            victim = min(server.worker_pids())
            os.kill(victim, signal.SIGKILL)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                pids = server.worker_pids()
                if len(pids) == 2 and victim not in pids and server.get("/.well-known/ready").status_code == 204:
                    break
                time.sleep(0.05)
        after = size()
    ok = after[0] <= 2 * before[0]
    return ok, (
        f"{args.restarts} restarts: metrics folder {before[0]} files ({before[1] / 1e6:.1f} MB) -> "
        f"{after[0]} files ({after[1] / 1e6:.1f} MB)"
    )


def raw_answer(model: str | None, raw: bytes, *, half_close: bool = False) -> tuple[int, str]:
    """Send ``raw`` on a new connection; the answer's status and a short description of its body."""
    with served(model) as server, faults.connect(server.port) as sock:
        sock.sendall(raw)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        status, headers, body = faults.read_response(sock)
    try:
        payload = json.loads(body)
    except ValueError:
        return status, f"{status} {headers.get('content-type')}, not JSON: {body[:80]!r}"
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict):
        error = error.get("message")
    described = f"error: {error}" if error else "keys " + ", ".join(payload)
    return status, f"{status} JSON, {described}"


def bad_chunk(model: str | None, _: argparse.Namespace) -> tuple[bool, str]:
    status, figures = raw_answer(
        model, b"POST /vectorize HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
    )
    return 400 <= status < 500 and "JSON" in figures, figures


def lone_surrogate(model: str | None, _: argparse.Namespace) -> tuple[bool, str]:
    body = b'{"input": "\\ud800"}'
    status, figures = raw_answer(model, faults.request_bytes("/v1/embeddings", body))
    return status == 400, figures


def half_close(model: str | None, _: argparse.Namespace) -> tuple[bool, str]:
    status, figures = raw_answer(model, faults.request_bytes(), half_close=True)
    return status == 200, figures


def one_big_request(model: str | None, body: bytes) -> dict[str, float]:
    """POST ``body`` to /vectorize on a fresh service: the status, seconds, the worker's CPU seconds, its
    peak memory before and how much the request grew it."""
    with served(model) as server:
        (worker,) = server.worker_pids()
        steady, cpu = peak_rss_mb(worker), cpu_seconds(worker)
        started = time.monotonic()
        status = requests.post(server.url + "/vectorize", data=body, timeout=300).status_code
        return {
            "status": status,
            "seconds": time.monotonic() - started,
            "cpu": cpu_seconds(worker) - cpu,
            "steady_mb": steady,
            "grown_mb": peak_rss_mb(worker) - steady,
        }


def huge_pngs(model: str | None, _: argparse.Namespace) -> tuple[bool, str]:
    buffer = io.BytesIO()
    Image.new("RGB", (7000, 7000), (200, 30, 30)).save(buffer, "PNG")
    images = [base64.b64encode(png_with_text(buffer.getvalue(), f"copy {i}")).decode() for i in range(16)]
    body = json.dumps({"images": images}).encode()
    got = one_big_request(model, body)
    return got["status"] == 200 and got["grown_mb"] <= 1024, (
        f"16 x 7000x7000 PNG ({len(body) / 1e6:.1f} MB body): {got['status']} in {got['seconds']:.1f} s; "
        f"worker peak RSS +{got['grown_mb']:.0f} MB over steady state ({got['steady_mb']:.0f} MB)"
    )


def long_texts(model: str | None, _: argparse.Namespace) -> tuple[bool, str]:
    texts = [f"{i} " + "lorem ipsum dolor sit amet " * 7408 for i in range(256)]
    body = json.dumps({"texts": [t[:200_000] for t in texts]}).encode()
    got = one_big_request(model, body)
    return got["status"] == 200 and got["seconds"] < 10, (
        f"256 texts x 200,000 chars ({len(body) / 1e6:.1f} MB): {got['status']} in {got['seconds']:.1f} s, "
        f"{got['cpu']:.1f} s of worker CPU"
    )


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


PROBES: dict[str, tuple[str, Callable[[str | None, argparse.Namespace], tuple[bool, str]]]] = {
    "many_descriptors": ("~1,100 open connections on a worker (fd >= 1024)", many_descriptors),
    "kept_alive_10000": ("10,000 kept-alive idle connections, 1 worker", kept_alive_10000),
    "silent_past_the_limit": ("400 silent connections against --max-connections 100", silent_past_the_limit),
    "all_busy_past_the_limit": ("100 busy connections at --max-connections 100, one more", all_busy_past_the_limit),
    "slow_bodies": ("64 slow-body clients (Content-Length 100000, 1 byte / 2 s)", trickling_probe("slow_bodies")),
    "long_heads": ("64 heads over 64 KB, then trickled", trickling_probe("long_heads")),
    "never_reading": ("64 clients that pipeline and never read", never_reading),
    "reload_signals": ("SIGHUP, SIGTTIN, SIGTTOU to the service", reload_signals),
    "arbiter_killed": ("SIGKILL of the arbiter, then a restart on the same port", arbiter_killed),
    "worker_restarts": ("worker restarts and the prometheus multiprocess folder", worker_restarts),
    "bad_chunk": ("invalid chunk framing (zz\\r\\n)", bad_chunk),
    "lone_surrogate": ('/v1/embeddings with "input": "\\ud800"', lone_surrogate),
    "half_close": ("client half-closes (SHUT_WR) after a complete request", half_close),
    "huge_pngs": ("16 x 7000x7000 PNG in one request", huge_pngs),
    "long_texts": ("256 texts x 200,000 chars", long_texts),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model directory (default: the built-in demo model)")
    parser.add_argument("--only", help="comma-separated probe names: " + ", ".join(PROBES))
    parser.add_argument("--restarts", type=int, default=200, help="worker restarts in worker_restarts")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    faults.raise_file_limit()
    names = args.only.split(",") if args.only else list(PROBES)
    rows = []
    for name in names:
        title, probe = PROBES[name]
        started = time.monotonic()
        try:
            ok, figures = probe(args.model, args)
        except Exception as exc:  # noqa: BLE001 - a probe that breaks is a failed row, the others still run
            ok, figures = False, f"probe failed: {type(exc).__name__}: {exc}"
        rows.append({"probe": name, "what": title, "pass": ok, "figures": figures})
        print(f"{'PASS' if ok else 'FAIL'}  {title}\n      {figures}  ({time.monotonic() - started:.0f} s)", flush=True)
    failed = [row["probe"] for row in rows if not row["pass"]]
    print(
        f"\n{len(rows) - len(failed)} of {len(rows)} probes meet their target"
        + (f"; failed: {failed}" if failed else "")
    )
    if args.out:
        meta = {
            "date": time.strftime("%Y-%m-%d"),
            "host": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
        }
        args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
