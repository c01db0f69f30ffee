"""Data: corpora, ratings, feature tables, their readers, writers and built-in datasets."""

from .corpus import Corpus
from .datasets import load_dataset
from .load import load_corpus

__all__ = ["Corpus", "load_corpus", "load_dataset"]
