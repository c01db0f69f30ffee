"""workers="auto": the worker count comes from measured costs, and says why."""

from __future__ import annotations

import numpy as np
import pytest

from stalesync.apps.workers import (
    AUTO,
    Costs,
    OverheadWarning,
    Work,
    available_cores,
    check_workers,
    decide,
)
from stalesync.errors import ConfigError

needs_two_cores = pytest.mark.skipif(available_cores() < 2, reason="needs 2 cores")


class FixedCosts(Costs):
    """Costs with known figures: 50 us a clock alone, 150 us each with two workers."""

    def clock_s(self, workers: int) -> float:
        return 50e-6 if workers == 1 else 150e-6

    def start_s(self, workers: int) -> float:
        return 1e-3 * workers


@needs_two_cores
def test_decision_follows_the_predicted_times():
    costs = FixedCosts()
    # 1 ms of compute over 100 clocks: a second worker adds 15 ms of clock cost
    small = decide(AUTO, Work(1e-3, 100), costs)
    assert small.workers == 1
    assert small.predicted_s["1"] == pytest.approx(1e-3 + 100 * 50e-6 + 1e-3)
    # 10 s of compute over the same clocks: two workers nearly halve it
    large = decide(AUTO, Work(10.0, 100), costs)
    assert large.workers == 2
    assert large.predicted_s["2"] < 0.9 * large.predicted_s["1"]
    assert "2 workers" in large.reason
    # shared-out clocks are counted per worker
    split = Work(10.0, 1000, split_clocks=True)
    assert split.predict(2, costs) == pytest.approx(10.0 / (2 * 0.85) + 500 * 150e-6 + 2e-3)
    # never more workers than the work can use
    assert decide(AUTO, Work(10.0, 100, max_workers=1), costs).workers == 1


@needs_two_cores
def test_explicit_workers_are_obeyed_and_a_loss_is_said_once():
    with pytest.warns(OverheadWarning, match="coordination is predicted to cost"):
        decision = decide(2, Work(1e-4, 1000), FixedCosts())
    assert decision.workers == 2 and decision.reason == "as requested"


def test_the_probe_runs_only_when_there_is_something_to_decide():
    """``work`` as a function is measured only for ``auto`` or more than one worker: a fit
    asking for one has nothing to decide and no warning to give, and its record says the
    compute was not measured."""
    calls = []

    def probe() -> Work:
        calls.append(1)
        return Work(10.0, 100)

    one = decide(1, probe, FixedCosts())
    assert (one.workers, one.reason, one.compute_s, calls) == (1, "as requested", None, [])
    assert decide(AUTO, probe, FixedCosts()).compute_s == 10.0 and calls == [1]
    assert decide(2, probe, FixedCosts()).compute_s == 10.0 and calls == [1, 1]


@pytest.mark.parametrize("name", ["linear", "kmeans", "lasso"])
def test_a_fit_on_one_worker_never_times_a_probe(name, monkeypatch):
    """The apps hand ``decide`` their probe unevaluated: with ``workers=1`` it never runs."""
    import stalesync.apps.kmeans.model as kmeans_model
    import stalesync.apps.lasso.estimator as lasso_estimator
    import stalesync.apps.linear.model as linear_model
    from stalesync.apps.kmeans import KMeans
    from stalesync.apps.lasso import Lasso
    from stalesync.apps.linear import LinearClassifier

    def no_probe(*args, **kwargs):
        raise AssertionError("a probe ran for an explicit single worker")

    monkeypatch.setattr(linear_model, "timed", no_probe)
    monkeypatch.setattr(kmeans_model, "timed", no_probe)
    monkeypatch.setattr(lasso_estimator, "check_time", no_probe)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 5))
    y = (X[:, 0] > 0).astype(int)
    make = {"linear": lambda: LinearClassifier(workers=1, epochs=1).fit(X, y),
            "kmeans": lambda: KMeans(3, workers=1, epochs=2).fit(X),
            "lasso": lambda: Lasso(alpha=0.1, workers=1).fit(X, y.astype(float))}
    record = make[name]().run_record_
    assert record["workers_decision"]["compute_s"] is None


