"""Synthetic Lasso data like the SSP/STRADS papers': few samples, very many features,
groups of strongly correlated features, and a sparse true coefficient vector.

Features come in groups of ``group_size``; within a group every column is
``sqrt(rho) * z_group + sqrt(1 - rho) * e`` (pairwise correlation ~rho), columns of different
groups are independent. ``n_informative`` coefficients, spread over distinct groups, are
nonzero (±1 to ±2); ``y = X b + noise``. Exactly the structure that makes Shotgun-style
parallel updates interfere and that a dependency-aware schedule must avoid.
"""

from __future__ import annotations

import numpy as np

from ...errors import ConfigError


def make_correlated_lasso(n_samples: int = 500, n_features: int = 10_000, *,
                          group_size: int = 10, rho: float = 0.9, n_informative: int = 50,
                          noise: float = 0.1, seed: int = 0
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(X, y, true_coef)``; X is dense, Fortran-ordered, float64."""
    if not 0 <= rho < 1:
        raise ConfigError(f"rho must be in [0, 1), got {rho}")
    if group_size < 1 or n_features < group_size:
        raise ConfigError("need 1 <= group_size <= n_features")
    groups = -(-n_features // group_size)
    if n_informative > groups:
        raise ConfigError(f"n_informative ({n_informative}) exceeds the {groups} groups")
    rng = np.random.default_rng(seed)
    shared = rng.standard_normal((n_samples, groups))
    X = np.asfortranarray(rng.standard_normal((n_samples, n_features)))
    X *= np.sqrt(1.0 - rho)
    X += np.sqrt(rho) * np.repeat(shared, group_size, axis=1)[:, :n_features]
    coef = np.zeros(n_features)
    picked = rng.choice(groups, size=n_informative, replace=False) * group_size
    picked += rng.integers(0, group_size, size=n_informative)
    picked = np.minimum(picked, n_features - 1)
    coef[picked] = rng.choice([-1.0, 1.0], n_informative) * rng.uniform(1, 2, n_informative)
    y = X @ coef + noise * rng.standard_normal(n_samples)
    return X, y, coef
