"""``NeuralNetClassifier``: an MLP or a small CNN (PyTorch, CPU) trained data-parallel by
any strategy of :mod:`stalesync.strategies` through the parameter server."""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import validate_data

from ...errors import ConfigError
from ..base import (
    RunConfig,
    StalesyncEstimator,
    check_choice,
    check_int,
)
from ..workers import AUTO, Work, decide, timed
from . import networks
from .problem import NNSpec
from .training import Plan, make_plan, train

PREDICT_BATCH = 4096
OPTIMIZERS = ("auto", "sgd", "adam")
LOCAL_STEPS = ("average", "ps")  # the strategies whose workers take local steps
EXACT = ("pipeline",)  # one network cut into stages: the steps one process takes
FEDERATED = ("fedavg",)  # clients take local steps too: plain SGD, as McMahan et al.
DEFAULT_LR = {"sgd": 0.05, "adam": 1e-3}


def resolve_optimizer(strategy: str, optimizer: str, lr: float | None) -> tuple[str, float]:
    """The local steps' rule and step size: ``auto`` is Adam (scikit-learn's
    ``MLPClassifier`` default) where workers take local steps (``average``, ``ps``), else
    plain SGD (``fedavg``'s clients too, as McMahan et al.); ``lr=None``
    is that rule's default (Adam 0.001, SGD 0.05). ``pipeline`` steps one network as one
    process would: ``auto`` is Adam there too."""
    check_choice(optimizer, "optimizer", OPTIMIZERS)
    local = strategy in LOCAL_STEPS + FEDERATED + EXACT
    if optimizer == "auto":
        optimizer = "adam" if strategy in LOCAL_STEPS + EXACT else "sgd"
    elif optimizer == "adam" and not local:
        raise ConfigError(
            f"optimizer='adam' is for the workers' local steps (strategy 'average', 'ps' or "
            f"'fedavg') or a pipeline's stages; strategy {strategy!r} steps with plain SGD or "
            "the shard's server_update", param="optimizer")
    return optimizer, DEFAULT_LR[optimizer] if lr is None else lr


class ChanceWarning(UserWarning):
    """A fit that ended no better than always predicting the most frequent class."""


MIN_LOCAL_STEPS = 50  # average: a worker's fewest local steps per epoch (workers="auto")
CHANCE_MARGIN = 0.02  # train accuracy within this of the majority class: learnt nothing


def warn_if_chance(accuracy: float, labels: np.ndarray, lr: float) -> None:
    """Say so, with what to change, when the network learnt nothing (unscaled features
    trained to chance accuracy without a word)."""
    majority = float(np.bincount(labels).max() / labels.size)
    if labels.size >= 50 and accuracy <= majority + CHANCE_MARGIN:
        warnings.warn(
            f"train accuracy {accuracy:.3f} is no better than always predicting the most "
            f"frequent class ({majority:.3f}): scale the features (pixels 0-255: divide by "
            f"255; other columns: standardise them), train more epochs, or change lr (now "
            f"{lr:g})", ChanceWarning, stacklevel=3)


