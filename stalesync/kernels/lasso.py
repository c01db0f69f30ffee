"""Compiled kernels of Lasso coordinate descent on one data shard (dense or CSC columns).

A shard keeps ``s = y_c - X b`` for its rows. With an implicit intercept (sparse data is
never centred, that would destroy sparsity) the true residual is ``s + mu^T b``, and the
gradient of coordinate j is ``X_j^T s - mu_j * sum(s)`` (see ``docs/scheduler.md``), so the
kernels only ever touch the nonzeros of a column. Every kernel releases the GIL so that the
worker threads of the embedded scheduler run them on all cores at once.
"""

from __future__ import annotations

import numba
import numpy as np

# --------------------------------------------------------------------------- push: partials


@numba.njit(nogil=True, cache=True)
def push_dense(x, s, cols, out):  # pragma: no cover - compiled
    """``out[k] = X[:, cols[k]]^T s`` for a Fortran-ordered dense shard."""
    n = x.shape[0]
    for k in range(cols.shape[0]):
        j = cols[k]
        acc = 0.0
        for i in range(n):
            acc += x[i, j] * s[i]
        out[k] = acc


@numba.njit(nogil=True, cache=True)
def push_csc(indptr, indices, data, s, cols, out):  # pragma: no cover - compiled
    """``out[k] = X[:, cols[k]]^T s`` for a CSC shard."""
    for k in range(cols.shape[0]):
        j = cols[k]
        acc = 0.0
        for p in range(indptr[j], indptr[j + 1]):
            acc += data[p] * s[indices[p]]
        out[k] = acc


# ------------------------------------------------------------------ sync: residual updates


@numba.njit(nogil=True, cache=True)
def sync_dense(x, s, cols, deltas):  # pragma: no cover - compiled
    """``s -= deltas[k] * X[:, cols[k]]`` for every k; returns the change of ``sum(s)``."""
    n = x.shape[0]
    dsum = 0.0
    for k in range(cols.shape[0]):
        d = deltas[k]
        if d == 0.0:
            continue
        j = cols[k]
        for i in range(n):
            v = d * x[i, j]
            s[i] -= v
            dsum -= v
    return dsum


@numba.njit(nogil=True, cache=True)
def sync_csc(indptr, indices, data, s, cols, deltas):  # pragma: no cover - compiled
    """``s -= deltas[k] * X[:, cols[k]]`` for every k; returns the change of ``sum(s)``."""
    dsum = 0.0
    for k in range(cols.shape[0]):
        d = deltas[k]
        if d == 0.0:
            continue
        j = cols[k]
        for p in range(indptr[j], indptr[j + 1]):
            v = d * data[p]
            s[indices[p]] -= v
            dsum -= v
    return dsum


# -------------------------------------------------------------- pull: the soft threshold


@numba.njit(nogil=True, cache=True)
def soft_threshold_update(coef, norm2, mu, cols, grads, ssum, threshold, deltas):
    """Apply the coordinate-descent update to ``coef[cols]`` in place (``pull``).

    ``grads[k]`` is ``X_j^T s`` summed over all shards, ``ssum`` is ``sum(s)``;
    ``threshold`` is ``n * alpha``. Writes each coordinate's change into ``deltas``.
    """
    for k in range(cols.shape[0]):
        j = cols[k]
        nj = norm2[j]
        if nj <= 0.0:
            deltas[k] = 0.0
            continue
        z = grads[k] - mu[j] * ssum + nj * coef[j]
        if z > threshold:
            new = (z - threshold) / nj
        elif z < -threshold:
            new = (z + threshold) / nj
        else:
            new = 0.0
        deltas[k] = new - coef[j]
        coef[j] = new


# ---------------------------------------------------------- dependency checks (scheduler)


@numba.njit(nogil=True, cache=True)
def gram_csc(indptr, indices, data, cols, work, out):  # pragma: no cover - compiled
    """``out[a, b] = X_{cols[a]}^T X_{cols[b]}`` among candidate columns of a CSC matrix.

    ``work`` is a zeroed float buffer of length n_samples; it is left zeroed.
    """
    m = cols.shape[0]
    for a in range(m):
        ja = cols[a]
        for p in range(indptr[ja], indptr[ja + 1]):
            work[indices[p]] = data[p]
        for b in range(a, m):
            jb = cols[b]
            acc = 0.0
            for p in range(indptr[jb], indptr[jb + 1]):
                acc += data[p] * work[indices[p]]
            out[a, b] = acc
            out[b, a] = acc
        for p in range(indptr[ja], indptr[ja + 1]):
            work[indices[p]] = 0.0


# ----------------------------------------------------------------- sequential reference


@numba.njit(nogil=True, cache=True)
def sum_sq(s):  # pragma: no cover - compiled
    acc = 0.0
    for i in range(s.shape[0]):
        acc += s[i] * s[i]
    return acc


@numba.njit(nogil=True, cache=True)
def dot(a, b):  # pragma: no cover - compiled
    acc = 0.0
    for i in range(a.shape[0]):
        acc += a[i] * b[i]
    return acc


def as_index(cols: np.ndarray) -> np.ndarray:
    """Column ids as the contiguous int64 array the kernels expect."""
    return np.ascontiguousarray(cols, dtype=np.int64)
