"""``LinearClassifier`` and ``LinearRegressor``: linear models by SGD on sparse data, with
every data-parallel strategy of :mod:`stalesync.strategies`."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.special import expit, softmax
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import validate_data

from ...errors import ConfigError
from ...kernels import linear as k
from ...kernels.csr import take_rows
from ...ps.tables import TableSpec
from ...strategies import TABLE, Strategy, make_strategy
from ..base import (
    RunConfig,
    StalesyncEstimator,
    check_choice,
    check_consistency,
    check_float,
    check_int,
    check_sparse_structure,
)
from ..sgd_job import run_sgd_job
from ..workers import AUTO, Work, available_cores, decide, timed
from .problem import LinearProblem, LinearSpec, LocalModel, feature_frequency, hash_columns
from .solvers import check_solver, fit_lbfgs, fit_normal

PENALTIES = ("l2", "l1", "elasticnet", "none")
LEARNING_RATES = ("optimal", "constant", "invscaling")
MULTI_CLASS = ("ovr", "multinomial")
SAMPLE_FOR_ETA = 1000  # examples Bottou's step-size search tries (t0 "chosen on a sample")
PS_CHUNK = 256  # ps: examples per worker per clock when clocks_per_epoch is not given
PROBE_EXAMPLES = 2000  # workers="auto" times one SGD pass over this many examples


class LinearSGD(StalesyncEstimator):
    """What the classifier and the regressor share (see :class:`LinearClassifier`)."""

    _fitted_attributes = ("coef_", "intercept_", "n_features_in_")
    _model_arrays = ("coef_", "intercept_")
    _model_info = ("n_features_in_",)
    _losses: tuple[str, ...] = ()
    _classify = True

    def __init__(self, loss: str = "hinge", *, penalty: str = "l2", alpha: float = 1e-4,
                 l1_ratio: float = 0.15, fit_intercept: bool = True, epochs: int = 10,
                 learning_rate: str = "optimal", eta0: float = 0.01, power_t: float = 0.5,
                 average: bool = False, epsilon: float = 0.1, multi_class: str = "ovr",
                 hash_features: int | None = None, strategy: str = "average",
                 strategy_options: dict[str, Any] | None = None,
                 workers: int | str = "auto", consistency: str = "ssp",
                 staleness: int | None = 1, clocks_per_epoch: int | None = None,
                 solver: str = "sgd", max_iter: int = 100, tol: float = 1e-4,
                 seed: int = 0) -> None:
        self.loss = loss
        self.penalty = penalty
        self.alpha = alpha
        self.l1_ratio = l1_ratio
        self.fit_intercept = fit_intercept
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.eta0 = eta0
        self.power_t = power_t
        self.average = average
        self.epsilon = epsilon
        self.multi_class = multi_class
        self.hash_features = hash_features
        self.strategy = strategy
        self.strategy_options = strategy_options
        self.workers = workers
        self.consistency = consistency
        self.staleness = staleness
        self.clocks_per_epoch = clocks_per_epoch
        self.solver = solver
        self.max_iter = max_iter
        self.tol = tol
        self.seed = seed

    # -- parameters -------------------------------------------------------------------
    def _strategy(self) -> Strategy:
        """The strategy with its ``strategy_options`` (checked: an option it does not take
        is refused, naming the strategies that do)."""
        return make_strategy(self.strategy, self.strategy_options)

    def _check_own_params(self) -> None:
        check_choice(self.loss, "loss", self._losses)
        check_choice(self.penalty, "penalty", PENALTIES)
        check_choice(self.learning_rate, "learning_rate", LEARNING_RATES)
        check_choice(self.multi_class, "multi_class", MULTI_CLASS)
        check_float(self.alpha, "alpha", 0)
        if self.learning_rate == "optimal" and not self.alpha > 0:
            raise ConfigError("learning_rate='optimal' needs alpha > 0", param="alpha")
        check_float(self.l1_ratio, "l1_ratio", 0, 1)
        check_float(self.eta0, "eta0", 0, low_open=True)
        check_float(self.power_t, "power_t", 0)
        check_float(self.epsilon, "epsilon", 0)
        if self.clocks_per_epoch is not None:
            check_int(self.clocks_per_epoch, "clocks_per_epoch", 1)
        if self.hash_features is not None:
            check_int(self.hash_features, "hash_features", 2)
        if self.multi_class == "multinomial" and self.loss != "log_loss":
            raise ConfigError("multi_class='multinomial' needs loss='log_loss'",
                              param="multi_class")
        if self.average and self.strategy != "average":
            raise ConfigError("average=True (ASGD) averages a worker's own iterates: it needs "
                              "strategy='average'", param="average")
        if self.strategy == "hogwild" and self.penalty in ("l1", "elasticnet"):
            raise ConfigError("strategy='hogwild' supports penalty 'l2' or 'none' (lock-free "
                              "steps have no shared L1 bookkeeping)", param="penalty")
        self._strategy()
        check_consistency(self.consistency, self.staleness)
        check_solver(self)
        check_int(self.max_iter, "max_iter", 1)
        check_float(self.tol, "tol", 0)

    # -- data ---------------------------------------------------------------------------
    def _features(self, X: Any, reset: bool, y: Any = "no_validation", dense_ok: bool = False
                  ) -> Any:
        """``X`` validated as CSR (hashed when asked; ``dense_ok``: a dense ``X`` stays
        dense unless hashed); with ``y``: ``(X, y)``."""
        with_y = not (isinstance(y, str) and y == "no_validation")
        if with_y:
            X, y = validate_data(self, X, y, reset=reset, accept_sparse="csr",
                                 dtype=np.float64, y_numeric=not self._classify)
        else:
            X = validate_data(self, X, reset=reset, accept_sparse="csr", dtype=np.float64)
        check_sparse_structure(X)
        if dense_ok and not sp.issparse(X) and self.hash_features is None:
            X = np.ascontiguousarray(X)
            return (X, y) if with_y else X
        X = sp.csr_matrix(X)
        if not X.has_sorted_indices:
            X.sort_indices()
        if self.hash_features is not None:
            X = hash_columns(X, self.hash_features)
        return (X, y) if with_y else X

    def _targets(self, y: Any) -> tuple[np.ndarray, np.ndarray, int, int]:
        """(labels, regression values, outputs K, class mode)."""
        raise NotImplementedError

    # -- fitting ------------------------------------------------------------------------
    def _spec(self, X: sp.csr_matrix, K: int, mode: int, labels, yvals, t_step: float,
              search_step: bool = True) -> LinearSpec:
        """The kernels' settings; ``search_step``: choose the ``optimal`` schedule's ``t0``
        on a sample (SGD only)."""
        l1_ratio = {"l2": 0.0, "l1": 1.0, "elasticnet": float(self.l1_ratio), "none": 0.0}
        alpha = 0.0 if self.penalty == "none" else float(self.alpha)
        spec = LinearSpec(
            num_features=X.shape[1], outputs=K, loss=k.LOSSES[self.loss], mode=mode,
            classify=self._classify, alpha=alpha, l1_ratio=l1_ratio[self.penalty],
            schedule=k.SCHEDULES[self.learning_rate], eta0=float(self.eta0), t0=1.0,
            power_t=float(self.power_t), epsilon=float(self.epsilon),
            fit_intercept=bool(self.fit_intercept),
            intercept_decay=0.01 if X.nnz < 0.5 * X.shape[0] * X.shape[1] else 1.0,
            average_from=0 if self.average else -1, t_step=t_step, workers=int(t_step))
        if search_step and spec.schedule == 0:
            spec = _with_t0(spec, choose_t0(X, labels, yvals, spec, self.seed))
        return spec

    def fit(self, X: Any, y: Any, *, run: RunConfig | dict | None = None,
            eval_set: tuple[Any, Any] | None = None) -> LinearSGD:
        """Train on ``X`` (sparse or dense) and ``y``; ``run``: where and how."""
        self._check_params()
        self._warm = None
        if hasattr(self, "classes_"):
            del self.classes_
        return self._fit(X, y, RunConfig.coerce(run), self.epochs, reset=True)

    def partial_fit(self, X: Any, y: Any, classes: Any = None, *,
                    run: RunConfig | dict | None = None) -> LinearSGD:
        """One more epoch over ``(X, y)``, continuing from the current weights."""
        self._check_params()
        if self.solver != "sgd":
            raise ConfigError(f"partial_fit runs SGD epochs; solver={self.solver!r} fits the "
                              "whole batch with fit()", param="solver")
        first = not hasattr(self, "coef_")
        if first and self._classify and classes is not None:
            self.classes_ = np.unique(classes)
        self._warm = None if first else self._table_values()
        return self._fit(X, y, RunConfig.coerce(run), 1, reset=first)

    def _fit(self, X, y, run: RunConfig, epochs: int, reset: bool) -> LinearSGD:
        X, y = self._features(X, reset, y, dense_ok=self.solver == "normal")
        labels, yvals, K, mode = self._targets(y)
        if self.workers != AUTO and X.shape[0] < self.workers:
            raise ConfigError(f"{X.shape[0]} examples cannot be split over {self.workers} "
                              "workers", param="workers")
        if self.solver != "sgd":
            return self._fit_batch(X, labels, yvals, K, mode, run)
        strategy = self._strategy()
        spec = self._spec(X, K, mode, labels, yvals, 1.0)
        decision = decide(self.workers, lambda: self._work(X, labels, yvals, spec, epochs),
                          resume=run.resume)
        workers = decision.workers
        if workers > 1 and strategy.name != "fedavg":  # every worker's steps count towards
            spec = replace(spec, t_step=float(workers), workers=workers)  # the schedule
        freq = feature_frequency(X)
        self.spec_, self.freq_ = spec, freq  # the kernels' settings, the L2 spread
        rng = np.random.default_rng(self.seed)
        parts = strategy.partition(X.shape[0], workers, rng)  # fedavg: one per client
        # ps: small chunks, so that the workers' summed changes stay in SGD's linear regime
        clocks = self.clocks_per_epoch or max(1, min(p.size for p in parts) // PS_CHUNK)
        # each problem's rows in a random order (its epochs shuffle blocks of them), cut by
        # one thread per worker, each with its share of the cores
        threads = max(1, available_cores() // len(parts))
        with ThreadPoolExecutor(workers) as pool:
            rows = list(pool.map(take_rows, [X] * len(parts), parts, [threads] * len(parts)))
        problems = [LinearProblem(rows[w], labels[p], yvals[p], freq, spec, clocks)
                    for w, p in enumerate(parts)]
        d = X.shape[1]
        initial = np.zeros((d + 2, K)) if self._warm is None else self._warm
        done = run_sgd_job(strategy, problems,
                           TableSpec(TABLE, d + 2, K, "float64", update=strategy.table_update()),
                           initial, epochs, workers=workers, consistency=self.consistency,
                           staleness=self.staleness, seed=self.seed, run=run, app="linear",
                           items_per_epoch=X.shape[0])
        table = done.result.tables[TABLE]
        W = math.exp(table[d + 1, 0]) * table[:d]
        self.coef_ = np.ascontiguousarray(W.T)
        self.intercept_ = table[d].copy()
        self.n_iter_ = epochs
        # the exact objective on every core: the job has ended, so they are idle
        objective, score = self._objective(X, labels, yvals, threads=available_cores())
        record = done.record
        record["workers_decision"] = decision.as_record()
        record["final"] = {"train_objective": objective, **record["final"], "n_features": d,
                           "n_examples": int(X.shape[0])}
        if self._classify:
            record["final"]["train_accuracy"] = score / X.shape[0]
        self._keep_record(record)
        return self

    def _fit_batch(self, X, labels, yvals, K: int, mode: int, run: RunConfig) -> LinearSGD:
        """``solver="lbfgs"`` or ``"normal"`` (:mod:`.solvers`)."""
        if self.solver == "normal":
            done = fit_normal(self, X, yvals, run)
        else:
            spec = self._spec(X, K, mode, labels, yvals, 1.0, search_step=False)
            done = fit_lbfgs(self, X, labels, yvals, spec, run)
        self.coef_, self.intercept_ = done.coef, done.intercept
        self.n_iter_ = done.iterations
        objective, score = (self._objective(X, labels, yvals) if sp.issparse(X) else
                            self._dense_objective(X, yvals))
        record = done.record
        record["final"] = {"train_objective": objective, **record["final"], "solver":
                           self.solver, "n_features": X.shape[1], "n_examples": X.shape[0]}
        if self._classify:
            record["final"]["train_accuracy"] = score / X.shape[0]
        self._keep_record(record)
        return self

    def _work(self, X: sp.csr_matrix, labels, yvals, spec: LinearSpec, epochs: int) -> Work:
        """The fit's compute, timed on one SGD pass over a sample of the rows, and its
        clocks (for ``workers="auto"``)."""
        n = X.shape[0]
        sample = X[: min(n, PROBE_EXAMPLES)]
        m = sample.shape[0]
        d, K = spec.num_features, spec.outputs

        def one_pass() -> None:
            model = LocalModel(np.zeros((d, K)), np.zeros(K),
                               np.array([1.0, 0.0, 0.0, 0.0, 0.0]), np.zeros((0, 0)),
                               np.zeros(0))
            k.sgd_epoch(sample.indptr, sample.indices, sample.data, labels[:m], yvals[:m],
                        np.arange(m, dtype=np.int64), model.V, model.bias, model.state,
                        model.A, model.bias_sum, np.zeros((d, K)), spec.loss, spec.mode,
                        spec.classify, spec.alpha, spec.l1_ratio, spec.schedule, spec.eta0,
                        spec.t0, spec.power_t, spec.epsilon, spec.intercept_decay, -1,
                        spec.fit_intercept, 1.0)

        compute = timed(one_pass) * n / m * epochs
        name, options = self.strategy, self._strategy().options
        b = getattr(options, "batch_size", 1)
        every = getattr(options, "average_every", 0)
        if name == "fedavg":
            fed = self._strategy()
            return Work(compute, fed.planned_clocks(epochs), max_workers=fed.num_clients())
        if (name == "average" and every == 0) or name == "hogwild":
            return Work(compute, 1 if name == "average" else epochs, max_workers=n)
        if name == "average":
            steps = -(-epochs * n // (every * b))
        elif name == "ps":
            steps = epochs * (self.clocks_per_epoch or max(1, n // PS_CHUNK))
        else:
            steps = epochs * -(-n // b)
        return Work(compute, steps, split_clocks=not (name == "ps" and self.clocks_per_epoch),
                    max_workers=n)

    def _predict_hashed(self, X: sp.csr_matrix) -> np.ndarray:
        """Class indices for features already validated (and hashed)."""
        out = np.empty((X.shape[0], self.coef_.shape[0]))
        k.decision(X.indptr, X.indices, X.data, np.ascontiguousarray(self.coef_.T),
                   self.intercept_, out)
        return (out[:, 0] > 0).astype(np.int64) if out.shape[1] == 1 else out.argmax(axis=1)

    def _table_values(self) -> np.ndarray:
        d = self.coef_.shape[1]
        out = np.zeros((d + 2, self.coef_.shape[0]))
        out[:d] = self.coef_.T
        out[d] = self.intercept_
        return out

    def _objective(self, X: sp.csr_matrix, labels, yvals, threads: int = 1
                   ) -> tuple[float, float]:
        """The primal objective (mean loss + alpha R(w), R as scikit-learn's SGD) and the
        correct predictions (classification) or summed squared error (regression); rows
        are split over ``threads`` threads (the kernel releases the GIL)."""
        W = np.ascontiguousarray(self.coef_.T)
        mode = 1 if self.multi_class == "multinomial" else 0
        cuts = np.linspace(0, X.shape[0], max(1, threads) + 1).astype(np.int64)

        def terms(i: int) -> tuple[float, float]:
            lo, hi = cuts[i], cuts[i + 1]
            return k.objective_terms(X.indptr[lo:hi + 1], X.indices, X.data, labels[lo:hi],
                                     yvals[lo:hi], W, self.intercept_, k.LOSSES[self.loss],
                                     mode, self._classify, float(self.epsilon))

        with ThreadPoolExecutor(cuts.size - 1) as pool:
            parts = list(pool.map(terms, range(cuts.size - 1)))
        total, score = sum(p[0] for p in parts), sum(p[1] for p in parts)
        alpha = 0.0 if self.penalty == "none" else self.alpha
        r = {"l2": 0.0, "l1": 1.0, "elasticnet": self.l1_ratio, "none": 0.0}[self.penalty]
        reg = alpha * (0.5 * (1 - r) * float((W * W).sum()) + r * float(np.abs(W).sum()))
        return total / X.shape[0] + reg, score

    def _dense_objective(self, X: np.ndarray, yvals: np.ndarray) -> tuple[float, float]:
        """:meth:`_objective` of least squares on dense rows (``solver="normal"``), by BLAS,
        without turning the rows into CSR (that took longer than the fit)."""
        w = self.coef_[0]
        r = X @ w + self.intercept_[0] - yvals
        alpha = 0.0 if self.penalty == "none" else self.alpha
        sse = float(r @ r)
        return 0.5 * sse / X.shape[0] + 0.5 * alpha * float(w @ w), sse

    def objective(self, X: Any, y: Any) -> float:
        """The primal objective of the fitted model on ``(X, y)``."""
        self._check_fitted()
        X, y = self._features(X, False, y)
        labels, yvals, _, _ = self._targets(y, fitting=False)
        return self._objective(X, labels, yvals)[0]

    def _decision(self, X: Any) -> np.ndarray:
        self._check_fitted()
        X = self._features(X, reset=False)
        out = np.empty((X.shape[0], self.coef_.shape[0]))
        k.decision(X.indptr, X.indices, X.data, np.ascontiguousarray(self.coef_.T),
                   self.intercept_, out)
        return out[:, 0] if out.shape[1] == 1 else out

    def _after_load(self) -> None:
        self.n_features_in_ = int(self.n_features_in_)


def _with_t0(spec: LinearSpec, t0: float) -> LinearSpec:
    from dataclasses import replace

    return replace(spec, t0=t0)


def choose_t0(X: sp.csr_matrix, labels, yvals, spec: LinearSpec, seed: int) -> float:
    """Bottou's step-size search on a sample: the constant step ``eta`` whose one pass over
    ``SAMPLE_FOR_ETA`` examples gives the lowest objective (doubling or halving from 1);
    the ``optimal`` schedule ``1 / (alpha (t + t0))`` then starts there: ``t0 = 1 /
    (eta alpha)``."""
    from dataclasses import replace

    rng = np.random.default_rng([seed, 31])
    n = min(SAMPLE_FOR_ETA, X.shape[0])
    sample = np.sort(rng.choice(X.shape[0], size=n, replace=False))
    Xs = X[sample]
    const = replace(spec, schedule=k.SCHEDULES["constant"], average_from=-1, t_step=1.0)
    d, K = spec.num_features, spec.outputs

    def cost(eta: float) -> float:
        local = replace(const, eta0=eta)
        model = LocalModel(np.zeros((d, K)), np.zeros(K), np.array([1.0, 0.0, 0.0, 0.0, 0.0]),
                           np.zeros((0, 0)), np.zeros(0))
        k.sgd_epoch(Xs.indptr, Xs.indices, Xs.data, labels[sample], yvals[sample],
                    np.arange(n, dtype=np.int64), model.V, model.bias, model.state, model.A,
                    model.bias_sum, np.zeros((d, K)), local.loss, local.mode, local.classify,
                    local.alpha, local.l1_ratio, local.schedule, eta, 1.0, 0.0, local.epsilon,
                    local.intercept_decay, -1, local.fit_intercept, 1.0)
        W = model.state[0] * model.V
        total, _ = k.objective_terms(Xs.indptr, Xs.indices, Xs.data, labels[sample],
                                     yvals[sample], W, model.bias, local.loss, local.mode,
                                     local.classify, local.epsilon)
        value = total / n + 0.5 * local.alpha * float((W * W).sum())
        return value if np.isfinite(value) else np.inf

    factor, lo = 2.0, 1.0
    hi = lo * factor
    c_lo, c_hi = cost(lo), cost(hi)
    for _ in range(30):
        if c_lo < c_hi:  # smaller steps are better: halve
            if not c_lo < c_hi:
                break
            hi, c_hi = lo, c_lo
            lo = hi / factor
            c_lo = cost(lo)
            if c_lo >= c_hi:
                lo, c_lo = hi, c_hi
                break
        else:
            lo, c_lo = hi, c_hi
            hi = lo * factor
            c_hi = cost(hi)
            if c_hi >= c_lo:
                break
    return 1.0 / (lo * spec.alpha)


class LinearClassifier(ClassifierMixin, LinearSGD):
    """A linear classifier trained by SGD on sparse data, data-parallel.

    ``loss``: ``hinge`` (linear SVM), ``log_loss`` (logistic regression), ``squared_hinge``,
    ``modified_huber``. ``penalty``: ``l2`` (scaled weight vector: the decay is O(1)),
    ``l1`` / ``elasticnet`` (cumulative L1 penalty), ``none``; ``alpha`` its strength.
    Binary, one-vs-rest (``multi_class="ovr"``) or softmax (``"multinomial"``, log loss).
    Step sizes ``learning_rate``: ``optimal`` = ``1 / (alpha (t + t0))`` with ``t0`` from
    a step-size search on a sample (Bottou), ``constant`` (``eta0``), ``invscaling``.
    ``average=True``: averaged SGD (strategy ``average``). ``hash_features=N``: hash the
    columns into N buckets.

    ``strategy`` (see :mod:`stalesync.strategies`) and its ``strategy_options`` (a dict of
    that strategy's own options; one it does not take is refused): ``ps`` (no options; the
    job's ``consistency``, ``staleness`` and ``clocks_per_epoch``, default: chunks of
    about 256 examples per worker), ``sync`` (``lr``, ``lr_decay``, ``batch_size``,
    ``backup_workers``), ``downpour`` (``lr``, ``lr_decay``, ``batch_size``, ``n_fetch``,
    ``n_push``, ``server_update``), ``average`` (``average_every`` local steps of
    ``batch_size``; 0: once at the end) and ``hogwild`` (``threads``). Where it runs:
    ``fit(X, y, run=RunConfig(...))``.
    """

    _losses = k.CLASSIFICATION
    _classify = True

    def _targets(self, y: Any, fitting: bool = True) -> tuple[np.ndarray, np.ndarray, int, int]:
        y = np.asarray(y)
        if fitting:
            check_classification_targets(y)
            if not hasattr(self, "classes_"):
                self.classes_ = np.unique(y)
        classes = self.classes_
        if classes.size < 2:
            raise ConfigError(f"the target has 1 class ({classes[0]!r}); a classifier needs "
                              "at least 2", param="y")
        labels = np.searchsorted(classes, y)
        bad = (labels >= classes.size) | (classes[np.minimum(labels, classes.size - 1)] != y)
        if bad.any():
            raise ConfigError(f"y has a label not seen in training: {y[np.argmax(bad)]!r}",
                              param="y")
        K = 1 if classes.size == 2 else classes.size
        mode = 1 if self.multi_class == "multinomial" and K > 1 else 0
        return labels.astype(np.int64), np.zeros(y.shape[0]), K, mode

    def decision_function(self, X: Any) -> np.ndarray:
        """Margins ``X w + b``: (n,) for two classes, (n, K) for more."""
        return self._decision(X)

    def predict(self, X: Any) -> np.ndarray:
        scores = self.decision_function(X)
        if scores.ndim == 1:
            return self.classes_[(scores > 0).astype(int)]
        return self.classes_[np.argmax(scores, axis=1)]

    @available_if(lambda self: self.loss in ("log_loss", "modified_huber"))
    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, for ``log_loss`` (sigmoid / softmax) and ``modified_huber``
        (as scikit-learn: ``(clip(f, -1, 1) + 1) / 2``, normalised)."""
        scores = self.decision_function(X)
        if self.loss == "log_loss":
            if scores.ndim == 1:
                p = expit(scores)
                return np.column_stack([1 - p, p])
            if self.multi_class == "multinomial":
                return softmax(scores, axis=1)
            p = expit(scores)
            return p / p.sum(axis=1, keepdims=True)
        p = (np.clip(scores, -1, 1) + 1) / 2
        if p.ndim == 1:
            return np.column_stack([1 - p, p])
        total = p.sum(axis=1, keepdims=True)
        return np.where(total > 0, p / np.where(total > 0, total, 1), 1.0 / p.shape[1])


class LinearRegressor(RegressorMixin, LinearSGD):
    """A linear regressor trained by SGD (losses ``squared_error``, ``huber``,
    ``epsilon_insensitive``; every other option as :class:`LinearClassifier`)."""

    _losses = k.REGRESSION
    _classify = False

    def __init__(self, loss: str = "squared_error", *, penalty: str = "l2",
                 alpha: float = 1e-4, l1_ratio: float = 0.15, fit_intercept: bool = True,
                 epochs: int = 10, learning_rate: str = "invscaling", eta0: float = 0.01,
                 power_t: float = 0.25, average: bool = False, epsilon: float = 0.1,
                 multi_class: str = "ovr", hash_features: int | None = None,
                 strategy: str = "average", strategy_options: dict[str, Any] | None = None,
                 workers: int | str = "auto", consistency: str = "ssp",
                 staleness: int | None = 1, clocks_per_epoch: int | None = None,
                 solver: str = "sgd", max_iter: int = 100, tol: float = 1e-4,
                 seed: int = 0) -> None:
        super().__init__(
            loss, penalty=penalty, alpha=alpha, l1_ratio=l1_ratio, fit_intercept=fit_intercept,
            epochs=epochs, learning_rate=learning_rate, eta0=eta0, power_t=power_t,
            average=average, epsilon=epsilon, multi_class=multi_class,
            hash_features=hash_features, strategy=strategy, strategy_options=strategy_options,
            workers=workers, consistency=consistency, staleness=staleness,
            clocks_per_epoch=clocks_per_epoch, solver=solver, max_iter=max_iter, tol=tol,
            seed=seed)

    def _targets(self, y: Any, fitting: bool = True) -> tuple[np.ndarray, np.ndarray, int, int]:
        yvals = np.asarray(y, dtype=np.float64).ravel()
        if not np.isfinite(yvals).all():
            raise ConfigError("y contains NaN or infinite values", param="y")
        return np.zeros(yvals.shape[0], dtype=np.int64), yvals, 1, 0

    def predict(self, X: Any) -> np.ndarray:
        return self._decision(X)
