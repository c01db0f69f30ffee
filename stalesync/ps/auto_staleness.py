"""``staleness="auto"``: a controller that moves the staleness bound during a run.

The SSP paper's trade-off: progress per second = (clocks per second) x (progress per clock).
More staleness lets fast workers run ahead instead of blocking (more clocks per second) but
each clock sees older values (less progress per clock), and the sweet spot depends on the
model, the data and the stragglers. So the bound should follow what the run measures.

**Policy** (DSSP-flavoured, Zhao et al. 2019, which sets the threshold from the workers'
recent iteration times): after every ``window`` clocks of every worker, the controller takes
the share of the workers' time spent blocked in reads. Above ``raise_at`` (10%) the bound is
too tight for the spread of clock rates: it doubles (0 -> 1 -> 2 -> 4 -> 8), on trial, so
that a run of a few hundred clocks reaches the bound its stragglers need within a few
windows (one step at a time took most of a short run to get there). If the next window's
blocked share did not fall at all (nor below ``raise_at``), the raise bought nothing (a
worker that is *persistently* slower holds everyone back at any bound; staleness only
absorbs transient jitter): the bound goes back and is not raised again for
``cooldown`` windows. Below ``lower_at`` (2%) nobody is held back, so extra staleness only
costs freshness: it goes down by one. The bound stays within ``[0, max_staleness]``. Why
this and not MLtuner's branch-and-compare (Cui et al. 2018): trying settings on forks of
the run needs snapshots of everything and several times the compute; the blocked share is
free to measure and reacts within a window, and its fixed point is the smallest bound at
which raising no longer helps. Any fall keeps a raise: a window of a few clocks is noisy, a
kept raise costs little, and asking for a 15% or 5% fall reverted raises that did help under
random pauses (a pause of many clocks is absorbed a clock at a time, so each step of ``s``
cuts the blocked share only a little). Progress per clock does fall at large bounds (LDA and
MF at s = 8 never reached the benchmark's target, ``docs/staleness.md``): one more reason to
take back a raise that bought no waiting time.

**Safety.** A change is decided on the driver and sent to every shard, which applies it from
clock ``f`` = (the highest clock any worker is at) + 1, so no worker is ever inside a clock
whose bound changes. Workers learn the schedule in the answer to their clock message (a
worker waits for that answer before its next clock when a table is ``auto``); each read is
served, and audited, against the bound in force at the reader's clock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

KEEP_IF_BELOW = 1.0  # a raise is kept if the blocked share fell below this share of before

Schedule = list[tuple[int, int]]  # [(from_clock, bound), ...], from_clock increasing


def bound_at(schedule: Schedule, clock: int) -> int:
    """The bound in force at ``clock``."""
    bound = schedule[0][1]
    for start, s in schedule:
        if start > clock:
            break
        bound = s
    return bound


@dataclass
class StalenessController:
    """Decides the bound from the workers' clock records (``wait_s``, ``duration_s``)."""

    workers: int
    bound: int
    max_staleness: int
    window: int = 5  # clocks of every worker per decision
    raise_at: float = 0.10
    lower_at: float = 0.02
    cooldown: int = 8  # windows without a new trial after a raise that did not help
    timeline: list[tuple[float, int]] = field(default_factory=list)  # (seconds, bound)
    _blocked: float = 0.0
    _busy: float = 0.0
    _records: int = 0
    _trial: tuple[float, int] | None = None  # (blocked share, bound) before the raise
    _quiet: int = 0  # windows left in the cooldown
    _start: float = field(default_factory=time.perf_counter)

    def __post_init__(self) -> None:
        self.timeline.append((0.0, self.bound))

    def on_record(self, record: dict[str, Any]) -> None:
        """Take one worker's clock record."""
        self._blocked += record.get("wait_s", 0.0)
        self._busy += record.get("duration_s", 0.0)
        self._records += 1

    def decide(self) -> int | None:
        """Once a window of records is in: the new bound, or None to keep it. Called once per
        driver poll, so a burst of records is one decision."""
        if self._records < self.window * self.workers:
            return None
        share = self._blocked / self._busy if self._busy > 0 else 0.0
        self._blocked = self._busy = 0.0
        self._records = 0
        self._quiet = max(0, self._quiet - 1)
        new = self._next(share)
        if new == self.bound:
            return None
        self.bound = new
        self.timeline.append((time.perf_counter() - self._start, new))
        return new

    def _next(self, share: float) -> int:
        if self._trial is not None:  # judge the last raise
            (before, previous), self._trial = self._trial, None
            if share > KEEP_IF_BELOW * before and share > self.raise_at:
                self._quiet = self.cooldown
                return previous
        if share > self.raise_at and self.bound < self.max_staleness and not self._quiet:
            self._trial = (share, self.bound)
            return min(max(1, 2 * self.bound), self.max_staleness)
        if share < self.lower_at and self.bound > 0:
            return self.bound - 1
        return self.bound
