"""Block-scheduled MF on the model-parallel scheduler: DSGD and Fugue.

Users and items are each cut into ``d`` blocks (balanced by ratings) and the ratings sorted
into the ``d x d`` grid. :class:`~stalesync.scheduler.blocks.BlockRotation` gives every worker,
each sub-round, blocks whose rows and columns no other worker touches, so workers update
them in parallel with the compiled SGD kernel and no locks.

How it maps onto the scheduler's push / pull:

- a worker's data shard (:class:`BlockShard`) holds the ratings of its row blocks and the
  user factors of those rows: row block ``k`` stays on worker ``k % workers`` for the whole
  run (only item blocks rotate);
- ``prepare`` attaches the item factors of each task's column block (on the embedded
  backend a view of the driver's array, on Ray a copy that travels);
- ``push`` runs SGD over the worker's blocks and returns the updated item blocks;
- ``pull`` puts them back (nothing to copy when they are views).

``dsgd``: each worker makes one pass over its blocks per sub-round, then the round ends.
``fugue`` (slow-worker agnostic): a worker that finishes its pass early keeps making extra
passes over its own blocks, in small pieces, instead of idling. How long: in the previous
sub-round the slowest pass took ``r`` times as long as this worker's, so after its pass of
``t`` seconds it goes on for ``(r - 1) t`` (capped at ``max_extra_passes``). A ratio, not a
time, because the blocks of consecutive sub-rounds differ in size.
Because the scheduler runs it, it gets both backends, snapshots, resume and recovery.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...errors import ConfigError
from ...kernels.mf import sgd_pass
from ...observe.metrics import build_run_record
from ...ps.clock_records import WorkerMetrics
from ...runtime.backend import own
from ...scheduler import BlockRotation, Driver, Feedback, Plan
from ...scheduler.blocks import group_by_block, partition_ids
from .sgd import Monitor, SGDConfig, TrainOutcome, Triples

BLOCK_MODES = ("dsgd", "fugue")
EXTRA_CHUNKS = 8  # Fugue extra passes run in 1/8-block pieces


@dataclass
class BlockedData:
    """Ratings sorted into a ``d x d`` grid (shuffled within each block), in *blocked* ids.

    Users (items) are renumbered so that each block's rows are contiguous in the factor
    arrays: ``user_start[r]:user_start[r + 1]`` are the rows of user block ``r``. Threads
    working on different blocks then never write to the same cache line (interleaved rows
    made them fight over shared lines: false sharing halved the 2-thread throughput).
    ``local_users``/``local_items`` are each rating's row inside its block.
    """

    triples: Triples
    offsets: np.ndarray  # block (r, c) is [offsets[r*d+c], offsets[r*d+c+1])
    user_block: np.ndarray  # block of each original user id
    item_block: np.ndarray
    user_new: np.ndarray  # blocked id of each original user id
    item_new: np.ndarray
    user_start: np.ndarray  # first blocked user id of each block (d + 1 entries)
    item_start: np.ndarray
    local_users: np.ndarray  # int32, row inside the user block
    local_items: np.ndarray
    num_blocks: int

    def span(self, block: tuple[int, int]) -> tuple[int, int]:
        k = block[0] * self.num_blocks + block[1]
        return int(self.offsets[k]), int(self.offsets[k + 1])

    def to_blocked(self, P: np.ndarray, Q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Factor arrays reordered into blocked ids (copies)."""
        Pb, Qb = np.empty_like(P), np.empty_like(Q)
        Pb[self.user_new], Qb[self.item_new] = P, Q
        return Pb, Qb

    def to_original(self, Pb: np.ndarray, Qb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return Pb[self.user_new], Qb[self.item_new]

    def rows(self, start: np.ndarray, block: int) -> slice:
        return slice(int(start[block]), int(start[block + 1]))


def _contiguous_ids(block: np.ndarray) -> np.ndarray:
    new = np.empty(block.size, dtype=np.int64)
    new[np.argsort(block, kind="stable")] = np.arange(block.size)
    return new


def block_data(train: Triples, n_users: int, n_items: int, d: int, seed: int) -> BlockedData:
    user_block = partition_ids(n_users, d, seed, np.bincount(train.users, minlength=n_users))
    item_block = partition_ids(n_items, d, seed + 1, np.bincount(train.items, minlength=n_items))
    user_new, item_new = _contiguous_ids(user_block), _contiguous_ids(item_block)
    user_start = np.searchsorted(np.sort(user_block), np.arange(d + 1))
    item_start = np.searchsorted(np.sort(item_block), np.arange(d + 1))
    shuffled = train.take(np.random.default_rng([seed, 13]).permutation(len(train)))
    order, offsets = group_by_block(user_block[shuffled.users], item_block[shuffled.items], d)
    t = shuffled.take(order)
    ub, ib = user_block[t.users], item_block[t.items]
    users, items = user_new[t.users], item_new[t.items]
    blocked = Triples(users.astype(np.int32), items.astype(np.int32), t.ratings)
    return BlockedData(blocked, offsets, user_block, item_block, user_new, item_new,
                       user_start, item_start, (users - user_start[ub]).astype(np.int32),
                       (items - item_start[ib]).astype(np.int32), d)


class BlockShard:
    """One worker's share: the ratings of its row blocks and their user factors (slices:
    views of the whole arrays on the embedded backend, only these rows on Ray)."""

    def __init__(self, data: BlockedData, row_blocks: list[int], Pb: np.ndarray) -> None:
        d = data.num_blocks
        self.P = {r: Pb[data.rows(data.user_start, r)] for r in row_blocks}
        self.ratings: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
        for r in row_blocks:
            lo, hi = int(data.offsets[r * d]), int(data.offsets[(r + 1) * d])
            self.ratings[r] = (data.local_users[lo:hi], data.local_items[lo:hi],
                               data.triples.ratings[lo:hi],
                               data.offsets[r * d:(r + 1) * d + 1] - lo)

    def span(self, r: int, c: int) -> tuple[int, int]:
        offsets = self.ratings[r][3]
        return int(offsets[c]), int(offsets[c + 1])


@dataclass(frozen=True)
class BlockTask:
    """What one worker does in one sub-round."""

    blocks: tuple[tuple[int, int], ...]
    Q: tuple[np.ndarray, ...]  # item factors of each block's column block
    epoch: int
    extra_ratio: float  # Fugue: extra passes for this times the mandatory pass's time
    max_extra_pieces: int


class BlockProgram:
    """The worker side of block-rotation SGD (no state of its own)."""

    def __init__(self, cfg: SGDConfig, mu: float) -> None:
        self.cfg, self.mu = cfg, mu

    def _sgd(self, shard: BlockShard, r: int, Qc: np.ndarray, lo: int, hi: int,
             epoch: int) -> float:
        users, items, ratings, _ = shard.ratings[r]
        return sgd_pass(users, items, ratings, shard.P[r], Qc, start=lo, stop=hi,
                        **self.cfg.kernel_args(epoch, self.mu))

    def push(self, shard: BlockShard, task: BlockTask) -> dict[str, Any]:
        start = time.perf_counter()
        sse, updates = 0.0, 0
        Qs = [own(Qc) for Qc in task.Q]  # views of the driver's array, or copies (Ray)
        for (r, c), Qc in zip(task.blocks, Qs, strict=True):
            lo, hi = shard.span(r, c)
            sse += self._sgd(shard, r, Qc, lo, hi, task.epoch)
            updates += hi - lo
        mandatory = time.perf_counter() - start
        extra = 0
        pieces = [(r, Qc, a, b) for (r, c), Qc in zip(task.blocks, Qs, strict=True)
                  for a, b in _pieces(*shard.span(r, c), EXTRA_CHUNKS)]
        k = 0
        until = start + mandatory * (1.0 + task.extra_ratio)
        while pieces and k < task.max_extra_pieces and time.perf_counter() < until:
            r, Qc, a, b = pieces[k % len(pieces)]
            self._sgd(shard, r, Qc, a, b, task.epoch)
            extra += b - a
            k += 1
        return {"Q": Qs, "sse": sse, "updates": updates, "extra": extra,
                "extra_s": time.perf_counter() - start - mandatory}

    def sync(self, shard: BlockShard, plan: Plan, changes: Any) -> None:
        return None  # nothing to fold in: item blocks arrive with each task

    def state(self, shard: BlockShard) -> dict[str, np.ndarray]:
        return {f"P{r}": P.copy() for r, P in shard.P.items()}

    def load_state(self, shard: BlockShard, state: dict[str, np.ndarray]) -> None:
        for r, P in shard.P.items():
            P[...] = state[f"P{r}"]


class BlockMF:
    """The driver side: owns the item factors, hands out item blocks, takes them back."""

    def __init__(self, data: BlockedData, Qb: np.ndarray, cfg: SGDConfig, mu: float,
                 mode: str, workers: int, max_extra_passes: int, trace: bool) -> None:
        self.data, self.Q, self.mode, self.workers = data, Qb, mode, workers
        self.program = BlockProgram(cfg, mu)
        self.max_extra_passes = max_extra_passes
        self.extra_ratio = np.zeros(workers)
        self.sse = np.zeros(workers)
        self.updates = np.zeros(workers, dtype=np.int64)
        self.extra = np.zeros(workers, dtype=np.int64)
        self.tracing = trace
        self.trace: list[dict[str, Any]] = []
        self._extra_s = np.zeros(workers)

    def _Qc(self, c: int) -> np.ndarray:
        return self.Q[self.data.rows(self.data.item_start, c)]

    def prepare(self, plan: Plan) -> list[BlockTask]:
        epoch = int(plan.info["round_of_rotation"])
        fugue = self.mode == "fugue"
        tasks = []
        for w, blocks in enumerate(plan.tasks):
            tasks.append(BlockTask(
                tuple(blocks), tuple(self._Qc(c) for _, c in blocks), epoch,
                float(self.extra_ratio[w]) if fugue else 0.0,
                self.max_extra_passes * EXTRA_CHUNKS * len(blocks) if fugue else 0))
        return tasks

    def pull(self, plan: Plan, partials: list[dict[str, Any]]) -> None:
        for w, (blocks, part) in enumerate(zip(plan.tasks, partials, strict=True)):
            for (_, c), Qc in zip(blocks, part["Q"], strict=True):
                target = self._Qc(c)
                if not np.shares_memory(target, Qc):
                    target[...] = Qc
            self.sse[w] += part["sse"]
            self.updates[w] += part["updates"] + part["extra"]
            self.extra[w] += part["extra"]
            self._extra_s[w] = part["extra_s"]
            if self.tracing:
                self.trace.append(self._trace_entry(plan, w, blocks))
        return None

    def observe(self, plan: Plan, feedback: Feedback) -> None:
        """Fugue's ratios: how much longer the slowest worker's pass (busy time, injected
        delays included, less extra passes) took than each worker's own this sub-round."""
        if feedback.seconds is not None:
            mandatory = np.maximum(feedback.seconds - self._extra_s, 1e-9)
            self.extra_ratio = np.maximum(mandatory.max() / mandatory - 1.0, 0.0)

    def state(self) -> dict[str, np.ndarray]:
        return {"Q": self.Q.copy()}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.Q[...] = state["Q"]

    def _trace_entry(self, plan: Plan, w: int, blocks) -> dict[str, Any]:
        data = self.data
        users_orig = np.argsort(data.user_new)  # blocked id -> original id
        items_orig = np.argsort(data.item_new)
        spans = [data.span(b) for b in blocks]
        idx = (np.concatenate([np.arange(lo, hi) for lo, hi in spans]) if spans
               else np.zeros(0, int))
        t = data.triples
        return {"round": plan.info["round_of_rotation"], "sub_round": plan.info["sub_round"],
                "worker": w, "blocks": list(blocks), "users": np.unique(users_orig[t.users[idx]]),
                "items": np.unique(items_orig[t.items[idx]])}


def train_blocks(data: BlockedData, P0: np.ndarray, Q0: np.ndarray, mu: float,
                 cfg: SGDConfig, monitor: Monitor, *, workers: int, mode: str,
                 max_extra_passes: int, trace: bool, run: Any) -> TrainOutcome:
    """Train by block rotation on the scheduler (``run``: a RunConfig)."""
    if mode not in BLOCK_MODES:
        raise ConfigError(f"block mode must be one of {BLOCK_MODES}, got {mode!r}")
    d = data.num_blocks
    if d < workers:
        raise ConfigError(f"num_blocks ({d}) must be >= workers ({workers}): a sub-round has "
                          "num_blocks disjoint blocks to share out", param="num_blocks")
    Pb, Qb = data.to_blocked(P0, Q0)
    app = BlockMF(data, Qb, cfg, mu, mode, workers, max_extra_passes, trace)
    shards = [BlockShard(data, [r for r in range(d) if r % workers == w], Pb)
              for w in range(workers)]
    options = run.driver_options(cfg.seed)
    start = time.perf_counter()
    monitor.restart_clock()
    metrics = [WorkerMetrics(w, start) for w in range(workers)]
    with Driver(app, shards, workers=workers, seed=cfg.seed, **options) as drv:
        drv.set_schedule(BlockRotation(d, seed=cfg.seed), d * d)
        first_round = drv.stats.rounds
        wait0 = drv.stats.wait_s.copy()
        n = max(len(data.triples), 1)
        while drv.stats.rounds < cfg.epochs * d:  # a clock is a sub-round
            drv.step()
            if drv.stats.rounds % d:
                continue
            epoch = drv.stats.rounds // d - 1
            drv.flush()
            if drv.remote:  # the user factors live on the workers: fetch them
                for part in drv.map(_user_factors):
                    for r, P in part.items():
                        Pb[data.rows(data.user_start, r)] = P
            monitor.epoch_done(epoch, *data.to_original(Pb, Qb),
                               math.sqrt(float(app.sse.sum()) / n))
            for w in range(workers):
                metrics[w].add_wait(float(drv.stats.wait_s[w] - wait0[w]))
                metrics[w].on_clock(epoch, math.sqrt(app.sse[w] / max(n / workers, 1)))
            wait0 = drv.stats.wait_s.copy()
            app.sse[:] = 0.0
        rounds = drv.stats.rounds
        recovery = drv.recovery.record()
        busy = drv.stats.busy_s.tolist()
        startup = drv.startup_s
    elapsed = time.perf_counter() - start
    record = build_run_record(
        app="mf", strategy=mode, runtime=run.runtime, consistency="bsp", staleness=0,
        workers=workers, clocks=rounds, epochs=cfg.epochs, wall_time_s=elapsed,
        metrics=metrics,
        extra={"mode": mode, "num_blocks": d, "extra_updates": int(app.extra.sum()),
               "worker_extra_updates": app.extra.tolist(), "worker_busy_s": busy,
               "startup_s": startup,
               **recovery, **({"resumed_from_clock": first_round} if run.resume else {})},
    )
    P, Q = data.to_original(Pb, Qb)
    return TrainOutcome(P, Q, record, int(app.updates.sum()), elapsed,
                        app.trace if trace else None)


def _user_factors(shard: BlockShard) -> dict[int, np.ndarray]:
    return shard.P


def _pieces(lo: int, hi: int, k: int) -> list[tuple[int, int]]:
    bounds = np.linspace(lo, hi, k + 1).astype(np.int64)
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]
