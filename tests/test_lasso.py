"""Lasso on the scheduler: agreement with scikit-learn, estimator API, readers, CLI."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import dump_svmlight_file, load_diabetes
from sklearn.linear_model import Lasso as SkLasso
from sklearn.linear_model import lasso_path as sk_lasso_path

from stalesync.apps.base import RunConfig
from stalesync.apps.lasso import Lasso, alpha_max, lasso_path, make_correlated_lasso
from stalesync.cli import main as cli_main
from stalesync.data.tabular import load_csv, load_svmlight, load_table
from stalesync.errors import ConfigError, DataFormatError, NotFittedError
from stalesync.observe.metrics import RECORD_FIELDS


def objective(X, y, coef, intercept, alpha):
    r = y - np.asarray(X @ coef).ravel() - intercept
    return r @ r / (2 * len(y)) + alpha * np.abs(coef).sum()


def sklearn_fit(X, y, alpha, fit_intercept=True):
    return SkLasso(alpha=alpha, tol=1e-12, max_iter=200_000,
                   fit_intercept=fit_intercept).fit(X, y)


def assert_matches(model, sk, X, y, alpha):
    ours = objective(X, y, model.coef_, model.intercept_, alpha)
    ref = objective(X, y, sk.coef_, sk.intercept_, alpha)
    assert abs(ours - ref) <= 1e-6 * abs(ref), (ours, ref)
    # supports agree (coefficients that are nonzero by more than round-off)
    np.testing.assert_array_equal(np.abs(model.coef_) > 1e-8, np.abs(sk.coef_) > 1e-8)
    assert model.objective_ == pytest.approx(ours, rel=1e-9)


@pytest.fixture(scope="module")
def diabetes():
    return load_diabetes(return_X_y=True)


@pytest.fixture(scope="module")
def synthetic():
    X, y, _ = make_correlated_lasso(80, 400, group_size=5, rho=0.8, n_informative=8, seed=1)
    return X, y


@pytest.mark.parametrize("workers", [1, 3])
@pytest.mark.parametrize("schedule", ["priority-dependency", "cyclic", "sequential"])
def test_diabetes_matches_sklearn(diabetes, workers, schedule):
    X, y = diabetes
    alpha = 0.05
    model = Lasso(alpha=alpha, tol=1e-10, workers=workers, schedule=schedule, parallel=3)
    model.fit(X, y)
    assert model.converged_
    assert_matches(model, sklearn_fit(X, y, alpha), X, y, alpha)


@pytest.mark.parametrize("sparse", [False, True])
def test_auto_sweeps_sequentially_on_one_worker_and_keeps_rounds_for_snapshots(
        synthetic, sparse, tmp_path):
    """One worker: each check's working set is swept in one compiled call (a "round"
    makes many updates); with snapshots asked for, the same schedule runs as rounds of one
    coordinate, so that snapshots fall between them. Both reach scikit-learn's optimum."""
    X, y = synthetic
    if sparse:
        X = sp.csc_matrix(np.where(np.abs(X) < 0.8, 0.0, X))
    alpha = 0.1 * alpha_max(X, y)
    swept = Lasso(alpha=alpha, tol=1e-10).fit(X, y)
    assert swept.result_.updates > 20 * swept.result_.rounds
    rounds = Lasso(alpha=alpha, tol=1e-10).fit(
        X, y, run=RunConfig(snapshot_every=10_000, snapshot_dir=str(tmp_path)))
    assert rounds.result_.updates == rounds.result_.rounds  # one coordinate per round
    for model in (swept, rounds):
        assert model.converged_
        assert_matches(model, sklearn_fit(X, y, alpha), X, y, alpha)


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("sparse", [False, True])
def test_synthetic_matches_sklearn(synthetic, workers, sparse):
    X, y = synthetic
    if sparse:  # a sparse version of the data exercises the implicit-centring kernels
        X = X.copy()
        X[np.abs(X) < 0.8] = 0.0
        X = sp.csc_matrix(X)
    alpha = 0.1 * alpha_max(X, y)
    model = Lasso(alpha=alpha, tol=1e-10, workers=workers, parallel=8, seed=workers)
    model.fit(X, y)
    assert model.converged_
    assert_matches(model, sklearn_fit(X, y, alpha), X, y, alpha)


