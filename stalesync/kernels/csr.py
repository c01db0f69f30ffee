"""Rows of a CSR matrix taken in a given order, compiled and without the GIL, so that the
partitions of a data set are cut by as many threads as there are workers (scipy's fancy row
indexing holds the GIL: cutting two partitions took as long as cutting one after the other).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
import scipy.sparse as sp

U = np.uint64  # see stalesync.kernels.linear.U
PARALLEL_COPY_ENTRIES = 1 << 20  # fewer entries are copied by one thread


@numba.njit(nogil=True, cache=True)
def _row_lengths(indptr, rows, out_indptr):  # pragma: no cover - compiled
    out_indptr[0] = 0
    for i in range(rows.shape[0]):
        r = rows[i]
        out_indptr[i + 1] = out_indptr[i] + indptr[r + 1] - indptr[r]


@numba.njit(nogil=True, cache=True)
def _copy_rows(indptr, indices, data, rows, out_indptr, out_indices, out_data
               ):  # pragma: no cover - compiled
    for i in range(rows.shape[0]):
        r = rows[i]
        src = U(indptr[r])  # unsigned positions: no wrap-around test per load
        dst = U(out_indptr[i])
        for p in range(U(indptr[r + 1]) - src):
            out_indices[dst + p] = indices[src + p]
            out_data[dst + p] = data[src + p]


def take_rows(X: sp.csr_matrix, rows: np.ndarray, threads: int = 1) -> sp.csr_matrix:
    """``X[rows]`` (the same matrix scipy gives, indices kept in their order), copied by
    ``threads`` threads at once, each into its own range of the output (a large copy is
    paid mostly in first touches of fresh memory, which threads take in parallel)."""
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    indptr = np.empty(rows.size + 1, dtype=np.int64)
    _row_lengths(X.indptr, rows, indptr)
    indices = np.empty(int(indptr[-1]), dtype=X.indices.dtype)
    data = np.empty(int(indptr[-1]), dtype=X.data.dtype)

    def copy(lo: int, hi: int) -> None:  # rows lo..hi, to their own positions in the output
        _copy_rows(X.indptr, X.indices, X.data, rows[lo:hi], indptr[lo:hi + 1], indices, data)

    on_slices(copy, rows.size, threads if indptr[-1] >= PARALLEL_COPY_ENTRIES else 1)
    out = sp.csr_matrix((data, indices, indptr), shape=(rows.size, X.shape[1]), copy=False)
    out.has_sorted_indices = X.has_sorted_indices
    return out


@numba.njit(nogil=True, cache=True)
def compact_taken(indices, order, scratch, local):  # pragma: no cover - compiled
    """The distinct values of ``indices[order]`` (sorted), written as ``local[q]``, the
    position of ``indices[order[q]]`` among them, without gathering ``indices[order]``
    first. ``scratch`` is an all ``-1`` array over the values (left so); ``local`` has
    ``order``'s length and any integer dtype. O(entries + distinct log distinct), no sort
    of the entries themselves."""
    n = order.shape[0]
    seen = np.empty(min(n, scratch.shape[0]), dtype=np.int64)
    count = 0
    for q in range(n):
        j = indices[order[q]]
        if scratch[j] < 0:
            scratch[j] = count
            seen[count] = j
            count += 1
    columns = seen[:count].copy()
    ranked = np.argsort(columns)
    for c in range(count):
        scratch[columns[ranked[c]]] = c
    for q in range(n):
        local[q] = scratch[indices[order[q]]]
    for c in range(count):
        scratch[columns[c]] = -1
    return columns[ranked]


@numba.njit(nogil=True, cache=True)
def compact_columns(indices, scratch):  # pragma: no cover - compiled
    """:func:`compact_taken` of every entry in order: ``(columns, local)`` with
    ``columns[local] == indices``."""
    local = np.empty(indices.shape[0], dtype=np.int64)
    columns = compact_taken(indices, np.arange(indices.shape[0]), scratch, local)
    return columns, local


@numba.njit(nogil=True, cache=True)
def group_by(keys, num_keys):  # pragma: no cover - compiled
    """A stable counting sort of ``keys`` (ints in ``[0, num_keys)``): ``(order, indptr)``
    with ``keys[order]`` ascending, equal keys in their original order, and key ``k``'s
    positions ``order[indptr[k]:indptr[k + 1]]``. O(n + num_keys), where a comparison sort
    takes O(n log n)."""
    indptr = np.zeros(num_keys + 1, dtype=np.int64)
    for i in range(keys.shape[0]):
        indptr[keys[i] + 1] += 1
    for k in range(num_keys):
        indptr[k + 1] += indptr[k]
    fill = indptr[:-1].copy()
    order = np.empty(keys.shape[0], dtype=np.int64)
    for i in range(keys.shape[0]):
        k = keys[i]
        order[fill[k]] = i
        fill[k] += 1
    return order, indptr


@numba.njit(nogil=True, cache=True)
def _count_columns(indices, out):  # pragma: no cover - compiled
    for p in range(indices.shape[0]):
        out[U(indices[p])] += 1


def column_counts(indices: np.ndarray, num_columns: int, threads: int = 1) -> np.ndarray:
    """How many entries each column has (``np.bincount(indices, minlength=num_columns)``),
    counted by ``threads`` threads over slices of the entries (a pass over tens of millions
    of entries is a large share of a linear fit's set-up)."""
    parts: list[np.ndarray] = []

    def count(lo: int, hi: int) -> None:
        part = np.zeros(num_columns, dtype=np.int64)
        _count_columns(indices[lo:hi], part)
        parts.append(part)  # list.append is atomic: the threads need no lock

    on_slices(count, indices.size, threads if indices.size >= PARALLEL_COPY_ENTRIES else 1)
    return np.sum(parts, axis=0) if parts else np.zeros(num_columns, dtype=np.int64)


def on_slices(work, n: int, threads: int) -> None:
    """``work(lo, hi)`` over ``threads`` contiguous slices of ``range(n)``, each on its own
    thread (the calling thread alone when there is one slice); an error in any reaches the
    caller."""
    cuts = np.linspace(0, n, max(1, min(threads, n)) + 1).astype(np.int64)
    if cuts.size <= 2:
        work(0, n)
        return
    with ThreadPoolExecutor(cuts.size - 1) as pool:
        list(pool.map(work, cuts[:-1], cuts[1:]))
