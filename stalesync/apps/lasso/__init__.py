"""Lasso by coordinate descent on the STRADS-style scheduler (see docs/scheduler.md)."""

from .estimator import Lasso, alpha_max, check_data, lasso_path
from .logistic import LogisticL1
from .solver import SolveResult, SolverOptions, solve
from .synthetic import make_correlated_lasso

__all__ = ["Lasso", "LogisticL1", "SolveResult", "SolverOptions", "alpha_max", "check_data",
           "lasso_path", "make_correlated_lasso", "solve"]
