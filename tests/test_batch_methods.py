"""Batch methods through the tables: distributed Gram products (``stalesync.linalg``),
least squares / ridge by the normal equations, PCA, and L-BFGS (Sandblaster) against
scikit-learn, on 1, 2 and 3 workers."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.decomposition import PCA as SklearnPCA
from sklearn.linear_model import LogisticRegression, Ridge

from stalesync import linalg
from stalesync.apps.base import RunConfig
from stalesync.apps.linear import LinearClassifier, LinearRegressor
from stalesync.apps.linear.problem import LinearProblem
from stalesync.apps.pca import PCA
from stalesync.errors import ConfigError
from stalesync.persist.snapshot import SnapshotError, list_snapshots, load_snapshot

pytestmark = pytest.mark.filterwarnings("ignore::stalesync.apps.workers.OverheadWarning")


def integer_matrix(rng, n, p, sparse):
    X = rng.integers(-6, 7, size=(n, p)).astype(np.float64)
    if sparse:
        X[rng.random((n, p)) < 0.7] = 0.0
        return sp.csr_matrix(X)
    return X


@settings(max_examples=12, deadline=None, derandomize=True)
@given(n=st.integers(3, 60), p=st.integers(1, 9), workers=st.integers(1, 3),
       sparse=st.booleans(), seed=st.integers(0, 2**16))
def test_gram_equals_the_product_exactly_on_integers(n, p, workers, sparse, seed):
    """Integer data: every partial sum is an exact float, so the summed table must equal
    X^T X, X^T y and y^T y bit for bit, whatever the partition."""
    rng = np.random.default_rng(seed)
    X = integer_matrix(rng, n, p, sparse)
    y = rng.integers(-5, 6, size=n).astype(np.float64)
    g = linalg.gram(X, y, workers=min(workers, n))
    dense = X.toarray() if sparse else X
    assert np.array_equal(g.xtx, dense.T @ dense)
    assert np.array_equal(g.xty, dense.T @ y)
    assert g.yty == float(y @ y)
    assert g.n == n and g.workers == min(workers, n)


@pytest.mark.parametrize("sparse", [False, True])
def test_centred_gram_is_the_product_of_centred_rows(sparse):
    rng = np.random.default_rng(1)
    X = integer_matrix(rng, 500, 7, sparse)
    X = X + 50.0 if not sparse else X  # a large mean: centring must not cancel digits
    y = rng.normal(size=500) + 10
    g = linalg.gram(X, y, center=True, workers=2)
    D = X.toarray() if sparse else X
    Dc, yc = D - D.mean(axis=0), y - y.mean()
    np.testing.assert_allclose(g.xtx, Dc.T @ Dc, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(g.xty, Dc.T @ yc, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(g.mean_x, D.mean(axis=0))


def test_gram_without_y_and_mapmm():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(301, 5))
    g = linalg.gram(X, workers=3)
    assert g.xty is None
    np.testing.assert_allclose(g.xtx, X.T @ X, rtol=1e-12)
    B = rng.normal(size=(5, 2))
    for workers in (1, 2, 3):
        np.testing.assert_allclose(linalg.mapmm(X, B, workers=workers), X @ B, rtol=1e-12)
    S = sp.random(40, 5, density=0.3, random_state=3, format="csr")
    np.testing.assert_allclose(linalg.mapmm(S, B, workers=2), S @ B, rtol=1e-12)


def test_gram_refuses_bad_input_before_any_work(monkeypatch):
    X = np.ones((10, 3))
    with pytest.raises(ConfigError, match="NaN"):
        linalg.gram(np.array([[1.0, np.nan]]))
    with pytest.raises(ConfigError, match="y must be a vector of 10"):
        linalg.gram(X, np.ones(9))
    with pytest.raises(ConfigError, match="cannot be split over 3 workers"):
        linalg.gram(np.ones((2, 3)), workers=3)
    with pytest.raises(ConfigError, match="B has 2 rows"):
        linalg.mapmm(X, np.ones((2, 2)))
    monkeypatch.setattr(linalg, "MAX_GRAM_BYTES", 100)
    with pytest.raises(ConfigError, match="3 columns: its Gram table"):
        linalg.gram(X)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 400), where=st.floats(0, 1), bad=st.sampled_from(
    [np.nan, np.inf, -np.inf, None]), threads=st.integers(1, 3))
def test_the_finite_check_finds_a_bad_value_in_any_slice(n, where, bad, threads):
    """The threaded check (kernels.checks.all_finite) finds one NaN or infinity wherever it
    sits, whichever thread's slice holds it, and passes finite data."""
    import stalesync.kernels.checks as checks
    from stalesync.kernels.checks import all_finite

    values = np.random.default_rng(n).normal(size=(n, 3))
    if bad is not None:
        values.flat[min(int(where * values.size), values.size - 1)] = bad
    with pytest.MonkeyPatch.context() as patch:  # small arrays take threads too
        patch.setattr(checks, "PARALLEL_COPY_ENTRIES", 1)
        assert all_finite(values, threads) is (bad is None)
        assert all_finite(np.asfortranarray(values), threads) is (bad is None)


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_normal_equations_equal_ridge(sparse, fit_intercept):
    rng = np.random.default_rng(4)
    n, p = 800, 12
    X = rng.normal(size=(n, p)) + 3.0
    if sparse:
        X[rng.random((n, p)) < 0.6] = 0.0
    y = X @ rng.normal(size=p) + 0.5 * rng.normal(size=n) + 7.0
    data = sp.csr_matrix(X) if sparse else X
    alpha = 1e-2
    ours = LinearRegressor(solver="normal", alpha=alpha, fit_intercept=fit_intercept,
                           workers=2).fit(data, y)
    ref = Ridge(alpha=n * alpha, fit_intercept=fit_intercept, solver="cholesky",
                tol=1e-12).fit(X, y)
    np.testing.assert_allclose(ours.coef_.ravel(), ref.coef_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(ours.intercept_[0], ref.intercept_, rtol=1e-8, atol=1e-10)
    assert ours.run_record_["strategy"] == "normal"
    assert ours.run_record_["workers"] == 2


def test_least_squares_without_a_penalty_on_dependent_columns():
    """No penalty and a repeated column: the system is singular; the fit is still a least
    squares solution (the residual of the minimum-norm one)."""
    rng = np.random.default_rng(5)
    A = rng.normal(size=(200, 3))
    X = np.column_stack([A, A[:, 0]])
    y = A @ [1.0, -2.0, 0.5] + 0.01 * rng.normal(size=200)
    model = LinearRegressor(solver="normal", penalty="none", workers=1).fit(X, y)
    best = np.linalg.lstsq(np.column_stack([X, np.ones(200)]), y, rcond=None)[0]
    ours = X @ model.coef_.ravel() + model.intercept_[0]
    assert np.sum((ours - y) ** 2) == pytest.approx(
        np.sum((np.column_stack([X, np.ones(200)]) @ best - y) ** 2), rel=1e-6)


@pytest.mark.parametrize("workers", [1, 2])
def test_pca_equals_scikit_learn(workers):
    rng = np.random.default_rng(6)
    X = rng.normal(size=(3000, 30)) @ rng.normal(size=(30, 30)) + 5.0
    ours = PCA(8, workers=workers).fit(X)
    ref = SklearnPCA(8, svd_solver="full").fit(X)
    np.testing.assert_allclose(np.abs(ours.components_), np.abs(ref.components_), atol=1e-8)
    np.testing.assert_allclose(ours.explained_variance_, ref.explained_variance_, rtol=1e-8)
    np.testing.assert_allclose(ours.explained_variance_ratio_, ref.explained_variance_ratio_,
                               rtol=1e-8)
    np.testing.assert_allclose(ours.singular_values_, ref.singular_values_, rtol=1e-8)
    assert ours.noise_variance_ == pytest.approx(ref.noise_variance_, rel=1e-8)
    signs = np.sign(np.sum(ours.components_ * ref.components_, axis=1))
    np.testing.assert_allclose(ours.transform(X), ref.transform(X) * signs, atol=1e-7)
    np.testing.assert_allclose(ours.inverse_transform(ours.transform(X)),
                               ref.inverse_transform(ref.transform(X)), atol=1e-7)


def test_pca_save_load_and_bad_input(tmp_path):
    rng = np.random.default_rng(7)
    X = rng.normal(size=(100, 6))
    model = PCA(3, workers=1).fit(X)
    back = PCA.load(model.save(tmp_path / "pca"))
    np.testing.assert_array_equal(back.transform(X), model.transform(X))
    with pytest.raises(ConfigError, match="n_components=7 must be <= "):
        PCA(7).fit(X)
    with pytest.raises(ConfigError, match="n_components must be positive"):
        PCA(0).fit(X)


# -- L-BFGS -------------------------------------------------------------------------------


def sparse_classes(n=4000, d=300, classes=2, seed=8):
    rng = np.random.default_rng(seed)
    X = sp.random(n, d, density=0.05, random_state=seed, format="csr")
    W = rng.normal(size=(d, classes))
    scores = X @ W + 0.3 * rng.normal(size=(n, classes))
    y = scores.argmax(axis=1) if classes > 2 else (scores[:, 0] > np.median(scores[:, 0]))
    return X, y.astype(int)


@pytest.fixture(scope="module")
def binary():
    return sparse_classes()


def test_lbfgs_reaches_scikit_learn_logistic_objective_on_1_2_3_workers(binary):
    X, y = binary
    n, alpha = X.shape[0], 1e-3
    ref = LogisticRegression(C=1.0 / (n * alpha), tol=1e-10, max_iter=1000).fit(X, y)
    probe = LinearClassifier(loss="log_loss", alpha=alpha, solver="lbfgs", workers=1,
                             tol=1e-10, max_iter=1000).fit(X, y)
    probe.coef_, probe.intercept_ = ref.coef_, ref.intercept_
    target = probe.objective(X, y)
    coefs = []
    for workers in (1, 2, 3):
        model = LinearClassifier(loss="log_loss", alpha=alpha, solver="lbfgs",
                                 workers=workers, tol=1e-10, max_iter=1000).fit(X, y)
        assert model.objective(X, y) == pytest.approx(target, rel=1e-9)
        assert model.run_record_["workers"] == workers
        assert model.run_record_["final"]["converged"]
        coefs.append(model.coef_)
    np.testing.assert_allclose(coefs[1], coefs[0], rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(coefs[2], coefs[0], rtol=1e-6, atol=1e-8)


def test_lbfgs_multinomial_and_regression():
    X, y = sparse_classes(classes=4, seed=9)
    n, alpha = X.shape[0], 1e-3
    ours = LinearClassifier(loss="log_loss", multi_class="multinomial", alpha=alpha,
                            solver="lbfgs", workers=2, tol=1e-10, max_iter=1000).fit(X, y)
    ref = LogisticRegression(C=1.0 / (n * alpha), tol=1e-10, max_iter=1000).fit(X, y)
    assert (ours.predict(X) == ref.predict(X)).mean() > 0.999
    np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), atol=1e-5)
    rng = np.random.default_rng(10)
    target = X @ rng.normal(size=X.shape[1]) + 2.0
    reg = LinearRegressor(solver="lbfgs", alpha=alpha, workers=2, tol=1e-10,
                          max_iter=1000).fit(X, target)
    ridge = Ridge(alpha=n * alpha, solver="cholesky").fit(X.toarray(), target)
    np.testing.assert_allclose(reg.coef_.ravel(), ridge.coef_, rtol=1e-5, atol=1e-6)


