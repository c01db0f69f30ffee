"""Snapshot plumbing shared by the runtimes: where to resume from, what to write, when.

The runtimes differ only in how they reach shards and workers; the decisions (which clock a
worker restarts at, which shard clocks to set, when a clock is a snapshot clock, what goes
into ``meta.json``) live here once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..errors import ConfigError
from ..persist.snapshot import (
    Snapshot,
    WorkerState,
    check_compatible,
    list_snapshots,
    load_snapshot,
    write_snapshot,
)
from ..ps.server import FINISHED
from ..ps.tables import ShardMap, TableSpec
from .barrier import is_snapshot_clock


def specs_of(config: Any) -> dict[str, TableSpec]:
    return {t.name: t for t in config.tables}


def load_resume(config: Any, path: str | Path | None = None) -> Snapshot | None:
    """The snapshot to restart from (``config.resume`` unless ``path``), checked against the
    job's tables and worker count; None for a fresh start."""
    if path is None and config.resume is None and config.snapshot_every:
        found = list_snapshots(config.snapshot_dir)
        if found:
            raise ConfigError(
                f"snapshot_dir {config.snapshot_dir} already holds snapshots (latest at clock "
                f"{found[-1][0]}): pass resume={str(config.snapshot_dir)!r} to continue that "
                "job, or use an empty directory"
            )
    path = path if path is not None else config.resume
    if path is None:
        return None
    snap = load_snapshot(path)
    check_compatible(snap, specs_of(config), config.workers)
    return snap


def start_clocks(snap: Snapshot | None, num_workers: int) -> np.ndarray:
    """Per-worker clocks the shards start from: the snapshot clock, or FINISHED for a worker
    that had returned (it is not run again)."""
    clocks = np.zeros(num_workers, dtype=np.int64)
    if snap is not None:
        for w, state in enumerate(snap.workers):
            clocks[w] = FINISHED if state.finished else state.clock
    return clocks


def restore_state(snap: Snapshot | None, worker: int) -> WorkerState | None:
    return None if snap is None else snap.workers[worker]


def as_table(values: Any, spec: TableSpec) -> np.ndarray | sp.csr_matrix:
    """Initial values in the table's dtype; a scipy sparse matrix stays sparse (a sparse
    table's dense form may not fit in memory)."""
    if sp.issparse(values):
        return sp.csr_matrix(values, dtype=spec.np_dtype)
    return np.asarray(values, dtype=spec.np_dtype)


def table_slice(values: np.ndarray | sp.spmatrix, shard: int, shard_map: ShardMap
                ) -> np.ndarray | sp.csr_matrix:
    """The rows of ``values`` that live on ``shard``."""
    if sp.issparse(values):
        return sp.csr_matrix(values)[shard :: shard_map.num_shards]
    return np.ascontiguousarray(values[shard :: shard_map.num_shards])


def assemble_tables(specs: Mapping[str, TableSpec],
                    parts: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Whole arrays from the shards' dumps (``parts[i]``: shard i, rows i, i+n, ...): every
    table, and the update rules' state arrays (``"<table>#<name>"``) when the dumps hold
    them."""
    n = len(parts)
    tables = {}
    for key, first in parts[0].items():
        spec = specs[key.partition("#")[0]]
        if sp.issparse(first):  # a sparse table: stack the shards, then interleave rows
            offsets = np.cumsum([0] + [p[key].shape[0] for p in parts])
            rows = np.arange(spec.num_rows)
            tables[key] = sp.vstack([p[key] for p in parts]).tocsr()[
                offsets[rows % n] + rows // n]
            continue
        out = np.empty((spec.num_rows, *first.shape[1:]), dtype=first.dtype)
        for shard, part in enumerate(parts):
            out[shard::n] = part[key]
        tables[key] = out
    return tables


def snapshot_meta(config: Any, run_id: str) -> dict[str, Any]:
    """``meta.json`` fields; ``run_id`` tells this run's snapshots from older ones."""
    return {
        "run_id": run_id,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "runtime": config.runtime,
        "consistency": config.model.kind,
        "staleness": config.model.staleness,
        "shards": config.shards,
        "iterations": config.iterations,
        "table_specs": {
            t.name: {"num_rows": t.num_rows, "row_width": t.row_width, "dtype": t.dtype}
            for t in config.tables
        },
    }


def make_writer(
    snapshot_dir: str | Path,
    meta: Mapping[str, Any],
    dump_tables: Callable[[], dict[str, np.ndarray]],
) -> Callable[[int, list[WorkerState]], None]:
    """The barrier's writer: dump every table, write the snapshot atomically."""

    def write(clock: int, states: list[WorkerState]) -> None:
        write_snapshot(snapshot_dir, clock, dump_tables(), states, meta)

    return write


def make_checkpoint(
    config: Any, arrive: Callable[[Any], None]
) -> Callable[[Any], None] | None:
    """The hook ``ctx.clock()`` calls: ``arrive(ctx)`` at snapshot clocks (None = off)."""
    every, iterations = config.snapshot_every, config.iterations
    if not every:
        return None

    def checkpoint(ctx: Any) -> None:
        if is_snapshot_clock(ctx.clock_count, every, iterations):
            arrive(ctx)

    return checkpoint
