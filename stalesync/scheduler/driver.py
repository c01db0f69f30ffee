"""The scheduler driver: runs schedule -> push -> pull rounds on a backend's workers.

An app (:class:`ModelParallelApp`) supplies, as in STRADS:

* ``push(shard, task) -> partial``: a partial update for the round's variables computed on
  one data shard (for Lasso: ``X_J^T r`` over the shard's rows);
* ``pull(plan, partials) -> changes``: combine the partials of all shards into new values
  (the app owns the model), returning each variable's change (for priorities);
* ``sync(shard, plan, changes)``: fold a finished round's changes into a shard's local
  state (for Lasso: ``r -= delta_j X_j``). It runs on the worker just before the next
  round's ``push``, so there is one hand-off per round. ``sync_push(shard, plan, changes,
  task)`` may do both in one call (one compiled kernel, one GIL release instead of two).

``push``/``sync`` run on the workers, ``pull`` on the driver. On a remote backend (Ray)
only ``app.program`` travels to the workers (default: the app itself), so an app whose
``pull`` side holds big arrays gives its workers a small stateless program. Optional hooks,
each a protocol of its own (:class:`PreparesTasks`, :class:`ObservesRounds`,
:class:`ShardStates`, :class:`ModelState`, :class:`FusesSyncPush`, :class:`CarriesProgram`):
``app.prepare(plan) -> tasks`` turns a plan's tasks into what ``push`` receives (e.g. block
rotation attaches the item blocks), ``app.observe(plan, feedback)`` sees each round's
per-worker times, ``program.state(shard)`` / ``program.load_state(shard,
state)`` (checkpoints), ``app.state()`` / ``app.load_state(arrays)`` (snapshots on disk).

**Pipelining.** The driver releases the workers into round t, asks the schedule for round
t+1 while they compute, then waits for round t, runs ``pull`` and feeds the changes back to
the schedule. The schedule's view is one round late, as in STRADS.

**Load balancing.** On the embedded backend the data shards are shared memory, so for
shared plans (every worker works on the same variables over its own data) workers
*self-schedule*: each takes the next unprocessed shard from a shared counter, and a slow
worker processes fewer. On Ray a shard lives on one worker (``i % workers``). Per-worker
plans (``plan.tasks``) give shard ``w`` to worker ``w``; each worker's compute time goes
back to the schedule in :class:`~.base.Feedback`.

**Recovery.** On a remote backend the driver keeps a log of every call that changed the
shards since its last checkpoint (the shards' states, gathered every ``checkpoint_every``
rounds). When a worker is lost, every worker is rebuilt from its data, the checkpoint is
loaded and the log replayed, and the round is retried: the run continues exactly as if
nothing had happened. ``snapshot_dir`` also writes each checkpoint to disk (npz + JSON)
with the app's model and the schedule's state, for ``resume``.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from ..errors import ConfigError
from ..faults import Stragglers, WorkerDelay
from ..persist.snapshot import SnapshotDirLock
from ..runtime.address import check_min_nodes
from ..runtime.backend import Backend, WorkerLostError
from ..runtime.backends import make_backend
from ..runtime.recovery import Recovery
from .base import Feedback, Plan, Schedule
from .checkpoint import DriverCheckpoint, load_driver_snapshot, write_driver_snapshot

DEFAULT_CHECKPOINT_ROUNDS = 200  # remote backends: rounds between in-memory checkpoints


class ModelParallelApp(Protocol):
    """What an app gives the scheduler (see the module docstring and docs/scheduler.md).
    Its optional hooks are the protocols below; the driver uses a hook where the app (or
    its worker-side ``program``) has it."""

    def push(self, shard: Any, task: Any) -> Any: ...

    def pull(self, plan: Plan, partials: list[Any]) -> np.ndarray | None: ...

    def sync(self, shard: Any, plan: Plan, changes: np.ndarray | None) -> None: ...


@runtime_checkable
class CarriesProgram(Protocol):
    """An app whose workers need only ``program`` (its push/sync side), not the app."""

    program: Any


@runtime_checkable
class FusesSyncPush(Protocol):
    """A program that syncs the last round and pushes this one in one call."""

    def sync_push(self, shard: Any, plan: Plan, changes: Any, task: Any) -> Any: ...


@runtime_checkable
class ShardStates(Protocol):
    """A program whose shards' states can be checkpointed (recovery, snapshots)."""

    def state(self, shard: Any) -> dict[str, np.ndarray]: ...

    def load_state(self, shard: Any, state: dict[str, np.ndarray]) -> None: ...


