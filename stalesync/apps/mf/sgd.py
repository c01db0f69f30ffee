"""What every training mode shares: SGD hyper-parameters, the step-size schedule, the
training data in dense-index form, and the per-epoch monitor (history + progress bar)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...errors import ConfigError
from ...kernels.mf import sum_squared_error

LR_SCHEDULES = ("constant", "inverse", "exponential")


@dataclass(frozen=True)
class SGDConfig:
    """SGD hyper-parameters. ``lr_at(epoch)`` is the step size of an epoch:
    ``constant`` lr; ``inverse`` lr / (1 + decay * epoch); ``exponential`` lr * decay**epoch.
    A decaying step is what lets SGD settle instead of bouncing around the optimum."""

    rank: int = 32
    epochs: int = 20
    lr: float = 0.01
    lr_schedule: str = "inverse"
    lr_decay: float = 0.1
    reg: float = 0.05
    reg_bias: float = 0.01
    biases: bool = True
    init_std: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        if int(self.rank) < 1:
            raise ConfigError(f"rank must be >= 1, got {self.rank}")
        if int(self.epochs) < 1:
            raise ConfigError(f"epochs must be >= 1, got {self.epochs}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(
                f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if self.lr_decay < 0 or (self.lr_schedule == "exponential" and not self.lr_decay <= 1):
            raise ConfigError(f"lr_decay {self.lr_decay} is invalid for {self.lr_schedule!r}")
        if self.reg < 0 or self.reg_bias < 0:
            raise ConfigError(f"reg and reg_bias must be >= 0, got {self.reg}, {self.reg_bias}")
        if self.init_std < 0:
            raise ConfigError(f"init_std must be >= 0, got {self.init_std}")

    def lr_at(self, epoch: int) -> float:
        if self.lr_schedule == "inverse":
            return self.lr / (1.0 + self.lr_decay * epoch)
        if self.lr_schedule == "exponential":
            return self.lr * self.lr_decay**epoch
        return self.lr

    def kernel_args(self, epoch: int, mu: float) -> dict[str, Any]:
        return {"mu": mu, "lr": self.lr_at(epoch), "reg": self.reg, "reg_bias": self.reg_bias,
                "use_bias": self.biases}

    def init_factors(self, n_users: int, n_items: int,
                     dtype: str = "float32") -> tuple[np.ndarray, np.ndarray]:
        """Random factors (N(0, init_std)), zero biases in the last column."""
        rng = np.random.default_rng([self.seed, 7])
        P = np.zeros((n_users, self.rank + 1), dtype=dtype)
        Q = np.zeros((n_items, self.rank + 1), dtype=dtype)
        P[:, : self.rank] = rng.normal(0.0, self.init_std, (n_users, self.rank))
        Q[:, : self.rank] = rng.normal(0.0, self.init_std, (n_items, self.rank))
        return P, Q


@dataclass(frozen=True)
class Triples:
    """Ratings as aligned dense-index arrays, the form every kernel takes."""

    users: np.ndarray  # int32
    items: np.ndarray  # int32
    ratings: np.ndarray  # float32

    def __len__(self) -> int:
        return int(self.users.shape[0])

    def take(self, index: np.ndarray) -> Triples:
        return Triples(self.users[index], self.items[index], self.ratings[index])

    def rmse(self, P: np.ndarray, Q: np.ndarray, mu: float,
             clip: tuple[float, float] | None = None) -> float:
        if not len(self):
            return math.nan
        sse = sum_squared_error(self.users, self.items, self.ratings, P, Q, mu, clip)
        return math.sqrt(sse / len(self))


class Monitor:
    """Per-epoch history (time, running train RMSE, test RMSE); drives the progress bar.

    Modes call :meth:`epoch_done` once per epoch from one thread, with a consistent (or, in
    SSP mode, the reporting worker's) view of the factors. The *running* train RMSE is the
    error of each rating just before its own SGD step in that epoch (free to compute); the
    final train RMSE of the run record is measured on the final factors."""

    def __init__(self, epochs: int, mu: float, test: Triples | None = None,
                 clip: tuple[float, float] | None = None, progress: Any = None) -> None:
        self.epochs, self.mu, self.test, self.clip = epochs, mu, test, clip
        self.progress = progress
        self.history: list[dict[str, float]] = []
        self.start = time.perf_counter()

    def __getstate__(self) -> dict[str, Any]:
        """Picklable for out-of-process workers (Ray): the progress bar stays here."""
        state = dict(self.__dict__)
        state["progress"] = None
        return state

    def restart_clock(self) -> None:
        self.start = time.perf_counter()

    def epoch_done(self, epoch: int, P: np.ndarray, Q: np.ndarray, train_rmse: float) -> None:
        now = time.perf_counter() - self.start
        row = {"epoch": epoch, "time_s": now, "train_rmse": train_rmse}
        if self.test is not None:
            row["test_rmse"] = self.test.rmse(P, Q, self.mu, self.clip)
        self.history.append(row)
        if self.progress is not None:
            extra = {"test RMSE": f"{row['test_rmse']:.4f}"} if "test_rmse" in row else {}
            self.progress.advance(epoch + 1, train_rmse, **extra)


@dataclass
class TrainOutcome:
    """What a mode returns: final factors, run record, and how many SGD updates it made."""

    P: np.ndarray
    Q: np.ndarray
    record: dict[str, Any]
    updates: int
    train_time_s: float
    trace: list[dict[str, Any]] | None = None
