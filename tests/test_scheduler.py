"""Tests of the STRADS-style schedules and the scheduler driver."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.stats import chisquare

from stalesync.errors import ConfigError
from stalesync.faults import Stragglers
from stalesync.scheduler import (
    ColumnCorrelation,
    Cyclic,
    DependencyAware,
    Driver,
    Feedback,
    Plan,
    Priority,
    Schedule,
    Shotgun,
    balanced_chunks,
    make_schedule,
)


def bind(schedule, d, seed=0, workers=1):
    schedule.bind(d, workers, np.random.default_rng(seed))
    return schedule


def correlated_columns(n=120, groups=8, size=6, rho=0.8, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, groups))
    x = np.sqrt(1 - rho) * rng.standard_normal((n, groups * size))
    x += np.sqrt(rho) * np.repeat(z, size, axis=1)
    return x


# ----------------------------------------------------------------------- simple schedules


def test_cyclic_visits_every_variable_in_order():
    s = bind(Cyclic(3), 7)
    seen = np.concatenate([s.next_round().variables for _ in range(7)])
    assert seen.tolist() == [i % 7 for i in range(21)]


def test_shotgun_draws_distinct_variables_reproducibly():
    a = bind(Shotgun(5), 40, seed=3)
    b = bind(Shotgun(5), 40, seed=3)
    for _ in range(50):
        pa, pb = a.next_round(), b.next_round()
        assert pa.variables.tolist() == pb.variables.tolist()
        assert len(set(pa.variables.tolist())) == 5
        assert pa.variables.min() >= 0 and pa.variables.max() < 40


def test_parallel_must_be_positive():
    with pytest.raises(ConfigError, match="positive"):
        Cyclic(0)
    with pytest.raises(ConfigError, match="unknown schedule"):
        make_schedule("nope")


# ------------------------------------------------------------------------------ priority


def test_priority_frequencies_follow_change_squared_plus_eta():
    d, eta, rounds = 12, 0.05, 20_000
    s = bind(Priority(1, eta=eta), d, seed=7)
    changes = np.linspace(0.0, 1.0, d)
    s.set_weights(np.arange(d), changes)
    counts = np.bincount(
        np.concatenate([s.next_round().variables for _ in range(rounds)]), minlength=d
    )
    expected = (changes**2 + eta) / (changes**2 + eta).sum() * rounds
    assert chisquare(counts, expected).pvalue > 1e-3
    # the test can fail: the same draws are far from uniform
    assert chisquare(counts, np.full(d, rounds / d)).pvalue < 1e-6


def test_priority_observe_updates_weights():
    s = bind(Priority(2, eta=1e-3), 6)
    plan = Plan(0, np.array([1, 4]))
    s.observe(plan, Feedback(np.array([0.5, -2.0])))
    w = s.weights
    assert w[1] == pytest.approx(0.25 + 1e-3)
    assert w[4] == pytest.approx(4.0 + 1e-3)
    assert w[0] == pytest.approx(1e-3)
    np.testing.assert_allclose(s.probabilities().sum(), 1.0)


def test_priority_relative_eta_follows_the_changes():
    s = bind(Priority(1, eta=1.0, eta_relative=1e-2), 4)
    s.hint(np.arange(4), np.array([0.0, 0.1, 0.2, 0.0]))
    assert s.eta == pytest.approx(1e-2 * 0.04)
    np.testing.assert_allclose(s.weights, [4e-4, 0.01 + 4e-4, 0.04 + 4e-4, 4e-4])


def test_priority_rejects_nonpositive_eta():
    with pytest.raises(ConfigError, match="eta"):
        Priority(1, eta=0.0)


# ---------------------------------------------------------------------------- dependency


@pytest.mark.parametrize("sparse", [False, True])
def test_column_correlation_matches_numpy(sparse):
    x = correlated_columns()
    x[x < 0.3] = 0.0  # make it genuinely sparse but keep correlations
    X = sp.csc_matrix(x) if sparse else x
    cc = ColumnCorrelation(X, center=True)
    cols = np.array([0, 1, 7, 13, 20, 47])
    want = np.abs(np.corrcoef(x[:, cols], rowvar=False))
    np.fill_diagonal(want, 0.0)
    np.testing.assert_allclose(cc.matrix(cols), want, atol=1e-10)


@pytest.mark.parametrize("base", ["random", "priority"])
@pytest.mark.parametrize("sparse", [False, True])
def test_dependency_never_schedules_correlated_variables_together(base, sparse):
    x = correlated_columns(seed=1)
    X = sp.csc_matrix(x) if sparse else x
    threshold = 0.4
    corr = np.abs(np.corrcoef(x, rowvar=False))
    np.fill_diagonal(corr, 0.0)
    assert corr.max() > 0.7  # groups really are correlated: a blind schedule would mix them
    schedule = make_schedule(f"{base}-dependency" if base == "priority" else "dependency", 6,
                             columns=ColumnCorrelation(X), threshold=threshold)
    bind(schedule, x.shape[1], seed=2)
    sizes = []
    for r in range(400):
        plan = schedule.next_round()
        v = plan.variables
        assert len(set(v.tolist())) == v.size
        assert corr[np.ix_(v, v)].max(initial=0.0) <= threshold, f"round {r}: {v}"
        sizes.append(v.size)
        schedule.observe(plan, Feedback(np.ones(v.size)))
    assert np.mean(sizes) > 4  # it still runs several variables per round


def test_blind_shotgun_does_mix_correlated_variables():
    """The invariant above is not vacuous: without the check, conflicts happen."""
    x = correlated_columns(seed=1)
    corr = np.abs(np.corrcoef(x, rowvar=False))
    np.fill_diagonal(corr, 0.0)
    s = bind(Shotgun(6), x.shape[1], seed=2)
    conflicts = sum(corr[np.ix_(v, v)].max() > 0.4
                    for v in (s.next_round().variables for _ in range(200)))
    assert conflicts > 50


def test_dependency_checks_the_column_count():
    cc = ColumnCorrelation(np.ones((5, 3)) + np.eye(5, 3))
    with pytest.raises(ConfigError, match="columns"):
        bind(DependencyAware(Shotgun(2), cc), 4)


# -------------------------------------------------------------------------------- driver


class CountingApp:
    """Shards hold integers; push sums them per variable; pull adds the sum to the model;
    sync records which rounds each shard has seen (to check ordering)."""

    def __init__(self, d):
        self.model = np.zeros(d)
        self.lock = threading.Lock()

    def push(self, shard, task):
        variables = task if isinstance(task, np.ndarray) else np.asarray(task)
        return np.full(variables.size, shard["value"], dtype=np.float64)

    def pull(self, plan, partials):
        total = np.sum(partials, axis=0)
        self.model[plan.variables] += total
        return total

    def sync(self, shard, plan, changes):
        shard["synced"].append(plan.round)


def make_shards(k):
    return [{"value": i + 1, "synced": []} for i in range(k)]


@pytest.mark.parametrize("workers", [1, 3])
def test_driver_runs_push_pull_sync_in_order(workers):
    shards = make_shards(6)
    app = CountingApp(5)
    with Driver(app, shards, workers=workers) as drv:
        drv.set_schedule(Cyclic(5), 5)
        drv.run(10)
        drv.flush()
    np.testing.assert_allclose(app.model, 10 * sum(range(1, 7)))
    for shard in shards:  # every shard saw every round exactly once, in order
        assert shard["synced"] == list(range(10))
    assert drv.stats.rounds == 10 and drv.stats.updates == 50
    assert drv.stats.shards_done.sum() == 6 * 11  # 10 rounds + the flush


def test_driver_balances_work_away_from_a_slow_worker():
    # a shard takes ~2 ms; worker 1 is 10x slower, so self-scheduling gives it fewer shards
    class SlowApp(CountingApp):
        def push(self, shard, task):
            import time

            time.sleep(0.002)
            return super().push(shard, task)

    app = SlowApp(4)
    with Driver(app, make_shards(12), workers=2, pipeline=False,
                stragglers=Stragglers(slow={1: 10.0})) as drv:
        drv.set_schedule(Cyclic(4), 4)
        drv.run(5)
        done = drv.stats.shards_done.copy()
    assert done.sum() == 60
    assert done[0] > 3 * done[1]


class PerWorker(Schedule):
    """A per-worker plan: worker w gets variable (round + w) % d (block-rotation style)."""

    def next_round(self):
        tasks = tuple(np.array([(self.round + w) % self.num_variables])
                      for w in range(self.num_workers))
        return self._plan(np.concatenate(tasks), tasks=tasks)


class PerWorkerApp(CountingApp):
    def pull(self, plan, partials):
        for task, partial in zip(plan.tasks, partials, strict=True):
            self.model[task] += partial
        return None


def test_driver_per_worker_tasks_go_to_their_worker():
    app = PerWorkerApp(3)
    shards = make_shards(3)
    with Driver(app, shards, workers=3) as drv:
        drv.set_schedule(PerWorker(), 3)
        drv.run(3)
        done = drv.stats.shards_done.copy()
    # in 3 rounds each variable was updated by each shard once: 1 + 2 + 3
    np.testing.assert_allclose(app.model, 6.0)
    assert done.tolist() == [3, 3, 3]


def test_driver_reraises_worker_errors_and_stops_threads():
    class Broken(CountingApp):
        def push(self, shard, task):
            if shard["value"] == 2:
                raise RuntimeError("boom in push")
            return super().push(shard, task)

    before = threading.active_count()
    drv = Driver(Broken(2), make_shards(4), workers=2)
    drv.set_schedule(Cyclic(2), 2)
    with pytest.raises(RuntimeError, match="boom"):
        drv.step()
    drv._pending = None
    drv.close()
    assert threading.active_count() == before


def test_balanced_chunks_split_by_weight():
    weights = np.array([10, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1], dtype=float)
    chunks = balanced_chunks(weights, 2)
    assert [c.tolist() for c in chunks] == [[0], list(range(1, 11))]
    assert np.concatenate(balanced_chunks(np.ones(10), 3)).tolist() == list(range(10))


class Recording(Cyclic):
    """Logs the order in which the driver calls the schedule."""

    def __init__(self, log):
        super().__init__(1)
        self.log = log

    def next_round(self):
        plan = super().next_round()
        self.log.append(("next", plan.round))
        return plan

    def observe(self, plan, feedback):
        self.log.append(("observe", plan.round))


@pytest.mark.parametrize("pipeline", [True, False])
def test_pipelined_driver_plans_the_next_round_before_observing_this_one(pipeline):
    log = []
    with Driver(CountingApp(3), make_shards(2), workers=2, pipeline=pipeline) as drv:
        drv.set_schedule(Recording(log), 3)
        drv.run(3)
    if pipeline:  # round t+1 is planned while round t computes, so feedback is one late
        assert log == [("next", 0), ("next", 1), ("observe", 0), ("next", 2), ("observe", 1),
                       ("next", 3), ("observe", 2)]
    else:
        assert log == [("next", 0), ("observe", 0), ("next", 1), ("observe", 1),
                       ("next", 2), ("observe", 2)]


def test_per_worker_plan_needs_one_shard_per_worker():
    with Driver(PerWorkerApp(3), make_shards(4), workers=3) as drv:
        drv.set_schedule(PerWorker(), 3)
        with pytest.raises(ConfigError, match="one task and one shard per worker"):
            drv.step()
