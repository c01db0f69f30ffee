"""Straggler injection, seeded, for experiments and tests. Off by default.

Two kinds, as in the SSP experiments: chosen workers are slower by a factor (their compute
time between clocks is stretched), and any worker may pause with probability ``p`` per clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from .errors import ConfigError


@dataclass(frozen=True)
class Stragglers:
    slow: Mapping[int, float] = field(default_factory=dict)
    pause_prob: float = 0.0
    pause_s: float = 0.05
    seed: int = 0
    pause_workers: tuple[int, ...] | None = None  # who may pause; None: every worker

    def __post_init__(self) -> None:
        for worker, factor in self.slow.items():
            if factor < 1:
                raise ConfigError(f"straggler factor of worker {worker} must be >= 1, got {factor}")
        if not 0 <= self.pause_prob <= 1:
            raise ConfigError(f"pause_prob must be in [0, 1], got {self.pause_prob}")
        if self.pause_s < 0:
            raise ConfigError(f"pause_s must be >= 0, got {self.pause_s}")

    @classmethod
    def parse(cls, text: str | None, seed: int = 0) -> Stragglers | None:
        """Parse the CLI form ``"0:2.0,3:1.5"`` (worker:factor) or ``"p=0.1:0.05"``."""
        if not text:
            return None
        slow: dict[int, float] = {}
        prob, pause = 0.0, 0.05
        for part in text.split(","):
            part = part.strip()
            try:
                if part.startswith("p="):
                    p, _, s = part[2:].partition(":")
                    prob, pause = float(p), float(s or pause)
                else:
                    w, _, f = part.partition(":")
                    slow[int(w)] = float(f)
            except ValueError:
                raise ConfigError(
                    f"cannot parse straggler spec {part!r}; use 'worker:factor' or 'p=prob:seconds'"
                ) from None
        return cls(slow=slow, pause_prob=prob, pause_s=pause, seed=seed)

    def for_worker(self, worker: int) -> WorkerDelay:
        pauses = self.pause_workers is None or worker in self.pause_workers
        return WorkerDelay(
            self.slow.get(worker, 1.0),
            self.pause_prob if pauses else 0.0,
            self.pause_s,
            np.random.default_rng([self.seed, worker]),
        )


@dataclass
class WorkerDelay:
    factor: float
    pause_prob: float
    pause_s: float
    rng: np.random.Generator

    def extra_seconds(self, compute_s: float) -> float:
        """How long to sleep after a clock's compute of ``compute_s`` seconds."""
        extra = (self.factor - 1.0) * compute_s
        if self.pause_prob and self.rng.random() < self.pause_prob:
            extra += self.pause_s
        return extra
