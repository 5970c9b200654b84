"""clip-weaviate: run a local Weaviate + clip-vectorizer stack, import images, search.

    clip-weaviate up [--model DIR] [ports]       start the stack on 127.0.0.1, wait for Ctrl-C
    clip-weaviate import PATH... [--max-side N]  import image files / folders (captions from NAME.txt)
    clip-weaviate search "text" | --image FILE   ranked results (--hybrid for keyword + vector)
    clip-weaviate demo [--model DIR] [ports]     all of the above on a generated sample set

Without --model the service serves its built-in demo model, a small CLIP that knows only shapes and
colours (the demo's sample set is drawn for it); name a real CLIP directory for real photos.
`clip-weaviate COMMAND --help` lists a command's options.
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
from plugin_api.errors import NotReachable, PluginError, SearchFailed, UsageError
from plugin_api.readiness import DEFAULT_MAX_WAIT, is_transient
from plugin_api.search import Hit

if TYPE_CHECKING:
    from plugin_api.stack import LocalStack

DEFAULT_COLLECTION = "Images"
DEFAULT_REST_PORT = 8080

# Exit codes, one per outcome a script may want to tell apart (listed in --help and the README).
EXIT_OK = 0  # done: every file stored or skipped (already there)
EXIT_FAILED = 1  # done, but some files failed; or another error (a port in use, Weaviate refused a query)
EXIT_USAGE = 2  # the command line is wrong: a path that does not exist, no image files, a bad option
EXIT_DOWN = 3  # Weaviate or its inference service down or not ready in time: retry later
EXIT_INTERRUPTED = 130
EXIT_CODES = f"""\
exit codes:
  {EXIT_OK}  done: every file stored, or skipped because it was already there
  {EXIT_FAILED}  done, but some files failed (the report groups them by cause); or another error
  {EXIT_USAGE}  usage: a path that does not exist, no image files, a bad option
  {EXIT_DOWN}  Weaviate or its inference service unreachable or not ready within --max-wait; an import
     stopped this way keeps what it stored: run the same command again to finish it
