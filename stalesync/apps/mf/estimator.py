"""``MatrixFactorization``: a scikit-learn-style estimator over the three training modes.

``R ~ mu + b_u + b_i + p_u . q_i`` with L2 regularisation, trained by SGD:

- ``mode="ssp"``: data-parallel on parameter-server tables, any consistency model;
- ``mode="blocks"``: DSGD block rotation, a barrier per sub-round;
- ``mode="fugue"``: block rotation where early finishers keep working on their own blocks.

Users and items are addressed by their raw ids (as in the file) everywhere in this API.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from ...data.ratings import Ratings, from_sparse
from ...errors import ConfigError, DataFormatError, StalesyncError
from ...faults import Stragglers
from ...job import run_control_options
from ...kernels.mf import predict as predict_kernel
from ...kernels.mf import warm_up
from ...metrics import atomic_write_bytes, write_run_record
from .blocks import BlockTrainer, block_data
from .sgd import Monitor, SGDConfig, TrainOutcome, Triples
from .ssp import train_ssp

MODES = ("ssp", "blocks", "fugue")
UNKNOWN = ("error", "mean")
FORMAT_VERSION = 1


class UnknownIdError(StalesyncError, KeyError):
    """A user or item id given to predict/recommend was never seen in training."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class NotFittedError(StalesyncError, RuntimeError):
    """The model was used before ``fit`` (or ``load``)."""


