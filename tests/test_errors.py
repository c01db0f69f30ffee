"""Every misuse gets a clear exception naming the table, row and problem."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import stalesync as ss

T = [ss.TableSpec("w", 5, 3, "int32"), ss.TableSpec("f", 4, 2, "float64")]


def run_one(fn, **options):
    return ss.run(fn, T, workers=1, iterations=1, **options)


def test_unknown_table_lists_the_declared_ones():
    with pytest.raises(ss.UnknownTableError, match=r"unknown table 'nope'.*\['f', 'w'\]"):
        run_one(lambda ctx: ctx.read("nope", [0]))


@pytest.mark.parametrize("row", [-1, 5, 99])
def test_row_out_of_range_names_table_and_row(row):
    with pytest.raises(ss.RowIndexError, match=rf"table 'w': row {row} is out of range \[0, 5\)"):
        run_one(lambda ctx: ctx.read("w", [0, row]))
    with pytest.raises(ss.RowIndexError, match=rf"row {row} is out of range"):
        run_one(lambda ctx: ctx.inc("w", [row], np.ones((1, 3), dtype=np.int32)))


def test_float_row_ids_are_rejected():
    with pytest.raises(ss.RowIndexError, match="row ids must be integers"):
        run_one(lambda ctx: ctx.read("w", [0.5]))


def test_wrong_dtype_increment():
    with pytest.raises(ss.IncrementError, match="cannot add float64 increments to a int32 table"):
        run_one(lambda ctx: ctx.inc("w", [0], np.ones((1, 3))))


def test_wrong_shape_increment():
    with pytest.raises(ss.IncrementError, match=r"shape \(2, 2\), expected \(2, 3\)"):
        run_one(lambda ctx: ctx.inc("w", [0, 1], np.ones((2, 2), dtype=np.int32)))


def test_nan_increment_is_an_error_by_default():
    bad = np.array([[0.0, 1.0], [np.nan, 2.0]])
    with pytest.raises(ss.IncrementError, match="table 'f': increment for row 3 contains NaN"):
        run_one(lambda ctx: ctx.inc("f", [1, 3], bad))


def test_nan_increment_warns_when_asked():
    bad = np.array([[np.inf, 1.0]])
    with pytest.warns(RuntimeWarning, match="row 2 contains NaN or inf"):
        run_one(lambda ctx: (ctx.inc("f", [2], bad), ctx.clock()), nan_policy="warn")


def test_inc_one_checks_the_column():
    with pytest.raises(ss.RowIndexError, match="column 3 is out of range"):
        run_one(lambda ctx: ctx.inc_one("w", 0, 3, 1))


def test_read_or_clock_after_the_job_ended():
    saved = []
    run_one(lambda ctx: saved.append(ctx))
    ctx = saved[0]
    with pytest.raises(ss.JobEndedError, match="job has ended"):
        ctx.read("w", [0])
    with pytest.raises(ss.JobEndedError):
        ctx.clock()
    with pytest.raises(ss.JobEndedError):
        ctx.inc("w", [0], np.ones((1, 3), dtype=np.int32))


class Boom(RuntimeError):
    pass


def test_a_failing_worker_stops_the_job_and_leaves_no_thread_behind():
    """Worker 2 fails at clock 3; the others are parked in BSP reads or computing."""

    def worker(ctx):
        for k in range(1000):
            if ctx.worker_id == 2 and k == 3:
                raise Boom("worker 2 failed")
            ctx.read("w", [0])
            time.sleep(0.001)
            ctx.clock()

    before = {t.name for t in threading.enumerate()}
    start = time.perf_counter()
    with pytest.raises(Boom, match="worker 2 failed"):
        ss.run(worker, T, workers=4, consistency="bsp", iterations=1000)
    assert time.perf_counter() - start < 5
    left = {t.name for t in threading.enumerate()} - before
    assert not any(name.startswith("stalesync-worker") for name in left)


@pytest.mark.parametrize(
    "options,match",
    [
        ({"consistency": "eventual"}, "unknown consistency model 'eventual'"),
        ({"consistency": "ssp", "staleness": -1}, "staleness must be a non-negative int"),
        ({"consistency": "bsp", "staleness": 2}, "bsp has staleness 0"),
        ({"workers": 0}, "workers must be a positive int"),
        ({"runtime": "mpi"}, "unknown runtime 'mpi'"),
        ({"nan_policy": "ignore"}, "nan_policy must be one of"),
        ({"bogus": 1}, r"unknown job option\(s\) \['bogus'\]"),
    ],
)
def test_bad_job_options(options, match):
    with pytest.raises(ss.ConfigError, match=match):
        ss.run(lambda ctx: None, T, **options)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"num_rows": 0}, "num_rows must be a positive int"),
        ({"row_width": -2}, "row_width must be a positive int"),
        ({"dtype": "float16"}, "dtype 'float16' is not supported"),
    ],
)
def test_bad_table_specs(kwargs, match):
    spec = {"name": "t", "num_rows": 3, "row_width": 2} | kwargs
    with pytest.raises(ss.ConfigError, match=match):
        ss.TableSpec(**spec)


def test_data_partitions_must_match_workers():
    with pytest.raises(ss.ConfigError, match="data has 3 partitions but the job has 2 workers"):
        ss.run(lambda ctx: None, T, workers=2, data=[1, 2, 3])


@pytest.mark.parametrize("consistency", ["bsp", "async"])
def test_a_failing_worker_is_named_with_its_clock(consistency):
    """The program's own exception, with a note saying which worker raised it and when."""
    def worker(ctx):
        while ctx.clock_count < 6:
            if ctx.worker_id == 1 and ctx.clock_count == 3:
                raise ValueError("bad step")
            ctx.inc("t", [0], np.ones((1, 1)))
            ctx.clock()

    with pytest.raises(ValueError, match="bad step") as caught:
        ss.run(worker, [ss.TableSpec("t", 1, 1)], workers=3, iterations=6,
               consistency=consistency)
    assert caught.value.__notes__ == ["stalesync: raised by worker 1 at clock 3"]
