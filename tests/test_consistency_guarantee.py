"""Property-based tests of the core promise: the staleness bound holds in every read."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from guarantee_checker import Scenario, exact_sum_violations, run_scenario, violations
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import stalesync as ss
from stalesync.ps.consistency import ConsistencyModel

# 150 bounded + 60 async cases run by default; the mutation test below shows that this many
# cases catch an off-by-one in the read rule.
BOUNDED_CASES = 150
ASYNC_CASES = 60


BOUNDED = st.sampled_from(["bsp", "ssp", "essp"])


@st.composite
def scenarios(draw, consistency=BOUNDED):
    workers = draw(st.integers(1, 8))
    staleness = draw(st.integers(0, 5))
    return Scenario(
        workers=workers,
        # at least s + 3 clocks, so every case has reads the bound constrains
        iterations=draw(st.integers(staleness + 3, staleness + 6)),
        rows=draw(st.integers(1, 6)),
        consistency=draw(consistency),
        staleness=staleness,
        shards=draw(st.integers(1, 3)),
        seed=draw(st.integers(0, 2**16)),
        max_delay_ms=draw(st.sampled_from([0.0, 0.5, 2.0])),
        slow_worker=draw(st.none() | st.integers(0, workers - 1)),
        pause_prob=draw(st.sampled_from([0.0, 0.2])),
        storage=draw(st.sampled_from(["dense", "sparse"])),  # the shards' row store
        cache_rows=draw(st.sampled_from([None, None, 1, 2])),  # 1: evictions every clock
        sparse_io=draw(st.booleans()),
    )


SETTINGS = dict(derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@settings(max_examples=BOUNDED_CASES, **SETTINGS)
@given(scenarios())
def test_bounded_models_never_miss_a_guaranteed_increment(scenario):
    result, logs, plan = run_scenario(scenario)
    assert violations(scenario, logs, plan) == []
    assert exact_sum_violations(result, plan) == []
    assert result.record["observed_staleness"]["max"] <= scenario.staleness * (
        scenario.consistency != "bsp"
    )
    # both directions, read by read: never too stale, never waiting when fresh enough
    g = result.record["guarantee"]
    assert g["violations"] == 0 and g["over_blocked_reads"] == 0, g["first_problem"]


@settings(max_examples=ASYNC_CASES, **SETTINGS)
@given(scenarios(consistency=st.just("async")))
def test_async_never_blocks_and_loses_nothing(scenario):
    result, logs, plan = run_scenario(scenario)
    assert violations(scenario, logs, plan) == []  # read-my-writes and prefixes still hold
    assert exact_sum_violations(result, plan) == []
    assert result.record["reads_blocked"] == 0
    assert result.record["wait_s"] == 0.0


@pytest.mark.parametrize("mutant", ["one clock too lax", "blocks like bsp"])
def test_every_run_of_a_broken_read_rule_is_caught(monkeypatch, mutant):
    """Break the rule either way: every run must be caught, by the value checker or by the
    audit (which checks stamps read by read, so it does not depend on timing)."""
    broken = {"one clock too lax": lambda self, clock: clock - self.staleness - 1,
              "blocks like bsp": lambda self, clock: clock}[mutant]
    monkeypatch.setattr(ConsistencyModel, "required_stamp", broken)
    for seed in range(10):
        scenario = Scenario(workers=3, iterations=8, rows=3, consistency="ssp", staleness=1,
                            seed=seed, max_delay_ms=2.0, slow_worker=0,
                            extra_options={"audit": "record"})
        result, logs, plan = run_scenario(scenario)
        g = result.record["guarantee"]
        caught = violations(scenario, logs, plan) or g["violations"] or g["over_blocked_reads"]
        assert caught, f"seed {seed}: {mutant} was not caught"


def test_a_slow_worker_holds_back_the_fast_ones_under_bsp():
    """Wait time is real: under BSP the fast workers block on the straggler."""
    scenario = Scenario(
        workers=3,
        iterations=6,
        rows=2,
        consistency="bsp",
        staleness=0,
        max_delay_ms=3.0,
        slow_worker=2,
    )
    result, logs, plan = run_scenario(scenario)
    assert violations(scenario, logs, plan) == []
    fast_wait = sum(r["wait_s"] for r in result.record["records"] if r["worker"] != 2)
    assert fast_wait > 0.01


def _staleness_run(consistency: str) -> dict:
    """Four workers in lockstep (a barrier after every clock) read every row each clock.

    Everyone has finished clock c before anyone reads at c + 1, so the observed staleness is
    pure cache staleness and exactly predictable: SSP(3) keeps a fetched row until it is 3
    clocks old (staleness 0, 1, 2, 3, 0, 1, ...); ESSP gets every row pushed when a clock
    completes (staleness 0 after the first fetch)."""
    lockstep = threading.Barrier(4)

    def worker(ctx):
        for _ in range(32):
            ctx.read("t")
            ctx.inc("t", np.arange(40), np.ones((40, 4)))
            ctx.clock()
            lockstep.wait(timeout=30)

    result = ss.run(worker, [ss.TableSpec("t", 40, 4)], workers=4, consistency=consistency,
                    staleness=3, iterations=32, seed=3)
    assert np.all(result.tables["t"] == 4 * 32)
    return result.record["observed_staleness"]


def test_essp_lowers_observed_staleness_below_ssp():
    ssp = _staleness_run("ssp")
    essp = _staleness_run("essp")
    assert ssp["histogram"] == [4 * 40 * 8] * 4 and ssp["mean"] == 1.5
    assert essp["histogram"] == [4 * 40 * 32] and essp["mean"] == 0.0


@pytest.mark.parametrize("workers,shards", [(1, 1), (4, 3)])
def test_exact_sum_with_duplicate_rows_in_one_increment(workers, shards):
    def worker(ctx):
        for _ in range(5):
            rows = np.array([0, 3, 3, 7, 0, 0])
            ctx.inc("t", rows, np.ones((6, 2), dtype=np.int32))
            ctx.clock()

    result = ss.run(
        worker, [ss.TableSpec("t", 8, 2, "int32")], workers=workers, shards=shards, iterations=5
    )
    expected = np.zeros((8, 2), dtype=np.int32)
    expected[0], expected[3], expected[7] = 15 * workers, 10 * workers, 5 * workers
    np.testing.assert_array_equal(result.tables["t"], expected)
