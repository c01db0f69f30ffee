"""Building schedules by name (for CLIs and estimators), with what each kind needs.

A schedule's abilities are declared here once, as attributes of its :class:`ScheduleKind`,
so callers ask ``kind.needs_columns`` or ``kind.prioritized`` instead of guessing from the
name (the alias ``strads`` is priority + dependency and behaves exactly like it).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from .base import Schedule
from .basic import Cyclic, Shotgun
from .dependency import ColumnCorrelation, DependencyAware
from .priority import Priority


@dataclass(frozen=True)
class ScheduleKind:
    name: str
    needs_columns: bool  # the dependency check reads the data's columns
    prioritized: bool  # draws by (recent change)^2 + eta: checks can adapt to its active set
    description: str
    sweeps: bool = False  # with every row on one worker, an app may sweep it compiled


KINDS = {
    "cyclic": ScheduleKind("cyclic", False, False, "variables 0..d-1 in order"),
    "random": ScheduleKind("random", False, False, "uniform without replacement (Shotgun)"),
    "priority": ScheduleKind("priority", False, True, "STRADS priority: change^2 + eta"),
    "dependency": ScheduleKind("dependency", True, False,
                               "random, never two correlated variables together"),
    "priority-dependency": ScheduleKind("priority-dependency", True, True,
                                        "STRADS: priority + dependency check"),
    "sequential": ScheduleKind("sequential", False, False,
                               "one variable at a time, in order; with one worker the app "
                               "sweeps its working set in one compiled call per check",
                               sweeps=True),
    "blocks": ScheduleKind("blocks", False, False,
                           "each worker sweeps its own block of variables, compiled, and the "
                           "blocks' changes meet at each check (Jacobi over blocks)",
                           sweeps=True),
}
AUTO = "auto"  # compiled sweeps (where the app has them), else STRADS
SCHEDULES = (AUTO, *KINDS)
ALIASES = {"shotgun": "random", "round-robin": "cyclic", "priority+dependency":
           "priority-dependency", "strads": "priority-dependency"}


def resolve(name: str, workers: int = 1, can_sweep: bool = False) -> str:
    """The schedule a name means: for an app that sweeps, ``auto`` is ``sequential`` on one
    worker (nothing to coordinate; scikit-learn's exact algorithm, compiled) and ``blocks``
    on several (one hand-off per check, not per coordinate); STRADS's
    ``priority-dependency`` otherwise; aliases map to their schedule."""
    if name == AUTO:
        if can_sweep:
            return "sequential" if workers == 1 else "blocks"
        return "priority-dependency"
    return ALIASES.get(name, name)


def schedule_kind(name: str, workers: int = 1, can_sweep: bool = False) -> ScheduleKind:
    """The kind of a schedule name or alias; a clear error for unknown names."""
    key = resolve(name, workers, can_sweep)
    if key not in KINDS:
        raise ConfigError(f"unknown schedule {name!r}; choose one of {SCHEDULES} "
                          f"(aliases: {', '.join(ALIASES)})", param="schedule")
    return KINDS[key]


def make_schedule(name: str, parallel: int = 1, *, columns: ColumnCorrelation | None = None,
                  threshold: float = 0.3, eta: float = 1e-6,
                  eta_relative: float | None = None) -> Schedule:
    """A built-in schedule by name (see :data:`KINDS`). The dependency-aware ones need
    ``columns`` (a :class:`ColumnCorrelation` of the data). ``eta_relative``: see
    :class:`Priority`."""
    kind = schedule_kind(name)
    if kind.needs_columns and columns is None:
        raise ConfigError(f"schedule {name!r} needs the data columns for its dependency check")
    base = (Priority(parallel, eta=eta, eta_relative=eta_relative) if kind.prioritized
            else Cyclic(1) if kind.sweeps
            else Cyclic(parallel) if kind.name == "cyclic" else Shotgun(parallel))
    return DependencyAware(base, columns, threshold=threshold) if kind.needs_columns else base
