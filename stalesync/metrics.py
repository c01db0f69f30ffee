"""Instrumentation: per-clock records, observed staleness, and the run record.

The run record is one JSON-serialisable dict shared by every app and runtime:
``app, runtime, consistency, staleness, workers, iterations, wall_time_s, records,
observed_staleness {max, mean, histogram}, bytes_sent, final``.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


class WorkerMetrics:
    """What one worker observed. Only its own thread writes it, so no locking."""

    def __init__(self, worker: int, job_start: float) -> None:
        self.worker = worker
        self.job_start = job_start
        self.staleness_counts = np.zeros(8, dtype=np.int64)
        self.records: list[dict[str, Any]] = []
        self.reads_blocked = 0
        self.bytes_sent = 0
        self._clock_start = time.perf_counter()
        self._wait = 0.0
        self._bytes = 0

    def on_read(self, staleness: np.ndarray, waited_s: float) -> None:
        """Record the staleness of every row a read returned, and any time it blocked."""
        if staleness.size:
            top = int(staleness.max())
            if top >= self.staleness_counts.size:
                grown = np.zeros(max(top + 1, 2 * self.staleness_counts.size), dtype=np.int64)
                grown[: self.staleness_counts.size] = self.staleness_counts
                self.staleness_counts = grown
            self.staleness_counts += np.bincount(
                np.maximum(staleness, 0), minlength=self.staleness_counts.size
            )
        if waited_s > 0:
            self.reads_blocked += 1
            self._wait += waited_s

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
        self.records.append(record)
        self.bytes_sent += self._bytes
        self._clock_start, self._wait, self._bytes = now, 0.0, 0


def staleness_summary(counts: np.ndarray) -> dict[str, Any]:
    total = int(counts.sum())
    if total == 0:
        return {"max": 0, "mean": 0.0, "histogram": [], "reads": 0}
    nz = np.flatnonzero(counts)
    top = int(nz[-1])
    mean = float((np.arange(counts.size) * counts).sum() / total)
    return {"max": top, "mean": mean, "histogram": counts[: top + 1].tolist(), "rows_read": total}


def build_run_record(
    *,
    app: str,
    runtime: str,
    consistency: str,
    staleness: int,
    workers: int,
    iterations: int,
    wall_time_s: float,
    metrics: list[WorkerMetrics],
    final: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Merge the workers' metrics into the run record."""
    width = max(m.staleness_counts.size for m in metrics) if metrics else 1
    counts = np.zeros(width, dtype=np.int64)
    for m in metrics:
        counts[: m.staleness_counts.size] += m.staleness_counts
    records = sorted(
        (r for m in metrics for r in m.records), key=lambda r: (r["iteration"], r["worker"])
    )
    record: dict[str, Any] = {
        "app": app,
        "runtime": runtime,
        "consistency": consistency,
        "staleness": staleness,
        "workers": workers,
        "iterations": iterations,
        "wall_time_s": wall_time_s,
        "records": records,
        "observed_staleness": staleness_summary(counts),
        "reads_blocked": int(sum(m.reads_blocked for m in metrics)),
        "wait_s": float(sum(r["wait_s"] for r in records)),
        "bytes_sent": int(sum(m.bytes_sent for m in metrics)),
        "final": dict(final or {}),
    }
    if extra:
        record.update(extra)
    return record


def _json_default(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return None if not math.isfinite(value) else float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to a run record")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to a temp file beside ``path`` and rename it: never half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_run_record(record: dict[str, Any], path: str | os.PathLike) -> None:
    data = json.dumps(record, indent=1, default=_json_default).encode()
    atomic_write_bytes(path, data)


def objective_curve(record: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(time, objective) per iteration, at the time the last worker reported it.

    Workers' values are averaged, or added when ``record["objective_reduce"] == "sum"``
    (each worker reports its share, as LDA's log-likelihood)."""
    by_iter: dict[int, list[tuple[float, float]]] = {}
    for r in record["records"]:
        if "objective" in r:
            by_iter.setdefault(r["iteration"], []).append((r["time_s"], r["objective"]))
    its = sorted(by_iter)
    reduce = np.sum if record.get("objective_reduce") == "sum" else np.mean
    times = np.array([max(t for t, _ in by_iter[i]) for i in its])
    values = np.array([reduce([v for _, v in by_iter[i]]) for i in its])
    return times, values


def plot_run(record: dict[str, Any], path: str | os.PathLike, title: str | None = None) -> None:
    """Draw objective vs time and the observed-staleness histogram into one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    times, values = objective_curve(record)
    if times.size:
        ax1.plot(times, values, marker=".")
    ax1.set_xlabel("wall time (s)")
    ax1.set_ylabel(record.get("objective_name", "objective"))
    ax1.set_title("objective vs time")
    ax1.grid(alpha=0.3)
    hist = record["observed_staleness"]["histogram"]
    ax2.bar(range(len(hist)), hist)
    ax2.set_xlabel("observed staleness (clocks)")
    ax2.set_ylabel("rows read")
    ax2.set_title(f"staleness, mean {record['observed_staleness']['mean']:.2f}")
    fig.suptitle(
        title
        or f"{record['app']} · {record['runtime']} · {record['consistency']} · "
        f"{record['workers']} workers"
    )
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
