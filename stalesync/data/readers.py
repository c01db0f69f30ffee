"""Readers for the bag-of-words formats users already have, each returning a :class:`Corpus`.

Formats: UCI ``docword``/``vocab`` (NYTimes, PubMed, KOS, NIPS, Enron), LDA-C
(``N id:count ...``), libsvm/svmlight (``label id:count ...``), raw text (one document per
line, or a directory of ``.txt`` files), and a scipy sparse matrix (:meth:`Corpus.from_doc_term`).

Why the parsing looks unusual: the numeric formats are parsed on the raw bytes with numpy
(digits, separators and line numbers found by array operations on ~16 MB chunks), not line
by line in Python. That parses the 6 MB NYT LDA-C file in a fraction of a second, scales to the
GB-sized UCI files, and still knows the exact line of every number, so a malformed line is
reported as ``FILE, line N: problem`` instead of a wrong answer.
"""

from __future__ import annotations

import gzip
import os
import re
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataFormatError
from .corpus import Corpus

__all__ = [
    "read_uci", "read_ldac", "read_libsvm", "read_text", "read_vocab", "load_corpus",
    "write_uci", "write_ldac", "write_libsvm", "sniff_format", "FORMATS",
]

FORMATS = ("uci", "ldac", "libsvm", "text", "npz")
_CHUNK_BYTES = 16 << 20
_MAX_DIGITS = 18  # anything longer could overflow int64
_POW10 = 10 ** np.arange(_MAX_DIGITS + 1, dtype=np.int64)
_WS_BYTES = b" \t\n\v\f\r"
_COLON, _NEWLINE, _HASH = 58, 10, 35

PathLike = str | os.PathLike


# ====================================================================== byte-level scanner
@dataclass
class _Scan:
    """Every integer in a chunk of lines, with the token and line it belongs to.

    A token is a maximal run of non-whitespace; a token may hold several integers separated
    by ``:`` (``id:count``). Lines are numbered from 0 within the chunk.
    """

    values: np.ndarray        # int64, every integer in order
    int_token: np.ndarray     # token index of each integer
    token_line: np.ndarray    # line index of each token
    token_colons: np.ndarray  # number of ':' in each token
    n_lines: int
    label_lines: np.ndarray | None = None  # libsvm: lines that hold a label (= documents)

    def tokens_per_line(self) -> np.ndarray:
        return np.bincount(self.token_line, minlength=self.n_lines)

    def first_token_of_line(self) -> np.ndarray:
        """Index of the first token of each line (meaningless for blank lines)."""
        return np.searchsorted(self.token_line, np.arange(self.n_lines))


class _Where:
    """Turns a chunk-local line index into ``FILE, line N: ...`` errors."""

    def __init__(self, path: PathLike, first_line: int) -> None:
        self.path, self.first_line = path, first_line

    def error(self, line: int, problem: str) -> DataFormatError:
        return DataFormatError(f"{self.path}, line {self.first_line + int(line) + 1}: {problem}")


def _line_text(buf: np.ndarray, nl: np.ndarray, line: int, limit: int = 60) -> str:
    start = 0 if line == 0 else int(nl[line - 1]) + 1
    end = int(nl[line]) if line < nl.size else buf.size
    text = bytes(buf[start:end]).decode("utf-8", "replace").strip()
    return text if len(text) <= limit else text[:limit] + "..."


def _token_at(buf: np.ndarray, pos: int) -> str:
    lo = pos
    while lo > 0 and buf[lo - 1] not in _WS_BYTES:
        lo -= 1
    hi = pos
    while hi < buf.size and buf[hi] not in _WS_BYTES:
        hi += 1
    return bytes(buf[lo:hi]).decode("utf-8", "replace")[:40]


