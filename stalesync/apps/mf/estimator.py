"""``MatrixFactorization``: a scikit-learn-style estimator over the three training modes.

``R ~ mu + b_u + b_i + p_u . q_i`` with L2 regularisation, trained by SGD:

- ``mode="ssp"``: data-parallel on parameter-server tables, any consistency model;
- ``mode="blocks"``: DSGD block rotation, a barrier per sub-round;
- ``mode="fugue"``: block rotation where early finishers keep working on their own blocks.

Users and items are addressed by their raw ids (as in the file) everywhere in this API.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn.base import RegressorMixin
from sklearn.utils import check_array

from ...data.ratings import Ratings, from_sparse
from ...errors import ConfigError, DataFormatError, NotFittedError, StalesyncError
from ...kernels.csr import compact_columns, group_by
from ...kernels.mf import predict as predict_kernel
from ...kernels.mf import sgd_pass, warm_up
from ...observe.tensorboard import write_record
from ..base import (
    RunConfig,
    StalesyncEstimator,
    check_choice,
    check_consistency,
    check_float,
    check_int,
)
from ..progress import Progress
from ..workers import Work, available_cores, decide, timed
from .blocks import block_data, train_blocks
from .sgd import Monitor, SGDConfig, TrainOutcome, Triples
from .ssp import train_ssp

MODES = ("ssp", "blocks", "fugue")
PROBE_RATINGS = 100_000  # workers="auto" times an SGD pass over this many ratings
UNKNOWN = ("error", "mean")
__all__ = ["MatrixFactorization", "NotFittedError", "UnknownIdError"]


class UnknownIdError(StalesyncError, KeyError):
    """A user or item id given to predict/recommend was never seen in training."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class MatrixFactorization(RegressorMixin, StalesyncEstimator):
    """Matrix factorization of a ratings matrix by SGD, on the parameter server or by blocks.

    ``mode="ssp"`` trains data-parallel on parameter-server tables with ``consistency``
    (default ``ssp``) and ``staleness`` (default 1), ``clocks_per_epoch`` clocks per epoch.
    ``mode="blocks"`` (DSGD) and ``mode="fugue"`` run on the model-parallel scheduler over
    ``num_blocks`` x ``num_blocks`` blocks (default ``workers``); they synchronise every
    sub-round, so ``consistency``/``staleness``/``clocks_per_epoch`` do not apply and must
    be left unset. ``unknown="error"`` makes predict raise :class:`UnknownIdError` on ids
    not seen in training; ``unknown="mean"`` predicts the global mean plus the known side's
    bias. Where and how the fit runs (Ray, snapshots, stragglers, progress) is
    ``fit(X, run=RunConfig(...))``.

    ``X``: a :class:`~stalesync.data.ratings.Ratings`, a users x items scipy sparse matrix,
    an ``(n, 3)`` array of (user, item, rating), or an ``(n, 2)`` array of (user, item) ids
    with ratings ``y``; ``predict`` takes the same id pairs.
    """

    _fitted_attributes = ("P_", "Q_", "mu_")
    _model_arrays = ("P_", "Q_", "user_ids_", "item_ids_", "seen_indptr_", "seen_items_")
    _model_info = ("mu_", "scale_", "history_", "n_features_in_")

    def __init__(self, rank: int = 32, epochs: int = 20, lr: float = 0.01,
                 lr_schedule: str = "inverse", lr_decay: float = 0.1, reg: float = 0.05,
                 reg_bias: float = 0.01, biases: bool = True, init_std: float = 0.1,
                 mode: str = "ssp", workers: int | str = "auto", consistency: str | None = None,
                 staleness: int | None = None, clocks_per_epoch: int | None = None,
                 num_blocks: int | None = None, max_extra_passes: int = 2,
                 unknown: str = "error", dtype: str = "float32", seed: int = 0) -> None:
        self.rank = rank
        self.epochs = epochs
        self.lr = lr
        self.lr_schedule = lr_schedule
        self.lr_decay = lr_decay
        self.reg = reg
        self.reg_bias = reg_bias
        self.biases = biases
        self.init_std = init_std
        self.mode = mode
        self.workers = workers
        self.consistency = consistency
        self.staleness = staleness
        self.clocks_per_epoch = clocks_per_epoch
        self.num_blocks = num_blocks
        self.max_extra_passes = max_extra_passes
        self.unknown = unknown
        self.dtype = dtype
        self.seed = seed

    # -- fitting --------------------------------------------------------------------------
    def _config(self) -> SGDConfig:
        return SGDConfig(rank=int(self.rank), epochs=int(self.epochs), lr=float(self.lr),
                         lr_schedule=self.lr_schedule, lr_decay=float(self.lr_decay),
                         reg=float(self.reg), reg_bias=float(self.reg_bias),
                         biases=bool(self.biases), init_std=float(self.init_std),
                         seed=int(self.seed))

    def _check_own_params(self) -> None:
        check_choice(self.mode, "mode", MODES)
        check_choice(self.unknown, "unknown", UNKNOWN)
        check_choice(self.dtype, "dtype", ("float32", "float64"))
        check_int(self.rank, "rank", 1)
        check_int(self.max_extra_passes, "max_extra_passes", 0)
        check_float(self.lr, "lr", 0, low_open=True)
        check_float(self.reg, "reg", 0)
        check_float(self.reg_bias, "reg_bias", 0)
        check_float(self.init_std, "init_std", 0)
        if self.mode == "ssp":
            check_consistency(self.consistency or "ssp", self.staleness)
            if self.clocks_per_epoch is not None:
                check_int(self.clocks_per_epoch, "clocks_per_epoch", 1)
            if self.num_blocks is not None:
                raise ConfigError("num_blocks applies to the block modes (blocks, fugue), "
                                  "not mode='ssp'", param="num_blocks")
        else:
            for name in ("consistency", "staleness", "clocks_per_epoch"):
                if getattr(self, name) is not None:
                    raise ConfigError(
                        f"{name} applies to mode='ssp' only: mode {self.mode!r} runs "
                        "synchronous sub-rounds of disjoint blocks", param=name)
            if self.num_blocks is not None:
                check_int(self.num_blocks, "num_blocks", 1)
        self._config()  # the SGD settings' own checks

    def fit(self, X: Any, y: Any = None, *, eval_set: Any = None,
            run: RunConfig | dict | None = None, trace: bool = False) -> MatrixFactorization:
        """Train on ``X`` (see the class docstring). ``eval_set`` (same forms) is scored
        after every epoch into ``history_``. ``trace=True`` (block modes) records the rows
        each worker touched per sub-round in ``trace_``."""
        self._check_params()
        run = RunConfig.coerce(run)
        cfg = self._config()
        data = as_ratings(X, y, "X")
        if not len(data):
            raise DataFormatError("X holds no ratings")
        self.user_ids_, self.item_ids_ = data.user_ids, data.item_ids
        self.n_features_in_ = 2
        train = Triples(data.users, data.items, data.values.astype(self.dtype))
        self.mu_ = float(np.mean(train.ratings, dtype=np.float64)) if cfg.biases else 0.0
        self.scale_ = data.scale
        test = self._eval_triples(eval_set)
        progress = Progress(desc=f"mf[{self.mode}]", epochs=cfg.epochs, enabled=run.progress,
                            objective="running train RMSE", items_per_epoch=len(train),
                            items="ratings")
        monitor = Monitor(cfg.epochs, self.mu_, test, self.scale_, progress)
        P0, Q0 = cfg.init_factors(data.n_users, data.n_items, self.dtype)
        warm_up(self.dtype)
        decision = decide(self.workers, lambda: self._work(train, P0, Q0, cfg),
                          resume=run.resume)
        with progress:
            outcome = self._train(train, P0, Q0, cfg, monitor, run, trace, decision.workers)
        self.P_, self.Q_ = outcome.P, outcome.Q
        self._seen_from(train, data.n_users)
        self.history_ = monitor.history
        self.trace_ = outcome.trace
        self.updates_ = outcome.updates
        self.train_time_s_ = outcome.train_time_s
        record = outcome.record
        record["workers_decision"] = decision.as_record()
        record["final"] = self._final(train, test, outcome)
        record["history"] = self.history_
        record["objective_name"] = "running train RMSE (per worker)"
        self._keep_record(record)
        return self

    def _work(self, train: Triples, P0: np.ndarray, Q0: np.ndarray, cfg: SGDConfig) -> Work:
        """The fit's compute, timed on an SGD pass (step size 0: nothing changes) over a
        random sample of the ratings, and its clocks (for ``workers="auto"``)."""
        n = len(train)
        pick = np.random.default_rng(cfg.seed).choice(n, size=min(n, PROBE_RATINGS),
                                                       replace=False)
        users, items, ratings = train.users[pick], train.items[pick], train.ratings[pick]
        seconds = timed(lambda: sgd_pass(users, items, ratings, P0, Q0, mu=self.mu_, lr=0.0,
                                         reg=0.0, reg_bias=0.0, use_bias=cfg.biases))
        if self.mode == "ssp":
            clocks = cfg.epochs * (self.clocks_per_epoch or 1)
        else:  # a sub-round per block of a worker's rows
            clocks = cfg.epochs * int(self.num_blocks or available_cores())
        return Work(seconds * n / pick.size * cfg.epochs, clocks, max_workers=n)

    def _train(self, train: Triples, P0: np.ndarray, Q0: np.ndarray, cfg: SGDConfig,
               monitor: Monitor, run: RunConfig, trace: bool, workers: int) -> TrainOutcome:
        if self.mode == "ssp":
            return train_ssp(train, P0, Q0, self.mu_, cfg, monitor, workers=workers,
                             consistency=self.consistency or "ssp",
                             staleness=self.staleness, clocks_per_epoch=self.clocks_per_epoch
                             or 1, run=run)
        d = int(self.num_blocks or workers)
        blocked = block_data(train, P0.shape[0], Q0.shape[0], d, cfg.seed)
        outcome = train_blocks(blocked, P0, Q0, self.mu_, cfg, monitor, workers=workers,
                               mode="dsgd" if self.mode == "blocks" else "fugue",
                               max_extra_passes=int(self.max_extra_passes), trace=trace,
                               run=run)
        if run.tensorboard:  # the scheduler runs no parameter-server job: written at the end
            write_record(run.tensorboard, outcome.record)
        return outcome

    def _final(self, train: Triples, test: Triples | None, outcome: TrainOutcome) -> dict:
        final = {
            "mode": self.mode,
            "rank": int(self.rank),
            "epochs": int(self.epochs),
            "train_rmse": train.rmse(self.P_, self.Q_, self.mu_, self.scale_),
            "test_rmse": test.rmse(self.P_, self.Q_, self.mu_, self.scale_) if test else None,
            "ratings_per_s": outcome.updates / max(outcome.train_time_s, 1e-12),
            "updates": outcome.updates,
            "train_time_s": outcome.train_time_s,
        }
        return final

    def _eval_triples(self, eval_set: Any) -> Triples | None:
        if eval_set is None:
            return None
        ev = as_ratings(eval_set, None, "eval_set")
        users = self._index(self.user_ids_, ev.user_ids[ev.users], "user", "mean")
        items = self._index(self.item_ids_, ev.item_ids[ev.items], "item", "mean")
        keep = (users >= 0) & (items >= 0)  # unseen ids cannot be scored: dropped
        return Triples(users[keep], items[keep], ev.values[keep].astype(self.dtype))

    def _seen_from(self, train: Triples, n_users: int) -> None:
        order, self.seen_indptr_ = group_by(train.users, n_users)  # O(ratings), no sort
        self.seen_items_ = train.items[order]

    # -- prediction -----------------------------------------------------------------------
    @staticmethod
    def _index(ids: np.ndarray, raw: Any, what: str, unknown: str) -> np.ndarray:
        """Dense index of each raw id (``-1`` where unknown, or an error)."""
        raw = np.asarray(raw)
        if raw.ndim == 0:
            raw = raw.reshape(1)
        if ids.dtype.kind in "iu":
            if raw.dtype.kind not in "iu":
                try:
                    raw = raw.astype(np.int64)
                except (TypeError, ValueError):
                    raise UnknownIdError(f"{what} ids must be integers for this model") from None
        else:
            raw = raw.astype(str)
        pos = np.searchsorted(ids, raw)
        pos = np.minimum(pos, max(ids.size - 1, 0))
        found = ids[pos] == raw if ids.size else np.zeros(raw.shape, bool)
        if not found.all() and unknown == "error":
            missing = raw[~found]
            raise UnknownIdError(
                f"{missing.size} {what} id(s) not seen in training, e.g. {missing[0]!r}; "
                "pass unknown='mean' to predict the global mean for them"
            )
        return np.where(found, pos, -1).astype(np.int64)

    def predict(self, users: Any, items: Any = None) -> np.ndarray:
        """Predicted ratings of aligned raw ``users`` and ``items`` (or one ``(n, 2)``
        array), clipped to the training rating scale."""
        self._check_fitted()
        if items is None:
            pairs = np.asarray(users)
            if pairs.ndim != 2 or pairs.shape[1] != 2:
                raise DataFormatError(
                    f"expected an (n, 2) array of (user, item), got {pairs.shape}")
            users, items = pairs[:, 0], pairs[:, 1]
        u = self._index(self.user_ids_, users, "user", self.unknown)
        i = self._index(self.item_ids_, items, "item", self.unknown)
        if u.shape != i.shape:
            raise DataFormatError(f"users and items differ in length: {u.size} vs {i.size}")
        P, Q = self._with_blank_row(self.P_), self._with_blank_row(self.Q_)
        out = predict_kernel(u, i, P, Q, self.mu_)  # index -1 hits the blank (all-zero) row
        return np.clip(out, *self.scale_)

    @staticmethod
    def _with_blank_row(F: np.ndarray) -> np.ndarray:
        return np.vstack([F, np.zeros((1, F.shape[1]), dtype=F.dtype)])

    def recommend(self, user: Any, n: int = 10,
                  exclude_seen: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` best-scored items for one raw ``user`` id: (raw item ids, scores),
        best first; items the user rated in training are left out unless asked."""
        self._check_fitted()
        u = int(self._index(self.user_ids_, user, "user", "error")[0])
        rank = self.P_.shape[1] - 1
        P, Q = self.P_.astype(np.float64), self.Q_.astype(np.float64)
        scores = Q[:, :rank] @ P[u, :rank] + Q[:, rank] + P[u, rank] + self.mu_
        if exclude_seen:
            scores[self.seen_items_[self.seen_indptr_[u]:self.seen_indptr_[u + 1]]] = -np.inf
        n = min(int(n), int(np.isfinite(scores).sum()))
        top = np.argpartition(-scores, n - 1)[:n] if n > 0 else np.zeros(0, np.int64)
        top = top[np.argsort(-scores[top], kind="stable")]
        return self.item_ids_[top], np.clip(scores[top], *self.scale_)

    def rmse(self, X: Any, y: Any = None) -> float:
        """Root mean squared error on ratings ``X`` (the forms ``fit`` takes)."""
        self._check_fitted()
        data = as_ratings(X, y, "X")
        pred = self.predict(data.user_ids[data.users], data.item_ids[data.items])
        return float(math.sqrt(np.mean((pred - data.values) ** 2)))

    def score(self, X: Any, y: Any = None) -> float:
        """Coefficient of determination R^2 of the predicted ratings (scikit-learn's
        regressor score; :meth:`rmse` gives the error in rating units)."""
        data = as_ratings(X, y, "X")
        pred = self.predict(data.user_ids[data.users], data.item_ids[data.items])
        total = float(np.sum((data.values - data.values.mean()) ** 2))
        resid = float(np.sum((data.values - pred) ** 2))
        return 1.0 - resid / total if total > 0 else 0.0

    def _after_load(self) -> None:
        self.mu_ = float(self.mu_)
        self.scale_ = tuple(self.scale_)


def as_ratings(X: Any, y: Any, name: str) -> Ratings:
    """Accept the input forms of ``fit``/``rmse`` and return :class:`Ratings`."""
    import scipy.sparse as sp

    if isinstance(X, Ratings):
        return X
    if sp.issparse(X):
        return from_sparse(X, source=name)
    arr = check_array(X, dtype="numeric", input_name=name)  # NaN, inf, complex, empty
    if arr.shape[1] not in (2, 3):
        raise DataFormatError(
            f"{name}: MatrixFactorization takes (user, item) id pairs: an (n, 2) array with "
            f"ratings y, an (n, 3) array of (user, item, rating), a users x items sparse "
            f"matrix or Ratings; got {arr.shape[1]} columns")
    if arr.shape[1] == 2:
        if y is None:
            raise DataFormatError(f"{name}: an (n, 2) array of (user, item) ids requires y "
                                  "to be passed, but the target y is None")
        values = np.asarray(y, dtype=np.float64).ravel()
        if values.shape[0] != arr.shape[0]:
            raise DataFormatError(f"{name}: {arr.shape[0]} pairs but {values.shape[0]} ratings")
    else:
        values = arr[:, 2].astype(np.float64)
    if values.size and not np.isfinite(values).all():
        bad = int(np.flatnonzero(~np.isfinite(values))[0])
        raise DataFormatError(f"{name}: rating at row {bad} is not a finite number")
    user_ids, users = dense_ids(arr[:, 0])
    item_ids, items = dense_ids(arr[:, 1])
    if user_ids.dtype.kind == "f":
        if not np.all(user_ids == np.round(user_ids)) or not np.all(item_ids == np.round(item_ids)):
            raise DataFormatError(f"{name}: user and item ids must be integers")
        user_ids, item_ids = user_ids.astype(np.int64), item_ids.astype(np.int64)
    return Ratings(users.astype(np.int32), items.astype(np.int32), values.astype(np.float32),
                   user_ids, item_ids, name)


def dense_ids(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(raw, return_inverse=True)``: the sorted distinct ids and each entry's
    index among them. Whole non-negative ids below ``8 x len(raw)`` (every ratings file's
    ids) are compacted in O(n) by the CSR column kernel instead of sorted (on 5M ratings,
    ~0.1 s instead of ~1 s a column)."""
    raw = np.ascontiguousarray(raw)
    if raw.size and raw.dtype.kind in "iuf":
        low, high = raw.min(), raw.max()
        if low >= 0 and high < 8 * raw.size:
            whole = raw.astype(np.int64)
            if raw.dtype.kind != "f" or np.array_equal(whole, raw):
                ids, index = compact_columns(whole, np.full(int(high) + 1, -1, np.int64))
                return ids.astype(raw.dtype), index
    return np.unique(raw, return_inverse=True)
