"""``stalesync lasso``: fit a Lasso on a file (libsvm/CSV), the clothing reviews or
synthetic correlated data, on the model-parallel scheduler."""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from ...cli import write_outputs
from ...errors import ConfigError
from ...faults import Stragglers
from ...metrics import build_run_record
from ...scheduler import SCHEDULES
from .estimator import Lasso, alpha_max


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "lasso", help="Lasso by coordinate descent on the STRADS-style scheduler",
        description="Fit min 1/(2n)||y - Xb||^2 + alpha||b||_1 with scheduled parallel "
        "coordinate descent (priority + dependency-aware by default).",
    )
    p.add_argument("--data", required=True,
                   help="a libsvm/svmlight or CSV file, 'clothing' (review rating from bag of "
                   "words) or 'synthetic' (correlated features, SSP-paper style)")
    p.add_argument("--format", default="auto", choices=["auto", "svmlight", "libsvm", "csv"])
    p.add_argument("--target", default="-1", help="CSV label column: name or index (-1)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--alpha", type=float, default=None, help="L1 strength")
    g.add_argument("--alpha-ratio", type=float, default=0.05,
                   help="alpha as a fraction of alpha_max, the smallest all-zero alpha "
                   "(default 0.05)")
    p.add_argument("--schedule", default="priority-dependency", choices=SCHEDULES)
    p.add_argument("--parallel", type=int, default=8, help="coordinates updated per round (P)")
    p.add_argument("--threshold", type=float, default=0.3,
                   help="dependency check: max |corr| of two columns in one round")
    p.add_argument("--eta", type=float, default=None, help="priority floor (default: scaled)")
    p.add_argument("--tol", type=float, default=1e-4, help="duality gap / ||y||^2 to stop at")
    p.add_argument("--max-iter", type=int, default=1000,
                   help="max epochs (d coordinate updates each)")
    p.add_argument("--no-intercept", action="store_true")
    p.add_argument("--samples", type=int, default=500, help="synthetic: samples")
    p.add_argument("--features", type=int, default=10_000, help="synthetic: features")
    p.add_argument("--save", default=None, help="save the model (npz + JSON) here")
    j = p.add_argument_group("scheduler")
    j.add_argument("--workers", type=int, default=2)
    j.add_argument("--chunks", type=int, default=2,
                   help="data shards per worker; idle workers take others' shards")
    j.add_argument("--stragglers", default=None,
                   help="inject stragglers: 'worker:factor,...' and/or 'p=prob:seconds'")
    j.add_argument("--seed", type=int, default=0)
    j.add_argument("--metrics-out", default=None, help="write the run record (JSON) here")
    j.add_argument("--plot", default=None, help="draw objective vs time (PNG)")
    j.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=main)


def load_data(args: argparse.Namespace):
    if args.data == "clothing":
        from ...data.clothing import clothing_bow

        X, reviews, _ = clothing_bow()
        return X, reviews.rating.astype(np.float64)
    if args.data == "synthetic":
        from .synthetic import make_correlated_lasso

        X, y, _ = make_correlated_lasso(args.samples, args.features, seed=args.seed)
        return X, y
    from ...data.tabular import load_table

    return load_table(args.data, args.format, args.target)


def main(args: argparse.Namespace) -> int:
    X, y = load_data(args)
    if args.alpha is None and not args.alpha_ratio > 0:
        raise ConfigError(f"--alpha-ratio must be > 0, got {args.alpha_ratio}")
    alpha = args.alpha if args.alpha is not None else (
        args.alpha_ratio * alpha_max(X, y, not args.no_intercept))
    model = Lasso(alpha=alpha, fit_intercept=not args.no_intercept, schedule=args.schedule,
                  parallel=args.parallel, workers=args.workers, tol=args.tol,
                  max_iter=args.max_iter, threshold=args.threshold, eta=args.eta,
                  chunks=args.chunks, seed=args.seed)
    bar = None
    if not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(desc="lasso", unit="check", dynamic_ncols=True)

    def on_check(entry: dict[str, Any]) -> None:
        if bar is not None:
            bar.update(1)
            bar.set_postfix(objective=f"{entry['objective']:.6g}", gap=f"{entry['gap']:.2e}",
                            nnz=entry["nnz"], updates=entry["updates"])

    start = time.perf_counter()
    try:
        model.fit(X, y, stragglers=Stragglers.parse(args.stragglers, args.seed),
                  on_check=on_check)
    finally:
        if bar is not None:
            bar.close()
    wall = time.perf_counter() - start
    record = run_record(model, args, alpha, wall, X.shape)
    print(f"lasso: alpha={alpha:.6g} objective={model.objective_:.8g} "
          f"gap={model.dual_gap_:.3g} nnz={int(np.count_nonzero(model.coef_))} "
          f"R2={model.score(X, y):.4f} updates={model.n_updates_} "
          f"converged={model.converged_} wall={wall:.2f}s")
    write_outputs(record, args)
    if args.save:
        model.save(args.save)
    return 0


def run_record(model: Lasso, args: argparse.Namespace, alpha: float, wall: float,
               shape: tuple[int, int]) -> dict[str, Any]:
    """The core run record (scheduler rounds are synchronous: BSP, staleness 0); one record
    per worker per convergence check."""
    result = model.result_
    records = []
    prev_busy = np.zeros(args.workers)
    prev_wait = np.zeros(args.workers)
    for h in result.history:
        busy, wait = np.asarray(h["busy_s"]), np.asarray(h["wait_s"])
        for w in range(args.workers):
            records.append({"iteration": h["check"], "worker": w, "time_s": h["time_s"],
                            "duration_s": float(busy[w] - prev_busy[w]),
                            "wait_s": float(wait[w] - prev_wait[w]),
                            "objective": h["objective"]})
        prev_busy, prev_wait = busy, wait
    record = build_run_record(app="lasso", runtime="embedded", consistency="bsp", staleness=0,
                              workers=args.workers, iterations=len(result.history),
                              wall_time_s=wall, metrics=[])
    record["records"] = records
    record["wait_s"] = float(sum(result.worker_wait_s))
    record["bytes_sent"] = int(result.history[-1]["bytes"]) if result.history else 0
    record["objective_name"] = "Lasso objective"
    record["final"] = {
        "data": args.data, "n_samples": int(shape[0]), "n_features": int(shape[1]),
        "alpha": alpha, "schedule": args.schedule, "parallel": args.parallel,
        "parallel_final": result.parallel, "objective": result.objective,
        "duality_gap": result.gap, "converged": result.converged,
        "nnz": int(np.count_nonzero(result.coef)), "updates": result.updates,
        "rounds": result.rounds, "checks": result.checks,
        "worker_busy_s": result.worker_busy_s, "worker_shards": result.worker_shards,
        "history": [{k: h[k] for k in ("updates", "time_s", "objective", "gap", "nnz")}
                    for h in result.history],
    }
    return record
