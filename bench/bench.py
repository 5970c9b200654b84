"""Throughput benchmark: a Weaviate-like load on loopback, for each batching mode and worker count.

    python3 -m bench.bench --clients 8 --seconds 30                            # 2-core CPU: the two modes
    python3 -m bench.bench --modes dynamic --workers-sweep auto,1,2            # a sweep of worker counts
    python3 -m bench.bench --cuda --clients 64 --workers-sweep 1,4,8 --rate objects=750 --rate texts=1500
    python3 -m bench.bench --modes dynamic --reference ../multi2vec-clip-inference   # ours over the reference

For each batching mode (``dynamic``, and ``per-request``: the reference image's one-request-at-a-time
design) and each worker count it starts ``clip-vectorizer`` with the same model (by default the
random-weight ``openai/clip-vit-base-patch32`` architecture, built here) and the vector cache off, then
runs, each for ``--seconds``:

- objects: C closed-loop clients, each request one object as Weaviate sends it: one 640x480 JPEG and
  one short caption; alongside, a prober times /meta and /.well-known/ready every 20 ms;
- texts: C closed-loop clients, each request one short text (a nearText query);
- for each ``--rate LOAD=R``: the same requests sent at R per second in all (open loop; latency counted
  from when each request was due, so a late client does not hide the wait).

It reports requests/s, p50/p95/p99 latency, the batch sizes reached (from /metrics), the CPU cores the
service and the load generator each used (so that a saturated generator shows), the service's peak
RSS (all its processes) and, on a GPU, its GPU memory. The load runs in ``--processes`` client
processes (default: one per 8 clients, at most 8), each with its share of the client threads.

With ``--reference DIR`` (a checkout of Weaviate's multi2vec-clip-inference), the reference server runs
the same loads on the same model afterwards (``bench/reference.py``: its packages installed apart, its
``uvicorn app:app``), after a check that both give the same vectors, and the first run's requests/s over
the reference's are reported.
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
import shutil
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

from bench.reference import ReferenceServer
from bench.reference import install as install_reference
from bench.reference import write_models as write_reference_models
from tests.server_process import ServerProcess

WORDS = "a the red blue green large small dog cat car tree house photo of on in with near bright dark".split()
TICKS = os.sysconf("SC_CLK_TCK")


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


def build_model(target: Path, arch: str = "vit-b-32") -> Path:
    """The random-weight ViT-B/32 architecture (or another of ``random.clip.ARCHITECTURES``), with a
    tokenizer that makes each caption word one token.

    CLIP's real BPE has every word of ``WORDS`` as a single token, so a caption costs its word count plus
    two; the random model's byte-level tokenizer would make each caption 30 to 50 tokens, three to five
    times the text tower's real work."""
    from clip_training.random_models.clip import save_random_model
    from clip_training.vocab import word_level_tokenizer

    save_random_model(target, arch)
    vocab_size = json.loads((target / "config.json").read_text())["text_config"]["vocab_size"]
    try:
        tokenizer = word_level_tokenizer([" ".join(WORDS)], vocab_size=vocab_size)
    except ValueError:  # a vocabulary too small for it (the tiny architecture): keep the byte-level one
        return target
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "special_tokens_map.json"):
        (target / name).unlink(missing_ok=True)
    tokenizer.save_pretrained(str(target))
    return target


def caption(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 9)))


def client_worker(url: str, kind: str, threads: int, seconds: float, seed: int, interval: float | None) -> dict:
    """One process running ``threads`` clients: closed loop, or each sending every ``interval`` seconds
    (open loop). Returns latencies, errors and this process's CPU seconds."""
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
        due = start_at + (rng.random() * interval if interval else 0.0)  # spread the open-loop senders
        while time.monotonic() < start_at:
            time.sleep(0.005)
        while time.monotonic() < stop_at:
            if interval:
                time.sleep(max(0.0, due - time.monotonic()))
                if due >= stop_at:
                    break
            if kind == "objects":
                body = {"texts": [caption(rng)], "images": [rng.choice(images)]}
            else:
                body = {"texts": [caption(rng)]}
            sent = time.perf_counter()
            late = max(0.0, time.monotonic() - due) if interval else 0.0
            try:
                response = session.post(url + "/vectorize", json=body, timeout=120)
                ok = response.status_code == 200
            except requests.RequestException:
                ok = False
            elapsed = time.perf_counter() - sent + late
            due += interval or 0.0
            with lock:
                if ok:
                    latencies.append(elapsed)
                else:
                    errors += 1

    cpu = time.process_time()
    pool = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return {"latencies": latencies, "errors": errors, "cpu_seconds": time.process_time() - cpu}


