"""Data-parallel SGD strategies: how workers that each hold a share of the examples combine
what they learn, through the parameter server's tables.

A strategy builds the ``worker(ctx)`` program and the job options (consistency model, the
table's update rule, the clock policy, the client cadence) from a :class:`StrategyConfig`;
an app supplies the model side as an :class:`SGDProblem` (one worker's examples and how to
learn from them) and never carries strategy code. Strategies (:data:`STRATEGIES`):

- ``ps``: every clock a worker trains on its next chunk of examples against its
  (bounded-stale) copy of the rows they touch and adds the change: any consistency model;
- ``sync``: synchronous SGD with ``backup_workers`` (the first ``workers - b`` gradients of a
  step are averaged and applied by the shard's SGD rule; late ones dropped and counted);
- ``downpour``: asynchronous; fetch every ``n_fetch`` steps, push the accumulated gradient
  every ``n_push``; the shard applies it with ``server_update`` (SGD or Adagrad);
- ``average``: model averaging, every ``average_every`` local steps (local SGD), or once at
  the end when 0 (SimuParallelSGD);
- ``hogwild``: each worker runs ``threads`` lock-free threads on one shared weight array
  (HOGWILD!); workers combine by model averaging every ``average_every`` epochs.

Each states its guarantee in ``docs/linear.md``; tests check them exactly.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ..errors import ConfigError
from ..ps.update_rules import RULES

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


STRATEGY_NAMES = ("ps", "sync", "downpour", "average", "hogwild")
SERVER_UPDATES = tuple(name for name in RULES if name != "add")  # what downpour's shard may do


@dataclass(frozen=True)
class StrategyConfig:
    """The strategy of a job and its options (each applies to the strategies named)."""

    name: str = "ps"
    lr: float = 0.1  # sync / downpour: the shard's step size
    lr_decay: float = 0.0  # sync: lr_t = lr / (1 + decay t)
    batch_size: int = 64  # sync / downpour: examples per step and worker
    backup_workers: int = 0  # sync
    n_fetch: int = 1  # downpour
    n_push: int = 1  # downpour
    server_update: str = "adagrad"  # downpour
    average_every: int = 0  # average: local steps between averagings (0: once, at the end)
    threads: int = 2  # hogwild: lock-free threads per worker
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.name not in STRATEGY_NAMES:
            raise ConfigError(f"strategy must be one of {STRATEGY_NAMES}, got {self.name!r}",
                              param="strategy")
        for key in ("batch_size", "n_fetch", "n_push", "threads"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{key} must be a positive integer, got {value!r}",
                                  param=key)
        for key in ("backup_workers", "average_every"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{key} must be an integer >= 0, got {value!r}", param=key)
        if not self.lr > 0 or not self.lr_decay >= 0:
            raise ConfigError(f"lr must be > 0 and lr_decay >= 0, got {self.lr}, "
                              f"{self.lr_decay}", param="lr")
        if self.server_update not in SERVER_UPDATES:
            raise ConfigError(f"server_update must be one of {SERVER_UPDATES}, got "
                              f"{self.server_update!r}", param="server_update")
        if self.backup_workers and self.name != "sync":
            raise ConfigError("backup_workers applies to strategy='sync'", param="backup_workers")
        if (self.n_fetch != 1 or self.n_push != 1) and self.name != "downpour":
            raise ConfigError("n_fetch/n_push apply to strategy='downpour'", param="n_fetch")


# the consistency model each strategy runs whatever it is given (None: the one asked for);
# ``allreduce`` is the NN app's collective (no tables), synchronous like bsp
RUNS: dict[str, str | None] = {"ps": None, "sync": "bsp", "average": "bsp", "hogwild": "bsp",
                               "downpour": "async", "allreduce": "bsp"}
UNSET_CONSISTENCY, UNSET_STALENESS = "ssp", 1  # the estimators' defaults: taken as not set


def check_strategy_consistency(strategy: str, consistency: Any, staleness: Any,
                               given: frozenset[str] | set[str] | None = None) -> None:
    """Refuse a ``consistency`` / ``staleness`` that ``strategy`` would ignore (only ``ps``
    takes any; the others run their own synchronisation), naming the parameter. What the
    strategy runs is accepted (``bsp``, with staleness 0; ``async`` for downpour).

    ``given``: the parameters the user set (the CLI knows); None (the estimators): values
    other than the estimators' defaults (``ssp``, 1; staleness None) count as set."""
    runs = RUNS.get(strategy)
    if runs is None:
        return
    if given is None:
        set_consistency = consistency != UNSET_CONSISTENCY
        set_staleness = staleness is not None and (
            isinstance(staleness, bool) or staleness != UNSET_STALENESS)
    else:
        set_consistency, set_staleness = "consistency" in given, "staleness" in given
    why = (f"strategy {strategy!r} runs {runs} whatever it is given (consistency and "
           "staleness apply to strategy 'ps')")
    if set_consistency and consistency != runs:
        raise ConfigError(f"consistency {consistency!r} is ignored: {why}",
                          param="consistency")
    honoured = runs == "bsp" and not isinstance(staleness, bool) and staleness == 0
    if set_staleness and not honoured:
        raise ConfigError(f"staleness {staleness!r} is ignored: {why}", param="staleness")


class Strategy(ABC):
    """Builds a job: the parameter table, the job options, and the worker program."""

    name: str
    strategy_record: str  # what the run record's "strategy" says

    def __init__(self, config: StrategyConfig) -> None:
        self.config = config

    def table_update(self) -> Any:
        """The parameter table's update rule (default: add the increments)."""
        return "add"

    def job_options(self, workers: int, consistency: str, staleness: int | None
                    ) -> dict[str, Any]:
        """Consistency model, clock policy and cadence of the job (``stalesync.run``
        options)."""
        return {"consistency": consistency,
                "staleness": None if consistency in ("bsp", "async") else staleness}

    @abstractmethod
    def clocks(self, problem_sizes: list[int], epochs: int) -> int:
        """How many clocks a worker makes for ``epochs`` passes (``iterations``)."""

    @abstractmethod
    def make_worker(self, epochs: int) -> Callable[[Any], Any]:
        """The ``worker(ctx)`` function; ``ctx.data`` is the worker's SGDProblem."""


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
