"""The two data-blind schedules: cyclic (round-robin) and random (Shotgun).

Both pick ``parallel`` (P) variables per round and ignore feedback. Shotgun (Bradley et al.
2011) draws P variables uniformly without replacement; it converges when P is small next
to d / rho (rho: spectral radius of X^T X), i.e. when the updated columns are nearly
uncorrelated, which is what the dependency-aware schedule enforces instead of hoping.
"""

from __future__ import annotations

import numpy as np

from .base import Plan, Schedule, check_parallel


class ProposingSchedule(Schedule):
    """A schedule whose round is "the first P of a ranked list of candidates".

    :meth:`propose` returns candidates in order of preference; wrappers such as the
    dependency-aware schedule ask for more than P and filter them.
    """

    def __init__(self, parallel: int = 1) -> None:
        super().__init__()
        self.parallel = check_parallel(parallel)

    def propose(self, count: int) -> np.ndarray:
        raise NotImplementedError

    def next_round(self) -> Plan:
        return self._plan(self.propose(min(self.parallel, self.num_variables)))


class Cyclic(ProposingSchedule):
    """Variables ``0..d-1`` in order, P at a time, wrapping around."""

    name = "cyclic"

    def bind(self, num_variables, num_workers, rng) -> None:
        super().bind(num_variables, num_workers, rng)
        self._next = 0

    def state(self) -> dict:
        return {**super().state(), "next": self._next}

    def load_state(self, state: dict) -> None:
        super().load_state(state)
        self._next = int(state["next"])

    def propose(self, count: int) -> np.ndarray:
        d = self.num_variables
        count = min(count, d)
        out = (self._next + np.arange(count)) % d
        self._next = (self._next + count) % d
        return out


class Shotgun(ProposingSchedule):
    """P variables drawn uniformly at random without replacement, every round."""

    name = "random"

    def propose(self, count: int) -> np.ndarray:
        return self.rng.choice(self.num_variables, size=min(count, self.num_variables),
                               replace=False)
