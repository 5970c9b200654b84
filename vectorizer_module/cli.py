"""The ``clip-vectorizer`` command.

``clip-vectorizer [serve] [--model DIR] [--port P ...]`` serves a model (the default command; without a
model, the built-in demo model); ``clip-vectorizer export-onnx`` exports the model serve would serve to
ONNX ahead of time. Making and training models is ``clip-train``'s (``clip_training``), which the service
never imports; its commands, given here, say so.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from vectorizer_module import __version__
from vectorizer_module.config import ConfigError, add_arguments, enable_cuda_warning, load_settings
from vectorizer_module.logs import setup_logging

if TYPE_CHECKING:  # the commands import torch only when they run
    from vectorizer_module.config import Settings
    from vectorizer_module.models.loading import ModelSource

COMMANDS = ("serve", "export-onnx")
# commands that moved to clip-train with the training code; named so that an old script gets one clear line
MOVED_TO_CLIP_TRAIN = ("make-random-model", "finetune", "make-shapes-data", "train-demo-model", "score-shapes")


def _serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clip-vectorizer",
        description="Serve a CLIP model over Weaviate's multi2vec-clip protocol "
        "(POST /vectorize, GET /meta, GET /.well-known/live, GET /.well-known/ready). "
        f"Other commands: {', '.join(COMMANDS[1:])} (see COMMAND --help).",
    )
    parser.add_argument("--version", action="version", version=f"clip-vectorizer {__version__}")
    add_arguments(parser)
    return parser


def _served_source(settings: Settings) -> tuple[ModelSource, str | None]:
    """The model ``serve`` serves: the first directory of ``settings.model`` that holds one, checked
    readable, with a line for the log; or, with none configured, the built-in demo model (no line).
    Raises ``ModelLayoutError``."""
    from vectorizer_module.models.loading import builtin_demo_source, choose_model_dir, detect, require_readable

    if not settings.model:
        return builtin_demo_source(), None
    folder, skipped = choose_model_dir(settings.model)
    source = detect(folder, clip_tokenizer=settings.clip_tokenizer)
    require_readable(source)
    passed_over = f"; passed over: {', '.join(skipped)}" if skipped else ""
    return source, f"model directory: {folder} ({source.layout} layout){passed_over}"


def _serve(argv: Sequence[str]) -> int:
    import dataclasses
    import logging

    from vectorizer_module.errors import ModelLayoutError

    args = _serve_parser().parse_args(argv)
    try:
        settings = load_settings(args)
    except ConfigError as exc:
        print(f"clip-vectorizer: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level, settings.log_format)
    cuda_warning = enable_cuda_warning(os.environ)
    if cuda_warning:
        logging.getLogger("vectorizer_module.cli").warning(cuda_warning)
    notes: list[str] = []  # logged once the port is bound
    try:
        source, note = _served_source(settings)
    except ModelLayoutError as exc:
        what = settings.model or "the built-in demo model (clip-train train-demo-model rebuilds it)"
        print(f"clip-vectorizer: cannot serve {what}: {exc}", file=sys.stderr)
        return 2
    if note:
        notes.append(note)
    else:
        logging.getLogger("vectorizer_module.cli").warning(
            "no model configured (--model DIR or VECTORIZER_MODEL): serving the built-in demo model, "
            "a small CLIP that knows only shapes and colours; it is no replacement for a real CLIP"
        )
    if settings.workers == "auto":  # resolved once, with the model's size against the memory limit
        from vectorizer_module.limits import auto_workers, weights_bytes

        plan = auto_workers(settings.enable_cuda, weights_bytes(source.root))
        settings = dataclasses.replace(settings, workers=plan.count)
        notes.append(f"workers (auto): {plan.explanation}")
    from vectorizer_module.server.wsgi import PortInUse, serve

    try:
        return serve(settings, source, notes)
    except PortInUse as exc:
        print(f"clip-vectorizer: {exc}", file=sys.stderr)
        return 2


def _export_onnx(argv: Sequence[str]) -> int:
    """Export the model ``serve`` would serve to ONNX, into VECTORIZER_ONNX_CACHE, so that a service started
    later (VECTORIZER_BACKEND onnx, or auto on a CPU without native bfloat16) finds it made; the container
    image runs this at build time. Takes serve's options; with --dtype int8, the int8 graphs too."""
    from vectorizer_module.backends.onnx_backend import export, weights_of
    from vectorizer_module.errors import ModelLayoutError
    from vectorizer_module.models.loading import load_towers

    parser = argparse.ArgumentParser(prog="clip-vectorizer export-onnx", description=_export_onnx.__doc__)
    add_arguments(parser)
    try:
        settings = load_settings(parser.parse_args(argv))
        setup_logging(settings.log_level, settings.log_format)
        source, _ = _served_source(settings)
    except (ConfigError, ModelLayoutError) as exc:
        print(f"clip-vectorizer export-onnx: {exc}", file=sys.stderr)
        return 2
    towers = load_towers(source)
    if not towers.onnx_exportable:
        print(f"the {towers.info.family} family's towers do not export to ONNX: the service runs them in torch")
        return 0
    cache = Path(settings.onnx_cache).expanduser()
    export(towers, weights_of(source), cache, int8=settings.dtype == "int8")
    print(f"ONNX graphs of {source.root} in {cache}")
    return 0


SUBCOMMANDS = {"export-onnx": _export_onnx}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        return SUBCOMMANDS[argv[0]](argv[1:])
    if argv and argv[0] in MOVED_TO_CLIP_TRAIN:
        print(
            f"clip-vectorizer: {argv[0]} is a command of clip-train now: clip-train {' '.join(argv)}", file=sys.stderr
        )
        return 2
    if argv and argv[0] == "serve":
        argv = argv[1:]
    return _serve(argv)


if __name__ == "__main__":
    raise SystemExit(main())
