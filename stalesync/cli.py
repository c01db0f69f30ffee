"""The ``stalesync`` command line: one subcommand per app, all of the same shape.

Each app package ``stalesync.apps.<name>`` has a ``cli`` module whose ``COMMAND`` (an
:class:`~stalesync.apps.command.AppCommand`) registers the subcommand. Errors stalesync
raises on purpose (bad input, bad options, a failed recovery) print one line naming the
flag or the file, and the exit code is 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .errors import ConfigError, StalesyncError

APPS = ("lda", "mf", "lasso", "kmeans", "linear", "nn")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stalesync",
        description="Train iterative ML programs on a bounded-staleness parameter server "
        "or a model-parallel scheduler.",
    )
    parser.add_argument("--version", action="version", version=f"stalesync {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for app in APPS:
        importlib.import_module(f"stalesync.apps.{app}.cli").COMMAND.register(sub)
    from . import compare

    compare.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except StalesyncError as exc:
        if args.debug:
            raise
        from .apps.command import flag_message

        text = flag_message(exc, args.flag_of) if isinstance(exc, ConfigError) else str(exc)
        print(f"stalesync {args.command}: error: {text}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
