"""Lasso by coordinate descent on the STRADS-style scheduler (see docs/scheduler.md)."""

from .. import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "Lasso": "estimator",
    "alpha_max": "estimator",
    "check_data": "estimator",
    "lasso_path": "estimator",
    "LogisticL1": "logistic",
    "SolveResult": "solver",
    "SolverOptions": "solver",
    "solve": "solver",
    "make_correlated_lasso": "synthetic",
})
