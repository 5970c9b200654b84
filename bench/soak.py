"""Soak test: mixed valid and invalid /vectorize traffic at a steady rate against a real server.

    python3 -m bench.soak --minutes 10 --rate 20 [--model DIR] [--out docs/soak.json]

Starts ``clip-vectorizer`` on a free loopback port (with a random tiny model unless --model is given),
sends requests at ``--rate`` per second from a few client threads for ``--minutes``, and reports
requests served, answers by status and kind, unexpected answers (any 5xx, a non-JSON body, a wrong
vector count, a timeout), and the server's RSS at start, after warm-up and at the end. Loopback only.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import random
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import requests
from PIL import Image

from tests.server_process import ServerProcess


def rss_mb(server: ServerProcess) -> float:
    """The resident memory of the service: its arbiter and every worker."""
    total = 0
    for pid in [server.process.pid, *server.worker_pids()]:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


def jpeg(rng: random.Random, width: int = 640, height: int = 480) -> str:
    image = Image.effect_noise((width, height), rng.uniform(20, 80)).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return base64.b64encode(buffer.getvalue()).decode()


def make_request(rng: random.Random, images: list[str]) -> tuple[str, bytes, int | None, int | None]:
    """(kind, body, expected text count, expected image count); counts are None for invalid kinds."""
    kind = rng.choices(
        ["object", "query", "near_image", "bad_json", "bad_base64", "not_image", "truncated", "wrong_type", "too_many"],
        weights=[40, 25, 10, 5, 5, 5, 5, 3, 2],
    )[0]
    if kind == "object":
        return kind, json.dumps({"texts": [f"caption {rng.random()}"], "images": [rng.choice(images)]}).encode(), 1, 1
    if kind == "query":
        return (
            kind,
            json.dumps({"texts": [f"a query {rng.random()}" for _ in range(rng.randint(1, 3))]}).encode(),
            None,
            0,
        )
    if kind == "near_image":
        return kind, json.dumps({"images": ["data:image/jpeg;base64," + rng.choice(images)]}).encode(), 0, 1
    if kind == "bad_json":
        return kind, b'{"texts": ["unterminated', None, None
    if kind == "bad_base64":
        return kind, b'{"images": ["%%not base64%%"]}', None, None
    if kind == "not_image":
        return kind, json.dumps({"images": [base64.b64encode(b"hello world").decode()]}).encode(), None, None
    if kind == "truncated":
        return kind, json.dumps({"images": [rng.choice(images)[:2000]]}).encode(), None, None
    if kind == "wrong_type":
        return kind, b'{"texts": [1, 2, 3]}', None, None
    return kind, json.dumps({"texts": ["x"] * 10_000}).encode(), None, None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second, all clients together")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--model", help="model directory (default: a random tiny CLIP)")
    parser.add_argument("--out", help="write the report as JSON here too")
    args = parser.parse_args()

    model = args.model
    if model is None:
        from clip_training.random_models.clip import save_random_model

        model = str(save_random_model(Path(tempfile.mkdtemp()) / "tiny", "tiny"))
    server = ServerProcess(model)
    server.start()
    server.wait_ready()
    rss = {"start": rss_mb(server)}
    rng = random.Random(1234)
    images = [jpeg(rng) for _ in range(32)]
    outcomes: Counter[str] = Counter()
    unexpected: list[str] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + args.minutes * 60
    warm_at = time.monotonic() + min(60.0, args.minutes * 6)
    interval = args.clients / args.rate

    def client(seed: int) -> None:
        local = random.Random(seed)
        session = requests.Session()
        next_at = time.monotonic()
        while time.monotonic() < stop_at:
            kind, body, texts, count = make_request(local, images)
            try:
                response = session.post(server.url + "/vectorize", data=body, timeout=60)
                payload = response.json()
                ok = (
                    response.status_code == 200
                    and count is not None
                    and len(payload["imageVectors"]) == count
                    and (texts is None or len(payload["textVectors"]) == texts)
                ) or (count is None and 400 <= response.status_code < 500 and payload.get("error"))
                label = f"{kind}:{response.status_code}"
            except Exception as exc:  # noqa: BLE001 - every failure is counted, none stops the soak
                ok, label = False, f"{kind}:{type(exc).__name__}"
            with lock:
                outcomes[label] += 1
                if not ok:
                    unexpected.append(label)
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
    for thread in threads:
        thread.start()
    while time.monotonic() < warm_at:
        time.sleep(1)
    rss["after_warm_up"] = rss_mb(server)
    for thread in threads:
        thread.join()
    rss["end"] = rss_mb(server)
    alive = server.process.poll() is None and server.get("/.well-known/ready").status_code == 204
    server.stop()
    report = {
        "minutes": args.minutes,
        "rate_per_s": args.rate,
        "clients": args.clients,
        "model": model,
        "requests": sum(outcomes.values()),
        "outcomes": dict(sorted(outcomes.items())),
        "unexpected": len(unexpected),
        "unexpected_kinds": dict(Counter(unexpected)),
        "rss_mb": {k: round(v, 1) for k, v in rss.items()},
        "rss_growth_after_warm_up_pct": round(100 * (rss["end"] - rss["after_warm_up"]) / rss["after_warm_up"], 2),
        "ready_at_end": alive,
    }
    print(json.dumps(report, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return 0 if report["unexpected"] == 0 and alive else 1


if __name__ == "__main__":
    raise SystemExit(main())
