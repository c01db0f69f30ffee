"""Every reader fuzzed: corruptions of valid files (truncation, bit flips, a garbage line,
a number replaced by a huge, negative, NaN or non-numeric one, CRLF, empty, binary noise).
A reader may accept a corrupted file (many corruptions leave a valid file) or refuse it,
but only with the project's own error, naming the file; never another exception type.

``FUZZ_CASES`` per reader here; the ``soak`` marker runs 20x as many."""

from __future__ import annotations

import gzip
import os
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stalesync.data.idx import read_idx
from stalesync.data.load import load_features
from stalesync.data.ratings import read_matrix_market, read_ratings
from stalesync.data.readers import read_ldac, read_libsvm, read_npz, read_uci
from stalesync.data.tabular import load_csv, load_svmlight
from stalesync.errors import StalesyncError

FUZZ_CASES = int(os.environ.get("STALESYNC_FUZZ_CASES", "500"))


def _counts(seed: int = 0, docs: int = 6, words: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 3, size=(docs, words)) * (rng.random((docs, words)) < 0.5)


def uci_bytes() -> bytes:
    m = _counts()
    rows = [f"{d + 1} {w + 1} {m[d, w]}" for d, w in zip(*np.nonzero(m), strict=True)]
    return "\n".join([str(m.shape[0]), str(m.shape[1]), str(len(rows)), *rows, ""]).encode()


def ldac_bytes() -> bytes:
    m = _counts()
    lines = []
    for row in m:
        nz = np.flatnonzero(row)
        lines.append(" ".join([str(nz.size), *(f"{w}:{row[w]}" for w in nz)]))
    return ("\n".join(lines) + "\n").encode()


def libsvm_bytes() -> bytes:
    m = _counts()
    return ("\n".join(" ".join([str(i % 2), *(f"{w + 1}:{m[i, w]}" for w in np.flatnonzero(r))])
                      for i, r in enumerate(m)) + "\n").encode()


def csv_bytes() -> bytes:
    rows = ["a,b,c,label", *(f"{i * 0.5},{i - 3},{i * i},{i % 2}" for i in range(8))]
    return ("\n".join(rows) + "\n").encode()


def ratings_bytes() -> bytes:
    return ("\n".join(f"{u}\t{i}\t{(u * i) % 5 + 1}" for u in range(1, 6)
                      for i in range(1, 5)) + "\n").encode()


def mm_bytes() -> bytes:
    entries = [(u, i, (u + i) % 5 + 1) for u in range(1, 5) for i in range(1, 4)]
    head = "%%MatrixMarket matrix coordinate real general\n4 3 12\n"
    return (head + "".join(f"{u} {i} {v}\n" for u, i, v in entries)).encode()


def idx_bytes() -> bytes:
    images = np.arange(3 * 4 * 4, dtype=np.uint8).reshape(3, 4, 4)
    return struct.pack(">BBBB", 0, 0, 0x08, 3) + struct.pack(">III", 3, 4, 4) + images.tobytes()


def npz_bytes() -> bytes:
    import io

    buf = io.BytesIO()
    np.savez(buf, X=np.arange(12.0).reshape(4, 3), y=np.array([0, 1, 0, 1]))
    return buf.getvalue()


def corpus_npz_bytes() -> bytes:
    import io

    import scipy.sparse as sp

    buf = io.BytesIO()
    sp.save_npz(buf, sp.csr_matrix(_counts()))
    return buf.getvalue()


READERS: dict[str, tuple[Callable[[], bytes], str, Callable[[Path], object]]] = {
    "uci": (uci_bytes, "docword.txt", lambda p: read_uci(p, vocab=None)),
    "ldac": (ldac_bytes, "corpus.ldac", lambda p: read_ldac(p, vocab=None)),
    "libsvm corpus": (libsvm_bytes, "corpus.svm", lambda p: read_libsvm(p)),
    "svmlight features": (libsvm_bytes, "train.svm", lambda p: load_svmlight(p)),
    "csv features": (csv_bytes, "table.csv", lambda p: load_csv(p, target="label")),
    "ratings tsv": (ratings_bytes, "ratings.tsv", lambda p: read_ratings(p)),
    "matrix market": (mm_bytes, "ratings.mtx", lambda p: read_matrix_market(p)),
    "idx": (idx_bytes, "images-idx3-ubyte", lambda p: read_idx(p)),
    "npz features": (npz_bytes, "data.npz", lambda p: load_features(p, "npz")),
    "npz corpus": (corpus_npz_bytes, "corpus.npz", lambda p: read_npz(p)),
}

TOKENS = [b"-1", b"0", b"99999999999999999999", b"nan", b"inf", b"-inf", b"1e309", b"x",
          b"3.5", b"", b":", b"::", b"1:2:3", b"\x00", b"\xff\xfe", b"-0", b"2147483648"]


@st.composite
def corruption(draw, data: bytes) -> bytes:
    kind = draw(st.sampled_from(["truncate", "flip", "line", "token", "crlf", "empty",
                                 "noise", "gzip-truncated", "repeat"]))
    if kind == "truncate":
        return data[:draw(st.integers(0, max(len(data) - 1, 0)))]
    if kind == "flip":
        out = bytearray(data)
        for _ in range(draw(st.integers(1, 4))):
            i = draw(st.integers(0, len(out) - 1))
            out[i] ^= 1 << draw(st.integers(0, 7))
        return bytes(out)
    if kind == "line":
        lines = data.split(b"\n")
        at = draw(st.integers(0, len(lines)))
        lines.insert(at, draw(st.binary(max_size=20)) + draw(st.sampled_from(TOKENS)))
        return b"\n".join(lines)
    if kind == "token":
        parts = data.replace(b"\n", b" \n ").split(b" ")
        i = draw(st.integers(0, len(parts) - 1))
        parts[i] = draw(st.sampled_from(TOKENS))
        return b" ".join(parts).replace(b" \n ", b"\n")
    if kind == "crlf":
        return data.replace(b"\n", b"\r\n")
    if kind == "empty":
        return b""
    if kind == "noise":
        return draw(st.binary(min_size=1, max_size=200))
    if kind == "gzip-truncated":
        packed = gzip.compress(data)
        return packed[:draw(st.integers(1, len(packed) - 1))]
    return data + data  # repeat: counts and headers no longer agree


def fuzz(name: str, cases: int) -> None:
    make, filename, read = READERS[name]
    valid = make()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / filename
        path.write_bytes(valid)
        read(path)  # the uncorrupted file reads

        @settings(max_examples=cases, deadline=None, derandomize=True,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
        @given(corruption(valid))
        def case(content: bytes) -> None:
            path.write_bytes(content)
            try:
                read(path)
            except StalesyncError as exc:
                assert path.name in str(exc), exc

        case()


@pytest.mark.parametrize("name", sorted(READERS))
def test_a_corrupted_file_is_read_or_refused_with_the_projects_error(name):
    fuzz(name, FUZZ_CASES)


@pytest.mark.soak
@pytest.mark.parametrize("name", sorted(READERS))
def test_fuzz_soak(name):
    fuzz(name, 20 * FUZZ_CASES)
