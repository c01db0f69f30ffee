"""What a worker observes, clock by clock: waits, bytes sent, rows read and their staleness.

The client (:mod:`stalesync.ps.client`) fills a :class:`WorkerMetrics` on the worker's own
thread; the run record (:mod:`stalesync.observe.metrics`) is built from them at the end.

A worker keeps at most :data:`MAX_RECORDS` clock records, so a long job's memory stays
flat: past that, adjacent pairs in the older half are merged into one record covering both
(``clocks``: how many it covers; times, waits, bytes and rows add up, the staleness mean is
weighted, the objective and bound are the later one's). The newest half stays one record
per clock.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

MAX_RECORDS = 4096  # clock records kept per worker (older ones are merged pairwise)


def merge_records(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """One record covering the clocks of ``a`` and the later ``b``."""
    out = dict(b)
    out["clocks"] = a.get("clocks", 1) + b.get("clocks", 1)
    for key in ("duration_s", "wait_s", "bytes_sent"):
        out[key] = a[key] + b[key]
    rows = a.get("rows_read", 0) + b.get("rows_read", 0)
    if rows:
        out["rows_read"] = rows
        out["staleness_mean"] = (a.get("staleness_mean", 0.0) * a.get("rows_read", 0)
                                 + b.get("staleness_mean", 0.0) * b.get("rows_read", 0)) / rows
        out["staleness_max"] = max(a.get("staleness_max", 0), b.get("staleness_max", 0))
    return out


def thin_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Merge adjacent pairs in the older half; the newest half is kept as it is."""
    half = len(records) // 2 // 2 * 2
    older = [merge_records(records[i], records[i + 1]) for i in range(0, half, 2)]
    return older + records[half:]


class WorkerMetrics:
    """What one worker observed. Only its own thread writes it, so no locking."""

    def __init__(self, worker: int, job_start: float) -> None:
        self.worker = worker
        self.job_start = job_start
        self.staleness_counts = np.zeros(8, dtype=np.int64)
        self.records: list[dict[str, Any]] = []
        self.reads_blocked = 0
        self.bytes_sent = 0
        self.push_bytes = 0  # the updates' share of bytes_sent ...
        self.push_bytes_dense = 0  # ... and what they would have been uncompressed
        self.fetches = 0  # reads that fetched rows from the shards
        self.audit: dict[str, Any] | None = None  # the read audit's counters (at the end)
        self.pushes = 0  # clock messages that carried increments
        self.evictions = 0  # rows a bounded cache dropped (TableSpec.cache_rows)
        self.clocks = 0  # the worker's clock when it ended (set by its member)
        self._clock_start = time.perf_counter()
        self._wait = 0.0
        self._bytes = 0
        self._rows = 0  # this clock's rows read, their summed and largest staleness
        self._stale_sum = 0
        self._stale_max = 0
        self.bound: int | None = None  # the staleness bound in force (reported per clock)

    def on_read_stats(self, rows: int, stale_sum: int, stale_max: int,
                      waited_s: float) -> None:
        """Record a read of ``rows`` rows whose staleness summed to ``stale_sum`` (each
        floored at 0) with the largest ``stale_max``; the client already added them to
        ``staleness_counts`` (:func:`~stalesync.kernels.bookkeeping.read_staleness`)."""
        if rows:
            self._rows += rows
            self._stale_sum += stale_sum
            if stale_max > self._stale_max:
                self._stale_max = stale_max
        if waited_s > 0:
            self.reads_blocked += 1
            self._wait += waited_s

    def grow_histogram(self, top: int) -> np.ndarray:
        """Room in ``staleness_counts`` for a staleness of ``top``; returns it."""
        grown = np.zeros(max(top + 1, 2 * self.staleness_counts.size), dtype=np.int64)
        grown[: self.staleness_counts.size] = self.staleness_counts
        self.staleness_counts = grown
        return grown

    @property
    def clock_wait_s(self) -> float:
        """Seconds blocked in reads since the last clock."""
        return self._wait

    def add_wait(self, seconds: float) -> None:
        self._wait += seconds

    def on_send(self, nbytes: int) -> None:
        self._bytes += nbytes

    def on_clock(self, iteration: int, objective: float | None) -> None:
        now = time.perf_counter()
        record: dict[str, Any] = {
            "iteration": iteration,
            "worker": self.worker,
            "time_s": now - self.job_start,
            "duration_s": now - self._clock_start,
            "wait_s": self._wait,
            "bytes_sent": self._bytes,
        }
        if objective is not None:
            record["objective"] = float(objective)
        if self._rows:
            record["rows_read"] = self._rows
            record["staleness_mean"] = self._stale_sum / self._rows
            record["staleness_max"] = self._stale_max
        if self.bound is not None:
            record["bound"] = self.bound
        self.records.append(record)
        if len(self.records) > MAX_RECORDS:
            self.records = thin_records(self.records)
        self.bytes_sent += self._bytes
        self._clock_start, self._wait, self._bytes = now, 0.0, 0
        self._rows = self._stale_sum = self._stale_max = 0
