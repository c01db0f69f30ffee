"""The one engine on both backends: the parameter server, the scheduler and block rotation
run the same code on threads and on Ray actors; an error stops everything, is re-raised in
the caller, and leaves nothing running or blocked; Ray workers that die are recovered."""

from __future__ import annotations

import sys
import threading

import numpy as np
import pytest

import stalesync as ss
from stalesync.apps.base import RunConfig
from stalesync.apps.lasso import Lasso
from stalesync.runtime.backends import make_backend
from stalesync.runtime.ps import ParameterServer
from stalesync.scheduler import BlockRotation, Cyclic, Driver

BACKENDS = ["embedded", pytest.param("ray", marks=pytest.mark.ray)]


@pytest.fixture(params=BACKENDS)
def runtime(request):
    if request.param == "ray":
        ray = pytest.importorskip("ray")
        request.getfixturevalue("ray_cluster")
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    return request.param


def idle(hosts, within_s: float = 20.0) -> bool:
    """Every node host is gone or holds no member and runs no call (a kill takes effect
    asynchronously: ask until it has)."""
    import time

    import ray

    deadline = time.monotonic() + within_s
    for host in hosts:
        while True:
            try:
                if ray.get(host.holding.remote(), timeout=5) == 0:
                    break
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                break
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
    return True


def assert_nothing_left(runtime: str, threads_before: int, actors) -> None:
    if runtime == "embedded":
        assert threading.active_count() == threads_before
    else:
        assert actors and idle(actors)


# -- the worker pool itself ----------------------------------------------------------------
class Member:
    def __init__(self, i: int) -> None:
        self.i = i
        self.event = threading.Event()

    def work(self, x: int) -> int:
        if x < 0:
            raise ValueError(f"member {self.i}: bad {x}")
        return self.i * 10 + x

    def wait_forever(self) -> None:
        while not self.event.wait(0.01):
            pass
        raise ss.JobAbortedError("stopped")

    def wake(self) -> None:
        self.event.set()


def test_pool_maps_calls_and_reraises_the_first_real_error(runtime):
    before = threading.active_count()
    with make_backend(runtime) as backend:
        group = backend.host("member", [lambda i=i: Member(i) for i in range(3)],
                             concurrency=4)
        assert group.map("work", [(1,), (2,), (3,)]) == [1, 12, 23]
        assert [h.call("work", 5).result() for h in group.handles] == [5, 15, 25]
        with pytest.raises(ValueError, match="member 1: bad -1"):
            group.map("work", [(1,), (-1,), (3,)])
        # a member blocked on the others is woken by on_error, and the real error wins
        calls = [("wait_forever",), ("wait_forever",)]

        def wake_all():
            for h in group.handles:
                h.cast("wake")

        with pytest.raises(ValueError, match="member 2: bad -7"):
            group.map(lambda m, what: m.work(-7) if m.i == 2 else getattr(m, what)(),
                      [c for c in calls] + [("work",)], on_error=wake_all)
        actors = getattr(group, "actors", [])
    assert_nothing_left(runtime, before, actors)


# -- the parameter server ------------------------------------------------------------------
def failing_worker(ctx):
    while ctx.clock_count < ctx.iterations:
        ctx.read("t", np.arange(4))
        if ctx.worker_id == 1 and ctx.clock_count == 3:
            raise RuntimeError("worker 1 failed at clock 3")
        ctx.inc("t", np.arange(4), np.ones((4, 1)))
        ctx.clock()


def test_parameter_server_stops_everything_on_a_worker_error(runtime):
    before = threading.active_count()
    seen = []

    def spy(worker, iteration, objective):
        if ParameterServer.active is not None and not seen:
            seen.append(ParameterServer.active.worker_actors()
                        + ParameterServer.active.shard_actors())

    with pytest.raises(RuntimeError, match="worker 1 failed at clock 3"):
        ss.run(failing_worker, [ss.TableSpec("t", 4, 1)], workers=3, consistency="bsp",
               iterations=50, shards=2, runtime=runtime, on_clock=spy)
    assert_nothing_left(runtime, before, seen[0] if seen else [])


