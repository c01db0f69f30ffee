"""MF training modes under a straggler: SSP data-parallel (s = 0, 2, 8), DSGD blocks, Fugue.

Two workers; worker 1 is made 2x slower (``Stragglers(slow={1: 2.0})``: every piece of its
compute is followed by an equal sleep). Test RMSE vs wall time for each mode, median of
several interleaved runs (SSP with 4 clocks per epoch), on two data sets: synthetic low-rank
ratings (2M ratings, enough compute per sub-round that sleeping and barriers are
measurable) and MovieLens 100K.
Writes bench/results/mf_modes.json and .png. Run under the shared bench lock:

    flock /tmp/stalesync-bench.lock .venv/bin/python bench/mf_modes.py
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import figure_path, write_json  # noqa: E402

from stalesync.apps.base import RunConfig  # noqa: E402
from stalesync.apps.mf import MatrixFactorization  # noqa: E402
from stalesync.data.ratings import Ratings, load_movielens_100k  # noqa: E402
from stalesync.faults import Stragglers  # noqa: E402

WORKERS, REPEATS, SEED = 2, 5, 0
STRAGGLER = Stragglers(slow={1: 2.0})
SSP_CLOCKS = {"clocks_per_epoch": 4}  # staleness s = s/4 of an epoch
CONFIGS = {
    "ssp s=0": {"mode": "ssp", "consistency": "ssp", "staleness": 0, **SSP_CLOCKS},
    "ssp s=2": {"mode": "ssp", "consistency": "ssp", "staleness": 2, **SSP_CLOCKS},
    "ssp s=8": {"mode": "ssp", "consistency": "ssp", "staleness": 8, **SSP_CLOCKS},
    "dsgd": {"mode": "blocks"},
    "fugue": {"mode": "fugue"},
}
DATASETS = {
    "synthetic-2M": {"rank": 16, "epochs": 15, "lr": 0.04, "reg": 0.02, "reg_bias": 0.0},
    "movielens-100k": {"rank": 32, "epochs": 20},
}

YLIM = {"synthetic-2M": (0.33, 0.75), "movielens-100k": (0.91, 1.0)}


def synthetic(n_users=20_000, n_items=10_000, rank=8, per_user=100, noise=0.3,
              seed=0) -> Ratings:
    rng = np.random.default_rng(seed)
    U = rng.normal(0, rank**-0.25, (n_users, rank)).astype(np.float32)
    V = rng.normal(0, rank**-0.25, (n_items, rank)).astype(np.float32)
    u = np.repeat(np.arange(n_users), per_user)
    i = rng.integers(0, n_items, u.size)
    r = 3 + np.einsum("nk,nk->n", U[u], V[i]) + rng.normal(0, noise, u.size)
    return Ratings(u.astype(np.int32), i.astype(np.int32), r.astype(np.float32),
                   np.arange(n_users), np.arange(n_items), "synthetic")


def fit_once(train, test, params: dict, extra: dict) -> dict:
    m = MatrixFactorization(workers=WORKERS, seed=SEED, **params, **extra)
    m.fit(train, eval_set=test, run=RunConfig(stragglers=STRAGGLER))
    f = m.run_record_["final"]
    curve = [(h["time_s"], h["test_rmse"]) for h in m.history_]
    curve.append((f["train_time_s"], f["test_rmse"]))  # the final tables
    return {"curve": curve, "final": f, "wait_s": m.run_record_.get("wait_s", 0.0),
            "extra_updates": m.run_record_.get("extra_updates", 0)}


def summarize(runs: list[dict]) -> dict:
    n = min(len(r["curve"]) for r in runs)
    return {
        "curve": [(statistics.median(r["curve"][k][0] for r in runs),
                   statistics.median(r["curve"][k][1] for r in runs)) for k in range(n)],
        "test_rmse": statistics.median(r["final"]["test_rmse"] for r in runs),
        "train_time_s": statistics.median(r["final"]["train_time_s"] for r in runs),
        "updates": statistics.median(r["final"]["updates"] for r in runs),
        "wait_s": statistics.median(r["wait_s"] for r in runs),
        "extra_updates": statistics.median(r["extra_updates"] for r in runs),
    }


def time_to(curve, target):
    return next((t for t, v in curve if v <= target), None)


def rmse_at(curve, t_end):
    seen = [v for t, v in curve if t <= t_end]
    return min(seen) if seen else None


def bench_dataset(name: str, ratings: Ratings) -> dict:
    train, test = ratings.split(0.2, seed=SEED)
    params = DATASETS[name]
    fit_once(train, test, {**params, "epochs": 1}, CONFIGS["ssp s=0"])  # warm the JIT caches
    runs: dict = {label: [] for label in CONFIGS}
    for _ in range(REPEATS):  # interleaved, so load from other jobs hits every mode alike
        for label, extra in CONFIGS.items():
            runs[label].append(fit_once(train, test, params, extra))
    out = {label: summarize(r) for label, r in runs.items()}
    # within 2% of the best test RMSE barriered DSGD reaches in its full run
    target = 1.02 * min(v for _, v in out["dsgd"]["curve"])
    t_dsgd = out["dsgd"]["train_time_s"]
    for r in out.values():
        r["time_to_target_s"] = time_to(r["curve"], target)
        r["best_rmse_by_dsgd_end"] = rmse_at(r["curve"], t_dsgd)
    return {"params": params, "train": len(train), "test": len(test), "target_rmse": target,
            "configs": out}


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["datasets"])
    fig, axes = plt.subplots(1, len(names), figsize=(6 * len(names), 4.5))
    for ax, name in zip(np.atleast_1d(axes), names, strict=True):
        d = results["datasets"][name]
        for label, r in d["configs"].items():
            t, v = zip(*r["curve"], strict=True)
            ax.plot(t, v, marker=".", label=label)
        ax.axhline(d["target_rmse"], color="gray", ls=":", lw=0.8,
                   label="target (DSGD best + 2%)")
        ax.set_xlabel("wall time (s)")
        ax.set_ylabel("test RMSE")
        ax.set_title(f"{name}, 2 workers, worker 1 2x slower")
        ax.set_ylim(*YLIM[name])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    data = {"synthetic-2M": synthetic(), "movielens-100k": load_movielens_100k()}
    results = {"workers": WORKERS, "straggler": {"worker": 1, "factor": 2.0},
               "repeats": REPEATS, "datasets": {}}
    for name, ratings in data.items():
        results["datasets"][name] = bench_dataset(name, ratings)
    write_json("mf_modes", results)
    plot(results, figure_path("mf_modes"))
    for name, d in results["datasets"].items():
        print(f"{name}: target test RMSE {d['target_rmse']:.4f}")
        for label, r in d["configs"].items():
            ttt = r["time_to_target_s"]
            print(f"  {label:>8}: to target {ttt if ttt is None else round(ttt, 3)} s; final "
                  f"{r['test_rmse']:.4f} in {r['train_time_s']:.3f}s, best by DSGD's end "
                  f"{r['best_rmse_by_dsgd_end']:.4f}, updates {r['updates']:.0f}, "
                  f"wait {r['wait_s']:.3f}s")


if __name__ == "__main__":
    main()
