"""``ps``: the parameter server's own SGD. Every clock a worker trains on its next chunk of
examples against its (bounded-stale) copy of the rows they touch and adds the change; any
consistency model (``consistency``, ``staleness`` of the job). No options of its own."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..observe.metrics import describe_guarantee
from .base import TABLE, Strategy, epoch_rng, restore


class ParameterServerSGD(Strategy):
    """``ps``: per clock, train on the next chunk against the rows it touches (as stale as
    the consistency model allows) and add the change of those rows."""

    name = "ps"
    strategy_record = "ps"
    runs = None  # any consistency model

    def promise(self, consistency: str, staleness: Any) -> str:
        return describe_guarantee("ps", consistency, staleness)

    def clocks(self, problems: list[Any], epochs: int) -> int:
        return epochs * problems[0].num_chunks()

    def make_worker(self, epochs: int) -> Callable[[Any], Any]:
        def worker(ctx: Any) -> dict[str, Any]:
            p = ctx.data
            restore(ctx, p)
            chunks = p.num_chunks()
            while ctx.clock_count < ctx.iterations:
                epoch, chunk = divmod(ctx.clock_count, chunks)
                rows = p.chunk_rows(chunk)
                values = ctx.read(TABLE, rows)
                deltas, loss = p.chunk_deltas(chunk, values, epoch,
                                              epoch_rng(ctx, epoch, chunk))
                ctx.inc(TABLE, rows, deltas)
                ctx.save_state(p.state())  # step counters change every clock
                ctx.clock(objective=loss)
            return {"examples": p.examples_seen}

        return worker
