"""Compiled kernels of the sparse row store (:class:`stalesync.ps.tables.SparseRowStore`).

Layout: every row owns a slice ``[start[r], start[r] + length[r])`` of two pool arrays,
``cols`` (int32 column ids, unordered) and ``vals``; ``cap[r]`` entries are reserved for
it. An increment adds to a row's entry or appends one (a width-long scratch maps a row's
columns to their offsets while the row is updated: O(1) a lookup, so a 10,000-entry row is
not scanned per entry); an entry that reaches exactly zero is removed (the row's last entry
moves into its place), so cancelling increments free their memory. A row that outgrows
its reservation moves to the pool's end with twice the room; :func:`compact` rewrites the
pool without the holes that leaves. The caller makes
sure the pool has room for the worst case of a batch before calling :func:`apply`
(:func:`room_needed`), so a batch is never half-applied.
"""

from __future__ import annotations

import numba
import numpy as np

MIN_ROOM = 4  # entries reserved for a row when it gets its first one


@numba.njit(nogil=True, cache=True)
def _open_row(start, length, cols, pos, r):  # pragma: no cover
    """Index row r's entries in ``pos`` (column -> offset in the row's slice)."""
    for q in range(length[r]):
        pos[cols[start[r] + q]] = q


@numba.njit(nogil=True, cache=True)
def _close_row(start, length, cols, pos, r):  # pragma: no cover
    for q in range(length[r]):
        pos[cols[start[r] + q]] = -1


@numba.njit(nogil=True, cache=True)
def _add_entry(start, length, cap, cols, vals, pos, top, r, j, d):  # pragma: no cover
    """Add ``d`` (non-zero) to entry (r, j) of an opened row; returns the new pool top."""
    s, n, q = start[r], length[r], pos[j]
    if q >= 0:  # the entry exists: add, and drop it if it cancelled out
        v = vals[s + q] + d
        if v == 0:
            last = n - 1
            moved = cols[s + last]
            cols[s + q], vals[s + q] = moved, vals[s + last]
            pos[moved] = q
            pos[j] = -1
            length[r] = last
        else:
            vals[s + q] = v
        return top
    if n == cap[r]:  # no room left in its slice: move the row to the pool's end
        room = max(MIN_ROOM, 2 * cap[r])
        for p in range(n):
            cols[top + p], vals[top + p] = cols[s + p], vals[s + p]
        start[r], cap[r] = top, room
        top += room
        s = start[r]
    cols[s + n], vals[s + n] = j, d
    pos[j] = n
    length[r] = n + 1
    return top


@numba.njit(nogil=True, cache=True)
def apply(start, length, cap, cols, vals, pos, top, rows, increments):  # pragma: no cover
    """Add ``increments[i]`` (a dense row) to row ``rows[i]`` for every i; returns the new
    pool top. ``pos``: a width-long scratch of -1s (left so); it makes an entry's lookup
    O(1), so a row costs O(its entries + the increment), not O(entries^2)."""
    for i in range(rows.shape[0]):
        r = rows[i]
        _open_row(start, length, cols, pos, r)
        for j in range(increments.shape[1]):
            if increments[i, j] != 0:
                top = _add_entry(start, length, cap, cols, vals, pos, top, r, j,
                                 increments[i, j])
        _close_row(start, length, cols, pos, r)
    return top


@numba.njit(nogil=True, cache=True)
def room_needed(length, cap, rows, increments):  # pragma: no cover
    """An upper bound of the pool entries :func:`apply` may take for this batch."""
    total = 0
    for i in range(rows.shape[0]):
        nonzero = 0
        for j in range(increments.shape[1]):
            if increments[i, j] != 0:
                nonzero += 1
        r = rows[i]
        if length[r] + nonzero > cap[r]:  # it may move (doubling) until it fits: the
            total += max(2 * MIN_ROOM, 4 * (length[r] + nonzero))  # slices sum below 4x
    return total


@numba.njit(nogil=True, cache=True)
def gather(start, length, cols, vals, rows, out):  # pragma: no cover
    """Dense rows: ``out[i]`` = row ``rows[i]`` (``out`` zeroed by the caller)."""
    for i in range(rows.shape[0]):
        r = rows[i]
        for p in range(start[r], start[r] + length[r]):
            out[i, cols[p]] = vals[p]


@numba.njit(nogil=True, cache=True)
def compact(start, length, cap, cols, vals, new_cols, new_vals):  # pragma: no cover
    """Copy every row into ``new_*`` back to back, each with room for twice its entries
    (at least MIN_ROOM once it has any); returns the new top."""
    top = 0
    for r in range(start.shape[0]):
        n = length[r]
        room = max(MIN_ROOM, 2 * n) if n else 0
        for q in range(n):
            new_cols[top + q], new_vals[top + q] = cols[start[r] + q], vals[start[r] + q]
        start[r], cap[r] = top, room
        top += room
    return top


def compacted_size(length: np.ndarray) -> int:
    """Pool entries :func:`compact` needs."""
    return int(np.where(length > 0, np.maximum(MIN_ROOM, 2 * length.astype(np.int64)),
                        0).sum())


# --- CSR batches (stalesync.ps.row_batch.SparseRows): what sparse tables send and return ----


