"""The README's "Measured" table, rendered from the committed result files.

Every row names the result file (``bench/results/NAME.json``, written by ``bench/NAME.py``)
its figure comes from and formats that figure from it; a row whose file is missing is left
out, so the README shows no figure without a committed run behind it.
``tests/test_readme_figures.py`` fails when the README's table differs from this output.

    python bench/readme_figures.py            # print the table
    python bench/readme_figures.py --write    # replace the table in README.md
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
README = ROOT / "README.md"
BEGIN = "<!-- measured: rendered by bench/readme_figures.py from bench/results -->"
END = "<!-- /measured -->"


@dataclass(frozen=True)
class Row:
    what: str
    result: str  # bench/results/<result>.json
    figure: Callable[[dict[str, Any]], str]
    doc: str  # docs/<doc>.md


def _x(value: float) -> str:
    return f"{value:.2f}x"


def scaling_large(d: dict[str, Any]) -> str:
    speed = d["summary"]["large_2w_speedup"]
    reached = d["summary"]["large_2w_reached"]
    return ", ".join(f"{app} {_x(v)}" + ("" if reached[app] else " (quality not reached)")
                     for app, v in speed.items())


def scaling_small(d: dict[str, Any]) -> str:
    ratio = d["summary"]["small_auto_vs_best"]
    reached = d["summary"].get("small_auto_reached", {})
    return ", ".join(f"{app} {_x(v)}" + ("" if reached.get(app, True)
                                         else " (quality not reached)")
                     for app, v in ratio.items())


def clock_cost(d: dict[str, Any]) -> str:
    cost: dict[str, dict[int, float]] = {}
    for r in d["clock_cost"]:
        cost.setdefault(r["consistency"], {})[r["workers"]] = r["us_per_clock_per_worker"]
    return ", ".join(f"{c.upper() if c != 'async' else 'Async'} {v[1]:.0f} / {v[2]:.0f}"
                     for c, v in cost.items())


def lda_peers(d: dict[str, Any]) -> str:
    parts = []
    for K in (50, 100, 1000):
        cells = [d["summary"].get(f"{corpus}/K={K}/x{w}", {}).get("per_core_speedup")
                 for corpus in ("nyt", "nyt-long") for w in (1, 2)]
        cells = [c for c in cells if c is not None]
        if cells:
            parts.append(f"K={K}: {_x(min(cells))}-{_x(max(cells))}")
    return "; ".join(parts)


def ray_readme_job(d: dict[str, Any]) -> str:
    job = d["readme_job"]
    ray_ = job["median"]["ray"]
    return (f"{_x(job['steady_ratio'])} at steady state, {_x(job['whole_job_ratio'])} over the "
            f"whole job (Ray's start and stop included); first clock {ray_['first_clock_s']:.1f}"
            " s after the job starts")


def ray_problems(d: dict[str, Any]) -> str:
    rows = d["problems"]["rows"]
    cold = max(rows, key=lambda r: r["cold_ratio"])
    warm = [r for r in rows if r["size"] == "large"]
    worst = max(warm, key=lambda r: r["warm_ratio"])
    large = ", ".join(f"{r['app']} {_x(r['warm_ratio'])}" for r in warm)
    return (f"first fit / (embedded + Ray's start): worst {_x(cold['cold_ratio'])} "
            f"({cold['app']} {cold['size']}); warm session, large problems: {large} "
            f"(worst {worst['app']})")


def scheduler_rounds(d: dict[str, Any]) -> str:
    hand = d["table"]["hand-off only"]
    return (f"{hand['embedded']['ms_per_round']:.2f} ms embedded, "
            f"{hand['ray']['ms_per_round']:.2f} ms on Ray")


def runtime_overhead(d: dict[str, Any]) -> str:
    res = d["results"]
    return ", ".join(
        f"{100 * r['ray_overhead_per_clock']:+.0f}% "
        f"({r['median']['embedded']['rows_bytes_per_clock'] / 1e6:.1f} MB/clock)"
        for r in res.values())


def linear_peers(d: dict[str, Any]) -> str:
    cells = [(name, r["rows"]["stalesync SGD"]) for name, r in d["results"].items()]
    speed = sorted(cells, key=lambda c: c[1]["speed_vs_SGDClassifier"])
    objective = [c[1]["objective_vs_optimum"] for c in cells]
    return (f"{_x(speed[0][1]['speed_vs_SGDClassifier'])} ({speed[0][0]}) to "
            f"{_x(speed[-1][1]['speed_vs_SGDClassifier'])} ({speed[-1][0]}); objective "
            f"{min(objective):.2f}-{max(objective):.2f}x the optimum")


def lasso_peers(d: dict[str, Any]) -> str:
    cells = sorted(((name, r["rows"]["stalesync auto"]["time_vs_sklearn"])
                    for name, r in d["results"].items()), key=lambda c: c[1])
    return (f"time {_x(cells[0][1])} ({cells[0][0]}) to {_x(cells[-1][1])} ({cells[-1][0]}) "
            "of scikit-learn's (below 1: faster)")


def batch_lbfgs(d: dict[str, Any]) -> str:
    large = {k: v for k, v in d["results"].items() if k.startswith("logistic") and "x" in k}
    two = ", ".join(f"{k.split()[1]} {_x(v['two_vs_one_worker'])}" for k, v in large.items())
    one = [v["ours_1_worker_vs_scikit_learn"] for k, v in d["results"].items()
           if k.startswith("logistic")]
    return (f"2 workers vs 1 on >= 1M rows: {two}; 1 worker vs scikit-learn "
            f"{_x(min(one))}-{_x(max(one))} (above 1: faster)")


def batch_linalg(d: dict[str, Any]) -> str:
    pca = d["results"]["pca fashion-mnist x4"]
    ridge = max(r["ours, 1 workers"]["relative_coef_difference"]
                for k, r in d["results"].items() if k.startswith("ridge"))
    return (f"PCA 240,000 x 784: 2 workers {_x(pca['two_vs_one_worker'])} one, auto "
            f"{_x(pca['ours_auto_vs_scikit_learn'])} scikit-learn's speed; ridge = "
            f"scikit-learn's to {ridge:.0e}")


def federated(d: dict[str, Any]) -> str:
    cells = []
    for key, r in d["results"].items():
        if "rows" not in r:
            continue
        rows, target = r["rows"], r["target"]
        small = rows.get("FedAvg E=5 B=10")
        tens = (f", batches of 10: {small['rounds_to_target']}" if small else "")
        cells.append(f"{key} to {target:.0%}: FedAvg E=5 {rows['FedAvg E=5']['rounds_to_target']}"
                     f" rounds{tens} (Flower {rows['Flower FedAvg E=5']['rounds_to_target']}), "
                     f"FedSGD {rows['FedSGD']['rounds_to_target'] or 'not reached'}")
    secure = d["results"]["secure aggregation (mlp, iid)"]
    same = "the same model bit for bit" if secure["secure_same_bits_as_fixed_point"] else \
        "a different model"
    return ("; ".join(cells) + f"; secure aggregation {_x(secure['secure_vs_float_time'])} "
            f"the float round's time ({_x(secure['secure_vs_fixed_point_time'])} fixed "
            f"point's), {same} as fixed point")


def graph(d: dict[str, Any]) -> str:
    r = d["results"]
    speed = ", ".join(f"{name} {_x(e['vs_networkx_power_iteration'])}" for name, e in r.items())
    two = ", ".join(f"{name} {_x(e['two_vs_one']['sync'])}" for name, e in r.items()
                    if e["edges"] >= 1_000_000)
    updates = max(e["updates_dynamic_vs_sync"] for e in r.values())
    return (f"1 worker vs networkx's scipy iteration: {speed}; 2 workers vs 1 on >= 1M "
            f"edges: {two}; dynamic engine: at most {_x(updates)} the vertex updates of "
            f"sync; L1 error <= {d['summary']['max_l1_error']:.0e}")


ROWS = [
    Row("every app at its defaults, large problem, 2 workers vs 1 (`bench/scaling.py`)",
        "scaling", scaling_large, "scaling"),
    Row("small problems: `workers=\"auto\"` time / the faster of 1 and 2 workers",
        "scaling", scaling_small, "scaling"),
    Row("a clock's fixed cost (read 10 rows + inc + clock), us per worker, 1 / 2 workers "
        "(`bench/core_overhead.py --clock-cost-only`)", "core_clock_cost", clock_cost,
        "scaling"),
    Row("LDA at the estimator's defaults, tokens/s per core vs tomotopy (NYT and NYT in "
        "870-token documents, 1 and 2 workers)", "lda_peers", lda_peers, "lda"),
    Row("linear models at defaults, examples/s vs SGDClassifier (`bench/linear_peers.py`)",
        "linear_peers", linear_peers, "linear"),
    Row("Lasso at defaults, one worker, time to the same objective vs scikit-learn",
        "lasso_peers", lasso_peers, "scheduler"),
    Row("the README's LDA job on `--runtime ray` vs embedded (same 2 cores, one host "
        "process per node)", "ray_vs_embedded", ray_readme_job, "ray"),
    Row("every `bench/scaling.py` problem at 2 workers on Ray vs embedded",
        "ray_vs_embedded", ray_problems, "ray"),
    Row("Ray vs embedded per clock, MF SGD with ~100 ms of compute per clock",
        "runtime_overhead", runtime_overhead, "ray"),
    Row("a scheduler round's bare hand-off, 2 workers", "scheduler_rounds", scheduler_rounds,
        "scheduler"),
    Row("L-BFGS logistic regression through the tables at defaults vs scikit-learn "
        "(`bench/batch_methods.py`)", "batch_methods", batch_lbfgs, "linear"),
    Row("Gram products: PCA and ridge by the normal equations vs scikit-learn",
        "batch_methods", batch_linalg, "linear"),
    Row("FedAvg on Fashion-MNIST, 100 clients, rounds to the target accuracy "
        "(`bench/federated.py`)", "federated", federated, "federated"),
    Row("PageRank at defaults on real graphs (`bench/graph.py`: MovieLens, Reuters, "
        "clothing, NYT)", "graph", graph, "graph"),
]


def render(results: Path = RESULTS) -> str:
    lines = [BEGIN, "| what | figure | result file | where |", "|---|---|---|---|"]
    for row in ROWS:
        path = results / f"{row.result}.json"
        if not path.exists():
            continue
        try:
            figure = row.figure(json.loads(path.read_text()))
        except (KeyError, ValueError) as exc:  # a result file of another shape
            raise SystemExit(f"{path}: cannot render {row.what!r}: {exc!r}") from None
        lines.append(f"| {row.what} | {figure} | `bench/results/{row.result}.json` | "
                     f"[{row.doc}](docs/{row.doc}.md) |")
    lines.append(END)
    return "\n".join(lines)


def current(readme: str) -> str:
    """The README's rendered block (empty if it has none)."""
    match = re.search(re.escape(BEGIN) + r".*?" + re.escape(END), readme, re.S)
    return match.group(0) if match else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="replace the table in README.md")
    args = parser.parse_args()
    table = render()
    if not args.write:
        print(table)
        return
    text = README.read_text()
    old = current(text)
    if not old:
        raise SystemExit(f"README.md has no {BEGIN!r} ... {END!r} block")
    tmp = README.with_suffix(".md.tmp")
    tmp.write_text(text.replace(old, table))
    tmp.replace(README)
    print(f"wrote the table into {README}")


if __name__ == "__main__":
    main()
