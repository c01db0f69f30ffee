"""One command-line shape for every app: shared flags, checks before work, shared outputs.

An app's command is an :class:`AppCommand`: it adds its model flags and says how to load
its data, build its estimator and summarise a fit. Everything else is here, the same in
every app:

- the flag vocabulary and ``--help`` groups, in this order: *data* (``--data``,
  ``--format``, ``--test``, ``--test-fraction`` where the app scores a test set), *model*
  (the app's own), *training* (``--epochs``), *parallelism* (``--workers``;
  ``--consistency``, ``--staleness`` for parameter-server apps), *runtime* (``--runtime``,
  ``--address``, ``--shards``, ``--stragglers``, ``--snapshot-every``, ``--snapshot-dir``,
  ``--resume``, ``--max-recoveries``), *output* (``--metrics-out``, ``--plot``,
  ``--save-model``, ``--seed``, ``--no-progress``); every flag shows its default (a
  ``--no-x`` switch says what it does instead);
- before any data is loaded: every estimator parameter, the run settings and every output
  path are checked, and an error names the flag (``--topics``), not the parameter;
- after the fit: the summary lines, the run record (``--metrics-out``), the plot
  (``--plot``, in its extension's format) and the model (``--save-model``).
"""

from __future__ import annotations

import argparse
import sys
from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from ..data.load import describe_labels
from ..errors import ConfigError, DataFormatError
from ..observe.metrics import write_run_record
from ..observe.plots import PLOT_SUFFIXES, plot_run
from ..observe.tensorboard import _modules
from ..persist.files import check_output_path
from ..ps.audit import verdict
from ..ps.consistency import KINDS
from ..runtime.address import check_ray
from ..strategies import check_strategy_consistency
from ..strategies.downpour import SERVER_UPDATES
from .base import DEFAULT_RECOVERIES, RunConfig

GROUPS = ("data", "model", "training", "parallelism", "pipeline", "federated", "runtime",
          "output")


class HelpFormatter(argparse.HelpFormatter):
    """Shows every option's default (0 included), except None and a switch's (``--no-x``
    says what it does; its stored True/False would read backwards)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        switch = isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction,
                                     argparse._StoreConstAction))
        shown = (action.default is not None and action.default is not argparse.SUPPRESS
                 and not switch and not action.required)
        if shown and "%(default)" not in text and action.option_strings:
            text += f"{' ' if text else ''}(default: %(default)s)"
        return text


class Given(argparse._StoreAction):
    """Stores the value and notes in ``args.given_`` that the user typed the flag (so a
    default is told apart from the same value given on purpose)."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: Any = None
                 ) -> None:
        super().__call__(parser, namespace, values, option_string)
        namespace.given_ = frozenset(getattr(namespace, "given_", frozenset()) | {self.dest})


class Flags:
    """Adds arguments to the shared groups and remembers which flag sets which parameter."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser
        self.groups = {name: parser.add_argument_group(name) for name in GROUPS}
        self.flag_of: dict[str, str] = {}

    def add(self, group: str, *names: str, **kwargs: Any) -> None:
        if kwargs.get("action") is None:  # a value: note when the user types it
            if "dest" in kwargs and "metavar" not in kwargs:
                kwargs["metavar"] = names[0].lstrip("-").upper().replace("-", "_")
            kwargs["action"] = Given
        action = self.groups[group].add_argument(*names, **kwargs)
        self.flag_of[action.dest] = names[0]


def holdout(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``--test-fraction``: (train rows, test rows) of a seeded permutation of ``n`` rows."""
    order = np.random.default_rng(seed).permutation(n)
    cut = int(round(n * (1 - fraction)))
    return order[:cut], order[cut:]


STRATEGY_OPTIONS = ("backup_workers", "n_fetch", "n_push", "server_update", "average_every",
                    "threads", "clients", "fraction", "min_clients", "local_epochs", "rounds",
                    "server_lr", "server_momentum", "dropout", "round_deadline_s",
                    "quantize_bits")


