"""The compiled row kernels against their plain-numpy meaning, and the sparse row store
against the dense one (hypothesis, derandomized)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stalesync.errors import ConfigError
from stalesync.kernels.rows import (
    all_finite,
    gather_rows,
    row_deltas,
    scatter_add_rows,
    scatter_rows,
    take_and_zero_rows,
)
from stalesync.ps.row_batch import SparseRows, concat
from stalesync.ps.tables import DenseRowStore, SparseRowStore, TableSpec

shapes = st.tuples(st.integers(1, 30), st.integers(1, 12))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_all_finite_finds_one_bad_value_anywhere(dtype, bad):
    values = np.random.default_rng(0).normal(size=(37, 11)).astype(dtype) * 1e30
    assert all_finite(values) and all_finite(values[:, ::2]) and all_finite(values[:0])
    for pos in (0, 200, values.size - 1):
        spoiled = values.copy()
        spoiled.flat[pos] = bad
        assert not all_finite(spoiled)
    assert all_finite(np.full(5, np.iinfo(np.int64).max))  # integers are always finite


@settings(max_examples=60, derandomize=True, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**31), batch=st.integers(0, 50))
def test_gather_scatter_take_match_numpy(shape, seed, batch):
    rng = np.random.default_rng(seed)
    table = rng.integers(-5, 5, shape).astype(np.int64)
    rows = rng.integers(0, shape[0], batch)
    np.testing.assert_array_equal(gather_rows(table, rows), table[rows])
    deltas = rng.integers(-3, 3, (batch, shape[1])).astype(np.int64)
    expected = table.copy()
    np.add.at(expected, rows, deltas)  # repeated rows accumulate
    scatter_add_rows(table, rows, deltas)
    np.testing.assert_array_equal(table, expected)
    distinct = np.unique(rows)
    fresh = rng.integers(-9, 9, (distinct.size, shape[1])).astype(np.int64)
    overwritten = table.copy()
    overwritten[distinct] = fresh
    scatter_rows(table, distinct, fresh)
    np.testing.assert_array_equal(table, overwritten)
    expected = overwritten
    taken = take_and_zero_rows(table, distinct)
    np.testing.assert_array_equal(taken, expected[distinct])
    assert not table[distinct].any()


@settings(max_examples=60, derandomize=True, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**31), share=st.floats(0, 1))
def test_row_diffs_turn_old_into_new_and_name_only_changed_rows(shape, seed, share):
    """The dense diff (``row_deltas``) and the CSR one (``SparseRows.diff``) agree, and a
    CSR drain of an update log holding exactly the change gives it back."""
    rng = np.random.default_rng(seed)
    old = rng.integers(0, 9, shape).astype(np.int32)
    new = old.copy()
    touched = rng.random(shape) < share * 0.3
    new[touched] += rng.integers(1, 4, touched.sum()).astype(np.int32)
    changed, delta = row_deltas(new, old)
    np.testing.assert_array_equal(changed, np.flatnonzero(touched.any(axis=1)))
    rebuilt = old.copy()
    scatter_add_rows(rebuilt, changed, delta)
    np.testing.assert_array_equal(rebuilt, new)
    csr_changed, csr = SparseRows.diff(new, old)
    np.testing.assert_array_equal(csr_changed, changed)
    assert csr.nnz == touched.sum()  # only the changed entries travel
    np.testing.assert_array_equal(csr.to_dense(), delta)
    rebuilt = old.copy()
    csr.add_to(rebuilt, changed)
    np.testing.assert_array_equal(rebuilt, new)
    log = new - old
    np.testing.assert_array_equal(SparseRows.take_and_zero(log, changed).to_dense(), delta)
    assert not log.any()


@pytest.mark.parametrize("diff", [row_deltas, SparseRows.diff])
def test_row_diffs_reject_mismatched_shapes(diff):
    with pytest.raises(ValueError, match="one shape"):
        diff(np.zeros((2, 3)), np.zeros((3, 2)))


# -- the sparse row store -----------------------------------------------------------------
@st.composite
def increment_batches(draw):
    rows = draw(st.integers(1, 9))
    width = draw(st.integers(1, 12))
    dtype = draw(st.sampled_from(["int32", "int64", "float32", "float64"]))
    batches = []
    for _ in range(draw(st.integers(1, 25))):
        chosen = draw(st.lists(st.integers(0, rows - 1), min_size=0, max_size=rows,
                               unique=True))
        # small integers: exact in every dtype, and they often cancel an entry to zero
        values = draw(st.lists(st.integers(-2, 2), min_size=len(chosen) * width,
                               max_size=len(chosen) * width))
        batches.append((np.array(chosen, dtype=np.int64),
                        np.array(values, dtype=dtype).reshape(len(chosen), width)))
    return rows, width, dtype, batches


def _check_pool(store):
    """Every row's slice lies inside the pool, holds its entries, and overlaps no other."""
    used = np.flatnonzero(store.cap)
    assert (store.length <= store.cap).all()
    ends = store.start[used] + store.cap[used]
    assert (ends <= store.top).all() and store.top <= store.cols.size
    order = np.argsort(store.start[used])
    assert (store.start[used][order][1:] >= ends[order][:-1]).all()


