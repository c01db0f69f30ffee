"""MF on MovieLens 100K: stalesync (1 and 2 workers, every mode) vs scikit-surprise's SVD,
and our per-core SGD throughput vs a bare compiled SGD loop on one array (the ceiling).

Same 80/20 split (seed 0), rank 32, 20 epochs for everyone. Curves are test RMSE vs wall
time; surprise gives no per-epoch hook, so its curve is separate fits of 1..20 epochs.
Writes bench/results/mf_peers.json and .png. Run under the shared bench lock:

    flock /tmp/stalesync-bench.lock .venv/bin/python bench/mf_peers.py
"""

from __future__ import annotations

import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numba
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import figure_path, write_json  # noqa: E402

from stalesync.apps.mf import MatrixFactorization  # noqa: E402
from stalesync.data.ratings import load_movielens_100k  # noqa: E402

RANK, EPOCHS, SEED, REPEATS = 32, 20, 0, 5
SPEED_EPOCHS, SPEED_REPEATS = 100, 7  # throughput runs: longer, so timer noise is small
CONFIGS = [("ssp", 1), ("ssp", 2), ("blocks", 1), ("blocks", 2), ("fugue", 1), ("fugue", 2)]
SURPRISE_EPOCHS = [1, 2, 3, 5, 8, 12, 16, 20]


@numba.njit(nogil=True, cache=True, fastmath=True)
def bare_sgd(users, items, ratings, P, Q, bu, bi, mu, lr, reg, reg_b, epochs):
    """The ceiling: plain SGD over one array, nothing else."""
    k = P.shape[1]
    for _ in range(epochs):
        for n in range(users.shape[0]):
            u, i = users[n], items[n]
            pred = mu + bu[u] + bi[i]
            for f in range(k):
                pred += P[u, f] * Q[i, f]
            e = ratings[n] - pred
            bu[u] += lr * (e - reg_b * bu[u])
            bi[i] += lr * (e - reg_b * bi[i])
            for f in range(k):
                pf, qf = P[u, f], Q[i, f]
                P[u, f] = pf + lr * (e * qf - reg * pf)
                Q[i, f] = qf + lr * (e * pf - reg * qf)


class Bare:
    """The bare loop on the training set, shuffled once, rank RANK, float32."""

    def __init__(self, train) -> None:
        self.rng = np.random.default_rng(0)
        order = self.rng.permutation(len(train))
        self.u, self.i = train.users[order], train.items[order]
        self.r = train.values[order]
        self.shape = (train.n_users, train.n_items)
        self.run(1)  # compile

    def run(self, epochs: int) -> tuple[float, float]:
        P = self.rng.normal(0, 0.1, (self.shape[0], RANK)).astype(np.float32)
        Q = self.rng.normal(0, 0.1, (self.shape[1], RANK)).astype(np.float32)
        bu, bi = np.zeros(self.shape[0], np.float32), np.zeros(self.shape[1], np.float32)
        t0, c0 = time.perf_counter(), time.process_time()
        bare_sgd(self.u, self.i, self.r, P, Q, bu, bi, np.float32(self.r.mean()),
                 np.float32(0.005), np.float32(0.05), np.float32(0.01), epochs)
        n = epochs * self.u.size
        return n / (time.perf_counter() - t0), n / (time.process_time() - c0)


def curves(train, test) -> dict:
    """Per config, the test-RMSE-vs-time curve (median per epoch over repeats; configs
    interleaved so that load from other jobs hits all of them alike)."""
    runs: dict = {c: [] for c in CONFIGS}
    for _ in range(REPEATS):
        for mode, workers in CONFIGS:
            m = MatrixFactorization(rank=RANK, epochs=EPOCHS, mode=mode, workers=workers,
                                    seed=SEED)
            m.fit(train, eval_set=test)
            runs[(mode, workers)].append(m)
    out = {}
    for key, ms in runs.items():
        cs = [[(h["time_s"], h["test_rmse"]) for h in m.history_] for m in ms]
        out[key] = {
            "mode": key[0], "workers": key[1],
            "test_rmse": statistics.median(m.run_record_["final"]["test_rmse"] for m in ms),
            "train_time_s": statistics.median(m.train_time_s_ for m in ms),
            "curve": [(statistics.median(c[e][0] for c in cs),
                       statistics.median(c[e][1] for c in cs)) for e in range(EPOCHS)],
        }
    return out


