"""STRADS-style model-parallel scheduling: schedule -> push -> pull, on worker threads.

* :mod:`.base` — the :class:`Schedule` protocol and :class:`Plan` (import these to write a
  schedule, e.g. block rotation in :mod:`.blocks`);
* :mod:`.driver` — :class:`Driver`, which runs an app's push/pull/sync rounds with
  pipelining and load balancing;
* built-in schedules: :class:`Cyclic`, :class:`Shotgun`, :class:`Priority`,
  :class:`DependencyAware` (with :class:`ColumnCorrelation`), and :func:`make_schedule`;
* :mod:`.blocks` — :class:`BlockRotation` (DSGD / Fugue): workers own disjoint row and column
  blocks per sub-round, then rotate.

See ``docs/scheduler.md``.
"""

from .base import Feedback, Plan, Schedule, check_parallel
from .basic import Cyclic, ProposingSchedule, Shotgun
from .blocks import BlockAssignment, BlockRotation, check_round, group_by_block, partition_ids
from .dependency import ColumnCorrelation, DependencyAware
from .driver import Driver, DriverStats, ModelParallelApp, balanced_chunks
from .priority import Priority
from .registry import SCHEDULES, make_schedule

__all__ = [
    "SCHEDULES",
    "BlockAssignment",
    "BlockRotation",
    "ColumnCorrelation",
    "Cyclic",
    "DependencyAware",
    "Driver",
    "DriverStats",
    "Feedback",
    "ModelParallelApp",
    "Plan",
    "Priority",
    "ProposingSchedule",
    "Schedule",
    "Shotgun",
    "balanced_chunks",
    "check_parallel",
    "check_round",
    "group_by_block",
    "make_schedule",
    "partition_ids",
]
