"""A worker's view of the parameter server: row cache, update log, read / inc / clock.

Per table the client keeps
- ``cache``: rows as last fetched or pushed, *plus* every own increment made since, so reads
  always include the reader's own writes;
- ``stamp``: per row, the stamp the server gave it (-1 = never fetched);
- ``pending`` + ``dirty``: the coalesced increments not yet sent. ``clock()`` sends them,
  one message per shard, together with the clock itself.

``cache`` and ``pending`` are dense arrays, allocated with ``np.zeros`` (calloc: rows a
worker never touches cost no memory), or, for a sparse or bounded table
(``TableSpec.sparse_cache``), sparse row stores that hold only non-zeros; a bounded cache
(``TableSpec.cache_rows``) evicts its least recently read clean rows at each clock.
"""

from __future__ import annotations

import threading
import warnings
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import (
    IncrementError,
    JobAbortedError,
    JobEndedError,
    RowIndexError,
    UnknownTableError,
)
from ..kernels.bookkeeping import (
    ASYNC,
    as_row_ids,
    check_rows,
    mark_dirty,
    read_plan,
    read_staleness,
    release_gil,
    take_dirty,
)
from ..kernels.rows import (
    all_finite,
    gather_rows,
    scatter_add_rows,
    scatter_add_rows_pair,
    scatter_rows,
    take_and_zero_rows,
)
from .audit import Audit
from .auto_staleness import bound_at
from .clock_records import WorkerMetrics
from .compression import ErrorFeedback
from .compression import parse as parse_compressor
from .consistency import ConsistencyModel
from .row_batch import SparseRows, as_dense
from .server import Push
from .shard_protocol import ShardProtocol
from .tables import ShardMap, SparseRowStore, TableSpec

RESIDUAL_KEY = "_stalesync_residual_"  # reserved snapshot-state key prefix

INDEX_BYTES = 8  # bytes per row id on the wire
MESSAGE_HEADER_BYTES = 32  # table id, worker, clock, counts
SENT_LOG_CLOCKS = 8  # ESSP: pushes older than this many own clocks are dropped (always safe)
SPARSE_DRAIN_SHARE = 4  # a dense log drains as CSR below 1/4 of its rows' entries non-zero


