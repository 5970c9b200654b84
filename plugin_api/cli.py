"""clip-weaviate: run a local Weaviate + clip-vectorizer stack, import images, search.

    clip-weaviate up [--model DIR]               start the stack on 127.0.0.1, wait for Ctrl-C
    clip-weaviate import PATH... [--max-side N]  import image files / folders (captions from NAME.txt)
    clip-weaviate search "text" | --image FILE   ranked results (--hybrid for keyword + vector)
    clip-weaviate demo [--model DIR]             all of the above on a generated sample set

Without --model the service serves its built-in demo model, a small CLIP that knows only shapes and
colours (the demo's sample set is drawn for it); name a real CLIP directory for real photos.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from weaviate.exceptions import WeaviateBaseError

from plugin_api.connection import DEFAULT_GRPC_PORT, DEFAULT_URL, connect
from plugin_api.errors import PluginError
from plugin_api.search import Hit

if TYPE_CHECKING:
    from plugin_api.stack import LocalStack

DEFAULT_COLLECTION = "Images"


def _add_connection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        default=os.environ.get("CLIP_WEAVIATE_URL", DEFAULT_URL),
        help=f"Weaviate REST URL (env CLIP_WEAVIATE_URL; default {DEFAULT_URL})",
    )
    parser.add_argument(
        "--grpc-port",
        type=int,
        default=int(os.environ.get("CLIP_WEAVIATE_GRPC_PORT", DEFAULT_GRPC_PORT)),
        help=f"Weaviate gRPC port (env CLIP_WEAVIATE_GRPC_PORT; default {DEFAULT_GRPC_PORT})",
    )
    parser.add_argument("--collection", default=DEFAULT_COLLECTION, help=f"default {DEFAULT_COLLECTION}")


def _add_stack(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        help="CLIP model directory for the service (default: the built-in demo "
        "model, which knows only shapes and colours)",
    )
    parser.add_argument(
        "--workdir",
        help="directory for logs, Weaviate's data and the demo's sample images "
        "(default: a new temporary directory; its data is removed at exit)",
    )
    parser.add_argument(
        "--weaviate-bin", help="weaviate-server binary (default: $WEAVIATE_SERVER_BIN, PATH, then $(go env GOPATH)/bin)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clip-weaviate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = commands.add_parser("up", help="start clip-vectorizer + Weaviate on 127.0.0.1 until Ctrl-C")
    _add_stack(up)
    up.add_argument("--port", type=int, default=8080, help="Weaviate REST port (default 8080)")
    up.add_argument("--grpc-port", type=int, default=DEFAULT_GRPC_PORT, help="Weaviate gRPC port (default 50051)")

    imp = commands.add_parser("import", help="import image files and folders (recursive)")
    imp.add_argument("paths", nargs="+", metavar="PATH")
    _add_connection(imp)
    imp.add_argument("--batch-size", type=int, default=32)
    imp.add_argument(
        "--max-side",
        type=int,
        default=None,
        help="downscale images whose longer side is larger, before upload (CLIP sees 224 px; "
        "the smaller copy is what Weaviate stores)",
    )
    imp.add_argument(
        "--vectorize-captions",
        action="store_true",
        help="when creating the collection, let captions join the image in the vector",
    )
    imp.add_argument("--quiet", action="store_true", help="no progress bar")

    search = commands.add_parser("search", help="search by text or by image")
    search.add_argument("text", nargs="?", help="query text")
    search.add_argument("--image", help="query image file (instead of text)")
    search.add_argument("--hybrid", action="store_true", help="keyword + vector search for the text")
    search.add_argument("--alpha", type=float, default=0.5, help="hybrid: 1 = vector only, 0 = keyword only")
    search.add_argument("--limit", type=int, default=5)
    _add_connection(search)

    demo = commands.add_parser("demo", help="start a stack, import a generated sample set, run queries")
    _add_stack(demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.getLogger("weaviate-client").setLevel(logging.CRITICAL)  # our own report says it better
    try:
        return {"up": _up, "import": _import, "search": _search, "demo": _demo}[args.command](args)
    except KeyboardInterrupt:
        return 130
    except PluginError as exc:
        print(f"clip-weaviate: {exc}", file=sys.stderr)
        return 1
    except FileNotFoundError as exc:
        print(f"clip-weaviate: no such file: {exc.filename}", file=sys.stderr)
        return 1
    except WeaviateBaseError as exc:
        print(f"clip-weaviate: Weaviate error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1


def _start_stack(args: argparse.Namespace, **ports: int | None) -> LocalStack:
    from plugin_api.stack import LocalStack

    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="clip-weaviate-"))
    stack = LocalStack(
        args.model, workdir=workdir, weaviate_binary=args.weaviate_bin, keep_data=bool(args.workdir), **ports
    )
    model = args.model or "the built-in demo model: it knows shapes and colours only"
    print(f"starting clip-vectorizer ({model}) and Weaviate; logs in {stack.log_dir}")
    return stack.start()


def _port_taken(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _up(args: argparse.Namespace) -> int:
    for flag, port in (("--port", args.port), ("--grpc-port", args.grpc_port)):
        if _port_taken(port):
            raise PluginError(f"port {port} on 127.0.0.1 is in use (another Weaviate?); choose another with {flag}")

    def terminate(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    stack = _start_stack(args, http_port=args.port, grpc_port=args.grpc_port)
    try:
        print(f"Weaviate        {stack.url}  (gRPC port {stack.grpc_port})")
        print(f"clip-vectorizer {stack.service.url}")
        extra = (
            ""
            if (args.port, args.grpc_port) == (8080, DEFAULT_GRPC_PORT)
            else f" --url {stack.url} --grpc-port {stack.grpc_port}"
        )
        query = "a dog" if args.model else "a red circle"  # the built-in model knows shapes and colours only
        print(f"try: clip-weaviate import IMAGES_DIR{extra} && clip-weaviate search '{query}'{extra}")
        print("Ctrl-C stops both.", flush=True)
        while stack.weaviate.process.running and stack.service.running:
            time.sleep(0.5)
        print("clip-weaviate: a process of the stack exited:\n" + stack.log_tails(), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stopping")
        return 0
    finally:
        stack.stop()


def _import(args: argparse.Namespace) -> int:
    from plugin_api.images import items_from_paths
    from plugin_api.importer import import_images
    from plugin_api.schema import create_image_collection

    items = items_from_paths(args.paths)
    if not items:
        raise PluginError(f"no image files in {' '.join(args.paths)}")
    with connect(args.url, grpc_port=args.grpc_port) as client:
        collection = create_image_collection(
            client, args.collection, exist_ok=True, text_fields=["caption"] if args.vectorize_captions else ()
        )
        report = import_images(
            collection, items, batch_size=args.batch_size, max_side=args.max_side, progress=not args.quiet
        )
    print(report.details())
    return 0 if report.failed == 0 else 1


def _search(args: argparse.Namespace) -> int:
    from plugin_api.search import hybrid, near_image, near_text

    if (args.text is None) == (args.image is None):
        raise PluginError("give a query text or --image FILE (one of them)")
    if args.hybrid and args.image:
        raise PluginError("--hybrid works with a query text, not an image")
    with connect(args.url, grpc_port=args.grpc_port) as client:
        if not client.collections.exists(args.collection):
            raise PluginError(f"no collection {args.collection!r} at {args.url} (import images first)")
        collection = client.collections.get(args.collection)
        if args.image:
            hits = near_image(collection, args.image, limit=args.limit)
        elif args.hybrid:
            hits = hybrid(collection, args.text, alpha=args.alpha, limit=args.limit)
        else:
            hits = near_text(collection, args.text, limit=args.limit)
    print(format_hits(hits))
    return 0


def format_hits(hits: Sequence[Hit]) -> str:
    if not hits:
        return "(no results)"
    lines = []
    for rank, hit in enumerate(hits, 1):
        measure = f"distance {hit.distance:.4f}" if hit.distance is not None else f"score {hit.score or 0:.4f}"
        shown = ", ".join(f"{k}={v!r}" for k, v in sorted(hit.properties.items()) if v not in (None, "", []))
        lines.append(f"{rank:>3}. {measure}  {hit.uuid}  {shown}")
    return "\n".join(lines)


DEMO_QUERIES = ("a red circle", "a large blue square on the left", "a yellow star")


def _demo(args: argparse.Namespace) -> int:
    from plugin_api.images import items_from_paths
    from plugin_api.importer import import_images
    from plugin_api.sample import write_sample
    from plugin_api.schema import create_image_collection
    from plugin_api.search import Move, hybrid, near_image, near_text

    stack = _start_stack(args)
    done = False
    try:
        sample = write_sample(stack.workdir / "sample")
        print(f"Weaviate {stack.url} (gRPC {stack.grpc_port}), clip-vectorizer {stack.service.url}")
        with stack.connect() as client:
            if client.collections.exists("Demo"):
                client.collections.delete("Demo")
            collection = create_image_collection(client, "Demo")
            report = import_images(collection, items_from_paths([sample]), progress=False)
            print(f"\nimported {sample}: {report.details()}")
            print(
                "(each file is named SIZE-COLOUR-SHAPE-POSITION.png; only the image is vectorized, "
                "not its name or caption)"
            )
            query_image = next(sample.glob("*-pink-heart-*.png"))
            queries = [
                (f"near_text {text!r}", lambda text=text: near_text(collection, text, limit=3)) for text in DEMO_QUERIES
            ]
            queries += [
                (
                    "near_text 'a blue square', moved away from 'on the left' (force 0.6)",
                    lambda: near_text(
                        collection, "a blue square", limit=3, move_away=Move(force=0.6, concepts=["on the left"])
                    ),
                ),
                (
                    f"near_image {query_image.name} (a stored image finds itself first)",
                    lambda: near_image(collection, query_image, limit=3),
                ),
                (
                    "hybrid 'green triangle' (alpha 0.5: keywords in captions + vectors)",
                    lambda: hybrid(collection, "green triangle", limit=3),
                ),
            ]
            for title, run in queries:
                print(f"\n{title}\n{format_hits(run())}")
        if args.model is None:
            print(
                "\n(served by the built-in demo model, which knows shapes and colours only; "
                "pass --model DIR with a real CLIP for photos)"
            )
        done = True
        return 0
    finally:
        stack.stop()
        if done and not args.workdir:  # keep a failed demo's logs for reading
            shutil.rmtree(stack.workdir, ignore_errors=True)
