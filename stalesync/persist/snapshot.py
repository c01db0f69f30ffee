"""Consistent snapshots of a job: every table plus every worker's state at one clock.

A snapshot at clock ``c`` holds the tables with *exactly* the increments of clocks ``< c``
and, per worker, the state it saved with ``ctx.save_state`` when it completed clock ``c - 1``
(plus its random generator and its metrics so far). The runtimes take it at a barrier: every
worker that reaches a snapshot clock waits until all have, so no increment of a later clock
is in the tables yet. Both runtimes (embedded and Ray) use this module.

Format (never pickle)::

    <root>/snap-<clock:08d>/
        meta.json          format, version, clock, workers, table specs, job settings
        tables.npz         one array per table
        worker-0000.npz    arrays the worker saved (may be empty)
        worker-0000.json   clock, finished, rng state, metrics so far

A snapshot is written into a temporary directory next to its final name, every file is
flushed to disk, and the directory is renamed in one step: a ``snap-*`` directory is always
complete. The newest valid one wins; older ones beyond ``keep`` are removed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, StalesyncError
from .files import atomic_directory, pack_arrays, unpack_arrays, write_json, write_npz

FORMAT = "stalesync-snapshot"
VERSION = 1
_NAME = re.compile(r"^snap-(\d{8,})$")


class SnapshotError(StalesyncError, RuntimeError):
    """A snapshot is missing, unreadable or does not match the job."""


@dataclass
class WorkerState:
    """What one worker needs to restart at ``clock``."""

    clock: int
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    rng_state: dict[str, Any] | None = None
    finished: bool = False
    metrics: dict[str, Any] | None = None


@dataclass
class Snapshot:
    """A loaded snapshot (``path`` is the ``snap-*`` directory)."""

    path: Path
    clock: int
    tables: dict[str, np.ndarray]
    workers: list[WorkerState]
    meta: dict[str, Any]


def validate_state(arrays: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Copy a worker's state into plain numeric arrays, or explain what is wrong."""
    if not isinstance(arrays, Mapping):
        raise ConfigError(f"save_state expects a dict of arrays, got {type(arrays).__name__}")
    out: dict[str, np.ndarray] = {}
    for key, value in arrays.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise ConfigError(f"save_state: key {key!r} must be a Python identifier string")
        arr = np.array(value, copy=True)
        if arr.dtype.kind not in "biufcUS":
            raise ConfigError(
                f"save_state: {key!r} has dtype {arr.dtype}; only numeric, bool or string "
                "arrays can be saved (snapshots never pickle)"
            )
        out[key] = arr
    return out


def metrics_state(metrics: Any, audit: dict[str, Any] | None = None) -> dict[str, Any]:
    """A worker's metrics so far (a :class:`~stalesync.ps.clock_records.WorkerMetrics`) as
    JSON data, so a restored job keeps the history of the clocks before its snapshot."""
    return {
        "records": [dict(r) for r in metrics.records],
        "staleness_counts": np.asarray(metrics.staleness_counts).tolist(),
        "reads_blocked": int(metrics.reads_blocked),
        "bytes_sent": int(metrics.bytes_sent),
        "push_bytes": int(metrics.push_bytes),
        "push_bytes_dense": int(metrics.push_bytes_dense),
        "fetches": int(metrics.fetches),
        "pushes": int(metrics.pushes),
        "evictions": int(metrics.evictions),
        "audit": audit,
    }


def restore_metrics(metrics: Any, state: Mapping[str, Any] | None) -> None:
    """Put the history saved by :func:`metrics_state` back into a fresh WorkerMetrics."""
    if not state:
        return
    metrics.records[:0] = [dict(r) for r in state.get("records", [])]
    counts = np.asarray(state.get("staleness_counts", []), dtype=np.int64)
    if counts.size > metrics.staleness_counts.size:
        grown = np.zeros(counts.size, dtype=np.int64)
        grown[: metrics.staleness_counts.size] = metrics.staleness_counts
        metrics.staleness_counts = grown
    metrics.staleness_counts[: counts.size] += counts
    metrics.reads_blocked += int(state.get("reads_blocked", 0))
    metrics.bytes_sent += int(state.get("bytes_sent", 0))
    metrics.push_bytes += int(state.get("push_bytes", 0))
    metrics.push_bytes_dense += int(state.get("push_bytes_dense", 0))
    metrics.fetches += int(state.get("fetches", 0))
    metrics.pushes += int(state.get("pushes", 0))
    metrics.evictions += int(state.get("evictions", 0))
    metrics.audit = state.get("audit")


