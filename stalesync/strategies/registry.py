"""The strategies by name, and what a job may ask of each.

Adding a strategy is its module (a :class:`~.base.Strategy` subclass with its
:class:`~.base.Options`) and one line of :data:`STRATEGIES`; the estimators' and the
commands' choices, the option checks and the run record's promise follow from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from ..errors import ConfigError
from .average import ModelAveraging
from .base import Strategy
from .downpour import Downpour
from .fedavg import FederatedAveraging
from .hogwild import Hogwild
from .ps import ParameterServerSGD
from .sync import SynchronousSGD

STRATEGIES: dict[str, type[Strategy]] = {
    s.name: s for s in (ParameterServerSGD, SynchronousSGD, Downpour, ModelAveraging, Hogwild,
                        FederatedAveraging)
}
STRATEGY_NAMES = tuple(STRATEGIES)

# the consistency model each strategy runs whatever it is given (None: the one asked for);
# ``allreduce`` (the NN app's collective) and ``pipeline`` (a network cut into stages) have no
# tables and are synchronous like bsp
RUNS: dict[str, str | None] = {**{n: s.runs for n, s in STRATEGIES.items()},
                               "allreduce": "bsp", "pipeline": "bsp"}
UNSET_CONSISTENCY, UNSET_STALENESS = "ssp", 1  # the estimators' defaults: taken as not set


def option_names(name: str) -> tuple[str, ...]:
    """The options strategy ``name`` takes."""
    return tuple(f.name for f in fields(STRATEGIES[name].options_type))


def make_strategy(name: str, options: Mapping[str, Any] | None = None) -> Strategy:
    """Strategy ``name`` with ``options`` (its own: :func:`option_names`); an option it
    does not take is refused, naming the strategies that take it."""
    if name not in STRATEGIES:
        raise ConfigError(f"strategy must be one of {STRATEGY_NAMES}, got {name!r}",
                          param="strategy")
    if options is not None and not isinstance(options, Mapping):
        raise ConfigError(f"strategy_options must be a dict, got {type(options).__name__}",
                          param="strategy_options")
    mine = option_names(name)
    for key in options or {}:
        if key not in mine:
            takers = " or ".join(repr(n) for n in STRATEGIES if key in option_names(n))
            where = f"; it applies to strategy={takers}" if takers else ""
            raise ConfigError(f"strategy_options: {key!r} is not an option of strategy "
                              f"{name!r} (its options: {', '.join(mine) or 'none'}){where}",
                              param=key)
    cls = STRATEGIES[name]
    return cls(cls.options_type(**dict(options or {})))


def check_strategy_consistency(strategy: str, consistency: Any, staleness: Any,
                               given: frozenset[str] | set[str] | None = None) -> None:
    """Refuse a ``consistency`` / ``staleness`` that ``strategy`` would ignore (only ``ps``
    takes any; the others run their own synchronisation), naming the parameter. What the
    strategy runs is accepted (``bsp``, with staleness 0; ``async`` for downpour).

    ``given``: the parameters the user set (the CLI knows); None (the estimators): values
    other than the estimators' defaults (``ssp``, 1; staleness None) count as set."""
    runs = RUNS.get(strategy)
    if runs is None:
        return
    if given is None:
        set_consistency = consistency != UNSET_CONSISTENCY
        set_staleness = staleness is not None and (
            isinstance(staleness, bool) or staleness != UNSET_STALENESS)
    else:
        set_consistency, set_staleness = "consistency" in given, "staleness" in given
    why = (f"strategy {strategy!r} runs {runs} whatever it is given (consistency and "
           "staleness apply to strategy 'ps')")
    if set_consistency and consistency != runs:
        raise ConfigError(f"consistency {consistency!r} is ignored: {why}",
                          param="consistency")
    honoured = runs == "bsp" and not isinstance(staleness, bool) and staleness == 0
    if set_staleness and not honoured:
        raise ConfigError(f"staleness {staleness!r} is ignored: {why}", param="staleness")