def test_no_intercept_matches_sklearn(diabetes):
    X, y = diabetes
    model = Lasso(alpha=0.1, fit_intercept=False, tol=1e-10).fit(X, y)
    assert model.intercept_ == 0.0
    assert_matches(model, sklearn_fit(X, y, 0.1, fit_intercept=False), X, y, 0.1)


def test_unsafe_parallelism_is_rolled_back(synthetic):
    """Shotgun with P = 64 on correlated groups overshoots; the safeguard halves P and the
    answer is still right."""
    X, y = synthetic
    alpha = 0.05 * alpha_max(X, y)
    model = Lasso(alpha=alpha, tol=1e-9, schedule="random", parallel=64).fit(X, y)
    assert model.result_.parallel < 64
    assert_matches(model, sklearn_fit(X, y, alpha), X, y, alpha)


def test_priority_dependency_needs_fewer_updates_than_shotgun(synthetic):
    X, y = synthetic
    alpha = 0.05 * alpha_max(X, y)
    runs = {s: Lasso(alpha=alpha, tol=1e-6, schedule=s, parallel=8).fit(X, y)
            for s in ("priority-dependency", "random")}
    assert all(m.converged_ for m in runs.values())
    assert runs["priority-dependency"].n_updates_ < runs["random"].n_updates_


def test_predict_score_and_params(diabetes):
    X, y = diabetes
    model = Lasso(alpha=0.1, tol=1e-10).fit(X, y)
    sk = sklearn_fit(X, y, 0.1)
    np.testing.assert_allclose(model.predict(X), sk.predict(X), rtol=1e-5, atol=1e-6)
    assert model.score(X, y) == pytest.approx(sk.score(X, y), abs=1e-6)
    params = model.get_params()
    assert params["alpha"] == 0.1 and params["schedule"] == "auto"
    assert model.set_params(alpha=0.2).alpha == 0.2
    with pytest.raises(ValueError, match="Invalid parameter 'bogus'"):
        model.set_params(bogus=1)


def test_input_validation(diabetes):
    X, y = diabetes
    bad = X.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        Lasso().fit(bad, y)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        Lasso().fit(X, y[:-1])
    with pytest.raises(ConfigError, match="alpha"):
        Lasso(alpha=-1).fit(X, y)
    with pytest.raises(ConfigError, match="unknown schedule"):
        Lasso(schedule="fastest").fit(X, y)
    with pytest.raises(NotFittedError, match="not fitted"):
        Lasso().predict(X)
    model = Lasso(alpha=0.5).fit(X, y)
    with pytest.raises(ValueError, match="X has 3 features, but Lasso is expecting 10"):
        model.predict(X[:, :3])


def test_path_with_warm_starts_matches_sklearn(diabetes):
    X, y = diabetes
    alphas, coefs, results = lasso_path(X, y, n_alphas=6, eps=1e-2, tol=1e-10)
    assert coefs.shape == (X.shape[1], 6)
    assert np.all(np.diff(alphas) < 0)
    Xc, yc = X - X.mean(axis=0), y - y.mean()
    _, sk_coefs, _ = sk_lasso_path(Xc, yc, alphas=alphas, tol=1e-12, max_iter=200_000)
    for i, a in enumerate(alphas):
        ours = objective(Xc, yc, coefs[:, i], 0.0, a)
        ref = objective(Xc, yc, sk_coefs[:, i], 0.0, a)
        assert abs(ours - ref) <= 1e-6 * ref
    assert np.count_nonzero(coefs[:, 0]) == 0  # alpha_max: everything is zero
    # warm starts: a fit started at the previous solution needs fewer rounds than cold
    # (the scheduler's rounds; sequential sweeps converge in a handful of calls either way)
    _, _, warm = lasso_path(X, y, alphas=alphas, tol=1e-10, schedule="priority-dependency")
    cold = Lasso(alpha=float(alphas[3]), tol=1e-10, schedule="priority-dependency").fit(X, y)
    assert warm[3].updates < cold.n_updates_


def test_save_load_round_trip(tmp_path, diabetes):
    X, y = diabetes
    model = Lasso(alpha=0.1, tol=1e-8).fit(X, y)
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = Lasso.load(path)
    np.testing.assert_array_equal(loaded.coef_, model.coef_)
    np.testing.assert_allclose(loaded.predict(X), model.predict(X))
    assert loaded.get_params() == model.get_params()
    (tmp_path / "junk.npz").write_bytes(b"not a model")
    with pytest.raises(DataFormatError, match="junk.npz"):
        Lasso.load(tmp_path / "junk.npz")


