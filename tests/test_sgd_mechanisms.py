"""The core mechanisms under the SGD strategies, checked exactly: server-side update rules,
the "first N of N+b" clock policy with late gradients dropped, and Downpour's cadence."""

from __future__ import annotations

import numpy as np
import pytest

import stalesync as ss
from stalesync.errors import ConfigError
from stalesync.ps.tables import DenseRowStore, TableSpec
from stalesync.ps.update_rules import SGD, Adagrad, Adam, make_rule


def test_server_adagrad_equals_a_numpy_reference():
    rng = np.random.default_rng(0)
    spec = TableSpec("w", 6, 3, "float64", update={"rule": "adagrad", "lr": 0.3})
    store = DenseRowStore(spec, 6)
    start = rng.normal(size=(6, 3))
    store.load_dense(start)
    w, accum = start.copy(), np.zeros((6, 3))
    for _ in range(20):
        rows = np.sort(rng.choice(6, size=3, replace=False))
        g = rng.normal(size=(3, 3))
        store.apply(rows, g)
        accum[rows] += g * g
        w[rows] -= 0.3 * g / (np.sqrt(accum[rows]) + 1e-8)
    np.testing.assert_allclose(store.to_dense(), w, rtol=1e-12)
    np.testing.assert_allclose(store.rule_state()["accum"], accum, rtol=1e-12)


def test_server_sgd_schedule_and_adam_match_their_formulas():
    store = DenseRowStore(TableSpec("w", 2, 1, update=SGD(lr=0.5, decay=1.0)), 2)
    for _ in range(3):
        store.apply(np.array([0]), np.array([[1.0]]))
    assert store.to_dense()[0, 0] == pytest.approx(-(0.5 + 0.25 + 0.5 / 3))
    adam = DenseRowStore(TableSpec("w", 1, 1, update=Adam(lr=0.1)), 1)
    m = v = 0.0
    w = 0.0
    for t, g in enumerate([1.0, -0.5, 2.0], start=1):
        adam.apply(np.array([0]), np.array([[g]]))
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
        w -= 0.1 * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
    assert adam.to_dense()[0, 0] == pytest.approx(w, rel=1e-12)


def test_update_rules_are_checked():
    with pytest.raises(ConfigError, match="unknown update rule 'rmsprop'"):
        make_rule("rmsprop")
    with pytest.raises(ConfigError, match="lr must be > 0"):
        make_rule({"rule": "sgd", "lr": 0})
    with pytest.raises(ConfigError, match="needs a float table"):
        TableSpec("t", 2, 2, "int64", update="adagrad")
    assert isinstance(make_rule("adagrad"), Adagrad)


def test_a_gradient_tables_cache_shows_server_values_only():
    """An increment to an SGD table is a gradient: the worker must not see it as a value."""
    def worker(ctx):
        before = ctx.read("w", [0]).copy()
        ctx.inc("w", [0], np.array([[2.0]]))
        after_inc = ctx.read("w", [0]).copy()
        ctx.clock()
        return before, after_inc, ctx.read("w", [0]).copy()

    result = ss.run(worker, [TableSpec("w", 1, 1, update=SGD(lr=0.25))], workers=1,
                    consistency="bsp", iterations=1,
                    initial_tables={"w": np.array([[1.0]])})
    before, after_inc, after_clock = result.worker_results[0]
    assert before[0, 0] == 1.0 and after_inc[0, 0] == 1.0  # not 3.0
    assert after_clock[0, 0] == pytest.approx(0.5)  # 1 - 0.25 * 2, applied by the shard
    assert result.tables["w"][0, 0] == pytest.approx(0.5)


