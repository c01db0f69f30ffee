"""Dependency-aware scheduling: never update two strongly correlated variables together.

Parallel coordinate updates computed from the same residual interfere when their data
columns correlate: each corrects the same error, together they overshoot (Shotgun's
divergence). This schedule asks a base schedule for more candidates than it needs
(``oversample * P``, in the base's order of preference) and greedily keeps a candidate only
if its column's |correlation| with every variable already kept is <= ``threshold``.
Correlations are computed only among sampled candidates, lazily (a candidate is compared
with the kept ones until one conflicts), in a compiled kernel, and cached per pair, so the
same active variables drawn round after round cost nothing after the first time.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from numba import types
from numba.typed import Dict

from ..errors import ConfigError
from ..kernels import scheduler as k
from .base import Feedback, Plan, Schedule
from .basic import ProposingSchedule

CACHE_LIMIT = 4_000_000  # pairs; the cache is cleared when it grows past this


class ColumnCorrelation:
    """|corr| between the (optionally centred) columns of a dense or CSC data matrix.

    Centring is implicit (``X_i^T X_j - n mu_i mu_j``), so sparse data stays sparse.
    """

    def __init__(self, X, center: bool = True) -> None:
        if sp.issparse(X):
            X = sp.csc_matrix(X, dtype=np.float64)
            X.sum_duplicates()  # the merge of two columns needs sorted, unique indices
            self.sparse = True
            self.indptr = X.indptr.astype(np.int64)
            self.indices = X.indices.astype(np.int64)
            self.data = X.data
            colsum = np.asarray(X.sum(axis=0)).ravel()
            sq = np.asarray(X.multiply(X).sum(axis=0)).ravel()
        else:
            X = np.asfortranarray(X, dtype=np.float64)
            if X.ndim != 2:
                raise ConfigError(f"X must be 2-D, got shape {X.shape}")
            self.sparse = False
            self.x = X
            colsum = X.sum(axis=0)
            sq = np.einsum("ij,ij->j", X, X)
        self.n, self.d = X.shape
        self.mu = colsum / self.n if center else np.zeros(self.d)
        self.norm2 = np.maximum(sq - self.n * self.mu**2, 0.0)
        self.cache = Dict.empty(key_type=types.int64, value_type=types.float64)
        self._calls = 0

    def matrix(self, cols) -> np.ndarray:
        """The full |corr| matrix among ``cols`` (zero diagonal); for checks and tests."""
        cols = np.ascontiguousarray(cols, dtype=np.int64)
        if self.sparse:
            return k.corr_matrix_csc(self.indptr, self.indices, self.data, float(self.n),
                                     self.mu, self.norm2, cols)
        return k.corr_matrix_dense(self.x, self.mu, self.norm2, cols)

    def select(self, candidates: np.ndarray, threshold: float, limit: int) -> np.ndarray:
        """Greedy independent subset of ``candidates`` (in order), at most ``limit`` long."""
        self._calls += 1
        if self._calls % 1024 == 0 and len(self.cache) > CACHE_LIMIT:
            self.cache.clear()  # checked now and then: len() of a typed dict is not free
        cands = np.ascontiguousarray(candidates, dtype=np.int64)
        if self.sparse:
            return k.select_csc(self.indptr, self.indices, self.data, float(self.n), self.mu,
                                self.norm2, cands, float(threshold), int(limit), self.cache)
        return k.select_dense(self.x, self.mu, self.norm2, cands, float(threshold), int(limit),
                              self.cache)


class DependencyAware(Schedule):
    """Wrap a proposing schedule (cyclic, random, priority) with a correlation filter.

    ``DependencyAware(Priority(P), ColumnCorrelation(X), threshold=0.3)`` is STRADS's
    priority + dependency schedule; ``DependencyAware(Shotgun(P), ...)`` the plain
    dependency-aware one.
    """

    def __init__(self, base: ProposingSchedule, columns: ColumnCorrelation,
                 threshold: float = 0.3, oversample: int = 4) -> None:
        super().__init__()
        if not 0 <= threshold < 1:
            raise ConfigError(f"correlation threshold must be in [0, 1), got {threshold!r}")
        if oversample < 1:
            raise ConfigError(f"oversample must be >= 1, got {oversample!r}")
        self.base = base
        self.columns = columns
        self.threshold = float(threshold)
        self.oversample = int(oversample)
        self.name = f"{base.name}+dependency"

    @property
    def parallel(self) -> int:
        return self.base.parallel

    def bind(self, num_variables, num_workers, rng) -> None:
        if num_variables != self.columns.d:
            raise ConfigError(
                f"the schedule has {num_variables} variables but the data has "
                f"{self.columns.d} columns"
            )
        super().bind(num_variables, num_workers, rng)
        self.base.bind(num_variables, num_workers, rng)

    def state(self) -> dict:
        return {**self.base.state(), "round": self.round}

    def load_state(self, state: dict) -> None:
        self.base.load_state(state)
        self.round = int(state["round"])

    def next_round(self) -> Plan:
        p = min(self.parallel, self.num_variables)
        cands = self.base.propose(p * self.oversample)
        chosen = self.columns.select(cands, self.threshold, p)
        return self._plan(chosen, candidates=int(cands.size))

    def observe(self, plan: Plan, feedback: Feedback) -> None:
        self.base.observe(plan, feedback)

    def hint(self, variables: np.ndarray, changes: np.ndarray) -> None:
        self.base.hint(variables, changes)