# -- the scheduler ---------------------------------------------------------------------------
class SumApp:
    """Shards hold numbers; push adds them up per variable; pull keeps the totals."""

    def __init__(self, d: int, fail_on: int | None = None) -> None:
        self.model = np.zeros(d)
        self.program = SumProgram(fail_on)

    def pull(self, plan, partials):
        self.model[plan.variables] += np.sum(partials, axis=0)
        return np.ones(plan.size)


class SumProgram:
    def __init__(self, fail_on: int | None) -> None:
        self.fail_on = fail_on

    def push(self, shard, task):
        if shard["value"] == self.fail_on:
            raise RuntimeError(f"shard {shard['value']} failed")
        variables = np.asarray(task).ravel()
        shard["pushes"] += 1
        return np.full(variables.size, float(shard["value"]))

    def sync(self, shard, plan, changes):
        shard["synced"] += int(np.sum(changes))

    def state(self, shard):
        return {"pushes": np.array([shard["pushes"]]), "synced": np.array([shard["synced"]])}

    def load_state(self, shard, state):
        shard["pushes"], shard["synced"] = int(state["pushes"][0]), int(state["synced"][0])


def shards(k: int) -> list[dict]:
    return [{"value": i + 1, "pushes": 0, "synced": 0} for i in range(k)]


def test_scheduler_runs_rounds_on_either_backend(runtime):
    app = SumApp(4)
    with Driver(app, shards(4), workers=2, runtime=runtime) as drv:
        drv.set_schedule(Cyclic(4), 4)
        drv.run(8)
        counts = drv.map(lambda shard: (shard["pushes"], shard["synced"]))
    np.testing.assert_allclose(app.model, 8 * (1 + 2 + 3 + 4))  # every variable, 8 rounds
    assert counts == [(8, 32)] * 4  # 8 pushes, 8 rounds x 4 changes synced


def test_scheduler_stops_everything_on_a_worker_error(runtime):
    before = threading.active_count()
    drv = Driver(SumApp(4, fail_on=3), shards(4), workers=2, runtime=runtime)
    actors = getattr(drv.group, "actors", [])
    drv.set_schedule(Cyclic(4), 4)
    with pytest.raises(RuntimeError, match="shard 3 failed"):
        drv.step()
    drv._pending = None
    drv.close()
    assert_nothing_left(runtime, before, actors)


def test_block_rotation_stops_everything_on_a_worker_error(runtime):
    """Per-worker plans (block rotation) take the same path: one task per worker."""
    before = threading.active_count()
    drv = Driver(SumApp(9, fail_on=2), shards(3), workers=3, runtime=runtime)
    actors = getattr(drv.group, "actors", [])
    drv.set_schedule(BlockRotation(3, seed=0), 9)
    with pytest.raises(RuntimeError, match="shard 2 failed"):
        drv.step()
    drv._pending = None
    drv.close()
    assert_nothing_left(runtime, before, actors)


# -- Lasso and block-rotation MF on Ray, with a killed worker ------------------------------
def _diabetes():
    from sklearn.datasets import load_diabetes

    return load_diabetes(return_X_y=True)


def _sklearn_objective(X, y, alpha):
    from sklearn.linear_model import Lasso as SkLasso

    ref = SkLasso(alpha=alpha, tol=1e-12, max_iter=100_000).fit(X, y)
    resid = y - X @ ref.coef_ - ref.intercept_
    return 0.5 * resid @ resid / len(y) + alpha * np.abs(ref.coef_).sum()


@pytest.mark.ray
def test_lasso_on_ray_reaches_sklearns_objective(ray_cluster):
    X, y = _diabetes()
    model = Lasso(alpha=0.1, tol=1e-10, workers=2).fit(X, y, run=RunConfig(runtime="ray"))
    assert model.objective_ == pytest.approx(_sklearn_objective(X, y, 0.1), rel=1e-6)
    record = model.run_record_
    assert record["runtime"] == "ray" and record["final"]["rounds_per_s"] > 0


def _kill_a_worker_after(checks: int):
    """An on_check hook that kills one scheduler worker actor at the given check."""
    import ray

    state = {"n": 0, "killed": False}

    def hook(entry):
        state["n"] += 1
        if state["n"] == checks and not state["killed"]:
            state["killed"] = True
            ray.kill(Driver.active.group.actors[1], no_restart=True)

    return hook, state