@dataclass
class _CachedTable:
    spec: TableSpec
    model: ConsistencyModel
    cache: np.ndarray | SparseRowStore
    stamp: np.ndarray
    fetched_at: np.ndarray  # reader clock at fetch time; async refreshes once per clock
    pending: np.ndarray | SparseRowStore
    dirty: np.ndarray
    last_read: np.ndarray | None = None  # bounded caches: the clock each row was last read
    inbox: list[Push] = field(default_factory=list)
    bounds: list[tuple[int, int]] | None = None  # staleness="auto": the bound schedule
    # ESSP: own increments of the last few flushed clocks, [(clock, rows, deltas)], so a push
    # generated before a flush can be completed with them instead of being dropped
    sent: deque = field(default_factory=lambda: deque(maxlen=SENT_LOG_CLOCKS))
    feedback: ErrorFeedback | None = None  # compressed tables: the residual and its codec
    # a dense log: entries the sparse increments since the last flush added (an upper bound
    # of its non-zeros), or -1 once a dense increment came; decides how the log is drained
    pending_entries: int = 0
    # the rows ``dirty`` flags, in the order they were first dirtied since the last drain
    # (``n_dirty`` of them): a clock drains these without scanning the flags
    dirty_list: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    n_dirty: int = 0
    all_rows: np.ndarray | None = None  # read(table) with no rows: every row id, made once
    missing: np.ndarray | None = None  # read_plan's output buffer (grown on demand)
    seen: np.ndarray | None = None  # read_plan's per-row scratch flags
    # fixed per job, asked on every call: kept as plain fields
    sparse: bool = False  # rows in sparse stores (only non-zeros)
    gradient: bool = False  # increments are gradients for the shard's rule, not values
    pushes: bool = False  # ESSP: shards push fresh rows at every completed clock
    bounded: bool = True  # reads may block to enforce a staleness bound (not Async)

    @classmethod
    def create(cls, spec: TableSpec, model: ConsistencyModel, worker: int) -> _CachedTable:
        shape = (spec.num_rows, spec.row_width)
        codec = parse_compressor(spec.compress)

        def rows() -> np.ndarray | SparseRowStore:
            if spec.sparse_cache:
                return SparseRowStore(spec, spec.num_rows)
            return np.zeros(shape, dtype=spec.np_dtype)

        return cls(
            spec=spec,
            model=model,
            cache=rows(),
            stamp=np.full(spec.num_rows, -1, dtype=np.int64),
            fetched_at=np.full(spec.num_rows, -1, dtype=np.int64),
            pending=rows(),
            dirty=np.zeros(spec.num_rows, dtype=bool),
            dirty_list=np.zeros(spec.num_rows, dtype=np.int64),
            last_read=None if spec.cache_rows is None else np.full(spec.num_rows, -1,
                                                                   dtype=np.int64),
            bounds=[(0, model.staleness)] if model.auto else None,
            feedback=None if codec is None else ErrorFeedback(
                codec, spec.num_rows, spec.row_width, np.random.default_rng([worker, 5581]),
                seed=(worker, 5581)),
            sparse=spec.sparse_cache,
            gradient=spec.gradient,
            pushes=model.pushes,
            bounded=model.bounded,
        )

    def gather(self, rows: np.ndarray, sparse: bool) -> np.ndarray | SparseRows:
        """Cached rows, dense or as a CSR batch."""
        if self.sparse:
            return self.cache.gather_sparse(rows) if sparse else self.cache.gather(rows)
        out = gather_rows(self.cache, rows)
        return SparseRows.from_dense(out) if sparse else out

    def store(self, rows: np.ndarray, values: np.ndarray | SparseRows) -> np.ndarray | None:
        """Set cached rows (distinct) to ``values`` plus the unsent own increments in them
        (a value table's cache shows the reader its own writes; a gradient is no value).

        A dense cache returns the stored rows when they are a private, writable array (a
        read that fetched every row it asked for returns them without gathering again)."""
        # only rows with unsent increments need them added back (none right after a clock)
        unsent = None if self.gradient or not self.n_dirty else self.dirty[rows]
        if self.sparse:
            self.cache.assign(rows, values)
            if unsent is not None and unsent.any():
                self.cache.add(rows[unsent], self.pending.gather_sparse(rows[unsent]))
            return None
        values = as_dense(values)
        if unsent is not None and unsent.any():
            if not values.flags.writeable:  # a remote shard's reply (Ray object store)
                values = values.copy()
            values[unsent] += self.pending[rows[unsent]]
        scatter_rows(self.cache, rows, values)
        return values if values.flags.writeable and values.flags.c_contiguous else None

    def add_to_cache(self, rows: np.ndarray, deltas: np.ndarray | SparseRows) -> None:
        if self.sparse:
            self.cache.add(rows, deltas)
        elif isinstance(deltas, SparseRows):
            deltas.add_to(self.cache, rows)
        else:
            scatter_add_rows(self.cache, rows, deltas)

    def drain(self, rows: np.ndarray) -> np.ndarray | SparseRows:
        """Take the unsent increments of ``rows`` (dirty, distinct) out of the log: as a CSR
        batch when only sparse increments, few for these rows, went in since the last drain
        (the message and the shard's work are then O(changes), not O(rows x width)), else
        dense."""
        if self.sparse:
            return self.pending.take_and_clear(rows)
        entries, self.pending_entries = self.pending_entries, 0
        if (self.feedback is None and 0 <= entries
                and entries * SPARSE_DRAIN_SHARE < rows.size * self.spec.row_width):
            return SparseRows.take_and_zero(self.pending, rows)
        return take_and_zero_rows(self.pending, rows)

    def mark_dirty(self, rows: np.ndarray) -> None:
        self.n_dirty = mark_dirty(rows, self.dirty, self.dirty_list, self.n_dirty)

    def take_dirty(self) -> np.ndarray:
        """The dirty rows (in the order first dirtied), their flags cleared."""
        rows = take_dirty(self.dirty_list, self.n_dirty, self.dirty)
        self.n_dirty = 0
        return rows

    def missing_buffer(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        """read_plan's scratch: room for ``size`` row ids, and a flag per row."""
        if self.missing is None or self.missing.size < size:
            self.missing = np.empty(max(size, 16), dtype=np.int64)
        if self.seen is None:
            self.seen = np.zeros(self.spec.num_rows, dtype=bool)
        return self.missing, self.seen

    def evict(self) -> int:
        """Bounded caches: drop the least recently read clean rows beyond ``cache_rows``;
        returns how many were dropped."""
        limit = self.spec.cache_rows
        if limit is None:
            return 0
        held = np.flatnonzero((self.stamp >= 0) | (self.cache.length > 0))
        if held.size <= limit:
            return 0
        clean = held[~self.dirty[held]]
        drop = clean[np.argsort(self.last_read[clean], kind="stable")[: held.size - limit]]
        self.cache.clear(drop)
        self.stamp[drop] = -1
        self.fetched_at[drop] = -1
        return int(drop.size)

    def model_at(self, clock: int) -> ConsistencyModel:
        """The consistency model with the bound in force at ``clock``."""
        if self.bounds is None:
            return self.model

        return self.model.with_bound(bound_at(self.bounds, clock))


class WorkerClient:
    """The parameter-server client of one worker (one thread in the embedded runtime)."""

    def __init__(
        self,
        worker_id: int,
        specs: Mapping[str, TableSpec],
        models: Mapping[str, ConsistencyModel],
        shard_map: ShardMap,
        shards: Sequence[ShardProtocol],
        metrics: WorkerMetrics,
        nan_policy: str = "error",
        *,
        skip_ahead: bool = False,
        fetch_every: int = 1,
        push_every: int = 1,
        audit: str = "record",
    ) -> None:
        self.worker_id = worker_id
        self.shard_map = shard_map
        self.shards = shards
        self.metrics = metrics
        self.nan_policy = nan_policy
        self.skip_ahead = skip_ahead
        self.fetch_every = fetch_every
        self.push_every = push_every
        self.audit = Audit(worker_id, audit)
        self._audit_on = self.audit.enabled  # its mode is fixed for the job
        self.clock_count = 0
        self.tables = {
            name: _CachedTable.create(spec, models[name], worker_id)
            for name, spec in specs.items()
        }
        # the tables whose clocks need more than a flush (fixed per job)
        self._auto_tables = [t for t in self.tables.values() if t.bounds is not None]
        self._bounded_tables = [t for t in self.tables.values() if t.spec.cache_rows is not None]
        self._inbox_lock = threading.Lock()
        self._ended = False
        self._aborted = False

    # -- error-feedback residuals: part of a worker's snapshot ------------------------------
    def residual_state(self) -> dict[str, np.ndarray]:
        """The residual of every compressed table (what it has not delivered yet), under
        reserved state keys (``RESIDUAL_KEY`` + the table's position in the job)."""
        out = {}
        for i, table in enumerate(self.tables.values()):
            if table.feedback is not None:
                out[f"{RESIDUAL_KEY}{i}"] = table.feedback.residual.copy()
                if table.feedback.velocity is not None:  # DGC's momentum
                    out[f"{RESIDUAL_KEY}{i}_velocity"] = table.feedback.velocity.copy()
        return out

    def load_residual_state(self, arrays: dict[str, np.ndarray]) -> None:
        for i, table in enumerate(self.tables.values()):
            fb = table.feedback
            if fb is not None and f"{RESIDUAL_KEY}{i}" in arrays:
                fb.residual[...] = arrays[f"{RESIDUAL_KEY}{i}"]
                if fb.velocity is not None:
                    fb.velocity[...] = arrays[f"{RESIDUAL_KEY}{i}_velocity"]

    # -- validation -----------------------------------------------------------------------
    def _table(self, name: str) -> _CachedTable:
        if self._ended or self._aborted:
            self._check_alive()
        table = self.tables.get(name)
        if table is None:
            raise UnknownTableError(
                f"unknown table {name!r}; this job declares {sorted(self.tables)}")
        return table

    def _check_alive(self) -> None:
        if self._ended:
            raise JobEndedError(
                f"worker {self.worker_id}: the job has ended; no more reads or clocks"
            )
        if self._aborted:
            raise JobAbortedError(
                f"worker {self.worker_id}: the job was stopped by another worker's error"
            )

    @staticmethod
    def _rows(table: _CachedTable, rows, checked: bool = False) -> np.ndarray:
        """``rows`` as int64 ids; in range unless ``checked`` says the caller checks."""
        if type(rows) is np.ndarray and rows.dtype == np.int64 and rows.ndim == 1:
            arr = rows  # the common case, without another call
        else:
            try:
                arr = as_row_ids(rows)
            except TypeError as exc:
                raise RowIndexError(
                    f"table {table.spec.name!r}: row ids must be integers, got dtype {exc}"
                ) from None
        if not checked:
            bad = check_rows(arr, table.spec.num_rows)
            if bad >= 0:
                raise WorkerClient._out_of_range(table, int(arr[bad]))
        return arr

    @staticmethod
    def _out_of_range(table: _CachedTable, row: int) -> RowIndexError:
        return RowIndexError(f"table {table.spec.name!r}: row {row} is out of range "
                             f"[0, {table.spec.num_rows})")

    def _deltas(self, table: _CachedTable, rows: np.ndarray, deltas
                ) -> np.ndarray | SparseRows:
        if isinstance(deltas, SparseRows):
            return self._sparse_deltas(table, rows, deltas)
        spec = table.spec
        arr = deltas
        if (type(arr) is np.ndarray and arr.dtype == spec.np_dtype
                and arr.shape == (rows.size, spec.row_width) and arr.flags.c_contiguous):
            pass  # the common case: already the table's dtype and shape
        else:
            arr = self._convert_deltas(spec, rows, deltas)
        if not all_finite(arr):
            bad_pos = int(np.flatnonzero(~np.isfinite(arr).all(axis=1))[0])
            msg = f"table {spec.name!r}: increment for row {int(rows[bad_pos])} contains NaN or inf"
            if self.nan_policy == "error":
                raise IncrementError(msg)
            warnings.warn(msg, RuntimeWarning, stacklevel=4)
        return arr

    @staticmethod
    def _convert_deltas(spec: TableSpec, rows: np.ndarray, deltas) -> np.ndarray:
        """Dense increments in the table's dtype and shape, or a clear error."""
        arr = np.asarray(deltas)
        if arr.dtype.kind not in "iufb":
            raise IncrementError(
                f"table {spec.name!r}: increments must be numeric, got {arr.dtype}"
            )
        if not np.can_cast(arr.dtype, spec.np_dtype, casting="same_kind"):
            raise IncrementError(
                f"table {spec.name!r}: cannot add {arr.dtype} increments to a {spec.dtype} table"
            )
        expected = (rows.size, spec.row_width)
        if arr.shape != expected:
            if arr.ndim == 1 and rows.size == 1 and arr.shape[0] == spec.row_width:
                arr = arr.reshape(expected)
            else:
                raise IncrementError(
                    f"table {spec.name!r}: increments have shape {arr.shape}, "
                    f"expected {expected} (rows, row_width)"
                )
        return np.ascontiguousarray(arr, dtype=spec.np_dtype)

    def _sparse_deltas(self, table: _CachedTable, rows: np.ndarray, deltas: SparseRows
                       ) -> SparseRows:
        spec = table.spec
        if deltas.shape != (rows.size, spec.row_width):
            raise IncrementError(f"table {spec.name!r}: increments have shape {deltas.shape}, "
                                 f"expected {(rows.size, spec.row_width)} (rows, row_width)")
        if deltas.dtype.kind not in "iufb" or not np.can_cast(deltas.dtype, spec.np_dtype,
                                                             casting="same_kind"):
            raise IncrementError(f"table {spec.name!r}: cannot add {deltas.dtype} increments "
                                 f"to a {spec.dtype} table")
        if deltas.nnz and (int(deltas.cols.min()) < 0
                           or int(deltas.cols.max()) >= spec.row_width):
            raise IncrementError(f"table {spec.name!r}: a sparse increment has a column "
                                 f"outside [0, {spec.row_width})")
        if not deltas.is_finite():
            msg = f"table {spec.name!r}: a sparse increment contains NaN or inf"
            if self.nan_policy == "error":
                raise IncrementError(msg)
            warnings.warn(msg, RuntimeWarning, stacklevel=4)
        if deltas.dtype != spec.np_dtype:
            deltas = SparseRows(deltas.indptr, deltas.cols,
                                deltas.vals.astype(spec.np_dtype), deltas.width)
        return deltas

    # -- reads ----------------------------------------------------------------------------
    def read(self, name: str, rows=None, *, sparse: bool = False) -> np.ndarray | SparseRows:
        """Rows of table ``name`` (all rows when ``rows`` is None), fresh enough for the
        table's consistency model. Blocks only when a needed row is too stale. ``sparse``:
        return them as a :class:`~stalesync.ps.row_batch.SparseRows` batch (a scalar row id
        then gives a batch of one row)."""
        table = self._table(name)
        scalar = rows is not None and (rows.ndim == 0 if type(rows) is np.ndarray
                                       else np.ndim(rows) == 0)
        if rows is None:
            if table.all_rows is None:
                table.all_rows = np.arange(table.spec.num_rows)
            idx = table.all_rows
        else:
            idx = self._rows(table, rows, checked=True)  # read_plan checks the range
        if table.pushes:
            self._apply_pushes(table)
        model = table.model if table.bounds is None else table.model_at(self.clock_count)
        clock = self.clock_count
        # never-fetched rows have stamp -1 and must be fetched even when c - s < 0
        required = max(model.required_stamp(clock), 0) if table.bounded else ASYNC
        buffer, seen = table.missing, table.seen
        if buffer is None or buffer.size < idx.size:
            buffer, seen = table.missing_buffer(idx.size)
        n_missing = read_plan(idx, table.spec.num_rows, table.stamp, table.fetched_at,
                              required, clock, self.fetch_every, buffer, seen)
        if n_missing < 0:
            raise self._out_of_range(table, int(idx[-1 - n_missing]))
        waited, arrivals, fetched, before = 0.0, [], None, None
        if n_missing:
            missing = buffer[:n_missing].copy()  # distinct
            if self._audit_on:
                before = table.stamp[idx]
            whole = n_missing == idx.size  # all of idx missing, no row twice
            waited, arrivals, fetched = self._fetch(
                table, idx if whole else missing, None if required == ASYNC else required)
            if not whole or sparse:
                fetched = None
            if self.skip_ahead:  # backup workers: compute on the current step, never older
                self.clock_count = max(self.clock_count, int(table.stamp[missing].max()))
        metrics = self.metrics
        counts = metrics.staleness_counts
        total, top, low, fits = read_staleness(idx, table.stamp, self.clock_count, counts)
        if not fits:
            counts = metrics.grow_histogram(top)
            total, top, low, fits = read_staleness(idx, table.stamp, self.clock_count, counts)
        if self._audit_on:
            self.audit.check_read(name, clock, model.staleness if table.bounded else None,
                                  int(low) if idx.size else None, before, waited, arrivals)
        metrics.on_read_stats(idx.size, total, top, waited)
        if table.last_read is not None:
            table.last_read[idx] = self.clock_count
        out = table.gather(idx, sparse) if fetched is None else fetched
        return out[0] if scalar and not sparse else out

    def _fetch(self, table: _CachedTable, rows: np.ndarray, required: int | None
               ) -> tuple[float, list[int], np.ndarray | None]:
        """Fetch ``rows`` (distinct) from their shards: (seconds waited, the stamp each shard
        that waited had when the read arrived, the rows as stored when one shard sent them
        all as a private dense array, else None)."""
        waited, arrivals, stored = 0.0, [], None
        name = table.spec.name
        if self.shard_map.num_shards == 1:  # nothing to group
            groups: Sequence = ((0, slice(None), rows),)
            futures: Sequence = (self.shards[0].read(self.worker_id, name, rows, required),)
        else:
            groups = self.shard_map.split(rows)
            # ask every shard before using any answer: remote shards (Ray) serve in parallel
            futures = [self.shards[s].read(self.worker_id, name, local, required)
                       for s, _, local in groups]
        for (_, pos, _), future in zip(groups, futures, strict=True):
            values, stamp, w, arrival = future.result()
            waited += w
            if w > 0:
                arrivals.append(arrival)
            fetched = rows[pos]
            stored = table.store(fetched, values)
            table.stamp[fetched] = stamp
            table.fetched_at[fetched] = self.clock_count
            self.metrics.on_send(MESSAGE_HEADER_BYTES + fetched.size * INDEX_BYTES
                                 + values.nbytes)
        self.metrics.fetches += 1
        return waited, arrivals, stored if len(groups) == 1 else None

    def receive_push(self, push: Push) -> None:
        """Called by a shard (on another thread) when a clock completes (ESSP)."""
        table = self.tables[push.table]
        with self._inbox_lock:
            table.inbox.append(push)

    def _apply_pushes(self, table: _CachedTable) -> None:
        if not table.pushes:
            return
        with self._inbox_lock:
            pushes, table.inbox = table.inbox, []
        for push in pushes:
            self.metrics.on_send(MESSAGE_HEADER_BYTES + push.values.nbytes + push.rows.nbytes)
            flushed = self._own_increments_since(table, push)
            if flushed is None:
                continue
            newer = push.stamp > table.stamp[push.rows]
            if table.last_read is not None:  # a bounded cache takes only rows it holds
                newer &= table.stamp[push.rows] >= 0
            rows = push.rows[newer]
            values = push.values
            table.store(rows, values.take(np.flatnonzero(newer))
                        if isinstance(values, SparseRows) else values[newer])
            for sent_rows, deltas in flushed:
                _, in_rows, in_sent = np.intersect1d(
                    rows, sent_rows, assume_unique=True, return_indices=True)
                if in_rows.size:
                    table.add_to_cache(rows[in_rows], deltas.take(in_sent)
                                       if isinstance(deltas, SparseRows) else deltas[in_sent])
            table.stamp[rows] = push.stamp
            table.fetched_at[rows] = self.clock_count

    def _own_increments_since(self, table: _CachedTable, push: Push
                              ) -> list[tuple[np.ndarray, np.ndarray | SparseRows]] | None:
        """The own increments flushed after the push was made, [(rows, deltas), ...]: the
        push's values lack them.

        None (drop the push: always safe, only less fresh) when they are no longer in the
        sent log. A gradient table's cache holds server values only: nothing to add."""
        missing = range(push.own_clocks, self.clock_count)
        if table.gradient or not missing:
            return []
        logged = {clock: (rows, deltas) for clock, rows, deltas in table.sent}
        if any(clock not in logged for clock in missing):
            return None
        return [logged[clock] for clock in missing]

    # -- increments -----------------------------------------------------------------------
    def inc(self, name: str, rows, deltas) -> None:
        """Add ``deltas[i]`` to row ``rows[i]`` (repeated rows accumulate). Batched: pass
        every row a step changed in one call."""
        table = self._table(name)
        idx = self._rows(table, rows)
        arr = self._deltas(table, idx, deltas)
        if table.sparse:
            idx, arr = coalesce(idx, arr)  # the sparse stores add distinct rows
            table.pending.add(idx, arr)
            if not table.gradient:
                table.cache.add(idx, arr)
        elif isinstance(arr, SparseRows):  # O(its entries) into the dense log and cache
            arr.add_to(table.pending, idx)
            if not table.gradient:
                arr.add_to(table.cache, idx)
            if table.pending_entries >= 0:
                table.pending_entries += arr.nnz
        else:
            table.pending_entries = -1
            if table.gradient:  # the shard's rule turns it into an update: not a value
                scatter_add_rows(table.pending, idx, arr)
            else:
                scatter_add_rows_pair(table.pending, table.cache, idx, arr)
        table.mark_dirty(idx)

    def inc_one(self, name: str, row: int, col: int, value) -> None:
        """Convenience for one element; do not use in hot loops."""
        table = self._table(name)
        if not 0 <= col < table.spec.row_width:
            raise RowIndexError(
                f"table {name!r}: column {col} is out of range [0, {table.spec.row_width})"
            )
        delta = np.zeros((1, table.spec.row_width), dtype=np.result_type(value, np.int8))
        delta[0, col] = value
        self.inc(name, [row], delta)

    # -- clock ----------------------------------------------------------------------------
    def clock(self, objective: float | None = None) -> None:
        """End this worker's iteration: send coalesced increments (one message per shard)
        and advance its clock. Never blocks on other workers."""
        self._check_alive()
        # the one point of a clock where this worker holds no lock: hand the interpreter
        # to another worker that waits for it here, not inside the shard's critical section
        release_gil()
        self._send(finished=False, flush=(self.clock_count + 1) % self.push_every == 0)
        auto = self._auto_tables
        if auto:
            self.metrics.bound = max(t.model_at(self.clock_count).staleness for t in auto)
            self._learn_bounds(auto)
        self.metrics.on_clock(self.clock_count, objective)
        for table in self._bounded_tables:
            self.metrics.evictions += table.evict()
        self.clock_count += 1

    def _learn_bounds(self, auto: list[_CachedTable]) -> None:
        """staleness="auto": wait for shard 0's answer to this clock and take the bound
        schedules it carries (shard 0 decides them; a change for the next clock reaches us
        here, in time)."""
        link = self.shards[0]
        link.sync()
        answer = link.last_answer or {}
        for table in auto:
            schedule = answer.get(table.spec.name)
            if schedule is not None:
                table.bounds = [tuple(x) for x in schedule]

    def finish(self) -> None:
        """The worker function returned: flush what is left and stop counting its clock."""
        if not self._ended:
            self._send(finished=True)

    def _send(self, finished: bool, flush: bool = True) -> None:
        """One clock message per shard; with ``flush`` it carries the coalesced increments
        (Downpour's ``push_every`` holds them back, accumulating, between pushes)."""
        num_shards = self.shard_map.num_shards
        per_shard: list[dict[str, tuple[np.ndarray, np.ndarray]]] = (
            [{}] if num_shards == 1 else [{} for _ in range(num_shards)])
        nbytes = 0
        for name, table in self.tables.items() if flush or finished else ():
            if not table.n_dirty:
                continue
            rows = table.take_dirty()
            deltas = table.drain(rows)
            encoded = None
            if table.feedback is not None:  # lossy, the rest kept for the next clock
                deltas, encoded = table.feedback.step(rows, deltas, self.clock_count)
            if table.pushes:
                table.sent.append((self.clock_count, rows, deltas))
            if num_shards == 1:
                per_shard[0][name] = (rows, deltas)
            else:
                for shard, pos, local in self.shard_map.split(rows):
                    part = deltas.take(pos) if isinstance(deltas, SparseRows) else deltas[pos]
                    per_shard[shard][name] = (local, part)
            dense = rows.size * (INDEX_BYTES + table.spec.row_nbytes)
            sent = rows.size * INDEX_BYTES + (deltas.nbytes if encoded is None else encoded)
            self.metrics.push_bytes += sent
            self.metrics.push_bytes_dense += dense
            nbytes += sent
        for shard, updates in enumerate(per_shard):
            self.shards[shard].clock(self.worker_id, updates, finished=finished,
                                     step=self.clock_count)
            nbytes += MESSAGE_HEADER_BYTES
        if any(per_shard):
            self.metrics.pushes += 1
        self.metrics.on_send(nbytes)

    def end(self) -> None:
        self._ended = True

    def abort(self) -> None:
        """Another member failed: raise :class:`JobAbortedError` at the next table call."""
        self._aborted = True


def coalesce(rows: np.ndarray, deltas: np.ndarray | SparseRows
             ) -> tuple[np.ndarray, np.ndarray | SparseRows]:
    """Distinct rows with their increments summed (a batch may repeat a row)."""
    unique, inverse = np.unique(rows, return_inverse=True)
    if unique.size == rows.size:
        return rows, deltas
    if isinstance(deltas, SparseRows):
        import scipy.sparse as sp

        m = sp.csr_matrix((deltas.vals, deltas.cols, deltas.indptr), shape=deltas.shape)
        s = sp.csr_matrix((np.ones(rows.size), (inverse, np.arange(rows.size))),
                          shape=(unique.size, rows.size), dtype=deltas.dtype)
        summed = (s @ m).tocsr()
        summed.eliminate_zeros()
        return unique, SparseRows(summed.indptr.astype(np.int64),
                                  summed.indices.astype(np.int32), summed.data,
                                  deltas.width)
    out = np.zeros((unique.size, deltas.shape[1]), dtype=deltas.dtype)
    np.add.at(out, inverse, deltas)
    return unique, out
