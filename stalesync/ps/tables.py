"""Tables: named matrices of rows held by the parameter server.

A table is declared by a :class:`TableSpec`. Its rows are sharded over server shards with
``shard = row % num_shards`` (local index ``row // num_shards``): round-robin spreads the hot,
low-numbered rows of frequency-sorted vocabularies over every shard.

Row storage on a shard sits behind :class:`RowStore`: :class:`DenseRowStore` (one array)
or :class:`SparseRowStore` (each row's non-zero (column, value) pairs), chosen per table by
``TableSpec(storage=...)``: ``"dense"``, ``"sparse"``, or ``"auto"`` (sparse when the dense
table would take more than :data:`AUTO_SPARSE_BYTES` and increments are plain deltas).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp

from ..errors import ConfigError
from ..kernels import sparse_rows
from ..kernels.rows import gather_rows, scatter_add_rows
from .compression import parse
from .row_batch import SparseRows, as_dense
from .update_rules import Add, UpdateRule, make_rule

DTYPES = ("int32", "int64", "float32", "float64")
STORAGES = ("dense", "sparse", "auto")
AUTO_SPARSE_BYTES = 256 * 2**20  # storage="auto": sparse above this dense size


@dataclass(frozen=True)
class TableSpec:
    """Declaration of one table.

    ``consistency``/``staleness`` override the job-wide model for this table when given.
    ``update`` is the shard's update rule (:mod:`stalesync.ps.update_rules`): ``"add"`` (the
    default: increments are deltas), or ``"sgd"``/``"adagrad"``/``"adam"`` (a name, a dict
    with options, or a rule object), which make increments gradients. ``compress``
    (:mod:`stalesync.ps.compression`, e.g. ``"topk:0.01"``) encodes what each worker sends per
    clock, with error feedback. ``storage``: how a shard holds the rows (module docstring);
    sparse needs the ``add`` rule. ``cache_rows`` bounds each worker's cache of the table
    (least recently read rows are evicted at a clock, never one with unsent increments; an
    evicted row is fetched again when next read): a worker's memory for the table is then
    O(cache_rows + one clock's rows), not O(num_rows x row_width).
    """

    name: str
    num_rows: int
    row_width: int
    dtype: str = "float64"
    consistency: str | None = None
    staleness: int | None = None
    update: Any = field(default_factory=Add)
    compress: str | None = None  # stalesync.ps.compression: what a worker's clock sends
    storage: str = "dense"
    cache_rows: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"table name must be a non-empty string, got {self.name!r}")
        for key in ("num_rows", "row_width"):
            value = getattr(self, key)
            if not isinstance(value, int | np.integer) or value <= 0:
                raise ConfigError(
                    f"table {self.name!r}: {key} must be a positive int, got {value!r}"
                )
        if str(self.dtype) not in DTYPES:
            raise ConfigError(
                f"table {self.name!r}: dtype {self.dtype!r} is not supported; use one of {DTYPES}"
            )
        object.__setattr__(self, "dtype", str(self.dtype))
        object.__setattr__(self, "update", make_rule(self.update))
        if self.compress is not None:
            parse(self.compress)  # a clear error for an unknown spec, before any work
            if self.np_dtype.kind != "f":
                raise ConfigError(f"table {self.name!r}: compress needs a float table, got "
                                  f"{self.dtype}")
        if self.storage not in STORAGES:
            raise ConfigError(f"table {self.name!r}: storage must be one of {STORAGES}, got "
                              f"{self.storage!r}")
        if self.storage == "sparse" and self.update.name != "add":
            raise ConfigError(f"table {self.name!r}: storage='sparse' needs the add rule, got "
                              f"{self.update.name!r} (its state is per element)")
        if self.cache_rows is not None and (
                not isinstance(self.cache_rows, int | np.integer) or self.cache_rows <= 0):
            raise ConfigError(f"table {self.name!r}: cache_rows must be a positive int or None, "
                              f"got {self.cache_rows!r}")
        if self.compress is not None and (self.storage == "sparse" or self.cache_rows):
            raise ConfigError(f"table {self.name!r}: compress works on dense tables only "
                              f"(storage={self.storage!r}, cache_rows={self.cache_rows!r})")
        if self.update.gradient and self.np_dtype.kind != "f":
            raise ConfigError(f"table {self.name!r}: update rule {self.update.name!r} needs a "
                              f"float table, got {self.dtype}")

    @property
    def rule(self) -> UpdateRule:
        return self.update

    @property
    def gradient(self) -> bool:
        """Increments are gradients that the shard's rule turns into updates."""
        return self.update.gradient

    @cached_property
    def np_dtype(self) -> np.dtype:  # cached: every increment's check asks for it
        return np.dtype(self.dtype)

    @cached_property
    def row_nbytes(self) -> int:
        return self.row_width * self.np_dtype.itemsize

    @property
    def sparse(self) -> bool:
        """Whether shards hold this table as sparse rows (``storage``, resolved)."""
        if self.storage == "auto":
            return (self.update.name == "add" and self.compress is None
                    and self.num_rows * self.row_nbytes > AUTO_SPARSE_BYTES)
        return self.storage == "sparse"

    @property
    def sparse_cache(self) -> bool:
        """Whether workers cache this table as sparse rows (a sparse or bounded table)."""
        return self.sparse or self.cache_rows is not None


class ShardMap:
    """Deterministic row -> shard mapping: ``shard = row % n``, ``local = row // n``."""

    def __init__(self, num_shards: int) -> None:
        if num_shards < 1:
            raise ConfigError(f"num_shards must be >= 1, got {num_shards}")
        self.num_shards = num_shards

    def local_rows(self, shard: int, num_rows: int) -> int:
        """How many rows of a ``num_rows`` table live on ``shard``."""
        return max(0, (num_rows - shard + self.num_shards - 1) // self.num_shards)

    def split(self, rows: np.ndarray) -> list[tuple[int, np.ndarray | slice, np.ndarray]]:
        """Group ``rows`` by shard: ``[(shard, positions_in_rows, local_indices), ...]``.

        With one shard the positions are a slice, so indexing a batch with them is a view,
        not a copy of every row."""
        n = self.num_shards
        if n == 1:
            return [(0, slice(0, rows.size), rows)]
        shard_of = rows % n
        order = np.argsort(shard_of, kind="stable")
        bounds = np.searchsorted(shard_of[order], np.arange(n + 1))
        groups = []
        for shard in range(n):
            pos = order[bounds[shard] : bounds[shard + 1]]
            if pos.size:
                groups.append((shard, pos, rows[pos] // n))
        return groups

    def global_rows(self, shard: int, local: np.ndarray) -> np.ndarray:
        return local * self.num_shards + shard


class RowStore(Protocol):
    """Storage of the rows one shard holds for one table (and its update rule's state)."""

    spec: TableSpec
    shape: tuple[int, int]

    def gather(self, local_rows: np.ndarray) -> np.ndarray: ...

    def serve(self, local_rows: np.ndarray) -> np.ndarray | SparseRows:
        """The rows in the form this store sends them (dense rows or a CSR batch)."""
        ...

    def apply(self, local_rows: np.ndarray, increments: np.ndarray | SparseRows) -> None: ...

    def to_dense(self) -> np.ndarray: ...

    def export(self) -> np.ndarray | sp.csr_matrix:
        """All rows in the store's own form: a dense array, or a CSR matrix (sparse)."""
        ...

    def load_dense(self, values: np.ndarray | sp.spmatrix) -> None:
        """Set all rows from a dense array or a scipy sparse matrix."""
        ...

    def rule_state(self) -> dict[str, np.ndarray]: ...

    def load_rule_state(self, state: dict[str, np.ndarray]) -> None: ...


class DenseRowStore:
    """All local rows of a table in one C-contiguous 2-D array."""

    def __init__(self, spec: TableSpec, num_local_rows: int) -> None:
        self.spec = spec
        self.values = np.zeros((num_local_rows, spec.row_width), dtype=spec.np_dtype)
        self.state = spec.rule.new_state(self.values)
        self.applied = 0  # updates applied: the step count of the rule's schedule
        self._adds = isinstance(spec.rule, Add)  # fixed per table; asked every message

    @property
    def shape(self) -> tuple[int, int]:
        return self.values.shape

    def gather(self, local_rows: np.ndarray) -> np.ndarray:
        return gather_rows(self.values, local_rows)  # compiled: no GIL held while copying

    serve = gather

    def apply(self, local_rows: np.ndarray, increments: np.ndarray | SparseRows) -> None:
        """Fold one message's increments (distinct rows) in with the table's rule (a CSR
        batch to an ``add`` table in O(its entries))."""
        if self._adds and type(increments) is np.ndarray:
            scatter_add_rows(self.values, local_rows, increments)
        elif self._adds and isinstance(increments, SparseRows):
            increments.add_to(self.values, local_rows)
        else:
            self.spec.rule.apply(self.values, self.state, local_rows, as_dense(increments),
                                 self.applied)
        self.applied += 1

    def to_dense(self) -> np.ndarray:
        return self.values.copy()

    export = to_dense

    def load_dense(self, values: np.ndarray | sp.spmatrix) -> None:
        if sp.issparse(values):
            values = values.toarray()
        if values.shape != self.values.shape:
            raise ConfigError(
                f"table {self.spec.name!r}: cannot load shape {values.shape}, "
                f"expected {self.values.shape}"
            )
        self.values[...] = values

    def rule_state(self) -> dict[str, np.ndarray]:
        return {name: arr.copy() for name, arr in self.state.items()}

    def load_rule_state(self, state: dict[str, np.ndarray]) -> None:
        for name, arr in state.items():
            self.state[name][...] = arr


class SparseRowStore:
    """Each local row's non-zero (column, value) pairs in one pool (kernels in
    :mod:`stalesync.kernels.sparse_rows`): memory O(non-zeros), an increment that cancels
    an entry to zero frees it, reads return dense rows. The ``add`` rule only."""

    def __init__(self, spec: TableSpec, num_local_rows: int) -> None:
        self.spec = spec
        self.shape = (num_local_rows, spec.row_width)
        self.start = np.zeros(num_local_rows, dtype=np.int64)
        self.length = np.zeros(num_local_rows, dtype=np.int32)
        self.cap = np.zeros(num_local_rows, dtype=np.int32)
        self.cols = np.zeros(0, dtype=np.int32)
        self.vals = np.zeros(0, dtype=spec.np_dtype)
        self.top = 0
        self.applied = 0
        self.pos = np.full(spec.row_width, -1, dtype=np.int32)  # kernels' lookup scratch

    @property
    def nnz(self) -> int:
        return int(self.length.sum())

    @property
    def nbytes(self) -> int:
        """Bytes held: the per-row index and the pool."""
        return int(sum(a.nbytes for a in (self.start, self.length, self.cap, self.cols,
                                          self.vals)))

    def gather(self, local_rows: np.ndarray) -> np.ndarray:
        out = np.zeros((local_rows.size, self.shape[1]), dtype=self.spec.np_dtype)
        if local_rows.size:
            sparse_rows.gather(self.start, self.length, self.cols, self.vals, local_rows, out)
        return out

    def gather_sparse(self, local_rows: np.ndarray) -> SparseRows:
        """The rows as a CSR batch: O(their non-zeros), never O(rows x width)."""
        indptr, cols, vals = sparse_rows.gather_csr(self.start, self.length, self.cols,
                                                    self.vals, local_rows)
        return SparseRows(indptr, cols, vals, self.shape[1])

    def serve(self, local_rows: np.ndarray) -> SparseRows:
        return self.gather_sparse(local_rows)

    def apply(self, local_rows: np.ndarray, increments: np.ndarray | SparseRows) -> None:
        """Fold one message's increments (distinct rows; dense or a CSR batch) in."""
        self.add(local_rows, increments)
        self.applied += 1

    def add(self, local_rows: np.ndarray, increments: np.ndarray | SparseRows) -> None:
        """Add ``increments[i]`` to row ``local_rows[i]`` (distinct rows)."""
        if not local_rows.size:
            return
        if isinstance(increments, SparseRows):
            vals = increments.vals.astype(self.spec.np_dtype, copy=False)
            self._reserve(lambda cap: sparse_rows.room_needed_csr(
                self.length, cap, local_rows, increments.indptr))
            self.top = sparse_rows.apply_csr(self.start, self.length, self.cap, self.cols,
                                             self.vals, self.pos, self.top, local_rows,
                                             increments.indptr, increments.cols, vals)
            return
        increments = np.ascontiguousarray(increments, dtype=self.spec.np_dtype)
        self._reserve(lambda cap: sparse_rows.room_needed(self.length, cap, local_rows,
                                                          increments))
        self.top = sparse_rows.apply(self.start, self.length, self.cap, self.cols,
                                     self.vals, self.pos, self.top, local_rows, increments)

    def _reserve(self, room_needed) -> None:
        """Room in the pool for a batch: ``room_needed(cap)`` bounds the entries the batch
        may take given the rows' room ``cap``. A growth compacts the pool, and compaction
        gives every row only the room its entries need (none to a cleared row), so a row
        that fitted its old room may have to move: the growth budgets for rows with no
        room at all."""
        if self.top + room_needed(self.cap) > self.cols.size:
            self._grow(room_needed(np.zeros_like(self.cap)))

    def assign(self, local_rows: np.ndarray, values: np.ndarray | SparseRows) -> None:
        """Set the rows to ``values`` (distinct rows)."""
        self.clear(local_rows)
        self.add(local_rows, values)

    def clear(self, local_rows: np.ndarray) -> None:
        """Drop the rows' entries (their room is reclaimed by the next compaction)."""
        self.length[local_rows] = 0

    def take_and_clear(self, local_rows: np.ndarray) -> SparseRows:
        out = self.gather_sparse(local_rows)
        self.clear(local_rows)
        return out

    def _grow(self, need: int) -> None:
        """A compacted pool with room for ``need`` more entries (and as many again)."""
        size = sparse_rows.compacted_size(self.length)
        cols = np.zeros(2 * (size + need), dtype=np.int32)
        vals = np.zeros(cols.size, dtype=self.vals.dtype)
        self.top = sparse_rows.compact(self.start, self.length, self.cap, self.cols,
                                       self.vals, cols, vals)
        self.cols, self.vals = cols, vals

    def to_dense(self) -> np.ndarray:
        return self.gather(np.arange(self.shape[0]))

    def export(self) -> sp.csr_matrix:
        batch = self.gather_sparse(np.arange(self.shape[0]))
        return sp.csr_matrix((batch.vals, batch.cols, batch.indptr), shape=self.shape)

    def load_dense(self, values: np.ndarray | sp.spmatrix) -> None:
        if values.shape != self.shape:
            raise ConfigError(f"table {self.spec.name!r}: cannot load shape {values.shape}, "
                              f"expected {self.shape}")
        self.length[:] = 0
        self.cap[:] = 0
        self.start[:] = 0
        self.cols = np.zeros(0, dtype=np.int32)
        self.vals = np.zeros(0, dtype=self.spec.np_dtype)
        self.top = 0
        if sp.issparse(values):
            csr = sp.csr_matrix(values)
            values = SparseRows(csr.indptr.astype(np.int64), csr.indices.astype(np.int32),
                                csr.data, self.shape[1])
        self.add(np.arange(self.shape[0]), values)

    def rule_state(self) -> dict[str, np.ndarray]:
        return {}

    def load_rule_state(self, state: dict[str, np.ndarray]) -> None:
        if state:
            raise ConfigError(f"table {self.spec.name!r}: a sparse table has no rule state")


def make_store(spec: TableSpec, num_local_rows: int) -> RowStore:
    """The row store ``spec.storage`` asks for."""
    return (SparseRowStore if spec.sparse else DenseRowStore)(spec, num_local_rows)
