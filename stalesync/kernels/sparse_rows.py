"""Compiled kernels of the sparse row store (:class:`stalesync.tables.SparseRowStore`).

Layout: every row owns a slice ``[start[r], start[r] + length[r])`` of two pool arrays,
``cols`` (int32 column ids, unordered) and ``vals``; ``cap[r]`` entries are reserved for
it. An increment adds to a row's entry or appends one; an entry that reaches exactly zero
is removed (the row's last entry moves into its place), so cancelling increments free
their memory. A row that outgrows its reservation moves to the pool's end with twice the
room; :func:`compact` rewrites the pool without the holes that leaves. The caller makes
sure the pool has room for the worst case of a batch before calling :func:`apply`
(:func:`room_needed`), so a batch is never half-applied.
"""

from __future__ import annotations

import numba
import numpy as np

MIN_ROOM = 4  # entries reserved for a row when it gets its first one


@numba.njit(nogil=True, cache=True)
def apply(start, length, cap, cols, vals, top, rows, increments):  # pragma: no cover
    """Add ``increments[i]`` (a dense row) to row ``rows[i]`` for every i (distinct rows);
    returns the new pool top."""
    width = increments.shape[1]
    for i in range(rows.shape[0]):
        r = rows[i]
        for j in range(width):
            d = increments[i, j]
            if d == 0:
                continue
            s, n = start[r], length[r]
            p = s
            while p < s + n and cols[p] != j:
                p += 1
            if p < s + n:  # the entry exists: add, and drop it if it cancelled out
                v = vals[p] + d
                if v == 0:
                    last = s + n - 1
                    cols[p], vals[p] = cols[last], vals[last]
                    length[r] = n - 1
                else:
                    vals[p] = v
                continue
            if n == cap[r]:  # no room left in its slice: move the row to the pool's end
                room = max(MIN_ROOM, 2 * cap[r])
                for q in range(n):
                    cols[top + q], vals[top + q] = cols[s + q], vals[s + q]
                start[r], cap[r] = top, room
                top += room
                s = start[r]
            cols[s + n], vals[s + n] = j, d
            length[r] = n + 1
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
