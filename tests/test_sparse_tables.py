"""Big models on small machines: sparse tables end to end (CSR reads, increments, shards,
snapshots) and bounded worker caches (eviction keeps the guarantee and the sums)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import stalesync as ss
from stalesync.persist.snapshot import load_snapshot

psutil = pytest.importorskip("psutil")

# int32: 2 GiB as a dense array (an LDA word-topic table's shape: V = 131K, K = 4,096).
# The index costs ~50 bytes per row per worker (row stamps, the cache's and the update
# log's row slices), so memory is O(rows + non-zeros), never O(rows x width).
ROWS, WIDTH = 2**17, 4096


def _sparse_program(clocks: int, rows_per_clock: int, rss: list[int]):
    process = psutil.Process()

    def worker(ctx):
        rng = np.random.default_rng(ctx.worker_id)
        for _ in range(clocks):
            rows = np.unique(rng.integers(0, ROWS, rows_per_clock))
            batch = ctx.read("big", rows, sparse=True)
            assert batch.shape == (rows.size, WIDTH)
            cols = rng.integers(0, WIDTH, (rows.size, 3)).astype(np.int32)
            deltas = ss.SparseRows(np.arange(0, 3 * rows.size + 1, 3, dtype=np.int64),
                                   cols.ravel(), np.ones(3 * rows.size, dtype=np.int32),
                                   WIDTH)
            ctx.inc("big", rows, deltas)
            ctx.clock()
            rss.append(process.memory_info().rss)

    return worker


def test_a_table_of_two_gigabytes_dense_trains_in_under_100_mb():
    """2^17 x 4,096 int32 rows (2 GiB dense), 2 workers, 2 shards: memory grows by what the
    rows hold, not by the table's dense size; every increment is in the final table."""
    clocks, per_clock = 12, 4000
    rss: list[int] = []
    spec = [ss.TableSpec("big", ROWS, WIDTH, "int32", storage="sparse")]
    ss.run(_sparse_program(1, 10, []), spec, workers=2, shards=2)  # compile the kernels
    before = psutil.Process().memory_info().rss
    result = ss.run(_sparse_program(clocks, per_clock, rss),
                    [ss.TableSpec("big", ROWS, WIDTH, "int32", storage="sparse")],
                    workers=2, shards=2, consistency="ssp", staleness=1)
    table = result.tables["big"]
    assert sp.issparse(table) and table.shape == (ROWS, WIDTH)
    rows_touched = 0  # replay the workers' draws: 3 added to every row read, every clock
    for w in range(2):
        rng = np.random.default_rng(w)
        for _ in range(clocks):
            size = np.unique(rng.integers(0, ROWS, per_clock)).size
            rng.integers(0, WIDTH, (size, 3))
            rows_touched += size
    assert int(table.sum()) == 3 * rows_touched
    growth = max(rss) - before
    assert growth < 100 * 2**20, f"RSS grew by {growth / 2**20:.0f} MB"


def test_sparse_increments_land_exactly():
    """Exact sums through CSR increments, across shards, with cancellations freeing entries."""

    def worker(ctx):
        rows = np.arange(ctx.worker_id, 50, 2)
        for clock in range(6):
            sign = 1 if clock % 2 == 0 else -1  # odd clocks cancel the even ones
            dense = np.zeros((rows.size, 7), dtype=np.int64)
            dense[:, clock % 7] = sign * (ctx.worker_id + 1)
            dense[:, (clock + 1) % 7] = 1
            ctx.inc("t", rows, ss.SparseRows.from_dense(dense))
            ctx.clock()

    result = ss.run(worker, [ss.TableSpec("t", 50, 7, "int64", storage="sparse")],
                    workers=2, shards=3, consistency="bsp")
    expected = np.zeros((50, 7), dtype=np.int64)
    for w in range(2):
        for clock in range(6):
            sign = 1 if clock % 2 == 0 else -1
            expected[w::2, clock % 7] += sign * (w + 1)
            expected[w::2, (clock + 1) % 7] += 1
    np.testing.assert_array_equal(result.tables["t"].toarray(), expected)
    assert result.tables["t"].nnz == np.count_nonzero(expected)


@pytest.mark.parametrize("consistency", ["ssp", "essp", "async"])
def test_a_bounded_cache_evicts_but_keeps_values_and_the_guarantee(consistency):
    """cache_rows=8 while every clock reads 40 of 400 rows: rows are evicted every clock,
    never one with unsent increments; re-fetched rows are exact (the audit checks every
    read) and the cache never holds more than cache_rows rows after a clock."""
    held_after_clock: list[int] = []

    def worker(ctx):
        rng = np.random.default_rng(ctx.worker_id)
        for _ in range(10):
            rows = np.unique(rng.integers(0, 400, 40))
            ctx.read("t", rows)
            ctx.inc("t", rows, np.ones((rows.size, 4)))
            ctx.clock()
            table = ctx._client.tables["t"]
            held_after_clock.append(int(((table.stamp >= 0) | (table.cache.length > 0)).sum()))

    result = ss.run(worker, [ss.TableSpec("t", 400, 4, cache_rows=8)], workers=2,
                    consistency=consistency, staleness=None if consistency == "async" else 1,
                    audit="record")
    expected = np.zeros((400, 4))
    for w in range(2):
        rng = np.random.default_rng(w)
        for _ in range(10):
            expected[np.unique(rng.integers(0, 400, 40))] += 1
    np.testing.assert_array_equal(result.tables["t"], expected)  # dense shards: an array
    assert min(result.record["evictions"]) >= 9 * 30  # ~40 rows a clock, 8 kept
    assert max(held_after_clock) <= 8
    assert result.record["guarantee"]["violations"] == 0


