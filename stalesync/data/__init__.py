"""Input data: corpora and their readers, datasets fetched with pip, ratings and tables."""

from .corpus import Corpus
from .datasets import load_dataset
from .readers import load_corpus

__all__ = ["Corpus", "load_corpus", "load_dataset"]