@runtime_checkable
class ModelState(Protocol):
    """An app whose model goes into snapshots on disk."""

    def state(self) -> dict[str, np.ndarray]: ...

    def load_state(self, state: dict[str, np.ndarray]) -> None: ...


@runtime_checkable
class PreparesTasks(Protocol):
    """An app that turns a plan's tasks into what ``push`` receives."""

    def prepare(self, plan: Plan) -> Sequence[Any] | None: ...


@runtime_checkable
class ObservesRounds(Protocol):
    """An app that sees each round's feedback (changes, per-worker times)."""

    def observe(self, plan: Plan, feedback: Feedback) -> None: ...


@dataclass
class DriverStats:
    """Counters of a driver: rounds, variable updates, per-worker time and shard counts."""

    workers: int
    rounds: int = 0
    updates: int = 0
    bytes_pushed: int = 0  # partials sent to pull (numpy partials only)
    busy_s: np.ndarray = field(default=None)  # type: ignore[assignment]
    wait_s: np.ndarray = field(default=None)  # type: ignore[assignment]
    shards_done: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.busy_s = np.zeros(self.workers) if self.busy_s is None else self.busy_s
        self.wait_s = np.zeros(self.workers) if self.wait_s is None else self.wait_s
        if self.shards_done is None:
            self.shards_done = np.zeros(self.workers, dtype=np.int64)

    def to_json(self) -> dict[str, Any]:
        return {"rounds": self.rounds, "updates": self.updates,
                "bytes_pushed": self.bytes_pushed, "busy_s": self.busy_s.tolist(),
                "wait_s": self.wait_s.tolist(), "shards_done": self.shards_done.tolist()}

    def load_json(self, data: dict[str, Any]) -> None:
        self.rounds, self.updates = int(data["rounds"]), int(data["updates"])
        self.bytes_pushed = int(data["bytes_pushed"])
        self.busy_s = np.asarray(data["busy_s"], dtype=np.float64)
        self.wait_s = np.asarray(data["wait_s"], dtype=np.float64)
        self.shards_done = np.asarray(data["shards_done"], dtype=np.int64)


def balanced_chunks(weights: np.ndarray, parts: int) -> list[np.ndarray]:
    """Split items ``0..n-1`` into ``parts`` contiguous index ranges of ~equal total weight
    (e.g. rows by nonzeros), so shards cost about the same to process."""
    n = len(weights)
    parts = max(1, min(parts, n))
    cum = np.cumsum(np.asarray(weights, dtype=np.float64) + 1e-12)
    cuts = np.searchsorted(cum, cum[-1] * np.arange(1, parts) / parts)
    bounds = np.unique(np.concatenate([[0], cuts, [n]]))
    return [np.arange(a, b) for a, b in itertools.pairwise(bounds) if b > a]


# -- the worker side ------------------------------------------------------------------------
class ShardSet:
    """The data shards one worker may process: on the embedded backend every worker sees
    every shard and they share one counter (self-scheduling); on Ray each has its own."""

    def __init__(self, shards: dict[int, Any], shared: bool) -> None:
        self.shards = shards
        self.shared = shared
        self.counter: Any = itertools.count()

    def indices(self, worker: int, static: bool) -> Any:
        if static:
            return (worker,) if worker in self.shards else ()
        if self.shared:
            n = len(self.shards)
            return itertools.takewhile(lambda i: i < n, iter(lambda: next(self.counter), None))
        return sorted(self.shards)


