"""An exact checker of the consistency guarantee, shared by the runtime tests.

Every worker ``w`` adds 1 to column ``w`` of the rows its seeded plan picks at each clock, and
always to row 0 (the clock counter). A worker's increments reach a shard in clock order, so
column ``w`` of any row value tells exactly how many of ``w``'s clocks it includes (a prefix).
From that, each read is checked exactly:

- bounded models (bsp/ssp/essp, staleness s): the read at clock c includes *every* increment
  from clocks < c - s of every worker (row 0 then also proves nobody is more than s clocks
  behind the reader);
- every model: the reader sees all of its own increments (read-my-writes), and nothing that
  was never sent;
- at the end: every table value equals the exact sum of all planned increments.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

import stalesync as ss

TABLE = "probe"


@dataclass
class Scenario:
    workers: int
    iterations: int
    rows: int
    consistency: str
    staleness: int
    shards: int = 1
    seed: int = 0
    max_delay_ms: float = 2.0
    slow_worker: int | None = None  # sleeps extra every clock
    pause_prob: float = 0.0
    runtime: str = "embedded"
    crash_at: tuple[int, int] | None = None  # (worker, clock): raise RuntimeError there
    storage: str = "dense"  # how the shards hold the table (TableSpec.storage)
    cache_rows: int | None = None  # a bounded worker cache (TableSpec.cache_rows)
    sparse_io: bool = False  # read and increment as SparseRows batches
    extra_options: dict = field(default_factory=dict)

    def plan(self) -> np.ndarray:
        """plan[w, k, x]: does worker w add to row x at clock k."""
        rng = np.random.default_rng(self.seed)
        plan = rng.random((self.workers, self.iterations, self.rows)) < 0.6
        plan[:, :, 0] = True
        return plan

    def delays(self) -> np.ndarray:
        rng = np.random.default_rng(self.seed + 1)
        d = rng.choice([0.0, 0.25, 1.0], size=(self.workers, self.iterations)) * self.max_delay_ms
        if self.slow_worker is not None:
            d[self.slow_worker] += 2 * self.max_delay_ms
        return d / 1000.0


@dataclass
class ReadLog:
    worker: int
    clock: int
    rows: np.ndarray
    values: np.ndarray
    after_inc: bool


def make_worker(scenario: Scenario, plan: np.ndarray, delays: np.ndarray, logs: list):
    lock = threading.Lock()

    def read(ctx: ss.WorkerContext, rows: np.ndarray) -> np.ndarray:
        if scenario.sparse_io:
            return ctx.read(TABLE, rows, sparse=True).to_dense()
        return ctx.read(TABLE, rows)

    def worker(ctx: ss.WorkerContext) -> None:
        w = ctx.worker_id
        rng = np.random.default_rng([scenario.seed, w, 7])
        mine: list[ReadLog] = []
        while ctx.clock_count < scenario.iterations:  # from a snapshot's clock on a resume
            k = ctx.clock_count
            if scenario.crash_at == (w, k):
                raise RuntimeError(f"injected crash of worker {w} at clock {k}")
            time.sleep(delays[w, k])
            rows = np.unique(np.r_[0, rng.choice(scenario.rows, size=3)])
            mine.append(ReadLog(w, ctx.clock_count, rows, read(ctx, rows), False))
            inc_rows = np.flatnonzero(plan[w, k])
            deltas = np.zeros((inc_rows.size, scenario.workers), dtype=np.int64)
            deltas[:, w] = 1
            ctx.inc(TABLE, inc_rows,
                    ss.SparseRows.from_dense(deltas) if scenario.sparse_io else deltas)
            mine.append(ReadLog(w, ctx.clock_count, rows, read(ctx, rows), True))
            ctx.clock()
        with lock:
            logs.extend(mine)

    return worker


def run_scenario(scenario: Scenario) -> tuple[ss.JobResult, list[ReadLog], np.ndarray]:
    plan = scenario.plan()
    logs: list[ReadLog] = []
    stragglers = (
        ss.Stragglers(pause_prob=scenario.pause_prob, pause_s=0.002, seed=scenario.seed)
        if scenario.pause_prob
        else None
    )
    result = ss.run(
        make_worker(scenario, plan, scenario.delays(), logs),
        [ss.TableSpec(TABLE, scenario.rows, scenario.workers, "int64",
                      storage=scenario.storage, cache_rows=scenario.cache_rows)],
        workers=scenario.workers,
        consistency=scenario.consistency,
        staleness=None if scenario.consistency in ("bsp", "async") else scenario.staleness,
        iterations=scenario.iterations,
        shards=scenario.shards,
        stragglers=stragglers,
        seed=scenario.seed,
        runtime=scenario.runtime,
        **scenario.extra_options,
    )
    return result, logs, plan


def violations(scenario: Scenario, logs: list[ReadLog], plan: np.ndarray) -> list[str]:
    """Every way the reads broke the guarantee (empty list = all good)."""
    s = 0 if scenario.consistency == "bsp" else scenario.staleness
    bounded = scenario.consistency != "async"
    # prefix[w, p, x] = increments of w to row x from clocks < p
    prefix = np.concatenate(
        [
            np.zeros((scenario.workers, 1, scenario.rows), dtype=np.int64),
            np.cumsum(plan, axis=1, dtype=np.int64),
        ],
        axis=1,
    )
    found = []
    for log in logs:
        c, r = log.clock, log.worker
        for i, x in enumerate(log.rows):
            for w in range(scenario.workers):
                seen = int(log.values[i, w])
                possible = prefix[w, :, x]
                where = f"worker {r} at clock {c} read row {x}: column {w} = {seen}"
                if w == r:
                    own = int(prefix[r, c, x] + (plan[r, c, x] if log.after_inc else 0))
                    if seen != own:
                        found.append(f"{where}, own increments are {own} (read-my-writes)")
                    continue
                clocks_in = np.flatnonzero(possible == seen)
                if clocks_in.size == 0:
                    found.append(f"{where}, not a prefix of worker {w}'s increments")
                    continue
                if bounded and c - s > 0 and seen < prefix[w, min(c - s, scenario.iterations), x]:
                    found.append(
                        f"{where}, but clocks < {c - s} of worker {w} add up to "
                        f"{prefix[w, c - s, x]} (staleness {s} violated)"
                    )
    return found


def exact_sum_violations(result: ss.JobResult, plan: np.ndarray) -> list[str]:
    expected = plan.sum(axis=1).T.astype(np.int64)  # (rows, workers)
    got = result.tables[TABLE]
    got = got.toarray() if sp.issparse(got) else got  # a sparse table's result is CSR
    if not np.array_equal(got, expected):
        bad = np.argwhere(got != expected)[:5]
        return [
            f"final table differs at {bad.tolist()}: got {got[tuple(bad.T)]}, "
            f"expected {expected[tuple(bad.T)]}"
        ]
    return []