def test_an_error_in_a_worker_gradient_reaches_the_caller(binary, monkeypatch):
    X, y = binary
    calls = {"n": 0}
    original = LinearProblem.loss_grad

    def failing(self, theta):
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("gradient exploded")
        return original(self, theta)

    monkeypatch.setattr(LinearProblem, "loss_grad", failing)
    with pytest.raises(RuntimeError, match="gradient exploded"):
        LinearClassifier(loss="log_loss", solver="lbfgs", workers=2).fit(X, y)


@pytest.mark.parametrize("params, match", [
    ({"solver": "lbfgs", "loss": "hinge"}, "smooth loss"),
    ({"solver": "lbfgs", "loss": "log_loss", "strategy": "ps"}, "strategy applies to"),
    ({"solver": "lbfgs", "loss": "log_loss", "epochs": 3}, "epochs applies to"),
    ({"solver": "lbfgs", "loss": "log_loss", "penalty": "l1"}, "penalty 'l2' or 'none'"),
    ({"solver": "sgd", "max_iter": 50}, "max_iter applies to solver='lbfgs'"),
    ({"solver": "normal"}, "needs loss='squared_error'"),
    ({"solver": "newton"}, "solver must be one of"),
])
def test_solver_options_are_honoured_or_refused(binary, params, match):
    X, y = binary
    with pytest.raises(ConfigError, match=match):
        LinearClassifier(**params).fit(X, y)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_resumed_lbfgs_fit_ends_bit_for_bit_where_an_uninterrupted_one_does(
        binary, tmp_path, workers):
    """A snapshot holds the objective's answers so far; the resumed fit replays them to
    scipy's optimiser (no pass over the data) and then evaluates anew."""
    X, y = binary
    params = dict(loss="log_loss", solver="lbfgs", workers=workers, alpha=1e-3, tol=1e-10,
                  max_iter=200)
    whole = LinearClassifier(**params).fit(X, y)
    snapped = LinearClassifier(**params).fit(
        X, y, run=RunConfig(snapshot_every=4, snapshot_dir=str(tmp_path)))
    np.testing.assert_array_equal(snapped.coef_, whole.coef_)  # snapshots change nothing
    iterations = whole.run_record_["final"]["iterations"]
    kept = list_snapshots(tmp_path)
    assert [c for c, _ in kept] == [4 * (iterations // 4 - 1), 4 * (iterations // 4)]
    resumed = LinearClassifier(**params).fit(X, y, run=RunConfig(resume=str(kept[0][1])))
    np.testing.assert_array_equal(resumed.coef_, whole.coef_)
    np.testing.assert_array_equal(resumed.intercept_, whole.intercept_)
    final = resumed.run_record_["final"]
    assert (final["iterations"], final["evaluations"]) == (
        iterations, whole.run_record_["final"]["evaluations"])
    if workers == 2:  # two clocks per evaluation made anew, one to stop the workers
        replayed = len(load_snapshot(kept[0][1]).workers[0].arrays["values"])
        assert resumed.run_record_["clocks"] == 2 * (final["evaluations"] - replayed) + 1
        assert replayed < final["evaluations"]


def test_an_lbfgs_snapshot_of_another_fit_or_path_is_refused(binary, tmp_path):
    X, y = binary
    params = dict(loss="log_loss", solver="lbfgs", workers=1, tol=1e-10, max_iter=200)
    LinearClassifier(**params).fit(X, y, run=RunConfig(snapshot_every=3,
                                                       snapshot_dir=str(tmp_path)))
    snap = list_snapshots(tmp_path)[-1][1]
    with pytest.raises(SnapshotError, match="examples 4000 .this fit: 3999."):
        LinearClassifier(**params).fit(X[1:], y[1:], run=RunConfig(resume=str(snap)))
    state = dict(np.load(snap / "worker-0000.npz"))
    state["gradients"][1:] *= 2.0  # answers the optimiser was not given
    np.savez(snap / "worker-0000.npz", **state)
    with pytest.raises(SnapshotError, match="other parameters than the snapshot's"):
        LinearClassifier(**params).fit(X, y, run=RunConfig(resume=str(snap)))


def test_lbfgs_refuses_partial_fit(binary):
    X, y = binary
    model = LinearClassifier(loss="log_loss", solver="lbfgs", workers=1)
    with pytest.raises(ConfigError, match="partial_fit runs SGD"):
        model.partial_fit(X, y, classes=[0, 1])


def test_lbfgs_on_one_worker_warns_nothing(binary):
    X, y = binary
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LinearClassifier(loss="log_loss", solver="lbfgs", workers=1).fit(X, y)


@pytest.mark.ray
def test_gram_lbfgs_and_secure_fedavg_on_ray_equal_embedded(ray_cluster, binary):
    """The same job on Ray: the Gram table, the L-BFGS optimum and a securely aggregated
    FedAvg model equal the embedded runtime's (the last bit for bit: fixed point)."""
    X, y = binary
    ray = RunConfig(runtime="ray")
    rng = np.random.default_rng(11)
    A = integer_matrix(rng, 200, 6, sparse=False)
    assert np.array_equal(linalg.gram(A, workers=2, run=ray).xtx, A.T @ A)
    options = {"loss": "log_loss", "solver": "lbfgs", "workers": 2, "tol": 1e-10,
               "max_iter": 500}
    here = LinearClassifier(**options).fit(X, y)
    there = LinearClassifier(**options).fit(X, y, run=ray)
    assert there.run_record_["runtime"] == "ray"
    np.testing.assert_allclose(there.coef_, here.coef_, rtol=1e-7, atol=1e-9)
    fed = {"loss": "log_loss", "strategy": "fedavg", "workers": 2, "strategy_options": {
        "clients": 8, "fraction": 0.5, "rounds": 3, "quantize_bits": 20,
        "secure_aggregation": True}}
    here = LinearClassifier(**fed).fit(X, y)
    there = LinearClassifier(**fed).fit(X, y, run=ray)
    np.testing.assert_array_equal(there.coef_, here.coef_)
