"""Running a vertex program on the model-parallel scheduler: GraphLab's engines.

**Partitioning: edge-cut by vertex ranges.** Each shard owns a contiguous range of
vertices (balanced by in-edges) and the in-edges of those vertices, so a vertex's gather
never leaves its shard; the values it reads are a replica of every vertex's value, one per
process (on the embedded runtime one array serves every shard; on Ray each worker keeps
its own). A vertex-cut (PowerGraph) spreads the edges of a high-degree vertex over
machines; with every value replicated per process there is nothing for it to save here, so
the simpler cut is used.

**Engines.**

* ``sync`` (Pregel / GraphLab's synchronous engine): a round is a superstep; every vertex
  gathers from the values of the last superstep (Jacobi), and the new values are published
  together before the next. It stops when a superstep moves the answer by at most ``tol``
  (summed over the vertices: the program's ``change``).
* ``dynamic`` (GraphLab's asynchronous engine, scheduled by colour as in its chromatic
  engine): vertices are coloured so that no two vertices that may not run together share a
  colour; a round updates one colour's *scheduled* vertices in parallel, whose new values
  the next round already reads (Gauss-Seidel). After an update, each out-neighbour's
  residual grows by the edge's weight times the update's signal, and a vertex is
  scheduled again only when its residual exceeds ``tol / n``: work goes where values still
  move, and when it stops (no vertex scheduled) the inputs not yet applied sum to at most
  ``tol``.

**Consistency models** (GraphLab): which vertices may be updated at once.
``vertex``: any (one colour: all vertices); ``edge``: never two adjacent vertices (a
colouring of the graph); ``full``: never two vertices with a common neighbour (a colouring
of its square). A vertex program here writes only its own vertex, so ``edge`` already makes
every dynamic run equal to some sequential order of updates; ``full`` is for programs that
would also write their neighbours' edges.

A round is one scheduler hand-off; its task is tiny (the round's kind and colour) and each
shard finds its own scheduled vertices, so a round costs the scheduler O(shards), the
workers O(their scheduled vertices' edges) plus one scan of the colour's flags.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from ...errors import ConfigError, JobAbortedError
from ...kernels import graph as kg
from ...kernels.spin import SPIN_POLLS, spin_all
from ...scheduler import Driver, Plan, Schedule, balanced_chunks
from ..workers import timed
from .graph import Graph
from .programs import Part, VertexProgram

ENGINES = ("sync", "dynamic")
CONSISTENCY = {"vertex": 0, "edge": 1, "full": 2}  # hops within which no two run together
SYNC, COLOUR = 0, 1  # the kinds of round (the first entry of a round's task)


class Replica:
    """One process's copy of every vertex's value, shared by the shards it holds. Written
    once per round (by the driver on the embedded runtime, else by the first shard to sync
    it), before any of that round's reads.

    On the embedded runtime a sync round runs several supersteps in one hand-off: the
    workers then write each superstep's values into the other of two buffers and meet at a
    barrier (``arrived``: the supersteps each worker finished; ``moved``: what each
    worker's last two supersteps moved, so that every worker takes the same decision to
    stop) before the next reads them."""

    def __init__(self, values: np.ndarray, workers: int = 1) -> None:
        self.buffers = [values, values.copy()]
        self.current = 0  # the buffer holding the latest values
        self.round = -1
        self.arrived = np.zeros(workers, dtype=np.int64)
        self.moved = np.zeros((2, workers))
        self.failed = False  # a worker raised inside a round: the others stop waiting

    @property
    def values(self) -> np.ndarray:
        return self.buffers[self.current]


@dataclass
class Shard:
    """A vertex range's part of the graph and its dynamic-scheduling state."""

    part: Part
    replica: Replica
    colours: np.ndarray  # int32, per own vertex
    by_colour_ptr: np.ndarray  # own vertices grouped by colour (local ids)
    by_colour: np.ndarray
    out_indptr: np.ndarray  # n + 1: edges from each vertex into this shard
    out_dst: np.ndarray  # local target ids
    out_weight: np.ndarray | None  # None: every weight is 1
    index: int = 0  # the worker this shard belongs to (one shard per worker)
    residual: np.ndarray = field(default=None)  # type: ignore[assignment]
    queued: np.ndarray = field(default=None)  # type: ignore[assignment]
    counts: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        size = self.part.hi - self.part.lo
        self.every = np.arange(size)  # local ids of every vertex (a sync round's)
        self.residual = np.zeros(size) if self.residual is None else self.residual
        self.queued = np.ones(size, dtype=np.bool_) if self.queued is None else self.queued
        if self.counts is None:
            self.counts = np.diff(self.by_colour_ptr).astype(np.int64)
        scale = self.part.local.get("input_scale")
        self.input_scale = self.residual if scale is None else scale  # read only if given