def add_strategy_flags(flags: Flags, *, examples_per_clock: int, average_every: int,
                       server_update: str) -> None:
    """The options of the SGD strategies (``docs/linear.md``), the same in every SGD app;
    the defaults an app differs in are its arguments. ``strategy_options`` reads them back."""
    flags.add("parallelism", "--clocks-per-epoch", type=int, default=None,
              help=f"ps: clocks per epoch (default: about {examples_per_clock} examples per "
                   "clock)")
    flags.add("parallelism", "--backup-workers", type=int, default=0,
              help="sync: a step takes the first workers - b gradients")
    flags.add("parallelism", "--n-fetch", type=int, default=1,
              help="downpour: fetch every k steps")
    flags.add("parallelism", "--n-push", type=int, default=1,
              help="downpour: push every k steps")
    flags.add("parallelism", "--server-update", choices=SERVER_UPDATES, default=server_update,
              help="downpour: the shard's update rule")
    flags.add("parallelism", "--average-every", type=int, default=average_every,
              help="average: local steps between averagings (0: once, at the end)")
    flags.add("parallelism", "--threads", type=int, default=2,
              help="hogwild: lock-free threads per worker")
    _add_federated_flags(flags)


def _add_federated_flags(flags: Flags) -> None:
    """``fedavg``'s options (docs/federated.md)."""
    flags.add("federated", "--clients", type=int, default=100,
              help="fedavg: clients (a random split of the examples)")
    flags.add("federated", "--fraction", type=float, default=0.1,
              help="fedavg: share of the clients sampled per round")
    flags.add("federated", "--min-clients", type=int, default=2,
              help="fedavg: at least this many sampled; fewer reports skip the round")
    flags.add("federated", "--local-epochs", type=int, default=1,
              help="fedavg: passes a sampled client makes over its examples")
    flags.add("federated", "--rounds", type=int, default=None,
              help="fedavg: rounds (default: as many as make --epochs passes)")
    flags.add("federated", "--server-lr", type=float, default=1.0, help="fedavg: server step")
    flags.add("federated", "--server-momentum", type=float, default=0.0,
              help="fedavg: FedAvgM's server momentum")
    flags.add("federated", "--dropout", type=float, default=0.0,
              help="fedavg: chance a sampled client fails to report (simulated)")
    flags.add("federated", "--round-deadline-s", type=float, default=None,
              help="fedavg: updates finished later than this are dropped")
    flags.add("federated", "--quantize-bits", type=int, default=None,
              help="fedavg: add the models in fixed point with this many fraction bits")
    flags.add("federated", "--secure-aggregation", action="store_true",
              help="fedavg: masked fixed-point sums (Bonawitz et al.; needs --quantize-bits)")


def strategy_options(args: argparse.Namespace, *also: str) -> dict[str, Any]:
    """The estimator's ``strategy_options``: the strategy flags of :func:`add_strategy_flags`
    the user typed (``also``: an app's own flags that are a strategy's options too, such as
    the linear models' ``--lr``), so the strategy refuses, naming it, one it does not take."""
    given = getattr(args, "given_", frozenset())
    options = {name: getattr(args, name) for name in (*STRATEGY_OPTIONS, *also)
               if name in given}
    if getattr(args, "secure_aggregation", False):
        options["secure_aggregation"] = True
    return options