class RoundWorker:
    """A worker of the scheduler: runs a round's jobs over the shards it may process."""

    def __init__(self, worker: int, program: Any, shard_set: ShardSet,
                 delay: WorkerDelay | None) -> None:
        self.worker = worker
        self.program = program
        self.shard_set = shard_set
        self.delay = delay
        self._fused = program.sync_push if isinstance(program, FusesSyncPush) else None

    def _each(self, static: bool, job: Callable[[int, Any], Any]) -> tuple[dict, float, int]:
        out, busy, count = {}, 0.0, 0
        for i in self.shard_set.indices(self.worker, static):
            t0 = time.perf_counter()
            out[i] = job(i, self.shard_set.shards[i])
            spent = time.perf_counter() - t0
            if self.delay is not None:
                extra = self.delay.extra_seconds(spent)
                if extra > 0:
                    time.sleep(extra)
            busy += time.perf_counter() - t0
            count += 1
        return out, busy, count

    def run(self, method: str, args: tuple) -> Any:
        """One driver call: ``method(*args)`` (args arrive as one frozen object)."""
        return getattr(self, method)(*args)

    def step(self, pending: tuple[Plan, Any] | None, variables: np.ndarray,
             tasks: Sequence[Any] | None) -> tuple[dict, float, int]:
        """Sync the last round's changes into each shard, then push this round's task."""
        program = self.program

        def job(i: int, shard: Any) -> Any:
            task = variables if tasks is None else tasks[i]
            if pending is None:
                return program.push(shard, task)
            if self._fused is not None:
                return self._fused(shard, pending[0], pending[1], task)
            program.sync(shard, pending[0], pending[1])
            return program.push(shard, task)

        return self._each(tasks is not None, job)

    def apply(self, pending: tuple[Plan, Any] | None, fn: Callable[[Any], Any]
              ) -> tuple[dict, float, int]:
        """``fn(shard)`` for each shard, after syncing the last round's changes."""

        def job(i: int, shard: Any) -> Any:
            if pending is not None:
                self.program.sync(shard, pending[0], pending[1])
            return fn(shard)

        return self._each(False, job)

    def states(self) -> dict[int, Any]:
        return {i: self.program.state(s) for i, s in self.shard_set.shards.items()}

    def load_states(self, states: dict[int, Any]) -> None:
        for i, s in self.shard_set.shards.items():
            self.program.load_state(s, states[i])

    def reset_counter(self) -> None:
        self.shard_set.counter = itertools.count()