@dataclass
class Update:
    """What a shard sends back for a round: the vertices it updated, their new values and
    signals, how much they moved the answer, and how many of its vertices each colour
    still has scheduled. A superstep's update has no vertex list and no signals: it covers
    the shard's whole range (the shards' ranges, in order, cover every vertex)."""

    vertices: np.ndarray | None
    values: np.ndarray | None  # None: written in place (supersteps on a shared replica)
    signal: np.ndarray | None
    moved: float
    scheduled: np.ndarray
    steps: int = 1  # supersteps this update covers
    work_s: float = 0.0  # supersteps: the shard's own work, barrier waits left out


class VertexEngine:
    """The worker side (travels to Ray workers): push = gather + apply + scatter signals
    over a shard's vertices of the round; sync = publish a round's values and, for the
    dynamic engine, add the signals to the residuals of the shard's vertices."""

    def __init__(self, program: VertexProgram, tol: float, num_vertices: int) -> None:
        self.program = program
        self.tol = tol  # sync: stop when the answer moves by less in a superstep
        self.threshold = tol / num_vertices  # dynamic: reschedule above this residual

    def push(self, shard: Shard, task: np.ndarray) -> Update:
        """One round's work on ``shard``: ``task`` is (kind, colour, supersteps)."""
        kind, colour, steps = int(task[0]), int(task[1]), int(task[2])
        if kind == COLOUR:
            return self._colour(shard, colour)
        if steps > 1:
            return self._supersteps(shard, steps)
        return self._superstep(shard)

    def _superstep(self, shard: Shard) -> Update:
        """Every vertex of the shard from the last superstep's values (slices, not index
        lists; no signals, since nothing scatters)."""
        part, values, every = shard.part, shard.replica.values, shard.every
        old = values[part.lo:part.hi]
        new = self.program.apply(part, old, every, self.program.gather(part, values, every))
        return Update(None, new, None, self.program.change(part, every, old, new),
                      shard.counts)

    def _colour(self, shard: Shard, colour: int) -> Update:
        """The shard's scheduled vertices of ``colour``, which leave the schedule."""
        part, values = shard.part, shard.replica.values
        candidates = shard.by_colour[shard.by_colour_ptr[colour]:
                                     shard.by_colour_ptr[colour + 1]]
        local = candidates[shard.queued[candidates]]
        shard.queued[local] = False
        shard.residual[local] = 0.0
        shard.counts[colour] = 0
        vertices = part.lo + local
        old = values[vertices]
        new = self.program.apply(part, old, local, self.program.gather(part, values, local))
        return Update(vertices, new, self.program.scatter(part, local, old, new),
                      self.program.change(part, local, old, new), shard.counts.copy())

    def _supersteps(self, shard: Shard, steps: int) -> Update:
        """Up to ``steps`` supersteps on a replica shared by every worker: each reads one
        buffer, writes its range of the other, and waits for the other workers before the
        next; all stop after the same superstep (the first whose total move is within
        ``tol``), since each reads every worker's move after the barrier."""
        replica, part, w = shard.replica, shard.part, shard.index
        done = int(replica.arrived[w])  # supersteps before this round: the same for all
        program, every = self.program, shard.every
        waited = 0.0
        start = time.perf_counter()
        try:
            for s in range(steps):
                now = replica.buffers[(replica.current + s) % 2]
                old = now[part.lo:part.hi]
                new = program.apply(part, old, every, program.gather(part, now, every))
                replica.buffers[(replica.current + s + 1) % 2][part.lo:part.hi] = new
                replica.moved[(done + s) % 2, w] = program.change(part, every, old, new)
                replica.arrived[w] = done + s + 1
                arrived = time.perf_counter()
                self._barrier(replica, done + s + 1)
                waited += time.perf_counter() - arrived
                total = float(replica.moved[(done + s) % 2].sum())
                if total <= self.tol:
                    break
        except BaseException:
            replica.failed = True
            raise
        work = time.perf_counter() - start - waited
        return Update(None, None, None, total, shard.counts, steps=s + 1, work_s=work)

    @staticmethod
    def _barrier(replica: Replica, target: int) -> None:
        while not spin_all(replica.arrived, target, SPIN_POLLS):
            if replica.failed:
                raise JobAbortedError("stopped: another worker of this graph run failed")
            time.sleep(0)  # more workers than cores: let the others run

    def sync(self, shard: Shard, plan: Plan, changes: Update | None) -> None:
        if changes is None:
            return
        replica = shard.replica
        if replica.round != plan.round:  # a remote worker's own replica (embedded: done)
            if changes.vertices is None:
                replica.values[:] = changes.values
            else:
                replica.values[changes.vertices] = changes.values
            replica.round = plan.round  # after the write: a later shard may skip it
        if int(plan.variables[0]) == COLOUR:
            unit = shard.out_weight is None
            kg.scatter_residual(shard.out_indptr, shard.out_dst,
                                shard.out_dst if unit else shard.out_weight, unit,
                                changes.vertices, changes.signal, shard.residual,
                                shard.input_scale, "input_scale" in shard.part.local,
                                self.threshold, shard.queued, shard.colours, shard.counts)

    def values(self, shard: Shard) -> tuple[int, np.ndarray]:
        return shard.part.lo, shard.replica.values[shard.part.lo:shard.part.hi].copy()


