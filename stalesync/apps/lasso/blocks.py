"""Lasso on several workers: checks split by column blocks, sweeps over the working set.

A scheduler round of ``parallel`` coordinates hands the workers microseconds of work (on a
2,000 x 100,000 sparse problem a round of 8 columns is ~130 multiply-adds per worker), so
the hand-offs cost far more than the compute. Here a worker owns a block of columns (every
row of them, ~equal non-zeros per block), and the solve alternates two steps:

* **Check** (parallel, one hand-off): each block computes ``X_B^T r`` for its columns
  against the current residual and returns only its share of the dual norm and its
  *working set* (the columns an update would touch). The driver gets the exact objective
  and duality gap from those and the residual's sums. On p >> n problems this full pass
  over the columns is a large part of a solve.
* **Sweep** of the working set. First every block sweeps its own working set against the
  same residual (Jacobi over blocks, one hand-off); the blocks' changes of the residual
  add up (``s = y - X b`` is linear in ``b``) and :func:`merge_step` picks how far to go.
  As soon as the blocks overlap (the full step overshoots: both explain the same rows of
  the residual, as on p >> n data) or the objective rises, the sweeps are *gathered*: the
  union of the working sets is swept one coordinate after another in this process (the
  data's columns are all here), exactly as one worker sweeps, while the checks stay split.
  A Jacobi solve that kept halving its steps took 10x the checks of one worker on a
  2,000 x 100,000 problem; gathered, the checks are one worker's and cost half.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp

from ...kernels import lasso as k
from ...scheduler.driver import balanced_chunks
from .app import Columns, GapReport, LassoApp, Prepared, check_entry, duality_gap

SWEEP_PASSES = 3  # most passes over a block's working set between two checks
GATHERED_PASSES = 10  # most passes of the gathered sweep (one worker's sweep does as many)


class ColumnBlock(Columns):
    """One worker's columns: their slice of X (every row), their norms and column means,
    and their coefficients as of the last hand-off (the driver sends only the ones that
    changed since)."""

    def __init__(self, index: int, prep: Prepared, cols: np.ndarray, coef: np.ndarray
                 ) -> None:
        self.index = index
        self.cols = cols
        self.coef = np.array(coef[cols], dtype=np.float64)
        self.local = np.arange(cols.size, dtype=np.int64)
        self.norm2 = np.ascontiguousarray(prep.norm2[cols])
        self.mu = np.ascontiguousarray(prep.mu[cols])
        super().__init__(prep.X[:, cols])

    def update(self, changed: tuple[np.ndarray, np.ndarray]) -> None:
        """Take the driver's changes of this block's coefficients (local ids, values)."""
        local, values = changed
        self.coef[local] = values

    def screen(self, s: np.ndarray, s_sum: float, changed: tuple[np.ndarray, np.ndarray],
               threshold: float) -> tuple[float, np.ndarray]:
        """One check's share of the block: ``(max_j |X_j^T r|, the working set)`` where
        ``r`` is the centred residual of ``s``. The working set (the block's own column
        ids) is every column an update would touch; only it travels back, not the block's
        gradients."""
        self.update(changed)
        grads = np.empty(self.cols.size)
        self.push(s, self.local, grads)
        grads -= self.mu * s_sum  # zero for dense data (centred explicitly)
        out = np.empty(self.cols.size, dtype=np.int64)
        count, dual = k.working_set(grads, self.coef, self.norm2, threshold, out)
        return float(dual), out[:count].copy()

    def sweep(self, s: np.ndarray, changed: tuple[np.ndarray, np.ndarray],
              working: np.ndarray, threshold: float, passes: int, tol: float
              ) -> tuple[np.ndarray, np.ndarray, int]:
        """Sweep the block's ``working`` columns (local ids) from residual ``s``: ``(their
        new coefficients, change of s, updates)``; the block's own coefficients stay as they
        were (the driver merges the change and sends back what it keeps). Only the working
        set's values travel: on Ray a round moves O(n + working set), not the block."""
        self.update(changed)
        mine = s.copy()
        coef = self.coef.copy()
        updates, _ = self.descend(mine, float(mine.sum()), coef, self.norm2, self.mu,
                                   working, threshold, passes, tol)
        return coef[working], mine - s, updates


def column_blocks(prep: Prepared, parts: int, coef: np.ndarray) -> list[ColumnBlock]:
    """``parts`` blocks of consecutive columns with about equal non-zeros."""
    if prep.sparse:
        weights = np.diff(sp.csc_matrix(prep.X).indptr).astype(np.float64)
    else:
        weights = np.ones(prep.d)
    return [ColumnBlock(i, prep, cols.astype(np.int64), coef)
            for i, cols in enumerate(balanced_chunks(weights, parts))]


