"""Block-scheduled MF: DSGD (a barrier per sub-round) and Fugue (no idle waiting).

Users and items are each cut into ``d`` blocks (balanced by ratings), the ratings sorted
into the ``d x d`` grid, and :class:`~stalesync.scheduler.blocks.BlockRotation` hands every
worker thread a set of blocks per sub-round whose rows and columns no other worker touches.
The threads update the shared factor arrays in place with the compiled (GIL-free) SGD
kernel: disjoint rows need no locks and no parameter-server messages.

- ``dsgd``: each worker makes one pass over its blocks, then waits at the barrier.
- ``fugue``: a worker that finishes its pass before the slowest one keeps making extra
  passes over its own blocks (in small chunks, so it notices quickly when everyone is done)
  instead of idling; the rotation then moves on. Extra passes are capped per sub-round.

Stragglers get the same injected delay as parameter-server workers:
``Stragglers.for_worker(w)`` stretches every piece of compute by its factor.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...errors import ConfigError
from ...faults import Stragglers, WorkerDelay
from ...kernels.mf import sgd_pass
from ...metrics import WorkerMetrics, build_run_record
from ...scheduler.blocks import BlockRotation, group_by_block, partition_ids
from .sgd import Monitor, SGDConfig, TrainOutcome, Triples

BLOCK_MODES = ("dsgd", "fugue")
EXTRA_CHUNKS = 8  # Fugue extra passes run in 1/8-block pieces


@dataclass
class BlockedData:
    """Ratings sorted into a ``d x d`` grid (shuffled within each block), in *blocked* ids.

    Users (items) are renumbered so that each block's rows are contiguous in the factor
    arrays: threads working on different blocks then never write to the same cache line
    (interleaved rows would make them fight over shared lines: false sharing halved the
    2-thread throughput). ``user_new[u]`` is the blocked id of original user ``u``.
    """

    triples: Triples
    offsets: np.ndarray  # block (r, c) is [offsets[r*d+c], offsets[r*d+c+1])
    user_block: np.ndarray  # block of each original user id
    item_block: np.ndarray
    user_new: np.ndarray  # blocked id of each original user id
    item_new: np.ndarray
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


def _contiguous_ids(block: np.ndarray) -> np.ndarray:
    new = np.empty(block.size, dtype=np.int64)
    new[np.argsort(block, kind="stable")] = np.arange(block.size)
    return new


def block_data(train: Triples, n_users: int, n_items: int, d: int, seed: int) -> BlockedData:
    user_block = partition_ids(n_users, d, seed, np.bincount(train.users, minlength=n_users))
    item_block = partition_ids(n_items, d, seed + 1, np.bincount(train.items, minlength=n_items))
    user_new, item_new = _contiguous_ids(user_block), _contiguous_ids(item_block)
    shuffled = train.take(np.random.default_rng([seed, 13]).permutation(len(train)))
    order, offsets = group_by_block(user_block[shuffled.users], item_block[shuffled.items], d)
    t = shuffled.take(order)
    blocked = Triples(user_new[t.users].astype(np.int32), item_new[t.items].astype(np.int32),
                      t.ratings)
    return BlockedData(blocked, offsets, user_block, item_block, user_new, item_new, d)


@dataclass
class _Worker:
    """One worker thread's state and its counters."""

    wid: int
    delay: WorkerDelay | None
    metrics: WorkerMetrics
    updates: int = 0
    extra_updates: int = 0
    sse: float = 0.0
    trace: list[dict[str, Any]] = field(default_factory=list)