"""


def _add_connection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        default=os.environ.get("CLIP_WEAVIATE_URL", DEFAULT_URL),
        metavar="URL",
        help=f"Weaviate REST URL (env CLIP_WEAVIATE_URL; default {DEFAULT_URL})",
    )
    parser.add_argument(
        "--grpc-port",
        type=int,
        metavar="PORT",
        default=int(os.environ.get("CLIP_WEAVIATE_GRPC_PORT", DEFAULT_GRPC_PORT)),
        help=f"Weaviate gRPC port (env CLIP_WEAVIATE_GRPC_PORT; default {DEFAULT_GRPC_PORT})",
    )
    parser.add_argument(
        "--collection", default=DEFAULT_COLLECTION, metavar="NAME", help=f"collection (default {DEFAULT_COLLECTION})"
    )


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"not a port number: {port} (1-65535)")
    return port


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}")
    return value


def _add_stack(parser: argparse.ArgumentParser, *, fixed_ports: bool) -> None:
    parser.add_argument(
        "--model",
        help="CLIP model directory for the service (default: the built-in demo "
        "model, which knows only shapes and colours)",
    )
    parser.add_argument(
        "--workdir",
        help="directory for logs, Weaviate's data and the demo's sample images "
        "(default: a new temporary directory; its logs are kept, its data removed at exit)",
    )
    parser.add_argument(
        "--weaviate-bin", help="weaviate-server binary (default: $WEAVIATE_SERVER_BIN, PATH, then $(go env GOPATH)/bin)"
    )
    ports = parser.add_argument_group(
        "ports, for hosts where only some are open (all on 127.0.0.1, except Weaviate's gRPC and cluster "
        "data ports, which Weaviate opens on every interface)"
    )
    free = "default: a free one"
    ports.add_argument(
        "--port",
        type=_port,
        metavar="PORT",
        default=DEFAULT_REST_PORT if fixed_ports else None,
        help=f"Weaviate REST port (default {DEFAULT_REST_PORT})" if fixed_ports else f"Weaviate REST port ({free})",
    )
    ports.add_argument(
        "--grpc-port",
        type=_port,
        metavar="PORT",
        default=DEFAULT_GRPC_PORT if fixed_ports else None,
        help=f"Weaviate gRPC port (default {DEFAULT_GRPC_PORT})" if fixed_ports else f"Weaviate gRPC port ({free})",
    )
    ports.add_argument("--vectorizer-port", type=_port, metavar="PORT", help=f"clip-vectorizer's HTTP port ({free})")
    for flag, setting in CLUSTER_PORT_FLAGS.values():
        ports.add_argument(flag, type=_port, metavar="PORT", help=f"Weaviate's {setting} ({free})")


# LocalStack's cluster_ports keys -> (flag, Weaviate's setting)
CLUSTER_PORT_FLAGS = {
    "gossip": ("--gossip-port", "CLUSTER_GOSSIP_BIND_PORT"),
    "data": ("--data-port", "CLUSTER_DATA_BIND_PORT"),
    "raft": ("--raft-port", "RAFT_PORT"),
    "raft_rpc": ("--raft-rpc-port", "RAFT_INTERNAL_RPC_PORT"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clip-weaviate",
        description=__doc__,
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = commands.add_parser("up", help="start clip-vectorizer + Weaviate on 127.0.0.1 until Ctrl-C")
    _add_stack(up, fixed_ports=True)

    imp = commands.add_parser(
        "import",
        help="import image files and folders (recursive)",
        description="Import image files and folders (recursive) into a collection, created on first use.\n"
        "Waits for Weaviate and its inference service to be ready, retries what fails while the service\n"
        "is down or loading, and skips what is already stored: running it again finishes a stopped import.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    imp.add_argument("paths", nargs="+", metavar="PATH")
    _add_connection(imp)
    imp.add_argument(
        "--vectorizer-url",
        default=os.environ.get("CLIP_WEAVIATE_VECTORIZER_URL"),
        metavar="URL",
        help="the inference service's URL, to ask its /.well-known/ready (env CLIP_WEAVIATE_VECTORIZER_URL; "
        "default: ask Weaviate's /v1/meta, which reports the service's state but not its URL)",
    )
    imp.add_argument(
        "--max-wait",
        type=_seconds,
        default=DEFAULT_MAX_WAIT,
        metavar="SECONDS",
        help=f"how long to wait for Weaviate and the service to be ready, before starting and whenever the "
        f"service fails mid-import, before giving up (default {DEFAULT_MAX_WAIT:.0f}; 0: no waiting)",
    )
    imp.add_argument("--batch-size", type=int, default=32, metavar="N", help="objects per insert (default 32)")
    imp.add_argument(
        "--max-side",
        type=int,
        default=None,
        metavar="PIXELS",
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
    _add_stack(demo, fixed_ports=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.getLogger("weaviate-client").setLevel(logging.CRITICAL)  # our own report says it better
    try:
        return {"up": _up, "import": _import, "search": _search, "demo": _demo}[args.command](args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except UsageError as exc:
        return _fail(exc, EXIT_USAGE)
    except NotReachable as exc:
        return _fail(exc, EXIT_DOWN)
    except SearchFailed as exc:
        return _fail(exc, EXIT_DOWN if is_transient(str(exc)) else EXIT_FAILED)
    except PluginError as exc:
        return _fail(exc, EXIT_FAILED)
    except FileNotFoundError as exc:
        return _fail(f"no such file: {exc.filename}", EXIT_USAGE)
    except WeaviateBaseError as exc:
        message = " ".join(str(exc).split())
        return _fail(f"Weaviate error: {message}", EXIT_DOWN if is_transient(message) else EXIT_FAILED)


def _fail(message: object, code: int) -> int:
    print(f"clip-weaviate: {message}", file=sys.stderr)
    return code


def _start_stack(args: argparse.Namespace) -> LocalStack:
    from plugin_api.stack import LocalStack

    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="clip-weaviate-"))
    cluster = {name: getattr(args, flag[2:].replace("-", "_")) for name, (flag, _) in CLUSTER_PORT_FLAGS.items()}
    stack = LocalStack(
        args.model,
        workdir=workdir,
        weaviate_binary=args.weaviate_bin,
        keep_data=bool(args.workdir),
        http_port=args.port,
        grpc_port=args.grpc_port,
        service_port=args.vectorizer_port,
        cluster_ports={name: port for name, port in cluster.items() if port is not None},
    )
    model = args.model or "the built-in demo model: it knows shapes and colours only"
    print(f"starting clip-vectorizer ({model}) and Weaviate; logs in {stack.log_dir}", flush=True)
    return stack.start()


def _check_ports(args: argparse.Namespace) -> None:
    """Every port given on the command line: distinct, and free on 127.0.0.1 now."""
    flags = ["--port", "--grpc-port", "--vectorizer-port", *(flag for flag, _ in CLUSTER_PORT_FLAGS.values())]
    given = [(flag, getattr(args, flag[2:].replace("-", "_"))) for flag in flags]
    given = [(flag, port) for flag, port in given if port is not None]
    seen: dict[int, str] = {}
    for flag, port in given:
        if port in seen:
            raise UsageError(f"{seen[port]} and {flag} are both {port}; each needs a port of its own")
        seen[port] = flag
    for flag, port in given:
        if _port_taken(port):
            raise PluginError(f"port {port} on 127.0.0.1 is in use (another Weaviate?); choose another with {flag}")


def _port_taken(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _up(args: argparse.Namespace) -> int:
    _check_ports(args)

    def terminate(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    stack = _start_stack(args)
    try:
        print(f"Weaviate        {stack.url}  (gRPC port {stack.grpc_port})")
        print(f"clip-vectorizer {stack.service.url}")
        extra = (
            ""
            if (args.port, args.grpc_port) == (DEFAULT_REST_PORT, DEFAULT_GRPC_PORT)
            else f" --url {stack.url} --grpc-port {stack.grpc_port}"
        )
        query = "a dog" if args.model else "a red circle"  # the built-in model knows shapes and colours only
        print(f"try: clip-weaviate import IMAGES_DIR{extra} && clip-weaviate search '{query}'{extra}")
        print("Ctrl-C stops both.", flush=True)
        while stack.weaviate.process.running and stack.service.running:
            time.sleep(0.5)
        print("clip-weaviate: a process of the stack exited:\n" + stack.log_tails(), file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("stopping")
        return EXIT_OK
    finally:
        stack.stop()


def _import(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from plugin_api.images import IMAGE_SUFFIXES, items_from_paths
    from plugin_api.importer import import_images
    from plugin_api.readiness import Readiness, ServiceDown
    from plugin_api.schema import create_image_collection

    missing = [path for path in args.paths if not Path(path).expanduser().exists()]
    if missing:
        raise UsageError(f"no such file or folder: {', '.join(missing)}")
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, not {args.batch_size}")
    items = items_from_paths(args.paths)
    if not items:
        suffixes = " ".join(sorted(IMAGE_SUFFIXES))
        raise UsageError(f"no image files in {' '.join(args.paths)} (looked for {suffixes})")

    def tell(line: str) -> None:  # one line per wait, above the progress bar
        tqdm.write(f"clip-weaviate: {line}", file=sys.stderr)

    readiness = Readiness(args.url, vectorizer_url=args.vectorizer_url)
    try:
        readiness.wait(args.max_wait, on_wait=tell)
    except ServiceDown as exc:
        raise NotReachable(f"{exc}; nothing imported (`clip-weaviate up` starts a local stack)") from None
    with connect(args.url, grpc_port=args.grpc_port) as client:
        collection = create_image_collection(
            client, args.collection, exist_ok=True, text_fields=["caption"] if args.vectorize_captions else ()
        )
        report = import_images(
            collection,
            items,
            batch_size=args.batch_size,
            max_side=args.max_side,
            progress=not args.quiet,
            max_wait=args.max_wait,
            readiness=readiness,
            on_wait=tell,
        )
    print(report.details(), flush=True)
    if report.stopped is not None:
        left = sum(1 for o in report.failures if o.cause == "not imported, the import stopped")
        return _fail(
            f"import stopped, {left} of {len(items)} files not imported: {report.stopped}; "
            "run the same command again to finish",
            EXIT_DOWN,
        )
    return EXIT_OK if report.failed == 0 else EXIT_FAILED


def _search(args: argparse.Namespace) -> int:
    from plugin_api.search import hybrid, near_image, near_text

    if (args.text is None) == (args.image is None):
        raise UsageError("give a query text or --image FILE (one of them)")
    if args.hybrid and args.image:
        raise UsageError("--hybrid works with a query text, not an image")
    if args.image and not Path(args.image).expanduser().is_file():
        raise UsageError(f"no such file: {args.image}")
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
    return EXIT_OK


def format_hits(hits: Sequence[Hit]) -> str:
    """One line per hit: rank, distance (or hybrid score), the file name (else a short id), the caption,
    then any other non-empty property."""
    if not hits:
        return "(no results)"
    lines = []
    for rank, hit in enumerate(hits, 1):
        measure = f"distance {hit.distance:.4f}" if hit.distance is not None else f"score {hit.score or 0:.4f}"
        shown = {k: v for k, v in hit.properties.items() if v not in (None, "", [])}
        parts = [str(shown.pop("filename", None) or f"id {hit.uuid[:8]}")]
        if "caption" in shown:
            parts.append(f'"{shown.pop("caption")}"')
        parts += [f"{k}={v!r}" for k, v in sorted(shown.items())]
        lines.append(f"{rank:>3}. {measure}  {'  '.join(parts)}")
    return "\n".join(lines)


DEMO_QUERIES = ("a red circle", "a large blue square on the left", "a yellow star")


def _demo(args: argparse.Namespace) -> int:
    from plugin_api.images import items_from_paths
    from plugin_api.importer import import_images
    from plugin_api.sample import write_sample
    from plugin_api.schema import create_image_collection
    from plugin_api.search import Move, hybrid, near_image, near_text

    _check_ports(args)
    stack = _start_stack(args)
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
        print(f"\nlogs kept in {stack.log_dir}")
        return EXIT_OK
    finally:
        stack.stop()  # removes Weaviate's data unless --workdir was given
        if not args.workdir:
            shutil.rmtree(stack.workdir / "sample", ignore_errors=True)  # the logs stay, as announced
