"""``hogwild``: inside each worker ``threads`` threads run lock-free SGD on one shared
weight array (HOGWILD!, Recht et al. 2011; compiled, GIL released); workers combine by
model averaging through the table once per epoch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .average import ModelAveraging
from .base import Options, positive_int


@dataclass(frozen=True)
class HogwildOptions(Options):
    threads: int = 2  # lock-free threads per worker

    def __post_init__(self) -> None:
        positive_int(self.threads, "threads")


class Hogwild(ModelAveraging):
    """``hogwild``: inside each worker ``threads`` threads run lock-free SGD on one shared
    weight array (Recht et al. 2011; compiled, GIL released); workers combine by model
    averaging through the table once per epoch (with one worker: no communication)."""

    name = "hogwild"
    strategy_record = "hogwild"
    options_type = HogwildOptions

    def promise(self, consistency: str, staleness: Any) -> str:
        return (f"hogwild: {self.options.threads} lock-free threads per worker on one weight "
                "array (updates may overwrite each other); the workers' models averaged once "
                "per epoch (bsp)")

    def segment(self, problem: Any) -> int | None:
        return problem.num_examples  # one epoch of this worker's examples

    def clocks(self, problems: list[Any], epochs: int) -> int:
        return epochs

    def train(self, p: Any, model: Any, examples: np.ndarray, epoch: int) -> float:
        return p.hogwild_steps(model, examples, self.options.threads, epoch)
