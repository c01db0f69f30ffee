"""Compiled k-means kernels: nearest-centroid assignment and sufficient-statistic deltas.

All release the GIL. Distances use ``||x||^2 - 2 x.c + ||c||^2`` with ``||c||^2``
precomputed; dense rows are float32 or float64 in C order, sparse rows CSR.
"""

from __future__ import annotations

import numpy as np
from numba import njit

U = np.uint64  # CSR positions and ids index unsigned (see stalesync.kernels.linear.U)
# no "ninf"/"nnan": the searches start from +inf
_OPTS = {"cache": True, "nogil": True, "fastmath": {"reassoc", "contract", "arcp", "nsz"}}


@njit(**_OPTS)
def _nearest_dense(x, C, c_norm2):
    best, arg = np.inf, 0
    K, d = C.shape
    for c in range(K):
        dot = 0.0
        for j in range(d):
            dot += x[j] * C[c, j]
        dist = c_norm2[c] - 2.0 * dot
        if dist < best:
            best, arg = dist, c
    return arg, best


@njit(**_OPTS)
def assign_dense(X, lo, hi, C, c_norm2, x_norm2, labels, dist):
    """``labels[i]``, ``dist[i]`` (squared distance) of rows ``lo..hi`` of ``X``."""
    for i in range(lo, hi):
        arg, best = _nearest_dense(X[i], C, c_norm2)
        labels[i] = arg
        dist[i] = max(best + x_norm2[i], 0.0)


@njit(**_OPTS)
def assign_csr(indptr, indices, data, lo, hi, C, c_norm2, x_norm2, labels, dist):
    K = C.shape[0]
    for i in range(lo, hi):
        best, arg = np.inf, 0
        for c in range(K):
            dot = 0.0
            for p in range(U(indptr[i]), U(indptr[i + 1])):
                dot += data[p] * C[c, U(indices[p])]
            value = c_norm2[c] - 2.0 * dot
            if value < best:
                best, arg = value, c
        labels[i] = arg
        dist[i] = max(best + x_norm2[i], 0.0)


@njit(**_OPTS)
def deltas_dense(X, lo, hi, old, new, dS, dN):
    """Move rows whose label changed from ``old`` to ``new`` in the sums ``dS`` (K x d) and
    counts ``dN`` (K); ``old = -1`` means not yet assigned. Returns how many moved."""
    moved = 0
    d = X.shape[1]
    for i in range(lo, hi):
        a, b = old[i], new[i]
        if a == b:
            continue
        moved += 1
        if a >= 0:
            dN[a] -= 1
            for j in range(d):
                dS[a, j] -= X[i, j]
        dN[b] += 1
        for j in range(d):
            dS[b, j] += X[i, j]
    return moved


@njit(**_OPTS)
def deltas_csr(indptr, indices, data, lo, hi, old, new, dS, dN):
    moved = 0
    for i in range(lo, hi):
        a, b = old[i], new[i]
        if a == b:
            continue
        moved += 1
        if a >= 0:
            dN[a] -= 1
            for p in range(U(indptr[i]), U(indptr[i + 1])):
                dS[a, U(indices[p])] -= data[p]
        dN[b] += 1
        for p in range(U(indptr[i]), U(indptr[i + 1])):
            dS[b, U(indices[p])] += data[p]
    return moved


@njit(cache=True, nogil=True)
def row_norms2_dense(X):
    out = np.empty(X.shape[0])
    for i in range(X.shape[0]):
        s = 0.0
        for j in range(X.shape[1]):
            s += X[i, j] * X[i, j]
        out[i] = s
    return out


@njit(cache=True, nogil=True)
def row_norms2_csr(indptr, data, n):
    out = np.empty(n)
    for i in range(n):
        s = 0.0
        for p in range(indptr[i], indptr[i + 1]):
            s += data[p] * data[p]
        out[i] = s
    return out
