"""``stalesync linear``: linear SVM / logistic regression / linear regression by SGD, with
any data-parallel strategy."""

from __future__ import annotations

# Imports inside functions: a command loads its estimator, kernels and readers only when
# it runs, so that `stalesync --help` and the other commands do not pay for them.
import argparse
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


class LinearCommand(AppCommand):
    name = "linear"
    help = "linear SVM, logistic and linear regression by SGD, any data-parallel strategy"
    description = ("Train a linear model by SGD on sparse data: libsvm/svmlight (0- or "
                   "1-based ids, qid ignored), CSV with a label column (--target), a .npz "
                   "(X [and y]), or a built-in dataset (adult, clothing-recommend). "
                   "--strategy ps|sync|downpour|average|hogwild chooses how workers combine.")
    parameter_server = True
    epochs_default = 10
    test_fraction_default = 0.2
    data_help = "a libsvm / CSV / npz file, or adult / clothing-recommend"

    def add_data_arguments(self, flags: Flags) -> None:
        from ...data.load import FEATURE_FORMATS

        flags.add("data", "--data", required=True, help=self.data_help)
        flags.add("data", "--format", default="auto", choices=FEATURE_FORMATS,
                  help="input format (auto: by content and extension)")
        flags.add("data", "--target", default="-1",
                  help="CSV label column: name or index")

    def add_model_arguments(self, flags: Flags) -> None:
        from ...kernels.linear import CLASSIFICATION, REGRESSION
        from ...strategies import STRATEGY_NAMES
        from .model import LEARNING_RATES, MULTI_CLASS, PENALTIES
        from .solvers import SOLVERS

        flags.add("model", "--loss", choices=CLASSIFICATION + REGRESSION, default="hinge",
                  help="hinge: linear SVM; log_loss: logistic; regression losses fit y")
        flags.add("model", "--penalty", choices=PENALTIES, default="l2",
                  help="regularisation (elasticnet: --l1-ratio mix of l1 and l2)")
        flags.add("model", "--alpha", type=float, default=1e-4, help="regularisation strength")
        flags.add("model", "--l1-ratio", type=float, default=0.15, help="elasticnet mix")
        flags.add("model", "--learning-rate", choices=LEARNING_RATES, default="optimal",
                  help="optimal: 1/(alpha (t + t0)), t0 chosen on a sample")
        flags.add("model", "--eta0", type=float, default=0.01,
                  help="step size (constant, invscaling)")
        flags.add("model", "--average", action="store_true",
                  help="averaged SGD (with --strategy average)")
        flags.add("model", "--multi-class", choices=MULTI_CLASS, default="ovr",
                  help="ovr: one model per class; multinomial: softmax (--loss log_loss)")
        flags.add("model", "--hash-features", type=int, default=None,
                  help="hash the columns into this many buckets")
        flags.add("model", "--solver", choices=SOLVERS, default="sgd",
                  help="sgd: any --strategy; lbfgs: L-BFGS through the tables (smooth losses); "
                       "normal: least squares / ridge by the normal equations")
        flags.add("model", "--max-iter", type=int, default=100, help="lbfgs: iterations")
        flags.add("model", "--tol", type=float, default=1e-4,
                  help="lbfgs: stop when the projected gradient is below this")
        flags.add("parallelism", "--strategy", choices=STRATEGY_NAMES, default="average",
                  help="how workers combine (docs/linear.md)")
        flags.add("parallelism", "--batch-size", type=int, default=64,
                  help="sync/downpour: examples per step; average: per local step")
        flags.add("parallelism", "--lr", type=float, default=0.1,
                  help="sync/downpour: the server's step size")
        flags.add("parallelism", "--lr-decay", type=float, default=0.0,
                  help="sync/downpour sgd: lr / (1 + decay t)")
        add_strategy_flags(flags, examples_per_clock=256, average_every=0,
                           server_update="adagrad")

    def make_estimator(self, args: argparse.Namespace) -> Any:
        from ...kernels.linear import REGRESSION
        from .model import LinearClassifier, LinearRegressor
        from .solvers import SOLVER_PARAMETERS

        cls = LinearRegressor if args.loss in REGRESSION else LinearClassifier
        solver_params = {
            "epochs": args.epochs, "learning_rate": args.learning_rate, "eta0": args.eta0,
            "average": args.average, "strategy": args.strategy,
            "strategy_options": strategy_options(args, "lr", "lr_decay", "batch_size"),
            "consistency": args.consistency, "staleness": args.staleness,
            "clocks_per_epoch": args.clocks_per_epoch, "max_iter": args.max_iter,
            "tol": args.tol}
        # each solver reads its own: pass the others only when typed, so they are refused
        given = set(getattr(args, "given_", frozenset()))
        if args.average:
            given.add("average")
        mine = SOLVER_PARAMETERS[args.solver]
        solver_params = {k: v for k, v in solver_params.items()
                         if k in mine or k in given or (k == "strategy_options" and v)}
        return cls(
            loss=args.loss, penalty=args.penalty, alpha=args.alpha, l1_ratio=args.l1_ratio,
            multi_class=args.multi_class, hash_features=args.hash_features,
            workers=args.workers, seed=args.seed, solver=args.solver, **solver_params)

    def load(self, args: argparse.Namespace) -> tuple[Any, Any]:
        from ...data.load import load_features
        from ...errors import DataFormatError

        X, y = load_features(args.data, args.format, args.target)
        if y is None:
            raise DataFormatError(f"{args.data}: no labels (give --target for a CSV)")
        _check_labels(y, args.data)
        if self.classifies(args):
            check_classes(y, args, args.data, "name the label column with --target NAME or "
                          "INDEX, or fit it as a number with a regression loss (--loss "
                          "squared_error)")
        if args.test is not None:
            Xt, yt = load_features(args.test, args.format, args.target, "test")
            if yt is None:
                raise DataFormatError(f"{args.test}: no labels")
            if Xt.shape[1] > X.shape[1]:
                raise DataFormatError(
                    f"{args.test}: {Xt.shape[1]} features, more than the {X.shape[1]} of "
                    f"{args.data}; a feature unseen in training has no weight")
            if Xt.shape[1] < X.shape[1]:
                import scipy.sparse as sp

                Xt = sp.hstack([sp.csr_matrix(Xt), sp.csr_matrix((Xt.shape[0], X.shape[1]
                                                                  - Xt.shape[1]))]).tocsr()
            return (X, y), (Xt, yt)
        if args.test_fraction:
            tr, te = (np.sort(i) for i in holdout(X.shape[0], args.test_fraction, args.seed))
            return (X[tr], y[tr]), (X[te], y[te])
        return (X, y), None

    @staticmethod
    def classifies(args: argparse.Namespace) -> bool:
        from ...kernels.linear import CLASSIFICATION

        return args.loss in CLASSIFICATION

    def fit(self, estimator: Any, train: Any, test: Any, run: Any,
            args: argparse.Namespace) -> None:
        estimator.fit(train[0], train[1], run=run)

    def summarize(self, model: Any, train: Any, test: Any,
                  args: argparse.Namespace) -> tuple[list[str], dict[str, Any]]:
        f = model.run_record_["final"]
        final: dict[str, Any] = {}
        how = (f"{args.epochs} epochs, {f['examples_per_s']:.3g} examples/s"
               if args.solver == "sgd" else f"{model.n_iter_} iterations")
        text = (f"linear[{args.strategy if args.solver == 'sgd' else args.solver}] "
                f"{args.loss}/{args.penalty} alpha={args.alpha:g}: train objective "
                f"{f['train_objective']:.6g}, {how}, {model.run_record_['workers']} worker(s)")
        if test is not None:
            Xt, yt = test
            if model._classify:
                final["test_accuracy"] = float(model.score(Xt, yt))
                text += f", test accuracy {final['test_accuracy']:.4f}"
            else:
                final["test_rmse"] = float(np.sqrt(np.mean((model.predict(Xt) - yt) ** 2)))
                text += f", test RMSE {final['test_rmse']:.4f}"
        if f.get("dropped_gradients"):
            text += f", {f['dropped_gradients']} late gradients dropped"
        return [text], final


def _check_labels(y: np.ndarray, source: str) -> None:
    from ...errors import DataFormatError

    if np.unique(y).size < 2:
        raise DataFormatError(f"{source}: the label column is constant ({y[0]!r}); a model "
                              "needs at least two values")


COMMAND = LinearCommand()
