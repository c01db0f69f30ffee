"""The snapshot barrier both runtimes share: workers meet at every k-th clock.

Why a barrier: under SSP a fast worker may already have sent increments of clock ``c`` or
later while a slow one is still at ``c - 1``; the tables then match no single clock. When every
worker waits at clock ``c`` (after sending its clock ``c - 1`` increments) the tables hold
exactly the increments of clocks ``< c``, and each worker's saved state belongs to the same
clock. The last worker to arrive writes the snapshot while the others wait; the cost is one
barrier every ``k`` clocks.

A worker whose function returned counts as arrived at every later snapshot clock (its
increments are all in the tables; it is not run again after a restore).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from ..errors import JobAbortedError
from ..persist.snapshot import WorkerState

SnapshotWriter = Callable[[int, list[WorkerState]], None]


def is_snapshot_clock(clock: int, every: int | None, iterations: int | None) -> bool:
    """Snapshots are taken at clocks k, 2k, ... before the last one (nothing left to redo
    after it)."""
    if not every or clock <= 0 or clock % every:
        return False
    return iterations is None or clock < iterations


class SnapshotBarrier:
    """Collects worker states per snapshot clock and writes the snapshot when all are in."""

    def __init__(self, num_workers: int, write: SnapshotWriter) -> None:
        self.num_workers = num_workers
        self._write = write
        self._cond = threading.Condition()
        self._arrived: dict[int, dict[int, WorkerState]] = {}
        self._finished: dict[int, WorkerState] = {}
        self._done: set[int] = set()
        self._error: BaseException | None = None
        self._aborted = False
        self.written: list[int] = []

    def arrive(self, worker: int, state: WorkerState) -> None:
        """Block until every worker reached ``state.clock`` and the snapshot is written."""
        clock = state.clock
        with self._cond:
            self._arrived.setdefault(clock, {})[worker] = state
            self._try_complete(clock)
            while clock not in self._done and self._error is None and not self._aborted:
                self._cond.wait()
            self._raise_if_failed()

    def finish(self, worker: int, state: WorkerState) -> None:
        """``worker`` returned: never wait for it again."""
        with self._cond:
            self._finished[worker] = state
            for clock in sorted(self._arrived):
                self._try_complete(clock)
            self._raise_if_failed()

    def abort(self) -> None:
        with self._cond:
            self._aborted = True
            self._cond.notify_all()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error
        if self._aborted:
            raise JobAbortedError("job stopped while workers waited at a snapshot barrier")

    def _try_complete(self, clock: int) -> None:
        arrived = self._arrived[clock]
        states = [arrived.get(w) or self._finished.get(w) for w in range(self.num_workers)]
        if any(s is None for s in states) or self._error is not None:
            return
        try:
            self._write(clock, states)  # every live worker is waiting right here
            self.written.append(clock)
        except BaseException as exc:  # noqa: BLE001 - handed to every waiting worker
            self._error = exc
        del self._arrived[clock]
        self._done.add(clock)
        self._cond.notify_all()