class BlockTrainer:
    """Runs DSGD or Fugue over worker threads sharing ``P`` and ``Q``."""

    def __init__(self, data: BlockedData, P: np.ndarray, Q: np.ndarray, mu: float,
                 cfg: SGDConfig, monitor: Monitor, *, workers: int, mode: str = "dsgd",
                 stragglers: Stragglers | None = None, max_extra_passes: int = 2,
                 trace: bool = False) -> None:
        if mode not in BLOCK_MODES:
            raise ConfigError(f"block mode must be one of {BLOCK_MODES}, got {mode!r}")
        if data.num_blocks < workers:
            raise ConfigError(
                f"num_blocks ({data.num_blocks}) must be >= workers ({workers}): a sub-round "
                "has num_blocks disjoint blocks to share out"
            )
        self.data, self.mu, self.cfg = data, mu, cfg
        self.P, self.Q = data.to_blocked(P, Q)
        self.monitor, self.mode, self.workers = monitor, mode, workers
        self.max_extra_passes = max_extra_passes
        self.tracing = trace
        self.rotation = BlockRotation(data.num_blocks, seed=cfg.seed)
        self.schedule = list(self.rotation.sub_rounds(cfg.epochs))
        self.stragglers = stragglers
        self._done = 0
        self._lock = threading.Lock()
        self._barrier = threading.Barrier(workers, action=self._sub_round_ended)
        self._step = 0
        self._workers: list[_Worker] = []

    # -- one worker -----------------------------------------------------------------------
    def _compute(self, w: _Worker, lo: int, hi: int, epoch: int) -> float:
        t = self.data.triples
        start = time.perf_counter()
        sse = sgd_pass(t.users, t.items, t.ratings, self.P, self.Q, start=lo, stop=hi,
                       **self.cfg.kernel_args(epoch, self.mu))
        if w.delay is not None and w.delay.factor > 1:
            time.sleep((w.delay.factor - 1.0) * (time.perf_counter() - start))
        return sse

    def _pass(self, w: _Worker, blocks: list[tuple[int, int]], epoch: int) -> None:
        for block in blocks:
            lo, hi = self.data.span(block)
            w.sse += self._compute(w, lo, hi, epoch)
            w.updates += hi - lo
        if w.delay is not None and w.delay.pause_prob and w.delay.rng.random() < w.delay.pause_prob:
            time.sleep(w.delay.pause_s)

    def _extra(self, w: _Worker, blocks: list[tuple[int, int]], epoch: int) -> None:
        """Fugue: extra passes over our own blocks, in small pieces, until all are done."""
        pieces = [piece for block in blocks
                  for piece in _pieces(*self.data.span(block), EXTRA_CHUNKS)]
        if not pieces:
            return
        budget = self.max_extra_passes * len(pieces)
        k = 0
        while k < budget and self._done < self.workers:
            lo, hi = pieces[k % len(pieces)]
            self._compute(w, lo, hi, epoch)
            w.updates += hi - lo
            w.extra_updates += hi - lo
            k += 1

    def _run_worker(self, w: _Worker) -> None:
        epoch = -1
        for assignment in self.schedule:
            if assignment.round != epoch:
                if epoch >= 0:
                    self._end_epoch(w, epoch)
                epoch = assignment.round
            blocks = assignment.for_workers(self.workers)[w.wid]
            self._pass(w, blocks, epoch)
            if self.tracing:
                w.trace.append(self._trace_entry(assignment, w.wid, blocks))
            with self._lock:
                self._done += 1
            if self.mode == "fugue":
                self._extra(w, blocks, epoch)
            waited = time.perf_counter()
            self._barrier.wait()
            w.metrics.add_wait(time.perf_counter() - waited)
        self._end_epoch(w, epoch)

    def _end_epoch(self, w: _Worker, epoch: int) -> None:
        n = max(1, len(self.data.triples) // self.workers)
        w.metrics.on_clock(epoch, math.sqrt(w.sse / n))
        w.sse = 0.0

    def _trace_entry(self, assignment, wid: int, blocks) -> dict[str, Any]:
        t = self.data.triples
        spans = [self.data.span(b) for b in blocks]
        idx = np.concatenate([np.arange(lo, hi) for lo, hi in spans]) if spans else np.zeros(0, int)
        users_orig = np.argsort(self.data.user_new)  # blocked id -> original id
        items_orig = np.argsort(self.data.item_new)
        return {"round": assignment.round, "sub_round": assignment.sub_round, "worker": wid,
                "blocks": list(blocks), "users": np.unique(users_orig[t.users[idx]]),
                "items": np.unique(items_orig[t.items[idx]])}

    # -- barrier action: runs once per sub-round with every worker parked ------------------
    def _sub_round_ended(self) -> None:
        assignment = self.schedule[self._step]
        self._step += 1
        self._done = 0
        last_of_round = assignment.sub_round == self.data.num_blocks - 1
        if last_of_round:
            n = len(self.data.triples)
            sse = sum(w.sse for w in self._workers)
            P, Q = self.data.to_original(self.P, self.Q)
            self.monitor.epoch_done(assignment.round, P, Q, math.sqrt(sse / max(n, 1)))

    # -- driver ---------------------------------------------------------------------------
    def run(self) -> TrainOutcome:
        start = time.perf_counter()
        self.monitor.restart_clock()
        self._workers = [
            _Worker(w, self.stragglers.for_worker(w) if self.stragglers else None,
                    WorkerMetrics(w, start))
            for w in range(self.workers)
        ]
        errors: list[BaseException] = []

        def body(w: _Worker) -> None:
            try:
                self._run_worker(w)
            except threading.BrokenBarrierError:
                pass
            except BaseException as exc:  # noqa: BLE001 - re-raised by the driver
                errors.append(exc)
                self._barrier.abort()

        threads = [threading.Thread(target=body, args=(w,), name=f"mf-block-{w.wid}", daemon=True)
                   for w in self._workers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        elapsed = time.perf_counter() - start
        record = build_run_record(
            app="mf", runtime="embedded-threads", consistency=self.mode, staleness=0,
            workers=self.workers, iterations=self.cfg.epochs, wall_time_s=elapsed,
            metrics=[w.metrics for w in self._workers],
            extra={"mode": self.mode, "num_blocks": self.data.num_blocks,
                   "extra_updates": int(sum(w.extra_updates for w in self._workers))},
        )
        trace = [e for w in self._workers for e in w.trace] if self.tracing else None
        P, Q = self.data.to_original(self.P, self.Q)
        return TrainOutcome(P, Q, record, int(sum(w.updates for w in self._workers)),
                            elapsed, trace)


def _pieces(lo: int, hi: int, k: int) -> list[tuple[int, int]]:
    bounds = np.linspace(lo, hi, k + 1).astype(np.int64)
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]
