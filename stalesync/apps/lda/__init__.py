"""LDA topic models by collapsed Gibbs sampling on the parameter server."""

from .. import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "LDA": "model",
})
