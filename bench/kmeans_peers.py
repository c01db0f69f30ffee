"""k-means on Fashion-MNIST (60,000 x 784): stalesync KMeans (1 and 2 workers) next to
scikit-learn's KMeans (Lloyd, k-means++, n_init=1; OpenMP on every core) and
MiniBatchKMeans, at K = 10 and K = 100.

Each method's curve is inertia (exact, on the whole training set) vs wall time of separate
fits with growing epoch / iteration budgets, medians of REPEATS runs, methods interleaved so
that machine noise hits them alike. The target is scikit-learn KMeans's converged inertia
+1%; "time to target" is the first budget whose median inertia reaches it. Writes
bench/results/kmeans_peers.json and .png. Run one benchmark at a time:

    flock /tmp/stalesync-bench.lock .venv/bin/python bench/kmeans_peers.py
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import figure_path, write_json  # noqa: E402
from sklearn.cluster import KMeans as SkKMeans  # noqa: E402
from sklearn.cluster import MiniBatchKMeans  # noqa: E402

from stalesync.apps.kmeans import KMeans  # noqa: E402
from stalesync.data.fashion_mnist import load_fashion_mnist  # noqa: E402

REPEATS = 3
KS = (10, 100)
OUR_EPOCHS = (1, 2, 3, 5, 8, 12, 20)
SK_ITERS = (1, 2, 4, 8, 16, 32, 64, 300)
MB_EPOCHS = (1, 2, 3, 5, 8, 12, 20)
BATCH = 2048  # ours: points per worker per clock; MiniBatchKMeans: its batch
TARGET = 1.01


def fit_ours(X, K, epochs, workers, seed):
    t0 = time.perf_counter()
    model = KMeans(K, epochs=epochs, batch_size=BATCH, workers=workers, seed=seed).fit(X)
    return time.perf_counter() - t0, model.inertia_


def fit_sklearn(X, K, iters, seed):
    t0 = time.perf_counter()
    model = SkKMeans(K, init="k-means++", n_init=1, max_iter=iters, random_state=seed).fit(X)
    return time.perf_counter() - t0, float(model.inertia_)


def fit_minibatch(X, K, epochs, seed):
    t0 = time.perf_counter()
    model = MiniBatchKMeans(K, batch_size=BATCH, max_iter=epochs, n_init=1, random_state=seed,
                            max_no_improvement=None, tol=0.0).fit(X)
    return time.perf_counter() - t0, float(model.inertia_)


def methods(K):
    return {
        "stalesync x1": [(e, lambda X, s, e=e: fit_ours(X, K, e, 1, s)) for e in OUR_EPOCHS],
        "stalesync x2": [(e, lambda X, s, e=e: fit_ours(X, K, e, 2, s)) for e in OUR_EPOCHS],
        "sklearn KMeans": [(i, lambda X, s, i=i: fit_sklearn(X, K, i, s)) for i in SK_ITERS],
        "sklearn MiniBatchKMeans": [(e, lambda X, s, e=e: fit_minibatch(X, K, e, s))
                                    for e in MB_EPOCHS],
    }


def curves(X, K):
    runs = {name: {b: [] for b, _ in pts} for name, pts in methods(K).items()}
    fit_ours(X[:5000], K, 1, 2, 0)  # warm up the compiled kernels
    for rep in range(REPEATS):
        for name, points in methods(K).items():
            for budget, fn in points:
                runs[name][budget].append(fn(X, rep))
                print(f"K={K} rep {rep} {name} budget {budget}: "
                      f"{runs[name][budget][-1][0]:.2f} s, {runs[name][budget][-1][1]:.6g}",
                      flush=True)
    out = {}
    for name, by_budget in runs.items():
        out[name] = [{"budget": b, "time_s": statistics.median(t for t, _ in v),
                      "inertia": statistics.median(i for _, i in v),
                      "inertia_runs": [i for _, i in v]} for b, v in by_budget.items()]
    return out


def time_to(curve, target):
    for point in curve:
        if point["inertia"] <= target:
            return point["time_s"]
    return None


def summary(result):
    final = result["sklearn KMeans"][-1]["inertia"]
    target = TARGET * final
    rows = {}
    for name, curve in result.items():
        rows[name] = {"time_to_target_s": time_to(curve, target),
                      "final_inertia_ratio": curve[-1]["inertia"] / final}
    ref = rows["sklearn KMeans"]["time_to_target_s"]
    for row in rows.values():
        t = row["time_to_target_s"]
        row["speedup_vs_sklearn"] = ref / t if t else None
    equal = {}
    for epochs in set(OUR_EPOCHS) & set(MB_EPOCHS):
        ours = next(p for p in result["stalesync x2"] if p["budget"] == epochs)["inertia"]
        mb = next(p for p in result["sklearn MiniBatchKMeans"] if p["budget"] == epochs)
        equal[epochs] = {"stalesync_x2": ours, "minibatch": mb["inertia"],
                         "ours_lower": ours < mb["inertia"]}
    return {"target_inertia": target, "sklearn_final_inertia": final, "methods": rows,
            "equal_passes_vs_minibatch": dict(sorted(equal.items()))}


def plot(results) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4.5))
    for ax, (K, res) in zip(np.atleast_1d(axes), results.items(), strict=True):
        for name, curve in res["curves"].items():
            ax.plot([p["time_s"] for p in curve], [p["inertia"] for p in curve], marker="o",
                    label=name)
        ax.axhline(res["summary"]["target_inertia"], color="grey", ls="--",
                   label="scikit-learn KMeans final +1%")
        ax.set_xscale("log")
        ax.set_xlabel("wall time of the fit (s, log)")
        ax.set_ylabel("inertia (training set)")
        ax.set_title(f"Fashion-MNIST 60k x 784, K={K}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("k-means: inertia vs time (medians of 3 runs, 2 cores)")
    fig.tight_layout()
    path = figure_path("kmeans_peers")
    fig.savefig(path, dpi=100)
    return path


def main() -> None:
    X, _ = load_fashion_mnist()
    results = {}
    for K in KS:
        res = curves(X, K)
        results[K] = {"curves": res, "summary": summary(res)}
        print(K, results[K]["summary"], flush=True)
    write_json("kmeans_peers", {"data": "fashion-mnist train 60000 x 784 (scaled to [0, 1])",
                                "repeats": REPEATS, "batch": BATCH,
                                "results": {str(k): v for k, v in results.items()}})
    print(plot(results))


if __name__ == "__main__":
    main()