class Rounds(Schedule):
    """The engine's schedule: every round a superstep (``sync``), or the next colour that
    still has scheduled vertices (``dynamic``)."""

    name = "vertex-rounds"

    def __init__(self, engine: str, colours: int, steps: int = 1,
                 budget: int = 100_000) -> None:
        super().__init__()
        self.engine = engine
        self.colours = colours
        self.colour = -1
        self.scheduled = np.ones(colours, dtype=np.int64)
        self.steps = steps  # supersteps per sync round
        self.budget = budget  # supersteps (sync) or rounds (dynamic) in all
        self.done = 0  # supersteps run so far

    def next_round(self) -> Plan:
        if self.engine == "sync":
            return self._task(np.array([SYNC, 0, min(self.steps, self.budget - self.done)]))
        for step in range(1, self.colours + 1):  # the next colour with work, cyclically
            c = (self.colour + step) % self.colours
            if self.scheduled[c] > 0:
                break
        else:
            c = (self.colour + 1) % self.colours
        self.colour = c
        return self._task(np.array([COLOUR, c, 1]))

    def _task(self, task: np.ndarray) -> Plan:
        """A per-worker plan (worker w works on shard w, every round: a lane woken late
        must not find its share taken by the first) giving each the same task."""
        return self._plan(task, (task,) * self.num_workers)


