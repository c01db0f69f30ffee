"""``stalesync kmeans``: cluster the rows of a feature file or Fashion-MNIST."""

from __future__ import annotations

# Imports inside functions: a command loads its estimator, kernels and readers only when
# it runs, so that `stalesync --help` and the other commands do not pay for them.
import argparse
from typing import Any

from ..command import AppCommand, Flags, holdout


class KMeansCommand(AppCommand):
    name = "kmeans"
    help = "mini-batch k-means on the parameter server"
    description = ("Cluster the rows of a dense CSV, libsvm/svmlight, .npz or IDX file, or "
                   "the built-in fashion-mnist. Labels in the file, if any, are used only to "
                   "report how well the clusters match them.")
    parameter_server = True
    epochs_default = 20
    epochs_help = "at most this many passes over the points"
    data_help = "a feature file, or fashion-mnist / fashion-mnist-test"

    def add_data_arguments(self, flags: Flags) -> None:
        from ...data.load import FEATURE_FORMATS

        flags.add("data", "--data", required=True, help=self.data_help)
        flags.add("data", "--format", default="auto", choices=FEATURE_FORMATS,
                  help="input format (auto: by content and extension)")
        flags.add("data", "--target", default="none",
                  help="CSV label column (name or index), or none")

    def add_model_arguments(self, flags: Flags) -> None:
        from .model import INITS

        flags.add("model", "--clusters", dest="n_clusters", type=int, default=8,
                  help="number of clusters K")
        flags.add("model", "--init", choices=INITS, default="k-means++",
                  help="starting centres: k-means++ seeding or random points")
        flags.add("model", "--tol", type=float, default=1e-4,
                  help="stop when at most this share of points changed cluster in a pass")
        flags.add("parallelism", "--batch-size", type=int, default=1024,
                  help="points per worker per clock")

    def make_estimator(self, args: argparse.Namespace) -> Any:
        from .model import KMeans

        return KMeans(n_clusters=args.n_clusters, epochs=args.epochs,
                      batch_size=args.batch_size, tol=args.tol, init=args.init,
                      workers=args.workers, consistency=args.consistency,
                      staleness=args.staleness, seed=args.seed)

    def load(self, args: argparse.Namespace) -> tuple[Any, Any]:
        from ...data.load import load_features

        target = None if str(args.target).lower() == "none" else args.target
        X, y = load_features(args.data, args.format, target)
        if args.test is not None:
            return (X, y), load_features(args.test, args.format, target, "test")
        if args.test_fraction:
            tr, te = holdout(X.shape[0], args.test_fraction, args.seed)
            pick = (lambda v, i: None if v is None else v[i])  # noqa: E731
            return (X[tr], pick(y, tr)), (X[te], pick(y, te))
        return (X, y), None

    def fit(self, estimator: Any, train: Any, test: Any, run: Any,
            args: argparse.Namespace) -> None:
        estimator.fit(train[0], run=run)

    def summarize(self, model: Any, train: Any, test: Any,
                  args: argparse.Namespace) -> tuple[list[str], dict[str, Any]]:
        from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

        X, y = train
        f = model.run_record_["final"]
        lines = [f"kmeans: {model.n_clusters} clusters of {X.shape[0]} points x {X.shape[1]} "
                 f"features: inertia {model.inertia_:.6g} after {model.n_iter_} epochs, "
                 f"{f['points_per_s']:.3g} points/s, "
                 f"{model.run_record_['wall_time_s']:.2f} s"]
        final: dict[str, Any] = {}
        if y is not None:
            final["adjusted_rand"] = float(adjusted_rand_score(y, model.labels_))
            final["nmi"] = float(normalized_mutual_info_score(y, model.labels_))
            lines.append(f"against the file's labels: adjusted Rand {final['adjusted_rand']:.3f}"
                         f", NMI {final['nmi']:.3f}")
        if test is not None:
            final["test_inertia"] = -model.score(test[0])
            lines.append(f"test inertia {final['test_inertia']:.6g} "
                         f"({test[0].shape[0]} points)")
        return lines, final


COMMAND = KMeansCommand()
