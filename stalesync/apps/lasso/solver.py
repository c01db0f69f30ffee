"""Running Lasso coordinate descent on the scheduler, to a duality-gap tolerance.

Rounds of the chosen schedule run in between *checks*: every ``check_every`` coordinate
updates (default: d, one "epoch") the workers make one full pass computing ``X^T r``, which
gives the exact objective and duality gap (the convergence test, as in scikit-learn) and,
for free, the change every coordinate would make now: those refresh the priorities.

Safeguard: parallel updates of correlated coordinates can diverge (Shotgun with P too
large). If a check finds the objective higher than at the last check, the solver rolls back
to the last check's coefficients and halves P; at P = 1 the method is sequential
coordinate descent, which never increases the objective. The solver also stops (not
converged) after ``STALL_CHECKS`` checks in a row with neither a new lowest gap nor a lower
objective: the tolerance is then below what floating point allows on this problem.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...errors import ConfigError
from ...scheduler import ColumnCorrelation, Driver, make_schedule
from ...scheduler.registry import schedule_kind
from ..base import RunConfig
from .app import (
    GapReport,
    LassoApp,
    Prepared,
    check_entry,
    gap_report,
    make_shards,
    predicted_changes,
)
from .blocks import column_blocks, solve_blocks

STALL_CHECKS = 50  # stop after this many checks with neither a new low gap nor a lower objective


@dataclass
class SolverOptions:
    """How to run: schedule, P, workers, tolerance, limits (see :class:`Lasso`)."""

    schedule: str = "auto"
    parallel: int = 8
    workers: int = 1
    tol: float = 1e-4
    max_iter: int = 1000
    threshold: float = 0.3
    eta: float | None = None
    chunks: int = 2
    check_every: int | None = None
    safeguard: bool = True
    pipeline: bool = True
    seed: int = 0
    max_seconds: float | None = None
    run: Any = None  # a RunConfig: runtime, stragglers, snapshots, resume


def open_driver(app: Any, shards: list[Any], opts: SolverOptions) -> Driver:
    """The scheduler driver of a solve, on the runtime ``opts.run`` names."""
    return Driver(app, shards, workers=opts.workers, pipeline=opts.pipeline, seed=opts.seed,
                  **RunConfig.coerce(opts.run).driver_options(opts.seed))


@dataclass
class SolveResult:
    coef: np.ndarray
    objective: float
    gap: float
    converged: bool
    checks: int
    updates: int
    rounds: int
    parallel: int  # P at the end (after any safeguard halving)
    wall_s: float
    history: list[dict[str, Any]] = field(default_factory=list)
    worker_busy_s: list[float] = field(default_factory=list)
    worker_wait_s: list[float] = field(default_factory=list)
    worker_shards: list[int] = field(default_factory=list)
    run_info: dict[str, Any] = field(default_factory=dict)  # recoveries, startup_s


def default_eta(prep: Prepared) -> float:
    """A priority floor ~(1e-4 x a typical coefficient)^2: small next to real changes but
    scale-free, so the same default works whatever the units of X and y."""
    scale = float(prep.y @ prep.y) / max(float(np.mean(prep.norm2[prep.norm2 > 0]))
                                         if np.any(prep.norm2 > 0) else 1.0, 1e-300)
    return max(1e-8 * scale, 1e-300)


SWEEP_PASSES = 10  # most passes over the working set between two checks


def sweep(drv: Driver, app: LassoApp, predicted: np.ndarray, budget: int, tol: float) -> None:
    """Sequential CD on the one shard over the working set (the nonzero coefficients and
    every coordinate the last check says would move), in one compiled call, until a pass
    changes nothing by more than ``tol`` of the largest coefficient (scikit-learn's inner
    test); the next check then computes the exact gap."""
    cols = np.flatnonzero((app.coef != 0) | (predicted != 0)).astype(np.int64)
    if cols.size == 0:
        cols = np.arange(app.coef.size, dtype=np.int64)
    passes = int(max(1, min(SWEEP_PASSES, budget // cols.size)))
    program, coef, threshold = app.program, app.coef, app.threshold
    norm2, mu = app.prep.norm2, app.prep.mu  # what travels to the worker (not the data)
    [(values, updates)] = drv.map(lambda sh: program.sweep(
        sh, cols, coef, norm2, mu, threshold, passes, tol))
    app.coef[cols] = values
    drv.stats.updates += updates
    drv.stats.rounds += 1


def _solve_blocks(prep: Prepared, app: LassoApp, opts: SolverOptions,
                  on_check: Callable[[dict[str, Any]], None] | None) -> SolveResult:
    """The ``blocks`` schedule (:mod:`.blocks`): one column block per worker."""
    blocks = column_blocks(prep, opts.workers, app.coef)
    start = time.perf_counter()
    with open_driver(app, blocks, opts) as drv:
        report, history, checks, serial = solve_blocks(
            drv, app, blocks, tol=opts.tol, budget=opts.max_iter * prep.d,
            max_seconds=opts.max_seconds, safeguard=opts.safeguard,
            stall_checks=STALL_CHECKS, on_check=on_check)
        stats = drv.stats
        run_info = {**drv.recovery.record(), "startup_s": drv.startup_s}
    tol_abs = opts.tol * float(prep.y @ prep.y)
    return SolveResult(
        coef=app.coef.copy(), objective=report.objective, gap=report.gap,
        converged=bool(report.gap <= tol_abs), checks=checks, updates=stats.updates,
        rounds=stats.rounds, parallel=1 if serial else len(blocks),
        wall_s=time.perf_counter() - start, history=history,
        worker_busy_s=stats.busy_s.tolist(), worker_wait_s=stats.wait_s.tolist(),
        worker_shards=stats.shards_done.tolist(), run_info=run_info)


def solve(prep: Prepared, alpha: float, coef_init: np.ndarray | None, opts: SolverOptions,
          columns: ColumnCorrelation | None = None,
          on_check: Callable[[dict[str, Any]], None] | None = None) -> SolveResult:
    """Minimise the Lasso objective; see the module docstring."""
    if opts.workers < 1 or opts.chunks < 1:
        raise ConfigError("workers and chunks must be >= 1")
    d = prep.d
    coef = np.zeros(d) if coef_init is None else np.array(coef_init, dtype=np.float64)
    app = LassoApp(prep, alpha, coef)
    kind = schedule_kind(opts.schedule, opts.workers, can_sweep=True)
    run = RunConfig.coerce(opts.run)
    if kind.name == "blocks":
        if run.snapshot_every or run.resume is not None:
            if opts.schedule != "auto":
                raise ConfigError("schedule='blocks' takes no snapshots (it runs one "
                                  "hand-off per check); use priority-dependency",
                                  param="schedule")
            kind = schedule_kind("priority-dependency")  # snapshots are taken per round
        elif opts.workers > 1:
            return _solve_blocks(prep, app, opts, on_check)
        else:
            kind = schedule_kind("sequential")
    parts = 1 if opts.workers == 1 else opts.workers * opts.chunks
    shards = make_shards(prep, parts, app.coef)
    # every row on one worker: no rounds (snapshots are taken between rounds: keep them)
    sweeping = (kind.sweeps and len(shards) == 1 and not run.snapshot_every
                and run.resume is None)
    if kind.needs_columns and columns is None:
        columns = ColumnCorrelation(prep.X, center=prep.sparse and bool(np.any(prep.mu)))
    eta = opts.eta if opts.eta is not None else default_eta(prep)
    eta_relative = None if opts.eta is not None else 1e-6
    tol_abs = opts.tol * float(prep.y @ prep.y)
    adaptive = opts.check_every is None and kind.prioritized
    check_every = opts.check_every or d
    all_cols = np.arange(d, dtype=np.int64)
    parallel = 1 if kind.sweeps else opts.parallel
    history: list[dict[str, Any]] = []
    predicted = np.ones(d)  # the changes the last check predicts (the working set)
    start = time.perf_counter()

    with open_driver(app, shards, opts) as drv:

        def use(p: int) -> None:
            drv.set_schedule(make_schedule(kind.name, p, columns=columns,
                                           threshold=opts.threshold, eta=eta,
                                           eta_relative=eta_relative), d)

        def check() -> GapReport:
            nonlocal check_every, predicted
            report = gap_report(app, drv.map(lambda sh: sh.stats(all_cols)))
            predicted = predicted_changes(app, report.grads)
            drv.schedule.hint(all_cols, predicted)
            if adaptive:  # next check once the working set had a few updates each
                working = int(np.count_nonzero(predicted))
                check_every = int(min(d, max(4 * working, 16 * parallel, 64)))
            entry = check_entry(drv, app, report, len(history), time.perf_counter() - start,
                                parallel)
            history.append(entry)
            if on_check is not None:
                on_check(entry)
            return report

        use(parallel)
        report = check()
        saved = app.coef.copy()
        checks = 0
        budget = opts.max_iter * d  # max_iter is in epochs: d coordinate updates each
        best_gap, stalled = report.gap, 0
        while report.gap > tol_abs and drv.stats.updates < budget and stalled < STALL_CHECKS:
            if opts.max_seconds is not None and time.perf_counter() - start > opts.max_seconds:
                break
            if sweeping:
                sweep(drv, app, predicted, budget - drv.stats.updates, opts.tol)
            else:
                target = drv.stats.updates + check_every
                while drv.stats.updates < target:
                    drv.step()
            checks += 1
            last = report
            report = check()
            worse = not np.isfinite(report.objective) or report.objective > last.objective * (
                1 + 1e-12) + 1e-300
            if opts.safeguard and worse and parallel > 1:
                app.coef[:] = saved  # roll back and halve P
                drv.map(lambda sh: sh.reset(app.coef))
                parallel = max(1, parallel // 2)
                use(parallel)
                report = check()
            saved[:] = app.coef
            progress = report.gap < best_gap or report.objective < last.objective - 1e-14 * abs(
                last.objective)
            best_gap = min(best_gap, report.gap)
            stalled = 0 if progress else stalled + 1
        stats = drv.stats
        run_info = {**drv.recovery.record(), "startup_s": drv.startup_s}
    return SolveResult(
        coef=app.coef.copy(), objective=report.objective, gap=report.gap,
        converged=bool(report.gap <= tol_abs), checks=checks, updates=stats.updates,
        rounds=stats.rounds, parallel=parallel, wall_s=time.perf_counter() - start,
        history=history, worker_busy_s=stats.busy_s.tolist(),
        worker_wait_s=stats.wait_s.tolist(), worker_shards=stats.shards_done.tolist(),
        run_info=run_info,
    )
