"""Vertex programs (GraphLab / PowerGraph's gather-apply-scatter) and the built-in ones.

A vertex program says how one vertex's value follows from its neighbours':

* ``gather``: combine the neighbours' values over the vertex's in-edges;
* ``apply``: the vertex's new value from its old value and the gathered sum;
* ``scatter``: the update's *signal*: how much what the vertex sends along an edge of
  weight 1 moved. Each out-neighbour's residual grows by ``edge weight x signal`` (times
  the neighbour's ``input_scale``, when the program has one), and a vertex whose residual
  exceeds the tolerance is scheduled again (GraphLab's dynamic scheduling);
* ``change``: how much the update moved the answer (summed over the vertices), which the
  synchronous engine stops on.

Each method works on a whole set of vertices of one :class:`Part` (a shard's vertex range
with its in-edges) in one call, so the engine never loops over vertices in Python; the
built-in programs call compiled kernels (:mod:`stalesync.kernels.graph`). A new program is
a class with these methods (the :class:`VertexProgram` protocol), run by
:func:`stalesync.apps.graph.engine.run_engine`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ...errors import ConfigError
from ...kernels import graph as kg
from .graph import Graph


@dataclass
class Part:
    """One shard's vertices ``lo:hi`` and their in-edges (``indptr`` rebased to the part:
    the in-edges of vertex ``lo + i`` are ``indptr[i]:indptr[i + 1]``), the edges' weights
    (``None`` when every weight is 1) and the program's per-vertex arrays (``local``, each
    of ``hi - lo`` rows)."""

    lo: int
    hi: int
    indptr: np.ndarray
    src: np.ndarray
    weight: np.ndarray | None
    local: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def of(cls, graph: Graph, lo: int, hi: int, per_vertex: dict[str, np.ndarray],
           unit: bool) -> Part:
        """Vertices ``lo:hi`` of ``graph`` (views of its arrays, not copies)."""
        a, b = graph.indptr[lo], graph.indptr[hi]
        return cls(lo, hi, graph.indptr[lo:hi + 1] - a, graph.src[a:b],
                   None if unit else graph.weight[a:b],
                   {k: v[lo:hi] for k, v in per_vertex.items()})

    def sums(self, values: np.ndarray, local: np.ndarray) -> np.ndarray:
        """Each vertex's weighted sum of ``values`` over its in-edges."""
        out = np.empty(local.size)
        if self.weight is None:
            kg.unit_sum(self.indptr, self.src, values, local, out)
        else:
            kg.weighted_sum(self.indptr, self.src, self.weight, values, local, out)
        return out