# -- writing --------------------------------------------------------------------------------
def snapshot_name(clock: int) -> str:
    return f"snap-{clock:08d}"


def write_snapshot(
    root: str | os.PathLike,
    clock: int,
    tables: Mapping[str, np.ndarray],
    workers: Sequence[WorkerState],
    meta: Mapping[str, Any] | None = None,
    keep: int = 2,
) -> Path:
    """Write a snapshot atomically under ``root`` and return its directory.

    ``keep`` newest snapshots are kept (at least 1), older ones are deleted after the new
    one is in place, so a crash at any moment leaves at least one complete snapshot.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / snapshot_name(clock)
    with atomic_directory(final) as tmp:  # a rerun that reaches the clock again replaces it
        for w, state in enumerate(workers):
            write_worker_state(tmp, w, state)
        write_tables_and_meta(tmp, clock, tables, len(workers), meta)
    prune(root, max(1, keep))
    return final


def write_worker_state(directory: Path, worker: int, state: WorkerState) -> None:
    """Worker ``worker``'s files of a snapshot being written in ``directory`` (a job whose
    workers write their own parts calls this in each, then :func:`write_tables_and_meta`)."""
    write_npz(directory / f"worker-{worker:04d}.npz", state.arrays)
    write_json(directory / f"worker-{worker:04d}.json", {
        "clock": int(state.clock),
        "finished": bool(state.finished),
        "rng_state": state.rng_state,
        "metrics": state.metrics,
    })


def write_tables_and_meta(directory: Path, clock: int, tables: Mapping[str, np.ndarray],
                          workers: int, meta: Mapping[str, Any] | None = None) -> None:
    """The tables and ``meta.json`` of a snapshot in ``directory``, written last: the meta
    file's presence marks the content complete."""
    write_npz(directory / "tables.npz", pack_arrays(tables))  # sparse tables as CSR parts
    info = dict(meta or {})
    info.update(format=FORMAT, version=VERSION, clock=int(clock), workers=int(workers),
                tables=sorted(tables))
    write_json(directory / "meta.json", info)


def prune(root: Path, keep: int) -> None:
    """Remove all but the ``keep`` newest complete snapshots under ``root``."""
    for _, path in list_snapshots(root)[:-keep]:
        shutil.rmtree(path, ignore_errors=True)


class SnapshotDirLock:
    """Exclusive use of a snapshot directory for one run (an advisory ``flock`` on
    ``<dir>/.lock``): a second run pointed at the same directory, in this process or another,
    fails at once instead of mixing its snapshots with the first one's."""

    def __init__(self, root: str | os.PathLike | None) -> None:
        self.root = None if root is None else Path(root)
        self._file: Any = None

    def __enter__(self) -> SnapshotDirLock:
        if self.root is None:
            return self
        import fcntl

        self.root.mkdir(parents=True, exist_ok=True)
        self._file = open(self.root / ".lock", "a+")  # noqa: SIM115 - held until __exit__
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._file.close()
            self._file = None
            raise ConfigError(f"snapshot directory {self.root} is in use by another run; give "
                              "each run its own snapshot directory") from None
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._file is not None:
            self._file.close()  # releases the lock
            self._file = None


