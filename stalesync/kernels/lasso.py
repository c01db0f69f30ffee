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

# positions and row ids index as unsigned: numba wraps a signed index around on every load
# (scipy's int32 CSC arrays make them signed); see stalesync.kernels.linear.U
U = np.uint64

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
        for p in range(U(indptr[j]), U(indptr[j + 1])):
            acc += data[p] * s[U(indices[p])]
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
        for p in range(U(indptr[j]), U(indptr[j + 1])):
            v = d * data[p]
            s[U(indices[p])] -= v
            dsum -= v
    return dsum


# -------------------------------------------------------------- pull: the soft threshold


@numba.njit(nogil=True, cache=True)
def _soft(z, threshold, nj):  # pragma: no cover - compiled
    """The soft-threshold update of one coordinate: S(z, threshold) / ||X_j||^2."""
    if z > threshold:
        return (z - threshold) / nj
    if z < -threshold:
        return (z + threshold) / nj
    return 0.0


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
        new = _soft(grads[k] - mu[j] * ssum + nj * coef[j], threshold, nj)
        deltas[k] = new - coef[j]
        coef[j] = new


# ------------------------------------------------- sweep: sequential CD on one whole shard


@numba.njit(nogil=True, cache=True)
def sweep_dense(x, s, coef, norm2, cols, threshold, max_passes, tol):  # pragma: no cover
    """Cyclic coordinate descent over ``cols`` on a shard holding *every* row (so each
    update is exact and sees the last): passes until the largest change of a pass is at
    most ``tol`` times the largest coefficient, or ``max_passes``. ``coef`` is the full
    vector, updated in place. Returns the number of coordinate updates."""
    n = x.shape[0]
    updates = 0
    for _ in range(max_passes):
        biggest_change = 0.0
        biggest_coef = 0.0
        for k in range(cols.shape[0]):
            j = cols[k]
            nj = norm2[j]
            updates += 1
            if nj <= 0.0:
                continue
            acc = 0.0
            for i in range(n):
                acc += x[i, j] * s[i]
            new = _soft(acc + nj * coef[j], threshold, nj)
            d = new - coef[j]
            if d != 0.0:
                coef[j] = new
                for i in range(n):
                    s[i] -= d * x[i, j]
            biggest_change = max(biggest_change, abs(d))
            biggest_coef = max(biggest_coef, abs(new))
        if biggest_change <= tol * biggest_coef:
            break
    return updates


@numba.njit(nogil=True, cache=True)
def sweep_csc(indptr, indices, data, s, ssum, coef, norm2, mu, cols, threshold, max_passes,
              tol):  # pragma: no cover - compiled
    """:func:`sweep_dense` for CSC columns with the implicit intercept; returns
    ``(updates, sum(s))``."""
    updates = 0
    for _ in range(max_passes):
        biggest_change = 0.0
        biggest_coef = 0.0
        for k in range(cols.shape[0]):
            j = cols[k]
            nj = norm2[j]
            updates += 1
            if nj <= 0.0:
                continue
            acc = 0.0
            for p in range(U(indptr[j]), U(indptr[j + 1])):
                acc += data[p] * s[U(indices[p])]
            new = _soft(acc - mu[j] * ssum + nj * coef[j], threshold, nj)
            d = new - coef[j]
            if d != 0.0:
                coef[j] = new
                for p in range(U(indptr[j]), U(indptr[j + 1])):
                    v = d * data[p]
                    s[U(indices[p])] -= v
                    ssum -= v
            biggest_change = max(biggest_change, abs(d))
            biggest_coef = max(biggest_coef, abs(new))
        if biggest_change <= tol * biggest_coef:
            break
    return updates, ssum


@numba.njit(nogil=True, cache=True)
def working_set(grads, coef, norm2, threshold, out):  # pragma: no cover - compiled
    """Screen a block of columns from their gradients ``grads`` (``X_j^T r``, centred):
    write to ``out`` the columns an update would touch (a nonzero coefficient, or a zero
    one whose soft-threshold update would move it) and return ``(how many, max |grads|)``,
    the block's share of the dual norm."""
    count = 0
    dual = 0.0
    for j in range(grads.shape[0]):
        g = grads[j]
        dual = max(dual, abs(g))
        if coef[j] != 0.0 or (norm2[j] > 0.0 and abs(g) > threshold):
            out[count] = j
            count += 1
    return count, dual