class MatrixFactorization(BaseEstimator):
    """Matrix factorization of a ratings matrix by SGD, on the parameter server or by blocks.

    ``unknown="error"`` makes predict raise :class:`UnknownIdError` on ids not seen in
    training; ``unknown="mean"`` predicts the global mean plus the known side's bias.
    ``num_blocks`` (block modes) defaults to ``workers``. ``runtime``/``shards`` are the
    parameter server's (SSP mode only; block modes run on in-process threads), and so are
    ``snapshot_every``/``snapshot_dir``/``resume`` (consistent snapshots; on Ray a crashed
    actor is recovered from the newest) and ``address`` (a Ray cluster).
    ``clocks_per_epoch`` (SSP mode) cuts each worker's epoch into that many clocks, i.e. that
    many synchronisation points.
    """

    def __init__(self, rank: int = 32, epochs: int = 20, lr: float = 0.01,
                 lr_schedule: str = "inverse", lr_decay: float = 0.1, reg: float = 0.05,
                 reg_bias: float = 0.01, biases: bool = True, init_std: float = 0.1,
                 mode: str = "ssp", workers: int = 1, consistency: str = "ssp",
                 staleness: int | None = 1, clocks_per_epoch: int = 1,
                 num_blocks: int | None = None, max_extra_passes: int = 2,
                 runtime: str = "embedded", shards: int = 1,
                 stragglers: Stragglers | str | None = None, unknown: str = "error",
                 dtype: str = "float32", seed: int = 0, progress: bool = False,
                 snapshot_every: int | None = None, snapshot_dir: str | None = None,
                 resume: str | None = None, address: str | None = None) -> None:
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
        self.runtime = runtime
        self.shards = shards
        self.stragglers = stragglers
        self.unknown = unknown
        self.dtype = dtype
        self.seed = seed
        self.progress = progress
        self.snapshot_every = snapshot_every
        self.snapshot_dir = snapshot_dir
        self.resume = resume
        self.address = address

    # -- fitting --------------------------------------------------------------------------
    def _config(self) -> SGDConfig:
        return SGDConfig(rank=int(self.rank), epochs=int(self.epochs), lr=float(self.lr),
                         lr_schedule=self.lr_schedule, lr_decay=float(self.lr_decay),
                         reg=float(self.reg), reg_bias=float(self.reg_bias),
                         biases=bool(self.biases), init_std=float(self.init_std),
                         seed=int(self.seed))

    def _check_options(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.unknown not in UNKNOWN:
            raise ConfigError(f"unknown must be one of {UNKNOWN}, got {self.unknown!r}")
        if not isinstance(self.workers, int) or self.workers < 1:
            raise ConfigError(f"workers must be a positive int, got {self.workers!r}")
        if not isinstance(self.clocks_per_epoch, int) or self.clocks_per_epoch < 1:
            raise ConfigError(
                f"clocks_per_epoch must be a positive int, got {self.clocks_per_epoch!r}")
        if self.mode != "ssp" and self.runtime != "embedded":
            raise ConfigError(
                f"mode {self.mode!r} runs on threads sharing the factor arrays; it needs "
                f"runtime='embedded', got {self.runtime!r} (use mode='ssp' on Ray)")
        given = run_control_options(self)
        if self.mode != "ssp" and given:
            raise ConfigError(
                f"mode {self.mode!r} has no snapshots or Ray cluster; "
                f"{sorted(given)} need mode='ssp'")
        if self.dtype not in ("float32", "float64"):
            raise ConfigError(f"dtype must be float32 or float64, got {self.dtype!r}")

    def fit(self, X: Any, y: Any = None, *, eval_set: Any = None,
            metrics_out: str | os.PathLike | None = None,
            trace: bool = False) -> MatrixFactorization:
        """Train on ``X``: a :class:`~stalesync.data.ratings.Ratings`, a scipy sparse matrix,
        an ``(n, 3)`` array of (user, item, rating), or an ``(n, 2)`` id array with ratings
        ``y``. ``eval_set`` (same forms) is scored after every epoch into ``history_``.
        ``trace=True`` (block modes) records the rows each worker touched per sub-round in
        ``trace_``."""
        self._check_options()
        cfg = self._config()
        data = as_ratings(X, y, "X")
        if not len(data):
            raise DataFormatError("X holds no ratings")
        self.user_ids_, self.item_ids_ = data.user_ids, data.item_ids
        train = Triples(data.users, data.items, data.values.astype(self.dtype))
        self.mu_ = float(np.mean(train.ratings, dtype=np.float64)) if cfg.biases else 0.0
        self.scale_ = data.scale
        test = self._eval_triples(eval_set)
        monitor = Monitor(cfg.epochs, self.mu_, test, self.scale_, bool(self.progress),
                          desc=f"mf[{self.mode}]")
        P0, Q0 = cfg.init_factors(data.n_users, data.n_items, self.dtype)
        warm_up(self.dtype)
        try:
            outcome = self._train(train, P0, Q0, cfg, monitor, trace)
        finally:
            monitor.close()
        self.P_, self.Q_ = outcome.P, outcome.Q
        self._seen_from(train, data.n_users)
        self.history_ = monitor.history
        self.trace_ = outcome.trace
        self.updates_ = outcome.updates
        self.train_time_s_ = outcome.train_time_s
        self.record_ = outcome.record
        self.record_["final"] = self._final(train, test, outcome)
        self.record_["history"] = self.history_
        self.record_["objective_name"] = "running train RMSE (per worker)"
        if metrics_out:
            write_run_record(self.record_, metrics_out)
        return self

    def _stragglers(self) -> Stragglers | None:
        if isinstance(self.stragglers, str):
            return Stragglers.parse(self.stragglers, seed=int(self.seed))
        return self.stragglers

    def _train(self, train: Triples, P0: np.ndarray, Q0: np.ndarray, cfg: SGDConfig,
               monitor: Monitor, trace: bool) -> TrainOutcome:
        if self.mode == "ssp":
            staleness = None if self.consistency in ("bsp", "async") else self.staleness
            return train_ssp(train, P0, Q0, self.mu_, cfg, monitor, workers=self.workers,
                             consistency=self.consistency, staleness=staleness,
                             clocks_per_epoch=self.clocks_per_epoch,
                             stragglers=self._stragglers(), shards=int(self.shards),
                             runtime=self.runtime, **run_control_options(self))
        d = int(self.num_blocks or self.workers)
        blocked = block_data(train, P0.shape[0], Q0.shape[0], d, cfg.seed)
        trainer = BlockTrainer(blocked, P0, Q0, self.mu_, cfg, monitor, workers=self.workers,
                               mode="dsgd" if self.mode == "blocks" else "fugue",
                               stragglers=self._stragglers(),
                               max_extra_passes=int(self.max_extra_passes), trace=trace)
        return trainer.run()

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
        order = np.argsort(train.users, kind="stable")
        self.seen_indptr_ = np.searchsorted(train.users[order], np.arange(n_users + 1))
        self.seen_items_ = train.items[order]

    # -- prediction -----------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "P_"):
            raise NotFittedError("this MatrixFactorization is not fitted; call fit() or load()")

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
        """Negative RMSE (greater is better, as scikit-learn's model selection expects)."""
        return -self.rmse(X, y)

    # -- persistence ----------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write the model to one ``.npz`` (arrays + a JSON header), atomically; no pickle."""
        self._check_fitted()
        import io

        meta = {"format": "stalesync-mf", "version": FORMAT_VERSION, "params": self.get_params(),
                "mu": self.mu_, "scale": list(self.scale_), "history": self.history_}
        meta["params"]["stragglers"] = None if self.stragglers is None else str(self.stragglers)
        buf = io.BytesIO()
        np.savez(buf, P=self.P_, Q=self.Q_, user_ids=self.user_ids_, item_ids=self.item_ids_,
                 seen_indptr=self.seen_indptr_, seen_items=self.seen_items_,
                 meta=np.array(json.dumps(meta)))
        atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike) -> MatrixFactorization:
        try:
            with np.load(Path(path), allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError) as exc:
            raise DataFormatError(f"{path}: not a readable model file ({exc})") from None
        try:
            meta = json.loads(str(arrays.pop("meta")))
        except (KeyError, ValueError):
            raise DataFormatError(f"{path}: model file has no valid JSON header") from None
        if meta.get("format") != "stalesync-mf":
            raise DataFormatError(f"{path}: not a stalesync matrix factorization model")
        params = dict(meta["params"])
        params["stragglers"] = None
        model = cls(**params)
        model.P_, model.Q_ = arrays["P"], arrays["Q"]
        model.user_ids_, model.item_ids_ = arrays["user_ids"], arrays["item_ids"]
        model.seen_indptr_, model.seen_items_ = arrays["seen_indptr"], arrays["seen_items"]
        model.mu_, model.scale_ = float(meta["mu"]), tuple(meta["scale"])
        model.history_ = meta.get("history", [])
        return model


