"""The members of a parameter-server job, the same on every backend.

- :class:`ShardHost` wraps one :class:`~stalesync.ps.server.ServerShard`: it applies each
  worker's clock messages in the order they were sent, serves a read only after the
  reader's earlier clocks, and delivers ESSP pushes to the workers' handles.
- :class:`PSWorker` runs the user's ``worker(ctx)`` with a
  :class:`~stalesync.ps.client.WorkerClient` whose shards are :class:`~.links.ShardLink` s; it
  also takes pushes (another thread) and hands progress events to the driver's polls.
- :class:`Coordinator` is the snapshot barrier; the last worker to arrive makes it dump the
  shards and write the snapshot (it runs on the driver's node: it writes the driver's files).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import JobAbortedError, JobEndedError
from ..faults import Stragglers
from ..persist.snapshot import WorkerState, restore_metrics
from ..ps.client import WorkerClient
from ..ps.clock_policies import make_policy
from ..ps.clock_records import WorkerMetrics
from ..ps.consistency import ConsistencyModel
from ..ps.context import WorkerContext
from ..ps.server import Push, ServerShard
from ..ps.tables import ShardMap, TableSpec
from .backend import Handle, own
from .barrier import SnapshotBarrier
from .links import LocalShardLink, ShardLink, writable
from .restore import assemble_tables, make_checkpoint, make_writer
from .threads import LocalHandle


def all_bsp(models: dict[str, ConsistencyModel]) -> bool:
    """Every table is BSP: the shard applies clocks in worker order (reproducible)."""
    return bool(models) and all(m.kind == "bsp" for m in models.values())


class ShardHost:
    """One shard as a backend member (see the module docstring)."""

    def __init__(self, shard_id: int, num_shards: int, specs: dict[str, TableSpec],
                 models: dict[str, ConsistencyModel], num_workers: int,
                 backup_workers: int = 0) -> None:
        self.shard = ServerShard(shard_id, ShardMap(num_shards), specs, models, num_workers,
                                 self._push, make_policy(num_workers, backup_workers,
                                                         all_bsp=all_bsp(models)))
        self.workers: list[Handle] = []
        # clock messages received per worker: clocks and reads wait for the earlier ones
        self._received = np.zeros(num_workers, dtype=np.int64)
        self._arrivals = threading.Condition()

    def _push(self, worker: int, push: Push) -> None:
        if self.workers:
            self.workers[worker].cast("receive_push", push)

    def set_workers(self, workers: list[Handle]) -> None:
        self.workers = list(workers)

    def restore(self, tables: dict[str, np.ndarray], clocks: np.ndarray) -> None:
        self.shard.load_all(tables)
        self.shard.set_clocks(clocks)  # before any worker runs

    def _wait_for(self, worker: int, seq: int) -> None:
        with self._arrivals:
            while self._received[worker] < seq:
                self._arrivals.wait()

    def clock(self, worker: int, updates: dict, finished: bool, seq: int, step: int
              ) -> dict | None:
        """Apply a clock; the answer is the auto tables' bound schedules (or None)."""
        self._wait_for(worker, seq)
        try:
            return self.shard.clock(worker, updates, finished=finished, step=step)
        finally:
            with self._arrivals:
                self._received[worker] += 1
                self._arrivals.notify_all()

    def read(self, worker: int, table: str, local_rows: np.ndarray, required: int | None,
             clocks_sent: int) -> tuple[np.ndarray, int, float, int]:
        self._wait_for(worker, clocks_sent)  # clocks_sent is the reader's current clock
        return self.shard.read(worker, table, local_rows, required)

    def set_bound(self, table: str, bound: int) -> list[tuple[int, int]]:
        return self.shard.set_bound(table, bound)

    def bounds(self) -> dict | None:
        return self.shard.bounds_view()

    def dump_all(self) -> dict[str, np.ndarray]:
        return self.shard.dump_all()

    def stats(self) -> dict[str, object]:
        return self.shard.stats()

    def abort(self) -> None:
        self.shard.abort()


@dataclass
class WorkerSetup:
    """What a worker member needs from the job config (the config itself holds driver-only
    callables such as progress bars)."""

    num_workers: int
    specs: dict[str, TableSpec]
    models: dict[str, ConsistencyModel]
    num_shards: int
    nan_policy: str
    iterations: int | None
    seed: int
    stragglers: Stragglers | None
    snapshot_every: int | None
    report_clocks: bool = False  # buffer progress events for the driver's polls
    skip_ahead: bool = False  # backup workers: a read moves the clock to the current step
    audit: str = "record"  # the read audit (stalesync.ps.audit)
    fetch_every: int = 1  # client cadence (Downpour): async reads refresh every k clocks
    push_every: int = 1  # ... and increments go out every k clocks


