"""Linear classifiers and regressors by SGD on sparse data, with every data-parallel
strategy (see docs/linear.md)."""

from .. import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "LinearClassifier": "model",
    "LinearRegressor": "model",
})