def throughput(train, bare: Bare) -> tuple[dict, tuple[float, float]]:
    """(ratings per wall second, ratings per CPU second of the process) without per-epoch
    scoring, SPEED_EPOCHS epochs, interleaved with the bare loop; medians. CPU seconds are
    the honest per-core measure on a shared machine, where two threads may not get two
    cores; they include the setup inside ``fit`` (partitioning, threads)."""
    speed: dict = {c: [] for c in CONFIGS}
    bare_speed = []
    for _ in range(SPEED_REPEATS):
        bare_speed.append(bare.run(SPEED_EPOCHS))
        for mode, workers in CONFIGS:
            m = MatrixFactorization(rank=RANK, epochs=SPEED_EPOCHS, mode=mode,
                                    workers=workers, seed=SEED)
            c0 = time.process_time()
            m.fit(train)
            cpu = time.process_time() - c0
            speed[(mode, workers)].append((m.run_record_["final"]["ratings_per_s"],
                                           m.updates_ / cpu))
    med = {k: (statistics.median(a for a, _ in v), statistics.median(b for _, b in v))
           for k, v in speed.items()}
    return med, (statistics.median(a for a, _ in bare_speed),
                 statistics.median(b for _, b in bare_speed))


def surprise_curve(train, test) -> dict:
    try:
        import surprise
        from surprise import SVD, Dataset, Reader
    except ImportError as exc:
        return {"error": f"scikit-surprise not importable: {exc}"}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.tsv"
        rows = zip(train.user_ids[train.users], train.item_ids[train.items], train.values,
                   strict=True)
        path.write_text("".join(f"{u}\t{i}\t{v}\n" for u, i, v in rows))
        trainset = Dataset.load_from_file(
            str(path), Reader(line_format="user item rating", sep="\t", rating_scale=(1, 5))
        ).build_full_trainset()
    testset = [(str(u), str(i), float(v)) for u, i, v in
               zip(test.user_ids[test.users], test.item_ids[test.items], test.values,
                   strict=True)]
    curve = []
    for epochs in SURPRISE_EPOCHS:
        times, rmses = [], []
        for rep in range(3):
            algo = SVD(n_factors=RANK, n_epochs=epochs, random_state=rep)
            t0 = time.perf_counter()
            algo.fit(trainset)
            times.append(time.perf_counter() - t0)
            preds = algo.test(testset)
            rmses.append(math.sqrt(np.mean([(p.r_ui - p.est) ** 2 for p in preds])))
        curve.append((statistics.median(times), statistics.median(rmses)))
    best = min(range(len(curve)), key=lambda k: curve[k][1])
    return {"version": surprise.__version__, "params": "SVD defaults (lr 0.005, reg 0.02, "
            f"init_std 0.1), n_factors={RANK}", "epochs": SURPRISE_EPOCHS, "curve": curve,
            "best_test_rmse": curve[best][1], "time_to_best_s": curve[best][0],
            "ratings_per_s": EPOCHS * len(train) / curve[-1][0]}


