"""``VECTORIZER_DTYPE=auto`` and ``VECTORIZER_BACKEND=auto``: the precision the towers compute in, and what
runs them.

On CUDA, float16. On a CPU whose instruction set multiplies bfloat16 natively (``avx512_bf16``, or
Intel's AMX, ``amx_bf16``), bfloat16 with the torch backend: 2.5x the images and 3x the texts per second
of float32 in a ViT-B/32's forward on two Zen 4 cores. Elsewhere, and with the ONNX backend, float32.
bfloat16 keeps 8 bits of mantissa, so the choice is checked on the model being served before it is kept:
its towers run their example inputs in float32 and in bfloat16, and bfloat16 stays only if every vector
is at cosine >= ``MIN_COSINE`` to float32's (``tests/unit/service/test_precision.py`` also bounds the demo model's
retrieval loss). A user who needs the reference image's float32 vectors sets ``VECTORIZER_DTYPE=float32``
and ``VECTORIZER_BACKEND=torch``.

The backend follows: torch for CUDA and for bfloat16 or float16; for float32 on a CPU (no native
bfloat16, or a model that failed the check), ONNX Runtime, whose float32 forward gave 1.7x the objects
and texts per second of torch's end to end, in no more memory (docs/benchmarks.md), where the family exports and
onnxruntime is installed; torch otherwise. int8 (opt-in: it failed the demo model's hit@1 bound by 0.0001)
exists only in ONNX Runtime.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

MIN_COSINE = 0.999
BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo flags of native bfloat16 arithmetic
CPUINFO = Path("/proc/cpuinfo")


@functools.cache
def _host_cpuinfo() -> str:
    try:
        return CPUINFO.read_text()
    except OSError:
        return ""


def cpu_bf16_flags(cpuinfo: str | None = None) -> list[str]:
    """The native-bfloat16 flags this CPU has (``cpuinfo``: the text of /proc/cpuinfo; this host's when None)."""
    if cpuinfo is None:
        cpuinfo = _host_cpuinfo()
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), [])
    return [flag for flag in BF16_FLAGS if flag in flags]


@dataclass(frozen=True)
class Choice:
    """A resolved dtype and why it was chosen (one log line and /meta say it)."""

    dtype: str
    reason: str
    checked: bool = False  # bfloat16 by ``auto``: to be checked on the model (``holds``) before it is kept


def resolve(setting: str, *, enable_cuda: bool, backend: str, flags: Sequence[str] | None = None) -> Choice:
    """The dtype of ``setting`` (VECTORIZER_DTYPE) on this host."""
    if setting != "auto":
        return Choice(setting, "VECTORIZER_DTYPE")
    if enable_cuda:
        return Choice("float16", "auto: CUDA")
    if backend != "torch":
        return Choice("float32", f"auto: the {backend} backend runs float32")
    flags = cpu_bf16_flags() if flags is None else list(flags)
    if not flags:
        return Choice("float32", "auto: this CPU has no native bfloat16 (avx512_bf16 or amx_bf16)")
    return Choice("bfloat16", f"auto: the CPU has {' and '.join(flags)}", checked=True)


@dataclass(frozen=True)
class BackendChoice:
    """The backend chosen (``backends/``) and why (the log and /meta say it)."""

    name: str
    reason: str


def resolve_backend(setting: str, *, dtype: str, enable_cuda: bool, exportable: bool, family: str) -> BackendChoice:
    """The backend of ``setting`` (VECTORIZER_BACKEND) for towers computing in ``dtype``."""
    if setting != "auto":
        return BackendChoice(setting, "VECTORIZER_BACKEND")
    if dtype == "int8":
        return BackendChoice("onnx", "auto: int8 runs in ONNX Runtime")
    if enable_cuda or dtype != "float32":
        return BackendChoice("torch", f"auto: {dtype}{' on CUDA' if enable_cuda else ''} runs in torch")
    if not exportable:
        return BackendChoice("torch", f"auto: the {family} family's towers do not export to ONNX")
    # looked up, not imported: onnxscript alone costs 71 MB of memory, and only an export needs it
    if any(importlib.util.find_spec(name) is None for name in ("onnxruntime", "onnxscript")):
        return BackendChoice("torch", "auto: onnxruntime (or onnxscript) is not installed")
    return BackendChoice("onnx", "auto: float32 on the CPU runs faster in ONNX Runtime")


def min_cosine(reference: Sequence, reduced: Sequence) -> float:
    """The smallest cosine between matching rows of float32 vectors and reduced-precision ones."""
    import torch

    worst = 1.0
    for a, b in zip(reference, reduced):
        a, b = a.double(), b.double()
        cosine = torch.nn.functional.cosine_similarity(a, b, dim=-1)
        worst = min(worst, float(cosine.min()))
    return worst


def holds(towers, dtype) -> float:
    """Convert both towers to ``dtype`` in place and return the smallest cosine of their example inputs'
    vectors to float32's (computed first). NaN or a failing operator gives 0.0."""
    import torch

    reference, reduced = [], []
    with torch.inference_mode():
        for tower in (towers.query, towers.items):
            reference.append(tower(*tower.example_inputs(4)).float())
        try:
            for tower in (towers.query, towers.items):
                tower.to(dtype=dtype)
                reduced.append(tower(*tower.example_inputs(4)).float())
        except (RuntimeError, NotImplementedError):  # an operator without a kernel for this dtype
            return 0.0
    cosine = min_cosine(reference, reduced)
    return cosine if cosine == cosine else 0.0  # NaN
