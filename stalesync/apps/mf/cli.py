"""``stalesync mf``: matrix factorization on a ratings file or MovieLens 100K."""

from __future__ import annotations

# Imports inside functions: a command loads its estimator, kernels and readers only when
# it runs, so that `stalesync --help` and the other commands do not pay for them.
import argparse
from typing import Any

from ..command import AppCommand, Flags


class MFCommand(AppCommand):
    name = "mf"
    help = "matrix factorization by SGD (SSP tables, DSGD blocks or Fugue)"
    description = ("Factorize a ratings matrix by SGD. Data: 'movielens-100k' (fetched and "
                   "cached), a 'user item rating [timestamp]' text/CSV/TSV file, or a .mtx "
                   "file. --consistency/--staleness/--clocks-per-epoch apply to --mode ssp; "
                   "--num-blocks/--max-extra-passes to the block modes.")
    parameter_server = True
    consistency_default = None  # mode ssp: ssp; block modes take none
    epochs_default = 20
    test_fraction_default = 0.2
    data_help = "movielens-100k, or a ratings file"

    def add_data_arguments(self, flags: Flags) -> None:
        from ...data.ratings import RATING_FORMATS

        flags.add("data", "--data", required=True, help=self.data_help)
        flags.add("data", "--format", default="auto", choices=RATING_FORMATS,
                  help="mtx: MatrixMarket; text: 'user item rating' lines")

    def add_model_arguments(self, flags: Flags) -> None:
        from .estimator import MODES
        from .sgd import LR_SCHEDULES

        flags.add("model", "--mode", choices=MODES, default="ssp",
                  help="ssp: data-parallel on tables; blocks: DSGD; fugue: no-wait blocks")
        flags.add("model", "--rank", type=int, default=32,
                  help="latent factors per user and per item")
        flags.add("model", "--lr", type=float, default=0.01, help="initial step size")
        flags.add("model", "--lr-schedule", choices=LR_SCHEDULES, default="inverse",
                  help="step size per epoch: constant lr, inverse lr / (1 + decay epoch), "
                  "exponential lr decay^epoch")
        flags.add("model", "--lr-decay", type=float, default=0.1,
                  help="the schedule's decay")
        flags.add("model", "--reg", type=float, default=0.05, help="L2 on factors")
        flags.add("model", "--reg-bias", type=float, default=0.01, help="L2 on biases")
        flags.add("model", "--no-biases", dest="biases", action="store_false",
                  help="fit factors only")
        flags.add("parallelism", "--clocks-per-epoch", type=int, default=None,
                  help="ssp mode: clocks per epoch (default 1)")
        flags.add("parallelism", "--num-blocks", type=int, default=None,
                  help="block modes: d x d blocks (default: workers)")
        flags.add("parallelism", "--max-extra-passes", type=int, default=2,
                  help="fugue: cap on extra passes per sub-round")

    def make_estimator(self, args: argparse.Namespace) -> Any:
        from .estimator import MatrixFactorization

        return MatrixFactorization(
            rank=args.rank, epochs=args.epochs, lr=args.lr, lr_schedule=args.lr_schedule,
            lr_decay=args.lr_decay, reg=args.reg, reg_bias=args.reg_bias, biases=args.biases,
            mode=args.mode, workers=args.workers, consistency=args.consistency,
            staleness=args.staleness, clocks_per_epoch=args.clocks_per_epoch,
            num_blocks=args.num_blocks, max_extra_passes=args.max_extra_passes,
            seed=args.seed)

    def check_args(self, args: argparse.Namespace) -> None:
        if args.mode != "ssp" and args.shards != 1:
            from ...errors import ConfigError

            raise ConfigError("shards applies to --mode ssp (block modes use no server)",
                              param="shards")

    def load(self, args: argparse.Namespace) -> tuple[Any, Any]:
        from ...data.ratings import load_ratings

        ratings = load_ratings(args.data, args.format)
        if args.test is not None:
            return ratings, load_ratings(args.test, args.format)
        if args.test_fraction:
            return ratings.split(args.test_fraction, seed=args.seed)
        return ratings, None

    def fit(self, estimator: Any, train: Any, test: Any, run: Any,
            args: argparse.Namespace) -> None:
        estimator.fit(train, eval_set=test, run=run)

    def summarize(self, model: Any, train: Any, test: Any,
                  args: argparse.Namespace) -> tuple[list[str], dict[str, Any]]:
        f = model.run_record_["final"]
        model.run_record_["data"] = {"source": str(args.data), "train": len(train),
                                     "test": len(test) if test is not None else 0}
        test_text = f", test RMSE {f['test_rmse']:.4f}" if f["test_rmse"] is not None else ""
        workers = model.run_record_["workers"]
        return [f"mf[{args.mode}] {workers} worker(s), rank {args.rank}, {args.epochs} "
                f"epochs: final train RMSE {f['train_rmse']:.4f}{test_text}, "
                f"{f['ratings_per_s'] / 1e6:.1f}M ratings/s"], {}


COMMAND = MFCommand()
