"""scikit-learn compatibility of every estimator: ``check_estimator``, clone and grid search.

Each estimator runs the whole ``check_estimator`` suite. A check that cannot apply is listed
below with the reason, and the test fails if a listed check starts passing (the list must
not rot) or if any other check fails.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.utils.estimator_checks import check_estimator

from stalesync.apps.kmeans import KMeans
from stalesync.apps.lasso import Lasso, LogisticL1
from stalesync.apps.lda import LDA
from stalesync.apps.linear import LinearClassifier, LinearRegressor
from stalesync.apps.mf import MatrixFactorization
from stalesync.errors import DataFormatError

try:
    import torch  # noqa: F401 - the nn extra; part of the test install

    from stalesync.apps.nn import NeuralNetClassifier
except ImportError:  # pragma: no cover
    NeuralNetClassifier = None

# MatrixFactorization's X is (user, item) id pairs (an (n, 2) array with ratings y, an
# (n, 3) array, or a users x items sparse matrix); these checks fit it on random float
# features of other widths, which are not ids.
NOT_IDS = "the check feeds random float features; X must be (user, item) integer id pairs"
MF_NOT_APPLICABLE = {name: NOT_IDS for name in (
    "check_fit_score_takes_y", "check_estimators_overwrite_params",
    "check_dont_overwrite_parameters", "check_estimators_fit_returns_self",
    "check_readonly_memmap_input", "check_n_features_in_after_fitting",
    "check_positive_only_tag_during_fit", "check_estimators_dtypes", "check_dtype_object",
    "check_pipeline_consistency", "check_estimators_nan_inf", "check_estimator_sparse_array",
    "check_estimator_sparse_matrix", "check_estimators_pickle",
    "check_f_contiguous_array_estimator", "check_regressors_train",
    "check_regressor_data_not_an_array", "check_regressors_no_decision_function",
    "check_supervised_y_2d", "check_regressors_int", "check_methods_sample_order_invariance",
    "check_methods_subset_invariance", "check_fit2d_1sample", "check_fit2d_1feature",
    "check_dict_unchanged", "check_fit_idempotent", "check_fit_check_is_fitted",
    "check_n_features_in", "check_fit2d_predict1d",
)}

# one worker: the checks compare two fits, and a single worker is deterministic
ESTIMATORS = {
    "LDA": (LDA(n_topics=3, epochs=3, workers=1), {}),
    "MatrixFactorization": (MatrixFactorization(rank=2, epochs=3), MF_NOT_APPLICABLE),
    "Lasso": (Lasso(alpha=0.1), {}),
    "LogisticL1": (LogisticL1(alpha=0.01), {}),
    "KMeans": (KMeans(3, epochs=5, workers=1), {}),
    "LinearClassifier": (LinearClassifier(epochs=5), {}),
    "LinearRegressor": (LinearRegressor(epochs=5), {}),
}
if NeuralNetClassifier is not None:
    ESTIMATORS["NeuralNetClassifier"] = (NeuralNetClassifier(hidden=16, epochs=5, lr=0.1), {})


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_check_estimator(name):
    estimator, not_applicable = ESTIMATORS[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(estimator, on_fail=None)
    failed = {r["check_name"] for r in results if r["status"] == "failed"}
    passed = {r["check_name"] for r in results if r["status"] == "passed"}
    details = {r["check_name"]: str(r["exception"])[:300] for r in results
               if r["status"] == "failed" and r["check_name"] not in not_applicable}
    assert not details, details
    assert failed == set(not_applicable), sorted(set(not_applicable) - failed)
    assert passed, "no check ran"


DEFAULTS = {"LDA": LDA, "MatrixFactorization": MatrixFactorization, "Lasso": Lasso,
            "LogisticL1": LogisticL1, "KMeans": KMeans, "LinearClassifier": LinearClassifier,
            "LinearRegressor": LinearRegressor}
if NeuralNetClassifier is not None:
    DEFAULTS["NeuralNetClassifier"] = NeuralNetClassifier


@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_check_estimator_on_the_defaults(name):
    """As a user constructs them (``workers="auto"``, each app's own epochs and
    consistency): the idempotence and pipeline checks repeat a seeded fit exactly."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(DEFAULTS[name](), on_fail=None)
    not_applicable = ESTIMATORS[name][1]
    details = {r["check_name"]: str(r["exception"])[:300] for r in results
               if r["status"] == "failed" and r["check_name"] not in not_applicable}
    assert not details, details


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_unfitted_use_raises_sklearns_not_fitted_error(name):
    estimator = clone(ESTIMATORS[name][0])
    method = next(m for m in ("predict", "transform") if hasattr(estimator, m))
    with pytest.raises(NotFittedError, match="not fitted"):
        getattr(estimator, method)(np.ones((2, 2)))


