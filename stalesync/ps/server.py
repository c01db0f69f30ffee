"""A server shard: the rows of its key range, the worker clocks, parked reads and pushes.

The shard is runtime-agnostic logic guarded by one lock; the embedded runtime calls it from
worker threads, the Ray runtime wraps the same bookkeeping in an actor.

Invariant that makes the consistency guarantee hold: a worker's increments for clock ``c``
are applied *in the same critical section* that records its clock ``c`` as completed. So
when the minimum worker clock is ``m``, every increment from clocks ``< m`` is in the rows,
and any row served now may be stamped ``m``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from ..errors import JobAbortedError
from ..kernels.spin import SPIN_POLLS, spin_until
from .clock_policies import FINISHED, ClockPolicy, EveryWorker
from .consistency import ConsistencyModel
from .row_batch import SparseRows
from .tables import RowStore, ShardMap, TableSpec, make_store

__all__ = ["FINISHED", "Push", "ServerShard"]


@dataclass
class Push:
    """Fresh rows a shard sends to a worker that caches them (ESSP)."""

    table: str
    rows: np.ndarray  # global row ids
    values: np.ndarray | SparseRows  # a sparse table's pushes are CSR batches
    stamp: int
    # how many of the receiving worker's clocks the values include; the worker drops a push
    # that predates its own latest flush, or its own increments would vanish from its cache
    own_clocks: int


PushSink = Callable[[int, Push], None]


class ServerShard:
    """Rows ``r`` with ``r % num_shards == shard_id`` of every table."""

    def __init__(
        self,
        shard_id: int,
        shard_map: ShardMap,
        specs: Mapping[str, TableSpec],
        models: Mapping[str, ConsistencyModel],
        num_workers: int,
        push_sink: PushSink | None = None,
        policy: ClockPolicy | None = None,
    ) -> None:
        self.shard_id = shard_id
        self.shard_map = shard_map
        self.specs = dict(specs)
        self.models = dict(models)
        self.stores: dict[str, RowStore] = {
            name: make_store(spec, shard_map.local_rows(shard_id, spec.num_rows))
            for name, spec in specs.items()
        }
        self.policy = policy or EveryWorker(num_workers)
        self.push_sink = push_sink
        # ESSP: which local rows each worker caches, per pushing table
        self.subscribed: dict[str, np.ndarray] = {
            name: np.zeros(
                (num_workers, shard_map.local_rows(shard_id, specs[name].num_rows)), dtype=bool
            )
            for name, model in models.items()
            if model.pushes
        }
        # the lock is entered directly (``with self._lock``: no Python-level frames, where
        # ``with`` on the Condition adds four calls a clock); the Condition shares it, and
        # is notified only when a read is parked on it
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._parked = 0  # reads waiting on the Condition now
        # the stamp, mirrored in an array that a waiting read polls without the GIL or the
        # lock for a few microseconds before it parks (a parked thread's wake-up costs the
        # operating system's latency, ~50-90 us here, on every BSP clock)
        self._stamp = np.zeros(1, dtype=np.int64)
        self._aborted = False
        # staleness="auto": each auto table's bound schedule [(from_clock, bound), ...], held
        # by shard 0 only (see set_bound)
        self.bounds: dict[str, list[tuple[int, int]]] = {
            name: [(0, model.staleness)] for name, model in models.items()
            if model.auto and shard_id == 0}

    # -- clocks -------------------------------------------------------------------------
    @property
    def min_clock(self) -> int:
        """The stamp of the rows served now (see :mod:`stalesync.ps.clock_policies`)."""
        return self.policy.stamp()

    @property
    def worker_clocks(self) -> np.ndarray:
        return self.policy.worker_clocks

    def set_clocks(self, clocks: np.ndarray) -> None:
        """Start from these worker clocks (a restore; before any worker runs)."""
        self.policy.worker_clocks = np.array(clocks, dtype=np.int64)
        self._stamp[0] = self.policy.stamp()

    def clock(
        self,
        worker: int,
        updates: Mapping[str, tuple[np.ndarray, np.ndarray]],
        finished: bool = False,
        step: int | None = None,
    ) -> None:
        """Apply ``worker``'s coalesced increments of its clock ``step``, then advance it
        (as the clock policy says).

        ``updates`` maps table -> (local rows, increments). ``finished`` marks a worker whose
        function returned: it will send nothing more, so nobody waits for it.
        """
        policy = self.policy
        with self._lock:
            before = policy.stamp()
            policy.accept(self.stores, worker, step, updates, finished)
            after = policy.stamp()
            pushes = []
            if after > before:
                self._stamp[0] = after
                if self._parked:
                    self._cond.notify_all()
                if self.push_sink is not None and self.subscribed:
                    pushes = self._fresh_pushes(after)
            bounds = self.bounds_view() if self.bounds else None
        # delivered outside the lock: on Ray a push is serialised into a message here, and
        # reads and clocks on this shard must not wait for that. Two clocks' pushes may then
        # arrive out of order; a worker keeps only rows newer than what it holds.
        for receiver, push in pushes:
            self.push_sink(receiver, push)
        return bounds

    # -- staleness="auto" ----------------------------------------------------------------
    def bounds_view(self) -> dict[str, list[tuple[int, int]]] | None:
        return {name: list(b) for name, b in self.bounds.items()} if self.bounds else None

    def set_bound(self, table: str, bound: int) -> list[tuple[int, int]]:
        """Use ``bound`` for ``table`` from the clock after the highest one any worker is at,
        so no worker is inside a clock whose bound changes; returns the schedule. Only shard
        0 holds schedules: a worker waits for its answer to each clock, so the schedule it
        learns there is exact for the clock it begins next, and every read it sends states
        the stamp that bound requires."""
        with self._lock:
            clocks = self.policy.worker_clocks
            live = clocks[clocks < FINISHED]
            start = int(live.max()) + 1 if live.size else 0
            schedule = self.bounds[table]
            if schedule[-1][1] != bound:
                if schedule[-1][0] >= start:  # the last change has not begun: replace it
                    schedule.pop()
                if not schedule or schedule[-1][1] != bound:
                    schedule.append((max(start, schedule[-1][0] + 1 if schedule else 0),
                                     bound))
                self._cond.notify_all()  # a looser bound may release parked reads
            return list(schedule)

    def _fresh_pushes(self, stamp: int) -> list[tuple[int, Push]]:
        """ESSP: every subscribed worker's rows as of ``stamp`` (taken under the lock)."""
        if self.push_sink is None:
            return []
        pushes = []
        for name, subscribed in self.subscribed.items():
            store = self.stores[name]
            for worker in np.flatnonzero(subscribed.any(axis=1)):
                local = np.flatnonzero(subscribed[worker])
                push = Push(
                    table=name,
                    rows=self.shard_map.global_rows(self.shard_id, local),
                    values=store.serve(local),
                    stamp=stamp,
                    own_clocks=int(self.policy.clock_of(worker)),
                )
                pushes.append((int(worker), push))
        return pushes

    # -- reads --------------------------------------------------------------------------
    def read(
        self, worker: int, table: str, local_rows: np.ndarray, required_stamp: int | None,
    ) -> tuple[np.ndarray, int, float, int]:
        """Return (values, stamp, seconds waited, stamp when the read arrived) of
        ``local_rows``.

        Waits until the shard's minimum clock reaches ``required_stamp``;
        ``required_stamp=None`` never waits (async).
        """
        waited, t0, arrival = 0.0, None, None
        if required_stamp is not None and self._stamp[0] < required_stamp:
            t0 = time.perf_counter()
            arrival = int(self._stamp[0])  # monotonic: at most the stamp when it arrived
            spin_until(self._stamp, required_stamp, SPIN_POLLS)
        with self._lock:
            if arrival is None:
                arrival = self.policy.stamp()
            if required_stamp is not None and self.policy.stamp() < required_stamp:
                t0 = time.perf_counter() if t0 is None else t0
                self._parked += 1
                try:
                    while self.min_clock < required_stamp:
                        if self._aborted:
                            raise JobAbortedError("job stopped while a read was waiting")
                        self._cond.wait()
                finally:
                    self._parked -= 1
            if t0 is not None:
                waited = time.perf_counter() - t0
            if self._aborted:
                raise JobAbortedError("job stopped")
            values = self.stores[table].serve(local_rows)
            if table in self.subscribed:
                self.subscribed[table][worker, local_rows] = True
            return values, self.policy.stamp(), waited, arrival

    def abort(self) -> None:
        """Wake every parked read so it raises; used when the job stops on an error."""
        with self._lock:
            self._aborted = True
            self._cond.notify_all()

    # -- whole-table access (end of job, snapshots) ---------------------------------------
    def dump_all(self) -> dict[str, np.ndarray]:
        """Every table, and each update rule's state as ``"<table>#<name>"`` arrays."""
        with self._lock:
            out = {name: store.export() for name, store in self.stores.items()}
            for name, store in self.stores.items():
                for key, arr in store.rule_state().items():
                    out[f"{name}#{key}"] = arr
            return out

    def load_all(self, arrays: Mapping[str, np.ndarray]) -> None:
        """The inverse of :meth:`dump_all` (a restore)."""
        with self._lock:
            states: dict[str, dict[str, np.ndarray]] = {}
            for key, values in arrays.items():
                name, _, state = key.partition("#")
                if state:
                    states.setdefault(name, {})[state] = values
                else:
                    self.stores[name].load_dense(values)
            for name, state in states.items():
                self.stores[name].load_rule_state(state)

    def stats(self) -> dict[str, object]:
        with self._lock:
            return self.policy.stats()