@settings(max_examples=300, deadline=None, derandomize=True)
@given(increment_batches())
def test_sparse_and_dense_stores_agree_exactly(case):
    rows, width, dtype, batches = case
    spec = TableSpec("t", rows, width, dtype)
    dense, sparse = DenseRowStore(spec, rows), SparseRowStore(spec, rows)
    for i, (local, increments) in enumerate(batches):
        dense.apply(local, increments)
        # every other batch as CSR: both increment paths must agree with the dense store
        sparse.apply(local, SparseRows.from_dense(increments) if i % 2 else increments)
        np.testing.assert_array_equal(sparse.to_dense(), dense.values)
        np.testing.assert_array_equal(sparse.export().toarray(), dense.values)
        assert sparse.nnz == np.count_nonzero(dense.values)  # cancelled entries are freed
        _check_pool(sparse)
    pick = np.array([rows - 1, 0])
    np.testing.assert_array_equal(sparse.gather(pick), dense.gather(pick))
    np.testing.assert_array_equal(sparse.gather_sparse(pick).to_dense(), dense.gather(pick))
    again = SparseRowStore(spec, rows)
    again.load_dense(dense.values)
    np.testing.assert_array_equal(again.to_dense(), dense.values)
    assert again.nnz == np.count_nonzero(dense.values)
    from_csr = SparseRowStore(spec, rows)
    from_csr.load_dense(sparse.export())
    np.testing.assert_array_equal(from_csr.to_dense(), dense.values)
    # assign replaces rows, clear empties them
    fresh = np.arange(2 * width, dtype=dtype).reshape(2, width) % 3
    sparse.assign(np.array([0, rows - 1]) if rows > 1 else np.array([0]),
                  fresh[: min(rows, 2)])
    expected = dense.values.copy()
    expected[[0, rows - 1] if rows > 1 else [0]] = fresh[: min(rows, 2)]
    np.testing.assert_array_equal(sparse.to_dense(), expected)
    sparse.clear(np.arange(rows))
    assert sparse.nnz == 0 and not sparse.to_dense().any()


@settings(max_examples=100, deadline=None, derandomize=True)
@given(shape=shapes, seed=st.integers(0, 2**31))
def test_sparse_row_batches_match_their_dense_form(shape, seed):
    rng = np.random.default_rng(seed)
    dense = rng.integers(-2, 3, shape) * (rng.random(shape) < 0.3)
    batch = SparseRows.from_dense(dense)
    assert batch.shape == shape and batch.nnz == np.count_nonzero(dense)
    np.testing.assert_array_equal(batch.to_dense(), dense)
    pick = rng.integers(0, shape[0], 7)
    np.testing.assert_array_equal(batch.take(pick).to_dense(), dense[pick])
    np.testing.assert_array_equal(batch.take(slice(1, None)).to_dense(), dense[1:])
    both = concat([batch, batch.take(pick)], shape[1], dense.dtype)
    np.testing.assert_array_equal(both.to_dense(), np.vstack([dense, dense[pick]]))


def test_storage_is_declared_and_checked():
    assert not TableSpec("t", 10, 4).sparse
    assert TableSpec("t", 10, 4, storage="sparse").sparse
    assert TableSpec("big", 2**20, 256, "int32", storage="auto").sparse  # 1 GB dense
    assert not TableSpec("small", 100, 4, storage="auto").sparse
    assert not TableSpec("g", 2**20, 256, "float32", storage="auto", update="adam").sparse
    with pytest.raises(ConfigError, match="storage must be one of"):
        TableSpec("t", 1, 1, storage="compressed")
    with pytest.raises(ConfigError, match="needs the add rule"):
        TableSpec("t", 1, 1, storage="sparse", update="adagrad")
    assert TableSpec("t", 10, 4, cache_rows=3).sparse_cache
    assert not TableSpec("t", 10, 4, cache_rows=3).sparse  # the shards stay dense
    with pytest.raises(ConfigError, match="cache_rows must be a positive int"):
        TableSpec("t", 10, 4, cache_rows=0)
    with pytest.raises(ConfigError, match="compress works on dense tables only"):
        TableSpec("t", 10, 4, compress="topk:0.5", cache_rows=2)


def test_a_kernel_sent_to_another_process_keeps_its_on_disk_cache(tmp_path):
    """A worker program (a closure over a kernel) unpickled in a fresh process, as a Ray
    host does: the kernel it calls must be that module's own cached dispatcher, not one
    rebuilt from the Python function (which compiles again: seconds per kernel)."""
    import subprocess
    import sys

    import cloudpickle

    from stalesync.kernels.lda_dense import sweep_dense

    def program():
        return sweep_dense

    (tmp_path / "program.pkl").write_bytes(cloudpickle.dumps(program))
    check = (
        "import pickle, sys\n"
        "from stalesync.kernels import lda_dense\n"
        "from numba.core.caching import NullCache\n"
        "kernel = pickle.loads(open(sys.argv[1], 'rb').read())()\n"
        "print(kernel is lda_dense.sweep_dense, isinstance(kernel._cache, NullCache))\n"
    )
    out = subprocess.run([sys.executable, "-c", check, str(tmp_path / "program.pkl")],
                         capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False"]


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_rows_taken_and_columns_counted_on_threads_equal_scipy_and_numpy(monkeypatch, threads):
    """take_rows and column_counts split their work over threads above a size (lowered
    here so that a small matrix takes the threaded path): the same matrix and counts."""
    import scipy.sparse as sp

    import stalesync.kernels.csr as csr

    monkeypatch.setattr(csr, "PARALLEL_COPY_ENTRIES", 1)
    rng = np.random.default_rng(threads)
    X = sp.random(300, 50, density=0.1, format="csr", random_state=threads)
    rows = rng.permutation(300)[:250]
    taken = csr.take_rows(X, rows, threads=threads)
    expected = X[rows]
    np.testing.assert_array_equal(taken.indptr, expected.indptr)
    np.testing.assert_array_equal(taken.indices, expected.indices)
    np.testing.assert_array_equal(taken.data, expected.data)
    np.testing.assert_array_equal(csr.column_counts(X.indices, 50, threads),
                                  np.bincount(X.indices, minlength=50))
