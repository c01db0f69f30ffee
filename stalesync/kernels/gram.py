"""Compiled Gram product of sparse rows (SystemML's ``tsmm`` on a CSR partition), without
the GIL so that the workers of one process compute their partitions at once.

scipy's ``X.T @ X`` builds a sparse product and holds the GIL; a Gram table is dense anyway
(``p x p``), so each row's outer product goes straight into it: O(sum of nnz(row)^2).
"""

from __future__ import annotations

import numba
import numpy as np

U = np.uint64  # see stalesync.kernels.linear.U


@numba.njit(nogil=True, cache=True)
def csr_gram_upper(indptr, indices, data, y, out):  # pragma: no cover - compiled
    """Add the upper triangle of ``Z^T Z`` to ``out`` (``(p + 1) x (p + 1)``), where
    ``Z = [X, y]`` for CSR ``X`` (``p`` columns) and the column ``y`` (``out[:p, p]`` is
    ``X^T y``, ``out[p, p]`` is ``y^T y``). The lower triangle is left alone."""
    p = out.shape[0] - 1
    for r in range(indptr.shape[0] - 1):
        lo, hi = U(indptr[r]), U(indptr[r + 1])  # unsigned: no wrap-around test per load
        yr = y[r]
        for a in range(lo, hi):
            i = U(indices[a])
            xa = data[a]
            out[i, p] += xa * yr
            for b in range(a, hi):
                j = U(indices[b])
                if i <= j:
                    out[i, j] += xa * data[b]
                else:
                    out[j, i] += xa * data[b]
        out[p, p] += yr * yr


def symmetric_from_upper(upper: np.ndarray) -> np.ndarray:
    """The symmetric matrix whose upper triangle (diagonal included) is ``upper``'s."""
    full = np.triu(upper)
    return full + np.triu(full, 1).T
