"""Turning raw text into a :class:`Corpus`: lowercase, regex tokens, stop words, frequency cuts.

Built on scikit-learn's ``CountVectorizer`` with a compiled regex ``findall`` per document as
the analyzer; stop words, short words and document-frequency cuts remove whole columns of the
resulting count matrix, so no Python code runs per token.
Token order inside a document is not kept: LDA only needs the bag of words.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer

from ..errors import ConfigError, DataFormatError
from .corpus import Corpus

__all__ = ["Tokenizer", "ENGLISH_STOP_WORDS"]


@dataclass
class Tokenizer:
    """Text-to-corpus settings.

    Attributes:
        pattern: regex whose matches are the tokens (applied after lowercasing).
        lowercase: lowercase before matching.
        stop_words: ``"english"`` (scikit-learn's ENGLISH_STOP_WORDS), ``None``, or a
            collection of words to drop.
        min_df: keep words in at least this many documents (int) or this fraction of them
            (float in (0, 1)).
        max_df: drop words in more than this fraction (float in (0, 1]) or number (int) of
            documents; ``1.0`` keeps everything.
        min_length: drop tokens shorter than this many characters.
    """

    pattern: str = r"[a-z]+"
    lowercase: bool = True
    stop_words: str | Iterable[str] | None = "english"
    min_df: int | float = 1
    max_df: int | float = 1.0
    min_length: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.min_df, float) and not 0.0 < self.min_df < 1.0:
            raise ConfigError(f"min_df as a fraction must be in (0, 1), got {self.min_df}")
        if isinstance(self.min_df, int) and self.min_df < 1:
            raise ConfigError(f"min_df as a document count must be >= 1, got {self.min_df}")
        if isinstance(self.max_df, float) and not 0.0 < self.max_df <= 1.0:
            raise ConfigError(f"max_df as a fraction must be in (0, 1], got {self.max_df}")
        if isinstance(self.max_df, int) and self.max_df < 1:
            raise ConfigError(f"max_df as a document count must be >= 1, got {self.max_df}")
        if int(self.min_length) < 1:
            raise ConfigError(f"min_length must be >= 1, got {self.min_length}")
        if isinstance(self.stop_words, str) and self.stop_words != "english":
            raise ConfigError(f"stop_words must be 'english', None or a list of words, "
                              f"got {self.stop_words!r}")
        try:
            re.compile(self.pattern)
        except re.error as exc:
            raise ConfigError(f"pattern {self.pattern!r} is not a valid regex: {exc}") from None

    def stop_word_set(self) -> frozenset[str]:
        if self.stop_words is None:
            return frozenset()
        if isinstance(self.stop_words, str):
            return ENGLISH_STOP_WORDS
        return frozenset(self.stop_words)

    def tokenize(self, text: str) -> list[str]:
        """The tokens of one document, in order, after stop-word and length filtering
        (document-frequency cuts need the whole collection, see :meth:`corpus`)."""
        stop, min_len = self.stop_word_set(), int(self.min_length)
        return [t for t in self._findall()(text) if t not in stop and len(t) >= min_len]

    def _findall(self):
        """Per-document analyzer: lowercase + one compiled ``findall`` (all in C)."""
        regex = re.compile(self.pattern)
        if self.lowercase:
            return lambda text: regex.findall(text.lower())
        return regex.findall

    def corpus(self, texts: Sequence[str], vocab: Sequence[str] | None = None,
               drop_empty: bool = False) -> Corpus:
        """Tokenize ``texts`` into a corpus.

        Without ``vocab`` the vocabulary is learnt: the sorted words that are not stop words,
        are at least ``min_length`` long and pass the document-frequency cuts. Filtering is
        done on whole vocabulary columns of the count matrix, never token by token. With
        ``vocab`` (e.g. the training vocabulary, for a test set) words outside it are dropped
        and no other filter applies. ``drop_empty`` removes documents left with no tokens
        (the default keeps them, so document ``d`` is ``texts[d]``).
        """
        texts = list(texts)
        bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
        if bad is not None:
            raise DataFormatError(f"document {bad} is {type(texts[bad]).__name__}, not text")
        if vocab is not None:
            vec = CountVectorizer(analyzer=self._findall(), vocabulary=list(vocab),
                                  dtype=np.int64)
            corpus = Corpus.from_doc_term(vec.transform(texts), list(vocab))
        else:
            corpus = self._learn(texts)
        if drop_empty:
            corpus = corpus.subset(np.flatnonzero(corpus.doc_lengths > 0))
        return corpus

    def _learn(self, texts: list[str]) -> Corpus:
        vec = CountVectorizer(analyzer=self._findall(), dtype=np.int64)
        try:
            matrix = vec.fit_transform(texts).tocsc()
        except ValueError:  # no token at all
            raise DataFormatError(f"tokenizing {len(texts)} documents: no token matches "
                                  f"{self.pattern!r}") from None
        words = vec.get_feature_names_out()
        keep = self._column_filter(words, np.diff(matrix.indptr), len(texts))
        if not keep.any():
            raise DataFormatError(f"tokenizing {len(texts)} documents: no word is left after "
                                  f"the stop-word, length and document-frequency filters "
                                  f"(min_df={self.min_df}, max_df={self.max_df})")
        return Corpus.from_doc_term(matrix[:, keep].tocsr(), words[keep].tolist())

    def _column_filter(self, words: np.ndarray, df: np.ndarray, n_docs: int) -> np.ndarray:
        """Which vocabulary columns to keep (scikit-learn's min_df/max_df semantics)."""
        min_count = self.min_df if isinstance(self.min_df, int) else self.min_df * n_docs
        max_count = self.max_df if isinstance(self.max_df, int) else self.max_df * n_docs
        keep = (df >= min_count) & (df <= max_count)
        if int(self.min_length) > 1:
            keep &= np.char.str_len(words.astype(str)) >= int(self.min_length)
        stop = self.stop_word_set()
        if stop:
            keep &= ~np.isin(words.astype(str), np.array(sorted(stop)))
        return keep
