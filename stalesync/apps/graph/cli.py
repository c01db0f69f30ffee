"""``stalesync graph``: run a vertex program (PageRank, connected components, label
propagation) on an edge-list file or a built-in graph, GraphLab-style."""

from __future__ import annotations

# Imports inside functions: a command loads its estimator, kernels and readers only when
# it runs, so that `stalesync --help` and the other commands do not pay for them.
import argparse
from typing import Any

import numpy as np

from ...errors import ConfigError, DataFormatError
from ..command import AppCommand, Flags

PROGRAM_NAMES = ("pagerank", "components", "labels", "als")


class GraphCommand(AppCommand):
    name = "graph"
    help = "vertex programs (PageRank, components, label propagation, ALS) on a graph"
    description = ("Run a GraphLab-style vertex program on the model-parallel scheduler: "
                   "PageRank (personalised with --personalize), weakly connected components, "
                   "label propagation from --labels, or ALS on a ratings file (users and "
                   "items as vertices). --engine dynamic updates only the "
                   "vertices whose inputs moved, and --consistency says which of them may "
                   "be updated at once.")
    test_flags = False
    no_test_why = "a vertex program has no held-out data"
    epochs_default = 100_000
    epochs_help = "at most this many rounds (als: sweeps, default 10)"
    data_help = ("an edge-list file ('src dst [weight]' per line) or a built-in graph: "
                 "nyt, reuters, clothing (documents-words), movielens-100k (users-items); "
                 "als: a ratings file or movielens-100k")

    def add_data_arguments(self, flags: Flags) -> None:
        flags.add("data", "--data", required=True, help=self.data_help)
        flags.add("data", "--format", default="auto", choices=["auto", "edges"],
                  help="auto: a built-in name, else an edge list; edges: always a file")
        flags.add("data", "--labels", default=None, metavar="FILE",
                  help="labels: 'vertex class' per line for the vertices whose class is known")

    def add_model_arguments(self, flags: Flags) -> None:
        flags.add("model", "--program", default="pagerank", choices=PROGRAM_NAMES,
                  help="the vertex program")
        flags.add("model", "--damping", type=float, default=0.85, help="pagerank: damping")
        flags.add("model", "--personalize", default=None, metavar="V,V,...",
                  help="pagerank: teleport only to these vertices (personalised PageRank)")
        flags.add("model", "--tol", type=float, default=None,
                  help="stop when the values move by at most this in total, L1 "
                       "(pagerank: 1e-9, labels: 1e-3)")
        flags.add("model", "--rank", type=int, default=10, help="als: factors per vertex")
        flags.add("model", "--reg", type=float, default=0.1,
                  help="als: regularisation per rating (weighted-lambda)")
        flags.add("model", "--top", type=int, default=10,
                  help="pagerank: print this many top vertices")
        flags.add("parallelism", "--engine", default=None, choices=["sync", "dynamic"],
                  help="sync (the default; als: dynamic): every vertex every superstep; "
                       "dynamic: reschedule only vertices whose inputs moved (fewer updates, "
                       "each dearer), one colour per round")
        flags.add("parallelism", "--consistency", default="edge",
                  choices=["vertex", "edge", "full"],
                  help="dynamic engine: vertices that may not be updated at once (edge: "
                       "neighbours; full: vertices with a common neighbour)")
        flags.add("output", "--out", default=None, metavar="FILE",
                  help="write each vertex's result as CSV (vertex,value)")

    def check_args(self, args: argparse.Namespace) -> None:
        from ...persist.files import check_output_path

        if args.program == "labels" and args.labels is None:
            raise ConfigError("--program labels needs --labels FILE")
        if args.program != "labels" and args.labels is not None:
            raise ConfigError("--labels is for --program labels")
        if args.program != "pagerank" and args.personalize is not None:
            raise ConfigError("--personalize is for --program pagerank")
        if args.snapshot_every is not None or args.resume is not None:
            raise ConfigError("graph programs take no snapshots (a run is seconds of "
                              "rounds); run it again instead")
        if args.program == "als" and args.out:
            raise ConfigError("--out writes one value per vertex; als has factors: use "
                              "--save-model")
        if args.program != "als" and (args.rank != 10 or args.reg != 0.1):
            raise ConfigError("--rank and --reg are for --program als")
        if args.top < 0:
            raise ConfigError(f"--top must be >= 0, got {args.top}")
        if args.out:
            check_output_path(args.out, "--out")

    def make_estimator(self, args: argparse.Namespace) -> Any:
        from .estimators import ALS, ConnectedComponents, LabelPropagation, PageRank

        if args.program == "als":
            if args.tol is not None:
                raise ConfigError("--tol does not apply to als (it runs --epochs sweeps)")
            return ALS(args.rank, reg=args.reg, engine=args.engine or "dynamic",
                       consistency=args.consistency, workers=args.workers, seed=args.seed,
                       epochs=10 if args.epochs == self.epochs_default else args.epochs)
        common = {"engine": args.engine or "sync", "consistency": args.consistency,
                  "max_rounds": args.epochs, "workers": args.workers, "seed": args.seed}
        if args.program == "pagerank":
            return PageRank(args.damping, tol=1e-9 if args.tol is None else args.tol,
                            **common)
        if args.program == "components":
            if args.tol is not None:
                raise ConfigError("--tol does not apply to components (exact)")
            return ConnectedComponents(**common)
        return LabelPropagation(tol=1e-3 if args.tol is None else args.tol, **common)

    def load(self, args: argparse.Namespace) -> tuple[Any, Any]:
        from .datasets import load_graph

        if args.program == "als":
            from ...data.ratings import load_ratings

            return (load_ratings(args.data), None), None
        graph = load_graph(args.data, files_only=args.format == "edges")
        extra = None
        if args.program == "labels":
            extra = read_labels(args.labels, graph)
        elif args.personalize is not None:
            extra = personalization(args.personalize, graph)
        return (graph, extra), None

    def fit(self, estimator: Any, train: Any, test: Any, run: Any,
            args: argparse.Namespace) -> None:
        graph, extra = train
        if args.program == "als":
            estimator.fit(graph, run=run)
            return
        if args.program == "labels":
            estimator.fit(graph, extra, run=run)
            return
        if extra is not None:
            estimator.set_params(personalization=extra)
        estimator.fit(graph, run=run)

    def summarize(self, model: Any, train: Any, test: Any,
                  args: argparse.Namespace) -> tuple[list[str], dict[str, Any]]:
        graph, _ = train
        f = model.run_record_["final"]
        if args.program == "als":
            return [f"graph als: {graph.n_users} users, {graph.n_items} items, {len(graph)} "
                    f"ratings; rank {model.rank}, {f['rounds']} rounds ({model.engine}): "
                    f"train RMSE {f['train_rmse']:.4f}, "
                    f"{model.run_record_['wall_time_s']:.2f} s"], {"data": args.data,
                                                                  "program": "als"}
        lines = [f"graph {args.program}: {graph.num_vertices} vertices, {graph.num_edges} "
                 f"edges; {model.engine} engine, {f['colours']} colour(s): {f['rounds']} "
                 f"rounds, {f['vertex_updates']} vertex updates "
                 f"({f['updates_per_vertex']:.1f} per vertex), converged={f['converged']}, "
                 f"{model.run_record_['wall_time_s']:.2f} s"]
        names = graph.names if graph.names is not None else np.arange(graph.num_vertices)
        if args.program == "pagerank":
            top = np.argsort(-model.scores_, kind="stable")[:args.top]
            lines += [f"  {names[v]}\t{model.scores_[v]:.6g}" for v in top]
            values = model.scores_
        elif args.program == "components":
            sizes = np.bincount(model.labels_)
            lines.append(f"  {model.n_components_} components, the largest of "
                         f"{int(sizes.max())} vertices")
            values = model.labels_
        else:
            reached = int((model.labels_ >= 0).sum())
            lines.append(f"  {reached} of {graph.num_vertices} vertices labelled "
                         f"({len(model.classes_)} classes)")
            values = model.labels_
        if args.out:
            write_values(args.out, names, values)
            lines.append(f"wrote {args.out}")
        return lines, {"data": args.data, "program": args.program}