class GraphRun:
    """The driver side: collects each round's updates, publishes them to the replica of
    this process (the embedded workers' one: written once, by one thread, while no worker
    reads it) and decides when to stop."""

    def __init__(self, engine: VertexEngine, schedule: Rounds, replica: Replica,
                 trace: bool, balance: tuple[Prepared, list[Shard]] | None = None) -> None:
        self.program = engine
        self.schedule = schedule
        self.replica = replica
        self.balance = balance  # (prepared, shards) to re-cut once, after the first round
        self.work_s = np.zeros(0)  # each shard's own work in the last round
        self.updates = 0
        self.last_updates = 0
        self.converged = False
        self.trace: list[np.ndarray] | None = [] if trace else None

    def pull(self, plan: Plan, partials: list[Update]) -> Update:
        values = self.replica.values
        steps = partials[0].steps
        if partials[0].values is None:  # supersteps written in place (a shared replica)
            merged = Update(None, None, None, partials[0].moved, partials[0].scheduled, steps)
            self.replica.current = (self.replica.current + steps) % 2
            updated = values.shape[0] * steps
        elif partials[0].vertices is None:  # a superstep: every vertex, shard ranges in order
            merged = Update(None, np.concatenate([p.values for p in partials]), None,
                            sum(p.moved for p in partials), partials[0].scheduled)
            values[:] = merged.values
            updated = values.shape[0]
        else:
            merged = Update(np.concatenate([p.vertices for p in partials]),
                            np.concatenate([p.values for p in partials]),
                            np.concatenate([p.signal for p in partials]),
                            sum(p.moved for p in partials),
                            np.sum([p.scheduled for p in partials], axis=0))
            values[merged.vertices] = merged.values
            updated = merged.vertices.size
        self.replica.round = plan.round  # the embedded workers' replica is up to date
        self.schedule.done += steps
        self.last_updates = updated
        self.updates += updated
        self.work_s = np.array([p.work_s for p in partials])
        self.schedule.scheduled = merged.scheduled
        if self.trace is not None:
            every = np.arange(values.shape[0])
            self.trace.extend([every] * steps if merged.vertices is None
                              else [merged.vertices])
        return merged

    def observe(self, plan: Plan, feedback: Any) -> None:
        """After the first round of supersteps, even out the workers' own measured work
        (:func:`recut`; the driver's per-worker seconds would include the barrier waits,
        which make every worker's round equally long)."""
        if self.balance is not None:
            recut(*self.balance, self.work_s)
        self.balance = None

    def done(self, plan: Plan, changes: Update) -> bool:
        if self.schedule.engine == "sync":
            self.converged = changes.moved <= self.program.tol
        else:  # nothing updated, so nothing newly scheduled, and nothing left scheduled
            self.converged = self.last_updates == 0 and not changes.scheduled.any()
        return self.converged or self.schedule.done >= self.schedule.budget


@dataclass
class EngineResult:
    values: np.ndarray
    converged: bool
    rounds: int
    updates: int
    colours: int
    wall_s: float
    startup_s: float
    trace: list[np.ndarray] | None
    busy_s: list[float]
    wait_s: list[float]


def colour(graph: Graph, consistency: str, engine: str) -> np.ndarray:
    """Each vertex's colour: one colour under the sync engine or vertex consistency, else a
    greedy colouring at the model's distance (largest degree first: fewer colours)."""
    if engine == "sync" or CONSISTENCY[consistency] == 0:
        return np.zeros(graph.num_vertices, dtype=np.int32)
    indptr, nbr = graph.neighbours()
    order = np.argsort(-np.diff(indptr), kind="stable")
    return kg.greedy_colors(indptr, nbr, order, CONSISTENCY[consistency])


@dataclass
class Prepared:
    """A graph made ready for one program, engine and consistency model: coloured, with the
    program's per-vertex arrays; :func:`make_shards` cuts it for a worker count. Under the
    dynamic engine its vertices are renumbered (``order[i]`` is the input's vertex now
    numbered ``i``, see :func:`interleave`)."""

    graph: Graph
    engine: VertexEngine
    kind: str  # the engine's name
    colours: np.ndarray
    per_vertex: dict[str, np.ndarray]
    initial: np.ndarray  # the program's starting values, in this numbering
    unit: bool  # every edge weight is 1
    whole: Part  # every vertex as one part
    order: np.ndarray | None = None  # the renumbering, if any

    @property
    def num_colours(self) -> int:
        return int(self.colours.max()) + 1

    def original(self, values: np.ndarray) -> np.ndarray:
        """Per-vertex ``values`` in the input's numbering."""
        if self.order is None:
            return values
        out = np.empty_like(values)
        out[self.order] = values
        return out


def prepare(graph: Graph, program: VertexProgram, *, engine: str = "dynamic",
            consistency: str = "edge", tol: float = 1e-9) -> Prepared:
    """Check the engine's options, set up the program, renumber (dynamic engine) and
    colour the graph."""
    if engine not in ENGINES:
        raise ConfigError(f"engine must be one of {ENGINES}, got {engine!r}", param="engine")
    if consistency not in CONSISTENCY:
        raise ConfigError(f"consistency must be one of {tuple(CONSISTENCY)}, got "
                          f"{consistency!r}", param="consistency")
    if program.undirected:
        graph = graph.undirected()
    per_vertex = program.setup(graph)
    initial = program.initial(graph)
    colours = colour(graph, consistency, engine)
    order = None
    if engine == "dynamic":
        order = interleave(graph, colours)
        graph = graph.relabel(order)
        per_vertex = {k: v[order] for k, v in per_vertex.items()}
        initial = initial[order]
        colours = colours[order]
    unit = bool(np.all(graph.weight == 1.0))
    return Prepared(graph, VertexEngine(program, tol, graph.num_vertices), engine, colours,
                    per_vertex, initial, unit,
                    Part.of(graph, 0, graph.num_vertices, per_vertex, unit), order)


