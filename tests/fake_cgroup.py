"""A fake host for the worker-count rules: a cgroup tree in a temporary folder (v1 or v2 files) and an
affinity mask, patched in where vectorizer_module.limits reads them."""

from __future__ import annotations

from pathlib import Path

import pytest

from vectorizer_module import limits


def fake_host(
    monkeypatch: pytest.MonkeyPatch,
    root: Path,
    cores: int,
    *,
    cpu_quota: tuple[int, int] | None = None,
    memory: int | None = None,
    version: int = 2,
) -> Path:
    """``cores`` in the affinity mask; a CPU quota (quota, period in µs) and a memory limit (bytes) in a
    cgroup v2 or v1 tree at ``root``, or "no limit" as each version writes it."""
    root.mkdir(parents=True, exist_ok=True)
    if version == 2:
        (root / "cpu.max").write_text(f"{cpu_quota[0]} {cpu_quota[1]}\n" if cpu_quota else "max 100000\n")
        (root / "memory.max").write_text(f"{memory}\n" if memory is not None else "max\n")
    else:
        (root / "cpu").mkdir(exist_ok=True)
        (root / "memory").mkdir(exist_ok=True)
        (root / "cpu" / "cpu.cfs_quota_us").write_text(f"{cpu_quota[0]}\n" if cpu_quota else "-1\n")
        (root / "cpu" / "cpu.cfs_period_us").write_text(f"{cpu_quota[1] if cpu_quota else 100000}\n")
        unlimited = 9223372036854771712  # what cgroup v1 reports without a limit
        (root / "memory" / "memory.limit_in_bytes").write_text(f"{memory if memory is not None else unlimited}\n")
    monkeypatch.setattr(limits, "CGROUP_ROOT", root)
    monkeypatch.setattr(limits.os, "sched_getaffinity", lambda _pid: set(range(cores)), raising=False)
    return root
