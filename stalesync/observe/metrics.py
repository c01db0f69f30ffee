"""The run record: one schema for every app, and what it says about staleness.

The run record is one JSON-serialisable dict, the same schema for every app, strategy and
runtime (see :data:`RECORD_FIELDS`)::

    app, strategy, runtime, consistency, staleness, guarantee, workers,
    clocks, epochs, wall_time_s, records [per worker per clock; thinned in long runs],
    observed_staleness {max, mean, histogram, rows_read}, reads_blocked, wait_s,
    bytes_sent, compression_ratio, fetches, pushes, evictions [per worker], recoveries,
    objective_name, objective_reduce, final {app's results}

``clocks`` counts synchronisation points run (the furthest worker's ``ctx.clock()`` calls:
workers may stop before the planned iterations; a scheduler's rounds); ``epochs`` counts
passes over the data (LDA sweeps, SGD epochs), when the app knows.
``strategy`` says how work is shared: ``ps`` (parameter-server tables), ``scheduled``
(model-parallel rounds), ``dsgd``/``fugue`` (block rotation), and the SGD strategies.
``compression_ratio``: the bytes the pushed updates would have taken uncompressed over the
bytes their encodings took (1.0 when no table compresses; :mod:`stalesync.ps.compression`).
``guarantee`` says in words what a read was guaranteed to see (``promise``) and what the
run-time audit found (``reads_checked``, ``violations``, ``over_blocked_reads``).

The per-clock records come from each worker's
:class:`~stalesync.ps.clock_records.WorkerMetrics` (thinned in long runs, see there).
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from ..errors import StalesyncError
from ..persist.files import PathLike, atomic_write_bytes, json_ready
from ..ps.audit import summarize
from ..ps.clock_records import WorkerMetrics

RECORD_FIELDS = (
    "app", "strategy", "runtime", "consistency", "staleness", "guarantee", "workers",
    "clocks", "epochs", "wall_time_s", "records", "observed_staleness", "reads_blocked",
    "wait_s", "bytes_sent", "compression_ratio", "fetches", "pushes", "evictions",
    "recoveries",
    "objective_name", "objective_reduce", "final",
)


def check_record(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` itself, once it holds every field of :data:`RECORD_FIELDS` with the right
    kind of value: every path of every app ends here, so a path that forgets a field fails
    its first test rather than a user's ``stalesync compare``."""
    missing = [f for f in RECORD_FIELDS if f not in record]
    kinds = {"final": dict, "records": list, "guarantee": dict, "observed_staleness": dict}
    wrong = [f for f, kind in kinds.items() if f in record and not isinstance(record[f], kind)]
    if not isinstance(record.get("workers"), int) or record["workers"] < 1:
        wrong.append("workers")
    if missing or wrong:
        raise StalesyncError(f"run record of app {record.get('app')!r}: missing {missing}, "
                             f"malformed {wrong} (a bug in the app's path)")
    return record


def staleness_summary(counts: np.ndarray) -> dict[str, Any]:
    total = int(counts.sum())
    if total == 0:
        return {"max": 0, "mean": 0.0, "histogram": [], "rows_read": 0}
    nz = np.flatnonzero(counts)
    top = int(nz[-1])
    mean = float((np.arange(counts.size) * counts).sum() / total)
    return {"max": top, "mean": mean, "histogram": counts[: top + 1].tolist(), "rows_read": total}


def describe_guarantee(strategy: str, consistency: str, staleness: int | str) -> str:
    """The run record's ``guarantee.promise``: what every read was guaranteed to see."""
    if strategy == "ps":
        if consistency == "async":
            return "async: reads never wait; no bound on staleness"
        if staleness == "auto":
            return (f"{consistency}(auto): a read at clock c saw every update from clocks "
                    "< c - s(c) of every worker, and all of its own; s(c) is the bound in "
                    "force at clock c (staleness_auto.schedules), never above max_staleness")
        bound = 0 if consistency == "bsp" else staleness
        return (f"{consistency}: a read at clock c saw every update from clocks < c - {bound} "
                "of every worker, and all of its own")
    if strategy == "scheduled":
        return ("synchronous rounds: every push saw all updates of earlier rounds; the "
                "schedule's priorities are one round late (pipelining)")
    if strategy == "vertex-sync":
        return ("synchronous supersteps: every vertex update read the values of the last "
                "superstep, all of them")
    if strategy == "vertex-dynamic":
        hops = {"vertex": "the same vertex", "edge": "two adjacent vertices",
                "full": "two vertices with a common neighbour"}.get(consistency, consistency)
        return (f"{consistency} consistency: no round updated {hops}; every update read "
                "the values of every earlier round")
    if strategy in ("dsgd", "fugue"):
        return ("block rotation: workers update disjoint row and column blocks; every "
                "sub-round saw all updates of earlier sub-rounds")
    if strategy == "pipeline":
        return ("pipeline: every step's gradient was the whole mini-batch's, summed over its "
                "micro-batches across the stages; every stage stepped as one process would "
                "(replicas: on the mean of their gradients)")
    if strategy == "allreduce":
        return ("allreduce: every step used the sum of every worker's gradient of that "
                "step; all workers hold identical parameters after each step")
    return consistency


