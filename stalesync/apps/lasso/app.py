"""Lasso coordinate descent as a model-parallel app: push, pull and sync.

Problem: ``min_b 1/(2n) ||y_c - X_c b||^2 + alpha ||b||_1`` (``_c``: centred when an
intercept is fitted). Samples are partitioned over shards; each shard keeps
``s = y_c - X b`` for its rows (for dense data X is centred explicitly and ``mu = 0``; for
sparse data centring is implicit, see :mod:`stalesync.kernels.lasso`).

* ``push(shard, J)``: ``[X_J^T s, sum(s)]`` over the shard's rows (compiled);
* ``pull(plan, partials)``: sum over shards, then the soft-threshold update of each
  ``b_j`` (compiled), returning ``delta_j``;
* ``sync(shard, plan, deltas)``: ``s -= delta_j X_j`` for the shard's rows (compiled).

``push``/``sync`` live in :class:`LassoProgram` (what a worker runs), ``pull`` in
:class:`LassoApp` (the driver, which owns the coefficients).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from ...kernels import lasso as k
from ...persist.snapshot import SnapshotError
from ...scheduler import Plan, balanced_chunks


@dataclass
class Prepared:
    """Validated, centred problem data shared by every shard."""

    X: np.ndarray | sp.csc_matrix  # dense Fortran (centred) or CSC (raw)
    y: np.ndarray  # centred when fitting an intercept
    mu: np.ndarray  # implicit column means (zeros for dense data)
    x_mean: np.ndarray  # the column means removed (for the intercept)
    y_mean: float
    norm2: np.ndarray  # ||X_j - mu_j||^2 over all rows

    @property
    def n(self) -> int:
        return int(self.X.shape[0])

    @property
    def d(self) -> int:
        return int(self.X.shape[1])

    @property
    def sparse(self) -> bool:
        return sp.issparse(self.X)


def prepare(X, y: np.ndarray, fit_intercept: bool) -> Prepared:
    """Centre the data (explicitly when dense, implicitly when sparse)."""
    y = np.asarray(y, dtype=np.float64)
    y_mean = float(y.mean()) if fit_intercept else 0.0
    yc = y - y_mean
    if sp.issparse(X):
        X = sp.csc_matrix(X, dtype=np.float64)
        X.sum_duplicates()  # also sorts the indices
        n = X.shape[0]
        x_mean = np.asarray(X.sum(axis=0)).ravel() / n if fit_intercept else np.zeros(X.shape[1])
        sq = np.asarray(X.multiply(X).sum(axis=0)).ravel()
        norm2 = np.maximum(sq - n * x_mean**2, 0.0)
        return Prepared(X, yc, x_mean, x_mean, y_mean, norm2)
    X = np.array(X, dtype=np.float64, order="F", copy=True)
    x_mean = X.mean(axis=0) if fit_intercept else np.zeros(X.shape[1])
    if fit_intercept:
        X -= x_mean
    norm2 = np.einsum("ij,ij->j", X, X)
    return Prepared(X, yc, np.zeros(X.shape[1]), x_mean, y_mean, norm2)


class Columns:
    """Columns of X as the compiled kernels take them (sorted CSC arrays, or one Fortran
    array), and the two passes every holder of columns makes over them: what a shard of
    rows, a block of columns and the driver's gathered sweep share."""

    def __init__(self, X) -> None:
        if sp.issparse(X):
            X = sp.csc_matrix(X)
            X.sort_indices()
            self.sparse = True
            self.indptr, self.indices, self.data = X.indptr, X.indices, X.data
        else:
            self.sparse = False
            self.x = np.asfortranarray(X)

    def push(self, s: np.ndarray, cols: np.ndarray, out: np.ndarray) -> None:
        """``out[k] = X[:, cols[k]]^T s`` (compiled)."""
        if self.sparse:
            k.push_csc(self.indptr, self.indices, self.data, s, cols, out)
        else:
            k.push_dense(self.x, s, cols, out)

    def descend(self, s: np.ndarray, ssum: float, coef: np.ndarray, norm2: np.ndarray,
                mu: np.ndarray, cols: np.ndarray, threshold: float, passes: int,
                tol: float) -> tuple[int, float]:
        """Sequential coordinate descent over ``cols`` against residual ``s``, ``coef``
        and ``s`` updated in place: ``(updates, sum(s))`` (dense data is centred, so its
        ``sum(s)`` is not tracked and comes back as given)."""
        if self.sparse:
            updates, ssum = k.sweep_csc(self.indptr, self.indices, self.data, s, ssum, coef,
                                        norm2, mu, cols, threshold, passes, tol)
        else:
            updates = k.sweep_dense(self.x, s, coef, norm2, cols, threshold, passes, tol)
        return int(updates), ssum