def test_a_sparse_table_snapshot_is_csr_on_disk_and_resumes(tmp_path):
    def worker(ctx):
        while ctx.clock_count < 6:
            ctx.inc("t", [ctx.clock_count * 3 + ctx.worker_id],
                    ss.SparseRows.from_dense(np.eye(1, 100_000, ctx.clock_count, dtype=np.int32)))
            ctx.clock()

    spec = ss.TableSpec("t", 40, 100_000, "int32", storage="sparse")
    first = ss.run(worker, [spec], workers=2, snapshot_every=2, snapshot_dir=tmp_path)
    snap = load_snapshot(tmp_path)
    assert sp.issparse(snap.tables["t"]) and snap.tables["t"].shape == (40, 100_000)
    assert snap.tables["t"].nnz == 2 * snap.clock  # 2 workers x one entry per clock
    resumed = ss.run(worker, [spec], workers=2, resume=tmp_path)
    assert (resumed.tables["t"] != first.tables["t"]).nnz == 0
    assert first.tables["t"].nnz == 12


def test_sparse_increments_to_a_dense_table_travel_as_csr():
    """LDA at large K changes a few entries of each row it touches: CSR increments to a
    dense table stay CSR through the update log, the message and the shard's apply (bytes
    O(changes)); a dense increment in the same clock sends the clock's rows dense."""
    rows, width = np.arange(0, 200, 2), 1000
    one_each = ss.SparseRows(np.arange(rows.size + 1, dtype=np.int64),
                             (rows % width).astype(np.int32), np.full(rows.size, 2.0), width)

    def worker(ctx):
        ctx.inc("t", rows, one_each)
        ctx.inc("t", rows[:3], one_each.take(slice(0, 3)))  # repeated rows accumulate
        ctx.clock()
        ctx.inc("t", rows, one_each)
        ctx.inc("t", [1], np.ones((1, width)))  # a dense one: this clock drains dense
        ctx.clock()

    result = ss.run(worker, [ss.TableSpec("t", 200, width)], workers=1, iterations=2)
    first, second = (r["bytes_sent"] for r in result.record["records"])
    dense_bytes = rows.size * (8 + width * 8)
    assert first < dense_bytes / 50 and second > dense_bytes
    expected = np.zeros((200, width))
    expected[rows, rows % width] = 4.0
    expected[rows[:3], rows[:3] % width] += 2.0
    expected[1] += 1.0
    np.testing.assert_array_equal(result.tables["t"], expected)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.sampled_from(["add", "assign", "clear"]),
                          st.lists(st.integers(0, 4), min_size=1, max_size=5, unique=True),
                          st.integers(1, 2**20)),
                min_size=1, max_size=25))
def test_a_sparse_row_store_never_writes_past_its_pool(ops):
    """Rows cleared (a bounded cache's evictions, a fetch's assign) keep their room until a
    compaction takes it back: an add that grows the pool must budget for that, or the rows
    it then moves run past the pool's end (heap corruption: a worker aborted in the
    guarantee tests). After every operation the pool holds every row's slice and the rows
    equal a dense reference."""
    from stalesync.ps.tables import SparseRowStore, TableSpec

    store = SparseRowStore(TableSpec("t", 5, 5, "int64", storage="sparse"), 5)
    dense = np.zeros((5, 5), dtype=np.int64)
    for op, rows, bits in ops:
        rows = np.array(rows, dtype=np.int64)
        values = np.array([[(bits >> (4 * i + j)) & 1 for j in range(5)]
                           for i in range(rows.size)], dtype=np.int64)
        if op == "clear":
            store.clear(rows)
            dense[rows] = 0
        elif op == "assign":
            store.assign(rows, values)
            dense[rows] = values
        else:
            store.add(rows, values)
            dense[rows] += values
        assert store.top <= store.cols.size
        assert np.all(store.start + store.cap <= store.cols.size)
        np.testing.assert_array_equal(store.to_dense(), dense)


def test_a_growth_budgets_for_the_room_a_compaction_takes_from_cleared_rows():
    """The sequence that ran past the pool (found by a random search with numba's bounds
    checks on): the last assign's rows fitted their old room, the growth's compaction took
    the room of the cleared ones, and they moved past the new pool's end."""
    from stalesync.ps.tables import SparseRowStore, TableSpec

    store = SparseRowStore(TableSpec("t", 5, 5, "int64", storage="sparse"), 5)
    dense = np.zeros((5, 5), dtype=np.int64)
    ops = [("add", [0], [[0, 0, 0, 1, 0]]), ("add", [3], [[1, 1, 0, 0, 1]]),
           ("add", [0, 2, 4], [[1, 0, 0, 0, 1], [0, 0, 0, 0, 0], [1, 0, 1, 0, 0]]),
           ("assign", [0, 1, 3, 4], [[1, 0, 1, 1, 0], [0, 1, 1, 0, 0], [1, 1, 1, 0, 0],
                                     [0, 1, 1, 1, 0]]),
           ("assign", [0, 1, 2, 3, 4], [[0, 0, 1, 0, 1], [0, 0, 0, 1, 0], [0, 0, 1, 0, 0],
                                        [0, 1, 0, 0, 1], [1, 1, 0, 0, 0]])]
    for op, rows, values in ops:
        rows, values = np.array(rows), np.array(values, dtype=np.int64)
        getattr(store, op)(rows, values)
        dense[rows] = values if op == "assign" else dense[rows] + values
        assert store.top <= store.cols.size
        np.testing.assert_array_equal(store.to_dense(), dense)
