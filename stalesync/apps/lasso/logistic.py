"""L1-regularised logistic regression on the same scheduler machinery as Lasso.

``min_b (1/n) sum_i log(1 + exp(-y_i (x_i b + b0))) + alpha ||b||_1`` with y in {-1, +1}.
Samples are split over shards; each keeps its margins ``m = X b + b0``. ``push`` is the
partial gradient ``X_J^T dloss/dm`` over the shard; ``pull`` takes a majorised proximal
coordinate step (curvature bounded by ``||X_j||^2 / 4``: one coordinate alone can never
increase the objective); ``sync`` is ``m += delta_j X_j``. The intercept is an unpenalised
column of ones. Convergence: the largest violation of the optimality (KKT) conditions,
relative to its value at zero, is ``<= tol``. The same schedules, rollback safeguard and
priority refresh at checks as :mod:`.solver` apply.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.special import expit
from sklearn.base import ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import validate_data

from ...errors import ConfigError
from ...kernels import lasso as k
from ...scheduler import ColumnCorrelation, Plan, balanced_chunks, make_schedule
from ...scheduler.registry import schedule_kind
from ..base import RunConfig, check_sparse_structure
from .estimator import ScheduledLinearModel
from .solver import SolverOptions, open_driver


class LogitShard:
    def __init__(self, X, y: np.ndarray) -> None:
        self.y = np.ascontiguousarray(y, dtype=np.float64)
        self.sparse = sp.issparse(X)
        if self.sparse:
            X = sp.csc_matrix(X)
            self.indptr, self.indices, self.data = X.indptr, X.indices, X.data
        else:
            self.x = np.asfortranarray(X)
        self.X = X
        self.margin = np.zeros(X.shape[0])

    def reset(self, coef: np.ndarray) -> None:
        self.margin = np.asarray(self.X @ coef, dtype=np.float64).ravel()

    def grads(self, cols: np.ndarray) -> np.ndarray:
        out = np.empty(cols.size)
        if self.sparse:
            k.logit_push_csc(self.indptr, self.indices, self.data, self.margin, self.y, cols,
                             out)
        else:
            k.logit_push_dense(self.x, self.margin, self.y, cols, out)
        return out

    def stats(self, all_cols: np.ndarray) -> np.ndarray:
        return np.append(self.grads(all_cols), k.logistic_loss(self.margin, self.y))


class LogitProgram:
    """What runs on the workers: partial gradients and margin updates of a shard."""

    def push(self, shard: LogitShard, cols: np.ndarray) -> np.ndarray:
        return shard.grads(cols)

    def sync(self, shard: LogitShard, plan: Plan, deltas: np.ndarray) -> None:
        if shard.sparse:
            k.margin_sync_csc(shard.indptr, shard.indices, shard.data, shard.margin,
                              plan.variables, deltas)
        else:
            k.margin_sync_dense(shard.x, shard.margin, plan.variables, deltas)

    def state(self, shard: LogitShard) -> dict[str, np.ndarray]:
        return {"margin": shard.margin.copy()}

    def load_state(self, shard: LogitShard, state: dict[str, np.ndarray]) -> None:
        shard.margin = np.array(state["margin"], dtype=np.float64)


class LogitApp:
    """The proximal coordinate step (``pull``); owns the coefficients."""

    program = LogitProgram()

    def __init__(self, bound: np.ndarray, penalty: np.ndarray, coef: np.ndarray) -> None:
        self.bound, self.penalty, self.coef = bound, penalty, coef

    def pull(self, plan: Plan, partials: list[np.ndarray]) -> np.ndarray:
        grads = partials[0] if len(partials) == 1 else np.sum(partials, axis=0)
        deltas = np.empty(plan.size)
        k.prox_step(self.coef, self.bound, self.penalty, plan.variables, grads, deltas)
        return deltas

    def state(self) -> dict[str, np.ndarray]:
        return {"coef": self.coef.copy()}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.coef[:] = state["coef"]


@dataclass
class LogitResult:
    coef: np.ndarray  # features then the intercept (if fitted)
    objective: float
    violation: float
    converged: bool
    updates: int
    history: list[dict[str, Any]]
    rounds: int = 0
    run_info: dict[str, Any] = field(default_factory=dict)  # recoveries, startup_s


def _augment(X, fit_intercept: bool):
    if not fit_intercept:
        return X
    ones = np.ones((X.shape[0], 1))
    if sp.issparse(X):
        return sp.hstack([X, sp.csc_matrix(ones)], format="csc")
    return np.asfortranarray(np.hstack([X, ones]))


def _kkt(coef, grads_n, penalty_n):
    """Largest violation of 0 in grad + penalty * subdifferential(|b|)."""
    nz = coef != 0
    v = np.where(nz, np.abs(grads_n + penalty_n * np.sign(coef)),
                 np.maximum(np.abs(grads_n) - penalty_n, 0.0))
    return float(v.max()) if v.size else 0.0


def solve_logistic(X, y: np.ndarray, alpha: float, fit_intercept: bool,
                   opts: SolverOptions) -> LogitResult:
    Xa = _augment(X, fit_intercept)
    n, d = Xa.shape
    sq = (np.asarray(Xa.multiply(Xa).sum(axis=0)).ravel() if sp.issparse(Xa)
          else np.einsum("ij,ij->j", Xa, Xa))
    bound = 0.25 * sq
    penalty = np.full(d, n * alpha)
    if fit_intercept:
        penalty[-1] = 0.0
    coef = np.zeros(d)
    app = LogitApp(bound, penalty, coef)
    parts = 1 if opts.workers == 1 else opts.workers * opts.chunks
    rows_of = (np.diff(sp.csr_matrix(Xa).indptr).astype(float) if sp.issparse(Xa)
               else np.ones(n))
    csr = sp.csr_matrix(Xa) if sp.issparse(Xa) else None
    shards = []
    for rows in balanced_chunks(rows_of, parts):
        a, b = rows[0], rows[-1] + 1
        shards.append(LogitShard(csr[a:b].tocsc() if csr is not None else Xa[a:b], y[a:b]))
    columns = None
    if schedule_kind(opts.schedule).needs_columns:
        columns = ColumnCorrelation(Xa, center=True)
    all_cols = np.arange(d, dtype=np.int64)
    history: list[dict[str, Any]] = []
    start = time.perf_counter()
    parallel = opts.parallel
    with open_driver(app, shards, opts) as drv:

        def use(p: int) -> None:
            drv.set_schedule(make_schedule(opts.schedule, p, columns=columns,
                                           threshold=opts.threshold, eta=1e-12,
                                           eta_relative=1e-6), d)

        def check() -> tuple[float, float]:
            total = np.sum(drv.map(lambda sh: sh.stats(all_cols)), axis=0)
            grads, loss = total[:d], total[d]
            objective = loss / n + alpha * float(np.abs(coef[penalty > 0]).sum())
            violation = _kkt(coef, grads / n, penalty / n)
            z = coef - grads / np.maximum(bound, 1e-300)
            t = penalty / np.maximum(bound, 1e-300)
            drv.schedule.hint(all_cols, np.sign(z) * np.maximum(np.abs(z) - t, 0) - coef)
            history.append({"updates": drv.stats.updates, "time_s": time.perf_counter() - start,
                            "objective": objective, "violation": violation})
            return objective, violation

        use(parallel)
        objective, violation = check()
        scale = max(violation, 1e-300)
        saved = coef.copy()
        while violation > opts.tol * scale and drv.stats.updates < opts.max_iter * d:
            target = drv.stats.updates + (opts.check_every or d)
            while drv.stats.updates < target:
                drv.step()
            last = objective
            objective, violation = check()
            if opts.safeguard and parallel > 1 and not objective <= last * (1 + 1e-12):
                coef[:] = saved
                drv.map(lambda sh: sh.reset(coef))
                parallel = max(1, parallel // 2)
                use(parallel)
                objective, violation = check()
            saved[:] = coef
        rounds = drv.stats.rounds
        run_info = {**drv.recovery.record(), "startup_s": drv.startup_s}
    return LogitResult(coef.copy(), objective, violation, violation <= opts.tol * scale,
                       drv.stats.updates, history, rounds, run_info)


class LogisticL1(ClassifierMixin, ScheduledLinearModel):
    """Binary L1-regularised logistic regression on the scheduler (scikit-learn style).

    ``min_b (1/n) sum_i log(1 + exp(-y_i (x_i b + b0))) + alpha ||b||_1``; ``alpha`` relates
    to scikit-learn's ``C`` by ``C = 1 / (n_samples * alpha)``. Same schedules, workers and
    run settings (``fit(X, y, run=RunConfig(...))``) as :class:`Lasso`.
    """

    _fitted_attributes = ("coef_", "intercept_", "classes_", "n_features_in_")
    _model_arrays = ("coef_", "classes_")
    _app_name = "logistic-l1"
    _objective_name = "L1 logistic objective"

    def __init__(self, alpha: float = 0.01, *, fit_intercept: bool = True,
                 schedule: str = "priority-dependency", parallel: int = 8, workers: int = 1,
                 tol: float = 1e-4, max_iter: int = 1000, threshold: float = 0.3,
                 chunks: int = 2, seed: int = 0) -> None:
        self.alpha = alpha
        self.fit_intercept = fit_intercept
        self.schedule = schedule
        self.parallel = parallel
        self.workers = workers
        self.tol = tol
        self.max_iter = max_iter
        self.threshold = threshold
        self.chunks = chunks
        self.seed = seed

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags

    def fit(self, X, y, *, run: RunConfig | dict | None = None) -> LogisticL1:
        self._check_params()
        run = RunConfig.coerce(run)
        X, y_raw = validate_data(self, X, y, accept_sparse="csc", dtype=np.float64)
        check_sparse_structure(X)
        check_classification_targets(y_raw)
        classes = np.unique(y_raw)
        if classes.size < 2:
            raise ConfigError(f"LogisticL1 needs 2 classes in y, got 1 class ({classes[0]!r})",
                              param="y")
        y_type = type_of_target(y_raw, input_name="y", raise_unknown=True)
        if y_type != "binary":
            raise ConfigError("Only binary classification is supported. The type of the "
                              f"target is {y_type}.", param="y")
        self.classes_ = classes
        ys = np.where(y_raw == classes[1], 1.0, -1.0)
        decision = self._decide(X)
        start = time.perf_counter()
        res = solve_logistic(X, ys, float(self.alpha), self.fit_intercept,
                             self._options(run, workers=decision.workers))
        wall = time.perf_counter() - start
        self.coef_ = res.coef[:-1].copy() if self.fit_intercept else res.coef.copy()
        self.intercept_ = float(res.coef[-1]) if self.fit_intercept else 0.0
        self.objective_, self.converged_ = res.objective, res.converged
        self.n_updates_, self.history_ = res.updates, res.history
        self.n_iter_ = -(-res.updates // max(X.shape[1], 1))  # epochs, rounded up
        self._keep_record(self._record(
            run, [dict(h, check=i) for i, h in enumerate(res.history)], wall, res.rounds,
            res.updates, X.shape[1], res.run_info,
            {"n_samples": X.shape[0], "n_features": X.shape[1], "alpha": self.alpha,
             "objective": res.objective, "kkt_violation": res.violation,
             "converged": res.converged, "updates": res.updates, "rounds": res.rounds},
            decision))
        return self

    def decision_function(self, X) -> np.ndarray:
        self._check_fitted()
        X = check_sparse_structure(validate_data(self, X, reset=False, accept_sparse="csc",
                                                 dtype=np.float64))
        return np.asarray(X @ self.coef_).ravel() + self.intercept_

    def predict_proba(self, X) -> np.ndarray:
        p = expit(self.decision_function(X))
        return np.column_stack([1.0 - p, p])

    def predict(self, X) -> np.ndarray:
        self._check_fitted()
        return self.classes_[(self.decision_function(X) > 0).astype(int)]
