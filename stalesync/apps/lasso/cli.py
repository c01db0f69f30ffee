"""``stalesync lasso``: fit a Lasso on a file (libsvm/CSV), the clothing reviews or
synthetic correlated data, on the model-parallel scheduler."""

from __future__ import annotations

# Imports inside functions: a command loads its estimator, kernels and readers only when
# it runs, so that `stalesync --help` and the other commands do not pay for them.
import argparse
from typing import Any

import numpy as np

from ..command import AppCommand, Flags


class LassoCommand(AppCommand):
    name = "lasso"
    help = "Lasso by coordinate descent on the STRADS-style scheduler"
    description = ("Fit min 1/(2n)||y - Xb||^2 + alpha||b||_1 with scheduled parallel "
                   "coordinate descent (priority + dependency-aware by default). "
                   "--snapshot-every counts scheduler rounds.")
    test_flags = False
    no_test_why = "it reports the training objective (R2 on the training data)"
    epochs_default = 1000
    epochs_help = "at most this many epochs (d coordinate updates each)"
    data_help = ("a libsvm/svmlight or CSV file, 'clothing' (review rating from bag of "
                 "words) or 'synthetic' (correlated features, SSP-paper style)")

    def add_data_arguments(self, flags: Flags) -> None:
        flags.add("data", "--data", required=True, help=self.data_help)
        flags.add("data", "--format", default="auto",
                  choices=["auto", "svmlight", "libsvm", "csv"],
                  help="input format (auto: by content and extension)")
        flags.add("data", "--target", default="-1", help="CSV label column: name or index")
        flags.add("data", "--samples", type=int, default=500, help="synthetic: samples")
        flags.add("data", "--features", type=int, default=10_000, help="synthetic: features")

    def add_model_arguments(self, flags: Flags) -> None:
        from ...scheduler import SCHEDULES

        g = flags.groups["model"]
        alpha = g.add_mutually_exclusive_group()
        alpha.add_argument("--alpha", type=float, default=None, help="L1 strength")
        alpha.add_argument("--alpha-ratio", type=float, default=0.05,
                           help="alpha as a fraction of alpha_max, the smallest all-zero alpha")
        flags.flag_of.update(alpha="--alpha", alpha_ratio="--alpha-ratio")
        flags.add("model", "--no-intercept", dest="fit_intercept", action="store_false",
                  help="fit without an intercept (default: fit one)")
        flags.add("model", "--tol", type=float, default=1e-4,
                  help="stop at duality gap / ||y||^2 below this")
        flags.add("parallelism", "--schedule", default="auto", choices=SCHEDULES,
                  help="auto: sequential sweeps on one worker, else priority-dependency")
        flags.add("parallelism", "--parallel", type=int, default=8,
                  help="coordinates updated per round (P)")
        flags.add("parallelism", "--threshold", type=float, default=0.3,
                  help="dependency check: max |corr| of two columns in one round")
        flags.add("parallelism", "--eta", type=float, default=None,
                  help="priority floor (default: scaled to the data)")
        flags.add("parallelism", "--chunks", type=int, default=2,
                  help="data shards per worker; idle workers take others' shards")

    def make_estimator(self, args: argparse.Namespace) -> Any:
        from .estimator import Lasso

        return Lasso(alpha=1.0 if args.alpha is None else args.alpha,
                     fit_intercept=args.fit_intercept, schedule=args.schedule,
                     parallel=args.parallel, workers=args.workers, tol=args.tol,
                     max_iter=args.epochs, threshold=args.threshold, eta=args.eta,
                     chunks=args.chunks, seed=args.seed)

    def check_args(self, args: argparse.Namespace) -> None:
        from ..base import check_float, check_int

        if args.alpha is None:
            check_float(args.alpha_ratio, "alpha_ratio", 0, low_open=True)
        check_int(args.samples, "samples", 2)
        check_int(args.features, "features", 1)

    def load(self, args: argparse.Namespace) -> tuple[Any, Any]:
        if args.data == "clothing":
            from ...data.clothing import clothing_bow

            X, reviews, _ = clothing_bow()
            return (X, reviews.rating.astype(np.float64)), None
        if args.data == "synthetic":
            from .synthetic import make_correlated_lasso

            X, y, _ = make_correlated_lasso(args.samples, args.features, seed=args.seed)
            return (X, y), None
        from ...data.tabular import load_table

        return load_table(args.data, args.format, args.target), None

    def fit(self, estimator: Any, train: Any, test: Any, run: Any,
            args: argparse.Namespace) -> None:
        from .estimator import alpha_max

        X, y = train
        if args.alpha is None:
            estimator.set_params(
                alpha=args.alpha_ratio * alpha_max(X, y, estimator.fit_intercept))
        estimator.fit(X, y, run=run)

    def summarize(self, model: Any, train: Any, test: Any,
                  args: argparse.Namespace) -> tuple[list[str], dict[str, Any]]:
        X, y = train
        r2 = model.score(X, y)
        f = model.run_record_["final"]
        return [f"lasso: alpha={model.alpha:.6g} objective={model.objective_:.8g} "
                f"gap={model.dual_gap_:.3g} nnz={f['nnz']} R2(train)={r2:.4f} "
                f"updates={model.n_updates_} rounds/s={f['rounds_per_s']:.0f} "
                f"converged={model.converged_} "
                f"wall={model.run_record_['wall_time_s']:.2f}s"], {"train_r2": r2,
                                                                   "data": args.data}


COMMAND = LassoCommand()