# -- the driver -----------------------------------------------------------------------------
class Driver:
    """Runs rounds of ``app`` over ``shards`` on ``workers`` workers of a backend.

    Use as a context manager (workers start at once and stop on exit)::

        with Driver(app, shards, workers=2) as drv:
            drv.set_schedule(Priority(8), num_variables)
            drv.run(rounds=1000)
            values = drv.map(lambda shard: shard.something())

    ``runtime`` is ``"embedded"`` (threads, default) or ``"ray"`` (``address``: a cluster;
    ``min_nodes``: the fewest nodes the workers run on, see :mod:`~stalesync.runtime.ray_backend`);
    ``backend`` passes one already open instead. ``Driver.active`` is the newest open
    driver of this process (tests use it to kill workers).
    """

    active: ClassVar[Driver | None] = None

    def __init__(self, app: ModelParallelApp, shards: Sequence[Any], *, workers: int = 1,
                 pipeline: bool = True, stragglers: Stragglers | None = None, seed: int = 0,
                 runtime: str = "embedded", address: str | None = None,
                 backend: Backend | None = None, checkpoint_every: int | None = None,
                 snapshot_dir: str | None = None, resume: str | None = None,
                 max_recoveries: int = 3, min_nodes: int = 1) -> None:
        if not isinstance(workers, int) or workers < 1:
            raise ConfigError(f"workers must be a positive int, got {workers!r}")
        if not shards:
            raise ConfigError("the driver needs at least one data shard")
        if checkpoint_every is not None and (not isinstance(checkpoint_every, int)
                                             or checkpoint_every < 1):
            raise ConfigError(f"checkpoint_every must be a positive int (rounds), "
                              f"got {checkpoint_every!r}")
        self.app = app
        self.program = app.program if isinstance(app, CarriesProgram) else app
        # the app's optional hooks, found once (a runtime Protocol check costs ~40 us)
        self._prepares = isinstance(app, PreparesTasks)
        self._observes = isinstance(app, ObservesRounds)
        self.num_shards = len(shards)
        self.workers = workers
        self.pipeline = pipeline
        self.rng = np.random.default_rng(seed)
        self.stats = DriverStats(workers)
        self.schedule: Schedule | None = None
        self._owns_backend = backend is None
        check_min_nodes(min_nodes, runtime, workers)
        self.backend = backend or make_backend(runtime, address=address, min_nodes=min_nodes)
        self.remote = self.backend.remote
        self.snapshot_dir = snapshot_dir
        self.checkpoint_every = checkpoint_every or (
            DEFAULT_CHECKPOINT_ROUNDS if self.remote else None)
        self.recovery = Recovery(max_recoveries, True, snapshot_dir)
        self._pending: tuple[Plan, Any] | None = None  # last round, not yet synced to shards
        self._prefetched: Plan | None = None
        self._log: list[tuple[str, Any]] = []  # shard-changing calls since the checkpoint
        self._checkpoint: dict[int, Any] | None = None
        self._since_checkpoint = 0
        self._resumed: DriverCheckpoint | None = None
        self._lock = SnapshotDirLock(snapshot_dir).__enter__()
        started = time.perf_counter()
        try:
            self.group = self.backend.host("scheduler-worker",
                                           self._factories(shards, stragglers), cpus=1,
                                           concurrency=2, workers=True)
            if resume is not None:
                self._resume(resume)
        except BaseException:
            self._lock.__exit__()
            if self._owns_backend:
                self.backend.close()
            raise
        self.startup_s = time.perf_counter() - started  # starting the workers (Ray: actors)
        Driver.active = self

    def _factories(self, shards: Sequence[Any], stragglers: Stragglers | None) -> list:
        delays = [stragglers.for_worker(w) if stragglers else None for w in range(self.workers)]
        if not self.remote:
            shared = ShardSet(dict(enumerate(shards)), shared=True)
            members = [RoundWorker(w, self.program, shared, delays[w])
                       for w in range(self.workers)]
            return [lambda m=m: m for m in members]
        owned = [{i: s for i, s in enumerate(shards) if i % self.workers == w}
                 for w in range(self.workers)]
        return [_RoundWorkerFactory(w, self.program, owned[w], delays[w])
                for w in range(self.workers)]

    # -- lifecycle ------------------------------------------------------------------------
    def __enter__(self) -> Driver:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Stop the workers (pending changes are synced first)."""
        if self.group is None:
            return
        try:
            self.flush()
        finally:
            self.group.kill()
            self.group = None
            self._lock.__exit__()
            if Driver.active is self:
                Driver.active = None
            if self._owns_backend:
                self.backend.close()

    # -- dispatch with recovery -----------------------------------------------------------
    def _dispatch(self, method: str, args: tuple, overlap: Callable[[], Any] | None = None
                  ) -> tuple[list[Any], Any]:
        """``method(*args)`` on every worker; returns (per-shard results, overlap()'s value).
        A lost worker is rebuilt and the call retried (see the module docstring)."""
        if not self.remote:  # one shard counter shared by every worker
            self.group.members[0].reset_counter()
        extra: list[Any] = []

        def run_overlap() -> None:
            if overlap is not None and not extra:
                extra.append(overlap())

        # on a remote backend the arguments are frozen in the object store once: every worker
        # reads the same bytes, and the recovery log replays exactly what was sent
        call = (method, self.backend.share(args) if self.remote else args)
        t0 = time.perf_counter()
        answers = self._map_recovering("run", [call] * self.workers, overlap=run_overlap)
        wall = time.perf_counter() - t0
        results: list[Any] = [None] * self.num_shards
        for w, (out, busy, count) in enumerate(answers):
            for i, value in out.items():
                results[i] = value
            self.stats.busy_s[w] += busy
            self.stats.wait_s[w] += max(wall - busy, 0.0)
            self.stats.shards_done[w] += count
        if self.remote:
            self._log.append(call)
        return results, (extra[0] if extra else None)

    def _map_recovering(self, method: str, args: list[Any] | None = None,
                        overlap: Callable[[], Any] | None = None) -> list[Any]:
        """``group.map`` that survives lost members: they are rebuilt (checkpoint + log
        replay) and the call is made again."""
        while True:
            try:
                return self.group.map(method, args, overlap=overlap)
            except WorkerLostError as lost:
                self._recover(lost)

    def _recover(self, lost: WorkerLostError) -> None:
        """Rebuild after a loss. A member lost during the rebuild itself starts it over;
        every try counts towards ``max_recoveries``."""
        while True:
            self.recovery.allow(lost)
            self.recovery.restarted(self.stats.rounds, "round")
            try:
                self._rebuild()
                return
            except WorkerLostError as again:
                lost = again

    def _rebuild(self) -> None:
        """Fresh workers from their data, the checkpoint loaded, the log replayed."""
        self.group.rebuild()
        if self._checkpoint is not None:
            self.group.map("load_states", [(self._checkpoint,)] * self.workers)
        for call in self._log:
            self.group.map("run", [call] * self.workers)

    def _maybe_checkpoint(self) -> None:
        every = self.checkpoint_every
        if not every:
            return
        self._since_checkpoint += 1
        if self._since_checkpoint < every:
            return
        self.checkpoint()

    def checkpoint(self) -> None:
        """Gather the shards' states now (after syncing pending changes); with a
        ``snapshot_dir`` also write them, the app's model and the schedule to disk."""
        if not isinstance(self.program, ShardStates):
            return
        self.flush()
        states: dict[int, Any] = {}
        for part in self._map_recovering("states"):
            states.update(part)
        self._checkpoint, self._log, self._since_checkpoint = states, [], 0
        if self.snapshot_dir is not None:
            write_driver_snapshot(self.snapshot_dir, self._snapshot(states))

    def _snapshot(self, states: dict[int, Any]) -> DriverCheckpoint:
        return DriverCheckpoint(
            round=self.stats.rounds, stats=self.stats.to_json(),
            rng_state=self.rng.bit_generator.state,
            schedule=self.schedule.state() if self.schedule is not None else None,
            schedule_name=self.schedule.name if self.schedule is not None else None,
            prefetched=self._prefetched,
            model=self.app.state() if isinstance(self.app, ModelState) else {}, shards=states,
        )

    def _resume(self, path: str) -> None:
        snap = load_driver_snapshot(path, self.num_shards)
        if isinstance(self.app, ModelState):
            self.app.load_state(snap.model)
        self._map_recovering("load_states", [(snap.shards,)] * self.workers)
        self.stats.load_json(snap.stats)
        self.rng.bit_generator.state = snap.rng_state
        self._prefetched = snap.prefetched
        self._checkpoint = snap.shards
        self._resumed = snap

    # -- rounds ---------------------------------------------------------------------------
    def set_schedule(self, schedule: Schedule, num_variables: int) -> None:
        """Use ``schedule`` from the next round on (drops any prefetched plan). After a
        resume, a schedule of the snapshot's kind takes over its saved state."""
        schedule.bind(num_variables, self.workers, self.rng)
        resumed = self._resumed
        if resumed is not None and resumed.schedule_name == schedule.name:
            schedule.load_state(resumed.schedule)
            self._resumed = None
        else:
            self._prefetched = None
        self.schedule = schedule

    def step(self) -> tuple[Plan, Any]:
        """One round: sync the previous round's changes + push, pull, feedback."""
        if self.schedule is None:
            raise ConfigError("set a schedule before running rounds")
        plan = self._prefetched or self.schedule.next_round()
        self._prefetched = None
        if plan.tasks is not None and not len(plan.tasks) == self.num_shards == self.workers:
            raise ConfigError(
                f"a per-worker plan needs one task and one shard per worker: "
                f"{len(plan.tasks)} tasks, {self.num_shards} shards, {self.workers} workers"
            )
        tasks = self.app.prepare(plan) if self._prepares else plan.tasks
        busy0 = self.stats.busy_s.copy()
        overlap = self.schedule.next_round if self.pipeline else None
        partials, self._prefetched = self._dispatch(
            "step", (self._pending, plan.variables, tasks), overlap)
        self.stats.bytes_pushed += sum(getattr(p, "nbytes", 0) for p in partials)
        changes = self.app.pull(plan, partials)
        self._pending = (plan, changes)
        feedback = Feedback(changes, self.stats.busy_s - busy0)
        self.schedule.observe(plan, feedback)
        if self._observes:
            self.app.observe(plan, feedback)
        self.stats.rounds += 1
        self.stats.updates += plan.size
        self._maybe_checkpoint()
        return plan, changes

    def run(self, rounds: int, until: Callable[[Plan, Any], bool] | None = None) -> int:
        """Run up to ``rounds`` rounds, stopping early when ``until(plan, changes)``; returns
        the number of rounds run."""
        for r in range(rounds):
            plan, changes = self.step()
            if until is not None and until(plan, changes):
                return r + 1
        return rounds

    def flush(self) -> None:
        """Apply the last round's changes to every shard now."""
        if self._pending is not None:
            self.map(_noop)

    def map(self, fn: Callable[[Any], Any]) -> list[Any]:
        """``fn(shard)`` for every shard on the workers (after pending syncs), in shard order.

        For global quantities the app needs between rounds: objective, duality gap. On Ray
        ``fn`` travels to the workers (a lambda is fine)."""
        pending, self._pending = self._pending, None
        results, _ = self._dispatch("apply", (pending, fn))
        return results


def _noop(shard: Any) -> None:
    return None


class _RoundWorkerFactory:
    """Builds a :class:`RoundWorker` inside a remote worker (picklable)."""

    def __init__(self, worker: int, program: Any, shards: dict[int, Any],
                 delay: WorkerDelay | None) -> None:
        self.worker, self.program, self.shards, self.delay = worker, program, shards, delay

    def __call__(self) -> RoundWorker:
        import copy

        shards = copy.deepcopy(self.shards)  # from the object store: read-only arrays
        return RoundWorker(self.worker, self.program, ShardSet(shards, shared=False),
                           self.delay)
