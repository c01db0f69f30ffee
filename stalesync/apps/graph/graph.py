"""The graph a vertex program runs on, and the readers that build one.

A :class:`Graph` keeps its edges by target (CSR of in-edges: row ``v`` lists the sources of
the edges into ``v`` and their weights), since a vertex program gathers over a vertex's
in-edges; ``out_weight`` is each vertex's total out-weight (PageRank divides by it).
Parallel edges are summed into one; self-loops are kept (networkx keeps them too).

Inputs: an edge list in a text file (``src dst [weight]`` per line; whitespace, comma or
tab separated; ``#`` and ``%`` start comments; integer ids, or names numbered in
sorted order), a scipy sparse adjacency matrix
(``A[i, j]`` = weight of the edge i -> j), or arrays of sources and targets.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from ...errors import ConfigError, DataFormatError


def vertex_ids(ids: np.ndarray, num_vertices: int) -> np.ndarray:
    """Vertex ids as int32 (half the bytes a gather streams per edge) while they fit."""
    return ids.astype(np.int32 if num_vertices < 2**31 else np.int64, copy=False)


@dataclass(frozen=True)
class Graph:
    """A directed, weighted graph of ``num_vertices`` vertices, stored by in-edges."""

    num_vertices: int
    indptr: np.ndarray  # int64 (n + 1): in-edges of v are indptr[v]:indptr[v + 1]
    src: np.ndarray  # int32 (int64 past 2**31 edges): the source of each in-edge
    weight: np.ndarray  # float64: the weight of each in-edge
    out_weight: np.ndarray  # float64 (n): total weight of each vertex's out-edges
    names: np.ndarray | None = None  # the vertex names of the input file, if it had names
    symmetric: bool = False  # every edge has its reverse, of the same weight

    @property
    def num_edges(self) -> int:
        return int(self.src.size)

    @classmethod
    def from_edges(cls, src: Any, dst: Any, weight: Any = None,
                   num_vertices: int | None = None, names: np.ndarray | None = None) -> Graph:
        """The graph of edges ``src[i] -> dst[i]`` (weight 1 unless given)."""
        src = np.asarray(src)
        dst = np.asarray(dst)
        if src.shape != dst.shape or src.ndim != 1:
            raise ConfigError(f"src and dst must be 1-D of one length, got shapes {src.shape} "
                              f"and {dst.shape}", param="edges")
        for name, ids in (("src", src), ("dst", dst)):
            if ids.size and (not np.issubdtype(ids.dtype, np.integer) or ids.min() < 0):
                raise ConfigError(f"{name}: vertex ids must be integers >= 0", param="edges")
        top = int(max(src.max(initial=-1), dst.max(initial=-1))) + 1
        n = top if num_vertices is None else int(num_vertices)
        if n < top:
            raise ConfigError(f"num_vertices={n} but the edges name vertex {top - 1}",
                              param="num_vertices")
        if n < 1:
            raise ConfigError("a graph needs at least one vertex", param="edges")
        w = np.ones(src.size) if weight is None else np.asarray(weight, dtype=np.float64)
        if w.shape != src.shape:
            raise ConfigError(f"weight has shape {w.shape}, the edges {src.shape}",
                              param="weight")
        if w.size and (not np.all(np.isfinite(w)) or w.min() < 0):
            raise ConfigError("edge weights must be finite and >= 0", param="weight")
        adjacency = sp.csr_matrix((w, (src.astype(np.int64), dst.astype(np.int64))),
                                  shape=(n, n))
        return cls.from_adjacency(adjacency, names=names)

    @classmethod
    def from_adjacency(cls, A: Any, names: np.ndarray | None = None) -> Graph:
        """The graph of a square scipy sparse (or dense) matrix: ``A[i, j]`` is the weight
        of the edge i -> j."""
        A = sp.csr_matrix(A, dtype=np.float64)
        if A.shape[0] != A.shape[1]:
            raise ConfigError(f"an adjacency matrix must be square, got {A.shape}",
                              param="graph")
        if A.nnz and (not np.all(np.isfinite(A.data)) or A.data.min() < 0):
            raise ConfigError("edge weights must be finite and >= 0", param="graph")
        A.sum_duplicates()
        A.eliminate_zeros()
        incoming = A.T.tocsr()  # row v: the edges into v
        incoming.sort_indices()
        out_weight = np.asarray(A.sum(axis=1)).ravel()
        return cls(A.shape[0], incoming.indptr.astype(np.int64),
                   vertex_ids(incoming.indices, A.shape[0]), incoming.data.copy(), out_weight,
                   names)

    def incoming(self) -> sp.csr_matrix:
        """``A^T``: row v holds the weights of the edges into v (the graph's own arrays)."""
        n = self.num_vertices
        return sp.csr_matrix((self.weight, self.src, self.indptr), shape=(n, n))

    def adjacency(self) -> sp.csr_matrix:
        """``A[i, j]`` = weight of the edge i -> j."""
        return self.incoming().T.tocsr()

    def relabel(self, order: np.ndarray) -> Graph:
        """The same graph with vertex ``order[i]`` renamed ``i``."""
        S = self.incoming()[order][:, order].tocsr()
        S.sort_indices()
        return Graph(self.num_vertices, S.indptr.astype(np.int64),
                     vertex_ids(S.indices, self.num_vertices), S.data, self.out_weight[order],
                     symmetric=self.symmetric)

    def undirected(self) -> Graph:
        """The same vertices with every edge in both directions (weights of i -> j and
        j -> i added), for programs that ignore direction (components, label propagation)."""
        if self.symmetric:
            return self
        S = self.incoming()
        S = (S + S.T).tocsr()  # symmetric: its rows are also its in-edges
        S.sort_indices()
        return Graph(self.num_vertices, S.indptr.astype(np.int64),
                     vertex_ids(S.indices, self.num_vertices), S.data,
                     np.asarray(S.sum(axis=1)).ravel(), self.names, symmetric=True)

    def neighbours(self) -> tuple[np.ndarray, np.ndarray]:
        """The undirected adjacency without self-loops (indptr, neighbour ids): what the
        consistency models and the colouring look at."""
        both = self.undirected()
        rows = np.repeat(np.arange(self.num_vertices), np.diff(both.indptr))
        keep = both.src != rows
        indptr = np.zeros(self.num_vertices + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows[keep], minlength=self.num_vertices), out=indptr[1:])
        return indptr, both.src[keep]


