"""The Ray runtime: server shards and workers as Ray actors, snapshots, automatic recovery.

The same ``worker(ctx)`` function runs unchanged. What runs where:

- **Shard actor** (threaded, ``max_concurrency`` > workers): wraps the one
  :class:`~stalesync.server.ServerShard` implementation. A read that is not yet allowed parks
  on the shard's own ``threading.Condition`` in an actor thread, and a clock arriving on
  another thread releases it. Threads, not asyncio, so the shard logic is not forked.
- **Worker actor** (threaded): runs the user function on one thread with a normal
  :class:`~stalesync.client.WorkerClient`, whose shard handles turn ``read``/``clock`` into
  actor calls. Its other threads accept ESSP pushes from the shards while the user function
  computes (``receive_push`` is thread-safe) and answer the driver's progress polls.
- **Coordinator actor** (on the driver's node): the snapshot barrier
  (:class:`~stalesync.runtime.barrier.SnapshotBarrier`); the last worker to arrive makes it
  dump the shards and write the snapshot with :mod:`stalesync.snapshot`.

Messages: one ``clock`` call per shard per clock carries all of a worker's coalesced
increments; it is sent without waiting and awaited only before this worker's next call to
that shard (a read must see its own writes). Reads of several shards are submitted together
and then awaited. Large arrays travel through Ray's object store.

Recovery: the driver watches the worker calls and pings the shards. When an actor dies
(process killed, node lost), every actor is stopped and recreated, the tables and the workers
are restored from this run's latest snapshot (or the start), and the job continues. A user
error is not retried: it is raised in the caller as on the embedded runtime.
"""

from __future__ import annotations

import copy
import logging
import os
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, RecoveryError, StalesyncError

try:
    import ray
    import ray.exceptions as rex
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ConfigError(
        "runtime='ray' needs Ray: pip install 'stalesync[ray]'"
    ) from exc

from ..client import WorkerClient
from ..consistency import ConsistencyModel
from ..context import WorkerContext
from ..faults import Stragglers
from ..metrics import WorkerMetrics
from ..server import Push, ServerShard
from ..snapshot import WorkerState, latest_snapshot, restore_metrics
from ..tables import ShardMap, TableSpec
from .barrier import SnapshotBarrier
from .local import Outcome
from .restore import (
    assemble_table,
    load_resume,
    make_checkpoint,
    make_writer,
    restore_state,
    snapshot_meta,
    specs_of,
    start_clocks,
    table_slice,
)

log = logging.getLogger("stalesync.ray")

POLL_S = 0.2  # driver: progress / liveness poll period
PING_TIMEOUT_S = 60.0  # an actor that does not answer a ping for this long counts as lost
START_TIMEOUT_S = 120.0  # actors not placed by then: the cluster lacks resources
# infrastructure failures (an actor or node is gone): recoverable
_LOST = (
    rex.RayActorError,
    rex.ObjectLostError,
    rex.NodeDiedError,
    rex.WorkerCrashedError,
    rex.LocalRayletDiedError,
)


class PeerLostError(StalesyncError, RuntimeError):
    """Inside an actor: a shard, worker or the coordinator it called is gone."""


def _get(refs: Any, what: str, timeout: float | None = None) -> Any:
    """``ray.get`` that turns a lost peer into :class:`PeerLostError` and a remote exception
    into the original one."""
    try:
        return ray.get(refs, timeout=timeout)
    except rex.RayTaskError as exc:
        cause = exc.cause
        if isinstance(cause, _LOST):
            raise PeerLostError(f"{what}: {cause}") from cause
        if isinstance(cause, BaseException):
            raise cause from None  # the worker's own error, as on the embedded runtime
        raise
    except _LOST as exc:
        raise PeerLostError(f"{what}: {exc}") from exc


def _writable(values: np.ndarray) -> np.ndarray:
    """Arrays from the object store are read-only views; the client adds to them."""
    return values if values.flags.writeable else values.copy()


# -- what the client sees as a shard --------------------------------------------------------
class _Reply:
    """A read in flight: unpacking it waits for the shard (so several can be in flight)."""

    __slots__ = ("ref",)

    def __init__(self, ref: Any) -> None:
        self.ref = ref

    def __iter__(self):
        # values may be a read-only view of the object store; the client copies before adding
        return iter(_get(self.ref, "shard read"))


