"""Consistency models as pure logic: when may a cached row be read?

Clocks count completed iterations and start at 0. An increment made while its worker is at
clock ``c`` is "from clock c". A row carries a *stamp* ``m``: it includes every increment
from every worker from clocks ``< m``. A server shard stamps the rows it serves with its
minimum worker clock, because every worker sends its clock-``c`` increments together with
its clock-``c`` completion message.

A read at clock ``c`` under SSP/ESSP with staleness ``s`` needs stamp ``>= c - s``.
BSP is SSP with ``s = 0``. Async never waits.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..errors import ConfigError

KINDS = ("bsp", "ssp", "essp", "async")
DEFAULT_STALENESS = 1  # for ssp/essp when none is given
DEFAULT_MAX_STALENESS = 8  # the ceiling of staleness="auto"


@dataclass(frozen=True)
class ConsistencyModel:
    """``staleness`` is the bound (the initial one when ``auto``: then a controller moves it
    within ``[0, max_staleness]`` during the run, changes taking effect at clock
    boundaries; see :mod:`stalesync.ps.auto_staleness`)."""

    kind: str
    staleness: int = 0
    auto: bool = False
    max_staleness: int = 0

    @classmethod
    def parse(cls, kind: str, staleness: int | str | None = None,
              max_staleness: int | None = None) -> ConsistencyModel:
        """Build a model from user input, with errors that list the valid choices."""
        kind = str(kind).lower()
        if kind not in KINDS:
            raise ConfigError(f"unknown consistency model {kind!r}; choose one of {KINDS}")
        if kind == "bsp":
            if staleness not in (None, 0):
                raise ConfigError(f"bsp has staleness 0 by definition, got staleness={staleness}")
            return cls("bsp", 0)
        if kind == "async":
            return cls("async", 0)
        if staleness == "auto":
            top = DEFAULT_MAX_STALENESS if max_staleness is None else max_staleness
            if isinstance(top, bool) or not isinstance(top, int) or top < 0:
                raise ConfigError(f"max_staleness must be a non-negative int, got {top!r}",
                                  param="max_staleness")
            return cls(kind, min(DEFAULT_STALENESS, top), auto=True, max_staleness=top)
        s = DEFAULT_STALENESS if staleness is None else staleness
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise ConfigError(f"staleness must be a non-negative int or 'auto', got "
                              f"{staleness!r}")
        return cls(kind, s)

    def with_bound(self, staleness: int) -> ConsistencyModel:
        """This model with the bound in force at some clock (``auto``)."""
        return replace(self, staleness=staleness)

    @property
    def bounded(self) -> bool:
        """True when reads may block to enforce a staleness bound."""
        return self.kind != "async"

    @property
    def pushes(self) -> bool:
        """True when shards push fresh rows to caching workers at every completed clock."""
        return self.kind == "essp"

    def required_stamp(self, clock: int) -> int:
        """Smallest row stamp a read at ``clock`` may use (bounded models only)."""
        return clock - self.staleness

    def __str__(self) -> str:
        if self.kind in ("bsp", "async"):
            return self.kind
        return f"{self.kind}(s={'auto' if self.auto else self.staleness})"
