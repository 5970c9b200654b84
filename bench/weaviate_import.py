"""Through Weaviate: a go-built ``weaviate-server`` with ``multi2vec-clip`` imports photos with
``clip-weaviate import`` and answers nearText queries, once with this service (its defaults) as
``CLIP_INFERENCE_API`` and, with ``--reference DIR``, once with the reference server (``bench/reference.py``)
on the same model.

    python3 -m bench.weaviate_import --images 300 --reference ../multi2vec-clip-inference

For each: objects/s of the import (300 640x480 JPEGs by default, the command as a user runs it, its own
batch size and Weaviate's own request concurrency), then ``--queries`` nearText queries, one at a time,
through the Python client (their p50 and p95: the query's /vectorize plus Weaviate's search), and the
results as JSON. The model is the random-weight ViT-B/32 architecture of ``bench.bench``, or ``--model``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.bench import build_model, caption, jpeg_pool
from bench.reference import ReferenceServer
from bench.reference import install as install_reference
from bench.reference import write_models as write_reference_models
from plugin_api.connection import connect
from plugin_api.search import near_text
from plugin_api.stack import WeaviateServer
from tests.server_process import ServerProcess

ROOT = Path(__file__).resolve().parent.parent
COLLECTION = "BenchImport"


def write_photos(folder: Path, count: int) -> Path:
    """``count`` different 640x480 JPEGs (noise over a colour, ~100 KB each)."""
    import base64

    folder.mkdir(parents=True, exist_ok=True)
    pool = jpeg_pool(0, count=count)
    for index, encoded in enumerate(pool):
        (folder / f"photo-{index:04d}.jpg").write_bytes(base64.b64decode(encoded))
    return folder


def run_import(server: WeaviateServer, folder: Path, collection: str) -> tuple[subprocess.CompletedProcess, float]:
    """``clip-weaviate import FOLDER`` into ``server``, as a user runs it (its start-up included); the
    finished process and the seconds it took."""
    connection = ["--url", server.url, "--grpc-port", str(server.grpc_port), "--collection", collection]
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "plugin_api", "import", str(folder), *connection, "--quiet"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    return done, time.perf_counter() - started


def through_weaviate(inference_url: str, photos: Path, workdir: Path, queries: int) -> dict:
    server = WeaviateServer.in_folder(inference_url, workdir)
    server.start()
    try:
        done, seconds = run_import(server, photos, COLLECTION)
        if done.returncode != 0:
            raise RuntimeError(f"clip-weaviate import failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
        count = len(list(photos.glob("*.jpg")))
        rng = random.Random(1)
        timings = []
        with connect(server.url, grpc_port=server.grpc_port) as client:
            collection = client.collections.get(COLLECTION)
            stored = collection.aggregate.over_all(total_count=True).total_count
            near_text(collection, "warm-up", limit=10)
            for _ in range(queries):
                sent = time.perf_counter()
                hits = near_text(collection, caption(rng), limit=10)
                timings.append(time.perf_counter() - sent)
                if len(hits) != 10:
                    raise RuntimeError(f"a nearText query gave {len(hits)} hits, not 10")
        return {
            "imported": stored,
            "import_seconds": round(seconds, 1),
            "objects_per_s": round(count / seconds, 2),
            "near_text_p50_ms": round(float(np.percentile(timings, 50)) * 1000, 1),
            "near_text_p95_ms": round(float(np.percentile(timings, 95)) * 1000, 1),
        }
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model directory (default: random ViT-B/32 architecture, built here)")
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--reference", type=Path, help="a checkout of weaviate/multi2vec-clip-inference")
    parser.add_argument("--server-arg", action="append", default=[], help="extra flag for clip-vectorizer")
    parser.add_argument("--out", help="write the results as JSON here too")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="weaviate-import-bench-"))
    try:
        model = args.model or str(build_model(scratch / "vit-b-32"))
        photos = write_photos(scratch / "photos", args.images)
        results: dict = {
            "date": time.strftime("%Y-%m-%d"),
            "machine": f"{os.uname().machine}, {os.cpu_count()} CPUs",
            "command": " ".join(["python3 -m bench.weaviate_import", *sys.argv[1:]]),
            "images": args.images,
        }
        ours = ServerProcess(model, "--log-level", "warning", *args.server_arg).start()
        try:
            ours.wait_ready(600)
            results["ours"] = through_weaviate(ours.url, photos, scratch / "ours", args.queries)
        finally:
            ours.stop()
        if args.reference:
            checkout = args.reference.resolve()
            workdir = scratch / "reference"
            write_reference_models(Path(model), workdir)
            reference = ReferenceServer(checkout, install_reference(checkout), workdir).start()
            try:
                reference.wait_ready(600)
                results["reference"] = through_weaviate(reference.url, photos, workdir, args.queries)
            finally:
                reference.stop()
            results["ours_over_reference"] = round(
                results["ours"]["objects_per_s"] / results["reference"]["objects_per_s"], 2
            )
        print(json.dumps(results, indent=2))
        if args.out:
            Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
