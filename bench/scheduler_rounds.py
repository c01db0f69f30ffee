"""Rounds per second of the model-parallel scheduler on both backends (embedded threads and
Ray actors), 2 workers, once the workers have started (actor start-up reported apart): the
bare hand-off (an app that does nothing), Lasso on the clothing reviews (23,486 x 13,602
sparse) and on a synthetic 200 x 2,000 dense problem, and block-rotation MF on MovieLens
100K. Medians of REPEATS runs. Writes
bench/results/scheduler_rounds.json and .png.

    flock /tmp/stalesync-bench.lock .venv/bin/python bench/scheduler_rounds.py
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import figure_path, write_json  # noqa: E402

from stalesync.apps.base import RunConfig  # noqa: E402
from stalesync.apps.lasso import Lasso, alpha_max, make_correlated_lasso  # noqa: E402
from stalesync.apps.mf import MatrixFactorization  # noqa: E402
from stalesync.scheduler import Cyclic, Driver  # noqa: E402

REPEATS = 3
BACKENDS = ("embedded", "ray")


class Nothing:
    """An app whose rounds do no work: what a hand-off costs."""

    def push(self, shard, task):
        return np.zeros(1)

    def sync(self, shard, plan, changes):
        return None

    def pull(self, plan, partials):
        return np.zeros(plan.size)


def bare(runtime: str) -> dict:
    with Driver(Nothing(), [0, 1], workers=2, runtime=runtime) as drv:
        drv.set_schedule(Cyclic(8), 64)
        drv.run(20)
        t0 = time.perf_counter()
        drv.run(500)
        dt = time.perf_counter() - t0
    return {"rounds_per_s": 500 / dt, "ms_per_round": 1000 * dt / 500}


def lasso(X, y, runtime: str) -> dict:
    model = Lasso(alpha=0.05 * alpha_max(X, y), workers=2, tol=1e-4)
    model.fit(X, y, run=RunConfig(runtime=runtime))
    f = model.run_record_["final"]
    return {"rounds_per_s": f["rounds_per_s"], "rounds": f["rounds"],
            "wall_s": model.run_record_["wall_time_s"],
            "startup_s": model.run_record_["startup_s"], "objective": f["objective"]}


def mf(train, runtime: str) -> dict:
    model = MatrixFactorization(rank=32, epochs=10, mode="blocks", workers=2, seed=0)
    model.fit(train, run=RunConfig(runtime=runtime))
    r = model.run_record_
    return {"rounds_per_s": r["clocks"] / (r["wall_time_s"] - r["startup_s"]),
            "rounds": r["clocks"], "wall_s": r["wall_time_s"], "startup_s": r["startup_s"],
            "train_rmse": r["final"]["train_rmse"]}


def main() -> None:
    import ray

    from stalesync.data.clothing import clothing_bow
    from stalesync.data.ratings import load_movielens_100k

    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR",
             _node_ip_address="127.0.0.1")
    Xc, reviews, _ = clothing_bow()
    yc = reviews.rating.astype(np.float64)
    Xs, ys, _ = make_correlated_lasso(200, 2000, seed=0)
    train, _ = load_movielens_100k().split(0.2, seed=0)
    jobs = {"hand-off only": bare,
            "lasso clothing": lambda rt: lasso(Xc, yc, rt),
            "lasso synthetic 200x2000": lambda rt: lasso(Xs, ys, rt),
            "mf blocks movielens-100k": lambda rt: mf(train, rt)}
    runs = {(job, rt): [] for job in jobs for rt in BACKENDS}
    for _ in range(REPEATS):
        for job, fn in jobs.items():
            for rt in BACKENDS:
                runs[job, rt].append(fn(rt))
                print(job, rt, runs[job, rt][-1], flush=True)
    table = {}
    for (job, rt), values in runs.items():
        table.setdefault(job, {})[rt] = {
            key: statistics.median(v[key] for v in values) for key in values[0]}
    for row in table.values():
        row["ray_over_embedded_rounds_per_s"] = (row["ray"]["rounds_per_s"]
                                                 / row["embedded"]["rounds_per_s"])
    write_json("scheduler_rounds", {"repeats": REPEATS, "workers": 2, "table": table})
    print(table)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    names = list(table)
    xs = np.arange(len(names))
    for k, rt in enumerate(BACKENDS):
        ax.bar(xs + 0.4 * k - 0.2, [table[n][rt]["rounds_per_s"] for n in names], 0.4,
               label=rt)
    ax.set_xticks(xs, names, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("scheduler rounds per second (log)")
    ax.set_title("model-parallel rounds/s, 2 workers, 2 cores")
    ax.legend()
    fig.tight_layout()
    fig.savefig(figure_path("scheduler_rounds"), dpi=100)


if __name__ == "__main__":
    main()
