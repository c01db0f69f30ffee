"""The ``stalesync`` command line: one subcommand per app, all of the same shape.

Each app package ``stalesync.apps.<name>`` has a ``cli`` module whose ``COMMAND`` (an
:class:`~stalesync.apps.command.AppCommand`) registers the subcommand. Errors stalesync
raises on purpose (bad input, bad options, a failed recovery) print one line naming the
flag or the file, and the exit code is 2; ``--debug`` shows the traceback instead.
Ctrl-C or SIGTERM stops the workers, prints where the last complete snapshot is (and how to
resume from it) and exits with 130; every output is written to a temporary file and renamed,
so an interrupted run leaves no half-written file.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import re
import signal
import sys
import threading
import warnings
from functools import partial
from typing import Any, NoReturn

from . import __version__
from .apps import app_names
from .errors import ConfigError, StalesyncError

APPS = app_names()


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``stalesync <cmd>: error: <what>; see stalesync <cmd>
    --help`` (not the whole usage first), naming the closest flag or choice to a misspelt
    one."""

    absent: dict[str, str] = {}  # flags this command lacks on purpose, and why

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {self.suggest(message)}; see {self.prog} --help\n")

    def flags(self) -> list[str]:
        return [s for a in self._actions for s in a.option_strings if s.startswith("--")]

    def suggest(self, message: str) -> str:
        """``message`` with 'did you mean ...?' for unknown flags and invalid choices."""
        if message.startswith("unrecognized arguments: "):
            words = [w.split("=", 1)[0] for w in message.split()[2:] if w.startswith("--")]
            why = [self.absent[w] for w in words if w in self.absent]
            if why:
                return f"{message} ({why[0]})"
            guesses = [(w, m[0]) for w in words
                       if (m := difflib.get_close_matches(w, self.flags(), n=1, cutoff=0.6))]
            if len(guesses) == 1:
                message += f" (did you mean {guesses[0][1]}?)"
            elif guesses:
                message += f" (did you mean {', '.join(f'{m} for {w}' for w, m in guesses)}?)"
            return message
        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)$", message)
        if choice:
            options = re.findall(r"'([^']*)'", choice.group(2))
            match = difflib.get_close_matches(choice.group(1), options, n=1, cutoff=0.6)
            if match:
                message += f" (did you mean {match[0]!r}?)"
        return message


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
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
    from .observe import compare

    compare.register(sub)
    return parser


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def interrupted_message(args: argparse.Namespace) -> str:
    """One line: the run stopped, and where it can resume from (if anywhere)."""
    from .persist.snapshot import latest_snapshot

    where = getattr(args, "snapshot_dir", None) or getattr(args, "resume", None)
    path = latest_snapshot(where) if where else None
    if path is None:
        return ("interrupted; no snapshot to resume from (--snapshot-every K --snapshot-dir "
                "DIR makes a run resumable)")
    return (f"interrupted; the last complete snapshot is {path}: run the same command with "
            f"--resume {where} to go on from it")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # the subcommand's error, with its flags to suggest from
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        where = sub.choices.get(getattr(args, "command", None) or "", parser)
        where.error(f"unrecognized arguments: {' '.join(unknown)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    handled = (signal.SIGINT, signal.SIGTERM)  # both stop the run the same way
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, _interrupt) for sig in handled}
    formatter = warnings.formatwarning  # a warning is one line naming the command
    warnings.formatwarning = partial(_warning_line, args.command)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"stalesync {args.command}: {interrupted_message(args)}", file=sys.stderr)
        return 130
    except StalesyncError as exc:
        if args.debug:
            raise
        from .apps.command import flag_message

        text = flag_message(exc, args.flag_of) if isinstance(exc, ConfigError) else str(exc)
        print(f"stalesync {args.command}: error: {text}", file=sys.stderr)
        return 2
    finally:
        warnings.formatwarning = formatter
        if threading.current_thread() is threading.main_thread():
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _warning_line(command: str, message: Warning | str, category: type[Warning], *_: object,
                  **__: object) -> str:
    return f"stalesync {command}: warning: {message}\n"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
