"""The object a user's ``worker(ctx)`` function receives: its data and its table API."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .client import WorkerClient
from .faults import WorkerDelay

ClockListener = Callable[[int, int, float | None], None]  # (worker, iteration, objective)


class WorkerContext:
    """What a worker function sees.

    ``ctx.read(table, rows)`` -> array, ``ctx.inc(table, rows, deltas)``,
    ``ctx.clock(objective=None)`` at the end of each iteration. ``ctx.data`` is this worker's
    partition, ``ctx.rng`` a generator seeded by (job seed, worker id).
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

    @property
    def clock_count(self) -> int:
        """Completed iterations of this worker (its current clock)."""
        return self._client.clock_count

    def read(self, table: str, rows=None) -> np.ndarray:
        return self._client.read(table, rows)

    def inc(self, table: str, rows, deltas) -> None:
        self._client.inc(table, rows, deltas)

    def inc_one(self, table: str, row: int, col: int, value) -> None:
        self._client.inc_one(table, row, col, value)

    def clock(self, objective: float | None = None) -> None:
        """End the iteration. ``objective`` (e.g. this worker's log-likelihood share) goes
        into the run record."""
        if self._delay is not None:
            extra = self._delay.extra_seconds(time.perf_counter() - self._clock_start)
            if extra > 0:
                time.sleep(extra)
        iteration = self._client.clock_count
        self._client.clock(objective)
        if self._on_clock is not None:
            self._on_clock(self.worker_id, iteration, objective)
        self._clock_start = time.perf_counter()