class NeuralNetClassifier(ClassifierMixin, StalesyncEstimator):
    """A neural network classifier, data-parallel on the parameter server.

    ``arch``: ``mlp`` (two hidden ReLU layers of ``hidden`` units) or ``cnn`` (two conv +
    pool blocks, then ``hidden`` units; square grey images). Each worker holds a share of
    the examples; ``strategy`` says how they combine (``docs/nn.md``): ``average`` (local
    SGD, models averaged every ``average_every`` steps of ``batch_size``; the default),
    ``ps`` (chunks of local steps, changes averaged through the table under any
    consistency model), ``sync`` (synchronous SGD with ``backup_workers``), ``downpour``
    (asynchronous, ``n_fetch`` / ``n_push``, the shard applies ``server_update``),
    ``hogwild`` (``threads`` lock-free threads per worker), ``allreduce`` (gloo, no
    parameter server) or ``pipeline`` (model parallelism: the network cut into ``stages``,
    ``micro_batches`` per step, ``replicas`` data-parallel pipelines; ``workers`` is then
    stages x replicas). ``optimizer``: the local steps' rule, ``auto`` (Adam for
    ``average``, ``ps`` and ``pipeline``, as scikit-learn's ``MLPClassifier``; plain SGD
    for the others), ``adam`` or ``sgd``; ``lr`` its step size (default: 0.001 for Adam,
    0.05 for SGD, local or on the shard). ``compress`` (``topk:R``, ``dgc:R[:M]``,
    ``qsgd:B``, ``sign``, ``powersgd:R``) encodes what each worker sends per clock, with
    error feedback (:mod:`stalesync.ps.compression`). Inputs are float features (scale
    them: e.g. pixels / 255).
    """

    _sparse_input = False  # dense float features
    _fitted_attributes = ("params_", "classes_", "n_features_in_")
    _model_arrays = ("params_", "classes_")
    _model_info = ("n_features_in_",)

    def __init__(self, arch: str = "mlp", *, hidden: int = 256, epochs: int = 5,
                 optimizer: str = "auto", lr: float | None = None, batch_size: int = 200,
                 strategy: str = "average", strategy_options: dict[str, Any] | None = None,
                 workers: int | str = "auto", consistency: str = "ssp",
                 staleness: int | str | None = 1, clocks_per_epoch: int | None = None,
                 compress: str = "none", seed: int = 0) -> None:
        self.arch = arch
        self.hidden = hidden
        self.epochs = epochs
        self.optimizer = optimizer
        self.lr = lr
        self.batch_size = batch_size
        self.strategy = strategy
        self.strategy_options = strategy_options
        self.workers = workers
        self.consistency = consistency
        self.staleness = staleness
        self.clocks_per_epoch = clocks_per_epoch
        self.compress = compress
        self.seed = seed

    def _plan(self, workers: int) -> Plan:
        _, lr = resolve_optimizer(self.strategy, self.optimizer, self.lr)
        return make_plan(
            self.strategy, lr=lr, batch_size=self.batch_size, workers=workers,
            consistency=self.consistency, staleness=self.staleness,
            clocks_per_epoch=self.clocks_per_epoch, compress=self.compress, seed=self.seed,
            strategy_options=self._strategy_options())

    def _strategy_options(self) -> dict[str, Any] | None:
        """``strategy_options``; for ``pipeline`` with ``workers="auto"`` and no ``stages``
        given, ``stages="auto"`` (as many stages as pay)."""
        if self.strategy != "pipeline" or self.workers != AUTO:
            return self.strategy_options
        return {"stages": "auto", **(self.strategy_options or {})}

    def _pipeline_workers(self) -> int | str | None:
        """The workers of ``strategy="pipeline"`` (stages x replicas, or ``auto`` when the
        fit decides the stages), else None."""
        if self.strategy != "pipeline":
            return None
        from ...strategies.pipeline import AUTO as AUTO_STAGES
        from ...strategies.pipeline import make_options

        options = make_options(dict(self._strategy_options() or {}))
        return AUTO if options.stages == AUTO_STAGES else options.workers

    def _check_own_params(self) -> None:
        check_choice(self.arch, "arch", networks.ARCHS)
        check_int(self.hidden, "hidden", 1)
        fixed = self._pipeline_workers()
        self._plan(self.workers if self.workers != AUTO else
                   fixed if isinstance(fixed, int) else 1)

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
        net = networks.build(self.arch, X.shape[1], self.classes_.size, self.hidden,
                             self.seed)
        initial = networks.get_flat(net) if warm is None else np.array(warm, np.float32)
        fixed = self._pipeline_workers()
        if fixed == AUTO:  # the pipeline decides its stages from the layers' timings
            decision = None
        else:
            requested = fixed if fixed is not None and self.workers == AUTO else self.workers
            decision = decide(requested, lambda: self._work(net, X, labels, epochs),
                              resume=run.resume)
        workers = 1 if decision is None else decision.workers
        optimizer, lr = resolve_optimizer(self.strategy, self.optimizer, self.lr)
        spec = NNSpec(self.arch, X.shape[1], int(self.classes_.size), self.hidden,
                      initial.shape[0], float(lr), self.batch_size, workers,
                      self.seed, optimizer=optimizer)
        trained = train(spec, initial, X, labels, self._plan(workers), epochs, run)
        self.params_ = trained.params
        self._net = None
        record = trained.record
        if decision is not None:  # else the pipeline's own
            record["workers_decision"] = decision.as_record()
        record["objective_name"] = record["objective_name"].replace("loss", "cross-entropy")
        accuracy = float(np.mean(self._predict_index(X, record["workers"]) == labels))
        record["final"] = {"train_accuracy": accuracy, **record["final"], "arch": self.arch}
        self._keep_record(record)
        warn_if_chance(accuracy, labels, lr)
        return self

    def _work(self, net: Any, X: np.ndarray, labels: np.ndarray, epochs: int) -> Work:
        """The fit's compute, timed on a forward and backward pass of one batch, and its
        clocks (for ``workers="auto"``)."""
        import torch

        b = min(self.batch_size, X.shape[0])
        xb, yb = torch.from_numpy(X[:b]), torch.from_numpy(labels[:b])
        loss_fn = torch.nn.CrossEntropyLoss()

        def step() -> None:
            net.zero_grad()
            loss_fn(net(xb), yb).backward()

        steps = epochs * -(-X.shape[0] // b)
        compute = timed(step, repeats=3) * steps
        net.zero_grad()
        per_epoch = -(-X.shape[0] // b)
        most = per_epoch
        if self.strategy == "average":
            every = self._plan(1).strategy.options.average_every
            clocks = -(-steps // max(every, 1))
            # each worker takes at least MIN_LOCAL_STEPS steps per epoch, and its model
            # meets the others' within an epoch (fewer: averaging a few steps of diverged
            # models loses more than the second worker gains)
            most = per_epoch // max(every, MIN_LOCAL_STEPS)
        elif self.strategy == "hogwild":
            clocks = epochs
        elif self.strategy == "fedavg":
            fed = self._plan(1).strategy
            clocks, most = fed.planned_clocks(epochs), fed.num_clients()
        else:
            clocks = steps
        return Work(compute, clocks,
                    split_clocks=self.strategy not in ("hogwild", "fedavg"),
                    max_workers=max(1, most))

    # -- predicting ---------------------------------------------------------------------------
    def _network(self) -> Any:
        if getattr(self, "_net", None) is None:
            self._net = networks.build(self.arch, self.n_features_in_, self.classes_.size,
                                       self.hidden, self.seed)
            networks.set_flat(self._net, self.params_)
        return self._net

    def _logits(self, X: np.ndarray, threads: int = 1) -> np.ndarray:
        """The network's outputs, PREDICT_BATCH rows at a time on ``threads`` threads
        (PyTorch runs one thread per call here and releases the GIL in its kernels)."""
        torch = networks.torch_module()
        net = self._network()

        def batch(start: int) -> np.ndarray:
            with torch.no_grad():
                return net(torch.from_numpy(X[start:start + PREDICT_BATCH])).numpy()

        starts = range(0, X.shape[0], PREDICT_BATCH)
        if threads > 1 and len(starts) > 1:
            with ThreadPoolExecutor(threads) as pool:
                out = list(pool.map(batch, starts))
        else:
            out = [batch(start) for start in starts]
        return np.concatenate(out) if out else np.zeros((0, self.classes_.size))

    def _predict_index(self, X: np.ndarray, threads: int = 1) -> np.ndarray:
        return self._logits(X, threads).argmax(axis=1)

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
