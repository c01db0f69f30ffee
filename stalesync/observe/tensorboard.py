"""Streaming a run's scalars to TensorBoard event files while it trains.

Uses TensorBoard's own event writer (``pip install 'stalesync[tensorboard]'``; no
TensorFlow needed). A job calls :meth:`TensorBoardWriter.on_record` with every worker's clock
record (on the driver's thread); once every worker has reported clock ``c``, step ``c`` gets
the scalars below, so a run can be watched live with ``tensorboard --logdir DIR`` (fits
that run no parameter-server job write theirs when they end, :func:`write_record`):

``objective`` (summed or averaged over workers, as the app defines it), ``clocks_per_s``,
``staleness/mean`` and ``staleness/max`` (of the rows read in that clock), ``blocked_s``
(time the workers spent blocked in reads), ``bytes`` (sent by the workers), and
``staleness/bound`` (the bound in force, when the job reports it).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..errors import ConfigError


def _modules():
    try:
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.summary.writer.event_file_writer import EventFileWriter
    except ImportError:  # pragma: no cover - depends on the environment
        raise ConfigError("--tensorboard needs TensorBoard: pip install "
                          "'stalesync[tensorboard]'") from None
    return EventFileWriter, event_pb2, summary_pb2


class TensorBoardWriter:
    def __init__(self, logdir: str | Path, workers: int, reduce: str = "mean") -> None:
        writer_cls, self._event_pb2, self._summary_pb2 = _modules()
        Path(logdir).mkdir(parents=True, exist_ok=True)
        self._writer = writer_cls(str(logdir))
        self.workers = workers
        self.reduce = reduce
        self.bound: int | None = None
        self._pending: dict[int, list[dict[str, Any]]] = {}
        self._last: tuple[int, float] | None = None
        self.steps_written = 0

    def scalar(self, tag: str, value: float, step: int) -> None:
        summary = self._summary_pb2.Summary(
            value=[self._summary_pb2.Summary.Value(tag=tag, simple_value=float(value))])
        self._writer.add_event(self._event_pb2.Event(wall_time=time.time(), step=step,
                                                     summary=summary))

    def on_record(self, record: dict[str, Any]) -> None:
        clock = int(record["iteration"])
        shares = self._pending.setdefault(clock, [])
        shares.append(record)
        if len(shares) < self.workers:
            return
        del self._pending[clock]
        self._write_clock(clock, shares)

    def _write_clock(self, clock: int, shares: list[dict[str, Any]]) -> None:
        objectives = [r["objective"] for r in shares if r.get("objective") is not None]
        if objectives:
            value = sum(objectives) if self.reduce == "sum" else sum(objectives) / len(
                objectives)
            self.scalar("objective", value, clock)
        now = max(r["time_s"] for r in shares)
        if self._last is not None and now > self._last[1]:
            self.scalar("clocks_per_s", (clock - self._last[0]) / (now - self._last[1]), clock)
        self._last = (clock, now)
        rows = sum(r.get("rows_read", 0) for r in shares)
        if rows:
            mean = sum(r.get("staleness_mean", 0.0) * r.get("rows_read", 0) for r in shares)
            self.scalar("staleness/mean", mean / rows, clock)
            self.scalar("staleness/max", max(r.get("staleness_max", 0) for r in shares), clock)
        self.scalar("blocked_s", sum(r["wait_s"] for r in shares), clock)
        self.scalar("bytes", sum(r["bytes_sent"] for r in shares), clock)
        bounds = [r["bound"] for r in shares if r.get("bound") is not None]
        if bounds:
            self.scalar("staleness/bound", max(bounds), clock)
        self.steps_written += 1

    def close(self) -> None:
        self._writer.flush()
        self._writer.close()


def write_record(logdir: str | Path, record: dict[str, Any]) -> int:
    """A finished run's clock records as the same scalars, for the fits that run no
    parameter-server job (the scheduler's apps: a step per convergence check or epoch;
    allreduce: a step per epoch), which write them when the fit ends. Returns the steps
    written."""
    records = record.get("records") or []
    workers = len({r["worker"] for r in records}) or 1
    writer = TensorBoardWriter(logdir, workers, record.get("objective_reduce") or "mean")
    try:
        for r in sorted(records, key=lambda r: (r["iteration"], r["worker"])):
            writer.on_record({**r, "time_s": r.get("time_s") or 0.0})
    finally:
        writer.close()
    return writer.steps_written


def read_scalars(logdir: str | Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in the event files of ``logdir``: tag -> [(step, value), ...]."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