# -- finding and reading --------------------------------------------------------------------
def list_snapshots(root: str | os.PathLike) -> list[tuple[int, Path]]:
    """Complete snapshots under ``root`` as (clock, path), oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        m = _NAME.match(child.name)
        if m and (child / "meta.json").is_file():
            found.append((int(m.group(1)), child))
    return sorted(found)


def snapshot_root(path: str | os.PathLike) -> Path:
    """The directory holding ``snap-*`` directories: ``path`` itself, or its parent when
    ``path`` is one snapshot."""
    path = Path(path)
    return path.parent if _NAME.match(path.name) and (path / "meta.json").is_file() else path


def latest_snapshot(root: str | os.PathLike, run_id: str | None = None) -> Path | None:
    """The newest complete snapshot directory under ``root`` (or ``root`` itself if it is
    one), or None when there is none. With ``run_id``, only that run's snapshots count."""
    root = Path(root)
    if (root / "meta.json").is_file() and _NAME.match(root.name):
        return root
    for _, path in reversed(list_snapshots(root)):
        if run_id is None or _run_id(path) == run_id:
            return path
    return None


def _run_id(path: Path) -> str | None:
    try:
        return json.loads((path / "meta.json").read_text(encoding="utf-8")).get("run_id")
    except (OSError, ValueError):
        return None


def load_snapshot(path: str | os.PathLike) -> Snapshot:
    """Read a snapshot directory (or the newest one under a root directory)."""
    found = latest_snapshot(path)
    if found is None:
        raise SnapshotError(f"no complete snapshot in {path} (expected snap-NNNNNNNN/meta.json)")
    try:
        meta = json.loads((found / "meta.json").read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT or meta.get("version") != VERSION:
            raise SnapshotError(f"{found}: not a {FORMAT} v{VERSION} snapshot")
        with np.load(found / "tables.npz", allow_pickle=False) as z:
            tables = unpack_arrays({name: z[name] for name in z.files})
        workers = []
        for w in range(int(meta["workers"])):
            info = json.loads((found / f"worker-{w:04d}.json").read_text(encoding="utf-8"))
            with np.load(found / f"worker-{w:04d}.npz", allow_pickle=False) as z:
                arrays = {name: z[name] for name in z.files}
            workers.append(WorkerState(
                clock=int(info["clock"]), arrays=arrays, rng_state=info.get("rng_state"),
                finished=bool(info.get("finished")), metrics=info.get("metrics"),
            ))
    except (OSError, ValueError, KeyError) as exc:
        raise SnapshotError(f"cannot read snapshot {found}: {exc}") from exc
    return Snapshot(path=found, clock=int(meta["clock"]), tables=tables, workers=workers, meta=meta)


def check_meta(snap: Snapshot, meta: Mapping[str, Any], kind: str, workers: int) -> None:
    """Refuse to resume a ``kind`` (``"pipelined job"``) of ``workers`` workers from a
    snapshot whose meta differs from ``meta`` (JSON values only: lists, not tuples), naming
    every value that differs, or whose worker count differs."""
    saved = {k: snap.meta.get(k) for k in meta}
    this = kind.split()[-1]
    if saved != dict(meta):
        differ = ", ".join(f"{k} {saved[k]!r} (this {this}: {meta[k]!r})" for k in meta
                           if saved[k] != meta[k])
        raise SnapshotError(f"snapshot {snap.path} is not of this {kind}: it has {differ}")
    _check_workers(snap, workers, this)


def _check_workers(snap: Snapshot, workers: int, this: str) -> None:
    if len(snap.workers) != workers:
        raise SnapshotError(
            f"snapshot {snap.path} has {len(snap.workers)} workers, the {this} has {workers}")


def check_compatible(snap: Snapshot, specs: Mapping[str, Any], num_workers: int) -> None:
    """Refuse to resume a job whose tables or worker count differ from the snapshot's."""
    _check_workers(snap, num_workers, "job")
    names = {key.partition("#")[0] for key in snap.tables}  # "#": update-rule state
    if names != set(specs):
        raise SnapshotError(
            f"snapshot {snap.path} has tables {sorted(names)}, the job declares "
            f"{sorted(specs)}"
        )
    for name, spec in specs.items():
        arr = snap.tables[name]
        if arr.shape != (spec.num_rows, spec.row_width) or arr.dtype != spec.np_dtype:
            raise SnapshotError(
                f"snapshot {snap.path}: table {name!r} is {arr.dtype}{list(arr.shape)}, the job "
                f"declares {spec.dtype}[{spec.num_rows}, {spec.row_width}]"
            )
