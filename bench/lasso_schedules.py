"""Lasso schedules side by side: objective vs coordinate updates and vs wall time.

One command (run it under the shared benchmark lock)::

    flock /tmp/stalesync-bench.lock .venv/bin/python bench/lasso_schedules.py

Datasets: the clothing reviews (bag of words -> rating, 23,486 x 13,602 sparse) and
synthetic correlated data (few samples, many features, correlated groups). Schedules:
sequential (the estimator's default on one worker: compiled sweeps, on one worker), cyclic,
Shotgun with P = 2, 4, 8, priority (P = 8) and priority + dependency (P = 8, and at P = 2, 4
to compare with Shotgun at the same P), all with ``--workers`` workers; and
scikit-learn's ``Lasso`` to the same tolerance. Each configuration runs ``--repeats`` times
(different seeds); we report medians. Writes ``bench/results/lasso_schedules.json`` and
``.png``.

Measured per run: coordinate updates and wall time to reach 1e-3 relative suboptimality
(``(f - f*) / f*``, f* the best objective any solver found, including a tight
scikit-learn run), and wall time to the duality-gap tolerance ``--tol`` (scikit-learn's
criterion). Objectives are taken at convergence checks (full passes over the data that the
solver makes anyway: every d updates for cyclic/Shotgun - here every d/4 for a finer curve -
and adaptively for the priority schedules); the number of full passes is reported too,
because the priority schedules use them to refresh priorities.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stalesync.apps.lasso import Lasso, alpha_max, make_correlated_lasso  # noqa: E402
from stalesync.persist.files import atomic_write_bytes  # noqa: E402

RESULTS = ROOT / "bench" / "results"
CONFIGS = [  # (label, schedule, P); "sequential" is the default on one worker
    ("sequential (1 worker)", "sequential", 1),
    ("cyclic", "cyclic", 1),
    ("shotgun P=2", "random", 2),
    ("shotgun P=4", "random", 4),
    ("shotgun P=8", "random", 8),
    ("priority P=8", "priority", 8),
    ("prio+dep P=2", "priority-dependency", 2),
    ("prio+dep P=4", "priority-dependency", 4),
    ("prio+dep P=8", "priority-dependency", 8),
]


def load(name: str, args: argparse.Namespace):
    if name == "clothing":
        from stalesync.data.clothing import clothing_bow

        X, reviews, _ = clothing_bow()
        return X.tocsc(), reviews.rating.astype(np.float64)
    X, y, _ = make_correlated_lasso(args.syn_samples, args.syn_features, group_size=10,
                                    rho=0.9, n_informative=20, seed=0)
    return X, y


def sklearn_run(X, y, alpha: float, tol: float):
    from sklearn.linear_model import Lasso as SkLasso

    t = time.perf_counter()
    model = SkLasso(alpha=alpha, tol=tol, max_iter=100_000).fit(X, y)
    return model, time.perf_counter() - t


def objective(X, y, coef, intercept, alpha):
    r = y - np.asarray(X @ coef).ravel() - intercept
    return float(r @ r / (2 * len(y)) + alpha * np.abs(coef).sum())


def first_reach(history, f_star, target):
    for h in history:
        if (h["objective"] - f_star) / f_star <= target:
            return h["updates"], h["time_s"], h["passes"]
    return None, None, None


def run_config(X, y, alpha, schedule, parallel, args, seed):
    d = X.shape[1]
    check = None if "priority" in schedule or schedule == "sequential" else max(d // 4, 1)
    workers = 1 if schedule == "sequential" else args.workers  # nothing to coordinate
    model = Lasso(alpha=alpha, tol=args.tol, schedule=schedule, parallel=parallel,
                  workers=workers, max_iter=100_000, seed=seed)
    t = time.perf_counter()
    model.fit(X, y, check_every=check, max_seconds=args.max_seconds)
    wall = time.perf_counter() - t
    return model, wall


def bench_dataset(name: str, args: argparse.Namespace) -> dict:
    X, y = load(name, args)
    alpha = args.alpha_ratio * alpha_max(X, y)
    print(f"[{name}] {X.shape[0]} x {X.shape[1]}, alpha = {alpha:.5g}", flush=True)
    ref, _ = sklearn_run(X, y, alpha, 1e-9)  # f*: a tight reference
    f_star = objective(X, y, ref.coef_, ref.intercept_, alpha)
    sk_times = []
    for _ in range(args.repeats):
        sk, secs = sklearn_run(X, y, alpha, args.tol)
        sk_times.append(secs)
    sk_obj = objective(X, y, sk.coef_, sk.intercept_, alpha)
    out = {"n_samples": X.shape[0], "n_features": X.shape[1], "alpha": alpha,
           "nnz_solution": int(np.count_nonzero(ref.coef_)),
           "sklearn": {"wall_s_median": statistics.median(sk_times), "wall_s": sk_times,
                       "n_iter": int(sk.n_iter_), "objective": sk_obj,
                       "updates": int(sk.n_iter_) * X.shape[1]},
           "schedules": {}}
    print(f"  sklearn: {statistics.median(sk_times):.3f} s ({sk.n_iter_} epochs)", flush=True)
    runs_all = {}
    for label, schedule, parallel in CONFIGS:
        runs = []
        for rep in range(args.repeats):
            model, wall = run_config(X, y, alpha, schedule, parallel, args, seed=rep)
            runs.append((model, wall))
            f_star = min(f_star, model.objective_)
        runs_all[label] = (schedule, parallel, runs)
    out["f_star"] = f_star
    for label, (schedule, parallel, runs) in runs_all.items():
        per = []
        for model, wall in runs:
            u3, t3, p3 = first_reach(model.history_, f_star, 1e-3)
            per.append({"updates_to_1e-3": u3, "time_to_1e-3_s": t3, "passes_to_1e-3": p3,
                        "converged": model.converged_, "wall_s": wall,
                        "updates": model.n_updates_, "passes": len(model.history_),
                        "parallel_final": model.result_.parallel,
                        "objective": model.objective_})

        def med(key, per=per):
            vals = [p[key] for p in per if p[key] is not None]
            return statistics.median(vals) if len(vals) == len(per) else None

        conv = [p["wall_s"] for p in per if p["converged"]]
        # a run that never got there (time cap) needs more than the updates it made:
        # use those as a lower bound, so a ratio against it is an upper bound
        bound = statistics.median(p["updates_to_1e-3"] if p["updates_to_1e-3"] is not None
                                  else p["updates"] for p in per)
        censored = any(p["updates_to_1e-3"] is None for p in per)
        entry = {
            "schedule": schedule, "parallel": parallel, "runs": per,
            "updates_to_1e-3_median": med("updates_to_1e-3"),
            "time_to_1e-3_s_median": med("time_to_1e-3_s"),
            "passes_to_1e-3_median": med("passes_to_1e-3"),
            "updates_to_1e-3_lower_bound": bound, "censored": censored,
            "wall_to_tol_s_median": statistics.median(conv) if len(conv) == len(per) else None,
            "curve": [{k: h[k] for k in ("updates", "time_s", "objective", "passes")}
                      for h in runs[0][0].history_],
        }
        out["schedules"][label] = entry
        print(f"  {label:14s} updates->1e-3 {entry['updates_to_1e-3_median']} "
              f"(>= {bound}{' censored' if censored else ''})  "
              f"time->1e-3 {_fmt(entry['time_to_1e-3_s_median'])}  "
              f"wall->tol {_fmt(entry['wall_to_tol_s_median'])}  "
              f"P_final {[p['parallel_final'] for p in per]}", flush=True)
    out["goals"] = goals(out)
    return out


def _fmt(x):
    return "n/a" if x is None else f"{x:.3f}s"


def goals(out: dict) -> dict:
    s = out["schedules"]
    res = {}
    for p in (2, 4, 8):
        pd, sg = s[f"prio+dep P={p}"], s[f"shotgun P={p}"]
        a, b = pd["updates_to_1e-3_median"], sg["updates_to_1e-3_lower_bound"]
        key = f"P={p}: prio+dep updates / shotgun updates to 1e-3"
        if sg["censored"]:
            key += " (upper bound: shotgun stopped, time cap, before reaching 1e-3)"
        res[key] = None if a is None or not b else a / b
    for label in ("prio+dep P=8", "sequential (1 worker)"):
        ours = s[label]["wall_to_tol_s_median"]
        res[f"{label} wall to tol / sklearn wall"] = (
            None if ours is None else ours / out["sklearn"]["wall_s_median"])
    return res


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["datasets"])
    fig, axes = plt.subplots(len(names), 2, figsize=(13, 4.5 * len(names)), squeeze=False)
    for row, name in enumerate(names):
        data = results["datasets"][name]
        f_star = data["f_star"]
        for label, entry in data["schedules"].items():
            c = entry["curve"]
            sub = [min(max((h["objective"] - f_star) / f_star, 1e-10), 1e3) for h in c]
            axes[row, 0].plot([h["updates"] + 1 for h in c], sub, marker=".", label=label)
            axes[row, 1].plot([h["time_s"] for h in c], sub, marker=".", label=label)
        axes[row, 1].axvline(data["sklearn"]["wall_s_median"], color="k", ls="--",
                             label="sklearn (to tol)")
        for col, xl in enumerate(("coordinate updates + 1", "wall time (s)")):
            ax = axes[row, col]
            ax.set_yscale("log")
            ax.set_xscale("log" if col == 0 else "linear")
            ax.axhline(1e-3, color="grey", lw=0.8)
            ax.set_xlabel(xl)
            ax.set_ylabel("relative suboptimality (clipped to 1e3)")
            ax.set_title(f"{name}: {data['n_samples']}x{data['n_features']}")
            ax.grid(alpha=0.3)
        axes[row, 1].legend(fontsize=7)
    fig.suptitle(f"Lasso schedules ({results['workers']} workers)")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--tol", type=float, default=1e-4)
    p.add_argument("--alpha-ratio", type=float, default=0.05)
    p.add_argument("--max-seconds", type=float, default=8.0, help="cap per run")
    p.add_argument("--syn-samples", type=int, default=200)
    p.add_argument("--syn-features", type=int, default=2000)
    p.add_argument("--datasets", default="clothing,synthetic")
    args = p.parse_args()
    start = time.perf_counter()
    results = {"workers": args.workers, "repeats": args.repeats, "tol": args.tol,
               "alpha_ratio": args.alpha_ratio, "max_seconds_per_run": args.max_seconds,
               "machine": platform.platform(), "python": platform.python_version(),
               "datasets": {}}
    for name in args.datasets.split(","):
        results["datasets"][name] = bench_dataset(name, args)
    results["total_s"] = time.perf_counter() - start
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(RESULTS / "lasso_schedules.json",
                       json.dumps(results, indent=1).encode())
    plot(results, RESULTS / "lasso_schedules.png")
    print(json.dumps({n: d["goals"] for n, d in results["datasets"].items()}, indent=1))
    print(f"total {results['total_s']:.1f} s -> {RESULTS}/lasso_schedules.{{json,png}}")


if __name__ == "__main__":
    main()
