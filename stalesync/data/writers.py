"""Writers of the bag-of-words formats (for converting data and for tests; not hot paths)."""

from __future__ import annotations

import gzip

import numpy as np

from ..errors import ConfigError
from ..persist.files import atomic_write_bytes
from .corpus import Corpus
from .scan import PathLike

__all__ = ["write_ldac", "write_libsvm", "write_uci"]


def _doc_pairs(corpus: Corpus):
    m = corpus.to_doc_term()
    for d in range(m.shape[0]):
        lo, hi = m.indptr[d], m.indptr[d + 1]
        yield m.indices[lo:hi], m.data[lo:hi]


def _write_lines(path: PathLike, lines) -> None:
    data = "".join(line + "\n" for line in lines).encode()
    if str(path).endswith(".gz"):
        data = gzip.compress(data)
    atomic_write_bytes(path, data)


def write_ldac(corpus: Corpus, path: PathLike) -> None:
    """Write LDA-C (0-based ids); for converting and for tests, not a hot path."""
    _write_lines(path, (
        " ".join([str(len(ids))] + [f"{i}:{c}" for i, c in zip(ids, cnt, strict=True)])
        for ids, cnt in _doc_pairs(corpus)))


def write_libsvm(corpus: Corpus, path: PathLike, labels=None, index_base: int = 1) -> None:
    """Write libsvm lines ``label id:count ...`` (labels default to 0)."""
    labels = np.zeros(corpus.num_docs, dtype=np.int64) if labels is None else labels
    _write_lines(path, (
        " ".join([str(lab)] + [f"{i + index_base}:{c}" for i, c in zip(ids, cnt, strict=True)])
        for lab, (ids, cnt) in zip(labels, _doc_pairs(corpus), strict=True)))


def write_uci(corpus: Corpus, docword_path: PathLike, vocab_path: PathLike | None = None) -> None:
    """Write UCI ``docword`` (and ``vocab`` when the corpus has one)."""
    m = corpus.to_doc_term().tocoo()
    header = [str(corpus.num_docs), str(corpus.num_words), str(m.nnz)]
    body = (f"{d + 1} {w + 1} {c}" for d, w, c in zip(m.row, m.col, m.data, strict=True))
    _write_lines(docword_path, (*header, *body))
    if vocab_path is not None:
        if corpus.vocab is None:
            raise ConfigError("write_uci: the corpus has no vocabulary to write")
        _write_lines(vocab_path, corpus.vocab)