class PSWorker:
    """Runs ``worker_fn(ctx)`` for one worker (see the module docstring)."""

    def __init__(self, worker_id: int, setup: WorkerSetup, shards: list[Handle],
                 coordinator: Handle | None) -> None:
        self.worker_id = worker_id
        self.setup = setup
        self.links = [LocalShardLink(h.member) if isinstance(h, LocalHandle) else ShardLink(h)
                      for h in shards]
        self.coordinator = coordinator
        self.client = WorkerClient(
            worker_id, setup.specs, setup.models, ShardMap(setup.num_shards), self.links,
            WorkerMetrics(worker_id, time.perf_counter()), setup.nan_policy,
            skip_ahead=setup.skip_ahead, fetch_every=setup.fetch_every,
            push_every=setup.push_every, audit=setup.audit,
        )
        self._events: list[tuple[int, int, float | None, dict]] = []
        self._lock = threading.Lock()

    def receive_push(self, push: Push) -> None:
        push.values = writable(push.values)
        self.client.receive_push(push)

    def poll(self) -> list[tuple[int, int, float | None, dict]]:
        """Progress events (worker, iteration, objective, clock record) since the last
        poll."""
        with self._lock:
            events, self._events = self._events, []
        return events

    def _on_clock(self, worker: int, iteration: int, objective: float | None) -> None:
        record = self.client.metrics.records[-1]
        with self._lock:
            self._events.append((worker, iteration, objective, record))

    def _sync_shards(self) -> None:
        for link in self.links:
            link.sync()

    def _arrive(self, ctx: WorkerContext) -> None:
        self._sync_shards()  # the snapshot must see this worker's last clock
        self.coordinator.call("arrive", self.worker_id, ctx.snapshot_state()).result()

    def stop(self) -> None:
        """The job is stopping (another member failed): stop at the next table call."""
        self.client.abort()

    def run(self, worker_fn: Any, data: Any, restore: WorkerState | None,
            wall_start: float) -> tuple[Any, WorkerMetrics]:
        s, w, client = self.setup, self.worker_id, self.client
        data, restore = own(data), own(restore)  # the program may update them in place
        metrics = WorkerMetrics(w, time.perf_counter() - (time.time() - wall_start))
        client.metrics = metrics
        if restore is not None:
            client.clock_count = restore.clock
            restore_metrics(metrics, restore.metrics)
            client.audit.load(metrics.audit)
            if restore.finished:  # it returned before the snapshot: not run again
                if self.coordinator is not None:
                    self.coordinator.call("finish", w, restore).result()
                client.end()
                metrics.clocks = client.clock_count
                return None, metrics
        ctx = WorkerContext(
            client, s.num_workers, data, s.iterations, s.seed,
            s.stragglers.for_worker(w) if s.stragglers else None,
            self._on_clock if s.report_clocks else None,
            restore=restore, checkpoint=make_checkpoint(s, self._arrive),
        )
        try:
            result = worker_fn(ctx)
        except Exception as exc:
            if not isinstance(exc, JobAbortedError | JobEndedError):  # echoes of another's
                exc.add_note(f"stalesync: raised by worker {w} at clock {client.clock_count}")
            raise
        client.finish()
        self._sync_shards()
        metrics.audit = client.audit.state()
        if self.coordinator is not None:
            state = ctx.snapshot_state(finished=True)
            self.coordinator.call("finish", w, state).result()
        client.end()
        metrics.clocks = client.clock_count
        return result, metrics


class Coordinator:
    """The snapshot barrier of a job, as a backend member."""

    def __init__(self, num_workers: int, shards: list[Handle], specs: Mapping[str, TableSpec],
                 snapshot_dir: str, meta: dict[str, Any]) -> None:
        self.shards = shards
        self.specs = dict(specs)
        self.barrier = SnapshotBarrier(num_workers, make_writer(snapshot_dir, meta,
                                                                self._dump_tables))

    def _dump_tables(self) -> dict[str, np.ndarray]:
        futures = [s.call("dump_all") for s in self.shards]
        return assemble_tables(self.specs, [f.result() for f in futures])

    def arrive(self, worker: int, state: WorkerState) -> None:
        self.barrier.arrive(worker, state)

    def finish(self, worker: int, state: WorkerState) -> None:
        self.barrier.finish(worker, state)

    def written(self) -> list[int]:
        return list(self.barrier.written)

    def abort(self) -> None:
        self.barrier.abort()