# -- first N of N + b ------------------------------------------------------------------------
def backup_worker(held: int, pause_s: float):
    """Each step: read the parameter, send gradient = value + worker + 1, remember what was
    read at which step. Worker ``held`` sleeps before every send: always late."""
    import time

    def worker(ctx):
        seen = []
        while ctx.clock_count < ctx.iterations:
            value = float(ctx.read("w", [0])[0, 0])
            step = ctx.clock_count
            if step >= ctx.iterations:
                break
            if ctx.worker_id == held:
                time.sleep(pause_s)
            ctx.inc("w", [0], np.array([[value + ctx.worker_id + 1.0]]))
            seen.append((step, value))
            ctx.clock()
        return seen

    return worker


def test_backup_workers_apply_the_first_n_gradients_and_drop_the_late_ones_exactly():
    steps, workers, backup, held = 40, 3, 1, 2
    result = ss.run(backup_worker(held, 0.02), [TableSpec("w", 1, 1, update=SGD(lr=0.5))],
                    workers=workers, consistency="bsp", backup_workers=backup,
                    iterations=steps, initial_tables={"w": np.array([[10.0]])})
    stats = result.record["backup"]["shards"][0]
    n = workers - backup
    assert stats["steps"] == steps
    assert all(len(used) == n for used in stats["used"])  # exactly N gradients per step
    assert all(held not in used for used in stats["used"])  # the held worker: never in time
    assert stats["used_gradients"][held] == 0
    assert stats["dropped"][held] == len(result.worker_results[held]) > 0  # all dropped
    assert result.record["backup"]["dropped_gradients"] == sum(stats["dropped"])
    # every applied step is the mean of gradients computed on that step's parameters:
    # replay w_{c+1} = w_c - lr * mean(w_c + u + 1 for u in used[c])
    w = 10.0
    reads = {(u, step): v for u, seen in enumerate(result.worker_results) for step, v in seen}
    for c, used in enumerate(stats["used"]):
        for u in used:
            assert reads[(u, c)] == pytest.approx(w, abs=1e-12)  # it read step c's value
        w -= 0.5 * np.mean([w + u + 1.0 for u in used])
    assert result.tables["w"][0, 0] == pytest.approx(w, rel=1e-12, abs=1e-12)


def test_backup_worker_options_are_checked():
    spec = [TableSpec("w", 1, 1, update="sgd")]
    with pytest.raises(ConfigError, match="need consistency='bsp'"):
        ss.run(backup_worker(0, 0), spec, workers=3, backup_workers=1, iterations=2)
    with pytest.raises(ConfigError, match="fewer than workers"):
        ss.run(backup_worker(0, 0), spec, workers=2, backup_workers=2, consistency="bsp",
               iterations=2)
    with pytest.raises(ConfigError, match="one server shard"):
        ss.run(backup_worker(0, 0), spec, workers=3, backup_workers=1, consistency="bsp",
               shards=2, iterations=2)


# -- Downpour's cadence --------------------------------------------------------------------------
@pytest.mark.parametrize("n_fetch,n_push", [(1, 1), (3, 2), (4, 5)])
def test_downpour_cadence_is_counted_exactly(n_fetch, n_push):
    steps = 23

    def worker(ctx):
        while ctx.clock_count < ctx.iterations:
            ctx.read("w", np.arange(4))
            ctx.inc("w", np.arange(4), np.ones((4, 2)))
            ctx.clock()

    result = ss.run(worker, [TableSpec("w", 4, 2, update=SGD(lr=0.01))], workers=2,
                    consistency="async", iterations=steps, fetch_every=n_fetch,
                    push_every=n_push)
    assert result.record["fetches"] == [-(-steps // n_fetch)] * 2
    assert result.record["pushes"] == [-(-steps // n_push)] * 2
    # nothing lost: 2 workers x 23 unit gradients per row, each applied once at lr 0.01
    np.testing.assert_allclose(result.tables["w"], -0.01 * 2 * steps)


def test_cadence_needs_async():
    with pytest.raises(ConfigError, match="needs consistency='async'"):
        ss.run(lambda ctx: None, [TableSpec("w", 1, 1)], consistency="ssp", fetch_every=2,
               iterations=1)
