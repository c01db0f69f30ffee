"""The ``stalesync`` command line. Each app registers its own subcommand.

An app package ``stalesync.apps.<name>`` with a ``cli`` module exposing
``register(subparsers)`` gets a subcommand; the handler it sets as ``func`` returns an exit
code. Library errors (bad input, bad options) print one clear line, not a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .errors import StalesyncError

APPS = ("lda", "lasso", "mf", "demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stalesync",
        description="Train iterative ML programs on a bounded-staleness parameter server.",
    )
    parser.add_argument("--version", action="version", version=f"stalesync {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for app in APPS:
        try:
            module = importlib.import_module(f"stalesync.apps.{app}.cli")
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith(f"stalesync.apps.{app}"):
                continue  # app not present in this build
            raise
        module.register(sub)
    return parser


def add_job_options(parser: argparse.ArgumentParser, default_workers: int = 2) -> None:
    """Options every parameter-server job shares (runtime, consistency, metrics)."""
    g = parser.add_argument_group("parameter server")
    g.add_argument("--workers", type=int, default=default_workers, help="number of workers")
    g.add_argument(
        "--runtime",
        default="embedded",
        choices=["embedded", "ray"],
        help="embedded (threads, default) or ray (actors; pip install 'stalesync[ray]')",
    )
    g.add_argument(
        "--address", default=None, help="Ray cluster address (default: start a local Ray)"
    )
    g.add_argument("--consistency", default="ssp", choices=["bsp", "ssp", "essp", "async"])
    g.add_argument(
        "--staleness", type=int, default=None, help="SSP/ESSP staleness bound s (default 1)"
    )
    g.add_argument("--shards", type=int, default=1, help="server shards")
    g.add_argument(
        "--stragglers",
        default=None,
        help="inject stragglers: 'worker:factor,...' and/or 'p=prob:seconds'",
    )
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--metrics-out", default=None, help="write the run record (JSON) here")
    g.add_argument("--plot", default=None, help="draw objective vs time + staleness (PNG)")
    g.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    g.add_argument(
        "--snapshot-every", type=int, default=None, metavar="K",
        help="write a consistent snapshot every K clocks (Ray: recover from it automatically)",
    )
    g.add_argument("--snapshot-dir", default=None, help="where snapshots go (npz + JSON)")
    g.add_argument(
        "--resume", default=None, metavar="DIR",
        help="restart from the latest complete snapshot in DIR (or that snapshot directory)",
    )


def write_outputs(record: dict, args: argparse.Namespace) -> None:
    """Write a finished run's ``--metrics-out`` record and ``--plot`` figure, if asked."""
    from .metrics import write_run_record
    from .plots import plot_run

    if args.metrics_out:
        write_run_record(record, args.metrics_out)
    if args.plot:
        plot_run(record, args.plot)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except StalesyncError as exc:
        print(f"stalesync {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
