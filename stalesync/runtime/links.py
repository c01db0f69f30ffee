"""How a worker's client reaches a server shard: :class:`ShardLink` (through a backend
handle) and :class:`LocalShardLink` (in this process), both
:class:`~stalesync.ps.shard_protocol.ShardProtocol`.

The client (:mod:`stalesync.ps.client`) talks to every shard through that protocol,
whatever the backend. A link sends a worker's clock messages in order without waiting for them, and
numbers them, so the shard applies them in send order even when a threaded actor starts
calls out of order, and serves a read only after the reader's earlier clocks
(read-my-writes). A read returns a future, so a client can ask every shard before it waits
for any of them (remote shards answer in parallel).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .backend import Done, Future, Handle


class ShardLink:
    """A :class:`ShardProtocol` over a backend handle of a
    :class:`~stalesync.runtime.members.ShardHost`."""

    MAX_IN_FLIGHT = 2  # clock messages not yet acknowledged before a clock waits

    def __init__(self, handle: Handle) -> None:
        self.handle = handle
        self.sent = 0
        self._in_flight: list[Future] = []
        self.last_answer: Any = None  # the latest clock's answer (auto bound schedules)

    def clock(self, worker: int, updates: Mapping[str, tuple[np.ndarray, np.ndarray]],
              finished: bool = False, step: int = 0) -> None:
        self._in_flight.append(
            self.handle.call("clock", worker, dict(updates), finished, self.sent, step))
        self.sent += 1
        self._collect(wait=len(self._in_flight) > self.MAX_IN_FLIGHT)

    def _collect(self, wait: bool) -> None:
        """Release acknowledged clocks in send order (raising their errors); all of them if
        ``wait``. Only a prefix is taken: a later answer seen done before an earlier one
        must not become ``last_answer`` first and then be overwritten by the older one."""
        while self._in_flight and (wait or self._in_flight[0].done()):
            answer = self._in_flight.pop(0).result()
            if answer is not None:
                self.last_answer = answer

    def sync(self) -> None:
        """Wait until the shard applied every clock sent so far."""
        self._collect(wait=True)

    def read(self, worker: int, table: str, local_rows: np.ndarray,
             required: int | None) -> Future:
        return self.handle.call("read", worker, table, local_rows, required, self.sent)


class LocalShardLink:
    """A :class:`ShardProtocol` to a shard in this process (the embedded runtime), called on
    the worker's own thread: a clock is applied before ``clock`` returns and a read is
    served before ``read`` returns, so messages need no numbering and no future is in
    flight. This is the path whose fixed cost a clock pays on every iteration."""

    def __init__(self, host: Any) -> None:
        self.shard = host.shard
        self.sent = 0
        self.last_answer: Any = None

    def clock(self, worker: int, updates: Mapping[str, tuple[np.ndarray, np.ndarray]],
              finished: bool = False, step: int = 0) -> None:
        answer = self.shard.clock(worker, updates, finished=finished, step=step)
        self.sent += 1
        if answer is not None:
            self.last_answer = answer

    def sync(self) -> None:
        """Every clock is applied when sent."""

    def read(self, worker: int, table: str, local_rows: np.ndarray,
             required: int | None) -> Future:
        return Done(self.shard.read(worker, table, local_rows, required))


def writable(values: Any) -> Any:
    """Arrays from Ray's object store are read-only views; the client adds to them."""
    if isinstance(values, np.ndarray) and not values.flags.writeable:
        return values.copy()
    return values
