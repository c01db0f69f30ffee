"""Neural networks (PyTorch, CPU) trained data-parallel through the parameter server by any
strategy (see docs/nn.md). Needs the ``nn`` extra."""

from .. import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "NeuralNetClassifier": "model",
})
