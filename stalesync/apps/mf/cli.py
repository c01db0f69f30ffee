"""``stalesync mf``: train matrix factorization on a ratings file or MovieLens 100K."""

from __future__ import annotations

import argparse
import sys

from ...cli import add_job_options, write_outputs
from ...data.ratings import load_ratings
from ...job import run_control_options
from .estimator import MODES, MatrixFactorization
from .sgd import LR_SCHEDULES


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "mf", help="matrix factorization by SGD (SSP tables, DSGD blocks or Fugue)",
        description="Factorize a ratings matrix by SGD. Data: 'movielens-100k' (fetched and "
        "cached) or a 'user item rating [timestamp]' text/CSV/TSV file, or a .mtx file.",
    )
    p.add_argument("--data", required=True, help="movielens-100k, or a ratings file")
    p.add_argument("--mode", choices=MODES, default="ssp",
                   help="ssp: data-parallel on tables; blocks: DSGD; fugue: no-wait blocks")
    p.add_argument("--rank", type=int, default=32)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--lr", type=float, default=0.01, help="initial step size")
    p.add_argument("--lr-schedule", choices=LR_SCHEDULES, default="inverse")
    p.add_argument("--lr-decay", type=float, default=0.1)
    p.add_argument("--reg", type=float, default=0.05, help="L2 on factors")
    p.add_argument("--reg-bias", type=float, default=0.01, help="L2 on biases")
    p.add_argument("--no-biases", action="store_true", help="fit factors only")
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--clocks-per-epoch", type=int, default=1, help="ssp mode: clocks per epoch")
    p.add_argument("--num-blocks", type=int, default=None, help="block modes: d (default workers)")
    p.add_argument("--max-extra-passes", type=int, default=2,
                   help="fugue: cap on extra passes per sub-round")
    p.add_argument("--save", default=None, help="write the model (.npz) here")
    add_job_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    ratings = load_ratings(args.data)
    train, test = ratings.split(args.test_fraction, seed=args.seed)
    model = MatrixFactorization(
        rank=args.rank, epochs=args.epochs, lr=args.lr, lr_schedule=args.lr_schedule,
        lr_decay=args.lr_decay, reg=args.reg, reg_bias=args.reg_bias,
        biases=not args.no_biases, mode=args.mode, workers=args.workers,
        consistency=args.consistency, staleness=args.staleness,
        clocks_per_epoch=args.clocks_per_epoch, num_blocks=args.num_blocks,
        max_extra_passes=args.max_extra_passes, runtime=args.runtime, shards=args.shards,
        stragglers=args.stragglers, seed=args.seed, progress=not args.no_progress,
        **run_control_options(args),
    )
    model.fit(train, eval_set=test)
    record = model.record_
    record["data"] = {"source": str(args.data), "users": ratings.n_users,
                      "items": ratings.n_items, "train": len(train), "test": len(test)}
    write_outputs(record, args)
    if args.save:
        model.save(args.save)
    f = record["final"]
    print(f"mf[{args.mode}] {args.workers} worker(s), rank {args.rank}, {args.epochs} epochs: "
          f"train RMSE {f['train_rmse']:.4f}, test RMSE {f['test_rmse']:.4f}, "
          f"{f['ratings_per_s'] / 1e6:.1f}M ratings/s", file=sys.stdout)
    return 0
