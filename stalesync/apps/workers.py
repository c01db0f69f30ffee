"""``workers="auto"``: run as many workers as pay, decided from measured costs.

A fit on ``w`` workers is predicted to take

    compute / (w x PARALLEL_EFFICIENCY)  +  clocks x clock_cost(w)  +  start_cost(w)

- ``compute``: the app's compiled work for the whole fit on one worker, *measured*: the app
  times its own kernel on a sample of the user's data and scales it (:class:`Work`);
- ``clocks``: the clocks (or scheduler rounds) each worker runs;
- ``clock_cost(w)``: the seconds one clock costs each of ``w`` workers, and
  ``start_cost(w)``: starting and stopping a job of ``w`` workers, both *measured* once per
  process by a tiny job on this machine (the table layer's bookkeeping is Python, so it
  serialises on the GIL and grows with ``w``; a fine-grained job cannot hide it).

The smallest ``w`` (up to the cores this process may use) whose prediction beats every
smaller one by :data:`PAYS` is chosen. An explicit ``workers=N`` is obeyed; when its
predicted overhead exceeds its compute a one-line warning says so, with the figures. The
decision goes into the run record (``workers_decision``) and the command's summary.
"""

from __future__ import annotations

import json
import os
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..job import run
from ..persist.snapshot import latest_snapshot
from ..ps.tables import TableSpec

AUTO = "auto"
PAYS = 0.9  # another worker must cut the predicted time by 10%
PARALLEL_EFFICIENCY = 0.85  # compiled kernels on 2 cores: measured 1.79-2.01x, memory-bound less
PROBE_CLOCKS = 150


class OverheadWarning(UserWarning):
    """An explicit worker count whose coordination costs more than its compute."""


