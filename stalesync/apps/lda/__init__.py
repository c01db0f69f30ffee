"""LDA topic models by collapsed Gibbs sampling on the parameter server."""

from .model import LDA

__all__ = ["LDA"]