def build_run_record(
    *,
    app: str,
    strategy: str,
    runtime: str,
    consistency: str,
    staleness: int | str,
    workers: int,
    clocks: int,
    wall_time_s: float,
    metrics: list[WorkerMetrics],
    epochs: float | None = None,
    final: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Merge the workers' metrics into the run record (see the module docstring)."""
    width = max(m.staleness_counts.size for m in metrics) if metrics else 1
    counts = np.zeros(width, dtype=np.int64)
    for m in metrics:
        counts[: m.staleness_counts.size] += m.staleness_counts
    records = sorted(
        (r for m in metrics for r in m.records), key=lambda r: (r["iteration"], r["worker"])
    )
    record: dict[str, Any] = {
        "app": app,
        "strategy": strategy,
        "runtime": runtime,
        "consistency": consistency,
        "staleness": staleness,
        "guarantee": {"promise": describe_guarantee(strategy, consistency, staleness),
                      **summarize_audits(metrics)},
        "workers": workers,
        "clocks": clocks,
        "epochs": epochs,
        "wall_time_s": wall_time_s,
        "records": records,
        "observed_staleness": staleness_summary(counts),
        "reads_blocked": int(sum(m.reads_blocked for m in metrics)),
        "wait_s": float(sum(r["wait_s"] for r in records)),
        "bytes_sent": int(sum(m.bytes_sent for m in metrics)),
        "compression_ratio": float(sum(m.push_bytes_dense for m in metrics)
                                   / max(sum(m.push_bytes for m in metrics), 1))
        if any(m.push_bytes for m in metrics) else 1.0,
        "fetches": [int(m.fetches) for m in metrics],
        "pushes": [int(m.pushes) for m in metrics],
        "evictions": [int(m.evictions) for m in metrics],
        "recoveries": 0,
        "objective_name": "objective",
        "objective_reduce": "mean",
        "final": dict(final or {}),
    }
    if extra:
        record.update(extra)
    return record


def summarize_audits(metrics: list[WorkerMetrics]) -> dict[str, Any]:
    """The read audit's counters over all workers (see :mod:`stalesync.ps.audit`)."""
    states = [m.audit for m in metrics if m.audit]
    if not states or not any(s["reads_checked"] for s in states):
        return {"audit": "off", "reads_checked": 0, "violations": 0, "over_blocked_reads": 0,
                "first_problem": None}
    return summarize(states, "on")


def _json_default(value: Any) -> Any:
    """Numpy values as plain JSON; a non-finite numpy float becomes null (strict JSON)."""
    if isinstance(value, np.floating) and not math.isfinite(value):
        return None
    ready = json_ready(value)
    if ready is value:
        raise TypeError(f"cannot write {type(value).__name__} to a run record")
    return ready


def write_run_record(record: dict[str, Any], path: PathLike) -> None:
    data = json.dumps(record, indent=1, default=_json_default).encode()
    atomic_write_bytes(path, data)


def objective_curve(record: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(time, objective) per iteration, at the time the last worker reported it.

    Workers' values are averaged, or added when ``record["objective_reduce"] == "sum"``
    (each worker reports its share, as LDA's log-likelihood)."""
    by_iter: dict[int, list[tuple[float, float]]] = {}
    for r in record["records"]:
        if r.get("objective") is not None:
            by_iter.setdefault(r["iteration"], []).append((r["time_s"], r["objective"]))
    its = sorted(by_iter)
    reduce = np.sum if record.get("objective_reduce") == "sum" else np.mean
    times = np.array([max(t for t, _ in by_iter[i]) for i in its])
    values = np.array([reduce([v for _, v in by_iter[i]]) for i in its])
    return times, values
