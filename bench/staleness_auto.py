"""staleness="auto" next to every fixed setting: LDA (NYT), MF (MovieLens 100K) and the
linear SVM (clothing reviews), 4 workers on this 2-core machine, three straggler scenarios
(none; worker 3 two times slower; every worker pausing 30 ms at 10% of its clocks), for BSP,
SSP s = 1, 2, 4, 8, Async and auto.

Per app, the target objective is 95% of the way from the start to BSP's final value without
stragglers; each configuration's time to target is the first time its objective curve (the
sum of every worker's latest LDA share; the mean over workers for MF and the SVM, smoothed
over 5 clocks) reaches it: the median of REPEATS seeds, configurations interleaved. Also
writes, per app, the SSP trade-off without stragglers: clocks per second and progress per
clock against s. Writes bench/results/staleness_auto.json and .png.

    flock /tmp/stalesync-bench.lock .venv/bin/python bench/staleness_auto.py [--repeats 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import figure_path, write_json  # noqa: E402

from stalesync import Stragglers  # noqa: E402
from stalesync.apps.base import RunConfig  # noqa: E402
from stalesync.apps.lda import LDA  # noqa: E402
from stalesync.apps.linear import LinearClassifier  # noqa: E402
from stalesync.apps.mf import MatrixFactorization  # noqa: E402
from stalesync.data.datasets import load_dataset  # noqa: E402
from stalesync.data.load import load_features  # noqa: E402
from stalesync.data.ratings import load_movielens_100k  # noqa: E402
from stalesync.observe.metrics import objective_curve  # noqa: E402

WORKERS = 4
SETTINGS = [("bsp", None), ("ssp", 1), ("ssp", 2), ("ssp", 4), ("ssp", 8), ("async", None),
            ("ssp", "auto")]
SCENARIOS = {
    "none": lambda seed: None,
    "one worker 2x slower": lambda seed: Stragglers(slow={3: 2.0}, seed=seed),
    "random pauses": lambda seed: Stragglers(pause_prob=0.1, pause_s=0.03, seed=seed),
}


class App:
    """One app: its data, a fit per setting, and how its curve reads."""

    name: str
    higher_is_better = False

    def fit(self, consistency: str, staleness: Any, stragglers: Any, seed: int
            ) -> dict[str, Any]:
        raise NotImplementedError

    def curve(self, record: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        times, values = objective_curve(record)
        if values.size >= 5:  # per-clock losses of a few examples are noisy
            values = np.convolve(values, np.ones(5) / 5, mode="valid")
            times = times[4:]
        return times, values


class LDAApp(App):
    name = "LDA (NYT, K=100)"
    higher_is_better = True

    def __init__(self) -> None:
        self.corpus = load_dataset("nyt")
        LDA(n_topics=10, epochs=1, workers=2).fit(self.corpus)  # compile

    def fit(self, consistency, staleness, stragglers, seed):
        m = LDA(n_topics=100, epochs=12, workers=WORKERS, consistency=consistency,
                staleness=staleness, eval_every=2, seed=seed)
        m.fit(self.corpus, run=RunConfig(stragglers=stragglers))
        return m.run_record_

    def curve(self, record):
        """(t, the sum of every worker's latest log-likelihood share) once all reported."""
        latest: dict[int, float] = {}
        times, values = [], []
        for r in sorted((r for r in record["records"] if r.get("objective") is not None),
                        key=lambda r: r["time_s"]):
            latest[r["worker"]] = r["objective"]
            if len(latest) == record["workers"]:
                times.append(r["time_s"])
                values.append(sum(latest.values()))
        return np.array(times), np.array(values)


class MFApp(App):
    name = "MF (MovieLens 100K, rank 32)"

    def __init__(self) -> None:
        self.ratings = load_movielens_100k()
        MatrixFactorization(rank=8, epochs=1, workers=2).fit(self.ratings)  # compile

    def fit(self, consistency, staleness, stragglers, seed):
        m = MatrixFactorization(rank=32, epochs=20, mode="ssp", workers=WORKERS,
                                consistency=consistency, staleness=staleness, seed=seed)
        m.fit(self.ratings, run=RunConfig(stragglers=stragglers))
        return m.run_record_


class SVMApp(App):
    name = "linear SVM (clothing reviews)"

    def __init__(self) -> None:
        X, y = load_features("clothing-recommend")
        self.X, self.y = sp.csr_matrix(X, dtype=np.float64), y
        LinearClassifier(epochs=1).fit(self.X[:2000], self.y[:2000])  # compile

    def fit(self, consistency, staleness, stragglers, seed):
        m = LinearClassifier(loss="hinge", alpha=1e-4, epochs=6, strategy="ps",
                             workers=WORKERS, consistency=consistency,
                             staleness=staleness, seed=seed)
        m.fit(self.X, self.y, run=RunConfig(stragglers=stragglers))
        return m.run_record_


def label(consistency: str, staleness: Any) -> str:
    return consistency if staleness is None else f"{consistency} s={staleness}"


def time_to(times, values, target, higher) -> float:
    hit = np.flatnonzero(values >= target if higher else values <= target)
    return float(times[hit[0]]) if hit.size else float("inf")


def bench_app(app: App, repeats: int) -> dict[str, Any]:
    runs: dict[str, dict[str, list]] = {s: {label(*c): [] for c in SETTINGS}
                                        for s in SCENARIOS}
    for seed in range(repeats):
        for scenario, make in SCENARIOS.items():
            for consistency, staleness in SETTINGS:  # interleaved: load hits all alike
                record = app.fit(consistency, staleness, make(seed), seed)
                t, v = app.curve(record)
                auto = record.get("staleness_auto")
                runs[scenario][label(consistency, staleness)].append({
                    "t": t.tolist(), "v": v.tolist(), "wall_s": record["wall_time_s"],
                    "clocks": record["clocks"], "wait_s": record["wait_s"],
                    "schedule": auto["schedules"] if auto else None})
                print(app.name, scenario, label(consistency, staleness),
                      f"wall {record['wall_time_s']:.2f}s final {v[-1]:.4f}",
                      f"schedule {list(auto['schedules'].values())[0]}" if auto else "",
                      flush=True)
    bsp = runs["none"]["bsp"]
    start = statistics.median(r["v"][0] for r in bsp)
    final = statistics.median(r["v"][-1] for r in bsp)
    target = start + 0.95 * (final - start)
    table: dict[str, dict[str, Any]] = {}
    for scenario, configs in runs.items():
        row = {}
        for name, rs in configs.items():
            tt = statistics.median(time_to(np.array(r["t"]), np.array(r["v"]), target,
                                           app.higher_is_better) for r in rs)
            row[name] = {"time_to_target_s": tt,
                         "wall_s": statistics.median(r["wall_s"] for r in rs),
                         "wait_s": statistics.median(r["wait_s"] for r in rs)}
        fixed = {k: v["time_to_target_s"] for k, v in row.items() if k != "ssp s=auto"}
        best_name = min(fixed, key=fixed.get)
        auto_t = row["ssp s=auto"]["time_to_target_s"]
        table[scenario] = {"configs": row, "best_fixed": best_name,
                           "auto_vs_best": auto_t / fixed[best_name],
                           "auto_speedup_vs_bsp": fixed["bsp"] / auto_t,
                           "best_ssp_speedup_vs_bsp": fixed["bsp"] / min(
                               v for k, v in fixed.items() if k.startswith("ssp"))}
        print(app.name, scenario, {k: round(v["time_to_target_s"], 2) for k, v in row.items()},
              "auto/best", round(table[scenario]["auto_vs_best"], 2), flush=True)
    tradeoff = {}
    for name, rs in runs["none"].items():
        if name == "ssp s=auto":
            continue
        clocks_per_s = statistics.median(r["clocks"] / r["wall_s"] for r in rs)
        progress = statistics.median(abs(r["v"][-1] - r["v"][0]) / max(r["clocks"], 1)
                                     for r in rs)
        tradeoff[name] = {"clocks_per_s": clocks_per_s, "progress_per_clock": progress}
    return {"target": target, "table": table, "tradeoff": tradeoff, "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--apps", default="lda,mf,svm")
    args = parser.parse_args()
    makers = {"lda": LDAApp, "mf": MFApp, "svm": SVMApp}
    results = {}
    for key in args.apps.split(","):
        app = makers[key]()
        results[app.name] = bench_app(app, args.repeats)
        write_json("staleness_auto", {"workers": WORKERS, "repeats": args.repeats,
                                      "results": results})  # after each app: keep what ran
        plot(results)


def plot(results: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    apps = list(results)
    fig, axes = plt.subplots(2, len(apps), figsize=(5.5 * len(apps), 8), squeeze=False)
    for j, name in enumerate(apps):
        res = results[name]
        ax = axes[0, j]
        scenarios = list(res["table"])
        configs = list(res["table"][scenarios[0]]["configs"])
        width = 0.8 / len(configs)
        for k, config in enumerate(configs):
            ys = [res["table"][s]["configs"][config]["time_to_target_s"] for s in scenarios]
            ys = [y if np.isfinite(y) else 0 for y in ys]
            ax.bar(np.arange(len(scenarios)) + k * width, ys, width, label=config,
                   hatch="//" if config == "ssp s=auto" else None)
        ax.set_xticks(np.arange(len(scenarios)) + 0.4, scenarios, fontsize=8)
        ax.set_ylabel("time to target (s; 0 = never)")
        ax.set_title(name, fontsize=10)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3, axis="y")
        ax = axes[1, j]
        trade = res["tradeoff"]
        names = [n for n in trade if n.startswith("ssp") or n == "bsp"]
        s_values = [0 if n == "bsp" else int(n.split("=")[1]) for n in names]
        ax.plot(s_values, [trade[n]["clocks_per_s"] for n in names], "o-", color="C0")
        ax.set_xlabel("staleness s (0 = BSP)")
        ax.set_ylabel("clocks per second", color="C0")
        ax2 = ax.twinx()
        ax2.plot(s_values, [trade[n]["progress_per_clock"] for n in names], "s--", color="C3")
        ax2.set_ylabel("progress per clock", color="C3")
        ax.set_title("quantity vs quality (no stragglers)", fontsize=9)
        ax.grid(alpha=0.3)
    fig.suptitle(f"staleness='auto' vs fixed settings, {WORKERS} workers on 2 cores")
    fig.tight_layout()
    fig.savefig(figure_path("staleness_auto"), dpi=100)


if __name__ == "__main__":
    main()
