"""``stalesync.nn.fit``: train a user's own ``torch.nn.Module`` with any strategy.

The module's parameters go into the parameter table as one flat vector, exactly as for the
built-in networks; every worker trains its own copy (``copy.deepcopy`` of the module passed,
made where the worker runs), so nothing is read from disk and nothing is unpickled that this
process did not create. Only parameters are trained and combined: buffers (BatchNorm's running
statistics, say) stay as they were in the module passed.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...errors import ConfigError, DataFormatError
from ..base import RunConfig, check_int
from . import networks
from .model import resolve_optimizer
from .problem import NNSpec
from .training import make_plan, train

EVAL_BATCH = 4096


@dataclass(frozen=True)
class FitResult:
    module: Any  # the module passed, its parameters now the trained ones
    run_record: dict[str, Any]


def fit(module: Any, loss_fn: Any, X: Any, y: Any, *, strategy: str = "ps",
        epochs: int = 5, lr: float = 0.05, batch_size: int = 64, workers: int = 2,
        consistency: str = "ssp", staleness: int | str | None = 1,
        clocks_per_epoch: int | None = None, strategy_options: dict[str, Any] | None = None,
        compress: str = "none", optimizer: str = "sgd",
        seed: int = 0, run: RunConfig | dict | None = None) -> FitResult:
    """Train ``module`` on examples ``X`` (first axis: examples) and targets ``y`` so that
    ``loss_fn(module(x_batch), y_batch)`` (a scalar tensor) goes down.

    Integer targets are passed to ``loss_fn`` as int64 (class indices), others as float32.
    The strategy settings are :class:`~stalesync.apps.nn.NeuralNetClassifier`'s
    (``docs/nn.md``); ``optimizer``: ``sgd`` or ``adam``, where the strategy's workers take
    local steps (``average``, ``ps``, ``fedavg``, ``pipeline``); ``run`` says where and how
    (Ray, snapshots, progress). The module is
    updated in place and returned with the run record (``final``: ``train_loss`` over all of
    ``X``, ``examples_per_s``, ``bytes_sent``, ...).
    """
    torch = networks.torch_module()
    if not isinstance(module, torch.nn.Module):
        raise ConfigError(f"module must be a torch.nn.Module, got {type(module).__name__}",
                          param="module")
    if not callable(loss_fn):
        raise ConfigError("loss_fn must be callable: loss_fn(output, target) -> scalar",
                          param="loss_fn")
    if optimizer not in ("sgd", "adam"):
        raise ConfigError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}",
                          param="optimizer")
    optimizer, lr = resolve_optimizer(strategy, optimizer, lr)
    plan = make_plan(strategy, lr=lr, batch_size=batch_size, workers=workers,
                     consistency=consistency, staleness=staleness,
                     clocks_per_epoch=clocks_per_epoch, compress=compress, seed=seed,
                     strategy_options=strategy_options)
    check_int(epochs, "epochs", 1)
    run = RunConfig.coerce(run)
    X, y = _arrays(X, y)
    _check_fits(module, loss_fn, X, y)
    initial = networks.get_flat(module)
    spec = NNSpec("module", int(np.prod(X.shape[1:])), 0, 0, initial.shape[0], float(lr),
                  batch_size, workers, seed, factory=functools.partial(copy.deepcopy, module),
                  loss=loss_fn, optimizer=optimizer)
    trained = train(spec, initial, X, y, plan, epochs, run)
    networks.set_flat(module, trained.params)
    record = trained.record
    record["final"] = {**record["final"], "train_loss": mean_loss(module, loss_fn, X, y)}
    return FitResult(module, record)


def _arrays(X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    X = np.ascontiguousarray(X, dtype=np.float32)
    y = np.asarray(y)
    if X.ndim < 2:
        raise DataFormatError(f"X must have an examples axis and features, got shape {X.shape}")
    if y.shape[:1] != X.shape[:1]:
        raise DataFormatError(f"X has {X.shape[0]} examples but y has "
                              f"{y.shape[0] if y.ndim else 0} targets")
    if not np.isfinite(X).all():
        raise DataFormatError("X holds NaN or infinite values")
    y = y.astype(np.int64) if y.dtype.kind in "iub" else np.ascontiguousarray(y, np.float32)
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise DataFormatError("y holds NaN or infinite values")
    return X, y


def _check_fits(module: Any, loss_fn: Any, X: np.ndarray, y: np.ndarray) -> None:
    """One forward and loss on two examples, before any worker starts."""
    torch = networks.torch_module()
    try:
        with torch.no_grad():
            loss = loss_fn(module(torch.from_numpy(X[:2])), torch.from_numpy(y[:2]))
    except Exception as exc:  # noqa: BLE001 - the user's code: report it, named
        raise ConfigError(f"module and loss_fn do not fit X and y (on the first two "
                          f"examples: {type(exc).__name__}: {exc})", param="module") from exc
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise ConfigError("loss_fn must return a scalar tensor", param="loss_fn")


def mean_loss(module: Any, loss_fn: Any, X: np.ndarray, y: np.ndarray) -> float:
    """The loss over all examples (a mean of batch losses weighted by batch size)."""
    torch = networks.torch_module()
    total = 0.0
    with torch.no_grad():
        for start in range(0, X.shape[0], EVAL_BATCH):
            xb = torch.from_numpy(X[start:start + EVAL_BATCH])
            yb = torch.from_numpy(y[start:start + EVAL_BATCH])
            total += float(loss_fn(module(xb), yb)) * xb.shape[0]
    return total / max(X.shape[0], 1)
