"""``average``: model averaging. Every worker trains its own full model on its own examples;
every ``average_every`` local steps (local SGD), or once at the end when 0
(SimuParallelSGD), the models are averaged through the table."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .base import TABLE, ExampleStream, Options, Strategy, positive_int


@dataclass(frozen=True)
class AverageOptions(Options):
    average_every: int = 0  # local steps between averagings (0: once, at the end)
    batch_size: int = 64  # examples per local step (what average_every counts)

    def __post_init__(self) -> None:
        positive_int(self.average_every, "average_every", low=0)
        positive_int(self.batch_size, "batch_size")


class ModelAveraging(Strategy):
    """``average``: every worker trains its own full model on its own examples; every
    ``average_every`` local steps (of ``batch_size`` examples) the models are averaged
    through the table (each adds ``(mine - last average) / workers``, then reads the new
    average after a BSP clock). ``average_every=0``: once, at the end (SimuParallelSGD)."""

    name = "average"
    strategy_record = "average"
    options_type = AverageOptions

    def promise(self, consistency: str, staleness: Any) -> str:
        k = self.options.average_every
        when = (f"every {k} local steps of batch_size examples" if k else
                "once, at the end")
        return (f"average: the workers' models were averaged {when}; every averaging saw "
                "every worker's model (bsp)")

    def job_options(self, workers: int, consistency: str, staleness: int | None
                    ) -> dict[str, Any]:
        return {"consistency": "bsp", "staleness": None}

    def segment(self, problem: Any) -> int | None:
        """Examples between two averagings (None: every epoch's end is not one)."""
        k = self.options.average_every
        return None if k == 0 else k * self.options.batch_size

    def clocks(self, problems: list[Any], epochs: int) -> int:
        seg = self.segment(problems[0])
        if seg is None:
            return 1
        return max(-(-(epochs * p.num_examples) // seg) for p in problems)

    def train(self, p: Any, model: Any, examples: np.ndarray, epoch: int) -> float:
        return p.local_steps(model, examples)

    def make_worker(self, epochs: int) -> Callable[[Any], Any]:
        def worker(ctx: Any) -> dict[str, Any]:
            p = ctx.data
            rows = p.all_rows()
            state = ctx.load_state()
            base = ctx.read(TABLE, rows)
            model = p.model_from(base)
            if state is not None:
                p.load_state(state)
                model = p.model_from(base)
            ctx.save_state(p.state())
            stream = ExampleStream(p, epochs, ctx)
            seg = self.segment(p) or stream.total
            while ctx.clock_count < ctx.iterations:
                loss, n = 0.0, 0
                for epoch, examples in stream.take(ctx.clock_count * seg, seg):
                    loss += self.train(p, model, examples, epoch)
                    n += examples.size
                values = p.model_values(model)
                ctx.inc(TABLE, rows, (values - base) / ctx.num_workers)
                ctx.save_state(p.state())
                ctx.clock(objective=loss / max(n, 1))
                if ctx.clock_count < ctx.iterations:
                    base = ctx.read(TABLE, rows)  # the new average (BSP: everyone's in)
                    model = p.model_from(base)
            return {"examples": p.examples_seen}

        return worker
