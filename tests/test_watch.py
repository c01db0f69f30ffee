"""Watching and comparing runs: TensorBoard event files and ``stalesync compare``."""

from __future__ import annotations

import json

import numpy as np
import pytest

import stalesync as ss
from stalesync.cli import main as cli_main
from stalesync.errors import ConfigError, DataFormatError
from stalesync.observe.compare import load_records

pytest.importorskip("tensorboard")
from stalesync.observe.tensorboard import read_scalars  # noqa: E402

TABLES = [ss.TableSpec("w", 4, 1, "float64")]
CLOCKS = 12


def worker(ctx):
    while ctx.clock_count < ctx.iterations:
        ctx.read("w")
        ctx.inc("w", [ctx.worker_id], np.ones((1, 1)))
        ctx.clock(objective=float(ctx.worker_id + ctx.clock_count))


def test_tensorboard_files_read_back_with_every_scalar(tmp_path):
    logdir = tmp_path / "tb"
    ss.run(worker, TABLES, workers=2, iterations=CLOCKS, staleness="auto", tensorboard=str(logdir))
    scalars = read_scalars(logdir)
    expected = {"objective", "clocks_per_s", "staleness/mean", "staleness/max", "blocked_s",
                "bytes", "staleness/bound"}
    assert expected <= set(scalars), sorted(scalars)
    assert [step for step, _ in scalars["objective"]] == list(range(CLOCKS))
    # the mean of the two workers' objectives at each clock: (0 + c + 1 + c) / 2
    np.testing.assert_allclose([v for _, v in scalars["objective"]],
                               [c + 0.5 for c in range(CLOCKS)])
    assert all(v >= 0 for _, v in scalars["staleness/bound"])
    assert all(v > 0 for _, v in scalars["bytes"])


def write_record(path, app="lda", consistency="ssp"):
    record = {"app": app, "consistency": consistency, "staleness": 1, "strategy": "ps",
              "workers": 2, "runtime": "embedded", "wall_time_s": 1.0,
              "observed_staleness": {"max": 1, "mean": 0.5, "histogram": [1, 1],
                                     "rows_read": 2},
              "records": [{"worker": w, "iteration": c, "time_s": 0.1 * (c + 1),
                           "objective": 10.0 - c, "wait_s": 0.01}
                          for c in range(3) for w in range(2)]}
    path.write_text(json.dumps(record))
    return path


def test_compare_rejects_runs_of_different_apps(tmp_path):
    a, b = write_record(tmp_path / "a.json"), write_record(tmp_path / "b.json", app="mf")
    with pytest.raises(ConfigError, match="one app.*b.json is mf"):
        load_records([str(a), str(b)])
    assert cli_main(["compare", str(a), str(b)]) != 0


def test_compare_rejects_files_that_are_not_run_records(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"hello": 1}')
    with pytest.raises(DataFormatError, match="bad.json: not a stalesync run record"):
        load_records([str(bad)])
    with pytest.raises(DataFormatError, match="no such file"):
        load_records([str(tmp_path / "missing.json")])


def test_compare_plots_and_tabulates_runs_of_one_app(tmp_path):
    a = write_record(tmp_path / "a.json")
    b = write_record(tmp_path / "b.json", consistency="bsp")
    plot, table = tmp_path / "cmp.png", tmp_path / "cmp.json"
    assert cli_main(["compare", str(a), str(b), "--plot", str(plot),
                     "--metrics-out", str(table)]) == 0
    assert plot.stat().st_size > 1000
    rows = json.loads(table.read_text())
    rows = rows["runs"] if isinstance(rows, dict) else rows
    assert [r["final_objective"] for r in rows] == [8.0, 8.0]
    assert rows[0]["label"].startswith("ssp s=1") and rows[1]["label"].startswith("bsp")
