"""The fixed cost of the parameter server's calls on Ray, with (almost) no data.

Two workers read and increment a 10-row table every clock, timing ``read``, ``inc`` and
``clock`` inside the worker, under SSP, Async and BSP, on the Ray runtime and on the embedded
one (the baseline). With so little data per message, what is left is the cost of the calls
themselves: what paces Ray at short clocks (see docs/ray.md).

    python bench/ray_call_cost.py [--clocks 1500]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import figure_path, write_json  # noqa: E402

import stalesync as ss  # noqa: E402

ROWS, WIDTH = 10, 100
MODELS = (("ssp", 2), ("async", None), ("bsp", None))


def worker(ctx):
    rows = np.arange(ROWS)
    ones = np.ones((ROWS, WIDTH), dtype=np.int32)
    spent = {"read": 0.0, "inc": 0.0, "clock": 0.0}
    while ctx.clock_count < ctx.iterations:
        a = time.perf_counter()
        ctx.read("t", rows)
        b = time.perf_counter()
        ctx.inc("t", rows, ones)
        c = time.perf_counter()
        ctx.clock()
        d = time.perf_counter()
        spent["read"] += b - a
        spent["inc"] += c - b
        spent["clock"] += d - c
    return {k: v / ctx.iterations * 1e3 for k, v in spent.items()}


def measure(runtime: str, consistency: str, staleness: int | None, clocks: int) -> dict:
    result = ss.run(worker, [ss.TableSpec("t", ROWS, WIDTH, "int32")], workers=2,
                    iterations=clocks, consistency=consistency, staleness=staleness,
                    runtime=runtime, audit="off")
    per_worker = result.worker_results
    return {k: float(np.mean([w[k] for w in per_worker])) for k in per_worker[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clocks", type=int, default=1500)
    args = parser.parse_args()
    results = {}
    for runtime in ("embedded", "ray"):
        for consistency, staleness in MODELS:
            ms = measure(runtime, consistency, staleness, args.clocks)
            results[f"{runtime}/{consistency}"] = ms
            print(f"{runtime:8s} {consistency:5s}: read {ms['read']:.3f} ms, inc "
                  f"{ms['inc']:.3f} ms, clock {ms['clock']:.3f} ms", flush=True)
    path = write_json("ray_call_cost", {"clocks": args.clocks, "rows": ROWS, "width": WIDTH,
                                        "ms_per_call": results})
    plot(results)
    print(f"wrote {path} and {figure_path('ray_call_cost')}")


def plot(results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, ax = plt.subplots(figsize=(8, 4))
    x = np.arange(len(names))
    bottom = np.zeros(len(names))
    for part in ("read", "inc", "clock"):
        values = np.array([results[n][part] for n in names])
        ax.bar(x, values, bottom=bottom, label=part)
        bottom += values
    ax.set_xticks(x, names, rotation=20)
    ax.set_ylabel("ms per clock, inside the worker")
    ax.set_title(f"{ROWS}-row reads and increments, 2 workers")
    ax.legend()
    fig.tight_layout()
    fig.savefig(figure_path("ray_call_cost"), dpi=100)


if __name__ == "__main__":
    main()
