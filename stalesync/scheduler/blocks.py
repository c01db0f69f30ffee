"""Block rotation (DSGD / Fugue): a d x d grid of blocks, d disjoint blocks at a time.

A matrix whose rows and columns are both parameters (users x items in matrix factorization)
is cut into ``d`` row blocks and ``d`` column blocks. Two ratings in blocks that share
neither a row block nor a column block touch disjoint parameters, so workers can update them
in parallel with no conflict and no locking. A *stratum* is a set of ``d`` such blocks
(a permutation); a *round* is ``d`` strata that together cover all ``d * d`` blocks once.

The schedule here is ``col = (row + shift) % d``: each sub-round uses one shift, and a round
uses every shift once, in an order shuffled per round (seeded), so no block is favoured by
always coming first after an update of its row block.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from .base import Plan, Schedule


@dataclass(frozen=True)
class BlockAssignment:
    """One sub-round: ``blocks[k] = (row_block, col_block)`` for stratum slot ``k``.

    With ``d`` workers, slot ``k`` is worker ``k``; with fewer workers see
    :meth:`for_workers`."""

    round: int
    sub_round: int
    blocks: tuple[tuple[int, int], ...]

    def for_workers(self, num_workers: int) -> list[list[tuple[int, int]]]:
        """Blocks of each worker: slot ``k`` goes to worker ``k % num_workers``. Any split of
        a stratum keeps the workers' rows and columns disjoint."""
        if num_workers < 1:
            raise ConfigError(f"num_workers must be >= 1, got {num_workers}")
        out: list[list[tuple[int, int]]] = [[] for _ in range(num_workers)]
        for k, block in enumerate(self.blocks):
            out[k % num_workers].append(block)
        return out


class BlockRotation(Schedule):
    """Seeded DSGD block rotation over a ``num_blocks x num_blocks`` grid.

    ``rotation.assignments(r)`` lists the ``d`` sub-rounds of round ``r`` (deterministic for
    a seed); ``rotation.sub_rounds(rounds)`` is a flat stream. Row block ``k`` always sits
    in slot ``k``, so a worker keeps its rows (users) across a round and only its column
    block (items) rotates.

    As a :class:`~stalesync.scheduler.base.Schedule` (``bind`` then ``next_round``), each
    plan is one sub-round: ``plan.tasks[w]`` is worker ``w``'s list of ``(row_block,
    col_block)`` pairs, ``plan.variables`` the flat block ids ``row * d + col``.
    """

    name = "blocks"

    def __init__(self, num_blocks: int, seed: int | None = 0, shuffle: bool = True) -> None:
        super().__init__()
        if not isinstance(num_blocks, int | np.integer) or num_blocks < 1:
            raise ConfigError(f"num_blocks must be a positive int, got {num_blocks!r}")
        self.num_blocks = int(num_blocks)
        self.seed = seed
        self.shuffle = shuffle
        self._stream: Iterator[BlockAssignment] | None = None

    def shifts(self, round_index: int) -> np.ndarray:
        """The order in which round ``round_index`` uses the ``d`` shifts."""
        d = self.num_blocks
        if not self.shuffle:
            return np.arange(d)
        return np.random.default_rng([self.seed or 0, round_index]).permutation(d)

    def assignments(self, round_index: int) -> list[BlockAssignment]:
        """The ``d`` sub-rounds of round ``round_index``."""
        d = self.num_blocks
        rows = np.arange(d)
        return [
            BlockAssignment(
                round_index, k,
                tuple(zip(rows.tolist(), ((rows + int(shift)) % d).tolist(), strict=True)),
            )
            for k, shift in enumerate(self.shifts(round_index))
        ]

    def sub_rounds(self, rounds: int | None = None) -> Iterator[BlockAssignment]:
        """Every sub-round of rounds ``0 .. rounds-1`` (forever when ``rounds`` is None)."""
        r = 0
        while rounds is None or r < rounds:
            yield from self.assignments(r)
            r += 1

    def __iter__(self) -> Iterator[BlockAssignment]:
        return self.sub_rounds()

    # -- Schedule protocol ----------------------------------------------------------------
    def bind(self, num_variables: int, num_workers: int, rng: np.random.Generator) -> None:
        """``num_variables`` is the number of blocks (``d * d``); needs ``d >= workers``."""
        super().bind(num_variables, num_workers, rng)
        if self.num_blocks < num_workers:
            raise ConfigError(
                f"block rotation over {self.num_blocks} blocks cannot keep {num_workers} "
                "workers busy; use num_blocks >= workers"
            )
        if self.seed is None:
            self.seed = int(rng.integers(2**31))
        self._stream = self.sub_rounds()

    def state(self) -> dict:
        return {**super().state(), "seed": self.seed}

    def load_state(self, state: dict) -> None:
        super().load_state(state)
        self.seed = state["seed"]
        self._stream = itertools.islice(self.sub_rounds(), self.round, None)

    def next_round(self) -> Plan:
        if self._stream is None:
            self._stream = self.sub_rounds()
        a = next(self._stream)
        d = self.num_blocks
        tasks = tuple(a.for_workers(self.num_workers))
        ids = np.array([r * d + c for r, c in a.blocks], dtype=np.int64)
        return self._plan(ids, tasks, round_of_rotation=a.round, sub_round=a.sub_round)


