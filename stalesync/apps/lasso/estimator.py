"""A scikit-learn-style Lasso estimator solved on the STRADS-style scheduler, and a path."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import RegressorMixin
from sklearn.utils import check_array, check_X_y
from sklearn.utils.validation import validate_data

from ...errors import ConfigError
from ...observe.metrics import build_run_record
from ...observe.tensorboard import write_record
from ...scheduler.registry import schedule_kind
from ..base import (
    RunConfig,
    StalesyncEstimator,
    check_float,
    check_int,
    check_sparse_structure,
)
from ..progress import Progress
from ..workers import (
    AUTO,
    Costs,
    Decision,
    available_cores,
    fewest_that_pay,
)
from .app import prepare
from .blocks import check_time
from .solver import SolveResult, SolverOptions, solve

HANDOFFS_PER_ROUND = 3  # a scheduler round: schedule, push to the workers, pull their sums
HANDOFFS_PER_CHECK = 2  # the blocks schedule: one check and one sweep per check

def check_data(X, y=None) -> tuple[Any, np.ndarray | None]:
    """Validate X (dense or scipy sparse, 2-D, finite) and y (1-D, same length, finite)."""
    if y is None:
        return check_sparse_structure(check_array(X, accept_sparse="csc", dtype=np.float64)), None
    X, y = check_X_y(X, y, accept_sparse="csc", dtype=np.float64, y_numeric=True)
    return check_sparse_structure(X), y


class ScheduledLinearModel(StalesyncEstimator):
    """What Lasso and L1 logistic regression share: the scheduler's parameters, input
    checks, the solver options and the run record of a solve."""

    _fitted_attributes = ("coef_", "intercept_", "n_features_in_")
    _model_arrays = ("coef_",)
    _model_info = ("intercept_", "n_features_in_")
    _app_name = "lasso"
    _objective_name = "objective"

    def _check_own_params(self) -> None:
        check_float(self.alpha, "alpha", 0)
        schedule_kind(self.schedule, 1 if self.workers == AUTO else self.workers)
        for key in ("parallel", "max_iter", "chunks"):
            check_int(getattr(self, key), key, 1)
        check_float(self.tol, "tol", 0, low_open=True)
        check_float(self.threshold, "threshold", 0, 1, high_open=True)

    def _decide(self, X: Any) -> Decision:
        """How many workers pay (``workers="auto"``), per check: its compute is one pass of
        ``X^T v``, timed on one thread and as two halves on two threads at once. One worker
        sweeps in one compiled call per check. Several run the ``blocks`` schedule: the
        check split over the workers, the sweeps as one worker's (so they cancel out of the
        comparison), two hand-offs per check; or hand off rounds of ``parallel``
        coordinates (a few table hand-offs per round, measured per clock). One worker asked
        for: nothing to time."""
        if self.workers != AUTO and int(self.workers) == 1:
            return Decision(1, self.workers, "as requested", None, {})
        one = check_time(X)
        costs = Costs()
        predicted = {1: one}
        if available_cores() > 1:
            kind = schedule_kind(self.schedule, 2, can_sweep=True)
            handoffs = (HANDOFFS_PER_CHECK if kind.name == "blocks" else
                        -(-X.shape[1] // self.parallel) * HANDOFFS_PER_ROUND)
            overhead = handoffs * costs.clock_s(2)
            # a check shorter than its hand-offs cannot pay, and an explicit count is obeyed:
            # then the two-thread pass is not worth timing
            probe = self.workers == AUTO and overhead < one
            predicted[2] = (check_time(X, threads=2) if probe else one / 2) + overhead
        if self.workers != AUTO:
            return Decision(int(self.workers), self.workers, "as requested", one,
                            {str(k): round(t, 6) for k, t in predicted.items()})
        best = fewest_that_pay(predicted)
        reason = (f"per check: {one:.3g} s of compute, predicted {predicted[1]:.3g} s on 1 "
                  f"worker" + (f" vs {predicted[2]:.3g} s on 2" if 2 in predicted else ""))
        return Decision(best, AUTO, reason, one,
                        {str(k): round(t, 6) for k, t in predicted.items()})

    def _options(self, run: RunConfig, check_every: int | None = None,
                 max_seconds: float | None = None, workers: int = 1) -> SolverOptions:
        return SolverOptions(
            schedule=self.schedule, parallel=self.parallel, workers=workers, tol=self.tol,
            max_iter=self.max_iter, threshold=self.threshold,
            eta=getattr(self, "eta", None), chunks=self.chunks, check_every=check_every,
            safeguard=getattr(self, "safeguard", True), seed=self.seed,
            max_seconds=max_seconds, run=run,
        )

    def _record(self, run: RunConfig, history: list[dict[str, Any]], wall: float,
                rounds: int, updates: int, d: int, run_info: dict[str, Any],
                final: dict[str, Any], decision: Decision) -> dict[str, Any]:
        """The run record of a solve: one record per worker per convergence check."""
        records = []
        workers = decision.workers
        prev_busy = np.zeros(workers)
        prev_wait = np.zeros(workers)
        for h in history:
            busy = np.asarray(h.get("busy_s", prev_busy))
            wait = np.asarray(h.get("wait_s", prev_wait))
            for w in range(workers):
                records.append({"iteration": h["check"], "worker": w, "time_s": h["time_s"],
                                "duration_s": float(busy[w] - prev_busy[w]),
                                "wait_s": float(wait[w] - prev_wait[w]),
                                "bytes_sent": 0, "objective": h["objective"]})
            prev_busy, prev_wait = busy, wait
        record = build_run_record(
            app=self._app_name, strategy="scheduled", runtime=run.runtime, consistency="bsp",
            staleness=0, workers=workers, clocks=rounds, epochs=updates / max(d, 1),
            wall_time_s=wall, metrics=[], final=final, extra=run_info)
        record["workers_decision"] = decision.as_record()
        record["records"] = records
        record["wait_s"] = float(sum(r["wait_s"] for r in records))
        record["bytes_sent"] = int(history[-1].get("bytes", 0)) if history else 0
        record["objective_name"] = self._objective_name
        if run.tensorboard:
            write_record(run.tensorboard, record)
        return record

    def _after_load(self) -> None:
        self.intercept_ = float(self.intercept_)
        self.n_features_in_ = int(self.n_features_in_)


class Lasso(RegressorMixin, ScheduledLinearModel):
    """L1-regularised least squares, ``min 1/(2n)||y - Xb - b0||^2 + alpha ||b||_1``.

    Solved by coordinate descent on the model-parallel scheduler: each round the schedule
    picks ``parallel`` coordinates, the ``workers`` compute their partial gradients over
    their samples (``push``) and the soft-threshold update is applied to the sum (``pull``).
    ``schedule="auto"`` (default): with one worker, ``sequential`` (compiled cyclic
    coordinate descent over the working set, one call per check: scikit-learn's algorithm,
    nothing to coordinate); with several, STRADS's ``priority-dependency``. Stops when the
    duality gap is ``<= tol * ||y - mean(y)||^2`` (scikit-learn's criterion) or after
    ``max_iter`` epochs (an epoch is d coordinate updates). Where the solve runs (Ray,
    snapshots every k rounds, resume, stragglers, progress) is ``fit(X, y, run=...)``.

    Attributes after ``fit``: ``coef_``, ``intercept_``, ``n_iter_`` (epochs, rounded up),
    ``dual_gap_``, ``objective_``, ``n_updates_``, ``converged_``, ``history_`` (objective
    and gap at every check), ``result_`` (the full :class:`SolveResult`), ``run_record_``.
    """

    _app_name = "lasso"
    _objective_name = "Lasso objective"

    def __init__(self, alpha: float = 1.0, *, fit_intercept: bool = True,
                 schedule: str = "auto", parallel: int = 8, workers: int | str = "auto",
                 tol: float = 1e-4, max_iter: int = 1000, threshold: float = 0.3,
                 eta: float | None = None, chunks: int = 2, warm_start: bool = False,
                 safeguard: bool = True, seed: int = 0) -> None:
        self.alpha = alpha
        self.fit_intercept = fit_intercept
        self.schedule = schedule
        self.parallel = parallel
        self.workers = workers
        self.tol = tol
        self.max_iter = max_iter
        self.threshold = threshold
        self.eta = eta
        self.chunks = chunks
        self.warm_start = warm_start
        self.safeguard = safeguard
        self.seed = seed

    def _check_own_params(self) -> None:
        super()._check_own_params()
        if self.eta is not None:
            check_float(self.eta, "eta", 0, low_open=True)

    def fit(self, X, y, *, run: RunConfig | dict | None = None, on_check=None,
            check_every: int | None = None, max_seconds: float | None = None) -> Lasso:
        """Fit on X (n x d, dense or sparse) and y (n,). ``on_check(entry)`` is called at
        every convergence check."""
        self._check_params()
        run = RunConfig.coerce(run)
        X, y = validate_data(self, X, y, accept_sparse="csc", dtype=np.float64,
                             y_numeric=True)
        prep = prepare(check_sparse_structure(X), y, self.fit_intercept)
        init = None
        if self.warm_start and getattr(self, "coef_", None) is not None:
            if self.coef_.shape != (prep.d,):
                raise ConfigError(
                    f"warm start: coef_ has {self.coef_.shape[0]} features, X has {prep.d}")
            init = self.coef_
        decision = self._decide(prep.X)
        progress = Progress(desc="lasso", epochs=self.max_iter, enabled=run.progress,
                            objective="objective", unit="epoch")

        def checked(entry: dict[str, Any]) -> None:
            progress.advance(entry["updates"] / max(prep.d, 1), entry["objective"],
                             gap=f"{entry['gap']:.2e}", nnz=entry["nnz"])
            if on_check is not None:
                on_check(entry)

        with progress:
            result = solve(prep, self.alpha, init,
                           self._options(run, check_every, max_seconds, decision.workers),
                           on_check=checked)
        self._set_result(result, prep.x_mean, prep.y_mean)
        self._keep_record(self._record(
            run, result.history, result.wall_s, result.rounds, result.updates, prep.d,
            result.run_info, {
                "n_samples": prep.n, "n_features": prep.d, "alpha": self.alpha,
                "schedule": self.schedule, "parallel": self.parallel,
                "parallel_final": result.parallel, "objective": result.objective,
                "duality_gap": result.gap, "converged": result.converged,
                "nnz": int(np.count_nonzero(result.coef)), "updates": result.updates,
                "rounds": result.rounds,
                "rounds_per_s": result.rounds / max(
                    result.wall_s - result.run_info.get("startup_s", 0.0), 1e-12),
                "checks": result.checks, "worker_busy_s": result.worker_busy_s,
                "worker_shards": result.worker_shards}, decision))
        return self

    def _set_result(self, result: SolveResult, x_mean: np.ndarray, y_mean: float) -> None:
        self.result_ = result
        self.coef_ = result.coef
        self.intercept_ = float(y_mean - x_mean @ result.coef) if self.fit_intercept else 0.0
        self.n_iter_ = -(-result.updates // max(result.coef.size, 1))
        self.n_checks_ = result.checks
        self.dual_gap_ = result.gap
        self.objective_ = result.objective
        self.n_updates_ = result.updates
        self.converged_ = result.converged
        self.history_ = result.history

    def predict(self, X) -> np.ndarray:
        self._check_fitted()
        X = check_sparse_structure(validate_data(self, X, reset=False, accept_sparse="csc",
                                                 dtype=np.float64))
        return np.asarray(X @ self.coef_).ravel() + self.intercept_


def alpha_max(X, y, fit_intercept: bool = True) -> float:
    """The smallest alpha for which every coefficient is zero."""
    X, y = check_data(X, y)
    prep = prepare(X, y, fit_intercept)
    g = np.asarray(prep.X.T @ prep.y).ravel() - prep.mu * prep.y.sum()
    return float(np.max(np.abs(g)) / prep.n)


def lasso_path(X, y, *, alphas=None, n_alphas: int = 20, eps: float = 1e-3,
               **params: Any) -> tuple[np.ndarray, np.ndarray, list[SolveResult]]:
    """Solutions for decreasing alphas, each warm-started from the previous one.

    Returns ``(alphas, coefs, results)`` with ``coefs`` of shape (d, len(alphas)), like
    scikit-learn's ``lasso_path``. Default alphas: ``n_alphas`` log-spaced from
    ``alpha_max`` down to ``eps * alpha_max``.
    """
    X, y = check_data(X, y)
    if alphas is None:
        top = alpha_max(X, y, params.get("fit_intercept", True))
        alphas = np.geomspace(top, top * eps, n_alphas)
    alphas = np.sort(np.asarray(alphas, dtype=np.float64))[::-1]
    model = Lasso(alpha=float(alphas[0]), warm_start=True, **params)
    coefs, results = [], []
    for a in alphas:
        model.set_params(alpha=float(a)).fit(X, y)
        coefs.append(model.coef_.copy())
        results.append(model.result_)
    return alphas, np.stack(coefs, axis=1), results
