"""The linear models' batch solvers, beside SGD (``solver="sgd"``, the strategies):

- ``lbfgs``: L-BFGS through the tables (:mod:`stalesync.strategies.lbfgs`; Sandblaster,
  MLlib) on the smooth losses with an L2 penalty or none;
- ``normal``: least squares / ridge by the normal equations, ``X^T X`` and ``X^T y`` summed
  over the workers' rows (:func:`stalesync.linalg.gram`), solved by Cholesky on the driver.

Both minimise the estimators' objective, ``mean loss + alpha R(w)`` (squared error is
``r^2 / 2``, ``R = ||w||^2 / 2``), so ``normal`` equals scikit-learn's
``Ridge(alpha=n * alpha)`` and ``lbfgs`` on log loss equals ``LogisticRegression(C=1 /
(n alpha))``. Each refuses the parameters that only SGD reads.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from ...errors import ConfigError
from ...linalg import gram
from ...strategies import lbfgs
from ..workers import Work, decide, timed
from .problem import LinearProblem, LinearSpec

SOLVERS = ("sgd", "lbfgs", "normal")
# what each solver reads beyond what every solver does (loss, penalty, alpha, ...)
SOLVER_PARAMETERS = {
    "sgd": ("epochs", "learning_rate", "eta0", "power_t", "average", "strategy",
            "strategy_options", "consistency", "staleness", "clocks_per_epoch"),
    "lbfgs": ("max_iter", "tol"),
    "normal": (),
}
SMOOTH_LOSSES = ("log_loss", "squared_hinge", "modified_huber", "squared_error", "huber")
LBFGS_PROBE = 4096  # workers="auto" times one gradient pass over this many examples


def check_solver(estimator: Any) -> None:
    """Refuse a parameter the chosen solver would ignore (set to other than its default),
    and a loss or penalty the solver cannot minimise, naming the parameter."""
    solver = estimator.solver
    if solver not in SOLVERS:
        raise ConfigError(f"solver must be one of {SOLVERS}, got {solver!r}", param="solver")
    defaults = {k: v.default for k, v in
                inspect.signature(type(estimator).__init__).parameters.items()}
    for other, names in SOLVER_PARAMETERS.items():
        if other == solver:
            continue
        for name in names:
            if name in SOLVER_PARAMETERS[solver]:
                continue
            if getattr(estimator, name) != defaults[name]:
                raise ConfigError(f"{name} applies to solver={other!r}; it is ignored by "
                                  f"solver={solver!r}", param=name)
    if solver == "sgd":
        return
    if estimator.penalty not in ("l2", "none"):
        raise ConfigError(f"solver={solver!r} supports penalty 'l2' or 'none' (an L1 "
                          "penalty is not smooth: use solver='sgd' or the Lasso)",
                          param="penalty")
    if solver == "normal" and estimator.loss != "squared_error":
        raise ConfigError("solver='normal' solves least squares: it needs "
                          "loss='squared_error'", param="loss")
    if solver == "lbfgs" and estimator.loss not in SMOOTH_LOSSES:
        raise ConfigError(f"solver='lbfgs' needs a smooth loss ({', '.join(SMOOTH_LOSSES)}); "
                          f"{estimator.loss!r} is not differentiable", param="loss")


@dataclass(frozen=True)
class BatchFit:
    coef: np.ndarray  # K x d
    intercept: np.ndarray  # K
    iterations: int
    record: dict[str, Any]  # the run record, its workers_decision filled


def _alpha(estimator: Any) -> float:
    return 0.0 if estimator.penalty == "none" else float(estimator.alpha)


def fit_lbfgs(estimator: Any, X: sp.csr_matrix, labels: np.ndarray, yvals: np.ndarray,
              spec: LinearSpec, run: Any) -> BatchFit:
    """The weights minimising the objective, by L-BFGS over row partitions of ``X``."""
    n, d = X.shape
    K = spec.outputs
    m = min(n, LBFGS_PROBE)
    probe = LinearProblem(X[:m], labels[:m], yvals[:m], np.zeros(d), spec, 1)
    theta0 = np.zeros(d * K + K)
    decision = decide(estimator.workers, lambda: Work(
        timed(probe.loss_grad, theta0) * n / probe.num_examples, 2, max_workers=n),
        resume=run.resume)
    cuts = np.linspace(0, n, decision.workers + 1).astype(np.int64)
    problems = [LinearProblem(X[lo:hi], labels[lo:hi], yvals[lo:hi], np.zeros(d), spec, 1)
                for lo, hi in zip(cuts[:-1], cuts[1:], strict=True)]
    alpha = _alpha(estimator)

    def penalty(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w = theta[: d * K]
        grad = np.zeros_like(theta)
        grad[: d * K] = alpha * w
        return 0.5 * alpha * float(w @ w), grad

    found = lbfgs.minimize(problems, theta0, penalty, max_iter=int(estimator.max_iter),
                           tol=float(estimator.tol), seed=estimator.seed, app="linear",
                           job_options=run.job_options(estimator.seed))
    W = found.theta[: d * K].reshape(d, K)
    record = found.record
    record["workers_decision"] = decision.as_record()
    record["final"] = {"iterations": found.iterations, "evaluations": found.evaluations,
                       "converged": found.converged, "message": found.message,
                       "examples": found.evaluations * n}
    if not found.converged:
        record["final"]["warning"] = f"L-BFGS stopped before converging: {found.message}"
    return BatchFit(np.ascontiguousarray(W.T), found.theta[d * K:].copy(), found.iterations,
                    record)


def fit_normal(estimator: Any, X: sp.csr_matrix | np.ndarray, yvals: np.ndarray,
               run: Any) -> BatchFit:
    """Least squares / ridge: ``(X^T X + n alpha I) w = X^T y`` on centred products when
    fitting an intercept (the intercept is not penalised), by Cholesky; a singular system
    (no penalty, dependent columns) takes the minimum-norm solution instead."""
    n, d = X.shape
    fit_intercept = bool(estimator.fit_intercept)
    g = gram(X, yvals, center=fit_intercept, workers=estimator.workers, run=run,
             seed=estimator.seed)
    A = g.xtx + n * _alpha(estimator) * np.eye(d)
    try:
        w = sla.cho_solve(sla.cho_factor(A, lower=True), g.xty)
    except sla.LinAlgError:
        w = sla.lstsq(A, g.xty)[0]
    intercept = np.array([g.mean_y - g.mean_x @ w]) if fit_intercept else np.zeros(1)
    record = g.record
    record["strategy"] = "normal"
    record["guarantee"]["promise"] = ("normal: X^T X and X^T y summed every worker's rows "
                                      "exactly once (bsp, one clock)")
    record["final"] = {**record["final"], "examples": n}
    return BatchFit(w[None, :], intercept, 1, record)
