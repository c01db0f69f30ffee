"""Vertex programs next to networkx, scipy and igraph, side by side in one run.

Graphs (all real, all here without a download, every edge in both directions):
MovieLens 100K users-items (2,625 vertices, 200K edges), Reuters documents-words (4,653,
120K), the clothing reviews documents-words (35,951, 1.09M) and NYT documents-words
(11,459, 1.93M).

PageRank (damping 0.85), to the same accuracy: every answer's L1 distance to a reference
(scipy power iteration run to 1e-15) must be below 1e-8. Systems:
- stalesync ``PageRank()`` at its defaults (``engine="sync"``, ``tol=1e-9``,
  ``workers="auto"``), the same on 1 and 2 workers, and ``engine="dynamic"`` (edge
  consistency) on 1 and 2 workers;
- networkx ``nx.pagerank`` as a user calls it (its scipy power iteration plus turning the
  networkx graph into a scipy matrix), and its iteration alone (``networkx iteration``:
  the same code from the scipy matrix on);
- igraph ``Graph.pagerank`` (PRPACK), when installed.
Each fit is timed whole (``fit`` as a user calls it), systems in turn, median of
``--repeats``. Also reported: vertex updates of the dynamic and sync engines (GraphLab's
claim: dynamic scheduling does far fewer), and connected components against scipy's
``csgraph.connected_components``; and ALS (GraphLab's collaborative filtering, as a
vertex program on the users-items graph) on MovieLens 100K (80/20 split) next to
stalesync's own SGD matrix factorisation and surprise's SVD, each at its defaults: test
RMSE and wall time. Writes bench/results/graph.json and .png.

    python bench/graph.py [--repeats 5] [--only nyt clothing]
    python bench/graph.py --render    # the table of docs/graph.md from the result file
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import figure_path, write_json  # noqa: E402

from stalesync.apps.graph import ConnectedComponents, PageRank  # noqa: E402
from stalesync.apps.graph.datasets import doc_word_graph, ratings_graph  # noqa: E402

DAMPING = 0.85
NX_L1 = 1e-10  # networkx stops when an iteration moves the scores by < N x tol in L1
GRAPHS = {
    "movielens-100k": lambda: ratings_graph("movielens-100k"),
    "reuters": lambda: doc_word_graph("reuters"),
    "clothing": lambda: doc_word_graph("clothing"),
    "nyt": lambda: doc_word_graph("nyt"),
}


def reference(A: sp.csr_matrix) -> np.ndarray:
    """PageRank by scipy power iteration to 1e-15 (dangling mass spread uniformly)."""
    n = A.shape[0]
    out = np.asarray(A.sum(axis=1)).ravel()
    inv = np.where(out > 0, 1.0 / np.where(out > 0, out, 1.0), 0.0)
    M = (sp.diags(inv) @ A).T.tocsr()
    x = np.full(n, 1.0 / n)
    for _ in range(100_000):
        last = x
        x = DAMPING * (M @ last) + (DAMPING * last[out == 0].sum() + 1 - DAMPING) / n
        if np.abs(x - last).sum() < 1e-15:
            break
    return x


def timed(fn) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def systems(graph, A: sp.csr_matrix) -> dict[str, Any]:
    """name -> () -> (scores, extra info)."""
    import networkx as nx

    G = nx.from_scipy_sparse_array(A, create_using=nx.DiGraph)
    n = A.shape[0]

    def ours(engine: str, workers: int):
        def fit():
            model = PageRank(DAMPING, engine=engine, workers=workers).fit(graph)
            return model.scores_, {"updates": model.n_updates_, "rounds": model.n_rounds_,
                                   "colours": model.run_record_["final"]["colours"]}
        return fit

    def networkx():
        ranks = nx.pagerank(G, alpha=DAMPING, tol=NX_L1 / n, max_iter=100_000)
        return np.array([ranks[i] for i in range(n)]), {}

    def defaults():
        model = PageRank(DAMPING).fit(graph)
        return model.scores_, {"updates": model.n_updates_, "rounds": model.n_rounds_,
                               "workers": model.run_record_["workers"]}

    out = {"stalesync defaults": defaults}
    out.update({f"stalesync {e} x{w}": ours(e, w) for e in ("sync", "dynamic") for w in (1, 2)})
    out["networkx"] = networkx
    out["networkx iteration"] = lambda: (networkx_iteration(A, NX_L1 / n), {})
    try:
        import igraph

        coo = A.tocoo()
        ig = igraph.Graph(n=n, edges=np.c_[coo.row, coo.col].tolist(), directed=True)
        ig.es["weight"] = coo.data.tolist()
        out["igraph"] = lambda: (np.array(ig.pagerank(damping=DAMPING, weights="weight")), {})
    except ImportError:
        pass
    return out


def networkx_iteration(A: sp.csr_matrix, tol: float):
    """networkx's ``_pagerank_scipy`` from its scipy matrix on: the same normalisation,
    update and L1 stopping rule, without turning a networkx graph into the matrix."""
    n = A.shape[0]
    S = np.asarray(A.sum(axis=1)).ravel()
    S[S != 0] = 1.0 / S[S != 0]
    M = (sp.dia_array((S, 0), shape=A.shape).tocsr() @ A).tocsr()
    x = np.repeat(1.0 / n, n)
    p = np.repeat(1.0 / n, n)
    dangling = np.where(S == 0)[0]
    for _ in range(100_000):
        last = x
        x = DAMPING * (x @ M + sum(x[dangling]) * p) + (1 - DAMPING) * p
        if np.absolute(x - last).sum() < n * tol:
            return x
    raise RuntimeError("no convergence")


def components(graph, A: sp.csr_matrix, repeats: int) -> dict[str, Any]:
    from scipy.sparse.csgraph import connected_components

    ours, theirs = [], []
    for _ in range(repeats):
        model, t = timed(lambda: ConnectedComponents().fit(graph))  # workers="auto"
        ours.append(t)
        (count, _), t = timed(lambda: connected_components(A, directed=True,
                                                           connection="weak"))
        theirs.append(t)
    assert model.n_components_ == count
    return {"components": int(count), "stalesync_s": statistics.median(ours),
            "scipy_s": statistics.median(theirs),
            "updates_per_vertex": model.n_updates_ / graph.num_vertices}


def als_rows(repeats: int) -> dict[str, Any]:
    """ALS against SGD matrix factorisation and surprise's SVD on MovieLens 100K."""
    from stalesync.apps.graph import ALS
    from stalesync.apps.mf import MatrixFactorization
    from stalesync.data.ratings import load_ratings

    train, test = load_ratings("movielens-100k").split(0.2, seed=0)

    def ours(workers):
        def fit():
            model = ALS(workers=workers).fit(train)
            return model.rmse(test), model.run_record_["workers"]
        return fit

    def mf():
        model = MatrixFactorization().fit(train)
        return model.rmse(test), model.run_record_["workers"]

    fits = {"stalesync ALS defaults": ours("auto"), "stalesync ALS x1": ours(1),
            "stalesync ALS x2": ours(2), "stalesync MatrixFactorization (SGD)": mf}
    try:
        import surprise
    except ImportError:
        surprise = None
    if surprise is not None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "train.tsv"
            path.write_text("".join(f"{u}\t{i}\t{v}\n" for u, i, v in zip(
                train.users.tolist(), train.items.tolist(), train.values.tolist(),
                strict=True)))
            trainset = surprise.Dataset.load_from_file(
                str(path), surprise.Reader(line_format="user item rating", sep="\t",
                                           rating_scale=(1, 5))).build_full_trainset()

        def svd():  # surprise's defaults; ids as the strings its reader made of them
            algo = surprise.SVD(random_state=0).fit(trainset)
            pred = np.array([algo.predict(str(u), str(i)).est for u, i in zip(
                test.users.tolist(), test.items.tolist(), strict=True)])
            return float(np.sqrt(np.mean((pred - test.values) ** 2))), 1
        fits["surprise SVD"] = svd
    for fn in fits.values():
        fn()
    rows: dict[str, Any] = {k: {"runs": []} for k in fits}
    for _ in range(repeats):
        for key, fn in fits.items():
            (rmse, workers), t = timed(fn)
            rows[key]["runs"].append(t)
            rows[key].update(test_rmse=rmse, workers=workers)
    for row in rows.values():
        row["seconds"] = statistics.median(row["runs"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", nargs="+", choices=list(GRAPHS), default=list(GRAPHS))
    parser.add_argument("--render", action="store_true",
                        help="print docs/graph.md's table from bench/results/graph.json")
    args = parser.parse_args()
    if args.render:
        print(render())
        return
    warnings.simplefilter("ignore")  # explicit worker counts on small graphs warn
    results: dict[str, Any] = {}
    for name in args.only:
        graph = GRAPHS[name]()
        A = graph.adjacency()
        ref = reference(A)
        runs = systems(graph, A)
        for fn in runs.values():  # warm-up: compile, first-call costs
            fn()
        times: dict[str, list[float]] = {k: [] for k in runs}
        info: dict[str, dict] = {}
        for _ in range(args.repeats):
            for key, fn in runs.items():
                (scores, extra), t = timed(fn)
                times[key].append(t)
                info[key] = {**extra, "l1_error": float(np.abs(scores - ref).sum())}
        rows = {k: {"seconds": statistics.median(v), "runs": v, **info[k]}
                for k, v in times.items()}
        nx_iter = rows["networkx iteration"]["seconds"]
        default1 = rows["stalesync sync x1"]
        entry = {
            "vertices": graph.num_vertices, "edges": graph.num_edges, "rows": rows,
            "vs_networkx": rows["networkx"]["seconds"] / default1["seconds"],
            "vs_networkx_power_iteration": nx_iter / default1["seconds"],
            "two_vs_one": {e: rows[f"stalesync {e} x1"]["seconds"]
                           / rows[f"stalesync {e} x2"]["seconds"] for e in ("sync", "dynamic")},
            "updates_dynamic_vs_sync": (rows["stalesync dynamic x1"]["updates"]
                                        / rows["stalesync sync x1"]["updates"]),
            "components": components(graph, A, args.repeats),
        }
        if "igraph" in rows:
            entry["vs_igraph"] = rows["igraph"]["seconds"] / default1["seconds"]
        results[name] = entry
        print(f"{name}: {graph.num_vertices} vertices, {graph.num_edges} edges", flush=True)
        for key, row in rows.items():
            print(f"  {key:22s} {row['seconds']:.3f} s  L1 error {row['l1_error']:.1e}"
                  + (f"  {row['updates']} vertex updates" if "updates" in row else "")
                  + (f"  ({row['workers']} workers)" if "workers" in row else ""),
                  flush=True)
        print(f"  sync x1 (the default) is "
              f"{entry['vs_networkx_power_iteration']:.2f}x its speed, "
              f"{entry['vs_networkx']:.2f}x nx.pagerank's"
              + (f", {entry['vs_igraph']:.2f}x igraph's" if "vs_igraph" in entry else ""))
        print(f"  2 workers vs 1: sync {entry['two_vs_one']['sync']:.2f}x, dynamic "
              f"{entry['two_vs_one']['dynamic']:.2f}x; dynamic does "
              f"{entry['updates_dynamic_vs_sync']:.2f} of sync's vertex updates")
        c = entry["components"]
        print(f"  components: {c['components']}, stalesync {c['stalesync_s']:.3f} s vs scipy "
              f"{c['scipy_s']:.3f} s", flush=True)
    als = als_rows(args.repeats)
    print("ALS on MovieLens 100K (80/20):")
    for key, row in als.items():
        print(f"  {key:36s} {row['seconds']:.3f} s  test RMSE {row['test_rmse']:.4f}"
              f"  ({row['workers']} workers)", flush=True)
    errors = [row["l1_error"] for e in results.values() for row in e["rows"].values()]
    summary = {
        "max_l1_error": max(errors),
        "worst_vs_networkx_power_iteration": min(
            e["vs_networkx_power_iteration"] for e in results.values()),
        "worst_defaults_vs_best_of_1_and_2": max(
            e["rows"]["stalesync defaults"]["seconds"]
            / min(e["rows"]["stalesync sync x1"]["seconds"],
                  e["rows"]["stalesync sync x2"]["seconds"]) for e in results.values()),
        "two_vs_one_on_1m_edges": {n: e["two_vs_one"] for n, e in results.items()
                                   if e["edges"] >= 1_000_000},
    }
    print(f"summary: {summary}")
    path = write_json("graph", {"repeats": args.repeats, "damping": DAMPING,
                                "results": results, "als": als, "summary": summary})
    plot(results)
    print(f"wrote {path} and {figure_path('graph')}")


def render() -> str:
    """The PageRank table of docs/graph.md, from the committed result file."""
    import json

    from _common import RESULTS

    d = json.loads((RESULTS / "graph.json").read_text())
    keys = list(next(iter(d["results"].values()))["rows"])
    lines = ["| graph | vertices | edges | " + " | ".join(keys) + " |",
             "|---|---|---|" + "---|" * len(keys)]
    for name, e in d["results"].items():
        cells = [f"{e['rows'][k]['seconds']:.3f} s" for k in keys]
        lines.append(f"| {name} | {e['vertices']:,} | {e['edges']:,} | " + " | ".join(cells)
                     + " |")
    lines += ["", "| graph | 1 worker vs networkx's iteration | vs nx.pagerank | vs igraph | "
              "2 workers vs 1 (sync / dynamic) | dynamic's vertex updates / sync's | "
              "components: stalesync / scipy |", "|---|---|---|---|---|---|---|"]
    for name, e in d["results"].items():
        c = e["components"]
        lines.append(
            f"| {name} | {e['vs_networkx_power_iteration']:.2f}x | {e['vs_networkx']:.1f}x | "
            f"{e.get('vs_igraph', float('nan')):.2f}x | {e['two_vs_one']['sync']:.2f}x / "
            f"{e['two_vs_one']['dynamic']:.2f}x | {e['updates_dynamic_vs_sync']:.2f} | "
            f"{c['stalesync_s'] * 1e3:.0f} / {c['scipy_s'] * 1e3:.0f} ms |")
    if "als" in d:
        lines += ["", "| MovieLens 100K, 80/20 | seconds | test RMSE | workers |",
                  "|---|---|---|---|"]
        lines += [f"| {key} | {row['seconds']:.3f} | {row['test_rmse']:.4f} | "
                  f"{row['workers']} |" for key, row in d["als"].items()]
    s = d["summary"]
    lines += ["", f"Every answer within {s['max_l1_error']:.1e} of the reference (L1); "
              f"`workers=\"auto\"` at most {s['worst_defaults_vs_best_of_1_and_2']:.2f}x the "
              f"time of the faster of 1 and 2 workers. `python bench/graph.py` "
              f"(medians of {d['repeats']}); speeds above 1 are faster than the peer."]
    return "\n".join(lines)


def plot(results: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    keys = list(next(iter(results.values()))["rows"])
    fig, ax = plt.subplots(figsize=(10, 4))
    width = 0.8 / len(keys)
    for i, key in enumerate(keys):
        ax.bar(np.arange(len(names)) + i * width,
               [results[n]["rows"][key]["seconds"] for n in names], width, label=key)
    ax.set_yscale("log")
    ax.set_xticks(np.arange(len(names)) + 0.4,
                  [f"{n}\n{results[n]['edges'] / 1e6:.2f}M edges" for n in names], fontsize=8)
    ax.set_ylabel("seconds per PageRank (log)")
    ax.set_title("PageRank to L1 error < 1e-8, whole fit")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(figure_path("graph"), dpi=100)


if __name__ == "__main__":
    main()
