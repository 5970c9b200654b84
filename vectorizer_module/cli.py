"""The ``clip-vectorizer`` command.

``clip-vectorizer [serve] --model DIR [--port P ...]`` serves a model (the default command);
``clip-vectorizer make-random-model OUT`` writes a random-weight CLIP for trying things out.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from vectorizer_module import __version__
from vectorizer_module.config import ConfigError, add_arguments, load_settings
from vectorizer_module.logs import setup_logging

COMMANDS = ("serve", "make-random-model")


def _serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clip-vectorizer",
        description="Serve a CLIP model over Weaviate's multi2vec-clip protocol "
                    "(POST /vectorize, GET /meta, GET /.well-known/live, GET /.well-known/ready). "
                    f"Other commands: {', '.join(COMMANDS[1:])} (see COMMAND --help).")
    parser.add_argument("--version", action="version", version=f"clip-vectorizer {__version__}")
    add_arguments(parser)
    return parser


def _serve(argv: Sequence[str]) -> int:
    from vectorizer_module.errors import ModelLayoutError
    from vectorizer_module.models.loading import detect

    args = _serve_parser().parse_args(argv)
    try:
        settings = load_settings(args)
    except ConfigError as exc:
        print(f"clip-vectorizer: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level, settings.log_format)
    if not settings.model:
        print("clip-vectorizer: no model configured: pass --model DIR or set VECTORIZER_MODEL "
              "(clip-vectorizer make-random-model DIR writes a random-weight one to try)", file=sys.stderr)
        return 2
    try:
        source = detect(settings.model)
    except ModelLayoutError as exc:
        print(f"clip-vectorizer: cannot serve {settings.model}: {exc}", file=sys.stderr)
        return 2
    from vectorizer_module.server.wsgi import serve

    return serve(settings, source)


def _make_random_model(argv: Sequence[str]) -> int:
    from vectorizer_module.models import random_clip

    parser = argparse.ArgumentParser(
        prog="clip-vectorizer make-random-model",
        description="Write a CLIP model with random weights (real architecture, byte-level tokenizer). "
                    "Its vectors mean nothing; it is for trying the service and for tests and benchmarks.")
    parser.add_argument("output", help="directory to write")
    parser.add_argument("--arch", choices=sorted(random_clip.ARCHITECTURES), default="tiny")
    parser.add_argument("--layout", choices=random_clip.LAYOUTS, default="huggingface")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    path = random_clip.save_random_model(args.output, args.arch, args.layout, args.seed)
    print(f"wrote a random {args.arch} CLIP in the {args.layout} layout to {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "make-random-model":
        return _make_random_model(argv[1:])
    if argv and argv[0] == "serve":
        argv = argv[1:]
    return _serve(argv)


if __name__ == "__main__":
    raise SystemExit(main())
