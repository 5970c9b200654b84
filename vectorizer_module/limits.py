"""What the host or container lets the service use, and the worker count ``auto`` makes of it.

A container's limits live in its cgroup, not in ``os.cpu_count()``: the CPU quota (``cpu.max`` on
cgroup v2, ``cpu/cpu.cfs_quota_us`` over ``cpu.cfs_period_us`` on v1) and the memory limit
(``memory.max``; ``memory/memory.limit_in_bytes`` on v1). A Kubernetes pod with a CPU request but no CPU
limit has no quota, so on a large GPU node the cores alone would ask for many workers, each with a copy
of the model and a CUDA context; the memory limit is then what bounds them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
MIB = 1024 * 1024
# cgroup v1 writes "no limit" as a huge number (the largest page-aligned 64-bit value); anything past
# this is no limit
_NO_LIMIT = 1 << 60

# `auto` on a CUDA host: half the cores, at most this many. Measured on a 16-core H200 host with one torch
# thread per process: 4 processes 341, 8 processes 571, 14 processes 591 objects/s (issue 14).
MAX_AUTO_WORKERS = 8
# Peak RSS of one worker beyond its model's weight files, measured under the bench's saturating load with
# ViT-B/32 (605 MB of float32 weights): on the CPU 1 worker 1408-1428 MB and 2 workers 2749-2763 MB in
# all (docs/benchmarks.md, 2026-12-01), so 1340 MB per worker, 735 MB of it runtime (torch, the service,
# activations); on an H100 in float16, 2439 MB for the process (docs/bench/h100-2026-11-23.json), so
# 1834 MB runtime with the CUDA context and its libraries. What the first worker's arbiter adds.
CPU_RUNTIME_MB = 735
CUDA_RUNTIME_MB = 1834
ARBITER_MB = 80
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cpu_quota_cores(root: Path | None = None) -> int | None:
    """Whole cores the cgroup's CPU quota allows (rounded up), or None without a quota."""
    root = root or CGROUP_ROOT
    v2 = _read(root / "cpu.max")
    if v2 is not None:
        quota, _, period = v2.partition(" ")
        return -(-int(quota) // int(period)) if quota != "max" and period.isdigit() and int(period) > 0 else None
    quota, period = _read(root / "cpu" / "cpu.cfs_quota_us"), _read(root / "cpu" / "cpu.cfs_period_us")
    if quota is None or period is None or int(quota) <= 0 or int(period) <= 0:
        return None
    return -(-int(quota) // int(period))


def memory_limit_bytes(root: Path | None = None) -> int | None:
    """The cgroup's memory limit in bytes, or None without one."""
    root = root or CGROUP_ROOT
    value = _read(root / "memory.max")
    if value is None:
        value = _read(root / "memory" / "memory.limit_in_bytes")
    if value is None or not value.isdigit() or int(value) >= _NO_LIMIT:
        return None
    return int(value)


def available_cores(root: Path | None = None) -> int:
    """CPU cores this process may use: its affinity mask, capped by the cgroup's CPU quota, at least 1."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = cpu_quota_cores(root)
    return max(1, min(cores, quota) if quota else cores)


def weights_bytes(model_dir: str | os.PathLike[str] | None) -> int:
    """Bytes of weight files under a model directory (0 for none): what one worker's copy costs."""
    if model_dir is None:
        return 0
    return sum(p.stat().st_size for p in Path(model_dir).rglob("*") if p.suffix in WEIGHT_SUFFIXES and p.is_file())


@dataclass(frozen=True)
class WorkerPlan:
    """How many workers ``auto`` starts, and the arithmetic behind it for the start-up log."""

    count: int
    explanation: str


def auto_workers(enable_cuda: bool, model_bytes: int = 0, root: Path | None = None) -> WorkerPlan:
    """Workers for ``auto``: one on a CPU host (a forward pass already uses every core); on a CUDA host
    half the cores, at most MAX_AUTO_WORKERS (the GPU idles behind one process's GIL). Either way no more
    than the memory limit holds at the measured cost of a worker, and at least one."""
    cores = available_cores(root)
    if enable_cuda:
        count = max(1, min(MAX_AUTO_WORKERS, cores // 2))
        why = f"CUDA: {cores} core(s) // 2, at most {MAX_AUTO_WORKERS} = {count}"
    else:
        count, why = 1, "CPU: 1 (one process's forward passes use every core)"
    limit = memory_limit_bytes(root)
    if limit is None:
        return WorkerPlan(count, f"{why}; no memory limit")
    per_worker = (CUDA_RUNTIME_MB if enable_cuda else CPU_RUNTIME_MB) + model_bytes / MIB
    fits = int((limit / MIB - ARBITER_MB) // per_worker)
    chosen = max(1, min(count, fits))
    arithmetic = (
        f"memory limit {limit / MIB:.0f} MiB - {ARBITER_MB} MiB arbiter = {fits} worker(s) of "
        f"{per_worker:.0f} MiB ({'CUDA' if enable_cuda else 'CPU'} runtime "
        f"{CUDA_RUNTIME_MB if enable_cuda else CPU_RUNTIME_MB} + weights {model_bytes / MIB:.0f})"
    )
    if fits < 1:
        arithmetic += ": not even one fits; starting one anyway, raise the limit"
    return WorkerPlan(chosen, f"{why}; {arithmetic} -> {chosen}")