def as_ratings(X: Any, y: Any, name: str) -> Ratings:
    """Accept the input forms of ``fit``/``rmse`` and return :class:`Ratings`."""
    import scipy.sparse as sp

    if isinstance(X, Ratings):
        return X
    if sp.issparse(X):
        return from_sparse(X, source=name)
    arr = np.asarray(X)
    if arr.ndim != 2 or arr.shape[1] not in (2, 3):
        raise DataFormatError(
            f"{name}: expected Ratings, a scipy sparse matrix, or an (n, 3) / (n, 2)+y array, "
            f"got shape {arr.shape}"
        )
    if arr.shape[1] == 2:
        if y is None:
            raise DataFormatError(f"{name}: an (n, 2) array of (user, item) needs ratings y")
        values = np.asarray(y, dtype=np.float64).ravel()
        if values.shape[0] != arr.shape[0]:
            raise DataFormatError(f"{name}: {arr.shape[0]} pairs but {values.shape[0]} ratings")
    else:
        values = arr[:, 2].astype(np.float64)
    if values.size and not np.isfinite(values).all():
        bad = int(np.flatnonzero(~np.isfinite(values))[0])
        raise DataFormatError(f"{name}: rating at row {bad} is not a finite number")
    user_ids, users = np.unique(arr[:, 0], return_inverse=True)
    item_ids, items = np.unique(arr[:, 1], return_inverse=True)
    if user_ids.dtype.kind == "f":
        if not np.all(user_ids == np.round(user_ids)) or not np.all(item_ids == np.round(item_ids)):
            raise DataFormatError(f"{name}: user and item ids must be integers")
        user_ids, item_ids = user_ids.astype(np.int64), item_ids.astype(np.int64)
    return Ratings(users.astype(np.int32), items.astype(np.int32), values.astype(np.float32),
                   user_ids, item_ids, name)
