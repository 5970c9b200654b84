"""The host side of scripts/container_check.sh: checks of a built image and of a running container, and
the go-built Weaviate on the host driven through the container by ``clip-weaviate``.

    python3 scripts/container_stack.py inspect-image IMAGE
    python3 scripts/container_stack.py wait-ready URL [--timeout S]
    python3 scripts/container_stack.py check-service URL --container NAME --expect-dir DIR
    python3 scripts/container_stack.py weaviate URL --workdir DIR
    python3 scripts/container_stack.py reference-openclip DIR
    python3 scripts/container_stack.py check-reference-openclip URL DIR

Each prints what it checked and exits non-zero, saying why, on the first check that fails.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout: the stack and sample modules of this one

from bench.weaviate_import import run_import  # noqa: E402
from plugin_api.sample import write_sample  # noqa: E402
from plugin_api.stack import WeaviateServer  # noqa: E402

QUERY = "a red circle"  # the demo sample set holds red circles in every size and position
# the reference image's OpenCLIP folder, made by its own code path (tests/reference_openclip.py) under its
# own packages, on a tiny random model registered under a real registry pair
REFERENCE_ENVS = (ROOT / ".reference-env", ROOT / ".openclip-env")
OPENCLIP_TEXTS = ["a red circle", "it’s a “quoted” word &amp; more"]
TINY_OPENCLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


class CheckFailed(Exception):
    pass


def check(condition: bool, what: str) -> None:
    if not condition:
        raise CheckFailed(what)
    print(f"    ok: {what}")


def http(url: str, body: dict | None = None, timeout: float = 60.0) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True).stdout


def inspect_image(image: str) -> None:
    config = json.loads(docker("image", "inspect", image))[0]["Config"]
    check(config["User"] not in ("", "0", "root"), f"the image runs as a non-root user ({config['User']})")
    check(
        any(e.startswith("VECTORIZER_MODEL=/app/models:") for e in config["Env"]),
        "VECTORIZER_MODEL lists /app/models first",
    )
    probe = (
        "test ! -e /build-certs && test ! -e /tmp/build-ca.pem && test ! -e /local-model && "
        "test ! -e /tmp/download-env && ! python -m pip --version >/dev/null 2>&1 && "
        "! command -v gcc >/dev/null && ! command -v cc >/dev/null && "
        "test -z \"$(find / -xdev -type d -path '*/.cache/pip' -print -quit 2>/dev/null)\" && "
        "test -f /opt/clip-vectorizer/model/config.json && test -w /tmp && id -u"
    )
    run = subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "sh", image, "-c", probe], capture_output=True, text=True
    )
    check(
        run.returncode == 0,
        "the final image holds no build CA bundle, model context, pip, pip cache or compiler, and has the "
        f"baked model (uid {run.stdout.strip() or '?'}){'' if run.returncode == 0 else ': ' + run.stderr}",
    )


def _running(container: str | None) -> bool:
    if container is None:
        return True
    state = subprocess.run(["docker", "inspect", "-f", "{{.State.Running}}", container], capture_output=True, text=True)
    return state.stdout.strip() == "true"


def wait_ready(url: str, timeout: float, container: str | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _running(container):
            logs = subprocess.run(["docker", "logs", "--tail", "5", str(container)], capture_output=True, text=True)
            raise CheckFailed(f"the container {container} exited before it was ready:\n{logs.stdout}{logs.stderr}")
        try:
            if http(url + "/.well-known/ready", timeout=2)[0] == 204:
                print(f"    ok: {url} is ready")
                return
        except OSError:
            pass
        time.sleep(0.25)
    raise CheckFailed(f"{url} not ready within {timeout:.0f} s")


def _png(colour: tuple[int, int, int]) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), colour).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def check_service(url: str, container: str, expect_dir: str, workers_line: str | None) -> None:
    check(http(url + "/.well-known/live")[0] == 204, "live answers 204 from the host")
    check(http(url + "/.well-known/ready")[0] == 204, "ready answers 204 from the host")
    status, body = http(url + "/meta")
    meta = json.loads(body)
    ours = meta.get("clip-vectorizer", {}) if isinstance(meta, dict) else {}
    check(
        status == 200 and ours.get("model"),
        f"/meta answers 200 with a description: {ours.get('model', {}).get('path')}, "
        f"{ours.get('model', {}).get('dimension')}-d, {ours.get('workers')}",
    )
    status, body = http(url + "/vectorize", {"texts": ["a red circle", "a blue square"], "images": [_png((200, 0, 0))]})
    answer = json.loads(body)
    check(status == 200, f"/vectorize answers 200 ({status})")
    texts, images = answer["textVectors"], answer["imageVectors"]
    check(
        len(texts) == 2 and len(images) == 1 and len({len(v) for v in texts + images}) == 1 and texts[0] != texts[1],
        f"/vectorize gives one vector per input, all {len(texts[0])}-d, distinct texts distinct",
    )
    status, body = http(url + "/vectorize", {"texts": [], "images": ["not base64 at all"]})
    check(400 <= status < 500 and "error" in json.loads(body), f"a bad image is a {status} with a JSON error")
    check(docker("exec", container, "id", "-u").strip() != "0", "the service's process is not root")
    logs = subprocess.run(["docker", "logs", container], capture_output=True, text=True)
    lines = [line for line in (logs.stdout + logs.stderr).splitlines() if "model directory" in line]
    check(bool(lines) and expect_dir in lines[0].split("passed over")[0], f"the start-up log serves {expect_dir}")
    if workers_line:
        plans = [line for line in (logs.stdout + logs.stderr).splitlines() if "workers (auto)" in line]
        check(bool(plans) and workers_line in plans[0], f"the worker count reads the container's limit: {plans}")


def weaviate(url: str, workdir: Path, knows_shapes: bool) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    server = WeaviateServer.in_folder(url, workdir)
    server.start()
    try:
        print(f"    Weaviate {server.url} (gRPC {server.grpc_port}), CLIP_INFERENCE_API={url}")
        sample = write_sample(workdir / "sample")
        imported, seconds = run_import(server, sample, "ContainerCheck")
        connection = ["--url", server.url, "--grpc-port", str(server.grpc_port), "--collection", "ContainerCheck"]
        print(imported.stdout.strip())
        count = len(list(sample.glob("*.png")))
        check(imported.returncode == 0, f"clip-weaviate import stored the {count} sample images in {seconds:.1f} s")
        searched = subprocess.run(
            [sys.executable, "-m", "plugin_api", "search", QUERY, *connection, "--limit", "3"],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        print(searched.stdout.rstrip())
        hits = [line for line in searched.stdout.splitlines() if line.strip()[:2] in ("1.", "2.", "3.")]
        names = {p.name for p in sample.glob("*.png")}
        check(
            searched.returncode == 0 and len(hits) == 3 and all(any(n in h for n in names) for h in hits),
            f"clip-weaviate search {QUERY!r} (nearText through Weaviate) gives 3 stored images",
        )
        if knows_shapes:  # the demo model was trained on these pictures; a random model ranks at random
            check("red-circle" in hits[0], f"the demo model ranks a red circle first for {QUERY!r}")
    finally:
        server.stop()


def reference_openclip(folder: Path) -> None:
    """FOLDER/models as the reference's download.py leaves it for OPEN_CLIP_MODEL_NAME=ViT-B-32,
    OPEN_CLIP_PRETRAINED=laion2b_s34b_b79k, and the vectors its clip.py gives (FOLDER/models/reference.npz)."""
    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 48), (200, 0, 0)).save(folder / "red.png")
    variant = {"models": str(folder / "models"), "model_name": "ViT-B-32", "pretrained": "laion2b_s34b_b79k"}
    variant.update(model_cfg=TINY_OPENCLIP, weights="open_clip_model.safetensors", seed=0)
    spec = {"variants": [variant], "texts": OPENCLIP_TEXTS, "images": [str(folder / "red.png")]}
    (folder / "spec.json").write_text(json.dumps(spec))
    env = dict(os.environ, PYTHONPATH=":".join(map(str, REFERENCE_ENVS)))
    script = ROOT / "tests" / "reference_openclip.py"
    done = subprocess.run([sys.executable, str(script), str(folder / "spec.json")], env=env, capture_output=True)
    failure = "" if done.returncode == 0 else f": {done.stderr.decode(errors='replace')[-2000:]}"
    check(done.returncode == 0, f"the reference's OpenCLIP folder made in {folder / 'models'}{failure}")
    subprocess.run(["chmod", "-R", "a+rX", str(folder)], check=True)


def check_reference_openclip(url: str, folder: Path) -> None:
    import numpy as np

    image = base64.b64encode((folder / "red.png").read_bytes()).decode()
    status, body = http(url + "/vectorize", {"texts": OPENCLIP_TEXTS, "images": [image]})
    check(status == 200, f"/vectorize answers 200 on the reference's models/openclip ({status})")
    answer, reference = json.loads(body), np.load(folder / "models" / "reference.npz")
    ours = np.asarray(answer["textVectors"] + answer["imageVectors"])
    theirs = np.concatenate([reference["texts"], reference["images"]])
    cosines = (ours * theirs).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)
    check(bool(cosines.min() >= 0.99999), f"the reference's vectors, cosine >= {cosines.min():.7f}")
    meta = json.loads(http(url + "/meta")[1])
    meta.pop("clip-vectorizer")
    saved = json.loads((folder / "models" / "openclip" / "config.json").read_text())
    check(meta == saved, "/meta is the reference's config.json")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("inspect-image").add_argument("image")
    ready = commands.add_parser("wait-ready")
    ready.add_argument("url")
    ready.add_argument("--timeout", type=float, default=300.0)
    ready.add_argument("--container", help="fail at once if this container stops")
    service = commands.add_parser("check-service")
    service.add_argument("url")
    service.add_argument("--container", required=True)
    service.add_argument("--expect-dir", required=True)
    service.add_argument("--expect-workers-line", help="text the start-up log's worker-count line holds")
    stack = commands.add_parser("weaviate")
    stack.add_argument("url")
    stack.add_argument("--workdir", type=Path, required=True)
    stack.add_argument("--demo-model", action="store_true", help="the container serves the demo model")
    commands.add_parser("reference-openclip").add_argument("folder", type=Path)
    openclip = commands.add_parser("check-reference-openclip")
    openclip.add_argument("url")
    openclip.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "inspect-image":
            inspect_image(args.image)
        elif args.command == "wait-ready":
            wait_ready(args.url, args.timeout, args.container)
        elif args.command == "check-service":
            check_service(args.url, args.container, args.expect_dir, args.expect_workers_line)
        elif args.command == "reference-openclip":
            reference_openclip(args.folder)
        elif args.command == "check-reference-openclip":
            check_reference_openclip(args.url, args.folder)
        else:
            weaviate(args.url, args.workdir, args.demo_model)
    except CheckFailed as exc:
        print(f"container check FAILED: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
