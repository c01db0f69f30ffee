"""``PCA``: principal components from the covariance summed over the workers' rows.

One pass computes the centred ``X^T X`` (:func:`stalesync.linalg.gram`, SystemML's
``tsmm``: every worker adds its rows' block to one table); the driver divides by ``n - 1``
and takes the eigenvectors with :func:`scipy.linalg.eigh`. ``transform`` multiplies the
rows, partitioned over the workers, by the broadcast components (:func:`~stalesync.linalg.
mapmm`). The result is scikit-learn's ``PCA`` (``svd_solver="covariance_eigh"``): the same
components (signs fixed the same way: each component's largest entry is positive) and
explained variances. The covariance is ``p x p``, so this suits tall data (n >> p, p up to
some thousands).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
from sklearn.base import TransformerMixin
from sklearn.utils.validation import validate_data

from ...errors import ConfigError
from ...linalg import gram, mapmm
from ..base import RunConfig, StalesyncEstimator, check_int


class PCA(TransformerMixin, StalesyncEstimator):
    """Principal component analysis of tall data, data-parallel.

    ``n_components``: how many to keep (None: ``min(n_samples, n_features)``). ``workers``:
    how many workers compute the covariance (``"auto"``: as many as pay, from the product's
    timed cost). ``fit(X, run=RunConfig(...))``: where it runs.

    Attributes (as scikit-learn's): ``components_`` (k x p), ``explained_variance_``,
    ``explained_variance_ratio_``, ``singular_values_``, ``mean_``, ``noise_variance_``,
    ``n_components_``, ``n_samples_``, ``run_record_``.
    """

    _fitted_attributes = ("components_", "mean_", "n_features_in_")
    _model_arrays = ("components_", "explained_variance_", "explained_variance_ratio_",
                     "singular_values_", "mean_")
    _model_info = ("n_components_", "n_samples_", "noise_variance_", "n_features_in_")

    def __init__(self, n_components: int | None = None, *, workers: int | str = "auto",
                 seed: int = 0) -> None:
        self.n_components = n_components
        self.workers = workers
        self.seed = seed

    def _check_own_params(self) -> None:
        if self.n_components is not None:
            check_int(self.n_components, "n_components", 1)

    def fit(self, X: Any, y: Any = None, *, run: RunConfig | dict | None = None) -> PCA:
        """Fit the components of ``X`` (dense or sparse; ``y`` is ignored)."""
        self._check_params()
        X = validate_data(self, X, reset=True, accept_sparse="csr", dtype=np.float64)
        n, p = X.shape
        if n < 2:
            raise ConfigError(f"PCA needs at least 2 samples, got {n}", param="X")
        k = min(n, p) if self.n_components is None else self.n_components
        if k > min(n, p):
            raise ConfigError(f"n_components={k} must be <= min(n_samples, n_features) = "
                              f"{min(n, p)}", param="n_components")
        g = gram(X, center=True, workers=self.workers, run=run, seed=self.seed)
        values, vectors = sla.eigh(g.xtx / (n - 1))
        order = np.argsort(values)[::-1]
        values = np.maximum(values[order][: min(n, p)], 0.0)
        components = vectors[:, order[:k]].T
        biggest = np.argmax(np.abs(components), axis=1)
        components *= np.sign(components[np.arange(k), biggest])[:, None]
        self.components_ = np.ascontiguousarray(components)
        self.mean_ = g.mean_x
        self.explained_variance_ = values[:k].copy()
        total = float(values.sum())
        self.explained_variance_ratio_ = (values[:k] / total if total > 0
                                          else np.zeros(k))
        self.singular_values_ = np.sqrt(values[:k] * (n - 1))
        self.noise_variance_ = float(values[k:].mean()) if k < min(n, p) else 0.0
        self.n_components_, self.n_samples_ = int(k), int(n)
        record = g.record
        record["final"] = {**record["final"], "n_components": int(k),
                           "explained_variance_ratio": float(self.explained_variance_ratio_
                                                             .sum())}
        self._keep_record(record)
        return self

    def transform(self, X: Any, *, run: RunConfig | dict | None = None) -> np.ndarray:
        """The rows of ``X`` in the components' coordinates: ``(X - mean) C^T``, the rows
        multiplied on the workers."""
        self._check_fitted()
        X = validate_data(self, X, reset=False, accept_sparse="csr", dtype=np.float64)
        if sp.issparse(X) or X.shape[0] < 2:
            projected = np.asarray(X @ self.components_.T)
        else:
            projected = mapmm(X, self.components_.T, workers=self.workers, run=run,
                              seed=self.seed)
        return projected - self.mean_ @ self.components_.T

    def inverse_transform(self, Z: Any) -> np.ndarray:
        """Rows back in feature space: ``Z C + mean``."""
        self._check_fitted()
        return np.asarray(Z, dtype=np.float64) @ self.components_ + self.mean_

    def _after_load(self) -> None:
        self.n_components_ = int(self.n_components_)
        self.n_samples_ = int(self.n_samples_)
        self.noise_variance_ = float(self.noise_variance_)
        self.n_features_in_ = int(self.n_features_in_)
