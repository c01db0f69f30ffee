"""A scikit-learn-style Lasso estimator solved on the STRADS-style scheduler, and a path."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from ...errors import ConfigError, DataFormatError
from ...faults import Stragglers
from ...metrics import atomic_write_bytes
from ...scheduler import SCHEDULES
from ...scheduler.registry import ALIASES
from .app import prepare
from .solver import SolveResult, SolverOptions, solve

PARAMS = ("alpha", "fit_intercept", "schedule", "parallel", "workers", "tol", "max_iter",
          "threshold", "eta", "chunks", "warm_start", "safeguard", "seed")


def check_data(X, y=None) -> tuple[Any, np.ndarray | None]:
    """Validate X (dense or scipy sparse, 2-D, finite) and y (1-D, same length, finite)."""
    if sp.issparse(X):
        X = sp.csc_matrix(X, dtype=np.float64)
        values = X.data
    else:
        try:
            X = np.asarray(X, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"X must be numeric: {exc}") from None
        values = X
    if X.ndim != 2:
        raise ConfigError(f"X must be 2-D (samples x features), got shape {X.shape}")
    if X.shape[0] < 2 or X.shape[1] < 1:
        raise ConfigError(f"X needs at least 2 samples and 1 feature, got shape {X.shape}")
    if not np.all(np.isfinite(values)):
        raise ConfigError("X contains NaN or infinite values")
    if y is None:
        return X, None
    y = np.asarray(y, dtype=np.float64)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y.ravel()
    if y.ndim != 1:
        raise ConfigError(f"y must be 1-D, got shape {y.shape}")
    if y.shape[0] != X.shape[0]:
        raise ConfigError(f"X has {X.shape[0]} samples but y has {y.shape[0]}")
    if not np.all(np.isfinite(y)):
        raise ConfigError("y contains NaN or infinite values")
    return X, y


class Lasso:
    """L1-regularised least squares, ``min 1/(2n)||y - Xb - b0||^2 + alpha ||b||_1``.

    Solved by coordinate descent on the model-parallel scheduler: each round the schedule
    picks ``parallel`` coordinates (default STRADS's priority + dependency schedule), the
    ``workers`` compute their partial gradients over their samples (``push``) and the
    soft-threshold update is applied to the sum (``pull``). Stops when the duality gap is
    ``<= tol * ||y - mean(y)||^2`` (scikit-learn's criterion) or after ``max_iter`` epochs
    (an epoch is d coordinate updates).

    Attributes after ``fit``: ``coef_``, ``intercept_``, ``n_iter_`` (epochs, rounded up),
    ``dual_gap_``, ``objective_``, ``n_updates_``, ``converged_``, ``history_`` (objective
    and gap at every check), ``result_`` (the full :class:`SolveResult`).
    """

    def __init__(self, alpha: float = 1.0, *, fit_intercept: bool = True,
                 schedule: str = "priority-dependency", parallel: int = 8, workers: int = 1,
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

    # -- scikit-learn protocol -------------------------------------------------------------

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {p: getattr(self, p) for p in PARAMS}

    def set_params(self, **params: Any) -> Lasso:
        for key, value in params.items():
            if key not in PARAMS:
                raise ConfigError(f"Lasso has no parameter {key!r}; valid: {PARAMS}")
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        return f"Lasso(alpha={self.alpha!r}, schedule={self.schedule!r}, workers={self.workers})"

    def _validate_params(self) -> None:
        if not (isinstance(self.alpha, int | float) and self.alpha >= 0):
            raise ConfigError(f"alpha must be a number >= 0, got {self.alpha!r}")
        name = ALIASES.get(self.schedule, self.schedule)
        if name not in SCHEDULES:
            raise ConfigError(f"unknown schedule {self.schedule!r}; choose one of {SCHEDULES}")
        for key in ("parallel", "workers", "max_iter", "chunks"):
            value = getattr(self, key)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{key} must be a positive int, got {value!r}")
        if not self.tol > 0:
            raise ConfigError(f"tol must be > 0, got {self.tol!r}")

    def fit(self, X, y, *, stragglers: Stragglers | None = None, on_check=None,
            check_every: int | None = None, max_seconds: float | None = None) -> Lasso:
        """Fit on X (n x d, dense or sparse) and y (n,). ``on_check(entry)`` is called at
        every convergence check (for progress bars)."""
        self._validate_params()
        X, y = check_data(X, y)
        prep = prepare(X, y, self.fit_intercept)
        init = None
        if self.warm_start and getattr(self, "coef_", None) is not None:
            if self.coef_.shape != (prep.d,):
                raise ConfigError(
                    f"warm start: coef_ has {self.coef_.shape[0]} features, X has {prep.d}"
                )
            init = self.coef_
        opts = SolverOptions(
            schedule=self.schedule, parallel=self.parallel, workers=self.workers, tol=self.tol,
            max_iter=self.max_iter, threshold=self.threshold, eta=self.eta, chunks=self.chunks,
            check_every=check_every, safeguard=self.safeguard, stragglers=stragglers,
            seed=self.seed, max_seconds=max_seconds,
        )
        result = solve(prep, self.alpha, init, opts, on_check=on_check)
        self._set_result(result, prep.x_mean, prep.y_mean)
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
        self.n_features_in_ = int(result.coef.size)

    def _check_fitted(self) -> None:
        if getattr(self, "coef_", None) is None:
            raise ConfigError("this Lasso is not fitted yet; call fit(X, y) first")

    def predict(self, X) -> np.ndarray:
        self._check_fitted()
        X, _ = check_data(X)
        if X.shape[1] != self.coef_.size:
            raise ConfigError(f"X has {X.shape[1]} features, the model was fitted on "
                              f"{self.coef_.size}")
        return np.asarray(X @ self.coef_).ravel() + self.intercept_

    def score(self, X, y) -> float:
        """Coefficient of determination R^2 on (X, y)."""
        X, y = check_data(X, y)
        resid = y - self.predict(X)
        total = float(((y - y.mean()) ** 2).sum())
        return 1.0 - float(resid @ resid) / total if total > 0 else 0.0

    # -- persistence: npz + JSON, atomic -------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Write the fitted model as ``path`` (npz: coef) and ``path.json`` (params)."""
        self._check_fitted()
        import io

        buf = io.BytesIO()
        np.savez(buf, coef=self.coef_, intercept=np.array([self.intercept_]))
        atomic_write_bytes(path, buf.getvalue())
        meta = {"model": "stalesync.Lasso", "params": self.get_params()}
        atomic_write_bytes(f"{path}.json", json.dumps(meta, indent=1).encode())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Lasso:
        meta_path = Path(f"{path}.json")
        try:
            meta = json.loads(meta_path.read_text())
            with np.load(path, allow_pickle=False) as z:
                coef, intercept = z["coef"], float(z["intercept"][0])
        except (OSError, ValueError, KeyError) as exc:
            raise DataFormatError(f"{path}: not a saved stalesync Lasso ({exc})") from None
        model = cls(**meta["params"])
        model.coef_, model.intercept_ = coef, intercept
        model.n_features_in_ = int(coef.size)
        return model


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