def time_to(curve, target: float) -> float | None:
    for t, rmse in curve:
        if rmse <= target:
            return t
    return None


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for r in results["stalesync"]:
        t, v = zip(*r["curve"], strict=True)
        ax1.plot(t, v, marker=".", label=f"stalesync {r['mode']} x{r['workers']}")
    s = results["surprise"]
    if "curve" in s:
        t, v = zip(*s["curve"], strict=True)
        ax1.plot(t, v, marker="o", color="black", label="surprise SVD")
        ax1.axhline(s["best_test_rmse"], color="black", ls=":", lw=0.8)
    ax1.set_xscale("log")
    ax1.set_xlabel("wall time (s, log)")
    ax1.set_ylabel("test RMSE")
    ax1.set_title(f"MovieLens 100K, rank {RANK}")
    ax1.legend(fontsize=7)
    ax1.grid(alpha=0.3)
    names = [f"{r['mode']} x{r['workers']}" for r in results["stalesync"]] + ["bare loop"]
    x = np.arange(len(names))
    wall = [r["ratings_per_s_per_core"] / 1e6 for r in results["stalesync"]]
    wall.append(results["bare_ratings_per_s"] / 1e6)
    cpu = [r["ratings_per_cpu_s"] / 1e6 for r in results["stalesync"]]
    cpu.append(results["bare_ratings_per_cpu_s"] / 1e6)
    ax2.bar(x - 0.2, wall, 0.4, label="per wall second / workers")
    ax2.bar(x + 0.2, cpu, 0.4, label="per CPU second")
    ax2.set_xticks(x, names)
    ax2.set_ylabel("M ratings/s")
    ax2.set_title("SGD throughput per core")
    ax2.legend(fontsize=7)
    ax2.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    ratings = load_movielens_100k()
    train, test = ratings.split(0.2, seed=SEED)
    by_config = curves(train, test)
    speed, (bare, bare_cpu) = throughput(train, Bare(train))
    for key, r in by_config.items():
        r["ratings_per_s"], r["ratings_per_cpu_s"] = speed[key]
        r["ratings_per_s_per_core"] = r["ratings_per_s"] / key[1]
        r["per_cpu_s_vs_bare"] = r["ratings_per_cpu_s"] / bare_cpu
    results = {"data": "movielens-100k", "rank": RANK, "epochs": EPOCHS, "repeats": REPEATS,
               "speed_epochs": SPEED_EPOCHS, "speed_repeats": SPEED_REPEATS,
               "train": len(train), "test": len(test), "bare_ratings_per_s": bare,
               "bare_ratings_per_cpu_s": bare_cpu,
               "stalesync": list(by_config.values())}
    results["surprise"] = surprise_curve(train, test)
    target = results["surprise"].get("best_test_rmse")
    for r in results["stalesync"]:
        r["per_core_vs_bare"] = r["ratings_per_s_per_core"] / bare
        if target is not None:
            r["time_to_surprise_best_s"] = time_to(r["curve"], target)
            t = r["time_to_surprise_best_s"]
            r["speedup_vs_surprise"] = (results["surprise"]["time_to_best_s"] / t) if t else None
    write_json("mf_peers", results)
    plot(results, figure_path("mf_peers"))
    print(f"bare loop: {bare / 1e6:.1f}M ratings/s, {bare_cpu / 1e6:.1f}M per CPU-s")
    s = results["surprise"]
    if target is not None:
        print(f"surprise {s['version']}: best test RMSE {target:.4f} after "
              f"{s['time_to_best_s']:.2f}s, {s['ratings_per_s'] / 1e6:.2f}M ratings/s")
    for r in results["stalesync"]:
        sp = r.get("speedup_vs_surprise")
        print(f"{r['mode']:>6} x{r['workers']}: test RMSE {r['test_rmse']:.4f} in "
              f"{r['train_time_s']:.3f}s; {r['ratings_per_s'] / 1e6:.1f}M ratings/s "
              f"({r['per_core_vs_bare']:.0%} of bare per worker), "
              f"{r['ratings_per_cpu_s'] / 1e6:.1f}M per CPU-s ({r['per_cpu_s_vs_bare']:.0%}); "
              f"to surprise's best: {r.get('time_to_surprise_best_s')} s "
              f"({sp and f'{sp:.0f}x'})")


if __name__ == "__main__":
    main()
