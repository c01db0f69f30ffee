"""Block rotation (DSGD/Fugue schedule): conflict-free sub-rounds, full coverage per round."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stalesync.errors import ConfigError
from stalesync.scheduler.blocks import (
    BlockRotation,
    check_round,
    group_by_block,
    partition_ids,
)


@settings(max_examples=60, deadline=None)
@given(d=st.integers(1, 12), seed=st.integers(0, 2**31 - 1), r=st.integers(0, 50))
def test_every_sub_round_is_disjoint_and_round_covers_each_block_once(d, seed, r):
    rounds = BlockRotation(d, seed=seed).assignments(r)
    assert len(rounds) == d
    seen = []
    for k, a in enumerate(rounds):
        assert (a.round, a.sub_round) == (r, k)
        rows = [b[0] for b in a.blocks]
        cols = [b[1] for b in a.blocks]
        assert sorted(rows) == list(range(d))  # no two slots share a row block
        assert sorted(cols) == list(range(d))  # ... nor a column block
        seen.extend(a.blocks)
    assert sorted(seen) == [(i, j) for i in range(d) for j in range(d)]
    check_round(rounds, d)


def test_check_round_catches_a_conflict_and_a_missing_block():
    good = BlockRotation(3, seed=1).assignments(0)
    from stalesync.scheduler.blocks import BlockAssignment

    clash = [BlockAssignment(0, 0, ((0, 0), (1, 0), (2, 2)))] + good[1:]
    with pytest.raises(AssertionError, match="col block"):
        check_round(clash, 3)
    with pytest.raises(AssertionError, match="misses"):
        check_round(good[:-1], 3)


def test_rounds_are_shuffled_but_deterministic_per_seed():
    rot = BlockRotation(6, seed=3)
    orders = {tuple(rot.shifts(r)) for r in range(20)}
    assert len(orders) > 10  # shift order changes between rounds
    assert [a.blocks for a in rot.assignments(4)] == [
        a.blocks for a in BlockRotation(6, seed=3).assignments(4)
    ]
    assert [a.blocks for a in BlockRotation(6, seed=4).assignments(4)] != [
        a.blocks for a in rot.assignments(4)
    ]
    unshuffled = BlockRotation(4, shuffle=False).assignments(0)
    assert [a.blocks[0] for a in unshuffled] == [(0, 0), (0, 1), (0, 2), (0, 3)]


@pytest.mark.parametrize("d,workers", [(2, 2), (4, 2), (5, 3), (6, 6)])
def test_schedule_protocol_plans_give_workers_disjoint_blocks(d, workers):
    rot = BlockRotation(d, seed=0)
    rot.bind(d * d, workers, np.random.default_rng(0))
    covered = []
    for k in range(d):
        plan = rot.next_round()
        assert plan.round == k and plan.info["sub_round"] == k
        assert len(plan.tasks) == workers
        rows = [b[0] for t in plan.tasks for b in t]
        cols = [b[1] for t in plan.tasks for b in t]
        assert len(set(rows)) == len(rows) == d
        assert len(set(cols)) == len(cols) == d
        ids = sorted(r * d + c for r, c in zip(rows, cols, strict=True))
        assert sorted(plan.variables.tolist()) == ids
        covered.extend(plan.variables.tolist())
    assert sorted(covered) == list(range(d * d))
    assert rot.next_round().info["round_of_rotation"] == 1


def test_too_few_blocks_for_the_workers_is_an_error():
    with pytest.raises(ConfigError, match="num_blocks >= workers"):
        BlockRotation(2).bind(4, 3, np.random.default_rng(0))
    with pytest.raises(ConfigError):
        BlockRotation(0)


def test_partition_ids_balances_weights_and_covers_every_id():
    rng = np.random.default_rng(5)
    weights = rng.zipf(1.8, size=1000).astype(float)
    weights = np.minimum(weights, 200)
    block = partition_ids(1000, 4, seed=0, weights=weights)
    assert block.shape == (1000,) and set(block.tolist()) == {0, 1, 2, 3}
    loads = np.bincount(block, weights=weights, minlength=4)
    assert loads.max() - loads.min() <= weights.max()
    plain = partition_ids(10, 3, seed=1)
    assert sorted(np.bincount(plain).tolist()) == [3, 3, 4]


def test_group_by_block_sorts_entries_into_the_grid_stably():
    rb = np.array([1, 0, 1, 0, 1, 1])
    cb = np.array([0, 1, 1, 1, 0, 1])
    order, offsets = group_by_block(rb, cb, 2)
    assert offsets.tolist() == [0, 0, 2, 4, 6]
    assert order[offsets[1]:offsets[2]].tolist() == [1, 3]  # block (0, 1), original order
    assert order[offsets[2]:offsets[3]].tolist() == [0, 4]  # block (1, 0)
