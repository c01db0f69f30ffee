"""The priority schedule of STRADS (Lee et al. 2014).

Each variable is drawn with probability proportional to ``(recent change)^2 + eta``: the
variables that moved most last time they were updated are the ones still far from their
optimum, while ``eta > 0`` keeps every variable's chance positive so none is starved (and
convergence still holds). In sparse problems (Lasso) most coefficients stay at zero, so
their weight collapses to ``eta`` and the updates concentrate on the active set.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from ..kernels.scheduler import (
    tree_build,
    tree_capacity,
    tree_draw_unique,
    tree_set_changes,
)
from .base import Feedback, Plan
from .basic import ProposingSchedule


class Priority(ProposingSchedule):
    """Sample P distinct variables per round, each draw proportional to ``change^2 + eta``.

    Draws are i.i.d. from that distribution; repeats are dropped until P distinct variables
    are found (so a single draw follows the stated distribution exactly). A variable's
    weight is updated when it is observed; until then it keeps its initial weight,
    ``initial`` (default ``eta``: uniform). ``oversample`` bounds the draws per round to
    ``oversample * P + 8`` (fewer distinct variables are returned if the weights are very
    concentrated).
    """

    name = "priority"

    def __init__(self, parallel: int = 1, eta: float = 1e-6, initial: float | None = None,
                 oversample: int = 3, eta_relative: float | None = None) -> None:
        super().__init__(parallel)
        if not eta > 0:
            raise ConfigError(f"eta must be > 0 so that no variable starves, got {eta!r}")
        if eta_relative is not None and not eta_relative > 0:
            raise ConfigError(f"eta_relative must be > 0, got {eta_relative!r}")
        self.eta = float(eta)
        self.eta_relative = eta_relative
        self.initial = self.eta if initial is None else float(initial)
        self.oversample = int(oversample)

    def bind(self, num_variables, num_workers, rng) -> None:
        super().bind(num_variables, num_workers, rng)
        self._tree = np.zeros(2 * tree_capacity(num_variables))
        tree_build(self._tree, np.full(num_variables, self.initial))
        self._change2 = np.full(num_variables, max(self.initial - self.eta, 0.0))
        self._seen = np.zeros(num_variables, dtype=np.bool_)

    def state(self) -> dict:
        return {**super().state(), "tree": self._tree.copy(), "change2": self._change2.copy(),
                "eta": self.eta}

    def load_state(self, state: dict) -> None:
        super().load_state(state)
        self._tree[:] = state["tree"]
        self._change2[:] = state["change2"]
        self.eta = float(state["eta"])

    @property
    def weights(self) -> np.ndarray:
        """Current sampling weights (a copy)."""
        cap = self._tree.size // 2
        return self._tree[cap : cap + self.num_variables].copy()

    def probabilities(self) -> np.ndarray:
        w = self.weights
        return w / w.sum()

    def propose(self, count: int) -> np.ndarray:
        count = min(count, self.num_variables)
        u = self.rng.random(count * self.oversample + 8)
        return tree_draw_unique(self._tree, u, count, self._seen)

    def set_weights(self, variables: np.ndarray, changes: np.ndarray) -> None:
        """Weight of each variable := change^2 + eta."""
        tree_set_changes(self._tree, self._change2,
                         np.ascontiguousarray(variables, dtype=np.int64),
                         np.ascontiguousarray(changes, dtype=np.float64), self.eta)

    def set_eta(self, eta: float) -> None:
        """Change the floor ``eta`` of every weight (rebuilds the tree: O(d))."""
        if not eta > 0:
            raise ConfigError(f"eta must be > 0, got {eta!r}")
        self.eta = float(eta)
        tree_build(self._tree, self._change2 + self.eta)

    def hint(self, variables: np.ndarray, changes: np.ndarray) -> None:
        """Fresh changes; with ``eta_relative`` and a hint covering every variable, ``eta``
        becomes ``eta_relative * max(change^2)``, so the floor stays small next to the
        changes as they shrink towards convergence (the distribution is still
        ``change^2 + eta`` at every moment, with eta piecewise constant)."""
        if self.eta_relative is not None and len(variables) == self.num_variables:
            top = float(np.max(np.square(changes))) if len(changes) else 0.0
            self._change2[np.asarray(variables, dtype=np.int64)] = np.square(changes)
            self.set_eta(max(self.eta_relative * top, 1e-300))
            return
        self.set_weights(variables, changes)

    def observe(self, plan: Plan, feedback: Feedback) -> None:
        if feedback.changes is not None and plan.size:
            self.set_weights(plan.variables, feedback.changes)
