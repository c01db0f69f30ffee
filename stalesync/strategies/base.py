"""Data-parallel SGD strategies: how workers that each hold a share of the examples combine
what they learn, through the parameter server's tables.

A strategy (:class:`Strategy`, one module of this package each: :mod:`.ps`, :mod:`.sync`,
:mod:`.downpour`, :mod:`.average`, :mod:`.hogwild`; registered in :mod:`.registry`) builds
the ``worker(ctx)`` program and the job options (consistency model, the table's update
rule, the clock policy, the client cadence) from its own :class:`Options`; an app supplies
the model side as an :class:`SGDProblem` (one worker's examples and how to learn from
them) and never carries strategy code. Each states its guarantee (``promise``) and
``docs/linear.md``; tests check them exactly.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..errors import ConfigError

TABLE = "params"


class SGDProblem(Protocol):
    """One worker's share of an SGD problem: its examples, and the model's arithmetic.

    Parameters are a table of ``num_rows`` x ``row_width`` rows. A *chunk* is the unit of
    one ``ps`` clock; a *batch* the unit of one gradient step; a *model* a worker's full
    local copy (``average``, ``hogwild``)."""

    num_rows: int
    row_width: int
    num_examples: int
    examples_seen: int  # examples trained on so far (a snapshot's and the record's count)

    # every strategy: the optimiser's own state (snapshots) and the epoch's example order
    def state(self) -> dict[str, np.ndarray]: ...

    def load_state(self, state: dict[str, np.ndarray]) -> None: ...

    def shuffled(self, rng: np.random.Generator) -> np.ndarray: ...

    # ps: train on chunk c against the values of its rows; return the deltas of those rows
    def num_chunks(self) -> int: ...

    def chunk_rows(self, chunk: int) -> np.ndarray: ...

    def chunk_deltas(self, chunk: int, values: np.ndarray, epoch: int,
                     rng: np.random.Generator) -> tuple[np.ndarray, float]: ...

    # sync / downpour: the gradient of batch b at the values of its rows
    def batches(self, epoch: int, batch_size: int, rng: np.random.Generator) -> list[Any]: ...

    def batch_rows(self, batch: Any) -> np.ndarray: ...

    def batch_gradient(self, batch: Any, values: np.ndarray) -> tuple[np.ndarray, float]: ...

    def sync_row(self) -> np.ndarray: ...  # the rows a backup worker reads to learn the step

    # average / hogwild: a full local model
    def model_from(self, values: np.ndarray) -> Any: ...

    def model_values(self, model: Any) -> np.ndarray: ...

    def local_steps(self, model: Any, examples: np.ndarray) -> float: ...

    def hogwild_steps(self, values: np.ndarray, examples: np.ndarray, threads: int,
                      epoch: int) -> float: ...

    def all_rows(self) -> np.ndarray: ...


@dataclass(frozen=True)
class Options:
    """A strategy's own options (a frozen dataclass per strategy; this one has none).
    ``__post_init__`` checks them, naming the bad one."""


def positive_int(value: Any, name: str, low: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        what = "a positive integer" if low == 1 else f"an integer >= {low}"
        raise ConfigError(f"{name} must be {what}, got {value!r}", param=name)


def positive_float(value: Any, name: str, *, zero: bool = False) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and (
        value >= 0 if zero else value > 0)
    if not ok:
        raise ConfigError(f"{name} must be {'>= 0' if zero else '> 0'}, got {value!r}",
                          param=name)


class Strategy(ABC):
    """Builds a job: the parameter table's rule, the job options, and the worker program.

    A strategy is one module of this package: this class's subclass with its
    :class:`Options`, the consistency model it ``runs`` (None: the one asked for), the
    sentence its run record ``promise``s, and its worker program; one line of
    :data:`~.registry.STRATEGIES` registers it."""

    name: str
    strategy_record: str  # what the run record's "strategy" says
    options_type: type[Options] = Options
    runs: str | None = "bsp"  # the consistency model it runs whatever it is given

    def __init__(self, options: Options | None = None) -> None:
        self.options = options if options is not None else self.options_type()

    def promise(self, consistency: str, staleness: Any) -> str:
        """The run record's ``guarantee.promise``: what every read was guaranteed to see."""
        return self.runs or consistency

    def table_update(self) -> Any:
        """The parameter table's update rule (default: add the increments)."""
        return "add"

    def job_options(self, workers: int, consistency: str, staleness: int | None
                    ) -> dict[str, Any]:
        """Consistency model, clock policy and cadence of the job (``stalesync.run``
        options)."""
        return {"consistency": consistency,
                "staleness": None if consistency in ("bsp", "async") else staleness}

    def partition(self, n: int, workers: int, rng: np.random.Generator) -> list[np.ndarray]:
        """The examples of each problem the app builds (default: a random share of the
        ``n`` examples per worker)."""
        return np.array_split(rng.permutation(n), workers)

    def worker_data(self, problems: list[Any], workers: int) -> list[Any]:
        """Each worker's ``ctx.data`` (default: its one problem)."""
        return problems

    def summary(self, worker_results: list[Any]) -> dict[str, Any]:
        """What the strategy adds to the run record's ``final`` from the workers' return
        values (default: nothing)."""
        return {}

    def extra_tables(self, table: Any, problems: int) -> list[Any]:
        """Tables the strategy needs beside the parameter table (default: none)."""
        return []

    @abstractmethod
    def clocks(self, problem_sizes: list[int], epochs: int) -> int:
        """How many clocks a worker makes for ``epochs`` passes (``iterations``)."""

    @abstractmethod
    def make_worker(self, epochs: int) -> Callable[[Any], Any]:
        """The ``worker(ctx)`` function; ``ctx.data`` is the worker's SGDProblem."""


def restore(ctx: Any, problem: Any) -> None:
    """A worker's start: the problem's optimiser state from a snapshot, if resuming, and
    what the next snapshot stores."""
    state = ctx.load_state()
    if state is not None:
        problem.load_state(state)
    ctx.save_state(problem.state())


def epoch_rng(ctx: Any, epoch: int, *within: int) -> np.random.Generator:
    """A generator per (job seed, worker, epoch[, position within it]): reruns after a
    restore draw the same."""
    return np.random.default_rng([ctx.seed, ctx.worker_id, 9173, epoch, *within])


def run_threads(work: Callable[[int], Any], threads: int, name: str = "hogwild") -> None:
    """``work(0)`` on the calling thread and ``work(1) .. work(threads - 1)`` on helper
    threads (HOGWILD!), all joined before this returns. An exception in any of them reaches
    the caller: once every thread has stopped, the first one raised is re-raised here with a
    note naming its thread (a helper that died must not leave the fit to succeed without
    its updates)."""
    errors: list[tuple[int, BaseException]] = []

    def guarded(i: int) -> None:
        try:
            work(i)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller below
            errors.append((i, exc))

    pool = [threading.Thread(target=guarded, args=(i,), name=f"{name}-{i}", daemon=True)
            for i in range(1, threads)]
    for t in pool:
        t.start()
    guarded(0)
    for t in pool:
        t.join()
    if errors:
        i, exc = errors[0]
        where = "the calling thread" if i == 0 else f"helper thread {name}-{i}"
        more = f"; {len(errors) - 1} other thread(s) raised too" if len(errors) > 1 else ""
        exc.add_note(f"raised in {where} ({i} of {threads} {name} threads){more}")
        raise exc


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
