"""Bottou's table on real data: training time, primal objective and test error of
stalesync's SGD (1 worker) next to scikit-learn's LinearSVC / LogisticRegression (liblinear,
lbfgs: the optimum), SGDClassifier, and Vowpal Wabbit, with the same loss and L2
regularisation, on the clothing reviews (bag of words -> Recommended IND, 23,486 x ~13.6k
sparse) and adult (a9a-style one-hot, 48,842 x 124). 80/20 split, seeded; medians of
REPEATS runs, methods interleaved. The objective of every model is evaluated by the same
function: mean loss + alpha/2 ||w||^2 (the bias unregularised). Writes
bench/results/linear_peers.json and .png.

    flock /tmp/stalesync-bench.lock .venv/bin/python bench/linear_peers.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import figure_path, write_json  # noqa: E402

from stalesync.apps.linear import LinearClassifier  # noqa: E402
from stalesync.data.load import load_features  # noqa: E402

REPEATS = 3
EPOCHS = 10
ALPHA = {"clothing-recommend": 1e-4, "adult": 1e-4}
LOSSES = {"hinge": "hinge", "log_loss": "logistic"}  # ours -> Vowpal Wabbit's name


def split(X, y, seed=0):
    order = np.random.default_rng(seed).permutation(X.shape[0])
    cut = int(0.8 * X.shape[0])
    tr, te = np.sort(order[:cut]), np.sort(order[cut:])
    return X[tr], y[tr], X[te], y[te]


def objective(Xtr, ytr, coef, intercept, loss, alpha):
    m = LinearClassifier(loss=loss, alpha=alpha)
    m.fit(Xtr[:50], ytr[:50])  # sets the fitted shape; the weights are replaced
    m.coef_, m.intercept_ = np.atleast_2d(coef).astype(np.float64), np.atleast_1d(
        intercept).astype(np.float64)
    return m.objective(Xtr, ytr)


def ours(Xtr, ytr, loss, alpha, average):
    t0 = time.perf_counter()
    m = LinearClassifier(loss=loss, alpha=alpha, epochs=EPOCHS, strategy="average",
                         workers=1, average=average, seed=0).fit(Xtr, ytr)
    return time.perf_counter() - t0, m.coef_, m.intercept_


def liblinear(Xtr, ytr, loss, alpha, tight=False):
    """LinearSVC (liblinear's dual coordinate descent) or LogisticRegression (lbfgs), with
    their default tolerances (timed), or run far tighter once for the optimum."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import LinearSVC

    C = 1.0 / (alpha * Xtr.shape[0])
    tol = 1e-6 if tight else 1e-4
    iters = 20_000 if tight else 1000
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if loss == "hinge":
            m = LinearSVC(loss="hinge", C=C, intercept_scaling=100, max_iter=iters, tol=tol)
        else:
            m = LogisticRegression(C=C, solver="lbfgs", max_iter=iters, tol=tol)
        m.fit(Xtr, ytr)
    return time.perf_counter() - t0, m.coef_, m.intercept_


def sgdclassifier(Xtr, ytr, loss, alpha):
    from sklearn.linear_model import SGDClassifier

    t0 = time.perf_counter()
    m = SGDClassifier(loss=loss, alpha=alpha, max_iter=EPOCHS, tol=None, random_state=0)
    m.fit(Xtr, ytr)
    return time.perf_counter() - t0, m.coef_, m.intercept_


class VowpalWabbit:
    """VW on a data file written once per dataset (C++ parsing and learning; the time is
    VW's own training call, in-process)."""

    def __init__(self, Xtr, ytr, Xte) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="vw-"))
        self.train = self.dir / "train.vw"
        self.test = self.dir / "test.vw"
        self._write(self.train, Xtr, np.where(ytr == 1, 1, -1))
        self._write(self.test, Xte, np.ones(Xte.shape[0]))
        self.d = Xtr.shape[1]

    @staticmethod
    def _write(path, X, y):
        X = sp.csr_matrix(X)
        with open(path, "w") as f:
            for i in range(X.shape[0]):
                lo, hi = X.indptr[i], X.indptr[i + 1]
                feats = " ".join(f"{j}:{v:g}" for j, v in zip(X.indices[lo:hi], X.data[lo:hi],
                                                             strict=True))
                f.write(f"{int(y[i])} |f {feats}\n")

    def fit(self, loss, alpha):
        import vowpalwabbit

        model, readable = self.dir / "model.vw", self.dir / "readable.txt"
        cache = self.dir / "cache"
        cache.unlink(missing_ok=True)
        args = ["-d", str(self.train), "--loss_function", LOSSES[loss], "--l2", str(alpha),
                "--passes", str(EPOCHS), "-c", "--cache_file", str(cache), "--holdout_off",
                "-b", "22", "--quiet", "-f", str(model), "--readable_model", str(readable)]
        t0 = time.perf_counter()
        ws = vowpalwabbit.Workspace(arg_list=args)
        ws.finish()
        seconds = time.perf_counter() - t0
        return seconds, model, readable

    def predictions(self, model, data) -> np.ndarray:
        import vowpalwabbit

        preds = self.dir / "preds.txt"
        ws = vowpalwabbit.Workspace(arg_list=["-t", "-i", str(model), "-d", str(data), "-p",
                                              str(preds), "--quiet"])
        ws.finish()
        return np.loadtxt(preds, ndmin=1)

    @staticmethod
    def weight_norm2(readable) -> float:
        """Sum of squared weights of a ``--readable_model`` (its ``index:weight`` lines)."""
        import re

        weight = re.compile(r"^(\d+):(\S+)$")
        return float(sum(float(m.group(2)) ** 2
                         for line in Path(readable).read_text().splitlines()
                         if (m := weight.match(line))))