class ShardHandle:
    """Stands in for a ServerShard in a worker's client; every method is one actor call.

    Clocks are sent without waiting. A read carries how many clocks this worker has sent,
    and the shard serves it only once it applied that many (read-my-writes), so a read right
    after a clock costs no extra round trip."""

    MAX_IN_FLIGHT = 2

    def __init__(self, actor: Any) -> None:
        self.actor = actor
        self.sent = 0
        self._in_flight: list[Any] = []

    def clock(self, worker: int, updates: Mapping, finished: bool = False) -> None:
        ref = self.actor.clock.remote(worker, dict(updates), finished, self.sent)
        self._in_flight.append(ref)
        self.sent += 1
        self._collect(wait=len(self._in_flight) > self.MAX_IN_FLIGHT)

    def _collect(self, wait: bool) -> None:
        """Release finished clock calls (raising their errors); all of them if ``wait``."""
        if not self._in_flight:
            return
        if wait:
            done, self._in_flight = self._in_flight, []
        else:
            done, self._in_flight = ray.wait(
                self._in_flight, num_returns=len(self._in_flight), timeout=0
            )
        if done:
            _get(done, "shard clock")

    def sync(self) -> None:
        """Wait until the shard applied every clock sent so far."""
        self._collect(wait=True)

    def read(self, worker: int, table: str, local_rows: np.ndarray, required: int | None):
        return _Reply(self.actor.read.remote(worker, table, local_rows, required, self.sent))


# -- actors ---------------------------------------------------------------------------------
class ShardActor:
    """One :class:`ServerShard` in a threaded actor; pushes go to the worker actors."""

    def __init__(
        self,
        shard_id: int,
        num_shards: int,
        specs: dict[str, TableSpec],
        models: dict[str, ConsistencyModel],
        num_workers: int,
    ) -> None:
        self.workers: list[Any] = []
        self.shard = ServerShard(
            shard_id, ShardMap(num_shards), specs, models, num_workers, self._push
        )
        # clock messages received per worker (this incarnation): reads wait for their own
        self._received = np.zeros(num_workers, dtype=np.int64)
        self._arrivals = threading.Condition()

    def _push(self, worker: int, push: Push) -> None:
        if self.workers:
            self.workers[worker].receive_push.remote(push)  # fire and forget

    def set_workers(self, workers: list[Any]) -> None:
        self.workers = list(workers)

    def restore(self, tables: dict[str, np.ndarray], clocks: np.ndarray) -> None:
        for name, values in tables.items():
            self.shard.load(name, values)
        self.shard.worker_clocks[:] = clocks  # before any worker runs

    def clock(self, worker: int, updates: dict, finished: bool, seq: int = 0) -> None:
        """Apply a worker's clocks in the order it sent them: a threaded actor may start the
        calls in any order, and the shard's clock counting assumes order."""
        with self._arrivals:
            while self._received[worker] < seq:
                self._arrivals.wait()
        try:
            self.shard.clock(worker, updates, finished=finished)
        finally:
            with self._arrivals:
                self._received[worker] += 1
                self._arrivals.notify_all()

    def read(self, worker: int, table: str, local_rows: np.ndarray, required: int | None,
             clocks_sent: int = 0):
        with self._arrivals:  # calls of a threaded actor may run out of order
            while self._received[worker] < clocks_sent:
                self._arrivals.wait()
        return self.shard.read(worker, table, local_rows, required)

    def dump_all(self) -> dict[str, np.ndarray]:
        return {name: self.shard.dump(name) for name in self.shard.stores}

    def ping(self) -> str:
        return ray.get_runtime_context().get_node_id()