@pytest.mark.ray
def test_lasso_on_ray_recovers_a_killed_worker_exactly(ray_cluster):
    X, y = _diabetes()
    opts = dict(alpha=0.05, tol=1e-10, workers=2)
    reference = Lasso(**opts).fit(X, y, run=RunConfig(runtime="ray"))
    hook, state = _kill_a_worker_after(3)
    killed = Lasso(**opts).fit(X, y, run=RunConfig(runtime="ray"), on_check=hook)
    assert state["killed"] and killed.run_record_["recoveries"] == 1
    # the lost worker is rebuilt and replayed: the run goes on as if nothing happened
    assert killed.objective_ == pytest.approx(reference.objective_, rel=1e-12)
    np.testing.assert_allclose(killed.coef_, reference.coef_, rtol=1e-9, atol=1e-12)


@pytest.mark.ray
def test_block_mf_on_ray_recovers_a_killed_worker(ray_cluster):
    import ray

    from stalesync.apps.mf import MatrixFactorization
    from stalesync.data.ratings import Ratings

    rng = np.random.default_rng(0)
    U, V = rng.normal(0, 0.7, (200, 3)), rng.normal(0, 0.7, (150, 3))
    u, i = np.nonzero(rng.random((200, 150)) < 0.3)
    r = 3 + (U[u] * V[i]).sum(1) + rng.normal(0, 0.1, u.size)
    ratings = Ratings(u.astype(np.int32), i.astype(np.int32), r.astype(np.float32),
                      np.arange(200), np.arange(150))
    train, test = ratings.split(0.2, seed=0)
    opts = dict(rank=3, epochs=12, lr=0.03, mode="blocks", workers=2, seed=0)
    reference = MatrixFactorization(**opts).fit(train, eval_set=test,
                                                run=RunConfig(runtime="ray"))
    killed_at = {}

    def kill_on_epoch(row):
        if row["epoch"] == 4 and not killed_at:
            killed_at["epoch"] = 4
            ray.kill(Driver.active.group.actors[0], no_restart=True)

    from stalesync.apps.mf import sgd

    original = sgd.Monitor.epoch_done

    def epoch_done(self, epoch, P, Q, train_rmse):
        original(self, epoch, P, Q, train_rmse)
        kill_on_epoch(self.history[-1])

    sgd.Monitor.epoch_done = epoch_done
    try:
        model = MatrixFactorization(**opts).fit(train, eval_set=test,
                                                run=RunConfig(runtime="ray"))
    finally:
        sgd.Monitor.epoch_done = original
    assert killed_at and model.run_record_["recoveries"] == 1
    assert model.rmse(test) == pytest.approx(reference.rmse(test), rel=1e-4)


def test_a_link_takes_clock_answers_in_send_order():
    """A later clock's answer seen done before an earlier one's must not be overwritten by
    the older answer (staleness="auto" learns its bound schedule from the latest)."""
    from stalesync.runtime.links import ShardLink

    class Answer:
        def __init__(self, value):
            self.value, self.ready = value, False

        def done(self):
            return self.ready

        def result(self, timeout=None):
            return self.value

    answers = []

    class Handle:
        def call(self, method, *args):
            answers.append(Answer(f"schedule after clock {len(answers)}"))
            return answers[-1]

    link = ShardLink(Handle())
    link.MAX_IN_FLIGHT = 8  # never wait here: only what is done is taken
    link.clock(0, {})
    link.clock(0, {})
    answers[1].ready = True  # the newer one looks done first
    link.clock(0, {})
    assert link.last_answer is None  # nothing taken past the unfinished first answer
    for a in answers:
        a.ready = True
    link.sync()
    assert link.last_answer == "schedule after clock 2"


def test_a_lane_signal_counts_posts_like_a_lock_and_wakes_a_blocked_waiter():
    """The embedded lanes' hand-off polls before it blocks; the lock still decides: each
    post lets exactly one wait through, an unposted wait times out, and a waiter that
    stopped polling and blocked is woken by a late post."""
    from stalesync.runtime.threads import Signal

    signal = Signal()
    for _ in range(3):
        signal.post()
        assert signal.wait(timeout=1.0)
        assert not signal.wait(timeout=0.02)
    late = threading.Timer(0.2, signal.post)  # long after the poll gave up
    late.start()
    assert signal.wait(timeout=10.0)
    late.join()
    assert not signal.wait(timeout=0.01)