def test_synthetic_generator_has_correlated_groups():
    X, y, coef = make_correlated_lasso(300, 60, group_size=6, rho=0.9, n_informative=5,
                                       seed=0)
    corr = np.corrcoef(X, rowvar=False)
    assert np.mean(corr[0, 1:6]) > 0.8  # same group
    assert np.max(np.abs(corr[0, 6:])) < 0.35  # other groups
    assert np.count_nonzero(coef) == 5
    assert X.flags.f_contiguous


# ------------------------------------------------------------------------------ readers


def test_svmlight_reader_round_trip_and_errors(tmp_path, diabetes):
    X, y = diabetes
    path = tmp_path / "d.svm"
    dump_svmlight_file(X[:50], y[:50], str(path))
    Xr, yr = load_svmlight(path)
    np.testing.assert_allclose(Xr.toarray(), X[:50], rtol=1e-12)
    np.testing.assert_allclose(yr, y[:50])
    bad = tmp_path / "bad.svm"
    bad.write_text("1 1:0.5 2:1\n2 1:0.5 2:oops\n")
    with pytest.raises(DataFormatError, match=r"bad.svm, line 2: value 'oops'"):
        load_svmlight(bad)
    with pytest.raises(DataFormatError, match="no such file"):
        load_table(tmp_path / "missing.svm")


