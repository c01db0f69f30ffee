"""Mini-batch k-means, data-parallel on the parameter server (see docs/writing-an-app.md)."""

from .model import KMeans

__all__ = ["KMeans"]