class LassoShard(Columns):
    """A worker's rows: its slice of X, y and the residual ``s = y_c - X b``."""

    def __init__(self, X, y: np.ndarray, coef: np.ndarray) -> None:
        super().__init__(X)
        self.y = np.ascontiguousarray(y)
        self.X = X
        self.reset(coef)

    def reset(self, coef: np.ndarray) -> None:
        """Recompute the residual from scratch for coefficients ``coef``."""
        self.s = self.y - np.asarray(self.X @ coef).ravel() if np.any(coef) else self.y.copy()
        self.ssum = float(self.s.sum())

    def grads(self, cols: np.ndarray) -> np.ndarray:
        out = np.empty(cols.size)
        self.push(self.s, cols, out)
        return out

    def stats(self, all_cols: np.ndarray) -> np.ndarray:
        """``[X^T s (all columns), s^T s, s^T y, sum(s)]`` for the duality gap; also
        re-derives ``sum(s)`` exactly, cancelling any drift of the running sum."""
        self.ssum = float(self.s.sum())
        return np.concatenate([self.grads(all_cols),
                               [k.sum_sq(self.s), k.dot(self.s, self.y), self.ssum]])


def make_shards(prep: Prepared, parts: int, coef: np.ndarray) -> list[LassoShard]:
    """Split the samples into ``parts`` shards of about equal nonzeros."""
    if parts == 1:  # every row: the prepared columns as they are (no CSR round trip)
        return [LassoShard(prep.X, prep.y, coef)]
    if prep.sparse:
        csr = prep.X.tocsr()
        weights = np.diff(csr.indptr).astype(np.float64)
        chunks = balanced_chunks(weights, parts)
        return [LassoShard(csr[rows[0] : rows[-1] + 1].tocsc(), prep.y[rows], coef)
                for rows in chunks]
    chunks = balanced_chunks(np.ones(prep.n), parts)
    return [LassoShard(prep.X[rows[0] : rows[-1] + 1], prep.y[rows], coef) for rows in chunks]


class LassoProgram:
    """What runs on the workers: ``push``/``sync`` over a :class:`LassoShard` (stateless,
    so it is all a remote worker receives besides its shards)."""

    def push(self, shard: LassoShard, cols: np.ndarray) -> np.ndarray:
        out = np.empty(cols.size + 1)
        shard.push(shard.s, cols, out[:-1])
        out[-1] = shard.ssum
        return out

    def sync_push(self, shard: LassoShard, plan: Plan, deltas: np.ndarray,
                  cols: np.ndarray) -> np.ndarray:
        """``sync`` of the last round and ``push`` of this one in one compiled call."""
        out = np.empty(cols.size + 1)
        if shard.sparse:
            shard.ssum += k.sync_push_csc(shard.indptr, shard.indices, shard.data, shard.s,
                                          plan.variables, deltas, cols, out)
        else:
            shard.ssum += k.sync_push_dense(shard.x, shard.s, plan.variables, deltas, cols, out)
        out[-1] = shard.ssum
        return out

    def sync(self, shard: LassoShard, plan: Plan, deltas: np.ndarray) -> None:
        if shard.sparse:
            shard.ssum += k.sync_csc(shard.indptr, shard.indices, shard.data, shard.s,
                                     plan.variables, deltas)
        else:
            shard.ssum += k.sync_dense(shard.x, shard.s, plan.variables, deltas)

    def sweep(self, shard: LassoShard, cols: np.ndarray, coef: np.ndarray, norm2: np.ndarray,
              mu: np.ndarray, threshold: float, max_passes: int, tol: float
              ) -> tuple[np.ndarray, int]:
        """Sequential coordinate descent over ``cols`` on a shard holding every row (the
        ``sequential`` schedule on one worker): the new ``coef[cols]`` and the number of
        updates made."""
        coef = coef.copy()
        updates, shard.ssum = shard.descend(shard.s, shard.ssum, coef, norm2, mu, cols,
                                          threshold, max_passes, tol)
        return coef[cols], updates

    def state(self, shard: LassoShard) -> dict[str, np.ndarray]:
        return {"s": shard.s.copy(), "ssum": np.array([shard.ssum])}

    def load_state(self, shard: LassoShard, state: dict[str, np.ndarray]) -> None:
        shard.s = np.array(state["s"], dtype=np.float64)
        shard.ssum = float(state["ssum"][0])


