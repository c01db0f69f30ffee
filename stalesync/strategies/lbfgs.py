"""``lbfgs``: a batch method through the tables (DistBelief's Sandblaster L-BFGS, Spark
MLlib's L-BFGS).

Every worker holds a partition of the examples. Worker 0 is the coordinator: it runs
:func:`scipy.optimize.minimize` (L-BFGS-B, the same optimiser and stopping rules as
scikit-learn's ``LogisticRegression(solver="lbfgs")``), and each time the optimiser asks
for the objective at ``theta``:

1. the coordinator adds ``theta - (what the table holds)`` to the parameter table and
   zeroes the gradient table (adds minus what it read last time), then clocks;
2. every worker reads ``theta``, adds its partition's summed loss and gradient to the
   gradient table, and clocks;
3. the coordinator reads the gradient table: the sum over all partitions.

With one worker there is nothing to sum: the coordinator calls its partition's pass
directly (two clocks an evaluation were a tenth of a small fit).

The job runs BSP (two clocks per evaluation), so step 2 sees step 1's ``theta`` and step 3
sees every partition's sum: the optimiser gets the exact full-batch objective, whatever
the number of workers, and bounded staleness does not apply (a stale gradient would break
L-BFGS's line search). The penalty is added on the coordinator. When the optimiser stops,
the coordinator raises a flag in the parameter table and the workers return.

Snapshots (``snapshot_every`` L-BFGS iterations) hold every answer the objective gave so
far: its value and gradient, and a digest of the ``theta`` it was asked at. scipy keeps its
curvature pairs and line-search state inside the optimiser, where nothing can save them;
but the optimiser is deterministic, so a resumed fit runs it again from the start and serves
the saved answers (no pass over the data), which rebuilds that state exactly; then it
evaluates anew. A resumed fit ends bit for bit where the uninterrupted one does, and refuses
a snapshot whose ``theta`` digests the optimiser does not reproduce (another scipy, another
problem). The snapshot is written by the coordinator (worker 0), so on a cluster the
directory must be one that worker 0's node can write.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from scipy.optimize import minimize as scipy_minimize
from threadpoolctl import threadpool_limits

from .. import job
from ..persist.snapshot import (
    SnapshotDirLock,
    SnapshotError,
    WorkerState,
    check_meta,
    load_snapshot,
    snapshot_root,
    write_snapshot,
)
from ..ps.tables import TableSpec

PARAMS, GRADIENT = "lbfgs_params", "lbfgs_gradient"
WIDTH = 1024  # a vector of P values is a table of ceil(P / WIDTH) rows of WIDTH
MAX_LINE_SEARCH = 50  # as scikit-learn's LogisticRegression

Penalty = Callable[[np.ndarray], tuple[float, np.ndarray]]


class BatchProblem(Protocol):
    """One worker's partition of a smooth objective ``sum_i loss_i(theta)``."""

    num_examples: int

    def loss_grad(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """The partition's summed loss at ``theta`` and its gradient (no penalty)."""


@dataclass(frozen=True)
class VectorLayout:
    """A vector of ``size`` values as table rows of ``WIDTH`` (the last padded), plus one
    extra row whose first value is a scalar (the loss, or the stop flag)."""

    size: int

    @property
    def rows(self) -> int:
        return -(-self.size // WIDTH)

    @property
    def width(self) -> int:
        return min(self.size, WIDTH)

    def spec(self, name: str) -> TableSpec:
        return TableSpec(name, self.rows + 1, self.width)

    def pack(self, vector: np.ndarray, scalar: float = 0.0) -> np.ndarray:
        out = np.zeros((self.rows + 1, self.width))
        out.ravel()[: self.size] = vector
        out[self.rows, 0] = scalar
        return out

    def unpack(self, table: np.ndarray) -> tuple[np.ndarray, float]:
        return table[: self.rows].ravel()[: self.size].copy(), float(table[self.rows, 0])


@dataclass
class BatchResult:
    theta: np.ndarray
    fun: float
    iterations: int
    evaluations: int
    converged: bool
    message: str
    record: dict[str, Any] = field(repr=False)


def _evaluate(ctx: Any, layout: VectorLayout, rows: np.ndarray) -> bool:
    """Step 2 of an evaluation on any worker: read ``theta``; unless the stop flag is up,
    add the partition's loss and gradient and clock. True when told to stop."""
    theta, stop = layout.unpack(ctx.read(PARAMS, rows))
    if stop:
        return True
    loss, grad = ctx.data.loss_grad(theta)
    ctx.inc(GRADIENT, rows, layout.pack(grad, loss))
    ctx.clock()
    return False


def digest(theta: np.ndarray) -> int:
    """64 bits of ``theta``'s bytes: what a replayed evaluation must be asked at."""
    return int.from_bytes(hashlib.blake2b(theta.tobytes(), digest_size=8).digest(), "little")


@dataclass
class History:
    """Every answer the objective gave, in order (what a snapshot holds; module docstring)."""

    values: list[float] = field(default_factory=list)
    gradients: list[np.ndarray] = field(default_factory=list)
    digests: list[int] = field(default_factory=list)
    iterations: int = 0  # the optimiser's iterations these answers cover
    # with several workers, the two tables as the last answer left them, and the
    # parameters the coordinator last wrote: a resumed job starts from them, so its sums
    # round as the uninterrupted job's do (a table holds theta0 plus every change since)
    tables: dict[str, np.ndarray] = field(default_factory=dict)
    written: np.ndarray | None = None

    def arrays(self) -> dict[str, np.ndarray]:
        arrays = {"values": np.array(self.values, dtype=np.float64),
                  "gradients": np.array(self.gradients, dtype=np.float64),
                  "digests": np.array(self.digests, dtype=np.uint64),
                  "iterations": np.array(self.iterations, dtype=np.int64)}
        if self.written is not None:
            arrays["written"] = self.written
        return arrays

    @classmethod
    def from_snapshot(cls, snap: Any) -> History:
        arrays = snap.workers[0].arrays
        tables = {name: snap.tables[name] for name in (PARAMS, GRADIENT) if name in snap.tables}
        return cls([float(v) for v in arrays["values"]], list(arrays["gradients"]),
                   [int(d) for d in arrays["digests"]], int(arrays["iterations"]), tables,
                   arrays.get("written"))


@dataclass(frozen=True)
class Snapshots:
    """Where and how often the coordinator snapshots, and what ``meta`` says of the job."""

    every: int | None
    root: Path | None
    meta: dict[str, Any]


class _Coordinator:
    """Worker 0's side: the objective scipy's optimiser calls, through the tables."""

    def __init__(self, ctx: Any, layout: VectorLayout, theta0: np.ndarray, n: int,
                 penalty: Penalty, replay: History, snapshots: Snapshots) -> None:
        self.ctx, self.layout, self.n, self.penalty = ctx, layout, n, penalty
        self.rows = np.arange(layout.rows + 1)
        self.written = theta0.copy()  # what the parameter table holds
        self.last = np.zeros((layout.rows + 1, layout.width))  # what the gradient table held
        if replay.tables:
            self.written, self.last = replay.written, replay.tables[GRADIENT]
        self.evaluations = 0
        self.iterations = 0
        self.replay, self.snapshots, self.history = replay, snapshots, History()

    def objective(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        if self.evaluations < len(self.replay.values):
            return self._replayed(theta)
        value, grad = self._evaluate(theta)
        self.evaluations += 1
        if self.snapshots.every:
            self.history.values.append(value)
            self.history.gradients.append(grad.copy())
            self.history.digests.append(digest(theta))
        return value, grad

    def _replayed(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        k, replay = self.evaluations, self.replay
        if digest(theta) != replay.digests[k]:
            raise SnapshotError(f"the resumed L-BFGS asked for other parameters than the "
                                f"snapshot's at evaluation {k + 1} (another scipy, or "
                                "another problem): fit again instead")
        self.evaluations += 1
        self.history.values.append(replay.values[k])
        self.history.gradients.append(replay.gradients[k])
        self.history.digests.append(replay.digests[k])
        return replay.values[k], replay.gradients[k].copy()

    def iteration_done(self, intermediate_result: Any) -> None:
        """scipy's callback after each iteration: a snapshot every ``every`` of them
        (not again for the iterations a resumed fit replays)."""
        self.iterations += 1
        every, root = self.snapshots.every, self.snapshots.root
        if every and root is not None and self.iterations % every == 0 \
                and self.iterations > self.replay.iterations:
            history, tables = self.history, {"theta": np.asarray(intermediate_result.x)[None]}
            history.iterations = self.iterations
            if self.ctx.num_workers > 1:
                history.written = self.written
                tables.update({PARAMS: self.ctx.read(PARAMS, self.rows), GRADIENT: self.last})
            states = [WorkerState(self.iterations, history.arrays())]
            states += [WorkerState(self.iterations) for _ in range(1, self.ctx.num_workers)]
            write_snapshot(root, self.iterations, tables, states, self.snapshots.meta)

    def _evaluate(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        value, penalty_grad = self.penalty(theta)
        if self.ctx.num_workers == 1:  # the sum of one partition: no table round trip
            loss, grad = self.ctx.data.loss_grad(theta)
            return loss / self.n + value, grad / self.n + penalty_grad
        ctx, layout = self.ctx, self.layout
        ctx.inc(PARAMS, self.rows, layout.pack(theta - self.written))
        ctx.inc(GRADIENT, self.rows, -self.last)
        self.written = theta.copy()
        ctx.clock()
        _evaluate(ctx, layout, self.rows)
        self.last = ctx.read(GRADIENT, self.rows)
        grad, loss = layout.unpack(self.last)
        return loss / self.n + value, grad / self.n + penalty_grad

    def stop(self) -> None:
        self.ctx.inc(PARAMS, self.rows, self.layout.pack(np.zeros(self.layout.size), 1.0))
        self.ctx.clock()


def _worker(theta0: np.ndarray, n: int, penalty: Penalty, max_iter: int, tol: float,
            replay: History, snapshots: Snapshots):
    layout = VectorLayout(theta0.size)

    def worker(ctx: Any) -> dict[str, Any]:
        rows = np.arange(layout.rows + 1)
        if ctx.worker_id != 0:
            evaluations = 0
            while True:
                ctx.clock()  # step 1: the coordinator writes theta
                if _evaluate(ctx, layout, rows):
                    return {"evaluations": evaluations}
                evaluations += 1
        coordinator = _Coordinator(ctx, layout, theta0, n, penalty, replay, snapshots)
        try:
            found = scipy_minimize(
                coordinator.objective, theta0, method="L-BFGS-B", jac=True,
                callback=coordinator.iteration_done,
                options={"maxiter": max_iter, "maxls": MAX_LINE_SEARCH, "gtol": tol,
                         "ftol": 64 * np.finfo(float).eps})
        finally:
            coordinator.stop()
        return {"theta": found.x, "fun": float(found.fun), "iterations": int(found.nit),
                "evaluations": coordinator.evaluations, "converged": bool(found.success),
                "message": str(found.message)}

    return worker


def minimize(problems: Sequence[BatchProblem], theta0: np.ndarray, penalty: Penalty, *,
             max_iter: int, tol: float, seed: int, app: str,
             job_options: dict[str, Any]) -> BatchResult:
    """Minimise ``sum over problems of loss / n + penalty(theta)`` by L-BFGS, one problem
    per worker (module docstring). ``job_options``: where the job runs
    (:meth:`~stalesync.apps.base.RunConfig.job_options`); its ``snapshot_every`` counts
    L-BFGS iterations, and ``resume`` replays a snapshot's answers (module docstring)."""
    job_options = dict(job_options)
    every = job_options.pop("snapshot_every", None)
    root = job_options.pop("snapshot_dir", None)
    resume = job_options.pop("resume", None)
    theta0 = np.asarray(theta0, dtype=np.float64).ravel()
    n = sum(p.num_examples for p in problems)
    layout = VectorLayout(theta0.size)
    # max_iter and tol only say where the optimiser stops: a resumed fit may change them
    meta = {"strategy": "lbfgs", "parameters": int(theta0.size), "examples": int(n)}
    replay = History() if resume is None else _replay(resume, meta, len(problems))
    if root is None and resume is not None:
        root = snapshot_root(resume)
    snapshots = Snapshots(every, None if root is None else Path(root), meta)
    # scipy's optimiser calls BLAS between evaluations; OpenBLAS's threads then spin for a
    # while and take the cores the workers' kernels need (2 workers on 1M rows: 1.09x one
    # worker with them, 1.63x without)
    with SnapshotDirLock(root if every else None), \
            threadpool_limits(limits=1, user_api="blas"):
        result = job.run(_worker(theta0, n, penalty, max_iter, tol, replay, snapshots),
                         [layout.spec(PARAMS), layout.spec(GRADIENT)], data=list(problems),
                         workers=len(problems), consistency="bsp", seed=seed, app=app,
                         initial_tables=replay.tables or {PARAMS: layout.pack(theta0)},
                         **job_options)
    out = result.worker_results[0]
    record = result.record
    record["strategy"] = "lbfgs"
    record["guarantee"]["promise"] = (
        "lbfgs: every evaluation summed every partition's loss and gradient at the same "
        "parameters (bsp, two clocks per evaluation)")
    return BatchResult(out["theta"], out["fun"], out["iterations"], out["evaluations"],
                       out["converged"], out["message"], record)


def _replay(resume: str, meta: dict[str, Any], workers: int) -> History:
    """The answers a snapshot of this job holds (refused, naming what differs, when the
    snapshot is not of this job)."""
    snap = load_snapshot(resume)
    check_meta(snap, meta, "L-BFGS fit", workers)  # workers' sums round by their count
    return History.from_snapshot(snap)