def _ranges(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, e)`` for every pair, without a Python loop."""
    lengths = ends - starts
    offsets = np.zeros(lengths.size, dtype=np.int64)
    np.cumsum(lengths[:-1], out=offsets[1:])
    return np.repeat(starts - offsets, lengths) + np.arange(int(lengths.sum()))


def _newlines(buf: np.ndarray) -> tuple[np.ndarray, int]:
    nl = np.flatnonzero(buf == _NEWLINE)
    n_lines = nl.size + (1 if buf.size and buf[-1] != _NEWLINE else 0)
    return nl, n_lines


def _runs(body: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and (exclusive) end position of every run of True in ``body``."""
    if body.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    change = np.flatnonzero(body[1:] != body[:-1]) + 1
    if body[0]:
        change = np.concatenate(([0], change))
    if body[-1]:
        change = np.append(change, body.size)
    return change[0::2], change[1::2]


def _whitespace(buf: np.ndarray) -> np.ndarray:
    """Space, tab, newline, vertical tab, form feed, carriage return (arithmetic: fast)."""
    return (buf == 32) | ((buf - np.uint8(9)) <= np.uint8(4))


def _digits(buf: np.ndarray) -> np.ndarray:
    return (buf - np.uint8(48)) < np.uint8(10)


def _running_index(n: int, starts: np.ndarray) -> np.ndarray:
    """For every position, the index of the last run starting at or before it (-1 before any).

    One cumulative sum instead of a binary search per query: the scanner looks up millions.
    """
    flags = np.zeros(n, dtype=np.int32)
    flags[starts] = 1
    return np.cumsum(flags, dtype=np.int32) - 1


def _blank_out(buf: np.ndarray, positions: np.ndarray) -> np.ndarray:
    out = buf.copy()
    out[positions] = 32
    return out


def _mask_libsvm(buf: np.ndarray, where: _Where) -> tuple[np.ndarray, np.ndarray]:
    """Blank out ``# comments`` and the label (first token) of every line.

    Returns the masked bytes and the (sorted) indices of the lines that hold a label.
    """
    nl, _ = _newlines(buf)
    hashes = np.flatnonzero(buf == _HASH)
    if hashes.size:
        lines = np.searchsorted(nl, hashes)
        first = np.unique(lines, return_index=True)[1]
        line_end = np.append(nl, buf.size)[lines[first]]
        buf = _blank_out(buf, _ranges(hashes[first], line_end))
    starts, ends = _runs(~_whitespace(buf))
    if starts.size == 0:
        return buf, np.zeros(0, dtype=np.int64)
    lines = np.searchsorted(nl, starts)
    label_lines, first = np.unique(lines, return_index=True)
    label_start, label_end = starts[first], ends[first]
    label_bytes = _ranges(label_start, label_end)
    colons = label_bytes[buf[label_bytes] == _COLON]
    if colons.size:
        line = int(np.searchsorted(nl, colons[0]))
        field = _token_at(buf, int(colons[0]))
        raise where.error(line, f"missing label: the first field {field!r} should be the "
                                "label, then id:count pairs")
    return _blank_out(buf, label_bytes), label_lines


def _scan(data: bytes, where: _Where, allow_colon: bool, libsvm: bool = False) -> _Scan:
    """Find every non-negative integer in ``data``; reject any other character."""
    buf = np.frombuffer(data, dtype=np.uint8)
    label_lines = None
    if libsvm:
        buf, label_lines = _mask_libsvm(buf, where)
    nl, n_lines = _newlines(buf)
    ws, digit = _whitespace(buf), _digits(buf)
    colon = buf == _COLON
    ok = ws | digit | colon if allow_colon else ws | digit
    if not ok.all():
        pos = int(np.argmin(ok))
        line = int(np.searchsorted(nl, pos))
        what = "negative values are not allowed" if buf[pos] == ord("-") else \
            "expected a non-negative integer"
        raise where.error(line, f"{what}, got {_token_at(buf, pos)!r} "
                                f"(line: {_line_text(buf, nl, line)!r})")
    int_start, int_end = _runs(digit)
    long = (int_end - int_start) > _MAX_DIGITS
    if long.any():
        pos = int(int_start[np.argmax(long)])
        raise where.error(int(np.searchsorted(nl, pos)),
                          f"integer too large: {_token_at(buf, pos)!r}")
    values = _int_values(buf, digit, int_start, int_end)
    if not allow_colon:  # only digits and whitespace: every token is exactly one integer
        return _Scan(values, np.arange(values.size), np.searchsorted(nl, int_start),
                     np.zeros(values.size, np.int64), n_lines, label_lines)
    tok_start, _ = _runs(~ws)
    token_of_pos = _running_index(buf.size, tok_start)
    int_token = token_of_pos[int_start]
    token_colons = np.bincount(token_of_pos[np.flatnonzero(colon)], minlength=tok_start.size)
    ints_per_token = np.bincount(int_token, minlength=tok_start.size)
    bad = ints_per_token != token_colons + 1
    if bad.any():
        pos = int(tok_start[np.argmax(bad)])
        raise where.error(int(np.searchsorted(nl, pos)),
                          f"malformed field {_token_at(buf, pos)!r} (expected id:count)")
    return _Scan(values, int_token, np.searchsorted(nl, tok_start), token_colons, n_lines,
                 label_lines)


