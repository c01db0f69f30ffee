"""A worker client's per-call bookkeeping, compiled: which rows a read must fetch, the
staleness it observed, which rows an increment dirtied.

These run on every ``read`` / ``inc`` of every worker, on batches of a few rows as often as
on millions, so they hold the GIL (a release and re-acquire costs more than the work on a
small batch, and hands the interpreter to the other worker mid-step) and do in one compiled
pass what a chain of numpy calls would do in five to ten (each ~1 us of fixed cost).
"""

from __future__ import annotations

import numba
import numpy as np

ASYNC = -1  # ``required`` of an unbounded read: refresh by age, never wait


@numba.njit(cache=True)
def read_plan(rows, num_rows, stamp, fetched_at, required, clock, fetch_every, missing,
              seen):  # pragma: no cover - compiled
    """Check ``rows`` against ``[0, num_rows)`` and put the distinct ones a read must fetch
    into ``missing``, in the order first asked: stamp below ``required`` (a bounded read),
    or, when ``required`` is :data:`ASYNC`, never fetched or fetched ``fetch_every`` or more
    clocks ago. ``seen`` is an all-False scratch flag per row (left all-False).

    Returns how many went into ``missing``, or ``-1 - i`` when ``rows[i]`` is out of range
    (nothing else is then done)."""
    for i in range(rows.shape[0]):
        r = rows[i]
        if r < 0 or r >= num_rows:
            return -1 - i
    count = 0
    for i in range(rows.shape[0]):
        r = rows[i]
        if seen[r]:
            continue
        if required == ASYNC:
            stale = fetched_at[r] < 0 or clock - fetched_at[r] >= fetch_every
        else:
            stale = stamp[r] < required
        if stale:
            seen[r] = True
            missing[count] = r
            count += 1
    for i in range(count):
        seen[missing[i]] = False
    return count


@numba.njit(cache=True)
def read_staleness(rows, stamp, clock, counts):  # pragma: no cover - compiled
    """The staleness (``clock - stamp``) of every row a read returns: adds each, floored at
    0, to the histogram ``counts`` and returns ``(sum, max, min stamp, fits)``; when a
    staleness does not fit ``counts`` nothing is added and ``fits`` is False (the caller
    grows the histogram and calls again)."""
    total = 0
    top = np.iinfo(np.int64).min
    low = np.iinfo(np.int64).max
    for i in range(rows.shape[0]):
        s = stamp[rows[i]]
        if s < low:
            low = s
        st = clock - s
        if st > top:
            top = st
        if st > 0:
            total += st
    if rows.shape[0] and top >= counts.shape[0]:
        return total, top, low, False
    for i in range(rows.shape[0]):
        st = clock - stamp[rows[i]]
        counts[st if st > 0 else 0] += 1
    return total, top, low, True


@numba.njit(cache=True)
def check_rows(rows, num_rows):  # pragma: no cover - compiled
    """``-1`` when every row is in ``[0, num_rows)``, else the position of the first that
    is not."""
    for i in range(rows.shape[0]):
        if rows[i] < 0 or rows[i] >= num_rows:
            return i
    return -1


@numba.njit(cache=True)
def mark_dirty(rows, dirty, dirty_list, count):  # pragma: no cover - compiled
    """Flag ``rows`` in ``dirty`` and append the newly flagged ones to ``dirty_list`` (which
    then holds ``count`` rows, returned): a clock drains exactly the rows it lists, in
    O(rows changed), never scanning the table's flags."""
    for i in range(rows.shape[0]):
        r = rows[i]
        if not dirty[r]:
            dirty[r] = True
            dirty_list[count] = r
            count += 1
    return count


@numba.njit(cache=True)
def take_dirty(dirty_list, count, dirty):  # pragma: no cover - compiled
    """The ``count`` listed dirty rows (a copy, in the order first dirtied), their flags
    cleared."""
    rows = dirty_list[:count].copy()
    for i in range(count):
        dirty[rows[i]] = False
    return rows


@numba.njit(cache=True, nogil=True)
def release_gil():  # pragma: no cover - compiled
    """Nothing, without the GIL: calling it lets a thread waiting for the interpreter take
    it now (uncontended it costs a fraction of a microsecond). These kernels hold the GIL,
    so a worker calls this once per clock, at a point where it holds no lock; otherwise the
    interpreter changes hands only when the switch interval forces it, which can be inside
    the shard's critical section (the other worker then blocks on the shard lock)."""
    return None


def as_row_ids(rows) -> np.ndarray:
    """``rows`` as a flat int64 array (no copy when it already is one); a dtype that is not
    an integer raises TypeError (the caller names the table)."""
    if type(rows) is np.ndarray and rows.dtype == np.int64 and rows.ndim == 1:
        return rows
    arr = np.asarray(rows)
    if arr.dtype.kind not in "iu":
        if arr.size:
            raise TypeError(str(arr.dtype))
        return np.zeros(0, dtype=np.int64)
    return arr.astype(np.int64, copy=False).ravel()
