"""Corpus: construction checks, slicing invariants, doc-term conversion, save/load."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from stalesync.data.corpus import Corpus
from stalesync.errors import ConfigError, DataFormatError


def random_corpus(seed: int = 0, docs: int = 40, words: int = 25, max_len: int = 30) -> Corpus:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, max_len, size=docs)
    ptr = np.concatenate([[0], np.cumsum(lengths)])
    return Corpus(ptr, rng.integers(0, words, size=ptr[-1]), None, words)


def doc_multisets(c: Corpus) -> list[Counter]:
    return [Counter(c.doc(d).tolist()) for d in range(c.num_docs)]


# ---------------------------------------------------------------- construction
def test_basic_properties_and_dtypes():
    c = Corpus(np.array([0, 2, 2, 5], dtype=np.int32), [3, 1, 0, 0, 4], ["a", "b", "c", "d", "e"])
    assert c.doc_ptr.dtype == np.int64 and c.words.dtype == np.int32
    assert (c.num_docs, c.num_tokens, c.num_words) == (3, 5, 5)
    assert [c.doc(d).tolist() for d in range(3)] == [[3, 1], [], [0, 0, 4]]
    assert c.word_counts().tolist() == [2, 1, 0, 1, 1]
    assert c.doc_lengths.tolist() == [2, 0, 3]
    assert c.doc_ids().tolist() == [0, 0, 2, 2, 2]
    with pytest.raises(IndexError, match="out of range"):
        c.doc(3)


def test_num_words_inferred_or_given():
    assert Corpus([0, 3], [0, 7, 2]).num_words == 8
    assert Corpus([0, 3], [0, 7, 2], num_words=100).num_words == 100
    assert Corpus([0], []).num_words == 0


@pytest.mark.parametrize(("ptr", "words", "kwargs", "match"), [
    ([1, 3], [0, 1], {}, "start at 0"),
    ([0, 3], [0, 1], {}, "ends at 3 but there are 2 tokens"),
    ([0, 2, 1, 3], [0, 1, 2], {}, "decreases at document 1"),
    ([0, 2], [0, 5], {"num_words": 5}, "word id 5 is outside"),
    ([0, 2], [0, -1], {}, "word id -1 is outside"),
    ([0, 2], [0.0, 1.0], {}, "integer array"),
    ([0.0, 2.0], [0, 1], {}, "doc_ptr must be an integer"),
    ([0, 2], [0, 1], {"vocab": ["a", "b"], "num_words": 3}, "num_words=3 but the vocabulary"),
    ([0, 2], [0, 2], {"vocab": ["a", "b"]}, "word id 2 is outside"),
    ([], [], {}, "at least one entry"),
])
def test_construction_rejects_bad_input(ptr, words, kwargs, match):
    with pytest.raises(DataFormatError, match=match):
        Corpus(ptr, words, **kwargs)


# ---------------------------------------------------------------- subset / split
def test_subset_order_mask_and_errors():
    c = random_corpus(1)
    s = c.subset([5, 2, 5])
    assert s.num_docs == 3 and s.num_words == c.num_words
    for i, d in enumerate([5, 2, 5]):
        assert s.doc(i).tolist() == c.doc(d).tolist()
    mask = np.zeros(c.num_docs, dtype=bool)
    mask[[1, 3]] = True
    assert c.subset(mask).num_tokens == len(c.doc(1)) + len(c.doc(3))
    assert c.subset([]).num_docs == 0
    with pytest.raises(ConfigError, match="out of range"):
        c.subset([c.num_docs])
    with pytest.raises(ConfigError, match="boolean mask"):
        c.subset(np.ones(3, dtype=bool))


def test_split_is_a_seeded_partition_of_documents():
    c = random_corpus(2, docs=50)
    train, test = c.split(0.2, seed=7)
    assert (train.num_docs, test.num_docs) == (40, 10)
    assert train.num_tokens + test.num_tokens == c.num_tokens
    both = sorted(doc_multisets(train) + doc_multisets(test), key=lambda m: sorted(m.items()))
    assert both == sorted(doc_multisets(c), key=lambda m: sorted(m.items()))
    again = c.split(0.2, seed=7)
    assert np.array_equal(again[1].words, test.words)
    assert not np.array_equal(c.split(0.2, seed=8)[1].words, test.words)
    assert c.split(0.001, seed=0)[1].num_docs == 1  # never an empty side
    for bad in (0.0, 1.0, -0.5):
        with pytest.raises(ConfigError, match="test_fraction"):
            c.split(bad, seed=0)
    with pytest.raises(ConfigError, match="at least 2 documents"):
        c.subset([0]).split(0.5, seed=0)


# ---------------------------------------------------------------- partition
def check_partition(c: Corpus, parts: int) -> None:
    pieces = c.partition(parts)
    assert len(pieces) == parts
    assert all(p.num_docs >= 1 for p in pieces)
    assert np.array_equal(np.concatenate([p.words for p in pieces]), c.words)
    assert sum(p.num_docs for p in pieces) == c.num_docs
    bounds = c.partition_bounds(parts)
    assert bounds[0] == 0 and bounds[-1] == c.num_docs and np.all(np.diff(bounds) >= 1)
    if parts <= c.num_docs // 2:  # room to balance: each part within ~one document of N/parts
        slack = c.doc_lengths.max()
        for p in pieces:
            assert abs(p.num_tokens - c.num_tokens / parts) <= slack


@pytest.mark.parametrize("parts", [1, 2, 3, 7, 40])
def test_partition_contiguous_and_balanced(parts):
    check_partition(random_corpus(3, docs=40), parts)


def test_partition_balances_tokens_not_documents():
    lengths = np.array([100, 1, 1, 1, 1, 1, 1, 1, 1, 100])
    ptr = np.concatenate([[0], np.cumsum(lengths)])
    c = Corpus(ptr, np.zeros(ptr[-1], dtype=np.int32))
    assert [p.num_tokens for p in c.partition(2)] == [104, 104]
    with pytest.raises(ConfigError, match="cannot split 10 documents into 11"):
        c.partition(11)
    with pytest.raises(ConfigError, match="parts must be >= 1"):
        c.partition(0)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 20), min_size=1, max_size=30), st.integers(1, 30))
def test_partition_property(lengths, parts):
    parts = min(parts, len(lengths))
    ptr = np.concatenate([[0], np.cumsum(lengths)])
    c = Corpus(ptr, np.arange(ptr[-1]) % 5, num_words=5)
    check_partition(c, parts)


# ---------------------------------------------------------------- halves
def test_halves_split_each_document():
    c = random_corpus(4, docs=30)
    obs, held = c.halves(seed=3)
    assert obs.num_docs == held.num_docs == c.num_docs
    assert np.array_equal(obs.doc_lengths, c.doc_lengths - c.doc_lengths // 2)
    assert np.array_equal(held.doc_lengths, c.doc_lengths // 2)
    for d in range(c.num_docs):
        assert Counter(obs.doc(d).tolist()) + Counter(held.doc(d).tolist()) == \
            Counter(c.doc(d).tolist())
    again = c.halves(seed=3)
    assert np.array_equal(again[0].words, obs.words)
    assert not np.array_equal(c.halves(seed=4)[0].words, obs.words)


def test_halves_really_shuffles_within_documents():
    c = Corpus([0, 1000], np.arange(1000), num_words=1000)
    obs, held = c.halves(seed=0)
    assert obs.num_tokens == held.num_tokens == 500
    # an unshuffled cut would put ids 0..499 in the first half
    assert 150 < np.count_nonzero(obs.words < 500) < 350


# ---------------------------------------------------------------- doc-term
def test_doc_term_round_trip_sparse_and_dense():
    rng = np.random.default_rng(5)
    dense = rng.integers(0, 4, size=(12, 9)) * (rng.random((12, 9)) < 0.4)
    dense[3] = 0  # an empty document
    forms = (dense, sp.csr_matrix(dense), sp.coo_matrix(dense), sp.csc_matrix(dense * 1.0))
    for m in forms:
        c = Corpus.from_doc_term(m, vocab=[f"w{i}" for i in range(9)])
        words_before = c.words.copy()
        assert c.num_docs == 12 and c.num_words == 9 and c.num_tokens == dense.sum()
        assert c.doc(3).size == 0
        assert np.array_equal(c.to_doc_term().toarray(), dense)
        assert np.array_equal(c.words, words_before)  # to_doc_term must not reorder tokens
        assert np.array_equal(c.word_counts(), dense.sum(axis=0))
    dt = Corpus.from_doc_term(dense).to_doc_term()
    assert dt.has_canonical_format and dt.dtype == np.int64


def test_from_doc_term_duplicates_are_summed():
    m = sp.coo_matrix(([2, 3, 1], ([0, 0, 1], [1, 1, 0])), shape=(2, 3))
    c = Corpus.from_doc_term(m)
    assert c.doc(0).tolist() == [1] * 5 and c.doc(1).tolist() == [0]


@pytest.mark.parametrize(("matrix", "match"), [
    (np.array([[1.0, 0.5]]), r"counts must be integers; entry \(doc 0, word 1\) is 0.5"),
    (np.array([[1, 0], [0, -2]]), r"non-negative; entry \(doc 1, word 1\) is -2"),
    (np.array([1, 2]), "must be 2-D"),
    (np.array([[1, np.nan]]), "counts must be integers"),
])
def test_from_doc_term_rejects_bad_matrices(matrix, match):
    with pytest.raises(DataFormatError, match=match):
        Corpus.from_doc_term(matrix)


def test_from_doc_term_vocab_length_checked():
    with pytest.raises(DataFormatError, match="3 columns but the vocabulary has 2"):
        Corpus.from_doc_term(np.ones((2, 3), dtype=int), vocab=["a", "b"])


# ---------------------------------------------------------------- persistence
def test_save_load_round_trip(tmp_path):
    c = random_corpus(6)
    c = Corpus(c.doc_ptr, c.words, [f"wörd{i}" for i in range(c.num_words)])
    c.save(tmp_path / "c.npz")
    back = Corpus.load(tmp_path / "c.npz")
    assert np.array_equal(back.doc_ptr, c.doc_ptr) and np.array_equal(back.words, c.words)
    assert back.vocab == c.vocab and back.num_words == c.num_words
    no_vocab = Corpus([0, 2], [0, 3], num_words=10)
    no_vocab.save(tmp_path / "n.npz")
    assert Corpus.load(tmp_path / "n.npz").num_words == 10
    assert Corpus.load(tmp_path / "n.npz").vocab is None
    np.savez(tmp_path / "other.npz", x=np.arange(3))
    with pytest.raises(DataFormatError, match="other.npz"):
        Corpus.load(tmp_path / "other.npz")