def _vertex_ids(tokens: list[str], graph: Any, where: str) -> np.ndarray:
    """Vertex ids of the names in ``tokens`` (the file's names, or integer ids)."""
    if graph.names is not None:
        index = {str(name): i for i, name in enumerate(graph.names)}
        missing = [t for t in tokens if t not in index]
        if missing:
            raise DataFormatError(f"{where}: no vertex named {missing[0]!r} in the graph")
        return np.array([index[t] for t in tokens], dtype=np.int64)
    try:
        ids = np.array([int(t) for t in tokens], dtype=np.int64)
    except ValueError as exc:
        raise DataFormatError(f"{where}: vertex ids must be integers ({exc})") from None
    bad = ids[(ids < 0) | (ids >= graph.num_vertices)]
    if bad.size:
        raise DataFormatError(f"{where}: vertex {bad[0]} is not in the graph "
                              f"(0..{graph.num_vertices - 1})")
    return ids


def personalization(text: str, graph: Any) -> np.ndarray:
    ids = _vertex_ids([t for t in text.split(",") if t.strip()], graph, "--personalize")
    if ids.size == 0:
        raise ConfigError("--personalize names no vertex")
    p = np.zeros(graph.num_vertices)
    p[ids] = 1.0
    return p


def read_labels(path: str, graph: Any) -> np.ndarray:
    """``vertex class`` per line (integer classes); -1 for every vertex not listed."""
    from pathlib import Path

    file = Path(path)
    if not file.is_file():
        raise DataFormatError(f"{path}: no such file")
    vertices, classes = [], []
    for number, line in enumerate(file.read_text(errors="replace").splitlines(), 1):
        fields = line.split("#", 1)[0].replace(",", " ").split()
        if not fields:
            continue
        if len(fields) != 2:
            raise DataFormatError(f"{path}:{number}: expected 'vertex class'")
        try:
            classes.append(int(fields[1]))
        except ValueError:
            raise DataFormatError(f"{path}:{number}: class {fields[1]!r} is not an "
                                  "integer") from None
        if classes[-1] < 0:
            raise DataFormatError(f"{path}:{number}: classes are integers >= 0")
        vertices.append(fields[0])
    if not vertices:
        raise DataFormatError(f"{path}: no labels")
    y = np.full(graph.num_vertices, -1, dtype=np.int64)
    y[_vertex_ids(vertices, graph, path)] = classes
    return y


def write_values(path: str, names: np.ndarray, values: np.ndarray) -> None:
    from ...persist.files import atomic_write_bytes

    lines = [f"{name},{value!r}" if isinstance(value, float) else f"{name},{value}"
             for name, value in zip(names.tolist(), values.tolist(), strict=True)]
    atomic_write_bytes(path, ("vertex,value\n" + "\n".join(lines) + "\n").encode())


COMMAND = GraphCommand()