def service_pids(server: ServerProcess) -> list[int]:
    """The arbiter, its workers and the workers' model processes."""
    return [server.process.pid, *sorted(server.worker_pids()), *sorted(server.model_pids())]


def cpu_ticks(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total


def run_load(
    server: ServerProcess, kind: str, clients: int, seconds: float, processes: int, rate: float | None = None
) -> dict:
    processes = max(1, min(processes, clients))
    shares = [clients // processes + (1 if i < clients % processes else 0) for i in range(processes)]
    interval = clients / rate if rate else None
    pids = service_pids(server)
    ticks = cpu_ticks(pids)
    with ProcessPoolExecutor(processes) as executor:
        parts = list(
            executor.map(
                client_worker,
                [server.url] * processes,
                [kind] * processes,
                shares,
                [seconds] * processes,
                range(1, processes + 1),
                [interval] * processes,
            )
        )
    service_cores = (cpu_ticks(pids) - ticks) / TICKS / (seconds + 1.0)  # the load's 1 s start-up included
    latencies = np.array([x for part in parts for x in part["latencies"]])
    done = len(latencies)

    def percentile(q: float) -> float | None:
        return round(float(np.percentile(latencies, q)) * 1000, 1) if done else None

    return {
        "clients": clients,
        "client_processes": processes,
        "target_rate": rate,
        "requests": done,
        "errors": sum(p["errors"] for p in parts),
        "requests_per_s": round(done / seconds, 2),
        "p50_ms": percentile(50),
        "p95_ms": percentile(95),
        "p99_ms": percentile(99),
        "service_cpu_cores": round(service_cores, 2),
        "load_generator_cpu_cores": round(sum(p["cpu_seconds"] for p in parts) / seconds, 2),
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


def peak_rss_mb(pids: list[int]) -> float:
    """The sum of each process's peak RSS (the workers peak at about the same time)."""
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                total += int(line.split()[1])
    return round(total / 1024, 1)


def gpu_memory_mb(pids: list[int]) -> float | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    used = [float(p[1]) for p in (line.split(",") for line in out.splitlines()) if p and int(p[0]) in pids]
    return sum(used) if used else None


def bench_config(model: str, mode: str, workers: str, args: argparse.Namespace) -> dict:
    extra = [
        "--batching",
        mode,
        "--workers",
        workers,
        "--cache-size",
        "0",
        "--threads",
        str(max(16, args.clients + 8)),
        "--log-level",
        "warning",
        *args.server_arg,
    ]
    server = ServerProcess(model, *extra, env={"ENABLE_CUDA": "true"} if args.cuda else {})
    server.start()
    try:
        server.wait_ready(600)
        meta = requests.get(server.url + "/meta", timeout=10).json()
        result: dict = {"mode": mode, "workers": workers, "meta_workers": meta["clip-vectorizer"]["workers"]}
        result.update(measure(server, args, ours=True))
        return result
    finally:
        server.stop()
        if server.process.returncode not in (0, None):
            print(server.log[-3000:])


def measure(server: ServerProcess | ReferenceServer, args: argparse.Namespace, *, ours: bool) -> dict:
    """The loads ``args`` names, on a ready server: ours, or the reference (no /metrics, one process)."""
    run_load(server, "objects", min(args.clients, 4), 3, 1)  # warm-up
    result: dict = {}
    gpu_peak = None
    if "objects" in args.loads:
        stop, probes = threading.Event(), {}
        prober = threading.Thread(target=probe, args=(server.url, stop, probes))
        prober.start()
        result["objects"] = run_load(server, "objects", args.clients, args.seconds, args.processes)
        stop.set()
        prober.join()
        result["probes_under_object_load"] = probes
        gpu_peak = gpu_memory_mb(service_pids(server)) if args.cuda else None
    if "texts" in args.loads:
        result["texts"] = run_load(server, "texts", args.clients, args.seconds, args.processes)
    for load, rate in args.rate:
        at_rate = run_load(server, load, args.clients, args.seconds, args.processes, rate)
        result[f"{load}_at_{rate:g}_per_s"] = at_rate
    if ours:
        result["batch_sizes"] = batch_sizes(server.url)
    result["peak_rss_mb"] = peak_rss_mb(service_pids(server))
    if args.cuda:
        result["gpu_memory_mb"] = gpu_peak
    return result


def same_vectors(ours: str, theirs: str) -> dict:
    """The cosine of the two servers' vectors for one caption and one photo: the same model in both."""
    body = {"texts": [caption(random.Random(0))], "images": jpeg_pool(0, count=1)}
    answers = [requests.post(url + "/vectorize", json=body, timeout=120).json() for url in (ours, theirs)]

    def cosine(key: str) -> float:
        a, b = (np.asarray(answer[key][0], dtype=np.float64) for answer in answers)
        return round(float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)), 6)

    return {"text_cosine": cosine("textVectors"), "image_cosine": cosine("imageVectors")}


def bench_reference(model: str, checkout: Path, args: argparse.Namespace) -> dict:
    """The reference server (``bench/reference.py``) on the same model and loads."""
    packages = install_reference(checkout)
    workdir = Path(tempfile.mkdtemp(prefix="reference-bench-"))
    write_reference_models(Path(model), workdir)
    server = ReferenceServer(checkout, packages, workdir).start()
    ours = ServerProcess(model, "--cache-size", "0", "--log-level", "warning").start()
    try:
        server.wait_ready(600)
        ours.wait_ready(600)
        result: dict = {"mode": "reference", "checkout": str(checkout), "vectors": same_vectors(ours.url, server.url)}
        ours.stop()
        result.update(measure(server, args, ours=False))
        return result
    finally:
        server.stop()
        if ours.process.poll() is None:
            ours.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def parse_rate(text: str) -> tuple[str, float]:
    load, _, rate = text.partition("=")
    if load not in ("objects", "texts") or not rate:
        raise argparse.ArgumentTypeError(f"expected objects=R or texts=R, got {text!r}")
    return load, float(rate)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model directory (default: random ViT-B/32 architecture, built here)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--processes", type=int, default=0, help="client processes (0: one per 8 clients, at most 8)")
    parser.add_argument("--modes", default="dynamic,per-request")
    parser.add_argument("--workers-sweep", default="auto", help="worker counts to run, e.g. auto,1,2,4,8")
    parser.add_argument(
        "--loads", default="objects,texts", help="which closed-loop loads to run (objects, texts, or none)"
    )
    parser.add_argument(
        "--rate", action="append", default=[], type=parse_rate, help="an open-loop load, e.g. objects=750 (repeatable)"
    )
    parser.add_argument("--cuda", action="store_true", help="serve on the GPU (ENABLE_CUDA=true)")
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        help="extra flag for clip-vectorizer, e.g. --server-arg=--jpeg-draft (repeatable)",
    )
    parser.add_argument(
        "--reference",
        type=Path,
        help="a checkout of weaviate/multi2vec-clip-inference: also run it on the same model and loads "
        "(its packages installed apart, see bench/reference.py) and report ours over it",
    )
    parser.add_argument("--out", help="write the results as JSON here too")
    args = parser.parse_args()
    args.processes = args.processes or max(1, min(8, args.clients // 8))

    model = args.model or str(build_model(Path(tempfile.mkdtemp()) / "vit-b-32"))
    runs = [
        bench_config(model, mode, workers, args)
        for workers in args.workers_sweep.split(",")
        for mode in args.modes.split(",")
    ]
    results = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "command": " ".join(["python3 -m bench.bench", *sys.argv[1:]]),
        "clients": args.clients,
        "client_processes": args.processes,
        "seconds": args.seconds,
        "server_args": args.server_arg,
        "runs": runs,
    }
    ratios = {}
    for workers in args.workers_sweep.split(","):
        by_mode = {r["mode"]: r for r in runs if r["workers"] == workers}
        if {"dynamic", "per-request"} <= set(by_mode):
            dynamic, per_request = by_mode["dynamic"], by_mode["per-request"]
            ratios[workers] = {
                load: round(dynamic[load]["requests_per_s"] / per_request[load]["requests_per_s"], 2)
                for load in ("objects", "texts")
                if load in args.loads and per_request[load]["requests_per_s"]
            }
    if ratios:
        results["dynamic_over_per_request"] = ratios
    if args.reference:
        reference = bench_reference(model, args.reference.resolve(), args)
        results["reference"] = reference
        first = runs[0]
        results[f"{first['mode']}_{first['workers']}_over_reference"] = {
            load: round(first[load]["requests_per_s"] / reference[load]["requests_per_s"], 2)
            for load in ("objects", "texts")
            if load in args.loads and reference[load]["requests_per_s"]
        }
    print(json.dumps(results, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
