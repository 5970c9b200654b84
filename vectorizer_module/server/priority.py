"""CPU priorities of a worker's two processes (``model_process.py`` says why they are two).

- The model process runs ``VECTORIZER_MODEL_NICE`` steps nicer than its HTTP front, so the front gets a core
  when it wakes. A nice value weighs a task against the others of its cgroup (a container) or of its
  session's autogroup only: there it costs the service nothing against the rest of the host.
- The HTTP front asks for a 0.1 ms scheduler slice, where the kernel has custom slices (Linux 6.12+, the
  EEVDF scheduler; unprivileged): a task waking with a shorter slice than the running one's preempts it
  at once, instead of waiting out the rest of that slice (up to ~3 ms). Measured on 2 cores under the
  saturating object load: ``/meta`` p99 4.5-5.0 ms at nice 10 alone, 3.0-3.3 ms at nice 19 with the short
  slice. Older kernels ignore the slice.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform

log = logging.getLogger(__name__)
SHORT_SLICE_NS = 100_000  # the shortest slice the kernel takes
DEFAULT_SLICE = 0  # the kernel's own
SCHED_SETATTR = {"x86_64": 314, "aarch64": 274}  # syscall numbers


class _SchedAttr(ctypes.Structure):
    _fields_ = [
        ("size", ctypes.c_uint32),
        ("sched_policy", ctypes.c_uint32),
        ("sched_flags", ctypes.c_uint64),
        ("sched_nice", ctypes.c_int32),
        ("sched_priority", ctypes.c_uint32),
        ("sched_runtime", ctypes.c_uint64),  # a fair task's slice, in ns (0: the default)
        ("sched_deadline", ctypes.c_uint64),
        ("sched_period", ctypes.c_uint64),
    ]


def set_slice(nanoseconds: int) -> bool:
    """The calling thread's scheduler slice (threads and processes it starts later inherit it), its
    policy and nice value kept; False where the kernel or the machine does not take it."""
    number = SCHED_SETATTR.get(platform.machine())
    if number is None:
        return False
    attr = _SchedAttr(size=ctypes.sizeof(_SchedAttr), sched_runtime=nanoseconds)
    attr.sched_nice = os.getpriority(os.PRIO_PROCESS, 0)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(number, 0, ctypes.byref(attr), 0) != 0:
        log.debug("no custom scheduler slice: %s", os.strerror(ctypes.get_errno()))
        return False
    return True


def for_front() -> None:
    """The HTTP front's: a short slice, so that it runs as soon as a request or a probe wakes it."""
    set_slice(SHORT_SLICE_NS)


def for_model(nice: int) -> None:
    """The model process's: ``nice`` steps below the front, with the kernel's default slice."""
    set_slice(DEFAULT_SLICE)
    os.nice(nice)
