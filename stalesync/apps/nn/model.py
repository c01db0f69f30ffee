"""``NeuralNetClassifier``: an MLP or a small CNN (PyTorch, CPU) trained data-parallel by
any strategy of :mod:`stalesync.strategies` through the parameter server."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import validate_data

from ... import job
from ...compression import parse as parse_compressor
from ...errors import ConfigError
from ...strategies import TABLE, StrategyConfig, make_strategy
from ...tables import TableSpec
from ..base import (
    RunConfig,
    StalesyncEstimator,
    check_choice,
    check_consistency,
    check_float,
    check_int,
)
from ..progress import Progress
from . import networks
from .problem import NNProblem, NNSpec

PS_CHUNK = 512  # ps: examples per worker per clock when clocks_per_epoch is not given
ALLREDUCE = "allreduce"  # not a parameter-server strategy: stalesync.apps.nn.allreduce
PREDICT_BATCH = 4096


class NeuralNetClassifier(ClassifierMixin, StalesyncEstimator):
    """A neural network classifier, data-parallel on the parameter server.

    ``arch``: ``mlp`` (two hidden ReLU layers of ``hidden`` units) or ``cnn`` (two conv +
    pool blocks, then ``hidden`` units; square grey images). Each worker holds a share of
    the examples; ``strategy`` says how they combine (``docs/nn.md``): ``average`` (local
    SGD, models averaged every ``average_every`` steps of ``batch_size``; the default),
    ``ps`` (chunks of local steps, changes averaged through the table under any
    consistency model), ``sync`` (synchronous SGD with ``backup_workers``), ``downpour``
    (asynchronous, ``n_fetch`` / ``n_push``, the shard applies ``server_update``) or
    ``hogwild`` (``threads`` lock-free threads per worker). ``lr`` is the SGD step, local
    or on the shard. ``compress`` (``topk:R``, ``qsgd:B``, ``sign``, ``powersgd:R``)
    encodes what each worker sends per clock, with error feedback
    (:mod:`stalesync.compression`). Inputs are float features (scale them: e.g. pixels /
    255).
    """

    _fitted_attributes = ("params_", "classes_", "n_features_in_")
    _model_arrays = ("params_", "classes_")
    _model_info = ("n_features_in_",)

    def __init__(self, arch: str = "mlp", *, hidden: int = 256, epochs: int = 5,
                 lr: float = 0.05, batch_size: int = 64, strategy: str = "average",
                 workers: int = 1, consistency: str = "ssp", staleness: int | str | None = 1,
                 clocks_per_epoch: int | None = None, average_every: int = 50,
                 backup_workers: int = 0, n_fetch: int = 1, n_push: int = 1,
                 server_update: str = "sgd", threads: int = 2, compress: str = "none",
                 seed: int = 0) -> None:
        self.arch = arch
        self.hidden = hidden
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.strategy = strategy
        self.workers = workers
        self.consistency = consistency
        self.staleness = staleness
        self.clocks_per_epoch = clocks_per_epoch
        self.average_every = average_every
        self.backup_workers = backup_workers
        self.n_fetch = n_fetch
        self.n_push = n_push
        self.server_update = server_update
        self.threads = threads
        self.compress = compress
        self.seed = seed

    def _strategy_config(self) -> StrategyConfig:
        return StrategyConfig(
            name=self.strategy, lr=self.lr, batch_size=self.batch_size,
            backup_workers=self.backup_workers, n_fetch=self.n_fetch, n_push=self.n_push,
            server_update=self.server_update, average_every=self.average_every,
            threads=self.threads)

    def _check_params(self) -> None:
        check_choice(self.arch, "arch", networks.ARCHS)
        if self.strategy == ALLREDUCE:
            check_int(self.batch_size, "batch_size", 1)
            if self.compress != "none":
                raise ConfigError("strategy='allreduce' sends dense gradients; compress "
                                  "applies to the parameter-server strategies",
                                  param="compress")
        check_int(self.hidden, "hidden", 1)
        check_int(self.epochs, "epochs", 1)
        check_float(self.lr, "lr", 0, low_open=True)
        check_int(self.workers, "workers", 1)
        check_int(self.seed, "seed", 0)
        if self.clocks_per_epoch is not None:
            check_int(self.clocks_per_epoch, "clocks_per_epoch", 1)
        if self.strategy != ALLREDUCE:
            self._strategy_config()
        check_consistency(self.consistency, self.staleness)
        parse_compressor(self.compress)

    # -- fitting ----------------------------------------------------------------------------
    def fit(self, X: Any, y: Any, *, run: RunConfig | dict | None = None) -> NeuralNetClassifier:
        """Train a fresh network on dense float features ``X`` and class labels ``y``."""
        self._check_params()
        X, y = validate_data(self, X, y, reset=True, dtype=np.float32)
        check_classification_targets(y)
        self.classes_ = np.unique(y)
        if self.classes_.size < 2:
            raise ConfigError("y has 1 class; a classifier needs at least two",
                              param="y")
        return self._fit(X, y, RunConfig.coerce(run), self.epochs, warm=None)

    def partial_fit(self, X: Any, y: Any, classes: Any = None, *,
                    run: RunConfig | dict | None = None) -> NeuralNetClassifier:
        """One more epoch over ``(X, y)``, continuing from the current parameters (the
        first call needs ``classes`` unless ``y`` holds every class)."""
        self._check_params()
        first = not hasattr(self, "params_")
        X, y = validate_data(self, X, y, reset=first, dtype=np.float32)
        check_classification_targets(y)
        if first:
            self.classes_ = np.unique(y if classes is None else classes)
        unknown = np.setdiff1d(np.unique(y), self.classes_)
        if unknown.size:
            raise ConfigError(f"y has classes {unknown.tolist()} not in classes_ "
                              f"{self.classes_.tolist()}", param="y")
        return self._fit(X, y, RunConfig.coerce(run), 1,
                         warm=None if first else self.params_)

    def _fit(self, X: np.ndarray, y: np.ndarray, run: RunConfig, epochs: int,
             warm: np.ndarray | None) -> NeuralNetClassifier:
        labels = np.searchsorted(self.classes_, y).astype(np.int64)
        if X.shape[0] < self.workers:
            raise ConfigError(f"{X.shape[0]} examples cannot be split over {self.workers} "
                              "workers", param="workers")
        net = networks.build(self.arch, X.shape[1], self.classes_.size, self.hidden,
                             self.seed)
        initial = networks.get_flat(net) if warm is None else np.array(warm, np.float32)
        spec = NNSpec(self.arch, X.shape[1], int(self.classes_.size), self.hidden,
                      initial.shape[0], float(self.lr), self.batch_size, self.workers,
                      self.seed)
        rng = np.random.default_rng(self.seed)
        parts = np.array_split(rng.permutation(X.shape[0]), self.workers)
        if self.strategy == ALLREDUCE:
            return self._fit_allreduce(X, labels, parts, spec, epochs, initial, net, run)
        per_clock = self.clocks_per_epoch or max(1, min(p.size for p in parts) // PS_CHUNK)
        problems = [NNProblem(X[p], labels[p], spec, per_clock, self.seed + 7919 * w)
                    for w, p in enumerate(parts)]
        strategy = make_strategy(self._strategy_config())
        clocks = strategy.clocks(problems, epochs)
        progress = Progress(desc=f"nn[{self.strategy}]", epochs=epochs,
                            clocks_per_epoch=max(clocks // epochs, 1),
                            workers=self.workers, enabled=run.progress, objective="loss",
                            items_per_epoch=X.shape[0], items="examples")
        start = time.perf_counter()
        with progress:
            result = job.run(
                strategy.make_worker(epochs),
                [TableSpec(TABLE, spec.rows, networks.ROW_WIDTH, "float32",
                           update=strategy.table_update(),
                           compress=None if self.compress == "none" else self.compress)],
                data=problems, workers=self.workers, iterations=clocks, seed=self.seed,
                app="nn", on_clock=progress.on_clock, initial_tables={TABLE: initial},
                **strategy.job_options(self.workers, self.consistency, self.staleness),
                **run.job_options(self.seed))
        train_s = time.perf_counter() - start
        self.params_ = np.asarray(result.tables[TABLE], dtype=np.float32)
        self._net = None
        record = result.record
        seen = sum(r["examples"] for r in result.worker_results)
        record["strategy"] = strategy.strategy_record
        record["epochs"] = epochs
        record["objective_name"] = "mean cross-entropy of the clock's examples"
        record["final"] = {
            "train_accuracy": float(np.mean(self._predict_index(X) == labels)),
            "epochs": epochs, "examples": int(seen),
            "examples_per_s": seen / max(train_s, 1e-12), "strategy": self.strategy,
            "arch": self.arch, "parameters": networks.count(net),
            "dropped_gradients": int(record.get("backup", {}).get("dropped_gradients", 0)),
            "bytes_sent": record["bytes_sent"]}
        self.run_record_ = record
        return self

    def _fit_allreduce(self, X, labels, parts, spec, epochs, initial, net, run
                       ) -> NeuralNetClassifier:
        from ...metrics import build_run_record
        from .allreduce import fit as allreduce_fit

        if run.runtime != "embedded" or run.snapshot_every or run.stragglers is not None:
            raise ConfigError("strategy='allreduce' runs local worker processes: no Ray, "
                              "snapshots or injected stragglers", param="strategy")
        shares = [(X[p], labels[p]) for p in parts]
        result = allreduce_fit(spec, shares, epochs, initial)
        self.params_ = np.asarray(result.params, dtype=np.float32)
        self._net = None
        final = {
            "train_accuracy": float(np.mean(self._predict_index(X) == labels)),
            "train_loss": result.losses[-1], "epochs": epochs, "examples": result.examples,
            "examples_per_s": result.examples / max(result.train_s, 1e-12),
            "train_s": result.train_s, "strategy": ALLREDUCE, "arch": self.arch,
            "parameters": networks.count(net),
            "identical_parameters": result.identical,
            "bytes_sent": result.bytes_allreduced * self.workers}
        record = build_run_record(
            app="nn", strategy=ALLREDUCE, runtime="processes", consistency="bsp",
            staleness=0, workers=self.workers, clocks=0, epochs=epochs,
            wall_time_s=result.wall_s, metrics=[], final=final)
        record["bytes_sent"] = final["bytes_sent"]
        record["objective_name"] = "mean cross-entropy of rank 0's batches, per epoch"
        record["records"] = [{"iteration": e, "worker": 0, "time_s": None, "duration_s": 0.0,
                              "wait_s": 0.0, "bytes_sent": 0, "objective": loss}
                             for e, loss in enumerate(result.losses)]
        self.run_record_ = record
        return self

    # -- predicting ---------------------------------------------------------------------------
    def _network(self) -> Any:
        if getattr(self, "_net", None) is None:
            self._net = networks.build(self.arch, self.n_features_in_, self.classes_.size,
                                       self.hidden, self.seed)
            networks.set_flat(self._net, self.params_)
        return self._net

    def _logits(self, X: np.ndarray) -> np.ndarray:
        torch = networks.torch_module()
        net = self._network()
        out = []
        with torch.no_grad():
            for start in range(0, X.shape[0], PREDICT_BATCH):
                out.append(net(torch.from_numpy(X[start:start + PREDICT_BATCH])).numpy())
        return np.concatenate(out) if out else np.zeros((0, self.classes_.size))

    def _predict_index(self, X: np.ndarray) -> np.ndarray:
        return self._logits(X).argmax(axis=1)

    def predict_proba(self, X: Any) -> np.ndarray:
        self._check_fitted()
        X = validate_data(self, X, reset=False, dtype=np.float32)
        z = self._logits(np.ascontiguousarray(X))
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    def predict(self, X: Any) -> np.ndarray:
        self._check_fitted()
        X = validate_data(self, X, reset=False, dtype=np.float32)
        return self.classes_[self._predict_index(np.ascontiguousarray(X))]

    def _after_load(self) -> None:
        self.n_features_in_ = int(self.n_features_in_)
        self._net = None