# ----------------------------------------------------------------------- objective



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


# ------------------------------------------------------------- fused sync + push (a round)


@numba.njit(nogil=True, cache=True)
def sync_push_dense(x, s, prev_cols, prev_deltas, cols, out):  # pragma: no cover - compiled
    """:func:`sync_dense` for the last round then :func:`push_dense` for this one."""
    dsum = sync_dense(x, s, prev_cols, prev_deltas)
    push_dense(x, s, cols, out)
    return dsum


@numba.njit(nogil=True, cache=True)
def sync_push_csc(indptr, indices, data, s, prev_cols, prev_deltas, cols,
                  out):  # pragma: no cover - compiled
    """:func:`sync_csc` for the last round then :func:`push_csc` for this one."""
    dsum = sync_csc(indptr, indices, data, s, prev_cols, prev_deltas)
    push_csc(indptr, indices, data, s, cols, out)
    return dsum


# ------------------------------------------------- L1 logistic regression (same machinery)


@numba.njit(nogil=True, cache=True)
def _neg_resid(y, m):  # pragma: no cover - compiled
    """d/d(margin) of log(1 + exp(-y m)) = -y * sigmoid(-y m), computed stably."""
    z = -y * m
    if z >= 0:
        s = 1.0 / (1.0 + np.exp(-z))
    else:
        e = np.exp(z)
        s = e / (1.0 + e)
    return -y * s


@numba.njit(nogil=True, cache=True)
def logit_push_csc(indptr, indices, data, margin, y, cols, out):  # pragma: no cover
    """``out[k] = sum_i x_ij * dloss/dmargin_i`` over a CSC shard (the partial gradient)."""
    for k in range(cols.shape[0]):
        j = cols[k]
        acc = 0.0
        for p in range(U(indptr[j]), U(indptr[j + 1])):
            i = U(indices[p])
            acc += data[p] * _neg_resid(y[i], margin[i])
        out[k] = acc


@numba.njit(nogil=True, cache=True)
def logit_push_dense(x, margin, y, cols, out):  # pragma: no cover - compiled
    n = x.shape[0]
    for k in range(cols.shape[0]):
        j = cols[k]
        acc = 0.0
        for i in range(n):
            acc += x[i, j] * _neg_resid(y[i], margin[i])
        out[k] = acc


@numba.njit(nogil=True, cache=True)
def margin_sync_csc(indptr, indices, data, margin, cols, deltas):  # pragma: no cover
    """``margin += deltas[k] * X[:, cols[k]]``."""
    for k in range(cols.shape[0]):
        d = deltas[k]
        if d == 0.0:
            continue
        j = cols[k]
        for p in range(U(indptr[j]), U(indptr[j + 1])):
            margin[U(indices[p])] += d * data[p]


@numba.njit(nogil=True, cache=True)
def margin_sync_dense(x, margin, cols, deltas):  # pragma: no cover - compiled
    n = x.shape[0]
    for k in range(cols.shape[0]):
        d = deltas[k]
        if d == 0.0:
            continue
        j = cols[k]
        for i in range(n):
            margin[i] += d * x[i, j]


@numba.njit(nogil=True, cache=True)
def logistic_loss(margin, y):  # pragma: no cover - compiled
    """``sum_i log(1 + exp(-y_i m_i))``, stable for large |m|."""
    acc = 0.0
    for i in range(margin.shape[0]):
        z = -y[i] * margin[i]
        if z > 0:
            acc += z + np.log1p(np.exp(-z))
        else:
            acc += np.log1p(np.exp(z))
    return acc


@numba.njit(nogil=True, cache=True)
def prox_step(coef, bound, penalty, cols, grads, deltas):  # pragma: no cover - compiled
    """Majorised proximal coordinate step: ``b_j <- S(b_j - g_j / L_j, penalty_j / L_j)``
    with ``L_j`` an upper bound of the coordinate curvature (monotone for one coordinate)."""
    for k in range(cols.shape[0]):
        j = cols[k]
        lj = bound[j]
        if lj <= 0.0:
            deltas[k] = 0.0
            continue
        z = coef[j] - grads[k] / lj
        t = penalty[j] / lj
        if z > t:
            new = z - t
        elif z < -t:
            new = z + t
        else:
            new = 0.0
        deltas[k] = new - coef[j]
        coef[j] = new
