"""Principal component analysis from the distributed covariance (see :mod:`.model`)."""

from .. import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "PCA": "model",
})
