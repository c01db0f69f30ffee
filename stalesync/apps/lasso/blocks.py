"""Lasso's ``blocks`` schedule: each worker sweeps its own block of columns, compiled.

A scheduler round of ``parallel`` coordinates hands the workers microseconds of work (on a
2,000 x 100,000 sparse problem a round of 8 columns is ~130 multiply-adds per worker), so
the hand-offs cost far more than the compute. Here a worker owns a block of columns (every
row of them, ~equal non-zeros per block) and a copy of the residual, and between two checks
it runs the compiled sequential sweep over its block's working set, exactly as one worker
sweeps everything; at the check the blocks' changes of the residual are added up (they
commute: ``s = y - X b`` is linear in ``b``), the duality gap is computed exactly, and the
next sweeps start from the merged residual. One hand-off per check, not per coordinate.

This is Jacobi over blocks: a block does not see another's changes until the check. With
nearly uncorrelated blocks (sparse high-dimensional data) it converges like the sequential
sweep; where it would not, the safeguard sees the objective rise, rolls back to the last
check and sweeps the blocks one after another (Gauss-Seidel: sequential coordinate descent,
which never increases the objective) from then on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp

from ...kernels import lasso as k
from ...scheduler.driver import balanced_chunks
from .app import GapReport, LassoApp, Prepared, check_entry, gap_report, predicted_changes

SWEEP_PASSES = 3  # most passes over a block's working set between two checks


class ColumnBlock:
    """One worker's columns: their slice of X (every row), their norms and column means,
    and the residual the worker sweeps against."""

    def __init__(self, index: int, prep: Prepared, cols: np.ndarray) -> None:
        self.index = index
        self.cols = cols
        self.norm2 = np.ascontiguousarray(prep.norm2[cols])
        self.mu = np.ascontiguousarray(prep.mu[cols])
        if prep.sparse:
            X = sp.csc_matrix(prep.X[:, cols])
            X.sort_indices()
            self.sparse = True
            self.indptr, self.indices, self.data = X.indptr, X.indices, X.data
        else:
            self.sparse = False
            self.x = np.asfortranarray(prep.X[:, cols])

    def grads(self, s: np.ndarray) -> np.ndarray:
        """``X_B^T s`` for every column of the block."""
        out = np.empty(self.cols.size)
        local = np.arange(self.cols.size, dtype=np.int64)
        if self.sparse:
            k.push_csc(self.indptr, self.indices, self.data, s, local, out)
        else:
            k.push_dense(self.x, s, local, out)
        return out

    def sweep(self, s: np.ndarray, values: np.ndarray, working: np.ndarray, threshold: float,
              passes: int, tol: float) -> tuple[np.ndarray, np.ndarray, int]:
        """Sweep the block's ``working`` columns (local ids, coefficients ``values``) from
        residual ``s``: ``(their new coefficients, change of s, updates)``. Only the working
        set travels: on Ray a round then moves O(n + working set), not the block."""
        mine = s.copy()
        coef = np.zeros(self.cols.size)
        coef[working] = values
        if self.sparse:
            updates, _ = k.sweep_csc(self.indptr, self.indices, self.data, mine,
                                     float(mine.sum()), coef, self.norm2, self.mu, working,
                                     threshold, passes, tol)
        else:
            updates = k.sweep_dense(self.x, mine, coef, self.norm2, working, threshold,
                                    passes, tol)
        return coef[working], mine - s, int(updates)


def column_blocks(prep: Prepared, parts: int) -> list[ColumnBlock]:
    """``parts`` blocks of consecutive columns with about equal non-zeros."""
    if prep.sparse:
        weights = np.diff(sp.csc_matrix(prep.X).indptr).astype(np.float64)
    else:
        weights = np.ones(prep.d)
    return [ColumnBlock(i, prep, cols.astype(np.int64))
            for i, cols in enumerate(balanced_chunks(weights, parts))]


def merge_step(app: LassoApp, s: np.ndarray,
               changes: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> float:
    """How far to move along the blocks' summed change: the step in {1, 1/2, ..., 1/W}
    (W blocks) with the lowest objective. Each block solved its part against the same stale
    residual, so where blocks share rows their changes overlap (p >> n: both explain the same
    residual) and the full step overshoots; the step 1/W is the average of the blocks'
    solutions, which by convexity never does worse than the worst of them, so the chosen
    step always descends. Costs O(n + changed coefficients) on the driver."""
    if len(changes) == 1:
        return 1.0
    prep = app.prep
    ds = sum(c[2] for c in changes)
    base_l1 = float(np.abs(app.coef).sum())
    moved = [(app.coef[cols], coef) for cols, coef, _ in changes]
    old_l1 = sum(float(np.abs(a).sum()) for a, _ in moved)
    # sparse data is centred implicitly: the true residual is s + mu @ coef on every row
    c0 = float(prep.mu @ app.coef)
    dc = sum(float(prep.mu[cols] @ (coef - app.coef[cols])) for cols, coef, _ in changes)

    def objective(t: float) -> float:
        l1 = base_l1 - old_l1 + sum(float(np.abs(a + t * (b - a)).sum()) for a, b in moved)
        r = s + t * ds + (c0 + t * dc)
        return 0.5 * float(r @ r) / prep.n + app.alpha * l1

    steps = [1.0 / 2**i for i in range(int(np.ceil(np.log2(len(changes)))) + 1)]
    steps[-1] = 1.0 / len(changes)
    return min(steps, key=objective)


def solve_blocks(drv: Any, app: LassoApp, blocks: list[ColumnBlock], *, tol: float,
                 budget: int, max_seconds: float | None, safeguard: bool, stall_checks: int,
                 on_check: Callable[[dict[str, Any]], None] | None
                 ) -> tuple[GapReport, list[dict[str, Any]], int, bool]:
    """Run checks and block sweeps until the gap is within ``tol`` of ``||y_c||^2`` (or
    the budget, time or progress runs out); returns (last report, history, checks, whether
    the blocks ended up swept one after another)."""
    prep = app.prep
    y = prep.y
    s = y - np.asarray(prep.X @ app.coef).ravel() if np.any(app.coef) else y.copy()
    tol_abs = tol * float(y @ y)
    history: list[dict[str, Any]] = []
    start = time.perf_counter()
    serial = False

    def check() -> tuple[GapReport, np.ndarray]:
        grads = np.empty(prep.d)
        for block, g in zip(blocks, drv.map(lambda b: b.grads(s)), strict=True):
            grads[block.cols] = g
        stats = np.concatenate([grads, [k.sum_sq(s), k.dot(s, y), float(s.sum())]])
        report = gap_report(app, [stats])
        entry = check_entry(drv, app, report, len(history), time.perf_counter() - start,
                            1 if serial else len(blocks))
        history.append(entry)
        if on_check is not None:
            on_check(entry)
        return report, predicted_changes(app, report.grads)

    def sweep_all(predicted: np.ndarray) -> None:
        nonlocal s
        threshold = app.threshold
        jobs = []
        for block in blocks:
            local = np.flatnonzero((app.coef[block.cols] != 0) | (predicted[block.cols] != 0))
            if local.size == 0:
                local = np.arange(block.cols.size)
            jobs.append(local.astype(np.int64))
        total = sum(j.size for j in jobs)
        passes = int(max(1, min(SWEEP_PASSES, (budget - drv.stats.updates) // max(total, 1))))
        order = [[b.index] for b in blocks] if serial else [[b.index for b in blocks]]
        for group in order:  # all blocks at once (Jacobi), or one after another
            base = s
            # what travels: each block's working set and its coefficients, not the data
            values = [app.coef[b.cols[j]] for b, j in zip(blocks, jobs, strict=True)]
            results = drv.map(lambda b, base=base, group=group, values=values: (
                b.sweep(base, values[b.index], jobs[b.index], threshold, passes, tol)
                if b.index in group else None))
            done = [(block.cols[jobs[block.index]], res)
                    for block, res in zip(blocks, results, strict=True) if res is not None]
            step = merge_step(app, s, [(cols, c, ds) for cols, (c, ds, _) in done])
            for cols, (coef, ds, updates) in done:
                app.coef[cols] += step * (coef - app.coef[cols])
                s = s + step * ds
                drv.stats.updates += updates
            drv.stats.rounds += 1

    report, predicted = check()
    saved_coef, saved_s = app.coef.copy(), s.copy()
    checks, best_gap, stalled = 0, report.gap, 0
    while report.gap > tol_abs and drv.stats.updates < budget and stalled < stall_checks:
        if max_seconds is not None and time.perf_counter() - start > max_seconds:
            break
        sweep_all(predicted)
        checks += 1
        last = report
        report, predicted = check()
        worse = not np.isfinite(report.objective) or report.objective > last.objective * (
            1 + 1e-12) + 1e-300
        if safeguard and worse and not serial:  # roll back; one block after another
            app.coef[:], s = saved_coef, saved_s.copy()
            serial = True
            report, predicted = check()
        saved_coef, saved_s = app.coef.copy(), s.copy()
        progress = report.gap < best_gap or report.objective < last.objective - 1e-14 * abs(
            last.objective)
        best_gap = min(best_gap, report.gap)
        stalled = 0 if progress else stalled + 1
    return report, history, checks, serial
