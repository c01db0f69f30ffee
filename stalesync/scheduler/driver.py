"""The scheduler driver: runs schedule -> push -> pull rounds on embedded worker threads.

An app (:class:`ModelParallelApp`) supplies three functions, none of which knows about
threads, so a Ray driver can run the same app and schedule later:

* ``push(shard, task) -> partial``: a partial update for the round's variables computed on
  one data shard (for Lasso: ``X_J^T r`` over the shard's rows);
* ``pull(plan, partials) -> changes``: combine the partials of all shards into new values
  (the app owns the model), returning each variable's change (for priorities);
* ``sync(shard, plan, changes)``: fold a finished round's changes into a shard's local
  state (for Lasso: ``r -= delta_j X_j``). The driver runs it on the worker just before the
  next round's ``push``, so there is one hand-off per round. An app may also define
  ``sync_push(shard, plan, changes, task)`` doing both in one call (one compiled kernel,
  one GIL release instead of two); the driver then uses it.

**Pipelining.** The main thread releases the workers into round t, then asks the schedule
for round t+1 while they compute; it then waits for round t, runs ``pull`` and feeds the
changes back to the schedule. The schedule's view is therefore one round late, as in
STRADS. Push/sync kernels release the GIL, so the schedule's own compiled kernels (priority
sampling, dependency checks) really run beside them.

**Load balancing.** For shared plans (every worker works on the same variables over its own
data) the data is over-decomposed into ``chunks`` shards per worker, balanced by nonzeros
(:func:`balanced_chunks`), and workers *self-schedule*: each takes the next unprocessed
shard from a shared counter until none is left. A slow worker processes fewer shards and
finishes its last one at most one shard late, instead of holding every round back by its
full share. Per-worker plans (``plan.tasks``) are static (shard w belongs to worker w); the
driver reports each worker's compute time in :class:`~.base.Feedback` so a schedule can
size the tasks (e.g. block rotation giving a slow worker less to do).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ..errors import ConfigError
from ..faults import Stragglers
from .base import Feedback, Plan, Schedule


class ModelParallelApp(Protocol):
    """What an app gives the scheduler (see the module docstring and docs/scheduler.md)."""

    def push(self, shard: Any, task: Any) -> Any: ...

    def pull(self, plan: Plan, partials: list[Any]) -> np.ndarray | None: ...

    def sync(self, shard: Any, plan: Plan, changes: np.ndarray | None) -> None: ...


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
        self.busy_s = np.zeros(self.workers)
        self.wait_s = np.zeros(self.workers)
        self.shards_done = np.zeros(self.workers, dtype=np.int64)


def balanced_chunks(weights: np.ndarray, parts: int) -> list[np.ndarray]:
    """Split items ``0..n-1`` into ``parts`` contiguous index ranges of ~equal total weight
    (e.g. rows by nonzeros), so shards cost about the same to process."""
    n = len(weights)
    parts = max(1, min(parts, n))
    cum = np.cumsum(np.asarray(weights, dtype=np.float64) + 1e-12)
    cuts = np.searchsorted(cum, cum[-1] * np.arange(1, parts) / parts)
    bounds = np.unique(np.concatenate([[0], cuts, [n]]))
    return [np.arange(a, b) for a, b in itertools.pairwise(bounds) if b > a]


class Driver:
    """Runs rounds of ``app`` over ``shards`` with ``workers`` threads.

    Use as a context manager (threads are started lazily and joined on exit)::

        with Driver(app, shards, workers=2) as drv:
            drv.set_schedule(Priority(8))
            drv.run(rounds=1000)
            values = drv.map(lambda shard: shard.something())
    """

    def __init__(self, app: ModelParallelApp, shards: Sequence[Any], *, workers: int = 1,
                 pipeline: bool = True, stragglers: Stragglers | None = None,
                 seed: int = 0) -> None:
        if not isinstance(workers, int) or workers < 1:
            raise ConfigError(f"workers must be a positive int, got {workers!r}")
        if not shards:
            raise ConfigError("the driver needs at least one data shard")
        self.app = app
        self.shards = list(shards)
        self.workers = workers
        self.pipeline = pipeline
        self.rng = np.random.default_rng(seed)
        self.stats = DriverStats(workers)
        self.schedule: Schedule | None = None
        self._delays = [stragglers.for_worker(w) for w in range(workers)] if stragglers else None
        self._pending: tuple[Plan, Any] | None = None  # last round, not yet synced to shards
        self._prefetched: Plan | None = None
        self._threads: list[threading.Thread] = []
        self._go: list[threading.Lock] = []
        self._done: list[threading.Lock] = []
        self._job: Callable[[int, int, Any], Any] | None = None
        self._results: list[Any] = []
        self._errors: list[BaseException] = []
        self._counter: Any = None
        self._static = False

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> Driver:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop the helper threads (pending changes are synced first)."""
        if self._threads:
            self.flush()
            self._job = None
            for lock in self._go:
                lock.release()
            for t in self._threads:
                t.join()
            self._threads = []

    def _ensure_threads(self) -> None:
        """Start helpers 1..workers-1; the calling thread is worker 0. Each helper waits on
        its own lock (released = go) and releases another when done: two uncontended lock
        operations per helper per round, the cheapest hand-off CPython offers."""
        if self._threads or self.workers == 1:
            return
        self._go = [threading.Lock() for _ in range(self.workers - 1)]
        self._done = [threading.Lock() for _ in range(self.workers - 1)]
        for lock in self._go + self._done:
            lock.acquire()
        self._threads = [
            threading.Thread(target=self._helper_loop, args=(w,), daemon=True,
                             name=f"stalesync-sched-{w}")
            for w in range(1, self.workers)
        ]
        for t in self._threads:
            t.start()

    # ------------------------------------------------------------------ workers

    def _helper_loop(self, w: int) -> None:
        go, done = self._go[w - 1], self._done[w - 1]
        while True:
            t0 = time.perf_counter()
            go.acquire()
            t1 = time.perf_counter()
            if self._job is None:
                return
            self.stats.wait_s[w] += t1 - t0
            try:
                self._work(w)
            except BaseException as exc:  # noqa: BLE001 - re-raised by the main thread
                self._errors.append(exc)
            self.stats.busy_s[w] += time.perf_counter() - t1
            done.release()

    def _work(self, w: int) -> None:
        job, shards, results = self._job, self.shards, self._results
        if self._static:
            indices: Any = (w,) if w < len(shards) else ()
        else:
            indices = iter(lambda: next(self._counter), None)
        for i in indices:
            if i >= len(shards):
                break
            t0 = time.perf_counter()
            results[i] = job(w, i, shards[i])
            self.stats.shards_done[w] += 1
            if self._delays is not None:
                extra = self._delays[w].extra_seconds(time.perf_counter() - t0)
                if extra > 0:
                    time.sleep(extra)

    def _dispatch(self, job: Callable[[int, int, Any], Any], static: bool,
                  overlap: Callable[[], Any] | None = None) -> tuple[list[Any], Any]:
        """Run ``job(worker, shard_index, shard)`` on every shard. The calling thread is
        worker 0: it releases the helpers, runs ``overlap()`` (the next round's schedule),
        then takes shards itself. Returns (results per shard, overlap's value)."""
        self._job, self._static = job, static
        self._results = [None] * len(self.shards)
        self._counter = itertools.count()
        self._errors = []
        self._ensure_threads()
        for lock in self._threads and self._go:
            lock.release()
        extra = overlap() if overlap else None
        t0 = time.perf_counter()
        try:
            self._work(0)
        except BaseException as exc:  # noqa: BLE001 - helpers must be collected first
            self._errors.append(exc)
        t1 = time.perf_counter()
        self.stats.busy_s[0] += t1 - t0
        for lock in self._threads and self._done:
            lock.acquire()
        self.stats.wait_s[0] += time.perf_counter() - t1
        if self._errors:
            raise self._errors[0]
        return self._results, extra

    # ------------------------------------------------------------------ rounds

    def set_schedule(self, schedule: Schedule, num_variables: int) -> None:
        """Use ``schedule`` from the next round on (drops any prefetched plan)."""
        schedule.bind(num_variables, self.workers, self.rng)
        self.schedule = schedule
        self._prefetched = None

    def step(self) -> tuple[Plan, Any]:
        """One round: sync the previous round's changes + push, pull, feedback."""
        if self.schedule is None:
            raise ConfigError("set a schedule before running rounds")
        plan = self._prefetched or self.schedule.next_round()
        self._prefetched = None
        pending, app = self._pending, self.app
        if plan.tasks is not None and not len(plan.tasks) == len(self.shards) == self.workers:
            raise ConfigError(
                f"a per-worker plan needs one task and one shard per worker: "
                f"{len(plan.tasks)} tasks, {len(self.shards)} shards, {self.workers} workers"
            )
        tasks = plan.tasks

        fused = getattr(app, "sync_push", None)

        def job(w: int, i: int, shard: Any) -> Any:
            task = plan.variables if tasks is None else tasks[i]
            if pending is None:
                return app.push(shard, task)
            if fused is not None:
                return fused(shard, pending[0], pending[1], task)
            app.sync(shard, pending[0], pending[1])
            return app.push(shard, task)

        busy0 = self.stats.busy_s.copy()
        overlap = self.schedule.next_round if self.pipeline else None
        partials, self._prefetched = self._dispatch(job, tasks is not None, overlap)
        self.stats.bytes_pushed += sum(getattr(p, "nbytes", 0) for p in partials)
        changes = app.pull(plan, partials)
        self._pending = (plan, changes)
        self.schedule.observe(plan, Feedback(changes, self.stats.busy_s - busy0))
        self.stats.rounds += 1
        self.stats.updates += plan.size
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
            self.map(lambda shard: None)

    def map(self, fn: Callable[[Any], Any]) -> list[Any]:
        """``fn(shard)`` for every shard on the workers (after pending syncs), in shard order.

        For global quantities the app needs between rounds: objective, duality gap.
        """
        pending, app = self._pending, self.app
        self._pending = None

        def job(w: int, i: int, shard: Any) -> Any:
            if pending is not None:
                app.sync(shard, pending[0], pending[1])
            return fn(shard)

        results, _ = self._dispatch(job, static=False)
        return results
