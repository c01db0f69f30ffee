"""Compiled kernels of the vertex programs (:mod:`stalesync.apps.graph`).

A graph is stored by in-edges (CSR: the row of vertex ``v`` lists the sources of the edges
into ``v``), so a gather over a vertex's neighbourhood is one contiguous run. Each kernel
takes a vertex list (global ids) and works over it in one call: the engine never loops over
vertices in Python. Positions are cast to unsigned before they index (numba wraps signed
indices around, a test and a conditional move on every load). The weighted sums may
reassociate (``fastmath``: several partial sums in flight instead of one chain of
dependent adds, 1.36x on a 1.9M-edge graph); a vertex's sum still comes out the same
whatever the shards, since every shard's arrays are views of the same global ones.
"""

from __future__ import annotations

import numba
import numpy as np

U = np.uint64


@numba.njit(nogil=True, cache=True, fastmath=True)
def unit_sum(indptr, src, values, vertices, out):  # pragma: no cover - compiled
    """``out[i] = sum_e values[src[e]]`` over the in-edges of ``vertices[i]`` (local ids
    of the part whose rows ``indptr`` holds)."""
    for i in range(vertices.shape[0]):
        v = U(vertices[i])
        s = 0.0
        for e in range(U(indptr[v]), U(indptr[v + U(1)])):
            s += values[U(src[e])]
        out[i] = s


@numba.njit(nogil=True, cache=True, fastmath=True)
def weighted_sum(indptr, src, weight, values, vertices, out):  # pragma: no cover
    """``out[i] = sum_e weight[e] * values[src[e]]`` over the in-edges of
    ``vertices[i]``."""
    for i in range(vertices.shape[0]):
        v = U(vertices[i])
        s = 0.0
        for e in range(U(indptr[v]), U(indptr[v + U(1)])):
            s += weight[e] * values[U(src[e])]
        out[i] = s


@numba.njit(nogil=True, cache=True)
def shift_scale(acc, base, scale, local):  # pragma: no cover - compiled
    """``acc[i] = (acc[i] + base[local[i]]) * scale[local[i]]`` in place (PageRank's
    apply: teleport share plus gathered sum, times what a vertex sends per out-weight)."""
    for i in range(acc.shape[0]):
        j = U(local[i])
        acc[i] = (acc[i] + base[j]) * scale[j]


@numba.njit(nogil=True, cache=True)
def scaled_l1(new, old, scale, local):  # pragma: no cover - compiled
    """``sum_i |new[i] - old[i]| * scale[local[i]]`` in one pass, without temporaries."""
    total = 0.0
    for i in range(new.shape[0]):
        total += abs(new[i] - old[i]) * scale[U(local[i])]
    return total


@numba.njit(nogil=True, cache=True, fastmath=True)
def weighted_rows(indptr, src, weight, unit, values, vertices, out):  # pragma: no cover
    """``out[i, :] = sum_e weight[e] * values[src[e], :]`` over the in-edges of
    ``vertices[i]`` (``unit``: every weight is 1 and ``weight`` is not read)."""
    width = values.shape[1]
    for i in range(vertices.shape[0]):
        v = U(vertices[i])
        for k in range(width):
            out[i, k] = 0.0
        for e in range(U(indptr[v]), U(indptr[v + U(1)])):
            c = 1.0 if unit else weight[e]
            u = U(src[e])
            for k in range(width):
                out[i, k] += c * values[u, k]


@numba.njit(nogil=True, cache=True)
def least_squares(indptr, src, rating, factors, vertices, reg, out):  # pragma: no cover
    """ALS's update of each vertex ``vertices[i]``: the factor ``x`` minimising
    ``sum_e (rating[e] - x . factors[src[e]])^2 + reg[i] |x|^2`` over its in-edges, by
    the normal equations and a Cholesky solve (the vertex keeps ``out[i] = 0`` when it has
    no ratings)."""
    k = factors.shape[1]
    A = np.empty((k, k))
    b = np.empty(k)
    for i in range(vertices.shape[0]):
        v = U(vertices[i])
        A[:, :] = 0.0
        b[:] = 0.0
        for e in range(U(indptr[v]), U(indptr[v + U(1)])):
            f = factors[U(src[e])]
            r = rating[e]
            for a in range(k):
                b[a] += r * f[a]
                for c in range(a + 1):
                    A[a, c] += f[a] * f[c]
        for a in range(k):
            A[a, a] += reg[i]
            for c in range(a):
                A[c, a] = A[a, c]
        if reg[i] > 0.0:
            out[i, :] = np.linalg.solve(A, b)
        else:
            out[i, :] = 0.0