@dataclass
class WorkerSetup:
    """What a worker actor needs from the job config (the config itself holds driver-only
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
    report_clocks: bool


class WorkerActor:
    """Runs ``worker_fn(ctx)`` on one thread; other threads take pushes and polls."""

    def __init__(self, worker_id: int, setup: WorkerSetup, shards: list[Any], coordinator: Any):
        self.worker_id = worker_id
        self.setup = setup
        self.handles = [ShardHandle(a) for a in shards]
        self.coordinator = coordinator
        self.client = WorkerClient(
            worker_id, setup.specs, setup.models, ShardMap(setup.num_shards), self.handles,
            WorkerMetrics(worker_id, time.perf_counter()), setup.nan_policy,
        )
        self._events: list[tuple[int, int, float | None]] = []
        self._lock = threading.Lock()

    def receive_push(self, push: Push) -> None:
        push.values = _writable(push.values)
        self.client.receive_push(push)

    def poll(self) -> list[tuple[int, int, float | None]]:
        with self._lock:
            events, self._events = self._events, []
        return events

    def ping(self) -> str:
        return ray.get_runtime_context().get_node_id()

    def _on_clock(self, worker: int, iteration: int, objective: float | None) -> None:
        with self._lock:
            self._events.append((worker, iteration, objective))

    def _sync_shards(self) -> None:
        for handle in self.handles:
            handle.sync()

    def _arrive(self, ctx: WorkerContext) -> None:
        self._sync_shards()  # the snapshot must see this worker's last clock
        _get(self.coordinator.arrive.remote(self.worker_id, ctx.snapshot_state()), "barrier")

    def run(self, worker_fn: Any, data: Any, restore: WorkerState | None, wall_start: float):
        s, w, client = self.setup, self.worker_id, self.client
        # arrays from the object store are read-only; the user's function owns its partition
        # (e.g. LDA updates its topic assignments in place), as on the embedded runtime
        data, restore = copy.deepcopy(data), copy.deepcopy(restore)
        metrics = WorkerMetrics(w, time.perf_counter() - (time.time() - wall_start))
        client.metrics = metrics
        if restore is not None:
            client.clock_count = restore.clock
            restore_metrics(metrics, restore.metrics)
        ctx = WorkerContext(
            client, s.num_workers, data, s.iterations, s.seed,
            s.stragglers.for_worker(w) if s.stragglers else None,
            self._on_clock if s.report_clocks else None,
            restore=restore,
            checkpoint=make_checkpoint(s, self._arrive),
        )
        result = worker_fn(ctx)
        client.finish()
        self._sync_shards()
        if self.coordinator is not None:
            state = ctx.snapshot_state(finished=True)
            _get(self.coordinator.finish.remote(w, state), "barrier")
        client.end()
        return result, metrics


class CoordinatorActor:
    """The snapshot barrier; writes snapshots from the driver's node."""

    def __init__(self, num_workers: int, shards: list[Any], specs: dict[str, TableSpec],
                 snapshot_dir: str, meta: dict[str, Any]) -> None:
        self.shards = shards
        self.specs = specs
        writer = make_writer(snapshot_dir, meta, self._dump_tables)
        self.barrier = SnapshotBarrier(num_workers, writer)

    def _dump_tables(self) -> dict[str, np.ndarray]:
        parts = _get([s.dump_all.remote() for s in self.shards], "snapshot dump")
        n = len(self.shards)
        return {
            name: assemble_table(spec, {i: p[name] for i, p in enumerate(parts)}, n)
            for name, spec in self.specs.items()
        }

    def arrive(self, worker: int, state: WorkerState) -> None:
        self.barrier.arrive(worker, state)

    def finish(self, worker: int, state: WorkerState) -> None:
        self.barrier.finish(worker, state)

    def written(self) -> list[int]:
        return list(self.barrier.written)

    def ping(self) -> str:
        return ray.get_runtime_context().get_node_id()


# -- the driver -----------------------------------------------------------------------------
class _Lost(Exception):
    """An actor of this attempt is gone (recoverable)."""


@dataclass
class _Actors:
    shards: list[Any]
    workers: list[Any]
    coordinator: Any | None

    def all(self) -> list[Any]:
        extra = [self.coordinator] if self.coordinator is not None else []
        return [*self.shards, *self.workers, *extra]


