"""Fault injection on Ray: kill members of running jobs on a seeded schedule, check nothing
was lost.

A :class:`Killer` thread in the driver watches the running job (``ParameterServer.active``
or the scheduler's ``Driver.active``) and, at a seeded point, kills one of its actors:

- ``worker`` / ``shard`` / ``coordinator``: once the job has written a snapshot of a seeded
  clock (the scheduler: once it has run a seeded number of rounds);
- ``during_write``: while a snapshot directory is still a temporary one (its write under
  way); whether the kill landed inside the write is counted from the temporary directory it
  leaves behind;
- ``during_recovery``: a first kill, then a second one as soon as the restarted job's new
  actors exist (while they are being restored).

Every run must recover (or stop with ``RecoveryError`` after ``max_recoveries``) and end with
exact invariants: the probe's integer table equals the exact sum of every planned increment
(none lost, none doubled across restarts) and every logged read met the consistency bound;
LDA's word-topic table equals the counts of its final assignments; a one-worker app run with
kills ends bit for bit where the same run without one ends. The default suite runs a few;
``pytest -m soak -s tests/test_ray_soak.py`` runs SOAK_RUNS per job and prints the counts.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from guarantee_checker import Scenario, exact_sum_violations, violations  # noqa: E402
from lda_fixtures import planted_corpus  # noqa: E402
from test_ray_runtime import node_loss_run, run_probe  # noqa: E402
from test_soak import APPS, _nn_app  # noqa: E402

import stalesync as ss  # noqa: E402
from stalesync.apps.base import RunConfig  # noqa: E402
from stalesync.apps.lasso import Lasso  # noqa: E402
from stalesync.apps.lda import LDA  # noqa: E402
from stalesync.apps.mf import MatrixFactorization  # noqa: E402
from stalesync.errors import RecoveryError  # noqa: E402
from stalesync.runtime.ps import ParameterServer  # noqa: E402
from stalesync.scheduler.driver import Driver  # noqa: E402

pytestmark = pytest.mark.ray

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

SOAK_RUNS = int(os.environ.get("STALESYNC_SOAK_RUNS", "50"))  # per job
KINDS = ("worker", "shard", "coordinator", "during_write", "during_recovery")
POLL_S = 0.002
TRIGGER_TIMEOUT_S = 60.0


def _snapshots(root: Path) -> tuple[int, int]:
    """(clock of the newest complete snapshot or -1, temporary directories of writes under
    way) in ``root``; old snapshots are pruned, so the clock, not the count, tells progress."""
    if not root.is_dir():
        return -1, 0
    names = [p.name for p in root.iterdir()]
    done = [int(n[5:]) for n in names if n.startswith("snap-") and n[5:].isdigit()]
    return (max(done, default=-1),
            sum(n.startswith(".snap-") and n.endswith(".tmp") for n in names))


def _progress(root: Path) -> int:
    """How far the running job is: the scheduler's rounds, else the newest snapshot's
    clock (a parameter-server job's clocks are in its workers)."""
    drv = Driver.active
    if ParameterServer.active is None and drv is not None:
        return drv.stats.rounds
    return _snapshots(root)[0]


def _actors(role: str) -> list:
    ps, drv = ParameterServer.active, Driver.active
    if ps is not None and ps.groups is not None:
        if role == "shard":
            return ps.shard_actors()
        if role == "coordinator":
            group = ps.groups.coordinator
            return list(group.actors) if group is not None else []
        return ps.worker_actors()
    if drv is not None and drv.group is not None:
        return list(drv.group.actors)  # the scheduler's workers (every role maps here)
    return []


def _losses_seen() -> int:
    """Losses the running job has noticed (counted before it starts restoring)."""
    job = ParameterServer.active or Driver.active
    return len(job.recovery.failures_detected_at) if job is not None else 0


def _actor_ids(role: str) -> set[str]:
    return {a._actor_id.hex() for a in _actors(role)}


@dataclass(eq=False)
class Killer(threading.Thread):
    """Kills one member of the running job at a seeded point (see the module docstring)."""

    kind: str
    root: Path
    at_clock: int  # kill once a snapshot of this clock (the scheduler: this round) exists
    index_seed: int
    kills: int = 0
    during_write: int = 0  # kills that left a half-written snapshot behind
    missed: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        threading.Thread.__init__(self, daemon=True, name=f"killer-{self.kind}")
        self.stop = threading.Event()

    def _wait(self, condition) -> bool:
        deadline = time.monotonic() + TRIGGER_TIMEOUT_S
        while not self.stop.is_set() and time.monotonic() < deadline:
            if condition():
                return True
            time.sleep(POLL_S)
        return False

    def _kill(self, role: str, spare: set[str] = frozenset()) -> bool:
        actors = [a for a in _actors(role) if a._actor_id.hex() not in spare]
        if not actors:
            return False
        victim = actors[self.index_seed % len(actors)]
        try:
            ray.kill(victim, no_restart=True)
        except Exception:  # noqa: BLE001 - already gone: the job is restarting anyway
            return False
        self.kills += 1
        return True

    def run(self) -> None:
        role = {"during_write": "shard", "during_recovery": "worker"}.get(self.kind, self.kind)
        if self.kind == "during_write":
            fired = self._wait(lambda: _snapshots(self.root)[1] > 0
                               and _snapshots(self.root)[0] >= self.at_clock)
            if fired and self._kill(role):
                time.sleep(0.2)  # a killed writer's temporary directory stays
                self.during_write += int(_snapshots(self.root)[1] > 0)
            return self._note(fired, "no snapshot write seen")
        fired = self._wait(lambda: _progress(self.root) >= self.at_clock)
        first = _actor_ids(role)
        losses = _losses_seen()
        if not (fired and self._kill(role)):
            return self._note(False, f"no snapshot of clock {self.at_clock} appeared")
        if self.kind == "during_recovery":  # a new worker of the restart, while it restores
            fired = self._wait(lambda: _losses_seen() > losses
                               and bool(_actor_ids("worker") - first))
            self._note(fired and self._kill("worker", spare=first), "no recovery seen")

    def _note(self, ok: bool, why: str) -> None:
        if not ok and not self.stop.is_set():
            self.missed.append(why)


@pytest.fixture
def killer_for(tmp_path):
    started: list[Killer] = []

    def make(kind: str, seed: int, at_clock: int) -> Killer:
        root = tmp_path / f"snaps-{kind}-{seed}"
        k = Killer(kind, root, at_clock, seed)
        started.append(k)
        k.start()
        return k

    make.tmp = tmp_path
    yield make
    for k in started:
        k.stop.set()
        k.join(5)


# a soak must test what it says: most of its runs must have been killed as planned and then
# completed with their invariants checked (a run that gave up, or whose kill found nothing to
# kill, checks nothing); at most this share of the runs may be such non-tests
MAX_INEFFECTIVE_SHARE = 0.2


@dataclass
class Tally:
    runs: int = 0
    kills: int = 0
    recoveries: int = 0
    gave_up: int = 0
    kills_during_write: int = 0
    missed_kills: int = 0  # a kill that found nothing to kill in time (not a failure alone)
    effective: int = 0  # runs killed as planned that completed with their invariants checked
    invariant_failures: int = 0
    failures: list[str] = field(default_factory=list)

    def add(self, killer: Killer, recoveries: int, gave_up: bool, problems: list[str],
            label: str) -> None:
        self.runs += 1
        self.missed_kills += len(killer.missed)
        self.kills += killer.kills
        self.recoveries += recoveries
        self.gave_up += int(gave_up)
        self.kills_during_write += killer.during_write
        self.effective += int(killer.kills > 0 and not gave_up and recoveries > 0)
        if problems:
            self.invariant_failures += 1
            self.failures.append(f"{label}: {problems[:2]}")

    def counts(self) -> dict[str, int]:
        return {k: v for k, v in vars(self).items() if k != "failures"}

    def check(self, runs: int) -> None:
        """No invariant broken, every planned run made, and at most MAX_INEFFECTIVE_SHARE
        of them gave up or went unkilled, and as many kills missed (a single run: none
        unkilled; a second kill during a recovery may miss)."""
        assert self.invariant_failures == 0, self.failures[:3]
        assert self.runs == runs, self.counts()
        allowed = int(MAX_INEFFECTIVE_SHARE * runs)
        assert self.effective >= runs - allowed, (
            f"too few runs were killed and then checked: {self.counts()}")
        if runs > 1:
            assert self.missed_kills <= allowed, f"too many kills missed: {self.counts()}"


# -- the probe: integer increments on a multi-worker, multi-shard job ------------------------
PROBE_BALLAST = ss.TableSpec("ballast", 400_000, 8, "float64")  # 25 MB: writes take a while


def probe_run(kind: str, seed: int, killer_for, tally: Tally) -> None:
    rng = np.random.default_rng([seed, 31])
    consistency = ["bsp", "ssp", "essp", "async"][seed % 4]
    scenario = Scenario(workers=3, iterations=24, rows=6, consistency=consistency,
                        staleness=int(rng.integers(1, 3)), shards=2, seed=seed,
                        max_delay_ms=8.0)
    every = int(rng.integers(2, 5))
    killer = killer_for(kind, seed, every * int(rng.integers(1, 24 // every)))
    plan = scenario.plan()
    options = dict(snapshot_every=every, snapshot_dir=str(killer.root), max_recoveries=3)
    gave_up, problems, recoveries = False, [], 0
    try:
        result, logs, plan = run_probe(scenario, extra_tables=[PROBE_BALLAST]
                                       if kind == "during_write" else [], **options)
        recoveries = result.record["recoveries"]
        problems = exact_sum_violations(result, plan) + violations(scenario, logs, plan)
        if killer.kills and not recoveries:
            problems.append(f"{killer.kills} kill(s) and no recovery")
    except RecoveryError as exc:
        gave_up = "giving up" in str(exc)
        problems = [] if gave_up else [f"RecoveryError without giving up: {exc}"]
    killer.stop.set()
    killer.join(5)
    tally.add(killer, recoveries, gave_up, problems, f"probe {kind} seed {seed}")


def _probe_soak(kinds, seeds, killer_for) -> Tally:
    tally = Tally()
    for seed in seeds:
        for kind in kinds:
            probe_run(kind, seed, killer_for, tally)
    return tally


@pytest.mark.parametrize("kind", ["during_write", "during_recovery"])
def test_probe_survives_a_kill(ray_cluster, killer_for, kind):
    tally = _probe_soak([kind], [0], killer_for)
    tally.check(runs=1)
    assert tally.kills >= 1 and tally.recoveries >= 1


@pytest.mark.soak
def test_soak_probe(ray_cluster, killer_for):
    seeds = range(-(-SOAK_RUNS // len(KINDS)))
    tally = _probe_soak(KINDS, seeds, killer_for)
    print(f"\nray soak probe: {tally.counts()}")
    tally.check(runs=len(seeds) * len(KINDS))


# -- apps: one worker ends bit-identical to an unkilled run; LDA with two, by its counts -----
def _mf(mode):
    per_epoch = {"clocks_per_epoch": 3} if mode == "ssp" else {}
    return (lambda: MatrixFactorization(rank=4, epochs=4, workers=1, mode=mode, seed=3,
                                        **per_epoch),
            APPS["mf"][1], APPS["mf"][2])


def _lasso():
    def data():
        rng = np.random.default_rng(0)
        X = rng.normal(size=(80, 60))
        return X, X[:, :5] @ rng.normal(size=5) + 0.01 * rng.normal(size=80)

    return (lambda: Lasso(alpha=0.05, workers=1, max_iter=200, tol=1e-10, seed=3),
            data, lambda m: [m.coef_])


APP_JOBS = {
    "lda": APPS["lda"], "mf-ssp": _mf("ssp"), "mf-blocks": _mf("blocks"),
    "mf-fugue": _mf("fugue"), "linear": APPS["linear"], "kmeans": APPS["kmeans"],
    "nn": None, "lasso": None,
}


def _job(name):
    if name == "nn":
        return _nn_app()
    if name == "lasso":
        return _lasso()
    return APP_JOBS[name]


def app_run(name: str, seed: int, killer_for, tally: Tally, references: dict) -> None:
    make, data, arrays = _job(name)
    args = data()
    rng = np.random.default_rng([seed, 37])
    kind = ["worker", "shard", "during_recovery", "during_write"][seed % 4]
    if name in ("lasso", "mf-blocks", "mf-fugue") and kind in ("shard", "during_write"):
        kind = "worker"  # the scheduler has no shards; its snapshots come from the driver
    every = int(rng.integers(1, 3))
    if every not in references:  # the same run, unkilled (Lasso's checkpoints sync rounds)
        where = killer_for.tmp / f"reference-{name}-{every}"
        references[every] = arrays(make().fit(*args, run=RunConfig(
            snapshot_every=every, snapshot_dir=str(where))))
    reference = references[every]
    killer = killer_for(kind, seed, every * int(rng.integers(1, 3)))
    run = RunConfig(runtime="ray", snapshot_every=every, snapshot_dir=str(killer.root),
                    max_recoveries=3)
    gave_up, problems, recoveries = False, [], 0
    try:
        model = make().fit(*args, run=run)
        recoveries = model.run_record_.get("recoveries", 0)
        for got, want in zip(arrays(model), reference, strict=True):
            if not np.array_equal(got, want):
                problems.append(f"differs from the unkilled run by "
                                f"{np.abs(np.asarray(got, float) - want).max():.3g}")
    except RecoveryError as exc:
        gave_up = "giving up" in str(exc)
        problems = [] if gave_up else [f"RecoveryError: {exc}"]
    killer.stop.set()
    killer.join(5)
    if killer.kills and not (recoveries or gave_up):
        problems.append(f"{killer.kills} kill(s), no recovery recorded")
    tally.add(killer, recoveries, gave_up, problems, f"{name} {kind} seed {seed}")


def lda_two_workers_run(seed: int, killer_for, tally: Tally) -> None:
    corpus = planted_corpus(num_docs=160, seed=seed)[0]
    kind = ["worker", "shard", "during_recovery"][seed % 3]
    killer = killer_for(kind, seed, 2)
    model = LDA(n_topics=5, epochs=6, workers=2, docs_per_clock=0.25, seed=seed)
    run = RunConfig(runtime="ray", shards=2, snapshot_every=2, snapshot_dir=str(killer.root))
    model.fit(corpus, run=run)
    killer.stop.set()
    killer.join(5)
    V, K = model.word_topic_.shape
    counted = sum(p.word_topic(V, K) for p in model.partitions_)
    problems = [] if np.array_equal(counted, model.word_topic_) else [
        f"word-topic table differs from its assignments in "
        f"{int((counted != model.word_topic_).sum())} cells"]
    if not np.array_equal(model.topic_total_, counted.sum(0)):
        problems.append("topic totals differ from the assignments")
    tally.add(killer, model.run_record_.get("recoveries", 0), False, problems,
              f"lda-2w {kind} seed {seed}")


@pytest.mark.soak
@pytest.mark.parametrize("name,seed", [("lda", 1), ("lasso", 0)])
def test_app_with_a_kill_ends_as_without(ray_cluster, killer_for, name, seed):
    tally = Tally()
    app_run(name, seed, killer_for, tally, {})
    tally.check(runs=1)
    assert tally.kills >= 1


def test_scheduler_survives_a_kill_during_its_recovery(ray_cluster, killer_for):
    """A worker killed during a checkpoint, then its replacement killed while the driver
    rebuilds: both losses recovered, the model bit-identical to an unkilled run."""
    tally = Tally()
    app_run("mf-blocks", 2, killer_for, tally, {})  # seed 2: during_recovery
    tally.check(runs=1)
    assert tally.kills == 2 and tally.recoveries == 2


def test_scheduler_replays_its_log_after_a_loss_between_checkpoints(ray_cluster, killer_for):
    """No snapshots: block MF on 2 workers keeps no checkpoint in its 12 rounds, so a worker
    killed mid-way is rebuilt from its data and every logged round is replayed; the run ends
    bit for bit as the unkilled one (skipping any logged round changes the factors)."""
    data = APPS["mf"][1]()
    make = lambda: MatrixFactorization(rank=4, epochs=6, workers=2, mode="blocks",  # noqa: E731
                                       seed=3)
    reference = make().fit(*data, run=RunConfig(runtime="ray"))
    killer = killer_for("worker", 0, 5)  # at round 5 of 12
    killed = make().fit(*data, run=RunConfig(runtime="ray"))
    killer.stop.set()
    assert killer.kills == 1 and not killer.missed
    assert killed.run_record_["recoveries"] == 1
    np.testing.assert_array_equal(killed.P_, reference.P_)
    np.testing.assert_array_equal(killed.Q_, reference.Q_)


@pytest.mark.soak
def test_two_worker_lda_counts_equal_assignments_after_a_shard_kill(ray_cluster, killer_for):
    tally = Tally()
    lda_two_workers_run(1, killer_for, tally)
    tally.check(runs=1)
    assert tally.kills == 1 and tally.recoveries == 1


@pytest.mark.soak
@pytest.mark.parametrize("name", [*APP_JOBS, "lda-2w"])
def test_soak_app(ray_cluster, killer_for, name):
    tally, references = Tally(), {}
    for seed in range(SOAK_RUNS):
        if name == "lda-2w":
            lda_two_workers_run(seed, killer_for, tally)
        else:
            app_run(name, seed, killer_for, tally, references)
    print(f"\nray soak {name}: {tally.counts()}")
    tally.check(runs=SOAK_RUNS)


@pytest.mark.soak
def test_soak_node_loss(ray_cluster, tmp_path):
    """Whole nodes of a multi-node cluster (shards on one, workers on two more) removed at
    seeded clocks; the invariants are checked inside each run."""
    runs = max(SOAK_RUNS // 10, 1)
    recoveries = 0
    for seed in range(runs):
        at = int(np.random.default_rng([seed, 41]).integers(3, 25))
        recoveries += node_loss_run(ray_cluster, tmp_path / f"node-{seed}", seed + 9, at)[
            "recoveries"]
    print(f"\nray soak node loss: runs {runs}, nodes removed {runs}, recoveries {recoveries}")