def test_clones_in_a_grid_search_never_share_run_settings():
    """Run settings are fit arguments, not parameters: a grid search clones only what the
    model computes, and each clone fits on its own."""
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(c, 0.3, (40, 2)) for c in ((0, 0), (4, 4), (0, 4))])
    folds = KFold(2, shuffle=True, random_state=0)  # unshuffled, a fold misses a blob
    search = GridSearchCV(KMeans(workers=2, epochs=5), {"n_clusters": [2, 3]}, cv=folds)
    search.fit(X)
    assert search.best_params_ == {"n_clusters": 3}
    params = KMeans().get_params()
    assert not {"runtime", "snapshot_dir", "resume", "address", "progress"} & set(params)


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_the_shared_parameters_are_checked_alike_in_every_estimator(name):
    """epochs, workers and seed are declared once (apps/base.SHARED_PARAMETERS): every
    estimator that has one refuses a bad value the same way, naming it, before any work."""
    from stalesync.apps.base import SHARED_PARAMETERS
    from stalesync.errors import ConfigError

    estimator = ESTIMATORS[name][0]
    params = estimator.get_params(deep=False)
    shared = [p for p in SHARED_PARAMETERS if p in params]
    assert "workers" in shared and "seed" in shared, shared
    for param, bad in (("epochs", 0), ("workers", 0), ("seed", -1)):
        if param not in shared:
            continue
        with pytest.raises(ConfigError) as info:
            clone(estimator).set_params(**{param: bad}).check_params()
        assert info.value.param == param


def _malformed(kind: str, fmt: str):
    """A 3 x 3 sparse matrix (CSR or CSC) whose second stored entry's index points outside
    it (scipy builds it without looking at the index values)."""
    import scipy.sparse as sp

    indices = np.array([0, {"negative": -1, "too large": 7}[kind], 2, 1, 0, 2], dtype=np.int32)
    indptr = np.array([0, 2, 4, 6], dtype=np.int32)
    make = sp.csr_matrix if fmt == "csr" else sp.csc_matrix
    return make((np.ones(6), indices, indptr), shape=(3, 3))


@pytest.mark.parametrize("kind", ["negative", "too large"])
@pytest.mark.parametrize("make", [
    lambda: (LinearClassifier(workers=1), "csr", [0, 1, 0]),
    lambda: (LinearRegressor(workers=1), "csr", [0.0, 1.0, 0.5]),
    lambda: (KMeans(2, workers=1), "csr", None),
    lambda: (Lasso(), "csc", [0.0, 1.0, 2.0]),
    lambda: (LogisticL1(), "csc", [0, 1, 0]),
], ids=["linear-classifier", "linear-regressor", "kmeans", "lasso", "logistic-l1"])
def test_a_sparse_matrix_with_indices_outside_its_shape_is_refused(make, kind):
    """The compiled kernels index without bounds checks, so such a matrix must never reach
    them: one line naming X, before any work."""
    estimator, fmt, y = make()
    X = _malformed(kind, fmt)
    with pytest.raises(DataFormatError, match="X: malformed sparse matrix"):
        estimator.fit(X) if y is None else estimator.fit(X, y)
