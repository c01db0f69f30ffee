"""The schedule protocol: which variables (or blocks) each worker works on, each round.

A STRADS-style program is three functions: ``schedule`` picks the variables of a round,
``push`` computes partial updates of those variables on each worker's data, and ``pull``
combines the partials into new values. This module holds the ``schedule`` side, kept free
of any runtime so the same schedule drives threads today and Ray actors later.

The protocol (see ``docs/scheduler.md``):

* ``bind(num_variables, num_workers, rng)`` once, before the first round;
* ``next_round() -> Plan`` for every round. The driver calls it *while the workers compute
  the previous round* (pipelining), so a schedule's view of the last round's changes is one
  round late. Schedules must tolerate that (every STRADS schedule does);
* ``observe(plan, feedback)`` after each round's ``pull``: the per-variable changes and the
  per-worker compute times, for priorities and load balancing.

A :class:`Plan` is either *shared* (``tasks is None``: every worker processes
``plan.variables`` on its own data shard, as Lasso with samples partitioned over workers
does) or *per worker* (``tasks[w]`` is whatever worker ``w`` must do: a variable array, or a
``(row_block, col_block)`` pair for block rotation in matrix factorization).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError


@dataclass(frozen=True)
class Plan:
    """One round's assignment.

    ``variables``: the ids updated this round (the union over workers), used for feedback.
    ``tasks``: ``None`` for a shared round, else one task per worker (any object the app's
    ``push`` understands). ``info``: free-form diagnostics (e.g. how many candidates a
    dependency check rejected).
    """

    round: int
    variables: np.ndarray
    tasks: tuple[Any, ...] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return int(self.variables.size)


@dataclass(frozen=True)
class Feedback:
    """What the driver reports back after a round's ``pull``.

    ``changes[k]`` is the change of ``plan.variables[k]`` (``None`` if the app reports
    none); ``seconds[w]`` the compute time of worker ``w`` this round (its push work).
    """

    changes: np.ndarray | None
    seconds: np.ndarray | None = None


class Schedule(ABC):
    """Base class of every schedule. Subclasses implement :meth:`next_round`."""

    name = "schedule"

    def __init__(self) -> None:
        self.num_variables = 0
        self.num_workers = 1
        self.rng = np.random.default_rng(0)
        self.round = 0

    def bind(self, num_variables: int, num_workers: int, rng: np.random.Generator) -> None:
        """Attach to a problem: called once before the first round (and again to reuse)."""
        if num_variables < 1:
            raise ConfigError(f"a schedule needs at least one variable, got {num_variables}")
        if num_workers < 1:
            raise ConfigError(f"num_workers must be >= 1, got {num_workers}")
        self.num_variables = int(num_variables)
        self.num_workers = int(num_workers)
        self.rng = rng
        self.round = 0

    @abstractmethod
    def next_round(self) -> Plan:
        """The next round's plan. Must not block; it runs beside the workers' compute."""

    def observe(self, plan: Plan, feedback: Feedback) -> None:  # noqa: B027 - optional hook
        """Learn from a finished round (priorities, worker speeds). Default: nothing."""

    def hint(self, variables: np.ndarray, changes: np.ndarray) -> None:  # noqa: B027
        """Out-of-band estimates of how much ``variables`` would change if updated now (an
        app may compute them for every variable during a full pass, e.g. a duality-gap
        check). Priority schedules use them as fresh priorities; default: ignored."""

    def state(self) -> dict[str, Any]:
        """What a snapshot stores to continue this schedule (arrays and JSON scalars). The
        random generator is the driver's and is saved with it."""
        return {"round": self.round}

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state` (after :meth:`bind`)."""
        self.round = int(state["round"])

    def _plan(self, variables: np.ndarray, tasks=None, **info: Any) -> Plan:
        plan = Plan(self.round, np.asarray(variables, dtype=np.int64), tasks, info)
        self.round += 1
        return plan


def check_parallel(parallel: int) -> int:
    """Validate P, the number of variables updated together in one round."""
    if not isinstance(parallel, int | np.integer) or parallel < 1:
        raise ConfigError(
            f"parallel (variables per round) must be a positive int, got {parallel!r}"
        )
    return int(parallel)
