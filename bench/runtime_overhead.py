"""What the Ray runtime costs over the embedded one, for a compute-bound program.

The program is matrix-factorization SGD (the MF app's compiled kernel): each worker keeps its
users' factors locally and shares the item factors ``Q`` through the parameter server. One
clock = read every item row it rates (one batched read), ~100 ms of compiled SGD over its
ratings, one batched increment of the changed rows, ``clock()``. With 8000 items of rank 32
that is ~2 MB read and ~2 MB sent per worker per clock ("heavy"); with 1000 items ~0.5 MB
("light").

For each runtime (2 workers, SSP s=1, same data and seed) and each of several runs we take
the median over clocks (after warm-up) of: time per clock, compute time, time in ``read``
(fetch + waiting for the other worker), time in ``inc`` + ``clock``. Reports the medians over
runs and Ray's overhead per clock; writes ``bench/results/runtime_overhead.{json,png}``.

    flock /tmp/stalesync-bench.lock .venv/bin/python bench/runtime_overhead.py [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
from _common import figure_path, write_json  # noqa: E402

import stalesync as ss  # noqa: E402
from stalesync.kernels.mf import _sgd_range  # noqa: E402

USERS_PER_WORKER, RANK = 4000, 32
TRAFFIC = {"heavy": 8000, "light": 1000}  # items in the shared table
WARMUP = 2


def make_data(workers: int, ratings: int, n_items: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    parts = []
    for _ in range(workers):
        users = rng.integers(0, USERS_PER_WORKER, ratings).astype(np.int64)
        items = rng.integers(0, n_items, ratings).astype(np.int64)
        parts.append({"users": users, "items": items,
                      "ratings": rng.normal(3.5, 1.0, ratings).astype(np.float64)})
    return parts


def sgd_worker(ctx: ss.WorkerContext) -> list[tuple[float, float, float, float]]:
    """Returns per clock (total, compute, read, inc+clock) seconds."""
    d = ctx.data
    rng = np.random.default_rng([ctx.seed, ctx.worker_id])
    P = rng.normal(0, 0.1, (USERS_PER_WORKER, RANK + 1))
    rows = np.unique(d["items"])
    local_items = np.searchsorted(rows, d["items"])
    times = []
    while ctx.clock_count < ctx.iterations:
        t0 = time.perf_counter()
        Q = ctx.read("Q", rows)
        t1 = time.perf_counter()
        Q_old = Q.copy()
        _sgd_range(d["users"], local_items, d["ratings"], 0, d["users"].size, P, Q,
                   3.5, 0.005, 0.02, 0.02, True)
        t2 = time.perf_counter()
        ctx.inc("Q", rows, Q - Q_old)
        ctx.clock()
        t3 = time.perf_counter()
        times.append((t3 - t0, t2 - t1, t1 - t0, t3 - t2))
    return times


def calibrate(target_s: float) -> int:
    """Ratings per worker for ~``target_s`` of kernel time per clock on this machine."""
    part = make_data(1, 200_000, 8000, seed=99)[0]
    P = np.zeros((USERS_PER_WORKER, RANK + 1))
    Q = np.zeros((8000, RANK + 1))
    args = (part["users"], part["items"], part["ratings"], 0, 200_000, P, Q,
            3.5, 0.005, 0.02, 0.02, True)
    _sgd_range(*args)
    t0 = time.perf_counter()
    for _ in range(3):
        _sgd_range(*args)
    per_rating = (time.perf_counter() - t0) / 3 / 200_000
    return int(target_s / per_rating)


def one_run(runtime: str, data, n_items: int, clocks: int) -> dict[str, float]:
    t0 = time.perf_counter()
    result = ss.run(
        sgd_worker,
        [ss.TableSpec("Q", n_items, RANK + 1, "float64")],
        data=data, workers=len(data), consistency="ssp", staleness=1,
        iterations=clocks, runtime=runtime, seed=1,
        initial_tables={"Q": np.random.default_rng(5).normal(0, 0.1, (n_items, RANK + 1))},
    )
    wall = time.perf_counter() - t0
    per_clock = np.array([t for times in result.worker_results for t in times[WARMUP:]])
    med = np.median(per_clock, axis=0)
    return {"clock_s": float(med[0]), "compute_s": float(med[1]), "read_s": float(med[2]),
            "inc_clock_s": float(med[3]), "job_wall_s": wall,
            "rows_bytes_per_clock": int(result.record["bytes_sent"] / (clocks * len(data)))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer clocks and runs")
    ap.add_argument("--target-ms", type=float, default=100.0, help="compute per clock")
    args = ap.parse_args()
    clocks, runs = (8, 2) if args.quick else (14, 3)
    ratings = calibrate(args.target_ms / 1000)
    import ray

    ray.init(num_cpus=4, include_dashboard=False, _node_ip_address="127.0.0.1",
             logging_level="WARNING")
    results = {}
    for traffic, n_items in TRAFFIC.items():
        data = make_data(2, ratings, n_items)
        out: dict[str, list[dict[str, float]]] = {"embedded": [], "ray": []}
        for _ in range(runs):  # interleaved, so machine load affects both alike
            for runtime in out:
                out[runtime].append(one_run(runtime, data, n_items, clocks))
                print(traffic, runtime, {k: round(v, 4) for k, v in out[runtime][-1].items()},
                      flush=True)
        summary = {
            rt: {k: statistics.median(r[k] for r in rs) for k in rs[0]}
            for rt, rs in out.items()
        }
        for s in summary.values():
            s["comm_wait_share"] = (s["read_s"] + s["inc_clock_s"]) / s["clock_s"]
        emb, ray_ = summary["embedded"]["clock_s"], summary["ray"]["clock_s"]
        results[traffic] = {"items": n_items, "runs_raw": out, "median": summary,
                            "ray_overhead_per_clock": ray_ / emb - 1.0}
        print(f"{traffic}: embedded {emb * 1e3:.1f} ms/clock, ray {ray_ * 1e3:.1f} ms/clock, "
              f"overhead {100 * (ray_ / emb - 1):+.1f}%", flush=True)
    ray.shutdown()
    payload = {
        "program": f"MF SGD, rank {RANK}, {ratings} ratings/worker/clock (~{args.target_ms:.0f}"
                   " ms of compute); table traffic: all rated item rows read + incremented",
        "workers": 2, "consistency": "ssp(s=1)", "clocks": clocks, "warmup_clocks": WARMUP,
        "runs": runs, "results": results,
    }
    path = write_json("runtime_overhead", payload)
    plot(results)
    print(f"-> {path}")


def plot(results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    names, rows = [], []
    for traffic, res in results.items():
        mb = res["median"]["embedded"]["rows_bytes_per_clock"] / 1e6
        for rt, s in res["median"].items():
            names.append(f"{rt}\n{traffic} ({mb:.1f} MB)")
            rows.append(s)
    bottom = np.zeros(len(names))
    for key, label in [("compute_s", "compute"), ("read_s", "read (fetch + wait)"),
                       ("inc_clock_s", "inc + clock")]:
        vals = np.array([s[key] * 1e3 for s in rows])
        ax.bar(names, vals, bottom=bottom, label=label)
        bottom += vals
    overheads = ", ".join(f"{t} {100 * r['ray_overhead_per_clock']:+.0f}%"
                          for t, r in results.items())
    ax.set_ylabel("ms per clock (median)")
    ax.set_title(f"Ray vs embedded, 2 workers, MB/worker/clock; Ray overhead: {overheads}",
                 fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(figure_path("runtime_overhead"), dpi=120)


if __name__ == "__main__":
    main()