INTERLEAVE_BLOCKS = 64  # blocks per colour; any shard count up to this gets every colour


def interleave(graph: Graph, colours: np.ndarray) -> np.ndarray:
    """A renumbering that spreads every colour evenly along the vertex ids: each colour's
    vertices (in the input's order) are cut into INTERLEAVE_BLOCKS blocks of equal work,
    and the new numbering takes block 0 of every colour, then block 1 of every colour, and
    so on. A dynamic round updates one colour, and the input's own numbering often keeps
    colours apart (the two sides of a bipartite graph), which would hand one shard all of a
    round's work; within a block the input's order (and its locality) is kept. It does not
    depend on the worker count, so neither do the results."""
    work = vertex_work(graph)
    blocks: list[list[np.ndarray]] = [[] for _ in range(INTERLEAVE_BLOCKS)]
    for c in range(int(colours.max()) + 1):
        members = np.flatnonzero(colours == c)
        for b, chunk in enumerate(balanced_chunks(work[members], INTERLEAVE_BLOCKS)):
            blocks[b].append(members[chunk])
    return np.concatenate([part for block in blocks for part in block])


VERTEX_COST = 4  # a vertex's own work (apply, signal) in edges' worth, for balancing


def make_shards(prepared: Prepared, parts: int) -> list[Shard]:
    """Vertex ranges of about equal work (in-edges plus VERTEX_COST per vertex), each with
    its in-edges, its edges by source (for the dynamic engine's scatter) and its colour
    groups; one replica of the values for all."""
    ranges = balanced_chunks(vertex_work(prepared.graph), parts)
    replica = Replica(prepared.initial.copy(), len(ranges))
    return [make_shard(prepared, replica, index, int(r[0]), int(r[-1]) + 1)
            for index, r in enumerate(ranges)]


def vertex_work(graph: Graph) -> np.ndarray:
    return np.diff(graph.indptr) + VERTEX_COST


def make_shard(prepared: Prepared, replica: Replica, index: int, lo: int, hi: int) -> Shard:
    """Vertices ``lo:hi`` as the shard of worker ``index``."""
    graph = prepared.graph
    n = graph.num_vertices
    part = Part.of(graph, lo, hi, prepared.per_vertex, prepared.unit)
    if prepared.kind == "dynamic":  # the part's edges by source: a CSC of its rows
        weight = graph.weight[graph.indptr[lo]:graph.indptr[hi]]
        by_source = sp.csr_matrix((weight, part.src, part.indptr), shape=(hi - lo, n)).tocsc()
        out = (by_source.indptr.astype(np.int64), by_source.indices.astype(np.int64),
               None if prepared.unit else by_source.data)
    else:
        out = (np.zeros(n + 1, dtype=np.int64), np.zeros(0, dtype=np.int64), None)
    own = prepared.colours[lo:hi]
    by_colour = np.argsort(own, kind="stable")
    by_colour_ptr = np.zeros(prepared.num_colours + 1, dtype=np.int64)
    np.cumsum(np.bincount(own, minlength=prepared.num_colours), out=by_colour_ptr[1:])
    return Shard(part, replica, own, by_colour_ptr, by_colour, *out, index=index)