def test_measured_costs_are_positive_and_kept():
    first = Costs.get(1)
    assert first[0] > 0 and first[1] >= 0
    assert Costs.get(1) == first  # measured once per process


@pytest.mark.parametrize("bad", [0, -1, 1.5, "two", True])
def test_a_bad_worker_count_is_refused(bad):
    with pytest.raises(ConfigError, match="workers must be a positive integer or 'auto'"):
        check_workers(bad)


@needs_two_cores
def test_mf_auto_picks_one_worker_on_a_tiny_problem_and_two_on_a_large_one():
    from stalesync.apps.mf import MatrixFactorization

    rng = np.random.default_rng(0)

    def ratings(n: int) -> np.ndarray:
        return np.c_[rng.integers(0, 20_000, n), rng.integers(0, 5_000, n),
                     rng.integers(1, 6, n)].astype(np.float64)

    tiny = MatrixFactorization(epochs=2).fit(ratings(200))
    large = MatrixFactorization(epochs=5, rank=32).fit(ratings(1_000_000))
    for model, workers in ((tiny, 1), (large, 2)):
        decision = model.run_record_["workers_decision"]
        assert model.run_record_["workers"] == workers == decision["workers"]
        assert decision["requested"] == "auto"
        # the choice is the one the measured figures predict to be faster
        predicted = decision["predicted_s"]
        assert (predicted["2"] < 0.9 * predicted["1"]) == (workers == 2)


def test_the_command_says_how_many_workers_ran_and_why(tmp_path, capsys):
    from stalesync.cli import main

    data = tmp_path / "ratings.csv"
    rng = np.random.default_rng(1)
    rows = np.c_[rng.integers(0, 50, 300), rng.integers(0, 40, 300), rng.integers(1, 6, 300)]
    data.write_text("\n".join(f"{u},{i},{r}" for u, i, r in rows))
    assert main(["mf", "--data", str(data), "--epochs", "2", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "workers: 1 (auto: " in out


def test_a_second_worker_never_halves_the_clocks_of_one_clock_per_epoch(monkeypatch):
    """k-means on a small set runs one clock per epoch on every worker (a clock carries at
    least CLOCK_WORK): splitting the points does not split those clocks, and a cost
    measured cheaper for 2 workers than for 1 is noise, not taken at its word."""
    from stalesync.apps import workers as w

    work = w.Work(0.001, clocks=20, split_clocks=True, min_clocks=20)
    assert work.clocks_per_worker(2) == 20
    assert w.Work(0.001, clocks=20, split_clocks=True).clocks_per_worker(2) == 10
    monkeypatch.setattr(w.Costs, "_measured", {1: (1e-4, 2e-3), 2: (5e-5, 1e-3)})
    costs = w.Costs()
    assert costs.clock_s(2) == 1e-4 and costs.start_s(2) == 2e-3
    assert w.decide(w.AUTO, work, costs).workers == 1


@needs_two_cores
@pytest.mark.parametrize("one,two,expected", [
    (1e-5, 0.6e-5, 1),  # a check of microseconds: the hand-offs cost more than it saves
    (0.05, 0.027, 2),  # a long check that halves on two threads
    (0.05, 0.048, 1),  # a long check that does not (the threads share the memory bandwidth)
])
def test_lasso_auto_runs_a_second_worker_when_the_measured_check_halves(monkeypatch, one, two,
                                                                        expected):
    """Lasso's second worker splits the check's pass (``X^T v``); the fit times that pass
    on one thread and as two halves on two threads, and runs the count the figures say."""
    from stalesync.apps.lasso import Lasso, estimator

    monkeypatch.setattr(estimator, "check_time", lambda X, threads=1: one if threads == 1 else two)
    monkeypatch.setattr(estimator, "Costs", FixedCosts)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 30))
    y = X[:, :3] @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.normal(size=60)
    model = Lasso(alpha=0.05).fit(X, y)
    decision = model.run_record_["workers_decision"]
    assert model.run_record_["workers"] == decision["workers"] == expected
    overhead = 2 * 150e-6
    assert decision["predicted_s"]["2"] == pytest.approx(
        (one / 2 if overhead >= one else two) + overhead)
    assert model.converged_
