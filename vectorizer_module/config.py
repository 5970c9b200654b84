"""All settings of the service, in one place.

Every setting has an environment variable and a command-line flag of the same meaning; a flag wins over
the variable, the variable over the default. ``ENABLE_CUDA`` and ``CUDA_CORE`` keep the names and meanings
of Weaviate's reference ``multi2vec-clip`` inference image. The README's settings table lists the same
options (a test keeps the two in step).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vectorizer_module.backends import BACKENDS as BACKEND_CLASSES
from vectorizer_module.limits import MAX_AUTO_WORKERS, auto_workers, available_cores
from vectorizer_module.precision import Choice
from vectorizer_module.precision import resolve as resolve_precision

TRUE_WORDS = frozenset({"1", "true", "yes", "on", "enabled"})
FALSE_WORDS = frozenset({"0", "false", "no", "off", "disabled", ""})
DTYPES = ("auto", "float32", "float16", "bfloat16", "int8")
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("auto", "json", "text")
BATCHING_MODES = ("dynamic", "per-request")
BACKENDS = ("auto", *BACKEND_CLASSES)


class ConfigError(ValueError):
    """A setting has a value that cannot be used; the message names the variable and the flag."""


def parse_bool(text: str) -> bool:
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(f"expected one of true/false/1/0/yes/no/on/off, got {text!r}")


# The reference image turns CUDA on for exactly these values of ENABLE_CUDA, and off for any other
# ("True", "yes" and "on" included): a drop-in reads it the same way, and says so when it differs from
# what the word suggests.
REFERENCE_CUDA_ON = ("true", "1")


def parse_enable_cuda(text: str) -> bool:
    return text in REFERENCE_CUDA_ON


def enable_cuda_warning(environ: Mapping[str, str]) -> str | None:
    """A warning for an ENABLE_CUDA value that reads as on but is off, as the reference image reads it."""
    value = environ.get("ENABLE_CUDA")
    if value is None or value in REFERENCE_CUDA_ON or value.strip().lower() in FALSE_WORDS:
        return None
    return f"ENABLE_CUDA={value!r} leaves CUDA off, as the reference image reads it: only 'true' or '1' turn it on"


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(f"must be at least 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"must be 0 or more, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError(f"must be more than 0, got {text}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError(f"must be a TCP port (0-65535), got {value}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise ValueError(f"must be 0 or more, got {text}")
    return value


def _nice(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 19:
        raise ValueError(f"must be a nice increment from 0 to 19, got {value}")
    return value


def _workers(text: str) -> str | int:
    word = text.strip().lower()
    return "auto" if word == "auto" else _positive_int(word)


def _auto_or_bool(text: str) -> str | bool:
    word = text.strip().lower()
    return "auto" if word == "auto" else parse_bool(word)


def _choice(options: Sequence[str]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        word = text.strip().lower()
        if word not in options:
            raise ValueError(f"must be one of {', '.join(options)}, got {text!r}")
        return word

    parse.metavar = "{" + ",".join(options) + "}"  # type: ignore[attr-defined]
    return parse


VALUE_NAMES: dict[Callable[[str], Any], str] = {
    _positive_int: "N",
    _non_negative_int: "N",
    _port: "PORT",
    _nice: "0-19",
    _non_negative_float: "NUMBER",
    _positive_float: "SECONDS",
    _workers: "{N,auto}",
    _auto_or_bool: "{auto,true,false}",
}


@dataclass(frozen=True)
class Settings:
    """The service's settings, each with its default (written here only; ``OPTIONS`` below says how each is
    given); build it with :func:`load_settings`, not by hand, except in tests."""

    model: str | None = None
    clip_tokenizer: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    enable_cuda: bool = False
    cuda_core: str = "cuda:0"
    backend: str = "auto"
    onnx_cache: str = "~/.cache/clip-vectorizer/onnx"
    dtype: str = "auto"
    normalize: str | bool = "auto"
    server_threads: int = 16
    workers: str | int = "auto"
    torch_threads: int = 0
    model_nice: int = 19
    batching: str = "dynamic"
    max_batch_size: int = 0
    max_wait_ms: float = 0.0
    fixed_shape: str | bool = "auto"
    cache_size: int = 4096
    max_body_bytes: int = 64 * 1024 * 1024
    max_image_pixels: int = 50_000_000
    jpeg_draft: bool = False
    max_image_bytes: int = 20 * 1024 * 1024
    max_texts: int = 256
    max_images: int = 64
    max_text_chars: int = 200_000
    max_queue: int = 512
    request_deadline: float = 40.0
    api_key: str | None = dataclasses.field(default=None, repr=False)  # never in logs
    client_timeout: float = 10.0
    max_connections: int = 0
    shutdown_grace: float = 30.0
    log_level: str = "info"
    log_format: str = "auto"

    @property
    def device(self) -> str:
        return self.cuda_core if self.enable_cuda else "cpu"

    @property
    def batch_size(self) -> int:
        """Most items per forward pass, with 0 resolved for the device: on CUDA 128 shared out among the
        workers (each sees its share of the requests, and with fixed shapes every pass costs a full
        batch), at least 16."""
        if self.max_batch_size:
            return self.max_batch_size
        return max(16, 128 // self.worker_count) if self.enable_cuda else 16

    @property
    def batch_wait_ms(self) -> float:
        """How long a batch waits for more items, with 0 resolved for the device: on a CPU a forward
        pass costs tens of milliseconds, so waiting 20 ms to fill a batch pays; on a GPU it costs ~7 ms."""
        return self.max_wait_ms or (2.0 if self.enable_cuda else 20.0)

    @property
    def worker_count(self) -> int:
        """Worker processes, with ``auto`` resolved: one process on a CPU host, where the model's forward
        passes already use every core; on a CUDA host the GPU idles behind one process's GIL (HTTP, JSON,
        base64, image decoding), so several processes, each with a core or two of its own."""
        if self.workers != "auto":
            return int(self.workers)
        return auto_workers(self.enable_cuda).count

    @property
    def threads_per_worker(self) -> int:
        """Torch (and OpenMP) threads in each worker: the setting, or the cores shared out among the
        workers; several processes each using every core would only fight over them."""
        return self.torch_threads or max(1, available_cores() // self.worker_count)

    @property
    def fixed_shapes(self) -> bool:
        """Whether forward passes run at one fixed shape, with ``auto`` resolved for the device."""
        return self.enable_cuda if self.fixed_shape == "auto" else bool(self.fixed_shape)

    @property
    def precision(self) -> Choice:
        """The precision the towers run in, with ``auto`` resolved for this host; a bfloat16 choice is
        checked on the model at load (``precision.py``)."""
        backend = "torch" if self.backend == "auto" else self.backend  # auto follows the dtype (precision.py)
        return resolve_precision(self.dtype, enable_cuda=self.enable_cuda, backend=backend)


@dataclass(frozen=True)
class Option:
    """How one setting is given: its ``Settings`` field (which holds its default), environment variable,
    flag, parser and help text."""

    field: str
    env: str
    flag: str
    parse: Callable[[str], Any]
    help: str
    is_bool: bool = False
    metavar: str | None = None  # what --help shows for the value; derived from the parser when None

    @property
    def default(self) -> Any:
        """The default, as ``Settings`` declares it (the one place it is written)."""
        return SETTINGS_FIELDS[self.field].default

    @property
    def value_name(self) -> str:
        return self.metavar or getattr(self.parse, "metavar", None) or VALUE_NAMES.get(self.parse, "VALUE")


SETTINGS_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}
OPTIONS: tuple[Option, ...] = (
    Option(
        "model",
        "VECTORIZER_MODEL",
        "--model",
        str,
        "Model directory: a Hugging Face CLIP, SigLIP or SigLIP 2 directory, an OpenCLIP directory, a "
        "sentence-transformers CLIP directory, or the models/ directory of the reference multi2vec-clip image. "
        "Several, separated by ':': the first that holds anything is served (the container image lists "
        "/app/models, /models, then the model baked into it). "
        "Without one, the built-in demo model (a small CLIP that knows only shapes and colours) is served.",
        metavar="DIR[:DIR...]",
    ),
    Option(
        "clip_tokenizer",
        "VECTORIZER_CLIP_TOKENIZER",
        "--clip-tokenizer",
        str,
        "CLIP's tokenizer for an OpenCLIP model that carries none (the reference image's models/openclip "
        "never does): OpenCLIP's bpe_simple_vocab_16e6.txt.gz, or a folder with it or with tokenizer.json "
        "or vocab.json + merges.txt. Without one, an installed open_clip package's is used; the container "
        "image sets its own copy.",
        metavar="PATH",
    ),
    Option(
        "host",
        "VECTORIZER_HOST",
        "--host",
        str,
        "Address to listen on (the container image sets 0.0.0.0).",
        metavar="ADDRESS",
    ),
    Option("port", "VECTORIZER_PORT", "--port", _port, "TCP port to listen on (0 picks a free one)."),
    Option(
        "enable_cuda",
        "ENABLE_CUDA",
        "--enable-cuda",
        parse_enable_cuda,
        "Run the model on a CUDA GPU. As in the reference image, only 'true' or '1' turn it on; any other "
        "value leaves it off (a warning says so for values such as 'True' or 'yes').",
        is_bool=True,
    ),
    Option(
        "cuda_core",
        "CUDA_CORE",
        "--cuda-core",
        str,
        "CUDA device to use when ENABLE_CUDA is on (as in the reference image).",
        metavar="DEVICE",
    ),
    Option(
        "backend",
        "VECTORIZER_BACKEND",
        "--backend",
        _choice(BACKENDS),
        "auto: ONNX Runtime where the towers compute in float32 on the CPU (no native bfloat16) and the "
        "family exports, else torch; torch; or onnx: both towers exported to ONNX (once, cached) and run "
        "by onnxruntime on the CPU.",
    ),
    Option(
        "onnx_cache",
        "VECTORIZER_ONNX_CACHE",
        "--onnx-cache",
        str,
        "Directory for the exported ONNX towers.",
        metavar="DIR",
    ),
    Option(
        "dtype",
        "VECTORIZER_DTYPE",
        "--dtype",
        _choice(DTYPES),
        "Compute precision: auto (float16 on CUDA; on a CPU with native bfloat16, avx512_bf16 or AMX, "
        "bfloat16 with the torch backend if the model's vectors stay at cosine >= 0.999 to float32's; "
        "else float32), float32, float16 or bfloat16. float32 gives the reference image's vectors. "
        "int8 (with the onnx backend only): the exported graphs' matrix products dynamically quantised. "
        "Vectors are always returned as float32.",
    ),
    Option(
        "normalize",
        "VECTORIZER_NORMALIZE",
        "--normalize",
        _auto_or_bool,
        "L2-normalise vectors (Weaviate averages an object's vectors without renormalising). auto: as the "
        "reference multi2vec-clip image does for the model's layout (CLIP and OpenCLIP normalised; SigLIP and "
        "sentence-transformers models as the model gives them), so stored vectors stay valid when switching.",
        is_bool=True,
    ),
    Option(
        "server_threads",
        "VECTORIZER_THREADS",
        "--threads",
        _positive_int,
        "HTTP threads in each worker process (Weaviate sends up to 2 x its CPU count requests at once).",
    ),
    Option(
        "workers",
        "VECTORIZER_WORKERS",
        "--workers",
        _workers,
        "Worker processes serving the one port, each with its own copy of the model and its own batcher "
        f"(auto: 1 without CUDA; with CUDA, half the CPU cores, at most {MAX_AUTO_WORKERS}; never more than "
        "the container's memory limit holds).",
    ),
    Option(
        "torch_threads",
        "VECTORIZER_TORCH_THREADS",
        "--torch-threads",
        _non_negative_int,
        "Threads torch uses for one forward pass on the CPU, in each worker (0: the CPU cores divided by "
        "the workers, so that workers x threads never exceed the cores).",
    ),
    Option(
        "model_nice",
        "VECTORIZER_MODEL_NICE",
        "--model-nice",
        _nice,
        "How much lower the CPU priority of each worker's model process is than its HTTP front's (a nice "
        "increment, 0-19), so that probes and requests are read at once while the model uses every core. "
        "In a container (or a session of its own) it weighs the model against the service's own processes only.",
    ),
    Option(
        "batching",
        "VECTORIZER_BATCHING",
        "--batching",
        _choice(BATCHING_MODES),
        "dynamic: items of concurrent requests are batched together; per-request: one request at a "
        "time under a lock, batching only within a request (the reference image's design).",
    ),
    Option(
        "max_batch_size",
        "VECTORIZER_MAX_BATCH_SIZE",
        "--max-batch-size",
        _non_negative_int,
        "Most items in one forward pass (0: 16 on CPU; on CUDA 128 divided by the workers, at least 16).",
    ),
    Option(
        "max_wait_ms",
        "VECTORIZER_MAX_WAIT_MS",
        "--max-wait-ms",
        _non_negative_float,
        "How long a batch waits, at most, for as many items as the largest batch of the last second "
        "held (dynamic batching; 0: 20 on CPU, 2 on CUDA). A request arriving alone never waits.",
    ),
    Option(
        "fixed_shape",
        "VECTORIZER_FIXED_SHAPE",
        "--fixed-shape",
        _auto_or_bool,
        "Run every forward pass at one shape (the batch padded to the largest batch size, texts to the "
        "model's context), so that an input's vector is bit-identical whichever batch and worker computes "
        "it (auto: on with CUDA, off on the CPU, where it costs several times the compute).",
    ),
    Option(
        "cache_size",
        "VECTORIZER_CACHE_SIZE",
        "--cache-size",
        _non_negative_int,
        "Vectors of recent inputs kept by content, so that repeated inputs are bit-identical and free "
        "(0 turns the cache off).",
    ),
    Option(
        "max_body_bytes",
        "VECTORIZER_MAX_BODY_BYTES",
        "--max-body-bytes",
        _positive_int,
        "Largest request body accepted; larger bodies get 413.",
    ),
    Option(
        "max_image_pixels",
        "VECTORIZER_MAX_IMAGE_PIXELS",
        "--max-image-pixels",
        _positive_int,
        "Largest image (width x height) accepted, checked from the header before decoding; larger gets 413.",
    ),
    Option(
        "jpeg_draft",
        "VECTORIZER_JPEG_DRAFT",
        "--jpeg-draft",
        parse_bool,
        "Decode JPEGs at a reduced scale (1/2, 1/4, 1/8) when they are at least twice the model's image size: "
        "several times faster, vectors within about 1e-3 cosine of a full decode.",
        is_bool=True,
    ),
    Option(
        "max_image_bytes",
        "VECTORIZER_MAX_IMAGE_BYTES",
        "--max-image-bytes",
        _positive_int,
        "Largest encoded image (after base64 decoding) accepted; larger gets 413.",
    ),
    Option(
        "max_texts",
        "VECTORIZER_MAX_TEXTS",
        "--max-texts",
        _positive_int,
        "Most texts in one request; more gets 413.",
    ),
    Option(
        "max_images",
        "VECTORIZER_MAX_IMAGES",
        "--max-images",
        _positive_int,
        "Most images in one request; more gets 413.",
    ),
    Option(
        "max_text_chars",
        "VECTORIZER_MAX_TEXT_CHARS",
        "--max-text-chars",
        _positive_int,
        "Longest text accepted, in characters (texts within it are truncated to the model's context); longer gets 413.",
    ),
    Option(
        "max_queue",
        "VECTORIZER_MAX_QUEUE",
        "--max-queue",
        _positive_int,
        "Most items (dynamic batching) or requests (per-request) waiting for the model; past it new work "
        "gets 503 with Retry-After at once.",
    ),
    Option(
        "request_deadline",
        "VECTORIZER_REQUEST_DEADLINE",
        "--request-deadline",
        _non_negative_float,
        "Seconds a request may wait for the model before it is dropped with 503 (Weaviate gives up after "
        "50 s by default); work whose client has disconnected is dropped too.",
    ),
    Option(
        "api_key",
        "VECTORIZER_API_KEY",
        "--api-key",
        str,
        "If set, /vectorize, /meta and /metrics require 'Authorization: Bearer KEY' or 'X-API-Key: KEY'. "
        "Weaviate's module sends no key: keep the Weaviate path on a private network instead.",
        metavar="KEY",
    ),
    Option(
        "client_timeout",
        "VECTORIZER_CLIENT_TIMEOUT",
        "--client-timeout",
        _positive_float,
        "Seconds a request may take to arrive whole, head and body, from its first byte (a new connection's "
        "from its opening), and an answer may wait unread, before the connection is closed (408 once the head "
        "is in). Idle, slow and never-reading clients wait in the event loop, never in an HTTP thread.",
    ),
    Option(
        "max_connections",
        "VECTORIZER_MAX_CONNECTIONS",
        "--max-connections",
        _non_negative_int,
        "Most open connections per worker, idle ones included; past it the oldest idle connection is closed "
        "to make room, or with none idle the new one is answered 503 (0: half the process's file-descriptor "
        "limit, at most 10000).",
    ),
    Option(
        "shutdown_grace",
        "VECTORIZER_SHUTDOWN_GRACE",
        "--shutdown-grace",
        _non_negative_float,
        "Seconds that in-flight requests get to finish after SIGTERM before the process exits.",
    ),
    Option("log_level", "VECTORIZER_LOG_LEVEL", "--log-level", _choice(LOG_LEVELS), "Log level."),
    Option(
        "log_format",
        "VECTORIZER_LOG_FORMAT",
        "--log-format",
        _choice(LOG_FORMATS),
        "auto: plain text on a terminal, JSON lines otherwise; json: one JSON object per line (request id, pid, "
        "route, status, sizes, milliseconds); text: plain lines.",
    ),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one flag per option; defaults are left unset so that the environment can fill them."""
    for option in OPTIONS:
        text = f"{option.help} [env {option.env}, default {option.default}]"
        if option.is_bool:
            parser.add_argument(
                option.flag, dest=option.field, action=argparse.BooleanOptionalAction, default=None, help=text
            )
        else:
            parser.add_argument(option.flag, dest=option.field, default=None, help=text, metavar=option.value_name)