def recut(prepared: Prepared, shards: list[Shard], seconds: np.ndarray) -> None:
    """Move the sync engine's shard boundaries so that each worker's measured time evens
    out: each vertex's work (in-edges plus VERTEX_COST) is weighted by its shard's measured
    seconds per unit of work. An edge costs more in some parts of a graph than in others
    (on NYT's documents-words graph, an edge into a word ~1.2x an edge into a document),
    and a superstep waits for the slowest worker. The shards are rebuilt in place (the
    driver's workers hold these objects); values and results do not depend on the cut."""
    if not np.all(np.asarray(seconds) > 0):  # a shard not timed (a one-superstep round)
        return
    work = vertex_work(prepared.graph).astype(np.float64)
    weights = np.empty_like(work)
    for shard, spent in zip(shards, seconds, strict=True):
        lo, hi = shard.part.lo, shard.part.hi
        weights[lo:hi] = work[lo:hi] * (spent / max(work[lo:hi].sum(), 1.0))
    ranges = balanced_chunks(weights, len(shards))
    if len(ranges) != len(shards):
        return
    for shard, r in zip(shards, ranges, strict=True):
        vars(shard).update(vars(make_shard(prepared, shard.replica, shard.index,
                                           int(r[0]), int(r[-1]) + 1)))


PROBE_EDGES = 1 << 17  # edges a sweep's cost is timed on


def sweep_seconds(prepared: Prepared) -> float:
    """One worker's seconds for a sweep over every vertex, timed on the first vertices
    (about PROBE_EDGES edges) and scaled by edges and vertices."""
    graph = prepared.graph
    size = max(1, min(int(np.searchsorted(graph.indptr, PROBE_EDGES)), graph.num_vertices))
    part = Part.of(graph, 0, size, prepared.per_vertex, prepared.unit)
    local = np.arange(size)
    program = prepared.engine.program
    values = prepared.initial

    def sweep() -> None:
        old = values[:size]
        new = program.apply(part, old, local, program.gather(part, values, local))
        program.scatter(part, local, old, new)
        program.change(part, local, old, new)

    seconds = timed(sweep)
    work = int(graph.indptr[size]) + VERTEX_COST * size
    return seconds * (graph.num_edges + VERTEX_COST * graph.num_vertices) / max(work, 1)


SUPERSTEPS_PER_ROUND = 16  # embedded sync engine: supersteps per scheduler hand-off


def run_prepared(prepared: Prepared, *, workers: int = 1, max_rounds: int = 100_000,
                 trace: bool = False, seed: int = 0,
                 driver_options: dict[str, Any] | None = None) -> EngineResult:
    """Run the prepared program to convergence (or ``max_rounds``) on ``workers`` workers
    of the scheduler, one shard each."""
    shards = make_shards(prepared, workers)
    shared = (driver_options or {}).get("runtime", "embedded") == "embedded"
    schedule = Rounds(prepared.kind, prepared.num_colours,
                      SUPERSTEPS_PER_ROUND if shared else 1, max_rounds)
    balance = ((prepared, shards) if shared and prepared.kind == "sync" and len(shards) > 1
               else None)
    app = GraphRun(prepared.engine, schedule, shards[0].replica, trace, balance)
    start = time.perf_counter()
    # one BLAS thread per worker: BLAS's own threads would spin against the workers
    with threadpool_limits(limits=1, user_api="blas"), Driver(
            app, shards, workers=len(shards), pipeline=False, seed=seed,
            **(driver_options or {})) as drv:
        drv.set_schedule(schedule, prepared.graph.num_vertices)
        drv.run(max_rounds, until=app.done)
        pieces = drv.map(prepared.engine.values)
        busy, wait = drv.stats.busy_s.tolist(), drv.stats.wait_s.tolist()
        startup = drv.startup_s
    values = np.concatenate([v for _, v in sorted(pieces, key=lambda p: p[0])])
    values = prepared.original(prepared.engine.program.result(prepared.whole, values))
    trace = None if app.trace is None else [
        r if prepared.order is None else prepared.order[r] for r in app.trace]
    return EngineResult(values, app.converged, schedule.done, app.updates, prepared.num_colours,
                        time.perf_counter() - start, startup, trace, busy, wait)


def run_engine(graph: Graph, program: VertexProgram, *, engine: str = "dynamic",
               consistency: str = "edge", tol: float = 1e-9, max_rounds: int = 100_000,
               workers: int = 1, trace: bool = False, seed: int = 0,
               driver_options: dict[str, Any] | None = None) -> EngineResult:
    """Run ``program`` on ``graph`` to convergence (or ``max_rounds``) on the scheduler."""
    prepared = prepare(graph, program, engine=engine, consistency=consistency, tol=tol)
    return run_prepared(prepared, workers=workers, max_rounds=max_rounds, trace=trace,
                        seed=seed, driver_options=driver_options)
