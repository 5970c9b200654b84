"""Throughput benchmark: a Weaviate-like load on loopback, dynamic batching against the reference design.

    python3 bench/bench.py --clients 8 --seconds 30                 # 2-core CPU
    python3 bench/bench.py --cuda --clients 64 --seconds 30         # GPU

For each mode (``dynamic``, then ``per-request``, the reference image's one-request-at-a-time design)
it starts ``clip-vectorizer`` with the same model (by default the random-weight
``openai/clip-vit-base-patch32`` architecture, built here) and the vector cache off, then runs

- objects: C concurrent clients, each request one object as Weaviate sends it: one 640x480 JPEG and one
  short caption;
- texts: C concurrent clients, each request one short text (a nearText query);
- alongside the object load, a prober hitting /meta and /.well-known/ready every 20 ms;

and reports requests/s, items/s, p50/p95/p99 latency, the batch sizes reached (from /metrics), peak
RSS and, on a GPU, peak GPU memory. The headline is the ratio of the two modes.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import os
import platform
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import requests
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.server_process import ServerProcess  # noqa: E402

WORDS = "a the red blue green large small dog cat car tree house photo of on in with near bright dark".split()


def jpeg_pool(seed: int, count: int = 24) -> list[str]:
    rng = random.Random(seed)
    pool = []
    for _ in range(count):
        image = Image.effect_noise((640, 480), rng.uniform(30, 90)).convert("RGB")
        image = Image.blend(image, Image.new("RGB", image.size, tuple(rng.randrange(256) for _ in range(3))), 0.5)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=85)
        pool.append(base64.b64encode(buffer.getvalue()).decode())
    return pool


def build_model(target: Path) -> Path:
    """The random-weight ViT-B/32 architecture, with a tokenizer that makes each caption word one token.

    CLIP's real BPE has every word of ``WORDS`` as a single token, so a caption costs its word count plus
    two; the random model's byte-level tokenizer would make each caption 30 to 50 tokens, three to five
    times the text tower's real work."""
    from vectorizer_module.finetune.vocab import word_level_tokenizer
    from vectorizer_module.models.random.clip import save_random_model

    save_random_model(target, "vit-b-32")
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "special_tokens_map.json"):
        (target / name).unlink(missing_ok=True)
    word_level_tokenizer([" ".join(WORDS)], vocab_size=49408).save_pretrained(str(target))
    return target


def caption(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 9)))


def client_worker(url: str, kind: str, threads: int, seconds: float, seed: int) -> dict:
    """One process running ``threads`` closed-loop clients; returns latencies and counts."""
    images = jpeg_pool(seed) if kind == "objects" else []
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    start_at = time.monotonic() + 1.0  # let every process finish its set-up first
    stop_at = start_at + seconds

    def loop(index: int) -> None:
        nonlocal errors
        rng = random.Random(seed * 1000 + index)
        session = requests.Session()
        while time.monotonic() < start_at:
            time.sleep(0.005)
        while time.monotonic() < stop_at:
            if kind == "objects":
                body = {"texts": [caption(rng)], "images": [rng.choice(images)]}
            else:
                body = {"texts": [caption(rng)]}
            sent = time.perf_counter()
            try:
                response = session.post(url + "/vectorize", json=body, timeout=120)
                ok = response.status_code == 200
            except requests.RequestException:
                ok = False
            elapsed = time.perf_counter() - sent
            with lock:
                if ok:
                    latencies.append(elapsed)
                else:
                    errors += 1

    pool = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return {"latencies": latencies, "errors": errors}


def run_load(url: str, kind: str, clients: int, seconds: float, processes: int) -> dict:
    processes = max(1, min(processes, clients))
    shares = [clients // processes + (1 if i < clients % processes else 0) for i in range(processes)]
    with ProcessPoolExecutor(processes) as executor:
        parts = list(
            executor.map(
                client_worker,
                [url] * processes,
                [kind] * processes,
                shares,
                [seconds] * processes,
                range(1, processes + 1),
            )
        )
    latencies = np.array([x for part in parts for x in part["latencies"]])
    done = len(latencies)
    return {
        "requests": done,
        "errors": sum(p["errors"] for p in parts),
        "requests_per_s": round(done / seconds, 2),
        "p50_ms": round(float(np.percentile(latencies, 50)) * 1000, 1) if done else None,
        "p95_ms": round(float(np.percentile(latencies, 95)) * 1000, 1) if done else None,
        "p99_ms": round(float(np.percentile(latencies, 99)) * 1000, 1) if done else None,
    }


def probe(url: str, stop: threading.Event, out: dict) -> None:
    """Times /meta and the ready probe over one keep-alive connection, as Weaviate's client holds one.

    Plain ``http.client``: ``requests`` would add its own milliseconds to what is measured."""
    parsed = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=10)
    timings: dict[str, list[float]] = {"/meta": [], "/.well-known/ready": []}
    while not stop.is_set():
        for path in timings:
            sent = time.perf_counter()
            connection.request("GET", path)
            connection.getresponse().read()
            timings[path].append(time.perf_counter() - sent)
        time.sleep(0.02)
    connection.close()
    for path, values in timings.items():
        out[path] = {
            "p50_ms": round(float(np.percentile(values, 50)) * 1000, 2),
            "p99_ms": round(float(np.percentile(values, 99)) * 1000, 2),
            "n": len(values),
        }


