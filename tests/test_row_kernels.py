"""The compiled row kernels against their plain-numpy meaning (hypothesis, derandomized)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stalesync.kernels.rows import (
    gather_rows,
    row_deltas,
    scatter_add_rows,
    scatter_rows,
    take_and_zero_rows,
    unique_rows,
)

shapes = st.tuples(st.integers(1, 30), st.integers(1, 12))


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
    distinct = unique_rows(rows, shape[0])
    fresh = rng.integers(-9, 9, (distinct.size, shape[1])).astype(np.int64)
    overwritten = table.copy()
    overwritten[distinct] = fresh
    scatter_rows(table, distinct, fresh)
    np.testing.assert_array_equal(table, overwritten)
    expected = overwritten
    np.testing.assert_array_equal(distinct, np.unique(rows))
    taken = take_and_zero_rows(table, distinct)
    np.testing.assert_array_equal(taken, expected[distinct])
    assert not table[distinct].any()


@settings(max_examples=60, derandomize=True, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**31), share=st.floats(0, 1))
def test_row_deltas_turn_old_into_new_and_name_only_changed_rows(shape, seed, share):
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


def test_row_deltas_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="one shape"):
        row_deltas(np.zeros((2, 3)), np.zeros((3, 2)))
