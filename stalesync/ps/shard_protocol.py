"""What a worker's client needs from a server shard, whatever carries the calls.

The runtimes implement it (:mod:`stalesync.runtime.links`): through a backend handle, the
clock messages numbered and sent without waiting, or directly in this process.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

ReadReply = tuple[np.ndarray, int, float, int]  # values, stamp, seconds waited, stamp at arrival


class Reply(Protocol):
    """A read's answer, maybe still on its way."""

    def result(self) -> ReadReply: ...


class ShardProtocol(Protocol):
    """The client's view of one shard."""

    last_answer: Any  # the latest clock's answer (staleness="auto": the bound schedules)

    def read(self, worker: int, table: str, local_rows: np.ndarray,
             required: int | None) -> Reply: ...

    def clock(self, worker: int, updates: Mapping[str, tuple[np.ndarray, np.ndarray]],
              finished: bool = False, step: int = 0) -> None: ...

    def sync(self) -> None: ...