@numba.njit(nogil=True, cache=True)
def gather_csr(start, length, cols, vals, rows):  # pragma: no cover
    """Rows ``rows`` as CSR (indptr, cols, vals); entries in pool order."""
    indptr = np.zeros(rows.shape[0] + 1, dtype=np.int64)
    for i in range(rows.shape[0]):
        indptr[i + 1] = indptr[i] + length[rows[i]]
    out_cols = np.empty(indptr[-1], dtype=np.int32)
    out_vals = np.empty(indptr[-1], dtype=vals.dtype)
    for i in range(rows.shape[0]):
        s, p = start[rows[i]], indptr[i]
        for q in range(length[rows[i]]):
            out_cols[p + q], out_vals[p + q] = cols[s + q], vals[s + q]
    return indptr, out_cols, out_vals


@numba.njit(nogil=True, cache=True)
def room_needed_csr(length, cap, rows, indptr):  # pragma: no cover
    """:func:`room_needed` for a CSR batch (of distinct rows)."""
    total = 0
    for i in range(rows.shape[0]):
        r = rows[i]
        nonzero = indptr[i + 1] - indptr[i]
        if length[r] + nonzero > cap[r]:
            total += max(2 * MIN_ROOM, 4 * (length[r] + nonzero))
    return total


@numba.njit(nogil=True, cache=True)
def apply_csr(start, length, cap, cols, vals, pos, top, rows, indptr, b_cols, b_vals
              ):  # pragma: no cover
    """:func:`apply` with the increments as a CSR batch; returns the new pool top."""
    for i in range(rows.shape[0]):
        r = rows[i]
        _open_row(start, length, cols, pos, r)
        for e in range(indptr[i], indptr[i + 1]):
            if b_vals[e] != 0:
                top = _add_entry(start, length, cap, cols, vals, pos, top, r, b_cols[e],
                                 b_vals[e])
        _close_row(start, length, cols, pos, r)
    return top


@numba.njit(nogil=True, cache=True)
def csr_to_dense(indptr, cols, vals, out):  # pragma: no cover
    """``out[i, cols[e]] += vals[e]`` for the entries of row i (``out`` zeroed)."""
    for i in range(indptr.shape[0] - 1):
        for e in range(indptr[i], indptr[i + 1]):
            out[i, cols[e]] += vals[e]


@numba.njit(nogil=True, cache=True)
def _nonzero_indptr(values, rows):  # pragma: no cover
    """CSR row pointers of the non-zeros of ``values[rows]``."""
    indptr = np.zeros(rows.shape[0] + 1, dtype=np.int64)
    for i in range(rows.shape[0]):
        n = 0
        for j in range(values.shape[1]):
            if values[rows[i], j] != 0:
                n += 1
        indptr[i + 1] = indptr[i] + n
    return indptr


@numba.njit(nogil=True, cache=True)
def dense_to_csr(values):  # pragma: no cover
    """The non-zeros of a dense batch as CSR."""
    indptr = _nonzero_indptr(values, np.arange(values.shape[0]))
    cols = np.empty(indptr[-1], dtype=np.int32)
    out = np.empty(indptr[-1], dtype=values.dtype)
    for i in range(values.shape[0]):
        p = indptr[i]
        for j in range(values.shape[1]):
            if values[i, j] != 0:
                cols[p], out[p] = j, values[i, j]
                p += 1
    return indptr, cols, out


# -- CSR batches against dense arrays (sparse increments to a dense table) ------------------
@numba.njit(nogil=True, cache=True)
def csr_add_to_dense(dst, rows, indptr, cols, vals):  # pragma: no cover
    """``dst[rows[i], cols[e]] += vals[e]`` for the entries of batch row i (rows may
    repeat: they accumulate)."""
    for i in range(rows.shape[0]):
        r = rows[i]
        for e in range(indptr[i], indptr[i + 1]):
            dst[r, cols[e]] += vals[e]


@numba.njit(nogil=True, cache=True)
def take_and_zero_csr(src, rows):  # pragma: no cover
    """The non-zeros of ``src[rows]`` as CSR, zeroing them (draining an update log whose
    rows hold few non-zeros: the output is O(non-zeros), not O(rows x width))."""
    indptr = _nonzero_indptr(src, rows)
    cols = np.empty(indptr[-1], dtype=np.int32)
    vals = np.empty(indptr[-1], dtype=src.dtype)
    for i in range(rows.shape[0]):
        r = rows[i]
        p = indptr[i]
        for j in range(src.shape[1]):
            if src[r, j] != 0:
                cols[p], vals[p] = j, src[r, j]
                src[r, j] = 0
                p += 1
    return indptr, cols, vals


@numba.njit(nogil=True, cache=True)
def diff_csr(new, old):  # pragma: no cover
    """(rows where ``new`` differs from ``old``, CSR of ``new - old`` on those rows)."""
    counts = np.zeros(new.shape[0], dtype=np.int64)
    changed = 0
    for i in range(new.shape[0]):
        n = 0
        for j in range(new.shape[1]):
            if new[i, j] != old[i, j]:
                n += 1
        counts[i] = n
        if n:
            changed += 1
    rows = np.empty(changed, dtype=np.int64)
    indptr = np.zeros(changed + 1, dtype=np.int64)
    m = 0
    for i in range(new.shape[0]):
        if counts[i]:
            rows[m] = i
            indptr[m + 1] = indptr[m] + counts[i]
            m += 1
    cols = np.empty(indptr[-1], dtype=np.int32)
    vals = np.empty(indptr[-1], dtype=new.dtype)
    p = 0
    for m in range(changed):
        i = rows[m]
        for j in range(new.shape[1]):
            if new[i, j] != old[i, j]:
                cols[p], vals[p] = j, new[i, j] - old[i, j]
                p += 1
    return rows, indptr, cols, vals
