"""Distributed linear algebra over row-partitioned data, through the parameter server
(SystemML's physical operators; Spark MLlib's ``RowMatrix``).

- :func:`gram` (SystemML's ``tsmm``, transpose-self matrix multiply): ``X^T X``, ``X^T y``
  and ``y^T y`` of a tall matrix in one pass. Each worker multiplies its own rows and adds
  its ``(p + 1) x (p + 1)`` block to one table; the shard's sum is the product. With
  ``center=True`` the products are of ``X - mean`` and ``y - mean(y)``: the driver computes
  the means first (O(n p), against the product's O(n p^2)), and dense workers subtract
  them from their rows chunk by chunk before multiplying, so the centred product has no
  cancellation (``X^T X - n mu mu^T`` loses digits when the mean is large). Sparse rows
  are not centred (that would make them dense); their correction is applied to the sum.
- :func:`mapmm` (SystemML's ``mapmm``, map-side multiply): ``X @ B`` for a small ``B``
  broadcast to the workers; the result stays partitioned like ``X`` (each worker returns
  its rows).

Least squares and ridge by the normal equations (``LinearRegressor(solver="normal")``)
and :class:`~stalesync.apps.pca.PCA` are built on these. Each worker runs one BLAS thread
(threadpoolctl) while the job runs: workers, not BLAS threads, are the unit of parallelism,
as for k-means.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from . import job
from .apps.base import RunConfig
from .apps.workers import AUTO, Decision, Work, available_cores, check_workers, decide, timed
from .errors import ConfigError
from .kernels.checks import all_finite
from .kernels.gram import csr_gram_upper, symmetric_from_upper
from .ps.tables import TableSpec

GRAM = "gram"
MAX_GRAM_BYTES = 4 * 2**30  # a (p + 1) x (p + 1) float64 table larger than this is refused
CHUNK_ROWS = 4096  # dense rows centred and multiplied at a time (bounded scratch memory)
INC_VALUES = 2**21  # at most this many values per increment message
PROBE_ROWS = 512  # workers="auto" times the product of this many rows


@dataclass(frozen=True)
class Gram:
    """The products of one pass: ``xtx`` (p x p), ``xty`` (p, or None without ``y``),
    ``yty``, the row count and the means (zeros unless ``center``)."""

    xtx: np.ndarray
    xty: np.ndarray | None
    yty: float
    n: int
    mean_x: np.ndarray
    mean_y: float
    centered: bool
    workers: int
    record: dict[str, Any] = field(repr=False)


def check_matrix(X: Any, name: str = "X") -> np.ndarray | sp.csr_matrix:
    """``X`` as a float64 C-ordered array or CSR matrix with sorted indices; a clear error
    for anything else (not 2-D, empty, NaN or infinite)."""
    if sp.issparse(X):
        X = sp.csr_matrix(X, dtype=np.float64)
        X.sum_duplicates()
        values = X.data
    else:
        try:
            X = np.ascontiguousarray(X, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{name} must be a numeric matrix: {exc}", param=name) from None
        values = X
    if X.ndim != 2 or X.shape[0] < 1 or X.shape[1] < 1:
        raise ConfigError(f"{name} must be a non-empty 2-D matrix, got shape {X.shape}",
                          param=name)
    if not all_finite(values, available_cores()):
        raise ConfigError(f"{name} contains NaN or infinite values", param=name)
    return X


def _check_target(y: Any, n: int) -> np.ndarray | None:
    if y is None:
        return None
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 1 or y.shape[0] != n:
        raise ConfigError(f"y must be a vector of {n} values (one per row of X), got shape "
                          f"{y.shape}", param="y")
    if not np.isfinite(y).all():
        raise ConfigError("y contains NaN or infinite values", param="y")
    return y


def _partial_product(X, y: np.ndarray, mean_x: np.ndarray, mean_y: float) -> np.ndarray:
    """One partition's ``Z^T Z`` for ``Z = [X - mean_x, y - mean_y]`` (sparse: uncentred;
    the upper triangle only, the driver mirrors the sum)."""
    p = X.shape[1]
    out = np.zeros((p + 1, p + 1))
    if sp.issparse(X):
        csr_gram_upper(X.indptr, X.indices, X.data, y, out)
        return out
    Z = np.empty((min(CHUNK_ROWS, X.shape[0]), p + 1))
    for lo in range(0, X.shape[0], CHUNK_ROWS):
        hi = min(lo + CHUNK_ROWS, X.shape[0])
        z = Z[: hi - lo]
        np.subtract(X[lo:hi], mean_x, out=z[:, :p])
        np.subtract(y[lo:hi], mean_y, out=z[:, p])
        out += z.T @ z  # numpy runs a.T @ a as BLAS syrk
    return out


def _add_in_blocks(ctx: Any, block: np.ndarray) -> None:
    """Add ``block`` to the Gram table, a bounded number of values per message."""
    rows_per_inc = max(1, INC_VALUES // block.shape[1])
    for lo in range(0, block.shape[0], rows_per_inc):
        hi = min(lo + rows_per_inc, block.shape[0])
        ctx.inc(GRAM, np.arange(lo, hi), block[lo:hi])


def _gram_worker(mean_x: np.ndarray, mean_y: float):
    def worker(ctx: Any) -> int:
        X, y = ctx.data
        _add_in_blocks(ctx, _partial_product(X, y, mean_x, mean_y))
        ctx.clock()
        return int(X.shape[0])

    return worker


def _row_parts(X, y: np.ndarray, workers: int) -> list[tuple[Any, np.ndarray]]:
    cuts = np.linspace(0, X.shape[0], workers + 1).astype(np.int64)
    return [(X[lo:hi], y[lo:hi]) for lo, hi in zip(cuts[:-1], cuts[1:], strict=True)]


def _decide_workers(workers: int | str, X, y: np.ndarray, resume: str | None) -> Decision:
    """The worker count: ``workers`` as given, or (``"auto"``) from the product's cost
    timed on a sample of the rows."""
    n = X.shape[0]
    m = min(n, PROBE_ROWS)
    return decide(workers, lambda: Work(
        timed(_partial_product, X[:m], y[:m], np.zeros(X.shape[1]), 0.0) * n / m, 1,
        max_workers=n), resume=resume)


def gram(X: Any, y: Any = None, *, center: bool = False, workers: int | str = AUTO,
         run: RunConfig | dict | None = None, seed: int = 0) -> Gram:
    """``X^T X`` (and ``X^T y``, ``y^T y`` when ``y`` is given) summed over row partitions
    of ``X`` (dense or sparse) on ``workers`` workers, one table add per worker; centred
    on the means when ``center``. ``run``: where the job runs (:class:`RunConfig`)."""
    check_workers(workers)
    run = RunConfig.coerce(run)
    X = check_matrix(X)
    n, p = X.shape
    if (p + 1) ** 2 * 8 > MAX_GRAM_BYTES:
        raise ConfigError(f"X has {p} columns: its Gram table would take "
                          f"{(p + 1) ** 2 * 8 / 2**30:.1f} GiB (limit "
                          f"{MAX_GRAM_BYTES / 2**30:.0f} GiB); reduce the columns (e.g. "
                          "hash_features) or use an iterative solver", param="X")
    y_given = _check_target(y, n)
    y = y_given if y_given is not None else np.zeros(n)
    mean_x = np.asarray(X.mean(axis=0)).ravel() if center else np.zeros(p)
    mean_y = float(y.mean()) if center else 0.0
    dense_center = center and not sp.issparse(X)
    decision = _decide_workers(workers, X, y, run.resume)
    w = decision.workers
    if w > n:
        raise ConfigError(f"{n} rows cannot be split over {w} workers", param="workers")
    with threadpool_limits(limits=1, user_api="blas"):
        result = job.run(
            _gram_worker(mean_x if dense_center else np.zeros(p),
                         mean_y if dense_center else 0.0),
            [TableSpec(GRAM, p + 1, p + 1)], data=_row_parts(X, y, w), workers=w,
            consistency="bsp", iterations=1, seed=seed, app="linalg",
            **run.job_options(seed))
    Z = symmetric_from_upper(result.tables[GRAM]) if sp.issparse(X) else result.tables[GRAM]
    if center and sp.issparse(X):  # centre the sum: Z^T Z - n m m^T, m = [mean_x, mean_y]
        m = np.append(mean_x, mean_y)
        Z = Z - n * np.outer(m, m)
    record = result.record
    record["workers_decision"] = decision.as_record()
    record["final"] = {"rows": n, "columns": p, "centered": center,
                       "sparse": bool(sp.issparse(X))}
    return Gram(xtx=Z[:p, :p].copy(), xty=Z[:p, p].copy() if y_given is not None else None,
                yty=float(Z[p, p]), n=n, mean_x=mean_x, mean_y=mean_y, centered=center,
                workers=w, record=record)


def _mapmm_worker(B: np.ndarray):
    def worker(ctx: Any) -> np.ndarray:
        X = ctx.data
        return np.asarray(X @ B)

    return worker


def mapmm(X: Any, B: Any, *, workers: int | str = AUTO, run: RunConfig | dict | None = None,
          seed: int = 0) -> np.ndarray:
    """``X @ B`` with ``X``'s rows partitioned over ``workers`` workers and the small
    ``B`` broadcast to each (SystemML's map-side multiply); no table is needed."""
    check_workers(workers)
    run = RunConfig.coerce(run)
    X = check_matrix(X)
    B = check_matrix(B, "B")
    if B.shape[0] != X.shape[1]:
        raise ConfigError(f"B has {B.shape[0]} rows, X has {X.shape[1]} columns", param="B")
    if sp.issparse(B):
        B = B.toarray()
    n = X.shape[0]
    m = min(n, PROBE_ROWS)
    w = decide(workers, lambda: Work(timed(lambda: X[:m] @ B) * n / m, 0, max_workers=n),
               resume=run.resume).workers
    if w > n:
        raise ConfigError(f"{n} rows cannot be split over {w} workers", param="workers")
    cuts = np.linspace(0, n, w + 1).astype(np.int64)
    parts = [X[lo:hi] for lo, hi in zip(cuts[:-1], cuts[1:], strict=True)]
    with threadpool_limits(limits=1, user_api="blas"):
        result = job.run(_mapmm_worker(B), [TableSpec("unused", 1, 1)], data=parts, workers=w,
                         consistency="bsp", iterations=0, seed=seed, app="linalg",
                         **run.job_options(seed))
    return np.vstack(result.worker_results) if w > 1 else result.worker_results[0]

