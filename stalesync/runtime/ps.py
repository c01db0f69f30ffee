"""Running a parameter-server job on a backend: start the members, drive, recover.

One attempt hosts the shards (:class:`~.members.ShardHost`), the snapshot coordinator (when
snapshots are on) and the workers (:class:`~.members.PSWorker`) on the job's backend, loads
the tables and clocks (initial values or a snapshot), runs every worker's program with
``workers.map("run", ...)`` while polling progress and liveness, and dumps the final tables.

If a worker's program raises, every shard and the barrier are aborted (parked reads wake and
raise), every other worker stops at its next table call, and the first real error is
re-raised in the caller. If a member is lost (Ray: an actor or node died), every member is
stopped and the job restarts from this run's newest snapshot, up to ``max_recoveries``
times (:mod:`.recovery`).
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..persist.snapshot import Snapshot, SnapshotDirLock, latest_snapshot
from ..ps.auto_staleness import StalenessController
from ..ps.clock_records import WorkerMetrics
from ..ps.tables import ShardMap
from .backend import Backend, Group, WorkerLostError
from .backends import make_backend
from .members import Coordinator, PSWorker, ShardHost, WorkerSetup
from .recovery import Recovery, Regroup
from .restore import (
    as_table,
    assemble_tables,
    load_resume,
    restore_state,
    snapshot_meta,
    specs_of,
    start_clocks,
    table_slice,
)

PING_TIMEOUT_S = 60.0  # a member that does not answer a ping for this long counts as lost
SPREAD_CHECK_S = 2.0  # how often a job with snapshots looks for nodes that joined


@dataclass
class Outcome:
    metrics: list[WorkerMetrics]
    tables: dict[str, np.ndarray]
    results: list[Any]
    extra: dict[str, Any] = field(default_factory=dict)  # run-record fields of the runtime


@dataclass
class _Groups:
    shards: Group
    workers: Group
    coordinator: Group | None

    def all(self) -> list[Group]:
        return [g for g in (self.workers, self.coordinator, self.shards) if g is not None]

    def kill(self) -> None:
        for group in self.all():
            group.kill()


class ParameterServer:
    """Runs a job (:class:`~stalesync.job.JobConfig`) on its backend.
    ``ParameterServer.active`` is the job running in this driver process (tests use it to
    kill members)."""

    active: ClassVar[ParameterServer | None] = None

    def __init__(self, config: Any) -> None:
        self.config = config
        self.specs = specs_of(config)
        self.models = config.table_models()
        self.shard_map = ShardMap(config.shards)
        self.run_id = uuid.uuid4().hex
        self.snapshot_dir = (
            str(Path(config.snapshot_dir).resolve()) if config.snapshot_dir else None
        )
        self.resume = load_resume(config)
        self.recovery = Recovery(config.max_recoveries, bool(config.snapshot_every),
                                 self.snapshot_dir)
        self.groups: _Groups | None = None
        self.membership: list[dict[str, Any]] = []  # per attempt: from which clock, where
        self._spread_checked = 0.0
        self._regroup_after: int | None = None  # snapshots written when a node was seen
        self.auto_tables = [name for name, m in self.models.items() if m.auto]
        self.controller = None
        if self.auto_tables:
            first = self.models[self.auto_tables[0]]
            self.controller = StalenessController(config.workers, first.staleness,
                                                  first.max_staleness)

    # -- for tests and tools --------------------------------------------------------------
    def worker_actors(self) -> list[Any]:
        return list(getattr(self.groups.workers, "actors", [])) if self.groups else []

    def shard_actors(self) -> list[Any]:
        return list(getattr(self.groups.shards, "actors", [])) if self.groups else []

    # -- the job --------------------------------------------------------------------------
    def run(self, worker_fn: Any, data: Any) -> Outcome:
        cfg = self.config
        backend = make_backend(cfg.runtime, address=cfg.address, ray_options=cfg.ray_options,
                               cpus=max(os.cpu_count() or 1, cfg.workers),
                               min_nodes=cfg.min_nodes)
        with backend, SnapshotDirLock(self.snapshot_dir):
            ParameterServer.active = self
            try:
                fn = backend.share(worker_fn)
                parts = [backend.share(d) for d in data] if data is not None else None
                wall_start = time.time()
                snap = self.resume
                reason = "start" if snap is None else "resume"
                while True:
                    try:
                        return self._attempt(backend, fn, parts, snap, wall_start, reason)
                    except Regroup:
                        snap, reason = self._newest_snapshot(), "node joined"
                    except WorkerLostError as lost:
                        self.recovery.allow(lost)
                        snap, reason = self._recovery_point(), "member lost"
            finally:
                ParameterServer.active = None

    def _newest_snapshot(self) -> Snapshot | None:
        path = latest_snapshot(self.snapshot_dir, run_id=self.run_id)
        return load_resume(self.config, path) if path is not None else self.resume

    def _recovery_point(self) -> Snapshot | None:
        snap = self._newest_snapshot()
        self.recovery.restarted(0 if snap is None else snap.clock)
        return snap

    def _attempt(self, backend: Backend, fn: Any, parts: list[Any] | None,
                 snap: Snapshot | None, wall_start: float, reason: str) -> Outcome:
        try:
            self.groups = self._start(backend, snap)
            nodes = self.groups.workers.nodes()
            if nodes is not None:
                self.membership.append({
                    "from_clock": 0 if snap is None else snap.clock, "reason": reason,
                    "nodes": len(set(nodes)), "worker_nodes": [n[:12] for n in nodes]})
            self._regroup_after = None
            return self._drive(self.groups, fn, parts, snap, wall_start)
        finally:
            if self.groups is not None:
                self.groups.kill()
            self.groups = None

    def _start(self, backend: Backend, snap: Snapshot | None) -> _Groups:
        cfg, n, n_shards = self.config, self.config.workers, self.config.shards
        shards = backend.host(
            "shard", [partial(ShardHost, i, n_shards, self.specs, self.models, n,
                              cfg.backup_workers) for i in range(n_shards)],
            cpus=0, concurrency=4 * n + 8)
        groups = _Groups(shards, None, None)  # type: ignore[arg-type]
        self.groups = groups  # killed by the caller even if a later start fails
        if cfg.snapshot_every:
            meta = snapshot_meta(cfg, self.run_id)
            groups.coordinator = backend.host(
                "coordinator", [partial(Coordinator, n, shards.handles, self.specs,
                                        self.snapshot_dir, meta)],
                cpus=0, concurrency=n + 8, near_driver=True)
        coordinator = groups.coordinator.handles[0] if groups.coordinator else None
        setup = WorkerSetup(
            num_workers=n, specs=self.specs, models=self.models, num_shards=n_shards,
            nan_policy=cfg.nan_policy, iterations=cfg.iterations, seed=cfg.seed,
            stragglers=cfg.stragglers, snapshot_every=cfg.snapshot_every,
            report_clocks=(cfg.on_clock is not None or cfg.on_record is not None
                           or self.controller is not None),
            skip_ahead=bool(cfg.backup_workers), fetch_every=cfg.fetch_every,
            push_every=cfg.push_every, audit=cfg.audit,
        )
        groups.workers = backend.host(
            "worker", [partial(PSWorker, w, setup, shards.handles, coordinator)
                       for w in range(n)],
            cpus=1, concurrency=n_shards + 8, workers=True)
        self._restore(groups, snap)
        return groups

    def _restore(self, groups: _Groups, snap: Snapshot | None) -> None:
        """Load tables and clocks into the shards; connect the shards' pushes."""
        if snap is not None:
            tables = snap.tables
        else:
            tables = {name: as_table(v, self.specs[name])
                      for name, v in self.config.initial_tables.items()}
        clocks = start_clocks(snap, self.config.workers)
        shards = groups.shards
        shards.map("restore", [
            ({name: table_slice(v, i, self.shard_map) for name, v in tables.items()}, clocks)
            for i in range(len(shards))
        ])
        shards.map("set_workers", [(groups.workers.handles,)] * len(shards))

    def _drive(self, groups: _Groups, fn: Any, parts: list[Any] | None,
               snap: Snapshot | None, wall_start: float) -> Outcome:
        n = self.config.workers
        args = [(fn, None if parts is None else parts[w], restore_state(snap, w), wall_start)
                for w in range(n)]
        runs = groups.workers.map("run", args, poll=lambda: self._poll(groups),
                                  on_error=lambda: self._abort(groups))
        dumped = assemble_tables(self.specs, groups.shards.map("dump_all"))
        tables = {name: dumped[name] for name in self.specs}
        results = [r for r, _ in runs]
        metrics = [m for _, m in runs]
        extra: dict[str, Any] = self.recovery.record()
        if self.membership:
            extra["membership"] = self.membership
        if self.resume is not None:
            extra["resumed_from_clock"] = self.resume.clock
        if groups.coordinator is not None:
            extra["snapshots_written"] = groups.coordinator.map("written")[0]
        if self.config.backup_workers:
            extra["backup"] = self._backup_stats(groups.shards.map("stats"))
        if self.controller is not None:
            extra["staleness_auto"] = self._auto_record(groups.shards.handles[0])
        return Outcome(metrics=metrics, tables=tables, results=results, extra=extra)

    def _auto_record(self, shard0: Any) -> dict[str, Any]:
        """What staleness="auto" did: the ceiling, each table's schedule (clock -> bound)
        and the controller's decisions over wall time."""
        schedules = shard0.call("bounds").result(PING_TIMEOUT_S) or {}
        c = self.controller
        return {"max_staleness": c.max_staleness, "window_clocks": c.window,
                "raise_at_blocked_share": c.raise_at, "lower_at_blocked_share": c.lower_at,
                "cooldown_windows": c.cooldown,
                "schedules": {t: [list(x) for x in s] for t, s in schedules.items()},
                "timeline": [[round(t, 4), b] for t, b in c.timeline]}

    @staticmethod
    def _backup_stats(stats: list[dict[str, Any]]) -> dict[str, Any]:
        """Synchronous steps with backup workers: per shard, the steps applied, the
        gradients each worker had used and dropped, and which workers each step used."""
        return {"shards": stats,
                "dropped_gradients": int(sum(sum(s["dropped"]) for s in stats))}

    def _poll(self, groups: _Groups) -> None:
        """Forward progress events to ``on_clock``; check that the members are alive and
        whether a node joined."""
        for group in (groups.shards, groups.coordinator):
            if group is not None:
                group.ping(PING_TIMEOUT_S)
        if groups.coordinator is not None:
            self._maybe_regroup(groups)
        on_clock, on_record = self.config.on_clock, self.config.on_record
        if on_clock is None and on_record is None and self.controller is None:
            return
        futures = [h.call("poll") for h in groups.workers.handles]
        for future in futures:
            for worker, iteration, objective, record in future.result(PING_TIMEOUT_S):
                if on_clock is not None:
                    on_clock(worker, iteration, objective)
                if on_record is not None:
                    on_record(record)
                if self.controller is not None:
                    self.controller.on_record(record)
        if self.controller is not None:
            bound = self.controller.decide()
            if bound is not None:
                self._set_bound(groups, bound)

    def _maybe_regroup(self, groups: _Groups) -> None:
        """Elastic growth: once a node the workers could use has joined, stop right after
        the next snapshot and place the members again from it (:class:`Regroup`). A lost
        node needs nothing here: recovery places the members on the nodes that are left."""
        if self._regroup_after is None:
            now = time.monotonic()
            if now - self._spread_checked < SPREAD_CHECK_S:
                return
            self._spread_checked = now
            if groups.workers.could_spread():
                self._regroup_after = len(groups.coordinator.map("written")[0])
        elif len(groups.coordinator.map("written")[0]) > self._regroup_after:
            self._abort(groups)
            raise Regroup("a node joined: placing the members again from the snapshot")

    def _set_bound(self, groups: _Groups, bound: int) -> None:
        """staleness="auto": shard 0 schedules the new bound (the workers learn it from
        their clock answers; the other shards serve each read the stamp it asks for)."""
        first = groups.shards.handles[0]
        for table in self.auto_tables:
            first.call("set_bound", table, bound).result(PING_TIMEOUT_S)

    def _abort(self, groups: _Groups) -> None:
        """A worker failed: wake every parked read and barrier, stop every other worker."""
        for handle in groups.workers.handles:
            handle.cast("stop")
        for group in (groups.shards, groups.coordinator):
            for handle in group.handles if group is not None else []:
                handle.cast("abort")