def load_settings(args: argparse.Namespace | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from flags (if given), then the environment, then the defaults."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for option in OPTIONS:
        flag_value = getattr(args, option.field, None) if args is not None else None
        if flag_value is not None and not isinstance(flag_value, str):
            values[option.field] = flag_value  # a boolean flag, already parsed
            continue
        raw, source = (flag_value, option.flag) if flag_value is not None else (environ.get(option.env), option.env)
        if raw is None:
            values[option.field] = option.default
            continue
        try:
            values[option.field] = option.parse(raw)
        except ValueError as exc:
            raise ConfigError(f"invalid value for {source}: {exc}") from None
    if values["dtype"] == "int8" and values["backend"] == "torch":
        raise ConfigError(
            "VECTORIZER_DTYPE=int8 (--dtype int8) quantises the ONNX graphs: set VECTORIZER_BACKEND=onnx "
            "(--backend onnx) or auto, or choose another dtype"
        )
    return Settings(**values)


# -- docs/settings.md ------------------------------------------------------------------------------------
TABLE_HEAD = "| variable | flag | default | meaning |\n|---|---|---|---|\n"


def _doc_default(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def settings_table(meanings: Mapping[str, str]) -> str:
    """docs/settings.md's table: each option's variable, flag and default as ``OPTIONS`` and ``Settings`` have
    them, in their order; its meaning as the document words it (``meanings``, by variable), or the help text
    for an option the document lacks."""
    rows = [
        f"| `{o.env}` | `{o.flag}` | {_doc_default(o.default)} | {meanings.get(o.env, o.help)} |\n" for o in OPTIONS
    ]
    return TABLE_HEAD + "".join(rows)


def updated_settings_doc(text: str) -> str:
    """``text`` (docs/settings.md) with its table written again from the options, keeping each meaning."""
    start = text.index(TABLE_HEAD)
    end = text.index("\n\n", start) + 1
    meanings = {}
    for line in text[start + len(TABLE_HEAD) : end].splitlines():
        cells = line.split(" | ", 3)
        meanings[cells[0].strip("|` ")] = cells[3].removesuffix(" |")
    return text[:start] + settings_table(meanings) + text[end:]


if __name__ == "__main__":  # python -m vectorizer_module.config docs/settings.md: the table written again
    import pathlib
    import sys

    doc = pathlib.Path(sys.argv[1])
    doc.write_text(updated_settings_doc(doc.read_text(encoding="utf-8")), encoding="utf-8")
