"""``stalesync nn``: an MLP or a small CNN on Fashion-MNIST or a dense feature file, with
any data-parallel strategy."""

from __future__ import annotations

# Imports inside functions: a command loads its estimator, kernels and readers only when
# it runs, so that `stalesync --help` and the other commands do not pay for them.
import argparse
from pathlib import Path
from typing import Any

import numpy as np

from ..command import (
    AppCommand,
    Flags,
    add_strategy_flags,
    check_classes,
    holdout,
    strategy_options,
)


class NNCommand(AppCommand):
    name = "nn"
    help = "neural network classifier (PyTorch CPU), any data-parallel strategy"
    description = ("Train an MLP or a small CNN on fashion-mnist (tested on fashion-mnist-"
                   "test) or on a dense CSV / .npz / IDX file with labels. --strategy "
                   "average|ps|sync|downpour|hogwild chooses how workers combine.")
    parameter_server = True
    epochs_default = 5
    test_fraction_default = 0.0
    data_help = "fashion-mnist, or a labelled CSV / npz / IDX file"

    def add_data_arguments(self, flags: Flags) -> None:
        from ...data.load import FEATURE_FORMATS

        flags.add("data", "--data", required=True, help=self.data_help)
        flags.add("data", "--format", default="auto", choices=FEATURE_FORMATS,
                  help="input format (auto: by content and extension)")
        flags.add("data", "--target", default="-1", help="CSV label column: name or index")
        flags.add("data", "--train-size", type=int, default=None,
                  help="use only the first N training examples")

    def add_model_arguments(self, flags: Flags) -> None:
        from ...strategies import STRATEGY_NAMES
        from .networks import ARCHS

        flags.add("model", "--model", dest="arch", choices=ARCHS, default="mlp",
                  help="mlp: two hidden ReLU layers; cnn: LeNet-style, square images")
        flags.add("model", "--hidden", type=int, default=256, help="hidden units per layer")
        flags.add("model", "--optimizer", choices=("auto", "sgd", "adam"), default="auto",
                  help="the local steps' rule: auto is adam for average and ps, sgd otherwise")
        flags.add("model", "--lr", type=float, default=None,
                  help="step size, local or on the shard (default: 0.001 adam, 0.05 sgd)")
        flags.add("model", "--batch-size", type=int, default=200, help="examples per step")
        flags.add("parallelism", "--strategy",
                  choices=(*STRATEGY_NAMES, "allreduce", "pipeline"), default="average",
                  help="how workers combine (docs/nn.md)")
        add_strategy_flags(flags, examples_per_clock=512, average_every=10, server_update="sgd")
        _add_pipeline_flags(flags)
        flags.add("parallelism", "--compress", default="none",
                  help="none, topk:R, dgc:R[:M], qsgd:B, sign or powersgd:R (with error "
                       "feedback)")

    def make_estimator(self, args: argparse.Namespace) -> Any:
        from .model import NeuralNetClassifier

        if args.train_size is not None and args.train_size < 1:
            from ...errors import ConfigError

            raise ConfigError("--train-size must be >= 1", param="train_size")
        return NeuralNetClassifier(
            arch=args.arch, hidden=args.hidden, epochs=args.epochs, optimizer=args.optimizer,
            lr=args.lr,
            batch_size=args.batch_size, strategy=args.strategy,
            strategy_options=strategy_options(args, *PIPELINE_FLAGS), workers=args.workers,
            consistency=args.consistency, staleness=args.staleness,
            clocks_per_epoch=args.clocks_per_epoch, compress=args.compress, seed=args.seed)

    def load(self, args: argparse.Namespace) -> tuple[Any, Any]:
        from ...data.load import load_features
        from ...errors import DataFormatError

        def dense(name: Any, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
            X, y = load_features(name, args.format, args.target, split)
            if y is None:
                raise DataFormatError(f"{name}: no labels (give --target for a CSV)")
            X = X.toarray() if hasattr(X, "toarray") else np.asarray(X)
            return np.asarray(X, dtype=np.float32), np.asarray(y)

        X, y = dense(args.data)
        check_classes(y, args, args.data, "name the label column with --target NAME or INDEX")
        if args.train_size is not None:
            X, y = X[:args.train_size], y[:args.train_size]
        if args.test is not None:
            return (X, y), dense(args.test, "test")
        if args.data == "fashion-mnist" and not args.test_fraction:
            return (X, y), dense("fashion-mnist-test")
        if Path(args.data).is_dir() and not args.test_fraction:
            from ...data.idx import folder_test_images

            test_images = folder_test_images(args.data)  # MNIST's t10k-* beside train-*
            if test_images is not None:
                return (X, y), dense(test_images)
        if args.test_fraction:
            tr, te = holdout(X.shape[0], args.test_fraction, args.seed)
            return (X[tr], y[tr]), (X[te], y[te])
        return (X, y), None

    def fit(self, estimator: Any, train: Any, test: Any, run: Any,
            args: argparse.Namespace) -> None:
        estimator.fit(train[0], train[1], run=run)

    def summarize(self, model: Any, train: Any, test: Any,
                  args: argparse.Namespace) -> tuple[list[str], dict[str, Any]]:
        f = model.run_record_["final"]
        text = (f"nn[{args.strategy}] {args.arch} ({f['parameters']:,} parameters): train "
                f"accuracy {f['train_accuracy']:.4f}, {args.epochs} epochs, "
                f"{f['examples_per_s']:.3g} examples/s, "
                f"{model.run_record_['workers']} worker(s), "
                f"{model.run_record_['wall_time_s']:.1f} s")
        final: dict[str, Any] = {}
        if test is not None:
            final["test_accuracy"] = float(model.score(test[0], test[1]))
            text += f", test accuracy {final['test_accuracy']:.4f} ({len(test[1])} examples)"
        return [text], final


PIPELINE_FLAGS = ("stages", "micro_batches", "schedule", "replicas", "cuts")


def _add_pipeline_flags(flags: Flags) -> None:
    """``--strategy pipeline``'s options (docs/nn.md)."""
    def cuts(text: str) -> tuple[int, ...]:
        try:
            return tuple(int(part) for part in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected layer indices separated by commas (3,7), got {text!r}") from None

    flags.add("pipeline", "--stages", type=int, default=None,
              help="pipeline: stages the network is cut into, a worker each (default: with "
                   "--workers auto, as many as pay, predicted from the layers' timings; "
                   "else 2)")
    flags.add("pipeline", "--micro-batches", type=int, default=None,
              help="pipeline: micro-batches per mini-batch, dividing --batch-size (default: 1 "
                   "for one stage, else the most up to 4 that divide the batch)")
    flags.add("pipeline", "--schedule", choices=("1f1b", "gpipe"), default="1f1b",
              help="pipeline: 1F1B (fewer activations held) or GPipe's all forwards then "
                   "all backwards")
    flags.add("pipeline", "--replicas", type=int, default=1,
              help="pipeline: data-parallel pipelines (workers = stages x replicas)")
    flags.add("pipeline", "--cuts", type=cuts, default=None,
              help="pipeline: the layers where stages 2.. start (default: balanced by "
                   "measured time)")


COMMAND = NNCommand()
