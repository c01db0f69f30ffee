"""What every app shares: run settings, parameter checks, the estimator base class.

An app is a model, its kernels and a worker (or schedule) program. Everything else comes
from here and from :mod:`.progress`, :mod:`stalesync.persist.model_io` and :mod:`.command`:

- :class:`RunConfig` says *where and how* a fit runs (runtime, Ray address, server shards,
  injected stragglers, snapshots, resume, progress bar). It is an argument of ``fit``, not an
  estimator parameter, so ``clone``/``GridSearchCV`` copies never share a snapshot
  directory or a Ray session by accident (and a second run on one snapshot directory is
  refused while the first holds it).
- :class:`StalesyncEstimator` is the scikit-learn base of every estimator: parameter
  checks with messages that name the parameter, fitted-state checks raising
  :class:`~stalesync.errors.NotFittedError`, and ``save``/``load`` as one atomic directory
  (JSON + npz, never pickle).
"""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator

from ..errors import ConfigError, DataFormatError, NotFittedError
from ..faults import Stragglers
from ..job import RUNTIMES
from ..observe.metrics import check_record
from ..persist.model_io import load_model, save_model
from ..ps.consistency import KINDS, ConsistencyModel
from ..runtime.address import check_address_format, check_min_nodes
from .workers import check_workers

# -- run settings ---------------------------------------------------------------------------

DEFAULT_RECOVERIES = 3  # restarts after lost workers (Ray) before a fit gives up


@dataclass(frozen=True)
class RunConfig:
    """Where and how a fit runs (not what it computes); ``fit(X, run=RunConfig(...))``.

    ``runtime``: ``embedded`` (threads, default) or ``ray`` (``address``: an existing
    cluster; default: a local Ray started and stopped for the fit). ``shards``: server
    shards of the parameter server. ``stragglers``: injected slow workers
    (:class:`~stalesync.faults.Stragglers` or its CLI text). ``snapshot_every`` clocks (or
    rounds, or L-BFGS iterations) a consistent snapshot goes to ``snapshot_dir``;
    ``resume`` restarts from one; on Ray a lost worker is recovered from the newest, at
    most ``max_recoveries`` times.
    ``progress``: a progress bar on stderr. ``tensorboard``: stream scalars to event files
    in this directory while training (:mod:`stalesync.observe.tensorboard`). ``max_staleness``: the
    ceiling of an estimator's ``staleness="auto"`` (default 8). ``min_nodes`` (Ray): the
    fewest nodes the workers run on; after a node loss the job waits for a node rather
    than go below it (:mod:`stalesync.runtime.ray_backend`).
    """

    runtime: str = "embedded"
    address: str | None = None
    shards: int = 1
    stragglers: Stragglers | str | None = None
    snapshot_every: int | None = None
    snapshot_dir: str | None = None
    resume: str | None = None
    max_recoveries: int = DEFAULT_RECOVERIES
    progress: bool = False
    tensorboard: str | None = None
    max_staleness: int | None = None  # the ceiling of staleness="auto" (default 8)
    min_nodes: int = 1

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            raise ConfigError(f"runtime must be one of {RUNTIMES}, got {self.runtime!r}",
                              param="runtime")
        if self.address is not None and self.runtime != "ray":
            raise ConfigError("address is only used with runtime='ray'", param="address")
        if self.address is not None:
            check_address_format(self.address)
        check_int(self.shards, "shards", 1)
        check_int(self.max_recoveries, "max_recoveries", 0)
        if self.max_recoveries != DEFAULT_RECOVERIES and self.runtime != "ray":
            raise ConfigError("max_recoveries (restarts after lost workers) applies to the Ray "
                              "runtime: an embedded worker is a thread, never lost",
                              param="max_recoveries")
        check_min_nodes(self.min_nodes, self.runtime)
        if self.max_staleness is not None:
            check_int(self.max_staleness, "max_staleness", 0)
        if self.snapshot_every is not None:
            check_int(self.snapshot_every, "snapshot_every", 1)
            if self.snapshot_dir is None and self.resume is None:
                raise ConfigError("snapshot_every needs snapshot_dir (where snapshots go)",
                                  param="snapshot_dir")
        if isinstance(self.stragglers, str):
            object.__setattr__(self, "stragglers", Stragglers.parse(self.stragglers))
        for name in ("snapshot_dir", "resume"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, str(Path(value).expanduser()))

    @classmethod
    def coerce(cls, run: RunConfig | dict[str, Any] | None, **overrides: Any) -> RunConfig:
        """``run`` as a RunConfig (None: defaults; a dict: its fields)."""
        if run is None:
            config = cls()
        elif isinstance(run, dict):
            config = cls(**run)
        elif isinstance(run, cls):
            config = run
        else:
            raise ConfigError(f"run must be a RunConfig or a dict, got {type(run).__name__}")
        return replace(config, **overrides) if overrides else config

    def job_options(self, seed: int) -> dict[str, Any]:
        """Keyword arguments of :func:`stalesync.run` (and the scheduler driver)."""
        stragglers = self.stragglers
        if isinstance(stragglers, Stragglers) and stragglers.seed != seed:
            stragglers = replace(stragglers, seed=seed)
        options: dict[str, Any] = {
            "runtime": self.runtime, "shards": self.shards, "stragglers": stragglers,
            "max_recoveries": self.max_recoveries,
        }
        if self.min_nodes != 1:
            options["min_nodes"] = self.min_nodes
        for name in ("address", "snapshot_every", "snapshot_dir", "resume", "tensorboard",
                     "max_staleness"):
            if getattr(self, name) is not None:
                options[name] = getattr(self, name)
        return options


    def driver_options(self, seed: int) -> dict[str, Any]:
        """Keyword arguments of the scheduler's :class:`~stalesync.scheduler.Driver`: the
        one place a scheduled fit (Lasso, MF blocks) turns its run settings into a driver.
        The parameter server's own settings are refused, naming them: a scheduled fit has
        no server shards and no staleness bound."""
        for name, unused in (("shards", self.shards != 1),
                             ("max_staleness", self.max_staleness is not None)):
            if unused:
                raise ConfigError(f"{name} is a parameter-server setting; this fit runs on "
                                  "the model-parallel scheduler", param=name)
        job = self.job_options(seed)
        return {"runtime": self.runtime, "address": self.address,
                "stragglers": job["stragglers"], "checkpoint_every": self.snapshot_every,
                "snapshot_dir": self.snapshot_dir, "resume": self.resume,
                "max_recoveries": self.max_recoveries, "min_nodes": self.min_nodes}