def batch_sizes(url: str) -> dict:
    text = requests.get(url + "/metrics", timeout=10).text
    out = {}
    for modality in ("text", "image"):
        total = re.search(rf'^clip_batch_size_sum{{modality="{modality}"}} (\S+)$', text, re.M)
        count = re.search(rf'^clip_batch_size_count{{modality="{modality}"}} (\S+)$', text, re.M)
        buckets = re.findall(rf'^clip_batch_size_bucket{{le="([^"]+)",modality="{modality}"}} (\S+)$', text, re.M)
        if total and count and float(count.group(1)):
            top = float(count.group(1))
            largest = next((le for le, c in buckets if float(c) >= top), "+Inf")
            out[modality] = {"mean": round(float(total.group(1)) / top, 2), "max_at_most": largest}
    return out


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def gpu_memory_mb(pid: int) -> float | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if parts and parts[0] == str(pid):
            return float(parts[1])
    return None


def bench_mode(model: str, mode: str, args: argparse.Namespace) -> dict:
    extra = [
        "--batching",
        mode,
        "--cache-size",
        "0",
        "--threads",
        str(max(16, args.clients + 8)),
        "--log-level",
        "warning",
        *args.server_arg,
    ]
    env = {"ENABLE_CUDA": "true"} if args.cuda else {}
    server = ServerProcess(model, *extra, env=env)
    server.start()
    try:
        server.wait_ready(600)
        run_load(server.url, "objects", min(args.clients, 4), 3, 1)  # warm-up
        result: dict = {"mode": mode}
        gpu_peak = None
        if "objects" in args.loads:
            stop, probes = threading.Event(), {}
            prober = threading.Thread(target=probe, args=(server.url, stop, probes))
            prober.start()
            result["objects"] = run_load(server.url, "objects", args.clients, args.seconds, args.processes)
            stop.set()
            prober.join()
            result["probes_under_object_load"] = probes
            gpu_peak = gpu_memory_mb(server.process.pid) if args.cuda else None
        if "texts" in args.loads:
            result["texts"] = run_load(server.url, "texts", args.clients, args.seconds, args.processes)
        result["batch_sizes"] = batch_sizes(server.url)
        result["peak_rss_mb"] = peak_rss_mb(server.process.pid)
        if args.cuda:
            result["gpu_memory_mb"] = gpu_peak
        return result
    finally:
        server.stop()
        if server.process.returncode not in (0, None):
            print(server.log[-3000:], file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model directory (default: random ViT-B/32 architecture, built here)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--processes", type=int, default=1, help="client processes (use several on a GPU host)")
    parser.add_argument("--modes", default="dynamic,per-request")
    parser.add_argument("--loads", default="objects,texts", help="which loads to run (objects, texts or both)")
    parser.add_argument("--cuda", action="store_true", help="serve on the GPU (ENABLE_CUDA=true)")
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        help="extra flag for clip-vectorizer, e.g. --server-arg=--jpeg-draft (repeatable)",
    )
    parser.add_argument("--out", help="write the results as JSON here too")
    args = parser.parse_args()

    model = args.model or str(build_model(Path(tempfile.mkdtemp()) / "vit-b-32"))
    results = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "clients": args.clients,
        "seconds": args.seconds,
        "server_args": args.server_arg,
        "modes": [bench_mode(model, mode, args) for mode in args.modes.split(",")],
    }
    by_mode = {r["mode"]: r for r in results["modes"]}
    if {"dynamic", "per-request"} <= set(by_mode):
        ratio = {}
        for load in [load for load in ("objects", "texts") if load in args.loads]:
            base = by_mode["per-request"][load]["requests_per_s"]
            ratio[load] = round(by_mode["dynamic"][load]["requests_per_s"] / base, 2) if base else None
        results["dynamic_over_per_request"] = ratio
    print(json.dumps(results, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
