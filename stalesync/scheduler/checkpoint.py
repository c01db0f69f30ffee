"""A scheduler driver's state on disk: the app's model, every shard's state, the schedule.

Written with :func:`stalesync.persist.snapshot.write_snapshot` (npz + JSON, atomic, never pickle):
the app's model arrays are the snapshot's tables, each data shard's state is one "worker"
state, and the schedule's arrays are tables named ``schedule/<key>``. Everything else (round
counters, the random generator, the schedule's scalars, the plan prepared for the next
round) is JSON in ``meta.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..persist.files import json_ready
from ..persist.snapshot import SnapshotError, WorkerState, load_snapshot, write_snapshot
from .base import Plan

SCHEDULE_PREFIX = "schedule/"


@dataclass
class DriverCheckpoint:
    round: int
    stats: dict[str, Any]
    rng_state: dict[str, Any]
    schedule: dict[str, Any] | None
    schedule_name: str | None
    prefetched: Plan | None
    model: dict[str, np.ndarray]
    shards: dict[int, dict[str, np.ndarray]]


def _plan_to_json(plan: Plan | None) -> dict[str, Any] | None:
    if plan is None:
        return None
    tasks = None if plan.tasks is None else [json_ready(t) for t in plan.tasks]
    return {"round": plan.round, "variables": plan.variables.tolist(), "tasks": tasks,
            "info": json_ready(plan.info)}


def _plan_from_json(data: dict[str, Any] | None) -> Plan | None:
    if data is None:
        return None
    tasks = data["tasks"]
    if tasks is not None:
        tasks = tuple([tuple(b) if isinstance(b, list) else b for b in t]
                      if isinstance(t, list) else t for t in tasks)
    return Plan(int(data["round"]), np.asarray(data["variables"], dtype=np.int64), tasks,
                dict(data.get("info") or {}))


def write_driver_snapshot(root: str, cp: DriverCheckpoint) -> None:
    tables = dict(cp.model)
    scalars: dict[str, Any] = {}
    for key, value in (cp.schedule or {}).items():
        if isinstance(value, np.ndarray):
            tables[SCHEDULE_PREFIX + key] = value
        else:
            scalars[key] = json_ready(value)
    workers = [WorkerState(clock=cp.round, arrays=cp.shards[i]) for i in sorted(cp.shards)]
    meta = {"kind": "scheduler", "round": cp.round, "stats": cp.stats,
            "rng_state": cp.rng_state, "schedule_name": cp.schedule_name,
            "schedule": scalars if cp.schedule is not None else None,
            "prefetched": _plan_to_json(cp.prefetched)}
    write_snapshot(root, cp.round, tables, workers, meta)


def load_driver_snapshot(path: str, num_shards: int) -> DriverCheckpoint:
    snap = load_snapshot(path)
    meta = snap.meta
    if meta.get("kind") != "scheduler":
        raise SnapshotError(f"{snap.path} is not a scheduler snapshot")
    if len(snap.workers) != num_shards:
        raise SnapshotError(f"{snap.path} holds {len(snap.workers)} data shards, this job "
                            f"has {num_shards}: resume with the same data and workers")
    schedule = None
    if meta.get("schedule") is not None:
        schedule = dict(meta["schedule"])
        for name, arr in snap.tables.items():
            if name.startswith(SCHEDULE_PREFIX):
                schedule[name[len(SCHEDULE_PREFIX):]] = arr
    model = {k: v for k, v in snap.tables.items() if not k.startswith(SCHEDULE_PREFIX)}
    return DriverCheckpoint(
        round=int(meta["round"]), stats=meta["stats"], rng_state=meta["rng_state"],
        schedule=schedule, schedule_name=meta.get("schedule_name"),
        prefetched=_plan_from_json(meta.get("prefetched")), model=model,
        shards={i: w.arrays for i, w in enumerate(snap.workers)},
    )