def largest_moves(old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Each row's largest move (the signal of a vertex whose value is a vector)."""
    return np.abs(new - old).max(axis=1) if new.size else np.zeros(new.shape[0])


class VertexProgram(Protocol):
    """What the engine needs of a program (see the module docstring)."""

    name: str
    undirected: bool  # gathers over edges in both directions

    def setup(self, graph: Graph) -> dict[str, np.ndarray]:
        """Per-vertex arrays each part keeps its rows of; ``input_scale``, if present,
        multiplies a vertex's residual before it is compared with the tolerance."""
        ...

    def initial(self, graph: Graph) -> np.ndarray:
        """Every vertex's starting value (n, or n x k)."""
        ...

    def gather(self, part: Part, values: np.ndarray, local: np.ndarray) -> np.ndarray:
        """The gathered sum of each vertex ``part.lo + local[i]`` over its in-edges."""
        ...

    def apply(self, part: Part, old: np.ndarray, local: np.ndarray,
              acc: np.ndarray) -> np.ndarray:
        """New values of those vertices from their ``old`` values and ``acc``."""
        ...

    def scatter(self, part: Part, local: np.ndarray, old: np.ndarray,
                new: np.ndarray) -> np.ndarray:
        """Each updated vertex's signal per unit of edge weight (>= 0, float64)."""
        ...

    def change(self, part: Part, local: np.ndarray, old: np.ndarray,
               new: np.ndarray) -> float:
        """How much the answer moved, summed over the updated vertices."""
        ...

    def result(self, whole: Part, values: np.ndarray) -> np.ndarray:
        """The program's answer from the final values (``whole``: every vertex as one
        part)."""
        ...


class PageRank:
    """PageRank as the linear system ``x = damping P^T x + (1 - damping) p``: each vertex
    adds its teleport share to what its in-neighbours send it. Dangling vertices (no
    out-edges) teleport by ``p`` too: that system's solution is then proportional to the
    usual PageRank vector (with dangling mass spread by ``p``, as networkx does), so
    :meth:`result` normalises it to sum 1, and every update stays local to a vertex's
    neighbourhood (no global dangling sum per step).

    A vertex's stored value is what it sends along each unit of out-weight,
    ``y = damping x / out_weight`` (0 for a dangling vertex), so a gather is a plain sum
    over the in-edges (times the edge weight on a weighted graph) with no per-edge factor
    to stream, and the signal is simply ``|new y - old y|``; :meth:`result` recovers ``x``
    with one last gather. ``change`` is the L1 move of ``x``."""

    name = "pagerank"
    undirected = False

    def __init__(self, damping: float = 0.85, personalization: np.ndarray | None = None):
        self.damping = damping
        self.personalization = personalization

    def teleport(self, n: int) -> np.ndarray:
        if self.personalization is None:
            return np.full(n, 1.0 / n)
        p = np.asarray(self.personalization, dtype=np.float64)
        if p.shape != (n,) or not np.all(np.isfinite(p)) or p.min() < 0 or p.sum() <= 0:
            raise ConfigError(f"personalization must be {n} finite values >= 0 with a "
                              "positive sum", param="personalization")
        return p / p.sum()

    def _scale(self, graph: Graph) -> np.ndarray:
        out = graph.out_weight
        return np.where(out > 0, self.damping / np.where(out > 0, out, 1.0), 0.0)

    def setup(self, graph: Graph) -> dict[str, np.ndarray]:
        scale = self._scale(graph)
        unscale = np.where(scale > 0, 1.0 / np.where(scale > 0, scale, 1.0), 0.0)
        base = (1 - self.damping) * self.teleport(graph.num_vertices)
        return {"base": base, "scale": scale, "unscale": unscale}

    def initial(self, graph: Graph) -> np.ndarray:
        return self.teleport(graph.num_vertices) * self._scale(graph)

    def gather(self, part: Part, values: np.ndarray, local: np.ndarray) -> np.ndarray:
        return part.sums(values, local)

    def apply(self, part: Part, old: np.ndarray, local: np.ndarray,
              acc: np.ndarray) -> np.ndarray:
        kg.shift_scale(acc, part.local["base"], part.local["scale"], local)
        return acc

    def scatter(self, part: Part, local: np.ndarray, old: np.ndarray,
                new: np.ndarray) -> np.ndarray:
        return np.abs(new - old)

    def change(self, part: Part, local: np.ndarray, old: np.ndarray,
               new: np.ndarray) -> float:
        return kg.scaled_l1(new, old, part.local["unscale"], local)

    def result(self, whole: Part, values: np.ndarray) -> np.ndarray:
        every = np.arange(whole.hi - whole.lo)
        x = whole.local["base"] + whole.sums(values, every)
        return x / x.sum()


class ConnectedComponents:
    """Weakly connected components: every vertex takes the smallest id in its
    neighbourhood until nothing changes; a component's label is its smallest vertex id."""

    name = "components"
    undirected = True

    def setup(self, graph: Graph) -> dict[str, np.ndarray]:
        return {}

    def initial(self, graph: Graph) -> np.ndarray:
        return np.arange(graph.num_vertices, dtype=np.int64)

    def gather(self, part: Part, values: np.ndarray, local: np.ndarray) -> np.ndarray:
        acc = np.empty(local.size, dtype=np.int64)
        kg.min_label(part.indptr, part.src, values, local, part.lo, acc)
        return acc

    def apply(self, part: Part, old: np.ndarray, local: np.ndarray,
              acc: np.ndarray) -> np.ndarray:
        return np.minimum(old, acc)

    def scatter(self, part: Part, local: np.ndarray, old: np.ndarray,
                new: np.ndarray) -> np.ndarray:
        return (new != old).astype(np.float64)

    def change(self, part: Part, local: np.ndarray, old: np.ndarray,
               new: np.ndarray) -> float:
        return float(np.count_nonzero(new != old))

    def result(self, whole: Part, values: np.ndarray) -> np.ndarray:
        return values


class LabelPropagation:
    """Semi-supervised label propagation (Zhu & Ghahramani 2002, hard clamping, as
    scikit-learn's ``LabelPropagation`` on a given graph): each unlabelled vertex's label
    distribution becomes the weighted mean of its neighbours'; labelled vertices keep
    theirs. The fixed point is the harmonic solution. A vertex's input is a mean, so its
    residual is scaled by ``1 / its weighted degree``."""

    name = "labels"
    undirected = True

    def __init__(self, labels: np.ndarray, classes: int):
        self.labels = labels  # per vertex: a class in 0..classes-1, or -1 (unlabelled)
        self.classes = classes

    def setup(self, graph: Graph) -> dict[str, np.ndarray]:
        rows = np.repeat(np.arange(graph.num_vertices), np.diff(graph.indptr))
        degree = np.bincount(rows, weights=graph.weight, minlength=graph.num_vertices)
        inverse = np.where(degree > 0, 1.0 / np.where(degree > 0, degree, 1.0), 0.0)
        return {"clamped": self.initial(graph), "known": (self.labels >= 0),
                "input_scale": inverse}

    def initial(self, graph: Graph) -> np.ndarray:
        F = np.zeros((graph.num_vertices, self.classes))
        known = np.flatnonzero(self.labels >= 0)
        F[known, self.labels[known]] = 1.0
        return F

    def gather(self, part: Part, values: np.ndarray, local: np.ndarray) -> np.ndarray:
        acc = np.empty((local.size, values.shape[1]))
        unit = part.weight is None
        kg.weighted_rows(part.indptr, part.src, part.src if unit else part.weight, unit,
                         values, local, acc)
        return acc

    def apply(self, part: Part, old: np.ndarray, local: np.ndarray,
              acc: np.ndarray) -> np.ndarray:
        acc *= part.local["input_scale"][local, None]
        known = part.local["known"][local]
        acc[known] = part.local["clamped"][local[known]]
        return acc

    def scatter(self, part: Part, local: np.ndarray, old: np.ndarray,
                new: np.ndarray) -> np.ndarray:
        return largest_moves(old, new)

    def change(self, part: Part, local: np.ndarray, old: np.ndarray,
               new: np.ndarray) -> float:
        return float(largest_moves(old, new).sum())

    def result(self, whole: Part, values: np.ndarray) -> np.ndarray:
        return values


class AlternatingLeastSquares:
    """GraphLab's collaborative-filtering ALS on a ratings graph (users and items, an edge
    both ways per rating, its weight the rating less the mean): each vertex's factor
    becomes the regularised least-squares fit to its ratings given its neighbours' factors,
    with the weighted-lambda rule (``reg x`` its number of ratings; Zhou et al. 2008).
    Under the dynamic engine with edge consistency the two sides are two colours, so the
    rounds alternate users and items: ALS itself."""

    name = "als"
    undirected = True

    def __init__(self, rank: int = 10, reg: float = 0.1, seed: int = 0):
        self.rank = rank
        self.reg = reg
        self.seed = seed

    def setup(self, graph: Graph) -> dict[str, np.ndarray]:
        return {"reg": self.reg * np.diff(graph.indptr).astype(np.float64)}

    def initial(self, graph: Graph) -> np.ndarray:
        rng = np.random.default_rng(self.seed)
        return rng.normal(0.0, 0.1, (graph.num_vertices, self.rank))

    def gather(self, part: Part, values: np.ndarray, local: np.ndarray) -> np.ndarray:
        out = np.empty((local.size, values.shape[1]))
        rating = np.ones(part.src.size) if part.weight is None else part.weight
        kg.least_squares(part.indptr, part.src, rating, values, local,
                         part.local["reg"][local], out)
        return out

    def apply(self, part: Part, old: np.ndarray, local: np.ndarray,
              acc: np.ndarray) -> np.ndarray:
        return acc

    def scatter(self, part: Part, local: np.ndarray, old: np.ndarray,
                new: np.ndarray) -> np.ndarray:
        return largest_moves(old, new)

    def change(self, part: Part, local: np.ndarray, old: np.ndarray,
               new: np.ndarray) -> float:
        return float(np.abs(new - old).sum())

    def result(self, whole: Part, values: np.ndarray) -> np.ndarray:
        return values
