"""Rows/s through read + inc + clock on the embedded runtime, vs plain numpy on one array.

One worker does, per clock: read a batch of rows, add an increment to each, clock. The
ceiling is the same work on one numpy array (``v = A[rows]; A[rows] += d``). Under BSP every
clock must refetch every row from the server (the worst case); SSP(s=3) refetches every 4th
clock. Reports the ratio ours/numpy per row width and batch size (median of several runs),
and first the fixed cost of a clock: microseconds per clock per worker of a read of 10 rows +
inc + clock, at 1 and 2 workers under BSP, SSP(2) and Async.

    python bench/core_overhead.py [--quick] [--clock-cost-only]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
from _common import figure_path, write_json  # noqa: E402

import stalesync as ss  # noqa: E402
from stalesync.apps.workers import clock_loop  # noqa: E402

CLOCKS = 8


def target_clocks(width: int, batch: int) -> int:
    """Enough clocks for ~4e7 elements of work per timed run."""
    return max(CLOCKS, int(4e7 // (width * batch)))


def numpy_run(width: int, batch: int, clocks: int) -> float:
    """Seconds for ``clocks`` read+add steps on one array (after one warm-up step)."""
    rng = np.random.default_rng(0)
    table = np.zeros((2 * batch, width), dtype=np.float32)
    rows = rng.permutation(2 * batch)[:batch]
    delta = np.ones((batch, width), dtype=np.float32)
    table[rows] += delta
    t0 = time.perf_counter()
    for _ in range(clocks):
        values = table[rows]
        table[rows] += delta
    assert values.shape == (batch, width)
    return time.perf_counter() - t0


def stalesync_run(width: int, batch: int, clocks: int, consistency: str,
                  audit: str = "record") -> tuple[float, float]:
    """(steady-state seconds for ``clocks`` read+inc+clock steps, job start+stop seconds)."""
    rng = np.random.default_rng(0)
    rows = rng.permutation(2 * batch)[:batch]
    delta = np.ones((batch, width), dtype=np.float32)
    timed = {}

    def worker(ctx):
        for k in range(clocks + 1):
            if k == 1:  # after the first clock has touched every page
                timed["start"] = time.perf_counter()
            ctx.read("t", rows)
            ctx.inc("t", rows, delta)
            ctx.clock()
        timed["loop"] = time.perf_counter() - timed["start"]

    t0 = time.perf_counter()
    ss.run(
        worker,
        [ss.TableSpec("t", 2 * batch, width, "float32")],
        workers=1,
        consistency=consistency,
        staleness=None if consistency == "bsp" else 3,
        audit=audit,
    )
    return timed["loop"], time.perf_counter() - t0 - timed["loop"]


def clock_cost(workers: int, consistency: str, clocks: int = 2000) -> list[float]:
    """Microseconds per clock of each worker: read 10 rows of a 10 x 100 float64 table, add
    to them, clock (the fixed cost of the table layer; timed inside the workers, after 100
    warm-up clocks)."""
    rows = np.arange(10)
    delta = np.ones((10, 100))
    out: dict[int, float] = {}

    def worker(ctx):
        out[ctx.worker_id] = 1e6 * clock_loop(ctx, "t", rows, delta, clocks, warm_up=100)

    ss.run(worker, [ss.TableSpec("t", 10, 100, "float64")], workers=workers,
           consistency=consistency, staleness=2 if consistency == "ssp" else None)
    return [out[w] for w in range(workers)]


def clock_costs(repeats: int) -> list[dict]:
    rows = []
    for consistency in ("bsp", "ssp", "async"):
        for workers in (1, 2):
            runs = [clock_cost(workers, consistency) for _ in range(repeats)]
            per_worker = statistics.median(statistics.mean(r) for r in runs)
            rows.append({"consistency": consistency, "workers": workers,
                         "us_per_clock_per_worker": per_worker})
            print(f"clock cost {consistency:5s} x{workers}: {per_worker:.1f} us per clock per "
                  "worker (read 10 rows + inc + clock)", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer sizes and repeats")
    parser.add_argument("--clock-cost-only", action="store_true",
                        help="only the per-clock cost at 1 and 2 workers")
    args = parser.parse_args()
    costs = clock_costs(3 if args.quick else 5)
    if args.clock_cost_only:
        path = write_json("core_clock_cost", {"clock_cost": costs})
        print(f"wrote {path}")
        return
    widths = [10, 100, 1000]
    batches = [100, 1000, 10_000] if args.quick else [100, 1000, 10_000, 100_000]
    repeats = 3 if args.quick else 5
    rows = []
    for width in widths:
        for batch in batches:
            clocks = target_clocks(width, batch)
            base = statistics.median(numpy_run(width, batch, clocks) for _ in range(repeats))
            entry = {
                "width": width,
                "batch": batch,
                "clocks": clocks,
                "numpy_rows_per_s": batch * clocks / base,
            }
            for consistency in ("bsp", "ssp"):
                runs = [stalesync_run(width, batch, clocks, consistency) for _ in range(repeats)]
                t = statistics.median(r[0] for r in runs)
                entry[f"{consistency}_rows_per_s"] = batch * clocks / t
                entry[f"{consistency}_ratio"] = base / t
                entry[f"{consistency}_job_overhead_s"] = statistics.median(r[1] for r in runs)
            pairs = [(stalesync_run(width, batch, clocks, "bsp", "record")[0],
                      stalesync_run(width, batch, clocks, "bsp", "off")[0])
                     for _ in range(repeats)]
            entry["audit_cost"] = statistics.median(on / off for on, off in pairs) - 1
            rows.append(entry)
            print(
                f"width {width:5d} batch {batch:7d}: numpy {entry['numpy_rows_per_s']:.3g} rows/s"
                f"  bsp ratio {entry['bsp_ratio']:.2f}  ssp(3) ratio {entry['ssp_ratio']:.2f}"
                f"  audit +{100 * entry['audit_cost']:.1f}%",
                flush=True,
            )
    path = write_json("core_overhead", {"repeats": repeats, "results": rows,
                                        "clock_cost": costs})
    plot(rows, widths)
    print(f"wrote {path} and {figure_path('core_overhead')}")


def plot(rows: list[dict], widths: list[int]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for width in widths:
        sel = [r for r in rows if r["width"] == width]
        for consistency, style in (("bsp", "-o"), ("ssp", "--s")):
            ax.plot(
                [r["batch"] for r in sel],
                [r[f"{consistency}_ratio"] for r in sel],
                style,
                label=f"width {width}, {consistency}",
            )
    ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.set_xlabel("rows per batch")
    ax.set_ylabel("rows/s ratio: stalesync / plain numpy")
    ax.set_title("read + inc + clock overhead, embedded runtime, 1 worker")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(figure_path("core_overhead"), dpi=100)


if __name__ == "__main__":
    main()