# -- parameter checks -----------------------------------------------------------------------


def check_sparse_structure(X: Any, name: str = "X") -> Any:
    """``X`` itself; a scipy sparse matrix whose index arrays point outside its shape (or
    whose row pointers go backwards) is refused in one line. scipy checks only their lengths
    when a matrix is built from arrays, and the compiled kernels index without bounds
    checks: a bad index would write outside the model instead of failing."""
    if sp.issparse(X) and X.format in ("csr", "csc"):
        try:
            X.check_format(full_check=True)
        except ValueError as exc:
            raise DataFormatError(f"{name}: malformed sparse matrix: {exc}") from None
    return X


def check_int(value: Any, name: str, low: int | None = None, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{name} must be an integer, got {value!r}", param=name)
    if (low is not None and value < low) or (high is not None and value > high):
        raise ConfigError(f"{name} must be {_range_text(low, high)}, got {value!r}", param=name)
    return int(value)


def check_float(value: Any, name: str, low: float | None = None, high: float | None = None,
                *, low_open: bool = False, high_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}", param=name)
    bad = ((low is not None and (value < low or (low_open and value == low)))
           or (high is not None and (value > high or (high_open and value == high))))
    if bad:
        lo = "" if low is None else f"{'>' if low_open else '>='} {low}"
        hi = "" if high is None else f"{'<' if high_open else '<='} {high}"
        raise ConfigError(f"{name} must be {' and '.join(x for x in (lo, hi) if x)}, "
                          f"got {value!r}", param=name)
    return float(value)


def check_choice(value: Any, name: str, choices: Sequence[Any]) -> Any:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(map(repr, choices))}, "
                          f"got {value!r}", param=name)
    return value