class LassoApp:
    """The Lasso ``pull`` (the soft-threshold update); owns the coefficient vector."""

    program = LassoProgram()

    def __init__(self, prep: Prepared, alpha: float, coef: np.ndarray) -> None:
        self.prep = prep
        self.alpha = float(alpha)
        self.coef = np.array(coef, dtype=np.float64)
        self.threshold = prep.n * self.alpha

    def pull(self, plan: Plan, partials: list[np.ndarray]) -> np.ndarray:
        total = partials[0] if len(partials) == 1 else np.sum(partials, axis=0)
        deltas = np.empty(plan.size)
        k.soft_threshold_update(self.coef, self.prep.norm2, self.prep.mu, plan.variables,
                                total[:-1], total[-1], self.threshold, deltas)
        return deltas

    def state(self) -> dict[str, np.ndarray]:
        return {"coef": self.coef.copy()}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        if state["coef"].shape != self.coef.shape:
            raise SnapshotError(f"the snapshot's model has {state['coef'].size} coefficients, "
                                f"this problem has {self.coef.size}")
        self.coef[:] = state["coef"]


@dataclass
class GapReport:
    """Objective (scaled like scikit-learn's) and duality gap at one point."""

    objective: float
    gap: float  # in scikit-learn's unscaled units (compare with tol * ||y_c||^2)
    grads: np.ndarray | None = None  # X_c^T r for every column (None: screened per block)


def check_entry(drv: Any, app: LassoApp, report: GapReport, index: int, elapsed: float,
                parallel: int) -> dict[str, Any]:
    """One convergence check's entry of a solve's history (and of ``on_check``)."""
    stats = drv.stats
    return {"check": index, "updates": stats.updates, "rounds": stats.rounds,
            "passes": index + 1, "time_s": elapsed, "objective": report.objective,
            "gap": report.gap, "parallel": parallel, "nnz": int(np.count_nonzero(app.coef)),
            "busy_s": stats.busy_s.tolist(), "wait_s": stats.wait_s.tolist(),
            "bytes": stats.bytes_pushed}


def gap_report(app: LassoApp, stats: list[np.ndarray]) -> GapReport:
    """Combine the shards' :meth:`LassoShard.stats` into the objective and duality gap."""
    total = np.sum(stats, axis=0)
    d = app.prep.d
    grads = total[:d] - app.prep.mu * total[d + 2]
    dual_norm = float(np.max(np.abs(grads))) if d else 0.0
    objective, gap = duality_gap(app, dual_norm, total[d], total[d + 1], total[d + 2])
    return GapReport(objective, gap, grads)


def duality_gap(app: LassoApp, dual_norm: float, s_sq: float, s_dot_y: float,
                s_sum: float) -> tuple[float, float]:
    """``(objective, duality gap)`` from the largest centred gradient ``max_j |X_j^T r|``
    and the sums of the stored residual ``s`` (the formulas of scikit-learn's
    ``enet_coordinate_descent``; the true residual is ``s + mu^T b``)."""
    prep, coef = app.prep, app.coef
    c = float(prep.mu @ coef)
    r_norm2 = s_sq + 2.0 * c * s_sum + prep.n * c * c
    r_dot_y = s_dot_y + c * float(prep.y.sum())
    l1 = float(np.abs(coef).sum())
    lam = app.threshold
    if dual_norm > lam:
        const = lam / dual_norm
        gap = 0.5 * (r_norm2 + r_norm2 * const * const)
    else:
        const = 1.0
        gap = r_norm2
    gap += lam * l1 - const * r_dot_y
    return (0.5 * r_norm2 + lam * l1) / prep.n, float(gap)


def predicted_changes(app: LassoApp, grads: np.ndarray) -> np.ndarray:
    """What each coordinate's update would change right now (for fresh priorities)."""
    prep, coef = app.prep, app.coef
    nj = prep.norm2
    z = grads + nj * coef
    new = np.sign(z) * np.maximum(np.abs(z) - app.threshold, 0.0)
    new = np.divide(new, nj, out=np.zeros_like(new), where=nj > 0)
    return new - coef
