"""Row-batch kernels shared by the server shards and the worker caches."""

from __future__ import annotations

import numba
import numpy as np


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


def scatter_add_rows(dst: np.ndarray, rows: np.ndarray, deltas: np.ndarray) -> None:
    """``dst[rows[i]] += deltas[i]`` for every i; repeated rows accumulate (unlike ``+=``)."""
    if rows.size:
        _scatter_add(dst, rows, deltas)


def gather_rows(src: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``src[rows]`` into a fresh array, without holding the GIL."""
    out = np.empty((rows.shape[0], src.shape[1]), dtype=src.dtype)
    if rows.size:
        _gather(src, rows, out)
    return out