def check_consistency(consistency: Any, staleness: Any) -> ConsistencyModel:
    """The consistency model of ``consistency``/``staleness``; bsp with a staleness other
    than 0, or a negative staleness, is an error naming the parameter. ``"auto"``: a
    controller moves the bound during the run (:mod:`stalesync.ps.auto_staleness`)."""
    check_choice(consistency, "consistency", KINDS)
    if staleness is not None and staleness != "auto":
        if isinstance(staleness, str):
            raise ConfigError(f"staleness must be a non-negative int or 'auto', got "
                              f"{staleness!r}", param="staleness")
        check_int(staleness, "staleness", 0)
    try:
        return ConsistencyModel.parse(consistency, staleness)
    except ConfigError as exc:
        raise ConfigError(str(exc), param="staleness") from None


def _range_text(low: int | None, high: int | None) -> str:
    if low is not None and high is not None:
        return f"in [{low}, {high}]"
    if low is not None:
        return "positive" if low == 1 else f">= {low}"
    return f"<= {high}"


# -- the estimator base ---------------------------------------------------------------------


# the parameters that mean the same in every estimator that has them, checked the same way
SHARED_PARAMETERS: dict[str, Callable[[Any, str], Any]] = {
    "epochs": lambda value, name: check_int(value, name, 1),
    "workers": lambda value, name: check_workers(value, name),
    "seed": lambda value, name: check_int(value, name, 0),
}


class StalesyncEstimator(BaseEstimator):
    """Base of every stalesync estimator (put the scikit-learn mixin first).

    The parameters many estimators share are checked once, here, from
    :data:`SHARED_PARAMETERS` (an estimator that has one gets its check); subclasses
    implement ``_check_own_params()`` for the rest (raise :class:`ConfigError` naming the
    parameter) and list their fitted attributes in ``_fitted_attributes``."""

    _fitted_attributes: tuple[str, ...] = ()
    _model_arrays: tuple[str, ...] = ()  # fitted arrays that save() writes
    _model_info: tuple[str, ...] = ()  # fitted JSON values that save() writes
    _sparse_input = True  # fit / predict take scipy sparse matrices (scikit-learn's tag)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = self._sparse_input
        return tags

    def _check_params(self) -> None:
        """Raise :class:`ConfigError` for any invalid parameter (before any work): the
        shared ones as declared, then the estimator's own."""
        params = self.get_params(deep=False)
        for name, check in SHARED_PARAMETERS.items():
            if name in params:
                check(params[name], name)
        self._check_own_params()

    def _check_own_params(self) -> None:
        """The estimator's own checks (default: none)."""

    def check_params(self) -> None:
        """Validate every parameter now (the CLI calls this before loading data)."""
        self._check_params()

    def _check_fitted(self) -> None:
        if not all(hasattr(self, a) for a in self._fitted_attributes or ("n_features_in_",)):
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet; call fit() "
                f"{'or load() ' if self._model_arrays else ''}first")

    def __sklearn_is_fitted__(self) -> bool:
        return all(hasattr(self, a) for a in self._fitted_attributes or ("n_features_in_",))

    # -- persistence: one atomic directory, JSON + npz ----------------------------------
    def _keep_record(self, record: dict[str, Any]) -> None:
        """The fit's run record, checked against the one schema every path shares."""
        self.run_record_ = check_record(record)

    def save(self, path: str | Path) -> Path:
        """Write the fitted model into directory ``path`` (replaced atomically): its
        parameters and fitted values as JSON, its arrays as npz. Never pickle."""
        self._check_fitted()
        arrays = {name: getattr(self, name) for name in self._model_arrays}
        info = {name: getattr(self, name) for name in self._model_info}
        return save_model(path, self, arrays, info)

    @classmethod
    def load(cls, path: str | Path):
        """A model written by :meth:`save`."""
        params, arrays, info = load_model(path, cls)
        unknown = sorted(set(params) - set(inspect.signature(cls.__init__).parameters))
        if unknown:
            raise DataFormatError(f"{path}: saved with parameters {cls.__name__} no longer "
                                  f"takes: {', '.join(unknown)} (a strategy's options are "
                                  "now strategy_options); refit and save it again")
        model = cls(**params)
        for name, value in {**arrays, **info}.items():
            setattr(model, name, value)
        model._after_load()
        return model

    def _after_load(self) -> None:
        """Rebuild derived fitted state after :meth:`load` (default: nothing)."""

