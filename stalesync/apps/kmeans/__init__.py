"""Mini-batch k-means, data-parallel on the parameter server (see docs/writing-an-app.md)."""

from .. import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "KMeans": "model",
})