def check_classes(y: np.ndarray, args: argparse.Namespace, source: str, hint: str) -> None:
    """Refuse a label column with more distinct values than a classifier can mean (over
    max(100, 5% of the rows)): a timestamp or an id taken for the label, that would train
    for minutes and then fail allocating a model per class. ``hint``: what to do instead."""
    rows = int(np.shape(y)[0])
    limit = max(100, rows // 20)
    classes = int(np.unique(y).size)
    if classes > limit:
        column = describe_labels(source, args.format, args.target)
        raise DataFormatError(
            f"{source}: {column} has {classes:,} distinct values in {rows:,} rows, too many "
            f"classes for a classifier (at most {limit:,} here); {hint}")


def workers_value(text: str) -> int | str:
    """``--workers``: a positive int or ``auto``."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive int or 'auto', got {text!r}"
                                         ) from None


def workers_line(record: dict) -> str | None:
    """The summary line saying how many workers ran and why (``workers="auto"``)."""
    decision = record.get("workers_decision")
    if not decision:
        return None
    why = (f"auto: {decision['reason']}" if decision["requested"] == "auto"
           else "as requested")
    return f"workers: {decision['workers']} ({why})"


def staleness_value(text: str) -> int | str:
    """``--staleness``: a non-negative int or ``auto``."""
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int >= 0 or 'auto', got {text!r}"
                                         ) from None
    return value  # a negative one is refused with the other option checks


class AppCommand(ABC):
    """An app's subcommand; subclasses fill in the abstract parts."""

    name: str
    help: str
    description: str
    parameter_server = False  # offers --consistency/--staleness/--shards
    consistency_default: str | None = "ssp"
    epochs_default = 10
    epochs_help = "passes over the training data"
    test_fraction_default = 0.0
    test_flags = True  # --test / --test-fraction (an app that takes no test set: False)
    no_test_why = ""  # test_flags False: why, for the error when one is given

    # -- what an app provides -------------------------------------------------------------
    def add_data_arguments(self, flags: Flags) -> None:
        """``--data`` help and any ``--format`` choices; the default adds both."""
        flags.add("data", "--data", required=True, help=self.data_help)
        flags.add("data", "--format", default="auto", help="input format (auto: by content "
                  "and extension)")

    data_help = "a file or a built-in dataset name"

    @abstractmethod
    def add_model_arguments(self, flags: Flags) -> None:
        """The app's model flags, in the ``model`` group (dest = estimator parameter)."""

    @abstractmethod
    def make_estimator(self, args: argparse.Namespace) -> Any:
        """The estimator with every parameter taken from ``args`` (not fitted)."""

    @abstractmethod
    def load(self, args: argparse.Namespace) -> tuple[Any, Any | None]:
        """(training data, test data or None), after every check passed."""

    def check_args(self, args: argparse.Namespace) -> None:  # noqa: B027 - optional
        """App-specific checks of options that are not estimator parameters."""

    def fit(self, estimator: Any, train: Any, test: Any | None, run: RunConfig,
            args: argparse.Namespace) -> None:
        estimator.fit(train, run=run)

    @abstractmethod
    def summarize(self, estimator: Any, train: Any, test: Any | None,
                  args: argparse.Namespace) -> tuple[list[str], dict[str, Any]]:
        """(lines to print, values to add to the run record's ``final``)."""

    # -- the shared machinery -------------------------------------------------------------
    def register(self, subparsers: Any) -> None:
        parser = subparsers.add_parser(
            self.name, help=self.help, description=self.description,
            formatter_class=HelpFormatter)
        flags = Flags(parser)
        self.add_data_arguments(flags)
        if self.test_flags:
            flags.add("data", "--test", default=None,
                      help="a separate test file (instead of --test-fraction)")
            flags.add("data", "--test-fraction", type=float,
                      default=self.test_fraction_default,
                      help="hold out this share of the training data for testing (0: none)")
        else:
            parser.set_defaults(test=None, test_fraction=0.0)
            parser.absent = dict.fromkeys(("--test", "--test-fraction"),
                                          f"{self.name} takes no test set: {self.no_test_why}")
        self.add_model_arguments(flags)
        flags.add("training", "--epochs", type=int, default=self.epochs_default,
                  help=self.epochs_help)
        flags.add("parallelism", "--workers", type=workers_value, default="auto",
                  help="number of workers, or auto: as many as pay, from measured costs")
        if self.parameter_server:
            flags.add("parallelism", "--consistency", default=self.consistency_default,
                      choices=KINDS, action=Given,
                      help="consistency model of the parameter-server tables (SGD apps: "
                      "--strategy ps; the other strategies run their own)")
            flags.add("parallelism", "--staleness", type=staleness_value, default=None,
                      action=Given,
                      help="SSP/ESSP staleness bound s (default 1; bsp is 0), or 'auto': "
                      "tuned during the run within [0, --max-staleness]")
            flags.add("parallelism", "--max-staleness", type=int, default=None, metavar="S",
                      help="the ceiling of --staleness auto (default 8)")
            flags.add("runtime", "--shards", type=int, default=1, help="server shards")
        flags.add("runtime", "--runtime", default="embedded", choices=["embedded", "ray"],
                  help="embedded (threads) or ray (actors; pip install 'stalesync[ray]')")
        flags.add("runtime", "--address", default=None,
                  help="Ray cluster address (default: start a local Ray for the run)")
        flags.add("runtime", "--stragglers", default=None,
                  help="inject stragglers: 'worker:factor,...' and/or 'p=prob:seconds'")
        flags.add("runtime", "--snapshot-every", type=int, default=None, metavar="K",
                  help="write a consistent snapshot every K clocks (scheduled apps: "
                       "rounds; L-BFGS: iterations; Ray: recover from it)")
        flags.add("runtime", "--snapshot-dir", default=None, help="where snapshots go")
        flags.add("runtime", "--resume", default=None, metavar="DIR",
                  help="restart from the latest complete snapshot in DIR")
        flags.add("runtime", "--max-recoveries", type=int, default=DEFAULT_RECOVERIES,
                  help="Ray: restarts after lost workers before giving up")
        flags.add("runtime", "--min-nodes", type=int, default=1, metavar="N",
                  help="Ray: the fewest nodes the workers run on; after a node loss the job "
                       "waits for a node rather than go below it")
        flags.add("output", "--metrics-out", default=None, help="write the run record (JSON)")
        flags.add("output", "--tensorboard", default=None, metavar="DIR",
                  help="stream scalars to TensorBoard event files in DIR while training")
        flags.add("output", "--plot", default=None,
                  help=f"draw the run ({', '.join(PLOT_SUFFIXES)} by extension)")
        flags.add("output", "--save-model", default=None,
                  help="save the model into this directory (JSON + npz)")
        flags.add("output", "--seed", type=int, default=0, help="random seed")
        flags.add("output", "--no-progress", action="store_true", help="hide the progress bar")
        parser.set_defaults(func=self.main, flag_of=flags.flag_of, command=self.name)

    def run_config(self, args: argparse.Namespace) -> RunConfig:
        return RunConfig(
            runtime=args.runtime, address=args.address, shards=getattr(args, "shards", 1),
            stragglers=args.stragglers, snapshot_every=args.snapshot_every,
            snapshot_dir=args.snapshot_dir, resume=args.resume,
            max_recoveries=args.max_recoveries, progress=not args.no_progress,
            tensorboard=args.tensorboard, max_staleness=getattr(args, "max_staleness", None),
            min_nodes=args.min_nodes,
        )

    def check_everything(self, args: argparse.Namespace) -> tuple[Any, RunConfig]:
        """Every check that can fail before the work: parameters, run settings, paths."""
        if not 0.0 <= args.test_fraction < 1.0:
            raise ConfigError(f"test_fraction must be in [0, 1), got {args.test_fraction}",
                              param="test_fraction")
        if args.test is not None:
            if args.test_fraction not in (0.0, self.test_fraction_default):
                raise ConfigError("give either --test or --test-fraction, not both")
            args.test_fraction = 0.0  # a test file replaces the default held-out share
        if getattr(args, "max_staleness", None) is not None and args.staleness != "auto":
            raise ConfigError("--max-staleness is the ceiling of --staleness auto",
                              param="max_staleness")
        if self.parameter_server and getattr(args, "strategy", None) is not None:
            check_strategy_consistency(args.strategy, args.consistency, args.staleness,
                                       given=getattr(args, "given_", frozenset()))
        estimator = self.make_estimator(args)
        estimator.check_params()
        run = self.run_config(args)
        if args.metrics_out:
            check_output_path(args.metrics_out, "--metrics-out")
        if args.plot:
            check_output_path(args.plot, "--plot", suffixes=PLOT_SUFFIXES)
        if args.save_model:
            check_output_path(args.save_model, "--save-model", directory=True)
        if args.snapshot_dir:
            check_output_path(args.snapshot_dir, "--snapshot-dir", directory=True)
        if args.tensorboard:
            check_output_path(args.tensorboard, "--tensorboard", directory=True)
            _modules()  # the extra is installed
        if args.resume:
            from pathlib import Path

            if not Path(args.resume).expanduser().is_dir():
                raise ConfigError(f"--resume: {args.resume} is not a directory")
        self.check_args(args)
        if run.runtime == "ray":  # last, as it imports Ray: Ray is installed and a cluster
            check_ray(run.address)  # answers at --address
        return estimator, run

    def main(self, args: argparse.Namespace) -> int:
        estimator, run = self.check_everything(args)
        train, test = self.load(args)
        self.fit(estimator, train, test, run, args)
        lines, final = self.summarize(estimator, train, test, args)
        record = estimator.run_record_
        record["final"].update(final)
        extra = [line for line in (workers_line(record), verdict(record)) if line]
        for line in [*lines, *extra]:
            print(line)
        self.write_outputs(estimator, record, args)
        return 0

    def write_outputs(self, estimator: Any, record: dict[str, Any],
                      args: argparse.Namespace) -> None:
        if args.metrics_out:
            write_run_record(record, args.metrics_out)
        if args.plot:
            plot_run(record, args.plot)
        if args.save_model:
            print(f"model saved to {estimator.save(args.save_model)}", file=sys.stderr)


def flag_message(exc: ConfigError, flag_of: dict[str, str]) -> str:
    """The error text with the parameter name replaced by the flag the user typed."""
    import re

    text = str(exc)
    param = getattr(exc, "param", None)
    if param and param in flag_of:
        flag = flag_of[param]
        word = re.compile(rf"(?<![-\w]){re.escape(param)}(?![-\w])")
        return word.sub(flag, text, count=1) if word.search(text) else f"{flag}: {text}"
    return text
