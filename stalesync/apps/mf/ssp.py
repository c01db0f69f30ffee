"""Data-parallel MF on SSP tables: both factor matrices are parameter-server tables.

Ratings are partitioned over workers by user (balanced by ratings per user), so each user
row has one writer and only item rows are shared. Each clock a worker reads the rows its
chunk touches (one batched read per table), runs the compiled SGD pass on a local copy, and
adds the change as one batched increment per table. Any consistency model of the job
applies (BSP, SSP(s), ESSP(s), Async).
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from ... import job
from ...kernels.csr import compact_taken
from ...kernels.mf import sgd_pass
from ...ps.tables import TableSpec
from ...scheduler.blocks import partition_ids
from .sgd import Monitor, SGDConfig, TrainOutcome, Triples


@dataclass(frozen=True)
class Chunk:
    """The ratings of one clock, in local indices, with the global rows they touch."""

    user_rows: np.ndarray  # int64 global rows of P
    item_rows: np.ndarray  # int64 global rows of Q
    users: np.ndarray  # int32 local index into user_rows
    items: np.ndarray  # int32 local index into item_rows
    ratings: np.ndarray


def make_chunk(t: Triples, order: np.ndarray, user_scratch: np.ndarray,
               item_scratch: np.ndarray) -> Chunk:
    """The chunk of ratings ``t[order]``; the scratch arrays (all -1, one slot per user and
    per item) let the rows be compacted in O(ratings) instead of sorted, without gathering
    the ids first."""
    users = np.empty(order.size, dtype=np.int32)
    items = np.empty(order.size, dtype=np.int32)
    user_rows = compact_taken(t.users, order, user_scratch, users)
    item_rows = compact_taken(t.items, order, item_scratch, items)
    return Chunk(user_rows.astype(np.int64), item_rows.astype(np.int64), users, items,
                 t.ratings[order])


def partition(train: Triples, n_users: int, workers: int, clocks_per_epoch: int,
              seed: int) -> list[list[Chunk]]:
    """Per worker, its ratings cut into ``clocks_per_epoch`` chunks (shuffled by its own
    seeded generator). One thread per worker cuts them: numpy's shuffle and gathers and
    the compaction kernel release the GIL."""
    counts = np.bincount(train.users, minlength=n_users)
    owner = partition_ids(n_users, workers, seed, weights=counts)[train.users]
    n_items = int(train.items.max()) + 1 if len(train) else 0

    def chunks(w: int) -> list[Chunk]:
        mine = np.flatnonzero(owner == w)
        np.random.default_rng([seed, 11, w]).shuffle(mine)
        users = np.full(n_users, -1, dtype=np.int64)  # this thread's compaction scratch
        items = np.full(n_items, -1, dtype=np.int64)
        return [make_chunk(train, p, users, items)
                for p in np.array_split(mine, clocks_per_epoch)]

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(chunks, range(workers)))


def train_ssp(
    train: Triples,
    P0: np.ndarray,
    Q0: np.ndarray,
    mu: float,
    cfg: SGDConfig,
    monitor: Monitor,
    *,
    workers: int = 1,
    consistency: str = "ssp",
    staleness: int | None = 1,
    clocks_per_epoch: int = 1,
    run: Any = None,
) -> TrainOutcome:
    """Train on the parameter server; worker 0 reports each epoch to ``monitor`` from its
    own (bounded-stale) view of the tables. Under ``runtime="ray"`` worker 0 runs in
    another process: its history comes back with its result (no live progress bar).
    ``run`` (a RunConfig: runtime, snapshots, resume, Ray address) goes to
    :func:`stalesync.run`; a resumed worker starts at its restored clock (the factors come
    back with the tables)."""
    parts = partition(train, P0.shape[0], workers, clocks_per_epoch, cfg.seed)
    dtype = str(P0.dtype)
    tables = [TableSpec("P", P0.shape[0], P0.shape[1], dtype),
              TableSpec("Q", Q0.shape[0], Q0.shape[1], dtype)]

    def worker(ctx) -> tuple[int, list[dict[str, float]]]:
        updates = 0
        sse = 0.0
        for it in range(ctx.clock_count, cfg.epochs * clocks_per_epoch):
            epoch, c = divmod(it, clocks_per_epoch)
            chunk = ctx.data[c]
            P = ctx.read("P", chunk.user_rows)
            Q = ctx.read("Q", chunk.item_rows)
            P_old, Q_old = P.copy(), Q.copy()
            err = sgd_pass(chunk.users, chunk.items, chunk.ratings, P, Q,
                           **cfg.kernel_args(epoch, mu))
            sse += err
            updates += chunk.ratings.size
            ctx.inc("P", chunk.user_rows, P - P_old)
            ctx.inc("Q", chunk.item_rows, Q - Q_old)
            n = max(chunk.ratings.size, 1)
            ctx.clock(objective=math.sqrt(err / n))
            if c == clocks_per_epoch - 1:
                if ctx.worker_id == 0:
                    n_mine = sum(ch.ratings.size for ch in ctx.data)
                    # the whole model is read only when there is a test set to score
                    P, Q = (ctx.read("P"), ctx.read("Q")) if monitor.test is not None else (P, Q)
                    monitor.epoch_done(epoch, P, Q, math.sqrt(sse / max(n_mine, 1)))
                sse = 0.0
        return updates, list(monitor.history)

    start = time.perf_counter()
    monitor.restart_clock()
    result = job.run(
        worker, tables, data=parts, workers=workers, consistency=consistency,
        staleness=None if consistency in ("bsp", "async") else staleness,
        iterations=cfg.epochs * clocks_per_epoch, seed=cfg.seed, app="mf",
        initial_tables={"P": P0, "Q": Q0}, **run.job_options(cfg.seed),
    )
    elapsed = time.perf_counter() - start
    result.record["mode"] = "ssp"
    result.record["epochs"] = cfg.epochs
    if not monitor.history:  # worker 0 ran out of process
        monitor.history.extend(result.worker_results[0][1])
    return TrainOutcome(result.tables["P"], result.tables["Q"], result.record,
                        int(sum(r[0] for r in result.worker_results)), elapsed)
