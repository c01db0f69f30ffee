"""A batch of table rows in CSR form: what sparse tables read, increment and send.

A dense batch of ``n`` rows is an ``(n, width)`` array. A word-topic row at K = 10,000 has a
few dozen non-zeros, so a chunk's rows as dense arrays would take gigabytes; as
:class:`SparseRows` they take what they hold. Batches of a sparse table (``TableSpec.sparse``
or a bounded cache) travel in this form between workers and shards; ``read(...,
sparse=True)`` returns one, and ``inc`` accepts one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..kernels import sparse_rows as kernels
from ..kernels.rows import all_finite


@dataclass(frozen=True)
class SparseRows:
    """Rows ``i`` of a batch: entries ``indptr[i]:indptr[i + 1]`` of (``cols``, ``vals``).

    Columns within a row are in no particular order; a repeated column adds up."""

    indptr: np.ndarray  # int64, len(rows) + 1
    cols: np.ndarray  # int32
    vals: np.ndarray
    width: int

    @classmethod
    def from_dense(cls, values: np.ndarray) -> SparseRows:
        values = np.ascontiguousarray(values)
        if values.shape[0] == 0:
            return cls.empty(0, values.shape[1], values.dtype)
        indptr, cols, vals = kernels.dense_to_csr(values)
        return cls(indptr, cols, vals, values.shape[1])

    @classmethod
    def diff(cls, new: np.ndarray, old: np.ndarray) -> tuple[np.ndarray, SparseRows]:
        """``(changed, new[changed] - old[changed])`` with the difference as CSR: the
        increment that turns a read copy into a worker's result, built by one compiled call
        (no dense difference array); it costs O(entries changed) to send and to apply."""
        if new.shape != old.shape or new.ndim != 2:
            raise ValueError(f"SparseRows.diff needs two 2-d arrays of one shape, got "
                             f"{new.shape} and {old.shape}")
        rows, indptr, cols, vals = kernels.diff_csr(new, old)
        return rows, cls(indptr, cols, vals, new.shape[1])

    def add_to(self, dst: np.ndarray, rows: np.ndarray) -> None:
        """``dst[rows[i]] += self[i]`` for every i (repeated rows accumulate)."""
        if self.nnz:
            kernels.csr_add_to_dense(dst, rows, self.indptr, self.cols, self.vals)

    @classmethod
    def take_and_zero(cls, src: np.ndarray, rows: np.ndarray) -> SparseRows:
        """``src[rows]``'s non-zeros as a batch, zeroing them in ``src`` (distinct rows)."""
        indptr, cols, vals = kernels.take_and_zero_csr(src, rows)
        return cls(indptr, cols, vals, src.shape[1])

    @classmethod
    def empty(cls, num_rows: int, width: int, dtype) -> SparseRows:
        return cls(np.zeros(num_rows + 1, dtype=np.int64), np.zeros(0, dtype=np.int32),
                   np.zeros(0, dtype=dtype), width)

    def __len__(self) -> int:
        return self.indptr.size - 1

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self), self.width)

    @property
    def dtype(self) -> np.dtype:
        return self.vals.dtype

    @property
    def nnz(self) -> int:
        return int(self.indptr[-1])

    @property
    def nbytes(self) -> int:
        return self.indptr.nbytes + self.cols.nbytes + self.vals.nbytes

    def to_dense(self) -> np.ndarray:
        out = np.zeros(self.shape, dtype=self.vals.dtype)
        if self.nnz:
            kernels.csr_to_dense(self.indptr, self.cols, self.vals, out)
        return out

    def take(self, positions: np.ndarray | slice) -> SparseRows:
        """The rows at ``positions`` of this batch, as a new batch."""
        if isinstance(positions, slice):
            positions = np.arange(len(self))[positions]
        positions = np.asarray(positions, dtype=np.int64)
        lengths = np.diff(self.indptr)[positions]
        indptr = np.zeros(positions.size + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        starts = self.indptr[positions]
        # entry e of output row i comes from starts[i] + (e - indptr[i])
        source = np.repeat(starts - indptr[:-1], lengths) + np.arange(indptr[-1])
        return SparseRows(indptr, self.cols[source], self.vals[source], self.width)

    def is_finite(self) -> bool:
        return all_finite(self.vals)


def concat(batches: list[SparseRows], width: int, dtype) -> SparseRows:
    """The rows of several batches, one after the other."""
    if not batches:
        return SparseRows.empty(0, width, dtype)
    lengths = np.concatenate([np.diff(b.indptr) for b in batches])
    indptr = np.zeros(lengths.size + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    return SparseRows(indptr, np.concatenate([b.cols for b in batches]),
                      np.concatenate([b.vals for b in batches]).astype(dtype, copy=False),
                      width)


def as_dense(values: np.ndarray | SparseRows) -> np.ndarray:
    """A batch as a dense array (dense stores and update rules want one)."""
    return values.to_dense() if isinstance(values, SparseRows) else values


def batch_nbytes(values: np.ndarray | SparseRows, num_rows: int, index_bytes: int) -> int:
    """Bytes a batch of ``num_rows`` rows takes on the wire with its row ids."""
    return num_rows * index_bytes + values.nbytes
