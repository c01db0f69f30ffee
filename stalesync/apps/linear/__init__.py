"""Linear classifiers and regressors by SGD on sparse data, with every data-parallel
strategy (see docs/linear.md)."""

from .model import LinearClassifier, LinearRegressor

__all__ = ["LinearClassifier", "LinearRegressor"]