def check_time(X: Any, threads: int = 1) -> float:
    """Seconds of a check's pass (``X^T v``, every column; X dense or CSC) on one thread,
    or on two threads each taking half the columns at once: measured, because the pass
    streams the data and two threads share the memory bandwidth (on this project's 2-core
    machine the halves took 0.6x-1.3x the one-thread time, depending on the problem)."""
    columns = Columns(X)
    n, d = X.shape
    v = np.ones(n)
    out = np.empty(d)
    cols = np.arange(d, dtype=np.int64)
    halves = np.array_split(cols, 2)

    def push(part: np.ndarray) -> None:  # consecutive columns: write into a view of out
        columns.push(v, part, out[part[0]:part[0] + part.size])

    def both() -> None:
        helper = threading.Thread(target=push, args=(halves[1],))
        helper.start()
        push(halves[0])
        helper.join()

    if threads == 1:
        return min(_seconds(push, cols) for _ in range(3))  # the first may compile
    return min(_seconds(both) for _ in range(3))


def _seconds(fn: Callable[..., None], *args: Any) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


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
    """Run checks and sweeps until the gap is within ``tol`` of ``||y_c||^2`` (or the
    budget, time or progress runs out); returns (last report, history, checks, whether the
    sweeps ended up gathered on one thread)."""
    prep = app.prep
    y = prep.y
    s = y - np.asarray(prep.X @ app.coef).ravel() if np.any(app.coef) else y.copy()
    tol_abs = tol * float(y @ y)
    history: list[dict[str, Any]] = []
    start = time.perf_counter()
    gathered = False
    columns = Columns(prep.X)  # every column, for the gathered sweeps (no copy: sorted CSC)
    held = app.coef.copy()  # the coefficients the blocks hold

    def changes() -> list[tuple[np.ndarray, np.ndarray]]:
        """Per block, the coefficients that changed since the blocks last heard (local
        ids, values): what travels instead of every coefficient."""
        out = []
        for b in blocks:
            local = np.flatnonzero(app.coef[b.cols] != held[b.cols])
            out.append((local, app.coef[b.cols[local]]))
        held[:] = app.coef
        return out

    def check() -> tuple[GapReport, list[np.ndarray]]:
        """The exact objective and gap, and each block's working set (local ids)."""
        s_sum, threshold, changed = float(s.sum()), app.threshold, changes()
        parts = drv.map(lambda b: b.screen(s, s_sum, changed[b.index], threshold))
        dual = max(p[0] for p in parts)
        objective, gap = duality_gap(app, dual, k.sum_sq(s), k.dot(s, y), s_sum)
        report = GapReport(objective, gap)
        entry = check_entry(drv, app, report, len(history), time.perf_counter() - start,
                            1 if gathered else len(blocks))
        history.append(entry)
        if on_check is not None:
            on_check(entry)
        return report, [p[1] for p in parts]

    def sweep_blocks(working: list[np.ndarray]) -> float:
        """Every block sweeps its working set against the same residual (Jacobi); the
        merged step taken."""
        nonlocal s
        jobs = [w if w.size else b.local for b, w in zip(blocks, working, strict=True)]
        total = sum(j.size for j in jobs)
        passes = int(max(1, min(SWEEP_PASSES, (budget - drv.stats.updates) // max(total, 1))))
        base, threshold, changed = s, app.threshold, changes()
        results = drv.map(lambda b: b.sweep(base, changed[b.index], jobs[b.index], threshold,
                                            passes, tol))
        done = [(b.cols[j], res) for b, j, res in zip(blocks, jobs, results, strict=True)]
        step = merge_step(app, s, [(cols, c, ds) for cols, (c, ds, _) in done])
        for cols, (coef, ds, updates) in done:
            app.coef[cols] += step * (coef - app.coef[cols])
            s = s + step * ds
            drv.stats.updates += updates
        drv.stats.rounds += 1
        return step

    def sweep_gathered(working: list[np.ndarray]) -> None:
        """The blocks' working sets swept as one, one coordinate after another, here
        (the data's columns are all in this process): exactly one worker's sweep."""
        cols = np.concatenate([b.cols[w] for b, w in zip(blocks, working, strict=True)])
        if cols.size == 0:
            cols = np.arange(prep.d, dtype=np.int64)
        passes = int(max(1, min(GATHERED_PASSES, (budget - drv.stats.updates) // cols.size)))
        updates, _ = columns.descend(s, float(s.sum()), app.coef, prep.norm2, prep.mu, cols,
                                   app.threshold, passes, tol)
        drv.stats.updates += int(updates)
        drv.stats.rounds += 1

    report, working = check()
    saved_coef, saved_s = app.coef.copy(), s.copy()
    checks, best_gap, stalled = 0, report.gap, 0
    while report.gap > tol_abs and drv.stats.updates < budget and stalled < stall_checks:
        if max_seconds is not None and time.perf_counter() - start > max_seconds:
            break
        if gathered:
            sweep_gathered(working)
        elif sweep_blocks(working) < 1.0:
            gathered = True  # the blocks explain the same residual: one sweep does better
        checks += 1
        last = report
        report, working = check()
        worse = not np.isfinite(report.objective) or report.objective > last.objective * (
            1 + 1e-12) + 1e-300
        if safeguard and worse and not gathered:  # roll back; sweep sequentially
            app.coef[:], s = saved_coef, saved_s.copy()
            gathered = True
            report, working = check()
        saved_coef, saved_s = app.coef.copy(), s.copy()
        progress = report.gap < best_gap or report.objective < last.objective - 1e-14 * abs(
            last.objective)
        best_gap = min(best_gap, report.gap)
        stalled = 0 if progress else stalled + 1
    return report, history, checks, gathered
