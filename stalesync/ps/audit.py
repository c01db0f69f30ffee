"""The consistency guarantee, audited on every read while a job runs, in both directions.

- **Fresh enough**: every row a read returns at clock ``c`` under a bound ``s`` carries a
  stamp ``>= c - s`` (it includes every update from every worker's clocks ``< c - s``).
- **Not over-blocked**: a read waits only for rows that were too stale. It has over-blocked
  if it waited although every row it asked for was already fresh enough in the cache, or
  although the shard it waited on was already at the required stamp when the read arrived.

The audit computes the requirement from the bound in force itself (not through the code path
that decided what to fetch), so a client that waits like BSP under SSP, or a shard that
serves rows a clock too stale, shows up in the counters. The counters go into the run record
as ``guarantee``; with ``audit="error"`` the first violation raises
:class:`GuaranteeViolation` on the spot (the test suite sets ``STALESYNC_AUDIT=error``).
Cost: a few vectorised comparisons per read (measured in ``bench/core_overhead.py``).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..errors import ConfigError, StalesyncError

AUDIT_MODES = ("record", "error", "off")


class GuaranteeViolation(StalesyncError, AssertionError):
    """A read broke the consistency guarantee (only raised with ``audit="error"``)."""


def default_mode() -> str:
    mode = os.environ.get("STALESYNC_AUDIT", "record")
    if mode not in AUDIT_MODES:
        raise ConfigError(f"STALESYNC_AUDIT must be one of {AUDIT_MODES}, got {mode!r}")
    return mode


class Audit:
    """One worker's read audit (only its own thread touches it)."""

    def __init__(self, worker: int, mode: str = "record") -> None:
        if mode not in AUDIT_MODES:
            raise ConfigError(f"audit must be one of {AUDIT_MODES}, got {mode!r}",
                              param="audit")
        self.worker = worker
        self.mode = mode
        self.reads_checked = 0
        self.violations = 0
        self.over_blocked_reads = 0
        self.first_problem: str | None = None

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    def check_read(self, table: str, clock: int, bound: int | None, low: int | None,
                   before: np.ndarray | None, waited: float, arrivals: list[int]) -> None:
        """``low``: the lowest stamp among the rows a read returned (None: no rows);
        ``before``: their stamps before the read (needed only when it waited); ``bound``: the
        staleness in force (None: async, no bound); ``arrivals``: each waiting shard's stamp
        when the read reached it."""
        self.reads_checked += 1
        if bound is None:
            return
        required = max(clock - bound, 0)
        if low is not None and low < required:
            self._problem("violation", f"worker {self.worker}, table {table!r}, clock {clock}:"
                          f" a row with stamp {low} was read under bound {bound}"
                          f" (needs >= {required})")
        if waited > 0 and (before is None or not (before < required).any()
                           or any(a >= required for a in arrivals)):
            self._problem("over_blocked", f"worker {self.worker}, table {table!r}, clock "
                          f"{clock}: the read waited {waited * 1e3:.1f} ms although its rows "
                          f"were fresh enough (bound {bound}, needs stamp >= {required})")

    def _problem(self, kind: str, text: str) -> None:
        if kind == "violation":
            self.violations += 1
        else:
            self.over_blocked_reads += 1
        if self.first_problem is None:
            self.first_problem = text
        if self.mode == "error":
            raise GuaranteeViolation(text)

    def state(self) -> dict[str, Any]:
        return {"reads_checked": self.reads_checked, "violations": self.violations,
                "over_blocked_reads": self.over_blocked_reads,
                "first_problem": self.first_problem}

    def load(self, state: dict[str, Any] | None) -> None:
        if state:
            self.reads_checked += int(state.get("reads_checked", 0))
            self.violations += int(state.get("violations", 0))
            self.over_blocked_reads += int(state.get("over_blocked_reads", 0))
            self.first_problem = self.first_problem or state.get("first_problem")


def summarize(audits: list[dict[str, Any]], mode: str) -> dict[str, Any]:
    """The run record's ``guarantee``."""
    problems = [a["first_problem"] for a in audits if a.get("first_problem")]
    return {"audit": mode,
            "reads_checked": int(sum(a["reads_checked"] for a in audits)),
            "violations": int(sum(a["violations"] for a in audits)),
            "over_blocked_reads": int(sum(a["over_blocked_reads"] for a in audits)),
            "first_problem": problems[0] if problems else None}


def verdict(record: dict[str, Any]) -> str | None:
    """One line for the end of a command: what the audit found."""
    g = record.get("guarantee")
    if not g or g["audit"] == "off":
        return None
    ok = g["violations"] == 0 and g["over_blocked_reads"] == 0
    bound = "" if record["consistency"] in ("bsp", "async") else f" s={record['staleness']}"
    return (f"guarantee {'held' if ok else 'BROKEN'}: {g['reads_checked']:,} reads checked "
            f"against {record['consistency']}{bound}"
            f", {g['violations']} violations, {g['over_blocked_reads']} over-blocked reads"
            + ("" if ok else f" (first: {g['first_problem']})"))
