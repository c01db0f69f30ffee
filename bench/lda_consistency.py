"""The SSP paper's central experiment on real data: LDA on NYT under a straggler.

K = 100, 4 workers on the embedded runtime, for BSP, SSP with s = 1, 2, 4, 8, ESSP (s = 2)
and Async. Three straggler kinds: *persistent* (worker 3 always 2x slower), *intermittent*
(worker 3 pauses 0.1 s at 20% of its clocks) and *transient* (every worker pauses 30 ms, about
two clocks of its compute, at 10% of its clocks, independently: the SSP paper's noise model).
With one straggler the job cannot finish before that worker's own compute plus pauses, under
any model; bounded staleness can only hide delays that are short and spread over workers,
where BSP pays the slowest worker at every clock and SSP about the mean. Reports
log-likelihood vs time and the time to reach a target log-likelihood (the median of several
seeds). The log-likelihood at time t is the sum of every worker's latest reported share, so
fast workers' progress counts as soon as it happens.

    python bench/lda_consistency.py [--sweeps 12] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import figure_path, write_json  # noqa: E402

from stalesync import Stragglers  # noqa: E402
from stalesync.apps.base import RunConfig  # noqa: E402
from stalesync.apps.lda import LDA  # noqa: E402
from stalesync.data.datasets import load_dataset  # noqa: E402

SETTINGS = [
    ("bsp", None),
    ("ssp", 1),
    ("ssp", 2),
    ("ssp", 4),
    ("ssp", 8),
    ("essp", 2),
    ("async", None),
]
STRAGGLERS = {
    "persistent": lambda seed: Stragglers(slow={3: 2.0}, seed=seed),
    "intermittent": lambda seed: Stragglers(
        pause_prob=0.2, pause_s=0.1, pause_workers=(3,), seed=seed
    ),
    "transient": lambda seed: Stragglers(pause_prob=0.1, pause_s=0.03, seed=seed),
}
WORKERS = 4


def loglik_timeline(record: dict) -> tuple[np.ndarray, np.ndarray]:
    """(t, sum of every worker's latest share) at each report once all have reported."""
    latest: dict[int, float] = {}
    times, values = [], []
    for r in sorted((r for r in record["records"] if "objective" in r), key=lambda r: r["time_s"]):
        latest[r["worker"]] = r["objective"]
        if len(latest) == record["workers"]:
            times.append(r["time_s"])
            values.append(sum(latest.values()))
    return np.array(times), np.array(values)


def time_to(times: np.ndarray, values: np.ndarray, target: float) -> float:
    hit = np.flatnonzero(values >= target)
    return float(times[hit[0]]) if hit.size else float("inf")


def run(corpus, consistency, staleness, stragglers, sweeps, seed):
    model = LDA(
        n_topics=100,
        epochs=sweeps,
        workers=WORKERS,
        consistency=consistency,
        staleness=staleness,
        eval_every=2,
        seed=seed,
    )
    model.fit(corpus, run=RunConfig(stragglers=stragglers))
    t, v = loglik_timeline(model.run_record_)
    rec = model.run_record_
    return {
        "t": t.tolist(),
        "ll": v.tolist(),
        "wall_s": rec["wall_time_s"],
        "wait_s": rec["wait_s"],
        "final_ll": model.loglik_per_token_,
        "staleness_mean": rec["observed_staleness"]["mean"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweeps", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    corpus = load_dataset("nyt")
    LDA(n_topics=10, epochs=1, workers=2).fit(corpus)  # compile once
    results: dict = {}
    for kind, make in STRAGGLERS.items():
        runs = {}
        for consistency, s in SETTINGS:
            name = consistency if s is None else f"{consistency}(s={s})"
            runs[name] = [
                run(corpus, consistency, s, make(seed), args.sweeps, seed)
                for seed in range(args.repeats)
            ]
            wall = statistics.median(r["wall_s"] for r in runs[name])
            final = statistics.median(r["final_ll"] for r in runs[name])
            print(
                f"{kind:12s} {name:10s} wall {wall:6.2f} s  final {final:.4f}",
                flush=True,
            )
        # target: 95% of the way from the start to BSP's final value (median over seeds)
        bsp_final = statistics.median(r["final_ll"] for r in runs["bsp"])
        start = statistics.median(r["ll"][0] for r in runs["bsp"])
        target = start + 0.95 * (bsp_final - start)
        summary = {}
        for name, rs in runs.items():
            tt = statistics.median(time_to(np.array(r["t"]), np.array(r["ll"]), target) for r in rs)
            summary[name] = {
                "time_to_target_s": tt,
                "wall_s": statistics.median(r["wall_s"] for r in rs),
                "wait_s": statistics.median(r["wait_s"] for r in rs),
                "final_ll": statistics.median(r["final_ll"] for r in rs),
                "staleness_mean": statistics.median(r["staleness_mean"] for r in rs),
            }
        bsp_t = summary["bsp"]["time_to_target_s"]
        for name, row in summary.items():
            row["speedup_vs_bsp"] = bsp_t / row["time_to_target_s"]
            print(
                f"{kind:12s} {name:10s} time to {target:.3f}: {row['time_to_target_s']:6.2f} s "
                f"(x{row['speedup_vs_bsp']:.2f} vs BSP), waited {row['wait_s']:.2f} s, "
                f"mean staleness {row['staleness_mean']:.2f}",
                flush=True,
            )
        results[kind] = {"target": target, "summary": summary, "runs": runs}
    path = write_json(
        "lda_consistency",
        {
            "sweeps": args.sweeps,
            "repeats": args.repeats,
            "workers": WORKERS,
            "topics": 100,
            "results": results,
        },
    )
    plot(results)
    print(f"wrote {path} and {figure_path('lda_consistency')}")


def plot(results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4.5), squeeze=False)
    for ax, (kind, res) in zip(axes[0], results.items(), strict=True):
        for name, runs in res["runs"].items():
            r = runs[0]
            ax.plot(
                r["t"], r["ll"], label=f"{name} ({res['summary'][name]['time_to_target_s']:.1f} s)"
            )
        ax.axhline(res["target"], color="grey", ls=":", lw=0.8)
        ax.set_title(f"NYT K=100, 4 workers, {kind} stragglers\n(time to target in legend)",
                     fontsize=10)
        ax.set_xlabel("wall time (s)")
        ax.set_ylabel("log p(w, z) per token")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(figure_path("lda_consistency"), dpi=100)


if __name__ == "__main__":
    main()
