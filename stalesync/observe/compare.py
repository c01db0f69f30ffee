"""``stalesync compare RUN.json ... --plot P``: several run records of one app in one figure.

The SSP paper's plots for any set of runs: objective vs wall time and vs clocks, the
observed-staleness histograms, and the time each worker spent blocked in reads; each run
labelled by its strategy, consistency model and staleness (or ``--labels``). Also prints a
table (wall time, final objective, mean staleness, blocked time) and, with ``--metrics-out``,
writes it as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataFormatError
from ..persist.files import check_output_path
from .metrics import objective_curve, write_run_record
from .plots import PLOT_SUFFIXES, save_figure


def load_records(paths: list[str]) -> list[dict[str, Any]]:
    records = []
    for path in paths:
        try:
            record = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataFormatError(f"{path}: no such file") from None
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise DataFormatError(f"{path}: not a JSON run record ({exc})") from None
        if not isinstance(record, dict) or not {"app", "records", "consistency"} <= set(record):
            raise DataFormatError(f"{path}: not a stalesync run record (no app/records)")
        records.append(record)
    apps = {r["app"] for r in records}
    if len(apps) > 1:
        listing = ", ".join(f"{p} is {r['app']}" for p, r in zip(paths, records, strict=True))
        raise ConfigError(f"compare runs of one app: {listing}")
    return records


def label(record: dict[str, Any]) -> str:
    model = record["consistency"]
    if model in ("ssp", "essp"):
        model = f"{model} s={record['staleness']}"
    if record.get("staleness_auto"):
        model = f"{record['consistency']} s=auto"
    strategy = record.get("strategy", "ps")
    head = model if strategy == "ps" else f"{strategy} ({model})"
    return f"{head}, {record['workers']} workers"


def summary(record: dict[str, Any]) -> dict[str, Any]:
    times, values = objective_curve(record)
    waits: dict[int, float] = {}
    for r in record["records"]:
        waits[r["worker"]] = waits.get(r["worker"], 0.0) + r.get("wait_s", 0.0)
    return {"label": label(record), "wall_time_s": record["wall_time_s"],
            "final_objective": float(values[-1]) if values.size else None,
            "mean_staleness": record["observed_staleness"]["mean"],
            "blocked_s_per_worker": [waits[w] for w in sorted(waits)]}


def plot(records: list[dict[str, Any]], labels: list[str], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(2, 2, figsize=(12, 8))
    name = records[0].get("objective_name", "objective")
    for record, text in zip(records, labels, strict=True):
        times, values = objective_curve(record)
        clocks = sorted({r["iteration"] for r in record["records"]
                         if r.get("objective") is not None})
        ax[0, 0].plot(times, values, marker=".", label=text)
        ax[0, 1].plot(np.asarray(clocks) + 1, values, marker=".", label=text)
        hist = np.asarray(record["observed_staleness"]["histogram"], dtype=np.float64)
        if hist.sum():
            ax[1, 0].plot(np.arange(hist.size), hist / hist.sum(), marker="o", label=text)
    ax[0, 0].set(xlabel="wall time (s)", ylabel=name, title="objective vs time")
    ax[0, 1].set(xlabel="clocks", ylabel=name, title="objective vs clocks")
    ax[1, 0].set(xlabel="observed staleness (clocks)", ylabel="share of rows read",
                 title="staleness of the rows read")
    width = 0.8 / len(records)
    for k, (record, text) in enumerate(zip(records, labels, strict=True)):
        waits = summary(record)["blocked_s_per_worker"]
        ax[1, 1].bar(np.arange(len(waits)) + k * width, waits, width, label=text)
    ax[1, 1].set(xlabel="worker", ylabel="time blocked in reads (s)",
                 title="blocked time per worker")
    for a in ax.ravel():
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
    fig.suptitle(f"{records[0]['app']}: {len(records)} runs")
    fig.tight_layout()
    save_figure(fig, path)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("compare", help="compare run records of one app in one figure",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="run records (--metrics-out JSON files)")
    p.add_argument("--plot", default=None, help=f"the figure ({', '.join(PLOT_SUFFIXES)})")
    p.add_argument("--labels", default=None, help="comma-separated labels, one per run")
    p.add_argument("--metrics-out", default=None, help="write the comparison table (JSON)")
    p.set_defaults(func=main, flag_of={"runs": "RUN"}, command="compare")


def main(args: argparse.Namespace) -> int:
    if args.plot:
        check_output_path(args.plot, "--plot", suffixes=PLOT_SUFFIXES)
    if args.metrics_out:
        check_output_path(args.metrics_out, "--metrics-out")
    records = load_records(args.runs)
    labels = [label(r) for r in records]
    if args.labels:
        labels = [s.strip() for s in args.labels.split(",")]
        if len(labels) != len(records):
            raise ConfigError(f"--labels: {len(labels)} labels for {len(records)} runs")
    rows = [dict(summary(r), label=text) for r, text in zip(records, labels, strict=True)]
    for row in rows:
        final = row["final_objective"]
        print(f"{row['label']:<40} {row['wall_time_s']:8.2f} s  objective "
              f"{final if final is None else f'{final:.6g}'}  staleness "
              f"{row['mean_staleness']:.2f}  blocked {sum(row['blocked_s_per_worker']):.2f} s")
    if args.plot:
        plot(records, labels, args.plot)
        print(f"figure: {args.plot}", file=sys.stderr)
    if args.metrics_out:
        write_run_record({"app": records[0]["app"], "runs": rows}, args.metrics_out)
    return 0
