"""The workers' shared board: a few integers per worker in memory that every worker process can read.

gunicorn's arbiter creates the board before it forks any worker (an anonymous shared mapping survives
the fork and stays shared); it gives each new worker a free slot, and clears the slot of a worker that
died. A worker writes only its own slot: its pid, whether its model is loaded, and how many items wait
in its lanes (the cell ``admission.QueueBudget`` counts in). From the board a worker reads what no one
worker knows alone: how many items wait in the whole service, and whether every worker has loaded its
model, which is when the service first becomes ready. After that first time the service stays ready
while a replacement worker loads (the others serve; the replacement accepts no connection until its
model is loaded, see ``wsgi.ModelWorker``).

No lock spans processes: each slot has one writer, and a worker killed mid-write cannot wedge the others.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Collection

_PID, _LOADED, _WAITING = range(3)
_FIELDS = 3
_STARTED = 0  # header cell: 1 once every worker had its model loaded
_CLAIMED = -1  # pid cell of a slot given to a worker that is being forked


class WorkerBoard:
    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._memory = mmap.mmap(-1, 8 * (1 + workers * _FIELDS))  # MAP_SHARED | MAP_ANONYMOUS
        self._cells = memoryview(self._memory).cast("q")

    def _cell(self, slot: int, field: int) -> int:
        return 1 + slot * _FIELDS + field

    # -- the arbiter's side ------------------------------------------------------------------------
    def claim_slot(self, live: Collection[int] = ()) -> int:
        """A free slot for a worker about to be forked: one never used or cleared, or else one whose
        worker is not among the ``live`` pids (gone without its exit being reported)."""
        for slot in range(self.workers):
            if self._cells[self._cell(slot, _PID)] == 0:
                self._cells[self._cell(slot, _PID)] = _CLAIMED
                return slot
        for slot in range(self.workers):
            if self._cells[self._cell(slot, _PID)] > 0 and self._cells[self._cell(slot, _PID)] not in live:
                self.clear_slot(slot)
                self._cells[self._cell(slot, _PID)] = _CLAIMED
                return slot
        raise RuntimeError(f"all {self.workers} worker slots are taken")

    def clear_slot(self, slot: int) -> None:
        """The slot's worker has exited: what it said no longer holds."""
        for field in (_WAITING, _LOADED, _PID):
            self._cells[self._cell(slot, field)] = 0

    # -- a worker's side ---------------------------------------------------------------------------
    def take_slot(self, slot: int) -> None:
        self._cells[self._cell(slot, _PID)] = os.getpid()

    def mark_loaded(self, slot: int) -> None:
        self._cells[self._cell(slot, _LOADED)] = 1

    def waiting_cells(self) -> memoryview:
        """The waiting-items cell of every slot, in slot order (a view: writes reach the board)."""
        return self._cells[1 + _WAITING :: _FIELDS]

    def loaded(self) -> int:
        return sum(self._cells[self._cell(slot, _LOADED)] for slot in range(self.workers))

    def started(self) -> bool:
        """Whether the service has been ready: every worker had its model loaded at least once."""
        if not self._cells[_STARTED] and self.loaded() >= self.workers:
            self._cells[_STARTED] = 1
        return bool(self._cells[_STARTED])

    def peers_loading(self) -> str | None:
        """Why the service cannot serve yet (workers still loading at start-up), or None."""
        if self.started():
            return None
        return f"the model is still loading in {self.workers - self.loaded()} of {self.workers} workers"
