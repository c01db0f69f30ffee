"""staleness="auto": the controller's decisions, and the guarantee for the bound in force."""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest

import stalesync as ss
from stalesync.apps.base import RunConfig, check_consistency
from stalesync.errors import ConfigError
from stalesync.ps.auto_staleness import StalenessController, bound_at

TABLES = [ss.TableSpec("w", 8, 1, "float64")]


def window(controller: StalenessController, blocked_share: float) -> int | None:
    """Feed one window of identical records with this blocked share; one decision."""
    for _ in range(controller.window * controller.workers):
        controller.on_record({"wait_s": blocked_share, "duration_s": 1.0})
    return controller.decide()


def test_controller_raises_keeps_a_raise_that_helped_and_never_exceeds_the_ceiling():
    c = StalenessController(workers=2, bound=1, max_staleness=3)
    assert window(c, 0.5) == 2  # heavily blocked: try one more
    assert window(c, 0.3) == 3  # it helped (0.5 -> 0.3): kept, and still blocked: again
    assert window(c, 0.2) is None  # helped again, but 3 is the ceiling
    assert c.bound == 3
    assert window(c, 0.2) is None
    assert [b for _, b in c.timeline] == [1, 2, 3]


def test_controller_doubles_on_trial_and_reverts_to_the_bound_before():
    c = StalenessController(workers=3, bound=0, max_staleness=8, cooldown=2)
    assert [window(c, share) for share in (0.6, 0.4, 0.25, 0.2)] == [1, 2, 4, 8]
    c = StalenessController(workers=3, bound=2, max_staleness=8, cooldown=2)
    assert window(c, 0.4) == 4
    assert window(c, 0.3) == 8  # 0.4 -> 0.3 helped: kept, and doubled again
    assert window(c, 0.31) == 4  # 8 bought nothing: back to the bound before it
    assert window(c, 0.31) is None  # cooling down (the revert's window was the first)
    assert window(c, 0.31) == 8


def test_controller_reverts_a_raise_that_bought_nothing_and_cools_down():
    c = StalenessController(workers=4, bound=1, max_staleness=8, cooldown=3)
    assert window(c, 0.4) == 2
    assert window(c, 0.41) == 1  # a persistent straggler: staleness does not help
    for _ in range(2):  # the cooldown: no new trial although still blocked
        assert window(c, 0.4) is None
    assert window(c, 0.4) == 2  # cooldown over: try again


def test_controller_lowers_when_nobody_waits_and_stays_in_between():
    c = StalenessController(workers=1, bound=2, max_staleness=8)
    assert window(c, 0.05) is None  # between lower_at and raise_at
    assert window(c, 0.0) == 1
    assert window(c, 0.0) == 0
    assert window(c, 0.0) is None  # never below 0


def test_controller_decides_once_per_call_however_many_records_arrived():
    c = StalenessController(workers=1, bound=0, max_staleness=8)
    for _ in range(10 * c.window):  # ten windows' worth arrive in one driver poll
        c.on_record({"wait_s": 0.9, "duration_s": 1.0})
    assert c.decide() == 1
    assert c.decide() is None  # the burst was one decision


def test_bound_at_follows_the_schedule():
    schedule = [(0, 1), (5, 3), (9, 0)]
    assert [bound_at(schedule, c) for c in (0, 4, 5, 8, 9, 100)] == [1, 1, 3, 3, 0, 0]


def jittery_worker(ctx):
    """Every worker pauses now and then (seeded): a bound > 0 lets the others run on."""
    rng = np.random.default_rng(ctx.worker_id)
    while ctx.clock_count < ctx.iterations:
        ctx.read("w")
        ctx.inc("w", [ctx.worker_id], np.ones((1, 1)))
        time.sleep(0.02 if rng.random() < 0.15 else 0.001)
        ctx.clock(objective=0.0)


@pytest.mark.parametrize("shards", [1, 2])
def test_auto_changes_only_at_clock_boundaries_within_the_ceiling(shards):
    top = 3
    result = ss.run(jittery_worker, TABLES, workers=4, iterations=120, consistency="ssp",
                    staleness="auto", max_staleness=top, shards=shards, audit="error")
    record = result.record
    auto = record["staleness_auto"]
    schedule = [tuple(x) for x in auto["schedules"]["w"]]
    starts = [c for c, _ in schedule]
    assert starts[0] == 0 and starts == sorted(set(starts))  # one bound per clock
    assert all(0 <= b <= top for _, b in schedule)
    assert all(0 <= b <= top for _, b in auto["timeline"])
    # the controller acted: the pauses block the others at the starting bound (1) for far
    # more than raise_at, so it raised within the run (measured: by clock 23-56)
    assert schedule[0][1] == 1 and max(b for _, b in schedule) >= 2, schedule
    # every clock ran under the bound the schedule gives for it, so the workers' records
    # show the move too
    for r in record["records"]:
        assert r["bound"] == bound_at(schedule, r["iteration"]), r
    assert {r["bound"] for r in record["records"]} >= {1, 2}
    # and no read broke it (audit="error" would have raised; the counters agree)
    assert record["guarantee"]["violations"] == 0
    assert record["guarantee"]["reads_checked"] == 4 * 120
    assert record["staleness"] == "auto"
    assert record["observed_staleness"]["max"] <= top


