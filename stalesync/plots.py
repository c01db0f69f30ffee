"""Figures of run records, written atomically in the format their extension names."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from .files import PathLike, output_mode
from .metrics import objective_curve

PLOT_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg")


def save_figure(fig: Any, path: PathLike, dpi: int = 100) -> None:
    """Save a matplotlib figure in the format of ``path``'s extension, atomically."""
    import matplotlib.pyplot as plt

    path = Path(path)
    fmt = path.suffix.lower().lstrip(".") or "png"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        os.chmod(tmp, output_mode(path))
        fig.savefig(tmp, dpi=dpi, format="jpeg" if fmt == "jpg" else fmt)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        plt.close(fig)


def plot_run(record: dict[str, Any], path: PathLike, title: str | None = None) -> None:
    """Objective vs time and the observed-staleness histogram of one run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    auto = record.get("staleness_auto")
    fig, axes = plt.subplots(1, 3 if auto else 2, figsize=(16 if auto else 11, 4))
    ax1, ax2 = axes[0], axes[1]
    times, values = objective_curve(record)
    if times.size:
        ax1.plot(times, values, marker=".")
    ax1.set_xlabel("wall time (s)")
    ax1.set_ylabel(record.get("objective_name", "objective"))
    ax1.set_title("objective vs time")
    ax1.grid(alpha=0.3)
    hist = record["observed_staleness"]["histogram"]
    ax2.bar(range(len(hist)), hist)
    ax2.set_xlabel("observed staleness (clocks)")
    ax2.set_ylabel("rows read")
    ax2.set_title(f"staleness, mean {record['observed_staleness']['mean']:.2f}")
    if auto:
        plot_bound_schedule(axes[2], auto, record.get("clocks") or 0)
    model = record["consistency"]
    if record.get("strategy", "ps") == "ps" and model in ("ssp", "essp"):
        model = f"{model} s={record['staleness']}"
    fig.suptitle(
        title
        or f"{record['app']} · {record.get('strategy', 'ps')} · {model} · "
        f"{record['runtime']} · {record['workers']} workers"
    )
    fig.tight_layout()
    save_figure(fig, path)


def plot_bound_schedule(ax: Any, auto: dict[str, Any], clocks: int) -> None:
    """staleness="auto": the bound in force at each clock, per table (a step plot)."""
    for table, schedule in auto["schedules"].items():
        starts = [int(c) for c, _ in schedule] + [max(clocks, int(schedule[-1][0]) + 1)]
        bounds = [int(b) for _, b in schedule]
        ax.step(starts, bounds + bounds[-1:], where="post", label=table)
    ax.axhline(auto["max_staleness"], color="grey", ls="--", lw=1, label="max_staleness")
    ax.set_xlabel("clock")
    ax.set_ylabel("staleness bound in force")
    ax.set_title("staleness='auto'")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