class RayRuntime:
    """Runs a job on Ray; see the module docstring. ``RayRuntime.active`` is the runtime
    currently running in this driver process (tests use it to kill actors)."""

    active: RayRuntime | None = None

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
        self.actors: _Actors | None = None
        self.recovered_from: list[int] = []
        self.failures_detected_at: list[float] = []  # time.time() when each loss was seen

    # -- connection -------------------------------------------------------------------
    def _connect(self) -> bool:
        """Connect to ``address`` or start a loopback-only local Ray; True if we own it."""
        if ray.is_initialized():
            return False
        common = {"include_dashboard": False, "logging_level": logging.WARNING}
        if self.config.address:
            ray.init(address=self.config.address, **common)
        else:
            ray.init(
                num_cpus=max(os.cpu_count() or 1, self.config.workers),
                _node_ip_address="127.0.0.1",
                **common,
            )
        return True

    def run(self, worker_fn: Any, data: Sequence[Any] | None) -> Outcome:
        owned = self._connect()
        RayRuntime.active = self
        try:
            return self._run(worker_fn, data)
        finally:
            RayRuntime.active = None
            if self.actors is not None:
                self._kill(self.actors)
            if owned:
                ray.shutdown()

    # -- attempts and recovery --------------------------------------------------------
    def _run(self, worker_fn: Any, data: Sequence[Any] | None) -> Outcome:
        cfg = self.config
        fn_ref = ray.put(worker_fn)
        data_refs = [ray.put(d) for d in data] if data is not None else [None] * cfg.workers
        wall_start = time.time()
        snap = self.resume
        while True:
            try:
                self.actors = self._start(snap)
                return self._drive(self.actors, fn_ref, data_refs, snap, wall_start)
            except _Lost as lost:
                self._kill(self.actors)
                self.actors = None
                snap = self._recovery_point(lost)

    def _recovery_point(self, lost: _Lost):
        cfg = self.config
        self.failures_detected_at.append(time.time())
        if not cfg.snapshot_every:
            raise RecoveryError(
                f"{lost}; snapshots are off, so the job cannot be restored: set "
                "snapshot_every and snapshot_dir (CLI: --snapshot-every, --snapshot-dir)"
            ) from lost.__cause__
        if len(self.recovered_from) >= cfg.max_recoveries:
            raise RecoveryError(
                f"{lost}; giving up after {cfg.max_recoveries} recoveries. The latest "
                f"snapshot in {self.snapshot_dir} is intact: fix the cause and resume "
                f"with resume={self.snapshot_dir!r}"
            ) from lost.__cause__
        path = latest_snapshot(self.snapshot_dir, run_id=self.run_id)
        snap = load_resume(self.config, path) if path is not None else self.resume
        clock = 0 if snap is None else snap.clock
        self.recovered_from.append(clock)
        log.warning("stalesync: %s; restarting every actor from clock %d", lost, clock)
        return snap

    # -- actors -----------------------------------------------------------------------
    def _options(self, role: str, **defaults: Any) -> dict[str, Any]:
        opts = dict(defaults)
        opts.update((self.config.ray_options or {}).get(role, {}))
        return opts

    def _start(self, snap) -> _Actors:
        cfg, n = self.config, self.config.workers
        shard_cls = ray.remote(ShardActor).options(
            **self._options("shard", num_cpus=0, max_concurrency=4 * n + 8,
                            scheduling_strategy="SPREAD"))
        shards = [shard_cls.remote(i, cfg.shards, self.specs, self.models, n)
                  for i in range(cfg.shards)]
        coordinator = None
        if cfg.snapshot_every:
            here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), False)
            coord_cls = ray.remote(CoordinatorActor).options(
                **self._options("coordinator", num_cpus=0, max_concurrency=n + 8,
                                scheduling_strategy=here))
            meta = snapshot_meta(cfg, self.run_id)
            coordinator = coord_cls.remote(n, shards, self.specs, self.snapshot_dir, meta)
        setup = WorkerSetup(
            num_workers=n, specs=self.specs, models=self.models, num_shards=cfg.shards,
            nan_policy=cfg.nan_policy, iterations=cfg.iterations, seed=cfg.seed,
            stragglers=cfg.stragglers, snapshot_every=cfg.snapshot_every,
            report_clocks=cfg.on_clock is not None,
        )
        worker_cls = ray.remote(WorkerActor).options(
            **self._options("worker", num_cpus=1, max_concurrency=cfg.shards + 8,
                            scheduling_strategy="SPREAD"))
        workers = [worker_cls.remote(w, setup, shards, coordinator) for w in range(n)]
        actors = _Actors(shards, workers, coordinator)
        self.actors = actors
        self._restore(actors, snap)
        return actors

    def _restore(self, actors: _Actors, snap) -> None:
        """Wait until every actor is up, then load tables and clocks into the shards."""
        try:
            _get([a.ping.remote() for a in actors.all()], "actor start", START_TIMEOUT_S)
        except rex.GetTimeoutError:
            raise RecoveryError(
                f"Ray could not place the job's actors within {START_TIMEOUT_S:.0f} s: the "
                "cluster lacks the CPUs or custom resources they ask for (see ray_options)"
            ) from None
        except PeerLostError as exc:
            raise _Lost(f"an actor died while starting: {exc}") from exc
        tables = snap.tables if snap is not None else {
            name: np.asarray(v, dtype=self.specs[name].np_dtype)
            for name, v in self.config.initial_tables.items()
        }
        clocks = start_clocks(snap, self.config.workers)
        refs = [
            shard.restore.remote(
                {name: table_slice(v, i, self.shard_map) for name, v in tables.items()}, clocks
            )
            for i, shard in enumerate(actors.shards)
        ]
        refs += [shard.set_workers.remote(actors.workers) for shard in actors.shards]
        try:
            _get(refs, "shard restore")
        except PeerLostError as exc:
            raise _Lost(f"a shard died while restoring: {exc}") from exc

    def _kill(self, actors: _Actors | None) -> None:
        for actor in actors.all() if actors is not None else []:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                pass

    # -- one attempt ------------------------------------------------------------------
    def _drive(self, actors: _Actors, fn_ref, data_refs, snap, wall_start: float) -> Outcome:
        cfg = self.config
        results: list[Any] = [None] * cfg.workers
        metrics: list[WorkerMetrics | None] = [None] * cfg.workers
        pending = {}
        for w, actor in enumerate(actors.workers):
            state = restore_state(snap, w)
            if state is not None and state.finished:  # returned before the snapshot
                metrics[w] = WorkerMetrics(w, time.perf_counter())
                restore_metrics(metrics[w], state.metrics)
                if actors.coordinator is not None:
                    actors.coordinator.finish.remote(w, state)
                continue
            pending[actor.run.remote(fn_ref, data_refs[w], state, wall_start)] = w
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=POLL_S)
            done = [pending.pop(ref) for ref in ready]
            for ref, w in zip(ready, done, strict=True):
                results[w], metrics[w] = self._worker_outcome(ref, w)
            # a worker that just returned still holds its last progress events
            self._poll(actors, [actors.workers[w] for w in [*pending.values(), *done]])
        tables = self._final_tables(actors)
        extra: dict[str, Any] = {"recoveries": len(self.recovered_from)}
        if self.recovered_from:
            extra["recovered_from_clock"] = list(self.recovered_from)
        if self.resume is not None:
            extra["resumed_from_clock"] = self.resume.clock
        return Outcome(metrics=metrics, tables=tables, results=results, extra=extra)

    def _worker_outcome(self, ref: Any, w: int) -> tuple[Any, WorkerMetrics]:
        try:
            result, metrics = _get(ref, f"worker {w}")
            return copy.deepcopy(result), metrics  # writable, as on the embedded runtime
        except PeerLostError as exc:
            raise _Lost(f"worker {w} lost a peer or died ({exc.__cause__ or exc})") from exc

    def _poll(self, actors: _Actors, running: list[Any]) -> None:
        """Forward progress events to ``on_clock`` and check that shards are alive."""
        checks = [a.ping.remote() for a in actors.shards]
        if actors.coordinator is not None:
            checks.append(actors.coordinator.ping.remote())
        polls = [a.poll.remote() for a in running] if self.config.on_clock else []
        try:
            answers = _get(polls + checks, "liveness poll", PING_TIMEOUT_S)
        except rex.GetTimeoutError:
            raise _Lost(f"an actor did not answer for {PING_TIMEOUT_S:.0f} s") from None
        except PeerLostError as exc:
            raise _Lost(str(exc)) from exc
        for events in answers[: len(polls)]:
            for worker, iteration, objective in events:
                self.config.on_clock(worker, iteration, objective)

    def _final_tables(self, actors: _Actors) -> dict[str, np.ndarray]:
        try:
            parts = _get([s.dump_all.remote() for s in actors.shards], "final dump")
        except PeerLostError as exc:
            raise _Lost(str(exc)) from exc
        n = len(actors.shards)
        return {
            name: assemble_table(spec, {i: p[name] for i, p in enumerate(parts)}, n)
            for name, spec in self.specs.items()
        }

    # -- for tests and tools ------------------------------------------------------------
    def worker_actors(self) -> list[Any]:
        return list(self.actors.workers) if self.actors else []

    def shard_actors(self) -> list[Any]:
        return list(self.actors.shards) if self.actors else []
