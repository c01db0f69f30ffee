"""The in-memory bag-of-words corpus every topic-model app consumes.

A corpus is stored as one flat token array plus document offsets (CSR without the counts):
a word that occurs ``c`` times in a document appears ``c`` times in ``words``. This is the
layout a collapsed Gibbs sampler wants (one topic assignment per token, documents contiguous),
and slicing it into per-worker partitions or train/test splits never copies more than once.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ..errors import ConfigError, DataFormatError
from ..persist.files import NPZ_ERRORS, atomic_write_bytes

_INT32_MAX = np.iinfo(np.int32).max
_FORMAT_VERSION = 1


@dataclass(eq=False)
class Corpus:
    """Documents as flat token ids with offsets.

    Attributes:
        doc_ptr: int64, shape ``(D + 1,)``; the tokens of doc ``d`` are
            ``words[doc_ptr[d]:doc_ptr[d + 1]]``.
        words: int32, shape ``(N,)``; the word id of every token, document-major.
        vocab: the word strings (``len(vocab) == num_words``) or ``None`` when unknown.
        num_words: vocabulary size ``V``; every word id is in ``[0, V)``. ``None`` means
            ``len(vocab)`` if a vocabulary is given, else ``max(words) + 1``.
    """

    doc_ptr: np.ndarray
    words: np.ndarray
    vocab: list[str] | None = None
    num_words: int | None = None

    def __post_init__(self) -> None:
        self.doc_ptr = _as_int_array(self.doc_ptr, "doc_ptr", np.int64)
        words = _as_int_array(self.words, "words", None)
        if self.vocab is not None:
            self.vocab = [str(w) for w in self.vocab]
        self.num_words = self._resolve_num_words(words)
        if words.size and (words.min() < 0 or words.max() >= self.num_words):
            bad = int(words.min()) if words.min() < 0 else int(words.max())
            raise DataFormatError(
                f"corpus: word id {bad} is outside the vocabulary [0, {self.num_words})"
            )
        self.words = np.ascontiguousarray(words, dtype=np.int32)
        self._check_doc_ptr()

    def _resolve_num_words(self, words: np.ndarray) -> int:
        inferred = int(words.max()) + 1 if words.size else 0
        if self.vocab is not None:
            if self.num_words is not None and int(self.num_words) != len(self.vocab):
                raise DataFormatError(
                    f"corpus: num_words={self.num_words} but the vocabulary has "
                    f"{len(self.vocab)} words"
                )
            num_words = len(self.vocab)
        elif self.num_words is None:
            num_words = inferred
        else:
            num_words = int(self.num_words)
        if num_words < 0 or num_words > _INT32_MAX:
            raise DataFormatError(f"corpus: num_words={num_words} must be in [0, 2**31)")
        return num_words

    def _check_doc_ptr(self) -> None:
        ptr = self.doc_ptr
        if ptr.ndim != 1 or ptr.size < 1:
            raise DataFormatError("corpus: doc_ptr must be 1-D with at least one entry (0)")
        if self.words.ndim != 1:
            raise DataFormatError(f"corpus: words must be 1-D, got shape {self.words.shape}")
        if ptr[0] != 0:
            raise DataFormatError(f"corpus: doc_ptr must start at 0, starts at {ptr[0]}")
        if ptr[-1] != self.words.size:
            raise DataFormatError(
                f"corpus: doc_ptr ends at {ptr[-1]} but there are {self.words.size} tokens"
            )
        steps = np.diff(ptr)
        if steps.size and steps.min() < 0:
            d = int(np.argmax(steps < 0))
            raise DataFormatError(
                f"corpus: doc_ptr decreases at document {d} ({ptr[d]} -> {ptr[d + 1]})"
            )

    # ------------------------------------------------------------------ basic views
    @property
    def num_docs(self) -> int:
        return int(self.doc_ptr.size - 1)

    @property
    def num_tokens(self) -> int:
        return int(self.words.size)

    @property
    def doc_lengths(self) -> np.ndarray:
        """Tokens per document (int64, shape ``(D,)``)."""
        return np.diff(self.doc_ptr)

    def doc(self, d: int) -> np.ndarray:
        """Word ids of document ``d`` (a view, not a copy)."""
        d = int(d)
        if not 0 <= d < self.num_docs:
            raise IndexError(f"document {d} out of range [0, {self.num_docs})")
        return self.words[self.doc_ptr[d]:self.doc_ptr[d + 1]]

    def doc_ids(self) -> np.ndarray:
        """Document index of every token (int64, shape ``(N,)``)."""
        return np.repeat(np.arange(self.num_docs, dtype=np.int64), self.doc_lengths)

    def word_counts(self) -> np.ndarray:
        """Tokens per word id (int64, shape ``(V,)``)."""
        return np.bincount(self.words, minlength=self.num_words).astype(np.int64, copy=False)

    def __repr__(self) -> str:
        return (f"Corpus(num_docs={self.num_docs}, num_words={self.num_words}, "
                f"num_tokens={self.num_tokens}, vocab={'yes' if self.vocab else 'no'})")

    # ------------------------------------------------------------------ slicing
    def subset(self, doc_ids: Sequence[int] | np.ndarray) -> Corpus:
        """The documents ``doc_ids`` (in that order) as a new corpus with the same vocabulary."""
        ids = np.asarray(doc_ids)
        if ids.dtype == bool:
            if ids.shape != (self.num_docs,):
                raise ConfigError(
                    f"subset: boolean mask has shape {ids.shape}, expected ({self.num_docs},)"
                )
            ids = np.flatnonzero(ids)
        if ids.size == 0:
            ids = ids.astype(np.int64)
        if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
            raise ConfigError("subset: doc_ids must be a 1-D array of integer document indices")
        if ids.size and (ids.min() < 0 or ids.max() >= self.num_docs):
            raise ConfigError(
                f"subset: document index out of range [0, {self.num_docs}): "
                f"{int(ids.min()) if ids.min() < 0 else int(ids.max())}"
            )
        starts = self.doc_ptr[ids]
        lengths = self.doc_ptr[ids + 1] - starts
        new_ptr = np.zeros(ids.size + 1, dtype=np.int64)
        np.cumsum(lengths, out=new_ptr[1:])
        gather = np.repeat(starts - new_ptr[:-1], lengths) + np.arange(new_ptr[-1])
        return Corpus(new_ptr, self.words[gather], self.vocab, self.num_words)

    def split(self, test_fraction: float, seed: int) -> tuple[Corpus, Corpus]:
        """Random split by documents into ``(train, test)``; each keeps the original doc order.

        The test set gets ``round(test_fraction * D)`` documents, at least one and at most
        ``D - 1``, so neither side is empty.
        """
        if not 0.0 < float(test_fraction) < 1.0:
            raise ConfigError(f"split: test_fraction must be in (0, 1), got {test_fraction}")
        if self.num_docs < 2:
            raise ConfigError(f"split: need at least 2 documents, corpus has {self.num_docs}")
        n_test = int(np.clip(round(test_fraction * self.num_docs), 1, self.num_docs - 1))
        perm = np.random.default_rng(seed).permutation(self.num_docs)
        is_test = np.zeros(self.num_docs, dtype=bool)
        is_test[perm[:n_test]] = True
        return self.subset(~is_test), self.subset(is_test)

    def partition_bounds(self, parts: int) -> np.ndarray:
        """Document boundaries ``b`` (``parts + 1`` of them) of the token-balanced partition."""
        parts = int(parts)
        if parts < 1:
            raise ConfigError(f"partition: parts must be >= 1, got {parts}")
        if parts > self.num_docs:
            raise ConfigError(
                f"partition: cannot split {self.num_docs} documents into {parts} non-empty parts"
            )
        targets = self.num_tokens * np.arange(1, parts) / parts
        right = np.searchsorted(self.doc_ptr, targets, side="left")  # first ptr >= target
        left = np.maximum(right - 1, 0)
        nearer_left = (targets - self.doc_ptr[left]) < (self.doc_ptr[right] - targets)
        cand = np.where(nearer_left, left, right)
        bounds = np.empty(parts + 1, dtype=np.int64)
        bounds[0], bounds[-1] = 0, self.num_docs
        for k in range(1, parts):  # at most `parts` steps: keep every part non-empty
            bounds[k] = min(max(cand[k - 1], bounds[k - 1] + 1), self.num_docs - (parts - k))
        return bounds

    def partition(self, parts: int) -> list[Corpus]:
        """Split into ``parts`` contiguous document ranges with nearly equal token counts.

        Each boundary is the document boundary nearest to ``k * N / parts``, so a part differs
        from ``N / parts`` tokens by at most about one document; every part has >= 1 document.
        """
        b = self.partition_bounds(parts)
        return [self.subset(np.arange(b[k], b[k + 1])) for k in range(len(b) - 1)]

    def halves(self, seed: int) -> tuple[Corpus, Corpus]:
        """Document completion split: ``(observed, held_out)`` with the same documents.

        Each document's tokens are shuffled (seeded) and cut in two: the first
        ``ceil(n / 2)`` are observed, the remaining ``floor(n / 2)`` held out. Document ``d``
        of both halves is document ``d`` of this corpus.
        """
        rng = np.random.default_rng(seed)
        doc = self.doc_ids()
        order = np.lexsort((rng.random(self.num_tokens), doc))  # shuffle within each doc
        pos = np.arange(self.num_tokens) - self.doc_ptr[:-1][doc]
        lengths = self.doc_lengths
        n_obs = lengths - lengths // 2
        observed = pos < n_obs[doc]
        shuffled = self.words[order]
        ptr_obs = np.zeros_like(self.doc_ptr)
        np.cumsum(n_obs, out=ptr_obs[1:])
        ptr_held = np.zeros_like(self.doc_ptr)
        np.cumsum(lengths // 2, out=ptr_held[1:])
        return (Corpus(ptr_obs, shuffled[observed], self.vocab, self.num_words),
                Corpus(ptr_held, shuffled[~observed], self.vocab, self.num_words))

    # ------------------------------------------------------------------ conversions
    @classmethod
    def from_doc_term(cls, matrix, vocab: Sequence[str] | None = None) -> Corpus:
        """Build from a docs x words matrix of non-negative integer counts (sparse or dense)."""
        if sp.issparse(matrix):
            m = sp.csr_matrix(matrix)
        else:
            arr = np.asarray(matrix)
            if arr.ndim != 2:
                raise DataFormatError(f"doc-term matrix must be 2-D, got shape {arr.shape}")
            m = sp.csr_matrix(arr)
        data = m.data
        if data.dtype.kind not in "iub":
            if data.dtype.kind != "f":
                raise DataFormatError(f"doc-term matrix has non-numeric dtype {data.dtype}")
            bad = ~np.isfinite(data) | (data != np.round(data))
            if bad.any():
                i = int(np.argmax(bad))
                raise DataFormatError(
                    f"doc-term matrix: counts must be integers; entry (doc "
                    f"{_row_of(m, i)}, word {m.indices[i]}) is {data[i]}"
                )
        if data.size and data.min() < 0:
            i = int(np.argmin(data))
            raise DataFormatError(
                f"doc-term matrix: counts must be non-negative; entry (doc {_row_of(m, i)}, "
                f"word {m.indices[i]}) is {data[i]}"
            )
        counts = data.astype(np.int64)
        if vocab is not None and len(vocab) != m.shape[1]:
            raise DataFormatError(
                f"doc-term matrix has {m.shape[1]} columns but the vocabulary has "
                f"{len(vocab)} words"
            )
        words = np.repeat(m.indices.astype(np.int32), counts)
        before = np.zeros(counts.size + 1, dtype=np.int64)  # tokens before each nonzero
        np.cumsum(counts, out=before[1:])
        doc_ptr = before[m.indptr]
        return cls(doc_ptr, words, list(vocab) if vocab is not None else None, m.shape[1])

    def to_doc_term(self) -> sp.csr_matrix:
        """The docs x words count matrix (int64, canonical CSR: sorted, no duplicates)."""
        m = sp.csr_matrix(
            # copies: scipy may keep these arrays and sum_duplicates sorts them in place
            (np.ones(self.num_tokens, dtype=np.int64), self.words.copy(), self.doc_ptr.copy()),
            shape=(self.num_docs, self.num_words),
        )
        m.sum_duplicates()
        return m

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> None:
        """Write an ``.npz`` (no pickle) atomically: a temp file beside ``path``, renamed."""
        meta = {"format": "stalesync-corpus", "version": _FORMAT_VERSION,
                "num_words": self.num_words, "has_vocab": self.vocab is not None}
        arrays = {"doc_ptr": self.doc_ptr, "words": self.words,
                  "meta": np.array(json.dumps(meta))}
        if self.vocab is not None:
            arrays["vocab"] = np.array(self.vocab, dtype=str)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Corpus:
        """Read a corpus written by :meth:`save`."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                if meta.get("format") != "stalesync-corpus":
                    raise DataFormatError(f"{path}: not a stalesync corpus file")
                vocab = z["vocab"].tolist() if meta["has_vocab"] else None
                return cls(z["doc_ptr"], z["words"], vocab, meta["num_words"])
        except NPZ_ERRORS as exc:
            if isinstance(exc, DataFormatError):
                raise
            raise DataFormatError(f"{path}: not a readable stalesync corpus file ({exc})") from None


def _as_int_array(arr, name: str, dtype) -> np.ndarray:
    a = np.asarray(arr)
    if a.size == 0 and a.dtype.kind == "f":
        a = a.astype(np.int64)
    if a.dtype.kind not in "iu":
        raise DataFormatError(f"corpus: {name} must be an integer array, got dtype {a.dtype}")
    return np.ascontiguousarray(a, dtype=dtype) if dtype is not None else a


def _row_of(m: sp.csr_matrix, i: int) -> int:
    return int(np.searchsorted(m.indptr, i, side="right") - 1)
