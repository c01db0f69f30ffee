"""The object a user's ``worker(ctx)`` function receives: its data and its table API."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..faults import WorkerDelay
from ..persist.snapshot import WorkerState, metrics_state, validate_state
from .client import RESIDUAL_KEY, WorkerClient

ClockListener = Callable[[int, int, float | None], None]  # (worker, iteration, objective)


class WorkerContext:
    """What a worker function sees.

    ``ctx.read(table, rows)`` -> array, ``ctx.inc(table, rows, deltas)``,
    ``ctx.clock(objective=None)`` at the end of each iteration. ``ctx.data`` is this worker's
    partition, ``ctx.rng`` a generator seeded by (job seed, worker id).

    Snapshots (``snapshot_every=k``): ``ctx.save_state({"name": array, ...})`` names the
    arrays that, with the tables, let this worker restart; the ones last passed are copied
    when ``clock()`` completes a snapshot clock. After a restore ``ctx.load_state()`` returns
    them (None on a fresh start), ``ctx.clock_count`` is the clock to resume at and ``ctx.rng``
    continues where it was. A resumable worker therefore loops
    ``while ctx.clock_count < ctx.iterations``.
    """

    def __init__(
        self,
        client: WorkerClient,
        num_workers: int,
        data: Any,
        iterations: int | None,
        seed: int,
        delay: WorkerDelay | None = None,
        on_clock: ClockListener | None = None,
        restore: WorkerState | None = None,
        checkpoint: Callable[[WorkerContext], None] | None = None,
    ) -> None:
        self._client = client
        self.worker_id = client.worker_id
        self.num_workers = num_workers
        self.data = data
        self.iterations = iterations
        self.seed = seed
        self.rng = np.random.default_rng([seed, client.worker_id])
        self._delay = delay
        self._on_clock = on_clock
        self._clock_start = time.perf_counter()
        self._saved: dict[str, Any] | None = None
        self._restored = None
        if restore is not None:
            self._restored = {k: v for k, v in restore.arrays.items()
                              if not k.startswith(RESIDUAL_KEY)}
            client.load_residual_state(restore.arrays)
            if restore.rng_state is not None:
                self.rng.bit_generator.state = restore.rng_state
        self._checkpoint = checkpoint

    def save_state(self, arrays: dict[str, Any]) -> None:
        """Name the arrays that a snapshot stores for this worker (kept by reference;
        copied at the next snapshot clock). Numeric/bool/str arrays only: never pickled."""
        if not isinstance(arrays, dict):
            validate_state(arrays)  # raises a ConfigError naming the problem
        self._saved = arrays

    def load_state(self) -> dict[str, np.ndarray] | None:
        """The arrays saved at the snapshot this worker was restored from, else None."""
        return self._restored

    def snapshot_state(self, finished: bool = False) -> WorkerState:
        """This worker's restart state now (used by the runtimes at a snapshot clock)."""
        return WorkerState(
            clock=self._client.clock_count,
            arrays={**validate_state(self._saved or {}), **self._client.residual_state()},
            rng_state=self.rng.bit_generator.state,
            finished=finished,
            metrics=metrics_state(self._client.metrics, self._client.audit.state()),
        )

    @property
    def clock_count(self) -> int:
        """Completed iterations of this worker (its current clock)."""
        return self._client.clock_count

    def read(self, table: str, rows=None, *, sparse: bool = False):
        """Rows of ``table`` (see :meth:`WorkerClient.read`); ``sparse=True`` returns a
        :class:`~stalesync.ps.row_batch.SparseRows` batch."""
        return self._client.read(table, rows, sparse=sparse)

    def inc(self, table: str, rows, deltas) -> None:
        self._client.inc(table, rows, deltas)

    def inc_one(self, table: str, row: int, col: int, value) -> None:
        self._client.inc_one(table, row, col, value)

    def clock(self, objective: float | None = None) -> None:
        """End the iteration. ``objective`` (e.g. this worker's log-likelihood share) goes
        into the run record."""
        if self._delay is not None:
            # stretch only this clock's compute, not the time it spent blocked in reads
            compute = time.perf_counter() - self._clock_start - self._client.metrics.clock_wait_s
            extra = self._delay.extra_seconds(max(compute, 0.0))
            if extra > 0:
                time.sleep(extra)
        iteration = self._client.clock_count
        self._client.clock(objective)
        if self._on_clock is not None:
            self._on_clock(self.worker_id, iteration, objective)
        if self._checkpoint is not None:
            self._checkpoint(self)
        self._clock_start = time.perf_counter()
