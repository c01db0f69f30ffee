"""The five strategies' worker programs (see :mod:`.base` for what each one does).

Every program loops on ``ctx.clock_count`` (so it resumes from a snapshot at its clock),
keeps the problem's optimizer state in ``ctx.save_state``, reads and increments only the
parameter table :data:`~.base.TABLE`, and reports the mean loss of the examples of each
clock as its objective.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..ps.update_rules import make_rule
from .base import TABLE, Strategy, StrategyConfig, epoch_rng


def _restore(ctx: Any, problem: Any) -> None:
    state = ctx.load_state()
    if state is not None:
        problem.load_state(state)
    ctx.save_state(problem.state())


class ParameterServerSGD(Strategy):
    """``ps``: per clock, train on the next chunk against the rows it touches (as stale as
    the consistency model allows) and add the change of those rows."""

    name = "ps"
    strategy_record = "ps"

    def clocks(self, problems: list[Any], epochs: int) -> int:
        return epochs * problems[0].num_chunks()

    def make_worker(self, epochs: int) -> Callable[[Any], Any]:
        def worker(ctx: Any) -> dict[str, Any]:
            p = ctx.data
            _restore(ctx, p)
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


class GradientSteps(Strategy):
    """What ``sync`` and ``downpour`` share: one mini-batch gradient per clock."""

    presync = False  # read a small row first, so a late worker learns the current step

    def clocks(self, problems: list[Any], epochs: int) -> int:
        b = self.config.batch_size
        return epochs * max(-(-p.num_examples // b) for p in problems)

    def make_worker(self, epochs: int) -> Callable[[Any], Any]:
        batch_size = self.config.batch_size

        def worker(ctx: Any) -> dict[str, Any]:
            p = ctx.data
            _restore(ctx, p)
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


class SynchronousSGD(GradientSteps):
    """``sync``: each step the first ``workers - backup_workers`` gradients computed on that
    step's parameters are averaged and applied by the shard's SGD rule; late ones are
    dropped and counted (TensorFlow's SyncReplicasOptimizer, Chen et al. 2016)."""

    name = "sync"
    strategy_record = "sync"
    presync = True

    def table_update(self) -> Any:
        return make_rule({"rule": "sgd", "lr": self.config.lr, "decay": self.config.lr_decay})

    def job_options(self, workers: int, consistency: str, staleness: int | None
                    ) -> dict[str, Any]:
        return {"consistency": "bsp", "staleness": None,
                "backup_workers": self.config.backup_workers}


class Downpour(GradientSteps):
    """``downpour``: asynchronous; fetch every ``n_fetch`` steps, push the accumulated
    gradient every ``n_push``; the shard applies it with SGD, Adagrad or Adam (DistBelief)."""

    name = "downpour"
    strategy_record = "downpour"

    def table_update(self) -> Any:
        options: dict[str, Any] = {"rule": self.config.server_update, "lr": self.config.lr}
        if self.config.server_update == "sgd":  # the one rule with a step-size decay
            options["decay"] = self.config.lr_decay
        return make_rule(options)

    def job_options(self, workers: int, consistency: str, staleness: int | None
                    ) -> dict[str, Any]:
        return {"consistency": "async", "staleness": None, "fetch_every": self.config.n_fetch,
                "push_every": self.config.n_push}


class ModelAveraging(Strategy):
    """``average``: every worker trains its own full model on its own examples; every
    ``average_every`` local steps (of ``batch_size`` examples) the models are averaged
    through the table (each adds ``(mine - last average) / workers``, then reads the new
    average after a BSP clock). ``average_every=0``: once, at the end (SimuParallelSGD)."""

    name = "average"
    strategy_record = "average"

    def job_options(self, workers: int, consistency: str, staleness: int | None
                    ) -> dict[str, Any]:
        return {"consistency": "bsp", "staleness": None}

    def segment(self, problem: Any) -> int | None:
        """Examples between two averagings (None: every epoch's end is not one)."""
        k = self.config.average_every
        return None if k == 0 else k * self.config.batch_size

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


class Hogwild(ModelAveraging):
    """``hogwild``: inside each worker ``threads`` threads run lock-free SGD on one shared
    weight array (Recht et al. 2011; compiled, GIL released); workers combine by model
    averaging through the table once per epoch (with one worker: no communication)."""

    name = "hogwild"
    strategy_record = "hogwild"

    def segment(self, problem: Any) -> int | None:
        return problem.num_examples  # one epoch of this worker's examples

    def clocks(self, problems: list[Any], epochs: int) -> int:
        return epochs

    def train(self, p: Any, model: Any, examples: np.ndarray, epoch: int) -> float:
        return p.hogwild_steps(model, examples, self.config.threads, epoch)


class ExampleStream:
    """A worker's examples epoch after epoch, each epoch in its own seeded order; ``take``
    yields (epoch, examples) pieces covering stream positions ``[start, start + n)``."""

    def __init__(self, problem: Any, epochs: int, ctx: Any) -> None:
        self.problem, self.epochs, self.ctx = problem, epochs, ctx
        self.n = problem.num_examples
        self.total = epochs * self.n
        self._orders: dict[int, np.ndarray] = {}

    def order(self, epoch: int) -> np.ndarray:
        if epoch not in self._orders:
            self._orders = {epoch: self.problem.shuffled(epoch_rng(self.ctx, epoch))}
        return self._orders[epoch]

    def take(self, start: int, n: int):
        end = min(start + n, self.total)
        while start < end:
            epoch, offset = divmod(start, self.n)
            stop = min(self.n, offset + end - start)
            yield epoch, self.order(epoch)[offset:stop]
            start += stop - offset


STRATEGIES: dict[str, type[Strategy]] = {
    s.name: s for s in (ParameterServerSGD, SynchronousSGD, Downpour, ModelAveraging, Hogwild)
}


def make_strategy(config: StrategyConfig) -> Strategy:
    return STRATEGIES[config.name](config)