def evaluate(name, rows, Xtr, ytr, Xte, yte, loss, alpha, runs):
    times = [r[0] for r in runs]
    coef, intercept = runs[0][1], runs[0][2]
    obj = objective(Xtr, ytr, coef, intercept, loss, alpha)
    scores = np.asarray(Xte @ np.atleast_2d(coef)[0]).ravel() + np.atleast_1d(intercept)[0]
    err = float(np.mean((scores > 0).astype(int) != yte))
    rows[name] = {"train_s": statistics.median(times), "objective": obj, "test_error": err,
                  "examples_per_s": EPOCHS * Xtr.shape[0] / statistics.median(times)}


def main() -> None:
    results = {}
    for data in ("clothing-recommend", "adult"):
        X, y = load_features(data)
        X = sp.csr_matrix(X, dtype=np.float64)
        Xtr, ytr, Xte, yte = split(X, y)
        vw = VowpalWabbit(Xtr, ytr, Xte)
        for loss in ("hinge", "log_loss"):
            alpha = ALPHA[data]
            runs: dict[str, list] = {k: [] for k in ("stalesync SGD", "stalesync ASGD",
                                                      "liblinear/lbfgs", "SGDClassifier",
                                                      "Vowpal Wabbit")}
            ours(Xtr[:2000], ytr[:2000], loss, alpha, False)  # compile
            for _ in range(REPEATS):
                runs["stalesync SGD"].append(ours(Xtr, ytr, loss, alpha, False))
                runs["stalesync ASGD"].append(ours(Xtr, ytr, loss, alpha, True))
                runs["liblinear/lbfgs"].append(liblinear(Xtr, ytr, loss, alpha))
                runs["SGDClassifier"].append(sgdclassifier(Xtr, ytr, loss, alpha))
                runs["Vowpal Wabbit"].append(vw.fit(loss, alpha))
            rows: dict = {}
            for name in ("stalesync SGD", "stalesync ASGD", "liblinear/lbfgs", "SGDClassifier"):
                evaluate(name, rows, Xtr, ytr, Xte, yte, loss, alpha, runs[name])
            evaluate("optimum", rows, Xtr, ytr, Xte, yte, loss, alpha,
                     [liblinear(Xtr, ytr, loss, alpha, tight=True)])
            seconds = statistics.median(r[0] for r in runs["Vowpal Wabbit"])
            _, model, readable = runs["Vowpal Wabbit"][0]
            p_train = vw.predictions(model, vw.train)
            p_test = vw.predictions(model, vw.test)
            s = np.where(ytr == 1, 1.0, -1.0) * p_train
            mean_loss = (np.maximum(0, 1 - s).mean() if loss == "hinge"
                         else np.logaddexp(0, -s).mean())
            rows["Vowpal Wabbit"] = {
                "train_s": seconds,
                "objective": float(mean_loss + 0.5 * alpha * vw.weight_norm2(readable)),
                "test_error": float(np.mean((p_test > 0).astype(int) != yte)),
                "examples_per_s": EPOCHS * Xtr.shape[0] / seconds}
            best = min(rows.values(), key=lambda r: r["objective"])  # the optimum's, usually
            for row in rows.values():
                row["objective_vs_optimum"] = row["objective"] / best["objective"]
                row["error_minus_optimum_points"] = 100 * (row["test_error"]
                                                           - best["test_error"])
            for name in ("SGDClassifier", "Vowpal Wabbit"):
                rows["stalesync SGD"][f"speed_vs_{name}"] = (
                    rows["stalesync SGD"]["examples_per_s"] / rows[name]["examples_per_s"])
                rows["stalesync ASGD"][f"speed_vs_{name}"] = (
                    rows["stalesync ASGD"]["examples_per_s"] / rows[name]["examples_per_s"])
            results[f"{data} {loss}"] = {"alpha": alpha, "n_train": int(Xtr.shape[0]),
                                          "n_features": int(X.shape[1]), "rows": rows}
            print(data, loss, rows, flush=True)
    write_json("linear_peers", {"epochs": EPOCHS, "repeats": REPEATS, "results": results})
    plot(results)


def plot(results) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(4.5 * len(results), 4))
    for ax, (name, res) in zip(axes, results.items(), strict=True):
        for method, row in res["rows"].items():
            ax.scatter(row["train_s"], row["objective_vs_optimum"], label=method, s=40)
        ax.set_xscale("log")
        ax.set_xlabel("training time (s, log)")
        ax.set_ylabel("objective / optimum")
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"linear models, {EPOCHS} epochs, 1 core")
    fig.tight_layout()
    fig.savefig(figure_path("linear_peers"), dpi=100)


if __name__ == "__main__":
    main()
