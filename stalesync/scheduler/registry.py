"""Building schedules by name (for CLIs and estimators)."""

from __future__ import annotations

from ..errors import ConfigError
from .base import Schedule
from .basic import Cyclic, Shotgun
from .dependency import ColumnCorrelation, DependencyAware
from .priority import Priority

SCHEDULES = ("cyclic", "random", "priority", "dependency", "priority-dependency")
ALIASES = {"shotgun": "random", "round-robin": "cyclic", "priority+dependency":
           "priority-dependency", "strads": "priority-dependency"}


def make_schedule(name: str, parallel: int = 1, *, columns: ColumnCorrelation | None = None,
                  threshold: float = 0.3, eta: float = 1e-6,
                  eta_relative: float | None = None) -> Schedule:
    """A built-in schedule: ``cyclic``, ``random`` (Shotgun), ``priority``, ``dependency``
    (random + correlation filter), ``priority-dependency`` (STRADS). The dependency-aware
    ones need ``columns`` (a :class:`ColumnCorrelation` of the data). ``eta_relative``: see
    :class:`Priority`."""
    key = ALIASES.get(name, name)
    if key == "cyclic":
        return Cyclic(parallel)
    if key == "random":
        return Shotgun(parallel)
    if key == "priority":
        return Priority(parallel, eta=eta, eta_relative=eta_relative)
    if key in ("dependency", "priority-dependency"):
        if columns is None:
            raise ConfigError(f"schedule {name!r} needs the data columns for its dependency check")
        if key == "priority-dependency":
            base = Priority(parallel, eta=eta, eta_relative=eta_relative)
        else:
            base = Shotgun(parallel)
        return DependencyAware(base, columns, threshold=threshold)
    raise ConfigError(f"unknown schedule {name!r}; choose one of {SCHEDULES}")
