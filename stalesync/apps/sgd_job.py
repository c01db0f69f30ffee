"""The job of a data-parallel SGD app: each worker's problem driven by a strategy
(:mod:`stalesync.strategies`) over one parameter table, with a progress bar, and the run
record's counts that every SGD app reports (examples, examples/s, dropped gradients, bytes)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import job
from ..job import JobResult
from ..ps.tables import TableSpec
from ..strategies import check_strategy_consistency
from .base import RunConfig
from .progress import Progress


@dataclass(frozen=True)
class SGDRun:
    result: JobResult
    record: dict[str, Any]  # the run record; ``final`` holds the shared counts
    train_s: float


def run_sgd_job(strategy: Any, problems: list[Any], table: TableSpec, initial: np.ndarray,
                epochs: int, *, workers: int, consistency: str, staleness: Any, seed: int,
                run: RunConfig, app: str, items_per_epoch: int) -> SGDRun:
    """Train ``problems`` (one per worker) for ``epochs`` epochs from ``initial``."""
    check_strategy_consistency(strategy.name, consistency, staleness)
    clocks = strategy.clocks(problems, epochs)
    progress = Progress(desc=f"{app}[{strategy.name}]", epochs=epochs,
                        clocks_per_epoch=max(clocks // epochs, 1), workers=workers,
                        enabled=run.progress, objective="loss",
                        items_per_epoch=items_per_epoch, items="examples")
    start = time.perf_counter()
    with progress:
        result = job.run(
            strategy.make_worker(epochs), [table, *strategy.extra_tables(table, len(problems))],
            data=strategy.worker_data(problems, workers), workers=workers,
            iterations=clocks, seed=seed, app=app, on_clock=progress.on_clock,
            initial_tables={table.name: initial},
            **strategy.job_options(workers, consistency, staleness),
            **run.job_options(seed))
    train_s = time.perf_counter() - start
    record = result.record
    seen = int(sum(r["examples"] for r in result.worker_results))
    record["strategy"] = strategy.strategy_record
    record["guarantee"]["promise"] = strategy.promise(consistency, staleness)
    record["epochs"] = epochs
    record["objective_name"] = "mean loss of the clock's examples"
    record["final"] = {
        "epochs": epochs, "examples": seen, "examples_per_s": seen / max(train_s, 1e-12),
        "strategy": strategy.name,
        "dropped_gradients": int(record.get("backup", {}).get("dropped_gradients", 0)),
        "bytes_sent": record["bytes_sent"], "compression_ratio": record["compression_ratio"],
        **strategy.summary(result.worker_results)}
    return SGDRun(result, record, train_s)
