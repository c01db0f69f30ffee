"""Neural networks (PyTorch, CPU) trained data-parallel through the parameter server by any
strategy (see docs/nn.md). Needs the ``nn`` extra."""

from .model import NeuralNetClassifier

__all__ = ["NeuralNetClassifier"]