def _int_values(buf, digit, int_start, int_end) -> np.ndarray:
    """Decimal value of every digit run: sum of digit * 10**place, one reduceat."""
    dpos = np.flatnonzero(digit)  # the digits of one integer are contiguous in dpos
    if dpos.size == 0:
        return np.zeros(0, np.int64)
    n_digits = int_end - int_start
    first_digit = np.zeros(int_start.size, dtype=np.int64)
    np.cumsum(n_digits[:-1], out=first_digit[1:])
    power = np.repeat(int_end - 1, n_digits) - dpos
    contrib = (buf[dpos].astype(np.int64) - 48) * _POW10[power]
    return np.add.reduceat(contrib, first_digit)


# ====================================================================== file access
@contextmanager
def _open(path: PathLike) -> Iterator:
    """Open for binary reading (``.gz`` decompressed); read errors become DataFormatError."""
    p = Path(path)
    if not p.is_file():
        raise DataFormatError(f"{path}: no such file")
    try:
        with gzip.open(p, "rb") if p.name.endswith(".gz") else open(p, "rb") as f:
            yield f
    except (OSError, EOFError, zlib.error) as exc:  # unreadable, or a damaged .gz
        raise DataFormatError(f"{path}: cannot read ({exc})") from None


def _chunks(f, first_line: int) -> Iterator[tuple[int, bytes]]:
    """Yield ``(line number of the chunk's first line (0-based), bytes)``, cut at newlines."""
    chunk_bytes = _CHUNK_BYTES  # read at call time so tests can shrink it
    rest = b""
    line = first_line
    while True:
        block = f.read(chunk_bytes)
        if not block:
            break
        block = rest + block
        cut = block.rfind(b"\n") + 1
        if cut == 0:
            rest = block
            continue
        chunk, rest = block[:cut], block[cut:]
        yield line, chunk
        line += chunk.count(b"\n")
    if rest:
        yield line, rest


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


def _strip_gz(name: str) -> str:
    return name[:-3] if name.endswith(".gz") else name


# ====================================================================== UCI
def _uci_vocab_candidates(path: Path) -> list[Path]:
    name = _strip_gz(path.name)
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


def _uci_header(f, path: Path) -> tuple[int, int, int]:
    values = []
    for i, name in enumerate(("D (number of documents)", "W (vocabulary size)",
                              "NNZ (number of entries)")):
        line = f.readline()
        text = line.decode("utf-8", "replace").strip()
        if not line:
            raise DataFormatError(f"{path}, line {i + 1}: file ends inside the 3-line header "
                                  f"(expected {name})")
        if not text.isdigit():
            raise DataFormatError(f"{path}, line {i + 1}: header line should be {name}, "
                                  f"a single non-negative integer; got {text[:40]!r}")
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
    stem = Path(_strip_gz(str(path)))
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
_PAIR = re.compile(r"^\d+:\d+$")


def sniff_format(path: PathLike) -> str:
    """Guess the format from the file name, then from the first lines of the content."""
    p = Path(path)
    if p.is_dir():
        return "text"
    name = _strip_gz(p.name).lower()
    if name.startswith("docword."):
        return "uci"
    suffix = Path(name).suffix
    by_suffix = {".ldac": "ldac", ".lda-c": "ldac", ".svm": "libsvm", ".libsvm": "libsvm",
                 ".svmlight": "libsvm", ".npz": "npz"}
    if suffix in by_suffix:
        return by_suffix[suffix]
    with _open(p) as f:
        head = f.read(1 << 16).decode("utf-8", "replace").splitlines()[:20]
    return _sniff_lines([ln.split() for ln in head if ln.strip()])


