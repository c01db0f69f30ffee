"""The built-in vertex programs as estimators: ``PageRank``, ``ConnectedComponents`` and
``LabelPropagation`` (``fit(graph, run=RunConfig(...))``; a graph is anything
:func:`~stalesync.apps.graph.graph.as_graph` takes)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ...errors import ConfigError
from ...observe.metrics import build_run_record
from ...observe.tensorboard import write_record
from ..base import RunConfig, StalesyncEstimator, check_choice, check_float, check_int
from ..workers import Decision, Work, decide
from .engine import (
    CONSISTENCY,
    ENGINES,
    EngineResult,
    Prepared,
    prepare,
    run_prepared,
    sweep_seconds,
)
from .graph import Graph, as_graph
from .programs import AlternatingLeastSquares, VertexProgram
from .programs import ConnectedComponents as ComponentsProgram
from .programs import LabelPropagation as LabelsProgram
from .programs import PageRank as PageRankProgram


class VertexProgramEstimator(StalesyncEstimator):
    """What the graph estimators share: the engine's parameters, the worker decision and
    the run record. Subclasses give :meth:`_program` and :meth:`_finish`."""

    _sparse_input = True

    def _check_engine_params(self) -> None:
        check_choice(self.engine, "engine", ENGINES)
        check_choice(self.consistency, "consistency", tuple(CONSISTENCY))
        check_int(self.max_rounds, "max_rounds", 1)

    def _passes_guess(self) -> float:
        """Sweeps over the vertices the fit is expected to take (for workers='auto')."""
        return 20.0

    def _max_rounds(self, prepared: Prepared) -> int:
        return self.max_rounds

    def _run(self, graph: Graph, program: VertexProgram, tol: float,
             run: RunConfig | dict | None) -> EngineResult:
        run = RunConfig.coerce(run)
        options = run.driver_options(self.seed)
        if run.snapshot_every is not None or run.resume is not None:
            raise ConfigError("graph programs take no snapshots (a run is a few seconds of "
                              "rounds); run it again instead", param="snapshot_every")
        if self.workers != "auto" and self.workers > graph.num_vertices:
            raise ConfigError(f"{graph.num_vertices} vertices cannot be split over "
                              f"{self.workers} workers", param="workers")
        prepared = prepare(graph, program, engine=self.engine, consistency=self.consistency,
                           tol=tol)
        decision = self._decide(prepared)
        result = run_prepared(prepared, workers=decision.workers,
                              max_rounds=self._max_rounds(prepared),
                              seed=self.seed, trace=getattr(self, "_trace", False),
                              driver_options=options)
        self.n_rounds_ = result.rounds
        self.n_updates_ = result.updates
        self.converged_ = result.converged
        self.trace_ = result.trace
        self._record_run(graph, run, result, decision)
        return result

    def _decide(self, prepared: Prepared) -> Decision:
        """Workers that pay: a sweep's cost is timed on a slice of the graph; a fit is about
        ``_passes_guess()`` sweeps, each counted as a clock (a sync superstep ends at the
        workers' barrier, a dynamic round is a hand-off per colour)."""
        passes = self._passes_guess()
        rounds = int(passes) * (1 if self.engine == "sync" else prepared.num_colours)
        return decide(self.workers, lambda: Work(sweep_seconds(prepared) * passes, rounds,
                                                 max_workers=prepared.graph.num_vertices))

    def _record_run(self, graph: Graph, run: RunConfig, result: EngineResult,
                    decision: Decision) -> None:
        records = [{"iteration": result.rounds, "worker": w, "time_s": result.wall_s,
                    "duration_s": result.busy_s[w], "wait_s": result.wait_s[w],
                    "bytes_sent": 0, "objective": float(result.updates)}
                   for w in range(len(result.busy_s))]
        final = {"vertices": graph.num_vertices, "edges": graph.num_edges,
                 "engine": self.engine, "colours": result.colours,
                 "rounds": result.rounds, "vertex_updates": result.updates,
                 "updates_per_vertex": result.updates / graph.num_vertices,
                 "converged": result.converged, "startup_s": result.startup_s}
        record = build_run_record(
            app="graph", strategy=f"vertex-{self.engine}", runtime=run.runtime,
            consistency=self.consistency, staleness=0, workers=len(result.busy_s),
            clocks=result.rounds, epochs=result.updates / graph.num_vertices,
            wall_time_s=result.wall_s, metrics=[], final=final)
        record["workers_decision"] = decision.as_record()
        record["records"] = records
        record["wait_s"] = float(sum(result.wait_s))
        record["objective_name"] = "vertex updates so far"
        if run.tensorboard:
            write_record(run.tensorboard, record)
        self._keep_record(record)


class PageRank(VertexProgramEstimator):
    """PageRank (personalised with ``personalization``: a teleport weight per vertex) by a
    vertex program. ``engine="sync"`` (default) updates every vertex every superstep (power
    iteration) until a superstep moves the scores by at most ``tol`` in total (L1);
    ``engine="dynamic"`` updates only vertices whose inputs moved by more than ``tol / n``
    since their last update (GraphLab's dynamic PageRank), and stops when the moves not yet
    applied sum to at most ``tol``: less than half the vertex updates, but each also
    scatters to its out-edges, so on the graphs of ``bench/graph.py`` it is slower in wall
    time, hence not the default. Either way the scores are then within about
    ``tol / (1 - damping)`` of the exact ones in L1 (the default reaches 1e-8 with room).

    Attributes: ``scores_`` (n, summing to 1), ``n_rounds_``, ``n_updates_`` (vertex
    updates), ``converged_``, ``run_record_``."""

    _fitted_attributes = ("scores_",)
    _model_arrays = ("scores_",)

    def __init__(self, damping: float = 0.85, *, personalization: Any = None,
                 engine: str = "sync", consistency: str = "edge", tol: float = 1e-9,
                 max_rounds: int = 100_000, workers: int | str = "auto", seed: int = 0):
        self.damping = damping
        self.personalization = personalization
        self.engine = engine
        self.consistency = consistency
        self.tol = tol
        self.max_rounds = max_rounds
        self.workers = workers
        self.seed = seed

    def _check_own_params(self) -> None:
        check_float(self.damping, "damping", 0, 1, low_open=True, high_open=True)
        check_float(self.tol, "tol", 0, low_open=True)
        self._check_engine_params()

    def _passes_guess(self) -> float:
        return min(200.0, max(10.0, math.log(self.tol) / math.log(self.damping)))

    def fit(self, graph: Any, y: Any = None, *, run: RunConfig | dict | None = None
            ) -> PageRank:
        """Score the vertices of ``graph``; ``y`` is ignored."""
        self._check_params()
        graph = as_graph(graph)
        program = PageRankProgram(self.damping, self.personalization)
        program.teleport(graph.num_vertices)  # a bad personalization fails before any work
        result = self._run(graph, program, self.tol, run)
        self.scores_ = result.values
        self.run_record_["final"]["score_sum"] = float(self.scores_.sum())
        return self


class ConnectedComponents(VertexProgramEstimator):
    """Weakly connected components by propagating the smallest vertex id.

    Attributes: ``labels_`` (each vertex's component, numbered 0.. in order of each
    component's smallest vertex), ``n_components_``, ``n_rounds_``, ``n_updates_``."""

    _fitted_attributes = ("labels_",)
    _model_arrays = ("labels_",)

    def __init__(self, *, engine: str = "sync", consistency: str = "edge",
                 max_rounds: int = 100_000, workers: int | str = "auto", seed: int = 0):
        self.engine = engine
        self.consistency = consistency
        self.max_rounds = max_rounds
        self.workers = workers
        self.seed = seed

    def _check_own_params(self) -> None:
        self._check_engine_params()

    def fit(self, graph: Any, y: Any = None, *, run: RunConfig | dict | None = None
            ) -> ConnectedComponents:
        """Label the components of ``graph`` (edge direction ignored); ``y`` is ignored."""
        self._check_params()
        graph = as_graph(graph)
        result = self._run(graph, ComponentsProgram(), 0.0, run)
        _, self.labels_ = np.unique(result.values, return_inverse=True)
        self.n_components_ = int(self.labels_.max()) + 1
        self.run_record_["final"]["components"] = self.n_components_
        return self


class LabelPropagation(VertexProgramEstimator):
    """Semi-supervised label propagation on a given graph (hard clamping; edge direction
    ignored): ``y`` gives a class per vertex, -1 where unknown. Vertices with no path to a
    labelled vertex keep label -1. ``tol``: stop when a superstep moves the label
    distributions by at most this in total (L1), scikit-learn's rule and default.

    Attributes: ``labels_``, ``label_distributions_`` (n x classes), ``classes_``."""

    _fitted_attributes = ("labels_",)
    _model_arrays = ("labels_", "label_distributions_", "classes_")

    def __init__(self, *, engine: str = "sync", consistency: str = "edge",
                 tol: float = 1e-3, max_rounds: int = 100_000, workers: int | str = "auto",
                 seed: int = 0):
        self.engine = engine
        self.consistency = consistency
        self.tol = tol
        self.max_rounds = max_rounds
        self.workers = workers
        self.seed = seed

    def _check_own_params(self) -> None:
        check_float(self.tol, "tol", 0, low_open=True)
        self._check_engine_params()

    def fit(self, graph: Any, y: Any, *, run: RunConfig | dict | None = None
            ) -> LabelPropagation:
        """Propagate the known labels of ``y`` (-1: unknown) over ``graph``."""
        self._check_params()
        graph = as_graph(graph)
        y = np.asarray(y)
        if not np.issubdtype(y.dtype, np.integer):
            raise ConfigError(f"y must hold integer classes (-1: unknown), got {y.dtype}",
                              param="y")
        if y.shape != (graph.num_vertices,):
            raise ConfigError(f"y must have one label per vertex ({graph.num_vertices}), got "
                              f"shape {y.shape}", param="y")
        known = y != -1
        if not known.any():
            raise ConfigError("y labels no vertex (every entry is -1)", param="y")
        self.classes_, codes = np.unique(y[known], return_inverse=True)
        labels = np.full(graph.num_vertices, -1, dtype=np.int64)
        labels[known] = codes
        program = LabelsProgram(labels, self.classes_.size)
        result = self._run(graph, program, self.tol, run)
        F = result.values
        total = F.sum(axis=1, keepdims=True)
        self.label_distributions_ = np.divide(F, total, out=np.zeros_like(F),
                                              where=total > 0)
        reached = total[:, 0] > 0
        self.labels_ = np.where(reached, self.classes_[F.argmax(axis=1)], -1)
        return self


class ALS(VertexProgramEstimator):
    """Matrix factorisation by alternating least squares as a vertex program on the
    ratings graph (GraphLab's collaborative-filtering toolkit): ``rating ~ mean + user
    factor . item factor``, each factor the regularised least-squares fit to its ratings
    (``reg`` times its number of ratings). ``epochs`` sweeps: under the default dynamic
    engine with edge consistency a sweep is a round of users then a round of items.
    ``fit`` takes what :class:`~stalesync.apps.mf.MatrixFactorization` takes (a
    ``Ratings``, or user / item / rating arrays).

    Attributes: ``user_factors_``, ``item_factors_``, ``mean_``, ``n_rounds_``."""

    _fitted_attributes = ("user_factors_", "item_factors_")
    _model_arrays = ("user_factors_", "item_factors_")
    _model_info = ("mean_",)

    def __init__(self, rank: int = 10, *, reg: float = 0.1, epochs: int = 10,
                 engine: str = "dynamic", consistency: str = "edge",
                 workers: int | str = "auto", seed: int = 0):
        self.rank = rank
        self.reg = reg
        self.epochs = epochs
        self.engine = engine
        self.consistency = consistency
        self.workers = workers
        self.seed = seed

    max_rounds = property(lambda self: self.epochs)  # the engine's budget, in sweeps

    def _check_own_params(self) -> None:
        check_int(self.rank, "rank", 1)
        check_float(self.reg, "reg", 0, low_open=True)
        check_int(self.epochs, "epochs", 1)
        check_choice(self.engine, "engine", ENGINES)
        check_choice(self.consistency, "consistency", tuple(CONSISTENCY))

    def _passes_guess(self) -> float:
        return float(self.epochs)

    def _max_rounds(self, prepared: Prepared) -> int:
        return self.epochs * (prepared.num_colours if self.engine == "dynamic" else 1)

    def fit(self, X: Any, y: Any = None, *, run: RunConfig | dict | None = None) -> ALS:
        """Factorise the ratings ``X``."""
        from ..mf.estimator import as_ratings
        from .datasets import rating_graph

        self._check_params()
        data = as_ratings(X, y, "X")
        values = data.values.astype(np.float64)  # centred in float64, not the file's float32
        self.mean_ = float(np.mean(values))
        graph = rating_graph(data.users, data.items, values - self.mean_, data.n_users,
                             data.n_items)
        program = AlternatingLeastSquares(self.rank, self.reg, self.seed)
        result = self._run(graph, program, 0.0, run)
        self.user_factors_ = result.values[:data.n_users]
        self.item_factors_ = result.values[data.n_users:]
        self.run_record_["final"]["train_rmse"] = self.rmse(data)
        return self

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Predicted ratings of dense user and item indices (those of the ``Ratings``
        the model was fitted on)."""
        self._check_fitted()
        users, items = np.asarray(users), np.asarray(items)
        return self.mean_ + np.einsum("ij,ij->i", self.user_factors_[users],
                                      self.item_factors_[items])

    def rmse(self, ratings: Any) -> float:
        """Root mean squared error on ``ratings`` (with the fitted data's id maps)."""
        pred = self.predict(ratings.users, ratings.items)
        return float(np.sqrt(np.mean((pred - ratings.values) ** 2)))
