"""Every data-parallel SGD strategy on the clothing-review SVM (bag of words ->
Recommended IND; hinge loss, alpha 1e-4), 4 workers on this 2-core machine, in three
straggler scenarios: none; worker 3 two times slower; every worker pausing 20 ms at 10% of
its clocks. For each configuration, fits with growing epoch budgets give test error vs
wall time; the time to target is the first budget whose test error is within 0.5 points of
the sequential SGD's best. Also: HOGWILD! examples/s with 1 and 2 threads, and
SimuParallelSGD's error after one pass with 1, 2, 4 and 8 workers (reference 001_*: it
should approach one sequential pass). Writes bench/results/sgd_strategies.json and .png.

    flock /tmp/stalesync-bench.lock .venv/bin/python bench/sgd_strategies.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import figure_path, write_json  # noqa: E402

from stalesync.apps.base import RunConfig  # noqa: E402
from stalesync.apps.linear import LinearClassifier  # noqa: E402
from stalesync.data.load import load_features  # noqa: E402
from stalesync.faults import Stragglers  # noqa: E402

ALPHA = 1e-4
BUDGETS = (1, 2, 4, 8)
SCENARIOS = {
    "none": None,
    "one worker 2x slower": Stragglers(slow={3: 2.0}),
    "random pauses": Stragglers(pause_prob=0.1, pause_s=0.02),
}
GRAD = {"lr": 0.5, "lr_decay": 0.002, "batch_size": 32}
CONFIGS = {
    "ps bsp": {"strategy": "ps", "consistency": "bsp", "staleness": None},
    "ps ssp s=1": {"strategy": "ps", "consistency": "ssp", "staleness": 1},
    "ps ssp s=3": {"strategy": "ps", "consistency": "ssp", "staleness": 3},
    "ps async": {"strategy": "ps", "consistency": "async", "staleness": None},
    "sync b=0": {"strategy": "sync", "strategy_options": GRAD},
    "sync b=1": {"strategy": "sync", "strategy_options": {"backup_workers": 1, **GRAD}},
    "downpour": {"strategy": "downpour", "strategy_options": {
        "lr": 0.1, "batch_size": 32, "n_fetch": 2, "n_push": 2}},
    "average every 0": {"strategy": "average", "strategy_options": {"average_every": 0}},
    "average every 10": {"strategy": "average", "strategy_options": {"average_every": 10}},
    "average every 100": {"strategy": "average", "strategy_options": {"average_every": 100}},
    "hogwild (4 workers x 1 thread)": {"strategy": "hogwild",
                                       "strategy_options": {"threads": 1}},
}


def test_error(model, X, y) -> float:
    return float(1.0 - model.score(X, y))


def main() -> None:
    X, y = load_features("clothing-recommend")
    X = sp.csr_matrix(X, dtype=np.float64)
    order = np.random.default_rng(0).permutation(X.shape[0])
    cut = int(0.8 * X.shape[0])
    tr, te = np.sort(order[:cut]), np.sort(order[cut:])
    Xtr, ytr, Xte, yte = X[tr], y[tr], X[te], y[te]
    LinearClassifier(alpha=ALPHA, epochs=1).fit(Xtr[:2000], ytr[:2000])  # compile

    sequential = {}
    for epochs in BUDGETS:
        t0 = time.perf_counter()
        m = LinearClassifier(alpha=ALPHA, epochs=epochs, strategy="average", workers=1)
        m.fit(Xtr, ytr)
        sequential[epochs] = {"time_s": time.perf_counter() - t0,
                              "test_error": test_error(m, Xte, yte)}
    target = min(v["test_error"] for v in sequential.values()) + 0.005
    print("sequential", sequential, "target", target, flush=True)

    table: dict = {}
    for scenario, stragglers in SCENARIOS.items():
        for name, params in CONFIGS.items():
            curve = []
            for epochs in BUDGETS:
                t0 = time.perf_counter()
                m = LinearClassifier(alpha=ALPHA, epochs=epochs, workers=4, seed=0, **params)
                m.fit(Xtr, ytr, run=RunConfig(stragglers=stragglers))
                curve.append({"epochs": epochs, "time_s": time.perf_counter() - t0,
                              "test_error": test_error(m, Xte, yte),
                              "dropped": m.run_record_["final"]["dropped_gradients"]})
            hit = next((p["time_s"] for p in curve if p["test_error"] <= target), None)
            table.setdefault(scenario, {})[name] = {"curve": curve, "time_to_target_s": hit}
            print(scenario, name, [(round(p["time_s"], 2), round(p["test_error"], 4))
                                   for p in curve], hit, flush=True)

    hog = {}
    for threads in (1, 2):
        best = []
        for _ in range(3):
            m = LinearClassifier(alpha=ALPHA, epochs=8, strategy="hogwild", workers=1,
                                 strategy_options={"threads": threads}).fit(Xtr, ytr)
            best.append(m.run_record_["final"]["examples_per_s"])
        hog[threads] = {"examples_per_s": float(np.median(best)),
                        "test_error": test_error(m, Xte, yte)}
    hog["speedup"] = hog[2]["examples_per_s"] / hog[1]["examples_per_s"]

    simu = {}
    for workers in (1, 2, 4, 8):
        m = LinearClassifier(alpha=ALPHA, epochs=1, strategy="average",
                             strategy_options={"average_every": 0},
                             workers=workers).fit(Xtr, ytr)
        simu[workers] = {"test_error": test_error(m, Xte, yte),
                         "train_objective": m.run_record_["final"]["train_objective"]}
    for workers in simu:
        simu[workers]["relative_objective"] = (simu[workers]["train_objective"]
                                               / simu[1]["train_objective"])

    under = table["one worker 2x slower"]
    b0, b1 = under["sync b=0"]["time_to_target_s"], under["sync b=1"]["time_to_target_s"]
    summary = {"target_test_error": target, "sequential": sequential, "hogwild": hog,
               "simuparallel": simu,
               "backup_speedup_under_straggler": (b0 / b1) if b0 and b1 else None}
    write_json("sgd_strategies", {"alpha": ALPHA, "budgets": BUDGETS, "workers": 4,
                                  "table": table, "summary": summary})
    print(summary)
    plot(table, target)


def plot(table, target) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(table), figsize=(6 * len(table), 4.5), sharey=True)
    for ax, (scenario, rows) in zip(axes, table.items(), strict=True):
        for name, row in rows.items():
            c = row["curve"]
            ax.plot([p["time_s"] for p in c], [100 * p["test_error"] for p in c], marker="o",
                    label=name)
        ax.axhline(100 * target, color="grey", ls="--", label="target")
        ax.set_xscale("log")
        ax.set_xlabel("wall time (s, log)")
        ax.set_title(f"stragglers: {scenario}")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test error (%)")
    axes[0].legend(fontsize=7)
    fig.suptitle("clothing reviews SVM, 4 workers on 2 cores")
    fig.tight_layout()
    fig.savefig(figure_path("sgd_strategies"), dpi=100)


if __name__ == "__main__":
    main()