@numba.njit(nogil=True, cache=True)
def min_label(indptr, src, labels, vertices, lo, out):  # pragma: no cover - compiled
    """``out[i]`` = the smallest label among vertex ``lo + vertices[i]`` (``vertices``:
    local ids of a part whose rows ``indptr`` holds) and its neighbours: connected
    components by propagating the minimum id."""
    for i in range(vertices.shape[0]):
        v = U(vertices[i])
        m = labels[U(lo) + v]
        for e in range(U(indptr[v]), U(indptr[v + U(1)])):
            x = labels[U(src[e])]
            if x < m:
                m = x
        out[i] = m


@numba.njit(nogil=True, cache=True)
def scatter_residual(indptr, dst, weight, unit, vertices, signal, residual, input_scale,
                     scaled, threshold, queued, colours, counts):  # pragma: no cover
    """``residual[dst[e]] += |weight[e]| * signal[i]`` over the out-edges of ``vertices[i]``
    (a CSR by source whose targets are local ids of one shard; ``unit``: weights of 1, not
    read): how much an update moved the inputs of each vertex. A vertex whose residual
    (times ``input_scale``, if ``scaled``) passes ``threshold`` is queued once and counted
    in its colour's ``counts``: GraphLab's dynamic scheduling."""
    for i in range(vertices.shape[0]):
        s = signal[i]
        if s == 0.0:
            continue
        v = U(vertices[i])
        for e in range(U(indptr[v]), U(indptr[v + U(1)])):
            u = U(dst[e])
            r = residual[u] + (s if unit else abs(weight[e]) * s)  # ALS: signed data
            residual[u] = r
            if not queued[u] and (r * input_scale[u] if scaled else r) > threshold:
                queued[u] = True
                counts[colours[u]] += 1


@numba.njit(nogil=True, cache=True)
def greedy_colors(indptr, nbr, order, distance):  # pragma: no cover - compiled
    """A colouring in which no two vertices within ``distance`` (1 or 2) hops of each other
    share a colour, greedily in ``order`` (each vertex takes the smallest colour its
    coloured neighbourhood does not use). ``indptr``/``nbr``: the undirected adjacency."""
    n = indptr.shape[0] - 1
    colors = np.full(n, -1, dtype=np.int32)
    seen = np.full(n + 1, -1, dtype=np.int64)  # seen[c] == v: colour c is taken near v
    for j in range(n):
        v = U(order[j])
        for e in range(U(indptr[v]), U(indptr[v + U(1)])):
            u = U(nbr[e])
            if colors[u] >= 0:
                seen[colors[u]] = v
            if distance == 2:
                for f in range(U(indptr[u]), U(indptr[u + U(1)])):
                    x = U(nbr[f])
                    if x != v and colors[x] >= 0:
                        seen[colors[x]] = v
        c = 0
        while seen[c] == v:
            c += 1
        colors[v] = c
    return colors


@numba.njit(nogil=True, cache=True)
def conflicts(indptr, nbr, rounds_ptr, rounds_vertices, distance):  # pragma: no cover
    """How many pairs of vertices within ``distance`` hops were updated in the same round
    (``rounds_vertices[rounds_ptr[r]:rounds_ptr[r + 1]]`` is round r's set): the check of
    the edge (1) and full (2) consistency models over a recorded run."""
    n = indptr.shape[0] - 1
    mark = np.full(n, -1, dtype=np.int64)
    found = 0
    for r in range(rounds_ptr.shape[0] - 1):
        for i in range(rounds_ptr[r], rounds_ptr[r + 1]):
            mark[rounds_vertices[i]] = r
        for i in range(rounds_ptr[r], rounds_ptr[r + 1]):
            v = U(rounds_vertices[i])
            for e in range(U(indptr[v]), U(indptr[v + U(1)])):
                u = U(nbr[e])
                if u != v and mark[u] == r:
                    found += 1
                if distance == 2:
                    for f in range(U(indptr[u]), U(indptr[u + U(1)])):
                        x = U(nbr[f])
                        if x != v and mark[x] == r:
                            found += 1
    return found
