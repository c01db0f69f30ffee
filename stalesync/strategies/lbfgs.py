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

A snapshot of the optimiser's curvature pairs is not possible (scipy keeps them inside its
Fortran state), so a fit on this solver refuses ``snapshot_every`` / ``resume``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from scipy.optimize import minimize as scipy_minimize
from threadpoolctl import threadpool_limits

from .. import job
from ..errors import ConfigError
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


class _Coordinator:
    """Worker 0's side: the objective scipy's optimiser calls, through the tables."""

    def __init__(self, ctx: Any, layout: VectorLayout, theta0: np.ndarray, n: int,
                 penalty: Penalty) -> None:
        self.ctx, self.layout, self.n, self.penalty = ctx, layout, n, penalty
        self.rows = np.arange(layout.rows + 1)
        self.written = theta0.copy()  # what the parameter table holds
        self.last = np.zeros((layout.rows + 1, layout.width))  # what the gradient table held
        self.evaluations = 0

    def objective(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        value, penalty_grad = self.penalty(theta)
        self.evaluations += 1
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


def _worker(theta0: np.ndarray, n: int, penalty: Penalty, max_iter: int, tol: float):
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
        coordinator = _Coordinator(ctx, layout, theta0, n, penalty)
        try:
            found = scipy_minimize(
                coordinator.objective, theta0, method="L-BFGS-B", jac=True,
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
    (:meth:`~stalesync.apps.base.RunConfig.job_options`)."""
    for name in ("snapshot_every", "resume"):
        if job_options.get(name) is not None:
            raise ConfigError(f"{name}: the L-BFGS solver's curvature history cannot be "
                              "snapshotted (scipy keeps it); fit again instead", param=name)
    theta0 = np.asarray(theta0, dtype=np.float64).ravel()
    n = sum(p.num_examples for p in problems)
    layout = VectorLayout(theta0.size)
    # scipy's optimiser calls BLAS between evaluations; OpenBLAS's threads then spin for a
    # while and take the cores the workers' kernels need (2 workers on 1M rows: 1.09x one
    # worker with them, 1.63x without)
    with threadpool_limits(limits=1, user_api="blas"):
        result = job.run(_worker(theta0, n, penalty, max_iter, tol),
                         [layout.spec(PARAMS), layout.spec(GRADIENT)], data=list(problems),
                         workers=len(problems), consistency="bsp", seed=seed, app=app,
                         initial_tables={PARAMS: layout.pack(theta0)}, **job_options)
    out = result.worker_results[0]
    record = result.record
    record["strategy"] = "lbfgs"
    record["guarantee"]["promise"] = (
        "lbfgs: every evaluation summed every partition's loss and gradient at the same "
        "parameters (bsp, two clocks per evaluation)")
    return BatchResult(out["theta"], out["fun"], out["iterations"], out["evaluations"],
                       out["converged"], out["message"], record)
