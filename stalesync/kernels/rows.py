"""Row-batch kernels shared by the server shards and the worker caches.

Each copying kernel exists twice: one that releases the GIL, for batches big enough that
another worker can compute meanwhile, and its twin that holds it, for small batches, where a
release and re-acquire costs more than the copy and hands the interpreter to another worker
in the middle of a shard's critical section (two workers then queue on the shard lock
instead of overlapping). Batches of at least ``GIL_RELEASE_ELEMENTS`` elements release it
(the comparison is written out in each wrapper: these run several times a clock).
"""

from __future__ import annotations

import types

import numba
import numpy as np

GIL_RELEASE_ELEMENTS = 1 << 15  # batches of at least this many elements release the GIL


def gil_holding_twin(kernel):
    """``kernel`` (a nogil dispatcher) compiled again, holding the GIL. The copy of its
    Python function gets its own name, so numba's on-disk cache keeps the two apart."""
    py = kernel.py_func
    clone = types.FunctionType(py.__code__, py.__globals__, f"{py.__name__}_gil",
                               py.__defaults__, py.__closure__)
    clone.__qualname__ = f"{py.__qualname__}_gil"
    options = {k: v for k, v in kernel.targetoptions.items() if k not in ("nogil", "nopython")}
    return numba.njit(cache=True, **options)(clone)


@numba.njit(nogil=True, cache=True)
def _scatter_add(dst, rows, deltas):  # pragma: no cover - compiled
    width = dst.shape[1]
    for i in range(rows.shape[0]):
        r = rows[i]
        for j in range(width):
            dst[r, j] += deltas[i, j]


@numba.njit(nogil=True, cache=True)
def _gather(src, rows, out):  # pragma: no cover - compiled
    width = src.shape[1]
    for i in range(rows.shape[0]):
        r = rows[i]
        for j in range(width):
            out[i, j] = src[r, j]


@numba.njit(nogil=True, cache=True)
def _scatter_set(dst, rows, values):  # pragma: no cover - compiled
    width = dst.shape[1]
    for i in range(rows.shape[0]):
        r = rows[i]
        for j in range(width):
            dst[r, j] = values[i, j]


_scatter_add_gil = gil_holding_twin(_scatter_add)
_gather_gil = gil_holding_twin(_gather)
_scatter_set_gil = gil_holding_twin(_scatter_set)


def scatter_rows(dst: np.ndarray, rows: np.ndarray, values: np.ndarray) -> None:
    """``dst[rows] = values`` (refreshing a worker's cache)."""
    if rows.size:
        big = rows.size * dst.shape[1] >= GIL_RELEASE_ELEMENTS
        (_scatter_set if big else _scatter_set_gil)(dst, rows, values)


def scatter_add_rows(dst: np.ndarray, rows: np.ndarray, deltas: np.ndarray) -> None:
    """``dst[rows[i]] += deltas[i]`` for every i; repeated rows accumulate (unlike ``+=``)."""
    if rows.size:
        big = rows.size * dst.shape[1] >= GIL_RELEASE_ELEMENTS
        (_scatter_add if big else _scatter_add_gil)(dst, rows, deltas)


def gather_rows(src: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``src[rows]`` into a fresh array."""
    out = np.empty((rows.shape[0], src.shape[1]), dtype=src.dtype)
    if rows.size:
        (_gather if out.size >= GIL_RELEASE_ELEMENTS else _gather_gil)(src, rows, out)
    return out


@numba.njit(nogil=True, cache=True)
def _scatter_add_pair(dst_a, dst_b, rows, deltas):  # pragma: no cover - compiled
    width = dst_a.shape[1]
    for i in range(rows.shape[0]):
        r = rows[i]
        for j in range(width):
            dst_a[r, j] += deltas[i, j]
            dst_b[r, j] += deltas[i, j]


@numba.njit(nogil=True, cache=True)
def _take_and_zero(src, rows, out):  # pragma: no cover - compiled
    width = src.shape[1]
    for i in range(rows.shape[0]):
        r = rows[i]
        for j in range(width):
            out[i, j] = src[r, j]
            src[r, j] = 0


_scatter_add_pair_gil = gil_holding_twin(_scatter_add_pair)
_take_and_zero_gil = gil_holding_twin(_take_and_zero)


def scatter_add_rows_pair(
    dst_a: np.ndarray, dst_b: np.ndarray, rows: np.ndarray, deltas: np.ndarray
) -> None:
    """``scatter_add_rows`` into two same-shaped arrays in one pass (cache + update log)."""
    if rows.size:
        big = deltas.size >= GIL_RELEASE_ELEMENTS
        (_scatter_add_pair if big else _scatter_add_pair_gil)(dst_a, dst_b, rows, deltas)


def take_and_zero_rows(src: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Return ``src[rows]`` and zero those rows, in one pass (draining the update log)."""
    out = np.empty((rows.shape[0], src.shape[1]), dtype=src.dtype)
    if rows.size:
        (_take_and_zero if out.size >= GIL_RELEASE_ELEMENTS else _take_and_zero_gil)(src, rows, out)
    return out


@numba.njit(nogil=True, cache=True, fastmath={"reassoc"})
def _all_finite(flat):  # pragma: no cover - compiled
    # x - x is 0 for a finite x and NaN for inf or NaN; their sum vectorises (no early
    # exit; "reassoc" lets LLVM split the sum, and keeps NaN and inf, unlike full fastmath)
    acc = flat.dtype.type(0)
    for i in range(flat.shape[0]):
        acc += flat[i] - flat[i]
    return acc == 0


_all_finite_gil = gil_holding_twin(_all_finite)


def all_finite(values: np.ndarray) -> bool:
    """``np.isfinite(values).all()`` in one pass without a boolean array of the same size
    (the check every float increment gets)."""
    if values.dtype.kind != "f" or values.size == 0:
        return True
    kernel = _all_finite if values.size >= GIL_RELEASE_ELEMENTS else _all_finite_gil
    return bool(kernel(values.reshape(-1)))  # a view when contiguous, else a copy


@numba.njit(nogil=True, cache=True)
def _changed_rows(new, old, changed):  # pragma: no cover - compiled
    count = 0
    for i in range(new.shape[0]):
        for j in range(new.shape[1]):
            if new[i, j] != old[i, j]:
                changed[count] = i
                count += 1
                break
    return count


@numba.njit(nogil=True, cache=True)
def _diff_rows(new, old, changed, out):  # pragma: no cover - compiled
    for n in range(changed.shape[0]):
        i = changed[n]
        for j in range(new.shape[1]):
            out[n, j] = new[i, j] - old[i, j]


def row_deltas(new: np.ndarray, old: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(changed, new[changed] - old[changed])`` for the rows where ``new`` differs from
    ``old``: the batched increment that turns a read copy into a worker's result, built in
    one pass over the two arrays (no full-size difference array), so a step that changes few
    rows sends and copies only those."""
    if new.shape != old.shape or new.ndim != 2:
        raise ValueError(f"row_deltas needs two 2-d arrays of one shape, got {new.shape} "
                         f"and {old.shape}")
    changed = np.empty(new.shape[0], dtype=np.int64)
    changed = changed[: _changed_rows(new, old, changed)]
    out = np.empty((changed.size, new.shape[1]), dtype=np.result_type(new, old))
    if changed.size:
        _diff_rows(new, old, changed, out)
    return changed, out
