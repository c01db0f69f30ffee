"""What ``sync`` and ``downpour`` share: one mini-batch gradient per clock, applied by the
shard's update rule. Not a strategy itself."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .base import TABLE, Strategy, epoch_rng, restore


class GradientSteps(Strategy):
    """What ``sync`` and ``downpour`` share: one mini-batch gradient per clock."""

    presync = False  # read a small row first, so a late worker learns the current step

    def clocks(self, problems: list[Any], epochs: int) -> int:
        b = self.options.batch_size
        return epochs * max(-(-p.num_examples // b) for p in problems)

    def make_worker(self, epochs: int) -> Callable[[Any], Any]:
        batch_size = self.options.batch_size

        def worker(ctx: Any) -> dict[str, Any]:
            p = ctx.data
            restore(ctx, p)
            steps_per_epoch = ctx.iterations // epochs
            cached: dict[int, list[Any]] = {}
            while ctx.clock_count < ctx.iterations:
                if self.presync:  # a step's batch follows the step number: skip ahead first
                    ctx.read(TABLE, p.sync_row())
                step = ctx.clock_count
                if step >= ctx.iterations:
                    break
                epoch, k = divmod(step, steps_per_epoch)
                if epoch not in cached:
                    cached.clear()
                    cached[epoch] = p.batches(epoch, batch_size, epoch_rng(ctx, epoch))
                batches = cached[epoch]
                batch = batches[k % len(batches)]
                rows = p.batch_rows(batch)
                values = ctx.read(TABLE, rows)
                grads, loss = p.batch_gradient(batch, values)
                ctx.inc(TABLE, rows, grads)
                ctx.save_state(p.state())
                ctx.clock(objective=loss)
            return {"examples": p.examples_seen}

        return worker