def test_csv_reader_header_target_and_errors(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,b,label\n1,2,3\n4,5,6\n")
    X, y = load_csv(path, target="label")
    np.testing.assert_array_equal(X, [[1, 2], [4, 5]])
    np.testing.assert_array_equal(y, [3, 6])
    X0, y0 = load_csv(path, target=0)
    np.testing.assert_array_equal(y0, [1, 4])
    bad = tmp_path / "bad.csv"
    bad.write_text("1,2,3\n4,5,6\n7,x,9\n")
    with pytest.raises(DataFormatError, match=r"bad.csv: line 3, column 2"):
        load_csv(bad)
    with pytest.raises(DataFormatError, match="no column 'nope'"):
        load_csv(path, target="nope")


# ---------------------------------------------------------------------------------- CLI


def test_cli_fits_a_csv_and_writes_the_run_record(tmp_path, diabetes, capsys):
    X, y = diabetes
    data = tmp_path / "diabetes.csv"
    np.savetxt(data, np.column_stack([X, y]), delimiter=",")
    out, plot = tmp_path / "run.json", tmp_path / "run.png"
    code = cli_main(["lasso", "--data", str(data), "--alpha", "0.1", "--workers", "2",
                     "--tol", "1e-8", "--metrics-out", str(out), "--plot", str(plot),
                     "--no-progress"])
    assert code == 0
    record = json.loads(out.read_text())
    assert set(record) >= set(RECORD_FIELDS)
    assert record["app"] == "lasso" and record["workers"] == 2
    assert record["strategy"] == "scheduled" and record["clocks"] > 0
    from stalesync.observe.plots import run_panels  # no empty staleness panel: it reads no tables

    assert [p.func.__name__ for p in run_panels(record)] == ["_objective_panel"]
    ref = sklearn_fit(X, y, 0.1)
    want = objective(X, y, ref.coef_, ref.intercept_, 0.1)
    assert record["final"]["objective"] == pytest.approx(want, rel=1e-6)
    assert record["records"][-1]["objective"] == pytest.approx(want, rel=1e-6)
    assert plot.stat().st_size > 1000
    assert "objective=" in capsys.readouterr().out


def test_cli_reports_bad_input_in_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("1,2\n3,zz\n")
    assert cli_main(["lasso", "--data", str(bad), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "bad.csv: line 2" in err and "Traceback" not in err


# ------------------------------------------------------ L1 logistic regression (optional)


@pytest.mark.parametrize("workers", [1, 2])
def test_l1_logistic_matches_sklearn(workers):
    import warnings

    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression

    from stalesync.apps.lasso.logistic import LogisticL1

    X, y = load_breast_cancer(return_X_y=True)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    n, alpha = len(y), 0.01

    def obj(coef, b0):
        m = X @ coef + b0
        return np.mean(np.logaddexp(0, -np.where(y == 1, 1, -1) * m)) + alpha * np.abs(
            coef).sum()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk = LogisticRegression(penalty="l1", C=1 / (n * alpha), solver="saga", tol=1e-12,
                                max_iter=200_000).fit(X, y)
    model = LogisticL1(alpha=alpha, tol=1e-8, workers=workers, parallel=4).fit(X, y)
    assert model.converged_
    ref = obj(sk.coef_.ravel(), sk.intercept_[0])
    assert abs(obj(model.coef_, model.intercept_) - ref) <= 1e-6 * ref
    np.testing.assert_array_equal(model.coef_ != 0, np.abs(sk.coef_.ravel()) > 1e-8)
    assert model.score(X, y) == pytest.approx(sk.score(X, y))
    np.testing.assert_allclose(model.predict_proba(X).sum(axis=1), 1.0)
    with pytest.raises(ConfigError, match="Only binary classification"):
        LogisticL1().fit(X, np.arange(n) % 3)


def test_blocks_on_two_workers_reach_the_sequential_optimum_and_never_go_uphill():
    """``blocks`` (each worker sweeps its own columns against a copy of the residual; the
    copies merge at each check along the best of the steps 1, 1/2): when both blocks hold
    near-copies of the same columns each explains the whole residual and the full step
    overshoots; the merge must still descend, and the solve then gathers the sweeps
    (one sequential sweep of both working sets, checks still split)."""
    A, y, _ = make_correlated_lasso(40, 100, group_size=10, rho=0.9, n_informative=10, seed=3)
    X = np.hstack([A, A + 0.01 * np.random.default_rng(4).normal(size=A.shape)])
    alpha = 0.05 * alpha_max(X, y)
    one = Lasso(alpha=alpha, workers=1).fit(X, y)
    two = Lasso(alpha=alpha, workers=2, schedule="blocks").fit(X, y)
    assert two.run_record_["workers"] == 2 and one.converged_ and two.converged_
    assert two.objective_ == pytest.approx(one.objective_, rel=1e-4)
    objectives = [h["objective"] for h in two.history_]
    assert all(b <= a * (1 + 1e-12) for a, b in itertools.pairwise(objectives))
    assert two.result_.parallel == 1  # the blocks overlap: the sweeps were gathered
    assert two.history_[0]["parallel"] == 2  # after a first round of block sweeps


def test_blocks_that_share_no_rows_keep_sweeping_in_parallel():
    """Columns of the two blocks touch disjoint rows: the blocks' changes are independent,
    the full merge step is the best one, and the solve keeps both blocks sweeping at once
    to the sequential optimum (the gathered sweep is for overlapping blocks only)."""
    rng = np.random.default_rng(5)
    X = np.zeros((120, 60))
    X[:60, :30] = rng.normal(size=(60, 30))
    X[60:, 30:] = rng.normal(size=(60, 30))
    beta = np.zeros(60)
    beta[[2, 7, 40, 55]] = [3.0, -2.0, 1.5, 2.5]
    y = X @ beta + 0.1 * rng.normal(size=120)
    alpha = 0.02 * alpha_max(X, y, fit_intercept=False)
    one = Lasso(alpha=alpha, workers=1, fit_intercept=False, tol=1e-8).fit(X, y)
    two = Lasso(alpha=alpha, workers=2, schedule="blocks", fit_intercept=False,
                tol=1e-8).fit(X, y)
    assert one.converged_ and two.converged_
    assert two.result_.parallel == 2
    assert two.objective_ == pytest.approx(one.objective_, rel=1e-7)
    np.testing.assert_array_equal(two.coef_ != 0, one.coef_ != 0)


def test_a_scheduled_fit_refuses_the_parameter_servers_own_run_settings():
    """A scheduled fit turns its RunConfig into a driver in one place, which refuses what
    only a parameter-server job uses (server shards, the ceiling of staleness='auto')
    instead of ignoring it."""
    from stalesync.apps.base import RunConfig
    from stalesync.apps.mf import MatrixFactorization

    X, y = make_correlated_lasso(30, 8, group_size=4, n_informative=2, seed=0)[:2]
    with pytest.raises(ConfigError, match="shards is a parameter-server setting"):
        Lasso(alpha=0.1).fit(X, y, run=RunConfig(shards=2))
    rng = np.random.default_rng(0)
    ratings = np.c_[rng.integers(0, 20, 200), rng.integers(0, 10, 200),
                    rng.integers(1, 6, 200)].astype(np.float64)
    with pytest.raises(ConfigError, match="max_staleness is a parameter-server setting"):
        MatrixFactorization(mode="blocks", epochs=1).fit(ratings,
                                                         run=RunConfig(max_staleness=4))
