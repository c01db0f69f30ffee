"""Load on the embedded runtime: many workers, many clocks, many jobs in one process.

- ``load_run``: W workers each add seeded random integer increments to random rows every
  clock for C clocks (reading rows as they go, SSP); the final table must equal the exact
  sum of every increment, replayed here from the same seeds, and the process's resident
  memory, sampled every few dozen clocks, must stay flat after warm-up (the fitted
  slope is reported).
- 100 consecutive jobs in one process leave no thread behind.

The default suite runs 8 workers x 800 clocks with the clock-record cap lowered to 64 (so
the records reach their steady state during warm-up and any growth after it is a leak);
``pytest -m soak -s tests/test_load.py`` runs 8 x 10,000 with the real cap and prints the
slope.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

import stalesync as ss
from stalesync.ps import clock_records
from stalesync.ps.clock_records import MAX_RECORDS

psutil = pytest.importorskip("psutil")

ROWS, WIDTH, ROWS_PER_CLOCK = 2_000, 8, 64


def _increments(worker: int, clock: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([worker, clock, 2027])
    rows = rng.integers(0, ROWS, size=ROWS_PER_CLOCK)
    return rows, rng.integers(-3, 4, size=(ROWS_PER_CLOCK, WIDTH))


def _program(clocks: int, rss: list[tuple[int, int]], sample_every: int):
    process = psutil.Process()

    def worker(ctx: ss.WorkerContext) -> None:
        w = ctx.worker_id
        while ctx.clock_count < clocks:
            rows, deltas = _increments(w, ctx.clock_count)
            ctx.read("t", rows[:8])
            ctx.inc("t", rows, deltas)
            if w == 0 and ctx.clock_count % sample_every == 0:
                rss.append((ctx.clock_count, process.memory_info().rss))
            ctx.clock()

    return worker


def _expected(workers: int, clocks: int) -> np.ndarray:
    table = np.zeros((ROWS, WIDTH), dtype=np.int64)
    for w in range(workers):
        for c in range(clocks):
            rows, deltas = _increments(w, c)
            np.add.at(table, rows, deltas)
    return table


def load_run(workers: int, clocks: int, sample_every: int = 200,
             warm_from: int | None = None) -> dict[str, float]:
    """One loaded job; returns its RSS growth after warm-up and the fitted slope.

    ``warm_from``: the first clock counted as steady state (default: 20% of the run, at
    least :data:`MAX_RECORDS`, at most half of it)."""
    rss: list[tuple[int, int]] = []
    result = ss.run(_program(clocks, rss, sample_every), [ss.TableSpec("t", ROWS, WIDTH, "int64")],
                    workers=workers, iterations=clocks, consistency="ssp", staleness=2,
                    seed=1)
    np.testing.assert_array_equal(result.tables["t"], _expected(workers, clocks))
    clock, resident = np.array(rss, dtype=float).T
    # after warm-up: caches filled, kernels compiled, the clock history at its cap
    if warm_from is None:
        warm_from = min(max(clock.max() * 0.2, MAX_RECORDS), clock.max() * 0.5)
    warm = clock >= warm_from
    assert warm.sum() >= 3, f"too few RSS samples after warm-up: {rss}"
    slope = np.polyfit(clock[warm], resident[warm], 1)[0]
    span = clock[warm][-1] - clock[warm][0]
    return {"clocks": clocks, "workers": workers, "samples": int(warm.sum()),
            "rss_start_mb": resident[warm][0] / 2**20, "rss_end_mb": resident[-1] / 2**20,
            "fitted_growth_mb": slope * span / 2**20,
            "slope_kb_per_1000_clocks": slope * 1000 / 1024}


def test_loaded_job_keeps_the_exact_sum_and_flat_memory(monkeypatch):
    # the clock records are the one thing meant to grow with the clock count (up to their
    # cap): a low cap puts them at steady state by clock 64, so the 12 samples from clock
    # 200 to 750 see only leaks. Measured flat to 0.1 MB; one worker keeping one clock's
    # increments (64 x 8 int64) per clock would add 2.2 MB over that window, all eight 17 MB.
    monkeypatch.setattr(clock_records, "MAX_RECORDS", 64)
    out = load_run(workers=8, clocks=800, sample_every=50, warm_from=200)
    assert out["samples"] == 12, out
    assert out["fitted_growth_mb"] < 1.0, out
    assert out["rss_end_mb"] - out["rss_start_mb"] < 1.5, out


@pytest.mark.soak
def test_soak_load():
    out = load_run(workers=8, clocks=10_000)
    print(f"\nload soak: {out}")
    # a leak of one per-clock array (64 rows x 8 x 8 bytes, per worker) would add 4 MB
    assert out["slope_kb_per_1000_clocks"] < 256, out


def test_consecutive_jobs_leave_no_thread_behind():
    def worker(ctx):
        while ctx.clock_count < 3:
            ctx.inc("t", [ctx.worker_id], np.ones((1, 2)))
            ctx.read("t", [0, 1, 2])
            ctx.clock()

    before = {t.ident for t in threading.enumerate()}
    for i in range(100):
        result = ss.run(worker, [ss.TableSpec("t", 3, 2)], workers=3, iterations=3,
                        consistency=["bsp", "ssp", "essp", "async"][i % 4], seed=i)
        assert result.tables["t"][:, 0].tolist() == [3.0, 3.0, 3.0]
    left = [t.name for t in threading.enumerate() if t.ident not in before and t.is_alive()]
    assert left == [], f"threads left after 100 jobs: {left[:5]}"


def test_clock_records_stay_bounded_and_keep_their_totals():
    from stalesync.ps.clock_records import WorkerMetrics

    m = WorkerMetrics(0, 0.0)
    rng = np.random.default_rng(3)
    stale = rng.integers(0, 3, size=(3 * MAX_RECORDS, 4))
    for k in range(3 * MAX_RECORDS):
        m.on_read_stats(stale[k].size, int(stale[k].sum()), int(stale[k].max()), 0.001)
        m.on_clock(k, float(k))
    assert len(m.records) <= MAX_RECORDS
    assert sum(r.get("clocks", 1) for r in m.records) == 3 * MAX_RECORDS
    assert [r["iteration"] for r in m.records[-MAX_RECORDS // 2:]] == list(
        range(3 * MAX_RECORDS - MAX_RECORDS // 2, 3 * MAX_RECORDS))  # newest: one per clock
    assert m.records[-1]["objective"] == 3 * MAX_RECORDS - 1
    assert sum(r["wait_s"] for r in m.records) == pytest.approx(0.001 * 3 * MAX_RECORDS)
    durations = sum(r["duration_s"] for r in m.records)
    assert durations == pytest.approx(m.records[-1]["time_s"] - m.records[0]["time_s"]
                                      + m.records[0]["duration_s"])
    assert sum(r["rows_read"] for r in m.records) == stale.size
    weighted = sum(r["staleness_mean"] * r["rows_read"] for r in m.records)
    assert weighted == pytest.approx(stale.sum())
    assert max(r["staleness_max"] for r in m.records) == stale.max()