@dataclass(frozen=True)
class Work:
    """What an app measured about one fit before it starts."""

    compute_s: float  # one worker's compiled compute for the whole fit
    clocks: int  # clocks (or rounds) each worker runs when it works alone
    split_clocks: bool = False  # the clocks are shared out (w workers run clocks / w each)
    max_workers: int | None = None  # e.g. fewer examples than cores
    min_clocks: int = 0  # shared out, each worker still runs this many (one per epoch)

    def clocks_per_worker(self, workers: int) -> int:
        if not self.split_clocks:
            return self.clocks
        return max(self.min_clocks, -(-self.clocks // workers))

    def predict(self, workers: int, costs: Costs) -> float:
        efficiency = 1.0 if workers == 1 else PARALLEL_EFFICIENCY
        clocks = self.clocks_per_worker(workers)
        return (self.compute_s / (workers * efficiency)
                + clocks * costs.clock_s(workers) + costs.start_s(workers))


@dataclass(frozen=True)
class Decision:
    workers: int
    requested: int | str
    reason: str
    compute_s: float | None  # None: not measured (nothing was left to decide)
    predicted_s: dict[str, float]

    def as_record(self) -> dict[str, Any]:
        return asdict(self)


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def check_workers(value: Any, name: str = "workers") -> int | str:
    """``"auto"`` or a positive int (a clear error otherwise)."""
    if value == AUTO:
        return AUTO
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ConfigError(f"{name} must be a positive integer or 'auto', got {value!r}",
                          param=name)
    return int(value)


class Costs:
    """This process's measured per-clock and start-up costs of the embedded runtime, by
    worker count (measured on first use, then kept)."""

    _lock = threading.Lock()
    _measured: dict[int, tuple[float, float]] = {}

    @classmethod
    def get(cls, workers: int) -> tuple[float, float]:
        with cls._lock:
            if workers not in cls._measured:
                cls._measured[workers] = _measure(workers)
            return cls._measured[workers]

    # a further worker never makes a clock or a job start cheaper: a measurement that says
    # so is noise (the two are timed a moment apart, on a machine that may be busy)
    def clock_s(self, workers: int) -> float:
        return max(self.get(w)[0] for w in range(1, workers + 1))

    def start_s(self, workers: int) -> float:
        return max(self.get(w)[1] for w in range(1, workers + 1))


def clock_loop(ctx: Any, table: str, rows: np.ndarray, delta: np.ndarray, clocks: int,
               warm_up: int) -> float:
    """Seconds per clock of ``clocks`` read + inc + clock steps on ``rows`` of ``table``,
    after ``warm_up`` untimed ones (what the table layer costs a clock; also
    ``bench/core_overhead.py``'s loop)."""
    for _ in range(warm_up):
        ctx.read(table, rows)
        ctx.inc(table, rows, delta)
        ctx.clock()
    t0 = time.perf_counter()
    for _ in range(clocks):
        ctx.read(table, rows)
        ctx.inc(table, rows, delta)
        ctx.clock()
    return (time.perf_counter() - t0) / clocks


def _measure(workers: int) -> tuple[float, float]:
    """(seconds per clock per worker, job start + stop seconds) of a tiny job: read 16 rows,
    add to them, clock; the median of the workers' steady-state loops."""
    rows = np.arange(16)
    delta = np.ones((16, 16))
    loops: list[float] = []
    lock = threading.Lock()

    def worker(ctx) -> None:
        seconds = clock_loop(ctx, "t", rows, delta, PROBE_CLOCKS, warm_up=10)
        with lock:
            loops.append(seconds)

    best = (np.inf, np.inf)
    for _ in range(2):  # the first run of a process also compiles and warms up
        loops.clear()
        start = time.perf_counter()
        run(worker, [TableSpec("t", 16, 16)], workers=workers, consistency="ssp",
            staleness=1, audit="off")
        wall = time.perf_counter() - start
        per_clock = float(np.median(loops))
        start_s = max(0.0, wall - per_clock * (PROBE_CLOCKS + 10))
        best = (min(best[0], per_clock), min(best[1], start_s))
    return best


def snapshot_workers(resume: str | os.PathLike | None) -> int | None:
    """The worker count of the snapshot a fit resumes from (a resumed run must keep it),
    or None."""
    if resume is None:
        return None
    found = latest_snapshot(resume)
    if found is None:
        return None
    try:
        workers = json.loads((found / "meta.json").read_text(encoding="utf-8")).get("workers")
    except (OSError, ValueError):
        return None
    return workers if isinstance(workers, int) and workers > 0 else None


def fewest_that_pay(predicted: dict[int, float]) -> int:
    """The worker count to run, from predicted seconds by count: each further worker must
    cut the prediction of the best so far by :data:`PAYS`."""
    best = 1
    for w in sorted(predicted):
        if w > 1 and predicted[w] < PAYS * predicted[best]:
            best = w
    return best


def decide(requested: int | str, work: Work | Callable[[], Work], costs: Costs | None = None,
           resume: str | os.PathLike | None = None) -> Decision:
    """The worker count of a fit (see the module docstring). ``work`` may be the function
    that measures it: a fit that asks for one worker, or resumes a snapshot under ``auto``,
    has nothing to decide and no warning to give, so it never pays for the probe (on
    MovieLens 100K the probe was a tenth of the fit). ``resume``: the snapshot a fit resumes
    from, whose worker count ``auto`` keeps."""
    if requested == AUTO and (held := snapshot_workers(resume)) is not None:
        return Decision(held, AUTO, "the worker count of the snapshot resumed from", None, {})
    if requested != AUTO and int(requested) == 1:
        return Decision(1, requested, "as requested", None, {})
    work = work() if callable(work) else work
    costs = costs or Costs()
    cores = available_cores()
    limit = max(1, min(cores, work.max_workers or cores))
    if requested != AUTO:
        n = int(requested)
        clocks = work.clocks_per_worker(n)
        overhead = clocks * costs.clock_s(n) + costs.start_s(n)
        if n > 1 and overhead > work.compute_s / n:
            warnings.warn(
                f"{n} workers: coordination is predicted to cost {overhead:.3g} s against "
                f"{work.compute_s / n:.3g} s of compute per worker ({clocks} clocks); "
                "workers='auto' would pick fewer", OverheadWarning, stacklevel=3)
        return Decision(n, requested, "as requested", work.compute_s,
                        {str(n): round(work.predict(n, costs), 6)})
    predicted = {w: work.predict(w, costs) for w in range(1, limit + 1)}
    best = fewest_that_pay(predicted)
    if best == 1 and limit == 1:
        reason = "one core available" if cores == 1 else "one worker's worth of data"
    elif best == 1:
        reason = (f"a second worker does not pay: {work.compute_s:.3g} s of compute, "
                  f"predicted {predicted[1]:.3g} s on 1 worker vs {predicted[2]:.3g} s on 2")
    else:
        reason = (f"{work.compute_s:.3g} s of compute: predicted {predicted[best]:.3g} s on "
                  f"{best} workers vs {predicted[1]:.3g} s on 1")
    return Decision(best, AUTO, reason, work.compute_s,
                    {str(w): round(t, 6) for w, t in predicted.items()})


SHORT_PROBE_S = 1e-3  # a probe faster than this is repeated (up to MAX_PROBES times)
MAX_PROBES = 8


def timed(fn, *args: Any, repeats: int = 2) -> float:
    """The fastest of ``repeats`` calls of ``fn(*args)`` (the first may compile); a call of
    under a millisecond is repeated up to :data:`MAX_PROBES` times, since one preemption
    of the process would multiply it and flip a decision that a repeated fit must repeat."""
    best = np.inf
    calls = 0
    while calls < repeats or (best < SHORT_PROBE_S and calls < MAX_PROBES):
        t0 = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - t0)
        calls += 1
    return float(best)