def test_auto_settles_small_without_stragglers():
    """Identical, cheap workers in one process: little time is blocked once each can be
    a clock ahead, so the bound never climbs far and ends small (raises that do not cut
    the blocked time are reverted)."""
    def worker(ctx):
        while ctx.clock_count < ctx.iterations:
            ctx.read("w")
            ctx.inc("w", [ctx.worker_id], np.ones((1, 1)))
            time.sleep(0.002)
            ctx.clock(objective=0.0)

    result = ss.run(worker, TABLES, workers=2, iterations=300, consistency="ssp",
                    staleness="auto", audit="error")
    schedule = result.record["staleness_auto"]["schedules"]["w"]
    assert schedule[-1][1] <= 2, schedule
    assert max(b for _, b in schedule) <= 4, schedule


def test_auto_options_are_checked():
    with pytest.raises(ConfigError, match="max_staleness"):
        ss.run(jittery_worker, TABLES, workers=2, iterations=2, staleness=2, max_staleness=4)
    with pytest.raises(ConfigError, match="max_staleness"):
        ss.run(jittery_worker, TABLES, workers=2, iterations=2, staleness="auto",
               max_staleness=-1)
    with pytest.raises(ConfigError, match="'auto'"):
        check_consistency("ssp", "often")
    assert check_consistency("ssp", "auto").auto
    with pytest.raises(ConfigError, match="max_staleness"):
        RunConfig(max_staleness=-2)


def test_estimator_with_auto_staleness_records_the_schedule():
    import scipy.sparse as sp

    from stalesync.apps.linear import LinearClassifier

    rng = np.random.default_rng(0)
    X = sp.random(800, 50, density=0.1, random_state=0, format="csr")
    y = (X @ rng.normal(size=50) > 0).astype(int)
    model = LinearClassifier(strategy="ps", workers=2, staleness="auto", epochs=3, seed=0)
    model.fit(X, y, run=RunConfig(max_staleness=2))
    auto = model.run_record_["staleness_auto"]
    assert auto["max_staleness"] == 2
    assert all(b <= 2 for _, b in auto["schedules"]["params"])


def test_a_shard_serves_a_read_the_stamp_it_states_whatever_its_own_schedule():
    """The worker's bound is exact for its clock (it learnt the schedule in shard 0's answer
    to its last clock); a shard that re-derived the requirement from a schedule of its own
    made reads wait for stamps the bound did not ask (an over-blocked read on Ray, where a
    schedule change reached the shards after the workers)."""
    import threading

    from stalesync.ps.consistency import ConsistencyModel
    from stalesync.runtime.members import ShardHost

    models = {"w": ConsistencyModel.parse("ssp", "auto", max_staleness=4)}  # starts at 1
    host = ShardHost(0, 1, {"w": ss.TableSpec("w", 4, 1)}, models, num_workers=2)
    for step in range(4):
        host.clock(0, {}, False, step, step)
    for step in range(2):
        host.clock(1, {}, False, step, step)
    assert host.shard.min_clock == 2
    host.set_bound("w", 0)  # from clock 5 on; worker 0 is in clock 4 under bound 1 or more
    answers = []
    reader = threading.Thread(target=lambda: answers.append(
        host.read(0, "w", np.arange(4), 2, 4)), daemon=True)
    reader.start()
    reader.join(10)
    host.abort()
    assert answers, "the read waited although the shard was at the stamp it asked for"
    _, stamp, waited, arrival = answers[0]
    assert (stamp, waited, arrival) == (2, 0.0, 2)


@pytest.mark.ray
def test_auto_on_ray_keeps_the_guarantee_and_records_the_schedule(ray_cluster):
    """The same protocol across processes: bounds decided on the driver, fixed by shard 0,
    learnt by the workers from their clock answers; every read audited against them."""
    import ray

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    result = ss.run(jittery_worker, TABLES, workers=3, iterations=60, consistency="ssp",
                    staleness="auto", max_staleness=4, shards=2, audit="error",
                    runtime="ray", address=ray_cluster.address)
    record = result.record
    schedule = [tuple(x) for x in record["staleness_auto"]["schedules"]["w"]]
    assert record["runtime"] == "ray" and schedule[0][0] == 0
    assert all(0 <= b <= 4 for _, b in schedule)
    assert max(b for _, b in schedule) >= 2, schedule  # the jitter made it raise from 1
    # a worker waits for shard 0's answer to each clock before the next, and shard 0 dates
    # a change after the highest clock any worker has reached: the bound every worker
    # recorded for a clock is the one the final schedule gives that clock
    for r in record["records"]:
        assert r["bound"] == bound_at(schedule, r["iteration"]), (r, schedule)
    assert record["guarantee"]["over_blocked_reads"] == 0
    assert record["guarantee"]["violations"] == 0
    assert result.tables["w"][:3, 0].tolist() == [60.0, 60.0, 60.0]
