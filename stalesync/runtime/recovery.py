"""Recovering from a lost member: the bookkeeping every job shares.

A job (the parameter server, the model-parallel scheduler) catches
:class:`~stalesync.runtime.backend.WorkerLostError`, asks :meth:`Recovery.allow` whether it
may try again, restores its state (from its newest snapshot, or its in-memory checkpoint)
and goes on. After ``max_recoveries`` losses, or when the job keeps nothing to restore
from, it stops with :class:`~stalesync.errors.RecoveryError` saying what to do.
"""

from __future__ import annotations

import logging
import time

from ..errors import RecoveryError
from .backend import WorkerLostError

log = logging.getLogger("stalesync.recovery")


class Regroup(WorkerLostError):
    """Not a failure: a node joined, so the job stops right after a snapshot and places
    its members again from it (counted in the run record's ``membership``, not in
    ``recoveries``)."""


class Recovery:
    """How many losses a job survived, from which points, and when each was noticed."""

    def __init__(self, max_recoveries: int, restorable: bool, snapshot_dir: str | None) -> None:
        self.max_recoveries = max_recoveries
        self.restorable = restorable
        self.snapshot_dir = snapshot_dir
        self.recovered_from: list[int] = []
        self.failures_detected_at: list[float] = []  # time.time() when each loss was seen

    def allow(self, lost: WorkerLostError) -> None:
        """Raise :class:`RecoveryError` unless the job may restart once more."""
        self.failures_detected_at.append(time.time())
        if not self.restorable:
            raise RecoveryError(
                f"{lost}; snapshots are off, so the job cannot be restored: set "
                "snapshot_every and snapshot_dir (CLI: --snapshot-every, --snapshot-dir)"
            ) from lost
        if len(self.recovered_from) >= self.max_recoveries:
            where = (f" The latest snapshot in {self.snapshot_dir} is intact: fix the cause "
                     f"and resume with resume={self.snapshot_dir!r}"
                     if self.snapshot_dir else "")
            raise RecoveryError(
                f"{lost}; giving up after {self.max_recoveries} recoveries.{where}"
            ) from lost

    def restarted(self, point: int, what: str = "clock") -> None:
        self.recovered_from.append(point)
        log.warning("stalesync: a member was lost; restarting from %s %d", what, point)

    def record(self) -> dict[str, object]:
        """Run-record fields."""
        out: dict[str, object] = {"recoveries": len(self.recovered_from)}
        if self.recovered_from:
            out["recovered_from"] = list(self.recovered_from)
        return out
