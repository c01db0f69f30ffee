"""Federated averaging (``strategy="fedavg"``): exact weighting, dropouts, late clients,
server momentum, fixed-point and secure aggregation, on the linear models and the NN."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_classification

from stalesync.apps.linear import LinearClassifier
from stalesync.apps.linear.problem import LinearProblem
from stalesync.errors import ConfigError
from stalesync.kernels.csr import take_rows
from stalesync.strategies import make_strategy
from stalesync.strategies.fedavg import split_by_label

pytestmark = pytest.mark.filterwarnings("ignore::stalesync.apps.workers.OverheadWarning")


@pytest.fixture(scope="module")
def data():
    X, y = make_classification(600, 12, n_informative=6, random_state=0)
    return X, y


def fit(X, y, workers=1, seed=0, **options):
    return LinearClassifier(loss="log_loss", strategy="fedavg", strategy_options=options,
                            workers=workers, seed=seed).fit(X, y)


def local_models(model, X, y, client_rows, rounds=1, start=None):
    """What each client's local SGD gives, replayed outside the job: the client's rows in
    the fit's order, its round's seeded example order, from ``start`` (zeros)."""
    import scipy.sparse as sp

    Xs = sp.csr_matrix(X)
    spec, freq = model.spec_, model.freq_
    labels = np.searchsorted(model.classes_, y)
    out = []
    for c, rows in enumerate(client_rows):
        p = LinearProblem(take_rows(Xs, rows), labels[rows], np.zeros(rows.size), freq, spec, 1)
        values = np.zeros((spec.num_features + 2, 1)) if start is None else start.copy()
        for r in range(rounds):
            m = p.model_from(values)
            p.local_steps(m, p.shuffled(np.random.default_rng([model.seed, 9173, r, c, 0])))
            values = p.model_values(m)
        out.append(values)
    return out


def table_of(model):
    d = model.coef_.shape[1]
    out = np.zeros((d + 2, 1))
    out[:d, 0] = model.coef_[0]
    out[d] = model.intercept_
    return out


def client_rows(model, n, options):
    strategy = make_strategy("fedavg", options)
    return strategy.partition(n, 1, np.random.default_rng(model.seed))


def test_one_client_every_round_is_plain_local_sgd_bit_for_bit(data):
    X, y = data
    options = {"clients": 1, "fraction": 1.0, "min_clients": 1, "rounds": 4}
    model = fit(X, y, **options)
    (rows,) = client_rows(model, X.shape[0], options)
    (expected,) = local_models(model, X, y, [rows], rounds=4)
    np.testing.assert_array_equal(table_of(model)[:-1], expected[:-1])


def test_the_average_weights_clients_by_their_examples_exactly(data):
    X, y = data
    ids = np.where(np.arange(X.shape[0]) < 150, 0, 1)  # 150 and 450 examples
    options = {"clients": ids, "fraction": 1.0, "rounds": 1}
    model = fit(X, y, **options)
    rows = client_rows(model, X.shape[0], options)
    assert [r.size for r in rows] == [150, 450]
    a, b = local_models(model, X, y, rows)
    np.testing.assert_array_equal(table_of(model)[:-1], (a * 0.25 + b * 0.75)[:-1])


def test_a_round_averages_exactly_the_clients_that_reported(data):
    X, y = data
    options = {"clients": 6, "fraction": 1.0, "rounds": 1, "dropout": 0.3}
    strategy = make_strategy("fedavg", options)
    sizes = np.full(6, 100)
    failing = strategy.plan(0, 0, sizes).failing
    assert 0 < len(failing) < 5  # the seeded draw drops some, not all
    model = fit(X, y, **options)
    rows = client_rows(model, X.shape[0], options)
    locals_ = local_models(model, X, y, rows)
    reported = [c for c in range(6) if c not in failing]
    expected = np.zeros_like(locals_[0])
    for c in reported:
        expected = expected + locals_[c] * (100 / (100 * len(reported)))
    np.testing.assert_allclose(table_of(model)[:-1], expected[:-1], rtol=1e-13, atol=1e-15)
    record = model.run_record_
    assert record["final"]["federated"]["dropped_clients"] == len(failing)
    assert record["final"]["federated"]["reports"] == 6 - len(failing)


def test_late_updates_are_dropped_and_a_round_without_enough_reports_is_skipped(data):
    X, y = data
    model = fit(X, y, clients=4, fraction=1.0, rounds=2, round_deadline_s=1e-9)
    assert np.all(model.coef_ == 0) and np.all(model.intercept_ == 0)
    counts = model.run_record_["final"]["federated"]
    assert counts["late_clients"] == 8 and counts["skipped_rounds"] == 2


def test_server_momentum_follows_fedavgm(data):
    X, y = data
    options = {"clients": 1, "fraction": 1.0, "min_clients": 1, "rounds": 2,
               "server_momentum": 0.5, "server_lr": 0.7}
    model = fit(X, y, **options)
    (rows,) = client_rows(model, X.shape[0], options)
    w0 = np.zeros((X.shape[1] + 2, 1))
    (w1_local,) = local_models(model, X, y, [rows], rounds=1)
    v = w1_local - w0
    w1 = w0 + 0.7 * v
    # round 2 starts from w1 with the client's step counter where round 1 left it
    import scipy.sparse as sp

    p = LinearProblem(take_rows(sp.csr_matrix(X), rows), np.searchsorted(model.classes_, y)[rows],
                      np.zeros(rows.size), model.freq_, model.spec_, 1)
    for r, start in enumerate((w0, w1)):
        m = p.model_from(start)
        p.local_steps(m, p.shuffled(np.random.default_rng([model.seed, 9173, r, 0, 0])))
        last = p.model_values(m)
    v = 0.5 * v + (last - w1)
    np.testing.assert_allclose(table_of(model)[:-1], (w1 + 0.7 * v)[:-1], rtol=1e-12)


@pytest.mark.parametrize("dropout", [0.0, 0.25])
def test_secure_aggregation_gives_the_fixed_point_model_bit_for_bit(data, dropout):
    X, y = data
    # 6 of 12 clients a round; secure aggregation needs 4 (a majority) to unmask: the plain
    # run skips the same rounds with min_clients=4
    base = {"clients": 12, "fraction": 0.5, "rounds": 3, "quantize_bits": 20,
            "dropout": dropout, "min_clients": 4}
    plain = fit(X, y, **base)
    secure = fit(X, y, workers=2, **base, secure_aggregation=True)
    np.testing.assert_array_equal(secure.coef_, plain.coef_)
    np.testing.assert_array_equal(secure.intercept_, plain.intercept_)
    floats = fit(X, y, **{k: v for k, v in base.items() if k != "quantize_bits"})
    np.testing.assert_allclose(plain.coef_, floats.coef_, atol=1e-4)
    assert not np.array_equal(plain.coef_, floats.coef_)  # it really was fixed point


def test_fixed_point_fedavg_is_the_same_on_any_number_of_workers(data):
    X, y = data
    options = {"clients": 9, "fraction": 0.5, "rounds": 3, "quantize_bits": 24}
    one = fit(X, y, workers=1, **options)
    for workers in (2, 3):
        other = fit(X, y, workers=workers, **options)
        np.testing.assert_array_equal(other.coef_, one.coef_)


def test_fedavg_learns_and_records_its_rounds(data):
    X, y = data
    model = LinearClassifier(loss="log_loss", strategy="fedavg", workers=2, epochs=5,
                             strategy_options={"clients": 20, "fraction": 0.25}).fit(X, y)
    from sklearn.linear_model import LogisticRegression

    assert model.score(X, y) >= LogisticRegression().fit(X, y).score(X, y) - 0.02
    record = model.run_record_
    assert record["strategy"] == "fedavg"
    assert record["clocks"] == 2 * 20 + 1  # 5 epochs at 5 of 20 clients a round
    assert record["final"]["federated"]["reports"] == 20 * 5


@pytest.mark.parametrize("options, match", [
    ({"secure_aggregation": True}, "set quantize_bits"),
    ({"fraction": 0.0}, "fraction must be > 0"),
    ({"clients": [0, 1, 1]}, "3 ids given for 600 examples"),
    ({"clients": 601}, "600 examples cannot be split over 601 clients"),
    ({"clients": "abc"}, "clients must be a number"),
    ({"dropout": 1.0}, "dropout must be >= 0 and < 1"),
])
def test_bad_options_are_refused(data, options, match):
    X, y = data
    with pytest.raises(ConfigError, match=match):
        fit(X, y, **options)


def test_split_by_label_gives_each_client_few_labels():
    labels = np.repeat(np.arange(10), 100)
    ids = split_by_label(labels, clients=50, labels_per_client=2, seed=1)
    assert np.bincount(ids).tolist() == [20] * 50
    seen = [np.unique(labels[ids == c]).size for c in range(50)]
    assert max(seen) <= 2 and np.mean(seen) < 2.01


def test_fedavg_on_the_network(data):
    from stalesync.apps.nn import NeuralNetClassifier

    X, y = data
    model = NeuralNetClassifier(strategy="fedavg", workers=2, epochs=20, seed=0,
                                strategy_options={"clients": 10, "fraction": 0.5,
                                                  "local_epochs": 2}).fit(X, y)
    assert model.score(X, y) > 0.82  # a linear model reaches 0.79 on these data
    assert model.run_record_["strategy"] == "fedavg"


@pytest.mark.parametrize("every", [1, 2])
def test_a_resumed_federation_ends_where_an_uninterrupted_one_does(data, tmp_path, every):
    """Snapshots every clock (so also between a round's two clocks) or every round;
    resuming from the one before the last gives the same model bit for bit (fixed point:
    the sums do not depend on the order they arrive in)."""
    from stalesync.apps.base import RunConfig
    from stalesync.persist.snapshot import list_snapshots

    X, y = data
    options = {"clients": 12, "fraction": 0.5, "rounds": 4, "quantize_bits": 24,
               "server_momentum": 0.5}
    model = LinearClassifier(loss="log_loss", strategy="fedavg", strategy_options=options,
                             workers=2)
    full = model.fit(X, y, run=RunConfig(snapshot_every=every, snapshot_dir=str(tmp_path)))
    coef = full.coef_.copy()
    clock, earlier = list_snapshots(tmp_path)[0]
    assert 0 < clock < full.run_record_["clocks"] - 1
    resumed = LinearClassifier(loss="log_loss", strategy="fedavg", strategy_options=options,
                               workers=2).fit(X, y, run=RunConfig(resume=str(earlier)))
    assert resumed.run_record_["resumed_from_clock"] == clock
    np.testing.assert_array_equal(resumed.coef_, coef)
