"""Lasso against scikit-learn, side by side: wall time of one fit to the same duality-gap
tolerance, and how far each objective is above the best either reached.

Problems: diabetes (442 x 10, dense), synthetic correlated p >> n (200 x 2,000 and 100 x
10,000, dense), the clothing reviews (23,486 x 13,602 sparse, bag of words -> rating),
alpha = ``--alpha-ratio`` x alpha_max. Ours: ``Lasso()`` defaults on one worker
(``schedule="auto"``: compiled sequential sweeps over the working set), and STRADS's
``priority-dependency`` at P = 8 for reference. Fits alternate ours / scikit-learn
(``--repeats`` each, medians). Writes bench/results/lasso_peers.json and .png.

    flock /tmp/stalesync-bench.lock .venv/bin/python bench/lasso_peers.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import figure_path, write_json  # noqa: E402

from stalesync.apps.lasso import Lasso, alpha_max, make_correlated_lasso  # noqa: E402


def problems() -> dict:
    from sklearn.datasets import load_diabetes

    from stalesync.data.clothing import clothing_bow

    X, y = load_diabetes(return_X_y=True)
    out = {"diabetes 442x10": (X, y)}
    for n, d in ((200, 2000), (100, 10_000)):
        X, y, _ = make_correlated_lasso(n, d, group_size=10, rho=0.9, n_informative=20,
                                        seed=0)
        out[f"synthetic {n}x{d}"] = (X, y)
    X, reviews, _ = clothing_bow()
    out["clothing 23486x13602 sparse"] = (X.tocsc(), reviews.rating.astype(np.float64))
    return out


def objective(X, y, coef, intercept, alpha) -> float:
    r = y - np.asarray(X @ coef).ravel() - intercept
    return float(r @ r / (2 * len(y)) + alpha * np.abs(coef).sum())


def timed(estimator, X, y):
    start = time.perf_counter()
    model = estimator.fit(X, y)
    return model, time.perf_counter() - start


def main() -> None:
    from sklearn.linear_model import Lasso as SkLasso

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--tol", type=float, default=1e-4)
    p.add_argument("--alpha-ratio", type=float, default=0.05)
    args = p.parse_args()
    Lasso(alpha=1.0).fit(np.eye(3), np.arange(3.0))  # compile
    fits = {
        "stalesync auto": lambda a: Lasso(alpha=a, tol=args.tol, max_iter=100_000),
        "stalesync priority-dependency P=8": lambda a: Lasso(
            alpha=a, tol=args.tol, schedule="priority-dependency", parallel=8,
            max_iter=100_000),
        "scikit-learn": lambda a: SkLasso(alpha=a, tol=args.tol, max_iter=100_000),
    }
    results = {}
    for name, (X, y) in problems().items():
        alpha = args.alpha_ratio * alpha_max(X, y)
        times = {k: [] for k in fits}
        objs = {}
        for _ in range(args.repeats):
            for key, make in fits.items():
                model, wall = timed(make(alpha), X, y)
                times[key].append(wall)
                objs[key] = objective(X, y, model.coef_, model.intercept_, alpha)
        best = min(objs.values())
        sk = statistics.median(times["scikit-learn"])
        rows = {k: {"time_s": statistics.median(times[k]), "times_s": times[k],
                    "objective": objs[k], "above_best": objs[k] / best - 1,
                    "time_vs_sklearn": statistics.median(times[k]) / sk} for k in fits}
        results[name] = {"alpha": alpha, "shape": list(X.shape), "rows": rows}
        for k, r in rows.items():
            print(f"{name:32s} {k:36s} {r['time_s']:8.4f}s  x{r['time_vs_sklearn']:6.2f} of "
                  f"scikit-learn  objective +{r['above_best']:.1e}", flush=True)
    write_json("lasso_peers", {"tol": args.tol, "alpha_ratio": args.alpha_ratio,
                               "repeats": args.repeats, "results": results})
    plot(results)


def plot(results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    keys = list(next(iter(results.values()))["rows"])
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / len(keys)
    for i, key in enumerate(keys):
        ax.bar(np.arange(len(names)) + i * width,
               [results[n]["rows"][key]["time_vs_sklearn"] for n in names], width, label=key)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_yscale("log")
    ax.set_xticks(np.arange(len(names)) + 0.4, names, fontsize=8)
    ax.set_ylabel("wall time / scikit-learn's (log)")
    ax.set_title("Lasso to the same duality-gap tolerance, one worker")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(figure_path("lasso_peers"), dpi=100)


if __name__ == "__main__":
    main()
