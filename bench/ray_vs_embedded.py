"""The Ray runtime against the embedded one on this machine, side by side in one run.

1. **The README's LDA job** (``stalesync lda --data nyt --topics 100 --epochs 100 --workers 2
   --consistency ssp --staleness 2``), run as a user runs it: a fresh process per run,
   ``--runtime embedded`` and ``--runtime ray`` alternating. Per run: tokens/s at steady
   state (worker 0's clocks after the first fifth), tokens/s over the whole job (the
   record's ``wall_time_s``: Ray's start and stop included), when the first clock came (after
   the job started), and the command's wall time.
2. **Every ``bench/scaling.py`` problem at 2 workers** (``--only APP ...``): one fit on the
   embedded runtime, then two on Ray in one session started here. The session's start is
   timed once; the first Ray fit is *cold* (node hosts started, modules imported, kernels
   loaded from numba's cache), the second *warm* (the session's hosts reused). Ratios:
   ``cold / (embedded + start)`` and ``warm / embedded``.

Medians of ``--repeats``; writes ``bench/results/ray_vs_embedded.{json,png}``.

    python bench/ray_vs_embedded.py [--repeats 2] [--only lda kmeans] [--skip-readme]
    python bench/ray_vs_embedded.py --render   # the tables of docs/ray.md from the results
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import figure_path, write_json  # noqa: E402
from scaling import APPS, Problem  # noqa: E402

from stalesync.apps.base import RunConfig  # noqa: E402
from stalesync.apps.workers import OverheadWarning  # noqa: E402

README_JOB = ["lda", "--data", "nyt", "--topics", "100", "--epochs", "100", "--workers", "2",
              "--consistency", "ssp", "--staleness", "2", "--no-progress"]


def readme_run(runtime: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run.json"
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "stalesync.cli", *README_JOB, "--runtime", runtime,
                        "--metrics-out", str(out)], check=True, capture_output=True, cwd=tmp)
        command_s = time.perf_counter() - t0
        record = json.loads(out.read_text())
    clocks = [r["time_s"] for r in record["records"] if r["worker"] == 0]
    tokens = record["final"]["num_tokens"]
    per_clock = tokens / record["final"]["clocks_per_sweep"]
    skip = len(clocks) // 5
    steady = per_clock * (len(clocks) - 1 - skip) / (clocks[-1] - clocks[skip])
    return {"steady_tokens_per_s": steady,
            "whole_job_tokens_per_s": tokens * record["epochs"] / record["wall_time_s"],
            "job_s": record["wall_time_s"], "first_clock_s": clocks[0],
            "command_s": command_s, "loglik_per_token": record["final"]["loglik_per_token"]}


def readme_job(repeats: int) -> dict[str, Any]:
    runs: dict[str, list[dict[str, float]]] = {"embedded": [], "ray": []}
    for _ in range(repeats):
        for runtime in runs:
            runs[runtime].append(readme_run(runtime))
            print("readme", runtime, {k: round(v, 3) for k, v in runs[runtime][-1].items()},
                  flush=True)
    median = {rt: {k: statistics.median(r[k] for r in rs) for k in rs[0]}
              for rt, rs in runs.items()}
    emb, ray_ = median["embedded"], median["ray"]
    return {"command": "stalesync " + " ".join(README_JOB), "runs": runs, "median": median,
            "steady_ratio": ray_["steady_tokens_per_s"] / emb["steady_tokens_per_s"],
            "whole_job_ratio": ray_["whole_job_tokens_per_s"] / emb["whole_job_tokens_per_s"],
            "command_ratio": emb["command_s"] / ray_["command_s"]}


def timed(fit: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    model = fit()
    return time.perf_counter() - t0, model


def problem_row(p: Problem, start_s: float, repeats: int) -> dict[str, Any]:
    p.fit(2)  # warm the driver's kernels
    embedded = [timed(lambda: p.fit(2))[0] for _ in range(repeats)]
    ray = RunConfig(runtime="ray")
    cold, model = timed(lambda: p.fit(2, run=ray))
    warm = [timed(lambda: p.fit(2, run=ray))[0] for _ in range(repeats)]
    emb = statistics.median(embedded)
    row = {"app": p.app, "problem": p.name, "size": p.size, "embedded_s": emb,
           "ray_cold_s": cold, "ray_warm_s": statistics.median(warm),
           "cold_ratio": cold / (emb + start_s), "warm_ratio": statistics.median(warm) / emb,
           "ray_quality": float(p.quality(model)),
           "ray_runtime": model.run_record_.get("runtime")}
    print(f"{p.app:7s} {p.size:5s} {p.name:32s} embedded {emb:7.3f} s | ray cold "
          f"{cold:7.3f} s ({row['cold_ratio']:.2f}x of embedded + start) warm "
          f"{row['ray_warm_s']:7.3f} s ({row['warm_ratio']:.2f}x)", flush=True)
    return row


def problems(only: list[str], repeats: int) -> dict[str, Any]:
    from stalesync.runtime.ray_backend import _Session

    t0 = time.perf_counter()
    _Session.enter(None, os.cpu_count())  # the start every job of this process then shares
    start_s = time.perf_counter() - t0
    try:
        rows = [problem_row(p, start_s, repeats) for app in only for p in APPS[app]()]
    finally:
        _Session.leave()
    return {"ray_start_s": start_s, "rows": rows}


def merge_kept(payload: dict[str, Any], only: list[str]) -> None:
    """A subset re-measured (``--only``, ``--skip-readme``): keep the rest of the result
    file, marked with the session start it was measured against."""
    path = figure_path("ray_vs_embedded").with_suffix(".json")
    if not path.exists():
        return
    old = json.loads(path.read_text())
    payload.setdefault("readme_job", old.get("readme_job"))
    if set(only) != set(APPS):
        kept = [r for r in old["problems"]["rows"] if r["app"] not in only]
        rows = kept + payload["problems"]["rows"]
        payload["problems"]["rows"] = sorted(rows, key=lambda r: (list(APPS).index(r["app"]),
                                                                   r["size"] != "small"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--only", nargs="+", choices=sorted(APPS), default=list(APPS))
    parser.add_argument("--skip-readme", action="store_true")
    parser.add_argument("--render", action="store_true",
                        help="print the docs' tables from the result file and exit")
    args = parser.parse_args()
    if args.render:
        print(render(json.loads(figure_path("ray_vs_embedded").with_suffix(".json")
                                .read_text())))
        return
    warnings.simplefilter("ignore", OverheadWarning)
    payload: dict[str, Any] = {"repeats": args.repeats, "cores": os.cpu_count()}
    if not args.skip_readme:
        payload["readme_job"] = readme_job(args.repeats)
    payload["problems"] = problems(args.only, args.repeats)
    merge_kept(payload, args.only)
    path = write_json("ray_vs_embedded", payload)
    plot(payload)
    print(f"wrote {path} and {figure_path('ray_vs_embedded')}")


def render(payload: dict[str, Any]) -> str:
    """docs/ray.md's tables from a result file."""
    lines = []
    job = payload.get("readme_job")
    if job:
        emb, ray_ = job["median"]["embedded"], job["median"]["ray"]
        lines += ["| README LDA job | embedded | Ray | Ray / embedded |", "|---|---|---|---|"]
        for key, label in [("steady_tokens_per_s", "tokens/s at steady state"),
                           ("whole_job_tokens_per_s", "tokens/s over the whole job")]:
            lines.append(f"| {label} | {emb[key] / 1e6:.2f}M | {ray_[key] / 1e6:.2f}M | "
                         f"{ray_[key] / emb[key]:.2f}x |")
        lines.append(f"| first clock after the job starts | {emb['first_clock_s']:.2f} s | "
                     f"{ray_['first_clock_s']:.2f} s | |")
        lines.append(f"| the command's wall time | {emb['command_s']:.1f} s | "
                     f"{ray_['command_s']:.1f} s | {emb['command_s'] / ray_['command_s']:.2f}x |")
        lines.append("")
    probs = payload["problems"]
    lines += [f"Ray session start: {probs['ray_start_s']:.1f} s.", "",
              "| app | problem | embedded | Ray, first fit | Ray, warm | first / (embedded "
              "+ start) | warm / embedded |", "|---|---|---|---|---|---|---|"]
    for r in probs["rows"]:
        lines.append(f"| {r['app']} | {r['problem']} ({r['size']}) | {r['embedded_s']:.3g} s | "
                     f"{r['ray_cold_s']:.3g} s | {r['ray_warm_s']:.3g} s | "
                     f"{r['cold_ratio']:.2f}x | {r['warm_ratio']:.2f}x |")
    return "\n".join(lines)


def plot(payload: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = payload["problems"]["rows"]
    fig, ax = plt.subplots(figsize=(9, 4))
    names = [f"{r['app']}\n{r['size']}" for r in rows]
    x = range(len(rows))
    start = payload["problems"]["ray_start_s"]
    ax.bar([i - 0.27 for i in x], [r["embedded_s"] for r in rows], 0.27, label="embedded")
    ax.bar(x, [r["ray_warm_s"] for r in rows], 0.27, label="Ray, warm session")
    ax.bar([i + 0.27 for i in x], [r["ray_cold_s"] for r in rows], 0.27,
           label=f"Ray, first fit (+ {start:.1f} s session start not shown)")
    ax.set_xticks(list(x), names, fontsize=8)
    ax.set_ylabel("fit seconds, 2 workers")
    title = "Ray vs embedded on one 2-core node"
    if payload.get("readme_job"):
        job = payload["readme_job"]
        title += (f"; README LDA job: steady {job['steady_ratio']:.2f}x, whole job "
                  f"{job['whole_job_ratio']:.2f}x")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(figure_path("ray_vs_embedded"), dpi=120)


if __name__ == "__main__":
    main()
