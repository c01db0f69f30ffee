"""MF at the SSP paper's Netflix scale: ratings/s per core in every mode against a bare loop.

Synthetic ratings with Netflix's shape (002_*: 480,189 users x 17,770 items, 100M ratings,
rank 100): users' and items' degrees heavy-tailed like Netflix's (log-normal user activity,
Zipf item popularity), ratings 1-5 from a low-rank signal plus noise. ``--ratings`` scales
the count down (the shape stays). Each configuration runs in its own process (peak RSS is
the whole job's: data, workers, tables): every mode (SSP data-parallel, DSGD blocks,
Fugue) with 1 and 2 workers, and a bare compiled SGD loop over the same ratings (one
thread, the kernel the modes call, no parameter server), in stored (user-sorted) order and
in a shuffled order (what SGD needs and every mode uses): the shuffled loop is the floor a
mode's per-core rate is measured against (goal >= 50%); the sorted one shows what memory
locality is worth. Writes bench/results/mf_scale.json and .png.

    flock /tmp/stalesync-bench.lock .venv/bin/python bench/mf_scale.py [--ratings 100000000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, figure_path, write_json  # noqa: E402

USERS, ITEMS, RANK = 480_189, 17_770, 100
SEED_FIGURE = {"system": "SSP paper (002_*), Netflix", "ratings": 100_480_507,
               "users": USERS, "items": ITEMS, "rank": RANK}
MODES = {"ssp": {"mode": "ssp", "consistency": "ssp", "staleness": 1},
         "blocks": {"mode": "blocks"}, "fugue": {"mode": "fugue"}}

CHILD = r"""
import json, resource, sys, time
import numpy as np
path, mode, workers, epochs, rank, opts = sys.argv[1:7]
with np.load(path) as z:
    users, items, values = z["users"], z["items"], z["values"]
out = {}
if mode.startswith("bare"):
    from stalesync.kernels import mf
    rng = np.random.default_rng(0)
    if mode == "bare-shuffled":
        order = rng.permutation(users.size)
        users, items, values = users[order], items[order], values[order]
        del order
    P = (rng.standard_normal((users.max() + 1, int(rank) + 1)) * 0.1).astype(np.float32)
    Q = (rng.standard_normal((items.max() + 1, int(rank) + 1)) * 0.1).astype(np.float32)
    mf.sgd_pass(users[:1000], items[:1000], values[:1000], P, Q, mu=3.6, lr=0.005,
                reg=0.05, reg_bias=0.01)  # compile
    t = time.perf_counter()
    for _ in range(int(epochs)):
        sse = mf.sgd_pass(users, items, values, P, Q, mu=3.6, lr=0.005, reg=0.05,
                          reg_bias=0.01)
    out["ratings_per_s"] = int(epochs) * users.size / (time.perf_counter() - t)
    out["train_rmse"] = float(np.sqrt(sse / users.size))
else:
    from stalesync.apps.mf import MatrixFactorization
    from stalesync.data.ratings import Ratings
    data = Ratings(users, items, values, np.arange(users.max() + 1),
                   np.arange(items.max() + 1), "synthetic-netflix")
    model = MatrixFactorization(rank=int(rank), epochs=int(epochs), lr=0.005,
                                workers=int(workers), seed=0, **json.loads(opts))
    t = time.perf_counter()
    model.fit(data)
    final = model.run_record_["final"]
    out["ratings_per_s"] = final["ratings_per_s"]
    out["train_rmse"] = final["train_rmse"]
    out["fit_s"] = time.perf_counter() - t
out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def netflix_like(n_ratings: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Ratings with Netflix's shape and heavy-tailed degrees, sorted by user."""
    rng = np.random.default_rng(seed)
    user_w = rng.lognormal(0.0, 1.2, USERS)
    item_w = 1.0 / np.arange(1, ITEMS + 1) ** 0.9
    rng.shuffle(item_w)
    users = np.sort(rng.choice(USERS, n_ratings, p=user_w / user_w.sum())).astype(np.int32)
    items = rng.choice(ITEMS, n_ratings, p=item_w / item_w.sum()).astype(np.int32)
    k = 8  # the signal's rank (the model's is RANK)
    U = rng.normal(0, k**-0.25, (USERS, k)).astype(np.float32)
    V = rng.normal(0, k**-0.25, (ITEMS, k)).astype(np.float32)
    values = np.empty(n_ratings, dtype=np.float32)
    step = 10_000_000
    for lo in range(0, n_ratings, step):  # in slices: U[users] for 100M rows is 3 GB
        hi = min(lo + step, n_ratings)
        signal = np.einsum("nk,nk->n", U[users[lo:hi]], V[items[lo:hi]])
        values[lo:hi] = np.clip(np.rint(3.6 + signal + rng.normal(0, 0.5, hi - lo)), 1, 5)
    return {"users": users, "items": items, "values": values}


def run_child(path: Path, mode: str, workers: int, epochs: int, rank: int,
              opts: dict) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), mode, str(workers), str(epochs), str(rank),
         json.dumps(opts)], capture_output=True, text=True, timeout=7200)
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ratings", type=int, default=100_000_000)
    p.add_argument("--rank", type=int, default=RANK)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--modes", nargs="*", default=list(MODES), choices=list(MODES))
    args = p.parse_args()
    data_path = RESULTS / f"mf_scale_data_{args.ratings}.npz"
    if not data_path.exists():
        print(f"generating {args.ratings:,} ratings ...", flush=True)
        tmp = data_path.with_suffix(".tmp.npz")
        np.savez(tmp, **netflix_like(args.ratings))
        tmp.replace(data_path)
    rows = []
    for mode in ("bare", "bare-shuffled"):
        r = {"mode": mode, "workers": 1,
             **run_child(data_path, mode, 1, args.epochs, args.rank, {})}
        rows.append(r)
        print(json.dumps(r), flush=True)
    bare = rows[-1]
    for mode in args.modes:
        for workers in args.workers:
            r = {"mode": mode, "workers": workers,
                 **run_child(data_path, mode, workers, args.epochs, args.rank, MODES[mode])}
            if "ratings_per_s" in r and "ratings_per_s" in bare:
                r["per_core_vs_bare"] = r["ratings_per_s"] / workers / bare["ratings_per_s"]
            rows.append(r)
            print(json.dumps(r), flush=True)
    write_json("mf_scale", {"ratings": args.ratings, "users": USERS, "items": ITEMS,
                            "rank": args.rank, "epochs": args.epochs, "rows": rows,
                            "seed_figure": SEED_FIGURE})
    plot(rows, args)


def plot(rows: list[dict], args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if "error" not in r]
    labels = [f"{r['mode']} x{r['workers']}" for r in ok]
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.45 * len(ok) + 2))
    axes[0].barh(labels, [r["ratings_per_s"] / r["workers"] / 1e6 for r in ok], color="C0")
    axes[0].set_xlabel("ratings / s per core (millions)")
    axes[1].barh(labels, [r["peak_rss_mb"] / 1024 for r in ok], color="C1")
    axes[1].set_xlabel("peak RSS (GB)")
    for ax in axes:
        ax.invert_yaxis()
        ax.grid(alpha=0.3, axis="x")
    fig.suptitle(f"MF, Netflix shape ({USERS:,} x {ITEMS:,}), {args.ratings:,} ratings, "
                 f"rank {args.rank}")
    fig.tight_layout()
    fig.savefig(figure_path("mf_scale"), dpi=100)


if __name__ == "__main__":
    main()
