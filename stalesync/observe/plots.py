"""Figures of run records, written atomically in the format their extension names."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ..persist.files import PathLike, output_mode
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


QUALITY_KEYS = (("train_accuracy", "train"), ("test_accuracy", "test"))


def plot_run(record: dict[str, Any], path: PathLike, title: str | None = None) -> None:
    """The panels a run record has data for: objective vs time; the app's quality over
    time (MF's train and test RMSE per epoch) or at the end (a classifier's train and test
    accuracy); the observed-staleness histogram (jobs that read through tables); the
    bound schedule of ``staleness="auto"``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = run_panels(record)
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4))
    for ax, panel in zip(np.atleast_1d(axes), panels, strict=True):
        panel(ax)
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


def run_panels(record: dict[str, Any]) -> list[Callable[[Any], None]]:
    """One drawing function per panel, in order (see :func:`plot_run`)."""
    panels: list[Callable[[Any], None]] = [partial(_objective_panel, record)]
    history = [h for h in record.get("history") or [] if "train_rmse" in h]
    final = record.get("final") or {}
    if history:
        panels.append(partial(_rmse_panel, history))
    elif any(isinstance(final.get(key), int | float) for key, _ in QUALITY_KEYS):
        panels.append(partial(_accuracy_panel, final))
    staleness = record.get("observed_staleness") or {}
    if sum(staleness.get("histogram") or []) > 0:  # scheduled jobs read no tables
        panels.append(partial(_staleness_panel, staleness))
    auto = record.get("staleness_auto")
    if auto:
        panels.append(partial(plot_bound_schedule, auto=auto, clocks=record.get("clocks") or 0))
    return panels


def _objective_panel(record: dict[str, Any], ax: Any) -> None:
    times, values = objective_curve(record)
    if times.size:
        ax.plot(times, values, marker=".")
    ax.set_xlabel("wall time (s)")
    ax.set_ylabel(record.get("objective_name", "objective"))
    ax.set_title("objective vs time")
    ax.grid(alpha=0.3)


def _rmse_panel(history: list[dict[str, Any]], ax: Any) -> None:
    times = [h["time_s"] for h in history]
    ax.plot(times, [h["train_rmse"] for h in history], marker=".", label="train")
    if all("test_rmse" in h for h in history):
        ax.plot(times, [h["test_rmse"] for h in history], marker=".", label="test")
    ax.set_xlabel("wall time (s)")
    ax.set_ylabel("RMSE")
    ax.set_title("RMSE per epoch")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)


def _accuracy_panel(final: dict[str, Any], ax: Any) -> None:
    shown = [(label, float(final[key])) for key, label in QUALITY_KEYS
             if isinstance(final.get(key), int | float)]
    bars = ax.bar([label for label, _ in shown], [v for _, v in shown])
    ax.bar_label(bars, fmt="%.4f")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("accuracy")
    ax.set_title("accuracy at the end")


def _staleness_panel(staleness: dict[str, Any], ax: Any) -> None:
    from matplotlib.ticker import MaxNLocator

    hist = staleness["histogram"]
    ax.bar(range(len(hist)), hist)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("observed staleness (clocks)")
    ax.set_ylabel("rows read")
    ax.set_title(f"staleness, mean {staleness['mean']:.2f}")


def plot_bound_schedule(ax: Any, auto: dict[str, Any], clocks: int) -> None:
    """staleness="auto": the bound in force at each clock, per table (a step plot)."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
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
