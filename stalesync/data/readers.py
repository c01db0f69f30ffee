"""Readers for the bag-of-words formats users already have, each returning a :class:`Corpus`.

Formats: UCI ``docword``/``vocab`` (NYTimes, PubMed, KOS, NIPS, Enron), LDA-C
(``N id:count ...``), libsvm/svmlight (``label id:count ...``), raw text (one document per
line, or a directory of ``.txt`` files), ``.npz`` (a saved Corpus or scipy sparse matrix),
and a scipy sparse matrix in memory (:meth:`Corpus.from_doc_term`). The numeric formats
are parsed by :mod:`.scan`; :func:`stalesync.data.load.load_corpus` picks the reader.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataFormatError
from .corpus import Corpus
from .scan import PathLike, _chunks, _open, _Scan, _scan, _Where, strip_gz

__all__ = ["read_uci", "read_ldac", "read_libsvm", "read_text", "read_vocab", "read_npz",
           "READERS"]


def read_vocab(path: PathLike) -> list[str]:
    """One word per line (UCI ``vocab.*.txt``, LDA-C ``.tokens``); trailing blank lines ignored."""
    with _open(path) as f:
        raw = f.read()
    try:
        lines = raw.decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise DataFormatError(f"{path}, line {line}: not valid UTF-8") from None
    while lines and not lines[-1].strip():
        lines.pop()
    words = [w.strip() for w in lines]
    for i, w in enumerate(words):
        if not w:
            raise DataFormatError(f"{path}, line {i + 1}: empty word in the vocabulary")
        if len(w.split()) != 1:
            raise DataFormatError(f"{path}, line {i + 1}: expected one word, got {w!r}")
    return words


def _resolve_vocab(vocab, candidates: Sequence[Path]) -> list[str] | None:
    if vocab is None or vocab is False:
        return None
    if isinstance(vocab, str) and vocab == "auto":
        found = [c for c in candidates if c.is_file()]
        return read_vocab(found[0]) if found else None
    if isinstance(vocab, str | os.PathLike):
        return read_vocab(vocab)
    return [str(w) for w in vocab]


# ====================================================================== UCI
def _uci_vocab_candidates(path: Path) -> list[Path]:
    name = strip_gz(path.name)
    if not name.startswith("docword."):
        return []
    vocab = "vocab." + name[len("docword."):]
    return [path.with_name(vocab), path.with_name(vocab + ".gz")]


def read_uci(path: PathLike, vocab="auto") -> Corpus:
    """UCI bag-of-words: ``docword.NAME.txt[.gz]`` (header lines D, W, NNZ, then
    ``docID wordID count`` with 1-based ids), plus the vocabulary.

    ``vocab``: ``"auto"`` (use ``vocab.NAME.txt`` beside the file if present), a path, a list
    of words, or ``None``. Documents that have no entries are kept as empty documents.
    """
    path = Path(path)
    words_list = _resolve_vocab(vocab, _uci_vocab_candidates(path))
    with _open(path) as f:
        header = _uci_header(f, path)
        n_docs, n_words, nnz = header
        if words_list is not None and len(words_list) != n_words:
            raise DataFormatError(f"{path}, line 2: the header says W={n_words} words but the "
                                  f"vocabulary has {len(words_list)}")
        docs, wids, counts = [], [], []
        seen, last_line = 0, 3
        for first, chunk in _chunks(f, 3):
            where = _Where(path, first)
            s = _scan(chunk, where, allow_colon=False)
            per_line = s.tokens_per_line()
            bad = (per_line != 3) & (per_line != 0)
            if bad.any():
                i = int(np.argmax(bad))
                raise where.error(i, f"expected 3 fields 'docID wordID count', got {per_line[i]}")
            triples = s.values.reshape(-1, 3)
            entry_line = s.token_line[::3]
            if seen + len(triples) > nnz:
                extra = nnz - seen
                raise where.error(int(entry_line[extra]),
                                  f"more entries than the header's NNZ={nnz}")
            _check_range(triples[:, 0], 1, n_docs, entry_line, where, "docID", "D")
            _check_range(triples[:, 1], 1, n_words, entry_line, where, "wordID", "W")
            docs.append(triples[:, 0].astype(np.int32))
            wids.append(triples[:, 1].astype(np.int32))
            counts.append(triples[:, 2])
            seen += len(triples)
            last_line = first + s.n_lines
    if seen < nnz:
        raise DataFormatError(f"{path}, line {last_line + 1}: file ends after {seen} entries but "
                              f"the header says NNZ={nnz} (truncated file?)")
    return _from_triples(_cat(docs, np.int32), _cat(wids, np.int32) - 1,
                         _cat(counts, np.int64), n_docs, n_words, words_list, one_based=True)


UCI_HEADER_LIMITS = (2**31 - 1, 2**31 - 1, 2**62)  # ids are int32; counts int64


def _uci_header(f, path: Path) -> tuple[int, int, int]:
    values = []
    for i, (name, limit) in enumerate(zip(("D (number of documents)", "W (vocabulary size)",
                                           "NNZ (number of entries)"), UCI_HEADER_LIMITS,
                                          strict=True)):
        line = f.readline()
        text = line.decode("utf-8", "replace").strip()
        if not line:
            raise DataFormatError(f"{path}, line {i + 1}: file ends inside the 3-line header "
                                  f"(expected {name})")
        if not text.isdigit():
            raise DataFormatError(f"{path}, line {i + 1}: header line should be {name}, "
                                  f"a single non-negative integer; got {text[:40]!r}")
        if int(text) > limit:
            raise DataFormatError(f"{path}, line {i + 1}: {name} = {text[:40]} is larger "
                                  f"than this reader supports ({limit})")
        values.append(int(text))
    return values[0], values[1], values[2]


def _check_range(vals, lo, hi, lines, where: _Where, what: str, bound: str) -> None:
    bad = (vals < lo) | (vals > hi)
    if bad.any():
        i = int(np.argmax(bad))
        raise where.error(int(lines[i]), f"{what} {vals[i]} out of range [{lo}, {hi}] "
                                         f"(header {bound}={hi})")


def _cat(parts: list[np.ndarray], dtype) -> np.ndarray:
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype)


def _from_triples(docs, wids, counts, n_docs, n_words, vocab, one_based) -> Corpus:
    """Corpus from (doc, word, count) entries, any order, duplicates summed."""
    if one_based:
        docs = docs - 1
    if docs.size > 1 and np.any(docs[1:] < docs[:-1]):
        order = np.argsort(docs, kind="stable")
        docs, wids, counts = docs[order], wids[order], counts[order]
    words = np.repeat(wids, counts)
    # float weights are exact: a document has far fewer than 2**53 tokens
    per_doc = np.bincount(docs, weights=counts, minlength=n_docs).astype(np.int64)
    doc_ptr = np.zeros(n_docs + 1, dtype=np.int64)
    np.cumsum(per_doc, out=doc_ptr[1:])
    return Corpus(doc_ptr, words, vocab, n_words)


# ====================================================================== LDA-C and libsvm
def _ldac_vocab_candidates(path: Path) -> list[Path]:
    stem = Path(strip_gz(str(path)))
    base = stem.with_suffix("") if stem.suffix else stem
    return [base.with_suffix(".tokens"), base.with_suffix(".vocab"),
            Path(str(base) + ".vocab.txt"), path.with_name("vocab.txt")]


def read_ldac(path: PathLike, vocab="auto", num_words: int | None = None) -> Corpus:
    """LDA-C (Blei's lda-c, guidedlda): one document per line, ``N id:count id:count ...``.

    Ids are 0-based and ``N`` must equal the number of ``id:count`` pairs on the line. An empty
    document is the line ``0``. ``vocab="auto"`` looks for ``STEM.tokens``, ``STEM.vocab``,
    ``STEM.vocab.txt`` or ``vocab.txt`` beside the file.
    """
    path = Path(path)
    vocab_list = _resolve_vocab(vocab, _ldac_vocab_candidates(path))
    return _read_pairs(path, vocab_list, num_words, libsvm=False, index_base=0)


def read_libsvm(path: PathLike, vocab=None, num_words: int | None = None,
                index_base: int | str = 1) -> Corpus:
    """libsvm/svmlight: ``label id:count id:count ... [# comment]``; the label is ignored.

    ``index_base``: 1 (default, the libsvm convention: feature ids start at 1, so id ``i`` is
    word ``i - 1``), 0 (ids are word ids as written), or ``"auto"`` (0 if any id 0 occurs, else
    1, like scikit-learn's ``load_svmlight_file``). Blank and comment-only lines are skipped,
    every other line is one document. Counts must be non-negative integers.
    """
    if index_base not in (0, 1, "auto"):
        raise ConfigError(f"index_base must be 0, 1 or 'auto', got {index_base!r}")
    vocab_list = _resolve_vocab(vocab, [])
    return _read_pairs(Path(path), vocab_list, num_words, libsvm=True, index_base=index_base)


def _read_pairs(path: Path, vocab, num_words, libsvm: bool, index_base) -> Corpus:
    if vocab is not None and num_words is not None and num_words != len(vocab):
        raise ConfigError(f"num_words={num_words} but the vocabulary has {len(vocab)} words")
    limit = len(vocab) if vocab is not None else num_words
    ids_parts, count_parts, line_parts, length_parts = [], [], [], []
    first_blank, last_line = None, -1
    with _open(path) as f:
        for first, chunk in _chunks(f, 0):
            where = _Where(path, first)
            s = _scan(chunk, where, allow_colon=True, libsvm=libsvm)
            per_line = s.tokens_per_line()
            doc_lines = s.label_lines if libsvm else np.flatnonzero(per_line > 0)
            if doc_lines.size:
                last_line = first + int(doc_lines[-1])
            if not libsvm and first_blank is None and doc_lines.size < s.n_lines:
                first_blank = first + int(np.argmin(per_line > 0))
            ids, counts, lengths, pair_lines = _pairs_of_chunk(s, where, per_line, doc_lines,
                                                               libsvm)
            ids_parts.append(ids)
            count_parts.append(counts)
            line_parts.append(pair_lines + first)
            length_parts.append(lengths)
    if first_blank is not None and first_blank < last_line:
        raise DataFormatError(f"{path}, line {first_blank + 1}: empty line (an empty document "
                              "is written as '0'; only trailing blank lines are allowed)")
    ids, pair_lines = _cat(ids_parts, np.int64), _cat(line_parts, np.int64)
    base = _index_base(index_base, ids, pair_lines, path) if libsvm else 0
    ids -= base
    n_words = limit if limit is not None else (int(ids.max()) + 1 if ids.size else 0)
    if limit is not None:
        bad = ids >= limit
        if bad.any():
            i = int(np.argmax(bad))
            raise DataFormatError(
                f"{path}, line {pair_lines[i] + 1}: word id {ids[i] + base} out of range "
                f"[{base}, {limit - 1 + base}] of the {limit}-word vocabulary")
    counts = _cat(count_parts, np.int64)
    pairs_per_doc = _cat(length_parts, np.int64)
    docs = np.repeat(np.arange(pairs_per_doc.size, dtype=np.int64), pairs_per_doc)
    return _from_triples(docs, ids.astype(np.int32), counts, pairs_per_doc.size, n_words,
                         vocab, one_based=False)


def _pairs_of_chunk(s: _Scan, where: _Where, per_line, doc_lines, libsvm: bool):
    """Split a chunk's integers into (ids, counts, pairs per document, line of each pair)."""
    first_tok = s.first_token_of_line()[doc_lines]
    expected = np.ones(s.token_colons.size, dtype=np.int64)
    if not libsvm:  # libsvm labels are blanked out already, so every token is a pair
        expected[first_tok] = 0
    bad = s.token_colons != expected
    if bad.any():
        t = int(np.argmax(bad))
        problem = ("the first field must be N, the number of id:count pairs"
                   if expected[t] == 0 else "expected an id:count pair")
        raise where.error(int(s.token_line[t]), problem)
    pair_lines = s.token_line[expected == 1]
    if libsvm:
        return s.values[0::2], s.values[1::2], per_line[doc_lines], pair_lines
    first_int = np.searchsorted(s.int_token, first_tok)
    declared = s.values[first_int]
    lengths = per_line[doc_lines] - 1
    wrong = declared != lengths
    if wrong.any():
        i = int(np.argmax(wrong))
        raise where.error(int(doc_lines[i]), f"N={declared[i]} but the line has {lengths[i]} "
                                             "id:count pairs")
    keep = np.ones(s.values.size, dtype=bool)
    keep[first_int] = False
    vals = s.values[keep]
    return vals[0::2], vals[1::2], lengths, pair_lines


def _index_base(index_base, ids: np.ndarray, pair_lines: np.ndarray, path) -> int:
    has_zero = ids.size > 0 and ids.min() == 0
    if index_base == "auto":
        return 0 if has_zero else 1
    if index_base == 1 and has_zero:
        line = int(pair_lines[np.argmin(ids)]) + 1
        raise DataFormatError(f"{path}, line {line}: id 0 in a 1-based file; pass "
                              "index_base=0 (or 'auto') for 0-based ids")
    return int(index_base)


# ====================================================================== raw text
def read_text(path: PathLike, vocab: Sequence[str] | None = None, drop_empty: bool = False,
              **tokenizer_options) -> Corpus:
    """Raw text: a file with one document per line, or a directory of ``.txt`` files (one
    document each, in file-name order). Tokenized by :class:`stalesync.data.text.Tokenizer`
    (options such as ``pattern``, ``stop_words``, ``min_df``, ``max_df`` pass through)."""
    from .text import Tokenizer

    texts = _read_texts(Path(path))
    return Tokenizer(**tokenizer_options).corpus(texts, vocab=vocab, drop_empty=drop_empty)


def _read_texts(path: Path) -> list[str]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix == ".txt" and p.is_file())
        if not files:
            raise DataFormatError(f"{path}: directory holds no .txt files")
        return [_decode(p.read_bytes(), p) for p in files]
    with _open(path) as f:
        text = _decode(f.read(), path)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _decode(raw: bytes, path: Path) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise DataFormatError(f"{path}, line {line}: not valid UTF-8 text") from None


# ====================================================================== sniffing and dispatch


def read_npz(path: PathLike, vocab=None) -> Corpus:
    """A corpus saved by :meth:`Corpus.save`, or a scipy sparse matrix saved by ``save_npz``."""
    import scipy.sparse as sp

    from ..persist.files import NPZ_ERRORS

    try:
        with np.load(path, allow_pickle=False) as z:
            is_corpus = "doc_ptr" in z.files
    except NPZ_ERRORS as exc:
        raise DataFormatError(f"{path}: not a readable .npz file ({exc})") from None
    if is_corpus:
        corpus = Corpus.load(path)
        if vocab is not None:
            corpus = Corpus(corpus.doc_ptr, corpus.words, _resolve_vocab(vocab, []),
                            corpus.num_words)
        return corpus
    try:
        matrix = sp.load_npz(path)
    except NPZ_ERRORS as exc:
        raise DataFormatError(f"{path}: neither a stalesync corpus nor a scipy sparse "
                              f"matrix ({exc})") from None
    return Corpus.from_doc_term(matrix, _resolve_vocab(vocab, []))


READERS = {"uci": read_uci, "ldac": read_ldac, "libsvm": read_libsvm, "text": read_text,
           "npz": read_npz}
FORMATS = tuple(READERS)