def _sniff_lines(rows: list[list[str]]) -> str:
    if not rows:
        return "text"
    if len(rows) >= 3 and all(len(r) == 1 and r[0].isdigit() for r in rows[:3]):
        return "uci"
    pairs_ok = all(all(_PAIR.match(t) for t in r[1:]) for r in rows)
    if pairs_ok and all(r[0].isdigit() and int(r[0]) == len(r) - 1 for r in rows):
        return "ldac"
    if pairs_ok and all(":" not in r[0] for r in rows) and any(len(r) > 1 for r in rows):
        return "libsvm"
    return "text"


def load_corpus(path_or_name: PathLike, format: str = "auto", **options) -> Corpus:
    """Load a corpus from a file, a directory of text files, or a built-in dataset name.

    ``format``: ``"auto"`` (sniffed, see :func:`sniff_format`) or one of :data:`FORMATS`.
    Options go to the reader (``vocab``, ``index_base``, tokenizer options...). A name that is
    not an existing path is looked up in :func:`stalesync.data.datasets.load_dataset`.
    """
    from .datasets import DATASETS, load_dataset

    p = Path(path_or_name)
    if not p.exists():
        if str(path_or_name) in DATASETS:
            return load_dataset(str(path_or_name), **options)
        raise ConfigError(f"{path_or_name}: no such file or directory, and not a built-in "
                          f"dataset ({', '.join(DATASETS)})")
    fmt = sniff_format(p) if format == "auto" else format
    readers = {"uci": read_uci, "ldac": read_ldac, "libsvm": read_libsvm, "text": read_text,
               "npz": _read_npz}
    if fmt not in readers:
        raise ConfigError(f"unknown corpus format {format!r}; choose from auto, "
                          f"{', '.join(FORMATS)}")
    _check_options(fmt, readers[fmt], options)
    return readers[fmt](p, **options)


def _check_options(fmt: str, reader, options: dict) -> None:
    """Reject an option the reader does not take, with the list of those it does."""
    import inspect

    allowed = [n for n, prm in inspect.signature(reader).parameters.items()
               if prm.kind is not prm.VAR_KEYWORD][1:]
    if fmt == "text":
        from .text import Tokenizer

        allowed += list(inspect.signature(Tokenizer).parameters)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(f"format {fmt!r} does not take option(s) {', '.join(unknown)}; "
                          f"it takes: {', '.join(allowed)}")


def _read_npz(path: PathLike, vocab=None) -> Corpus:
    """A corpus saved by :meth:`Corpus.save`, or a scipy sparse matrix saved by ``save_npz``."""
    import zipfile

    import scipy.sparse as sp

    try:
        with np.load(path, allow_pickle=False) as z:
            is_corpus = "doc_ptr" in z.files
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataFormatError(f"{path}: not a readable .npz file ({exc})") from None
    if is_corpus:
        corpus = Corpus.load(path)
        if vocab is not None:
            corpus = Corpus(corpus.doc_ptr, corpus.words, _resolve_vocab(vocab, []),
                            corpus.num_words)
        return corpus
    try:
        matrix = sp.load_npz(path)
    except (OSError, ValueError, KeyError) as exc:
        raise DataFormatError(f"{path}: neither a stalesync corpus nor a scipy sparse "
                              f"matrix ({exc})") from None
    return Corpus.from_doc_term(matrix, _resolve_vocab(vocab, []))


# ====================================================================== writers
def _doc_pairs(corpus: Corpus):
    m = corpus.to_doc_term()
    for d in range(m.shape[0]):
        lo, hi = m.indptr[d], m.indptr[d + 1]
        yield m.indices[lo:hi], m.data[lo:hi]


def _write_lines(path: PathLike, lines) -> None:
    from ..files import atomic_write_bytes

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