def check_round(assignments: list[BlockAssignment], num_blocks: int) -> None:
    """Raise ``AssertionError`` unless every sub-round is conflict free (no shared row or
    column block) and the round visits every block exactly once."""
    seen: set[tuple[int, int]] = set()
    for a in assignments:
        rows = [b[0] for b in a.blocks]
        cols = [b[1] for b in a.blocks]
        assert len(set(rows)) == len(rows), f"sub-round {a.sub_round} shares a row block: {rows}"
        assert len(set(cols)) == len(cols), f"sub-round {a.sub_round} shares a col block: {cols}"
        for block in a.blocks:
            assert block not in seen, f"block {block} visited twice in round {a.round}"
            seen.add(block)
    expected = {(r, c) for r in range(num_blocks) for c in range(num_blocks)}
    assert seen == expected, f"round misses blocks {sorted(expected - seen)}"


def partition_ids(num_ids: int, num_blocks: int, seed: int = 0,
                  weights: np.ndarray | None = None) -> np.ndarray:
    """Block of each id in ``[0, num_ids)``: an int array of length ``num_ids``.

    With ``weights`` (e.g. ratings per user) the blocks are balanced by total weight
    (dealt heaviest first in snake order, ties broken at random), so that blocks take
    similar time and barriers wait less; otherwise ids are shuffled and cut evenly.
    """
    if num_blocks < 1:
        raise ConfigError(f"num_blocks must be >= 1, got {num_blocks}")
    rng = np.random.default_rng(seed)
    if weights is None:
        perm = rng.permutation(num_ids)
        block = np.empty(num_ids, dtype=np.int64)
        block[perm] = np.arange(num_ids) * num_blocks // max(num_ids, 1)
        return block
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != (num_ids,):
        raise ConfigError(f"weights have shape {weights.shape}, expected ({num_ids},)")
    # random tie-break, then heaviest first
    order = rng.permutation(num_ids)
    order = order[np.argsort(-weights[order], kind="stable")]
    return _snake_fill(order, num_blocks)


def _snake_fill(order: np.ndarray, num_blocks: int) -> np.ndarray:
    """Deal ids (heaviest first) to blocks 0..d-1, d-1..0, 0..d-1, ...: vectorised and
    within one heaviest id of balanced."""
    pos = np.arange(order.size)
    lap, slot = np.divmod(pos, num_blocks)
    slot = np.where(lap % 2 == 1, num_blocks - 1 - slot, slot)
    block = np.empty(order.size, dtype=np.int64)
    block[order] = slot
    return block


def group_by_block(row_block: np.ndarray, col_block: np.ndarray,
                   num_blocks: int) -> tuple[np.ndarray, np.ndarray]:
    """Sort entries by block: returns ``(order, offsets)`` such that the entries of block
    ``(r, c)`` are ``order[offsets[r * d + c] : offsets[r * d + c + 1]]``. Stable, so an
    order shuffled beforehand stays shuffled within each block."""
    d = num_blocks
    key = np.asarray(row_block, dtype=np.int64) * d + np.asarray(col_block, dtype=np.int64)
    order = np.argsort(key, kind="stable")
    offsets = np.searchsorted(key[order], np.arange(d * d + 1))
    return order, offsets