def as_graph(data: Any) -> Graph:
    """A :class:`Graph` from a Graph, a scipy sparse / dense adjacency matrix, an
    ``(src, dst)`` or ``(src, dst, weight)`` tuple of arrays, or an edge-list file path."""
    if isinstance(data, Graph):
        return data
    if isinstance(data, str | os.PathLike):
        return read_edge_list(data)
    if isinstance(data, tuple) and len(data) in (2, 3):
        return Graph.from_edges(*data)
    if sp.issparse(data) or (isinstance(data, np.ndarray) and data.ndim == 2):
        return Graph.from_adjacency(data)
    raise ConfigError(f"a graph is a Graph, an adjacency matrix, (src, dst[, weight]) arrays "
                      f"or an edge-list file, got {type(data).__name__}", param="graph")


def read_edge_list(path: str | os.PathLike) -> Graph:
    """An edge-list file: ``src dst [weight]`` per line. Integer ids are used as they are;
    any other names are numbered in sorted order (kept as ``Graph.names``).
    A malformed line is one error naming the file and the line."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"{path}: no such file")
    src_names: list[str] = []
    dst_names: list[str] = []
    weights: list[float] = []
    has_weight: bool | None = None
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            text = line.split("#", 1)[0].split("%", 1)[0].strip()
            if not text:
                continue
            fields = text.replace(",", " ").replace("\t", " ").split()
            if len(fields) not in (2, 3):
                raise DataFormatError(f"{path}:{number}: expected 'src dst [weight]', got "
                                      f"{len(fields)} fields")
            if has_weight is None:
                has_weight = len(fields) == 3
            elif has_weight != (len(fields) == 3):
                raise DataFormatError(f"{path}:{number}: {len(fields)} fields, but earlier "
                                      f"lines have {3 if has_weight else 2}")
            src_names.append(fields[0])
            dst_names.append(fields[1])
            if has_weight:
                try:
                    weights.append(float(fields[2]))
                except ValueError:
                    raise DataFormatError(f"{path}:{number}: weight {fields[2]!r} is not a "
                                          "number") from None
                if not np.isfinite(weights[-1]) or weights[-1] < 0:
                    raise DataFormatError(f"{path}:{number}: weight {fields[2]} must be "
                                          "finite and >= 0")
    if not src_names:
        raise DataFormatError(f"{path}: no edges")
    both = np.array(src_names + dst_names)
    names = None
    try:
        ids = both.astype(np.int64)
        if ids.min() < 0:
            raise ValueError
    except ValueError:
        names, ids = np.unique(both, return_inverse=True)
    m = len(src_names)
    return Graph.from_edges(ids[:m], ids[m:], weights if has_weight else None, names=names)
