"""What a server shard does with an increment: a table's update rule.

``add`` (the default) adds increments to the rows: workers send *deltas*, and a worker's
cache shows its own increments at once (read-my-writes). The other rules treat an increment
as a *gradient* that the shard turns into an update, as DistBelief's parameter servers
applied Adagrad: ``sgd`` (``w -= lr_t g``), ``adagrad`` (``a += g^2; w -= lr g /
(sqrt(a) + eps)``) and ``adam``. A worker's cache then shows only what the server sent (a
gradient is not a change of the value).

A rule applies to the rows in one message at once (the rows of a message are distinct), in a
compiled kernel; ``t`` is the table's count of applied updates on that shard, for step-size
schedules. Rules are frozen dataclasses: they travel to remote shards and into snapshots'
``meta.json`` (their state arrays, e.g. Adagrad's accumulators, are snapshot tables too).
Register a new rule in :data:`RULES`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np
from numba import njit

from ..errors import ConfigError
from ..kernels.rows import scatter_add_rows


@njit(cache=True, nogil=True)
def _sgd(values, rows, grads, lr):
    for i in range(rows.size):
        r = rows[i]
        for j in range(values.shape[1]):
            values[r, j] -= lr * grads[i, j]


@njit(cache=True, nogil=True)
def _adagrad(values, accum, rows, grads, lr, eps):
    for i in range(rows.size):
        r = rows[i]
        for j in range(values.shape[1]):
            g = grads[i, j]
            accum[r, j] += g * g
            values[r, j] -= lr * g / (np.sqrt(accum[r, j]) + eps)


@njit(cache=True, nogil=True)
def _adam(values, m, v, t_rows, rows, grads, lr, b1, b2, eps):
    for i in range(rows.size):
        r = rows[i]
        t_rows[r] += 1
        t = t_rows[r]
        c1 = 1.0 - b1**t
        c2 = 1.0 - b2**t
        for j in range(values.shape[1]):
            g = grads[i, j]
            m[r, j] = b1 * m[r, j] + (1.0 - b1) * g
            v[r, j] = b2 * v[r, j] + (1.0 - b2) * g * g
            values[r, j] -= lr * (m[r, j] / c1) / (np.sqrt(v[r, j] / c2) + eps)


@dataclass(frozen=True)
class UpdateRule(ABC):
    """Base of every rule; ``name`` keys it in :data:`RULES`."""

    name: ClassVar[str] = "rule"
    gradient: ClassVar[bool] = True  # increments are gradients, not deltas
    state: ClassVar[tuple[str, ...]] = ()  # per-row arrays the rule keeps, like the values

    def new_state(self, values: np.ndarray) -> dict[str, np.ndarray]:
        return {name: np.zeros_like(values, dtype=np.float64) for name in self.state}

    @abstractmethod
    def apply(self, values: np.ndarray, state: dict[str, np.ndarray], rows: np.ndarray,
              increments: np.ndarray, t: int) -> None:
        """Fold ``increments`` (one per distinct local row) into ``values`` in place."""

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.name, **asdict(self)}


@dataclass(frozen=True)
class Add(UpdateRule):
    name: ClassVar[str] = "add"
    gradient: ClassVar[bool] = False

    def apply(self, values, state, rows, increments, t) -> None:
        scatter_add_rows(values, rows, increments)


@dataclass(frozen=True)
class SGD(UpdateRule):
    """``w -= lr_t g`` with ``lr_t = lr / (1 + decay t)``."""

    lr: float = 0.1
    decay: float = 0.0
    name: ClassVar[str] = "sgd"

    def apply(self, values, state, rows, increments, t) -> None:
        _sgd(values, rows, increments, self.lr / (1.0 + self.decay * t))


@dataclass(frozen=True)
class Adagrad(UpdateRule):
    lr: float = 0.1
    eps: float = 1e-8
    name: ClassVar[str] = "adagrad"
    state: ClassVar[tuple[str, ...]] = ("accum",)

    def apply(self, values, state, rows, increments, t) -> None:
        _adagrad(values, state["accum"], rows, increments, self.lr, self.eps)


@dataclass(frozen=True)
class Adam(UpdateRule):
    """Adam with a step count per row (lazy, as for sparse gradients)."""

    lr: float = 0.001
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    name: ClassVar[str] = "adam"
    state: ClassVar[tuple[str, ...]] = ("m", "v", "t")

    def new_state(self, values: np.ndarray) -> dict[str, np.ndarray]:
        return {"m": np.zeros_like(values, dtype=np.float64),
                "v": np.zeros_like(values, dtype=np.float64),
                "t": np.zeros((values.shape[0], 1), dtype=np.float64)}

    def apply(self, values, state, rows, increments, t) -> None:
        _adam(values, state["m"], state["v"], state["t"][:, 0], rows, increments, self.lr,
              self.beta1, self.beta2, self.eps)


RULES: dict[str, type[UpdateRule]] = {r.name: r for r in (Add, SGD, Adagrad, Adam)}


def make_rule(spec: str | dict[str, Any] | UpdateRule | None) -> UpdateRule:
    """A rule from a name (``"adagrad"``), a dict (``{"rule": "sgd", "lr": 0.5}``) or itself."""
    if spec is None:
        return Add()
    if isinstance(spec, UpdateRule):
        return spec
    if isinstance(spec, str):
        spec = {"rule": spec}
    options = dict(spec)
    name = options.pop("rule", None)
    if name not in RULES:
        raise ConfigError(f"unknown update rule {name!r}; choose one of {sorted(RULES)}",
                          param="update")
    try:
        rule = RULES[name](**options)
    except TypeError as exc:
        raise ConfigError(f"update rule {name!r}: {exc}", param="update") from None
    for key in ("lr", "eps"):
        if hasattr(rule, key) and not getattr(rule, key) > 0:
            raise ConfigError(f"update rule {name!r}: {key} must be > 0", param="update")
    return rule
