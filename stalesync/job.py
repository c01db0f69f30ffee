"""Declaring and running a job: ``stalesync.run(worker_fn, tables, ...)``.

A job is a user function ``worker(ctx)`` run once per worker over its data partition, plus
the tables it shares. The runtime (embedded threads by default) is chosen by name.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import ConfigError
from .faults import Stragglers
from .observe.metrics import build_run_record, write_run_record
from .observe.tensorboard import TensorBoardWriter
from .persist.snapshot import snapshot_root
from .ps.audit import AUDIT_MODES, default_mode
from .ps.consistency import ConsistencyModel
from .ps.tables import TableSpec
from .runtime.address import check_address_format, check_min_nodes
from .runtime.ps import ParameterServer

RUNTIMES = ("embedded", "ray")
NAN_POLICIES = ("error", "warn")

WorkerFn = Callable[[Any], Any]


@dataclass
class JobConfig:
    tables: list[TableSpec]
    workers: int = 2
    consistency: str = "ssp"
    staleness: int | str | None = None  # "auto": moved within [0, max_staleness] in the run
    max_staleness: int | None = None  # the ceiling of staleness="auto" (default 8)
    iterations: int | None = None
    runtime: str = "embedded"
    shards: int = 1
    stragglers: Stragglers | None = None
    seed: int = 0
    nan_policy: str = "error"
    app: str = "custom"
    on_clock: Callable[[int, int, float | None], None] | None = None
    on_record: Callable[[dict[str, Any]], None] | None = None  # each worker's clock record
    tensorboard: str | None = None  # stream scalars to TensorBoard event files here
    objective_reduce: str = "mean"  # how workers' objectives combine (LDA's: "sum")
    initial_tables: dict[str, np.ndarray] = field(default_factory=dict)
    # Ray: cluster address (None = start a local Ray for the job), per-role actor options
    # ({"shard"|"worker"|"coordinator": ray .options(...) kwargs}), restarts after failures
    address: str | None = None
    ray_options: dict[str, dict[str, Any]] | None = None
    max_recoveries: int = 3
    min_nodes: int = 1  # Ray: the fewest nodes the workers run on (elastic floor)
    # consistent snapshots every k clocks into snapshot_dir; resume from a snapshot (dir)
    snapshot_every: int | None = None
    snapshot_dir: str | None = None
    resume: str | None = None
    # clock policy: synchronous steps completed by the first workers - backup_workers
    # gradients (late ones dropped); client cadence (async): fetch / push every k clocks
    backup_workers: int = 0
    fetch_every: int = 1
    push_every: int = 1
    # the read audit (stalesync.ps.audit): "record" counters, "error" raises, "off";
    # None: the STALESYNC_AUDIT environment variable, else "record"
    audit: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.workers, int) or self.workers < 1:
            raise ConfigError(f"workers must be a positive int, got {self.workers!r}")
        if not isinstance(self.shards, int) or self.shards < 1:
            raise ConfigError(f"shards must be a positive int, got {self.shards!r}")
        if self.runtime not in RUNTIMES:
            raise ConfigError(f"unknown runtime {self.runtime!r}; choose one of {RUNTIMES}")
        if self.nan_policy not in NAN_POLICIES:
            raise ConfigError(f"nan_policy must be one of {NAN_POLICIES}, got {self.nan_policy!r}")
        self._check_snapshot_options()
        self.model = ConsistencyModel.parse(self.consistency, self.staleness,
                                            self.max_staleness)
        if self.max_staleness is not None and not self.model.auto:
            raise ConfigError("max_staleness is the ceiling of staleness='auto'; got "
                              f"staleness={self.staleness!r}", param="max_staleness")
        self._check_policy_options()
        self.audit = default_mode() if self.audit is None else self.audit
        if self.audit not in AUDIT_MODES:
            raise ConfigError(f"audit must be one of {AUDIT_MODES}, got {self.audit!r}",
                              param="audit")
        names = [t.name for t in self.tables]
        if len(set(names)) != len(names):
            raise ConfigError(f"table names must be unique, got {names}")
        for name, values in self.initial_tables.items():
            spec = self.spec(name)
            if np.shape(values) != (spec.num_rows, spec.row_width):
                raise ConfigError(
                    f"initial values of table {name!r} have shape {np.shape(values)}, "
                    f"expected {(spec.num_rows, spec.row_width)}"
                )

    def _check_snapshot_options(self) -> None:
        if self.snapshot_every is not None and (
            not isinstance(self.snapshot_every, int) or self.snapshot_every < 1
        ):
            raise ConfigError(
                f"snapshot_every must be a positive int (clocks), got {self.snapshot_every!r}"
            )
        if self.snapshot_every and self.snapshot_dir is None:
            if self.resume is None:
                raise ConfigError("snapshot_every needs snapshot_dir (where snapshots go)")
            self.snapshot_dir = str(snapshot_root(self.resume))
        if not isinstance(self.max_recoveries, int) or self.max_recoveries < 0:
            raise ConfigError(f"max_recoveries must be an int >= 0, got {self.max_recoveries!r}")
        if self.address is not None and self.runtime != "ray":
            raise ConfigError("address is only used with runtime='ray'")

        if self.address is not None:
            check_address_format(self.address)
        check_min_nodes(self.min_nodes, self.runtime, self.workers)

    def _check_policy_options(self) -> None:
        for name in ("backup_workers", "fetch_every", "push_every"):
            value = getattr(self, name)
            low = 0 if name == "backup_workers" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{name} must be an int >= {low}, got {value!r}", param=name)
        if self.backup_workers:
            if self.backup_workers >= self.workers:
                raise ConfigError(f"backup_workers ({self.backup_workers}) must be fewer than "
                                  f"workers ({self.workers})", param="backup_workers")
            if self.model.kind != "bsp":
                raise ConfigError("backup workers run synchronous steps: they need "
                                  f"consistency='bsp', got {self.model.kind!r}",
                                  param="backup_workers")
            if self.shards != 1:
                raise ConfigError("backup workers need one server shard (each step is "
                                  "decided by one shard's first arrivals)", param="shards")
        for name in ("fetch_every", "push_every"):
            if getattr(self, name) != 1 and self.model.kind != "async":
                raise ConfigError(f"{name} (Downpour's cadence) needs consistency='async': "
                                  "a bounded model must see every increment in time",
                                  param=name)

    def spec(self, name: str) -> TableSpec:
        for t in self.tables:
            if t.name == name:
                return t
        raise ConfigError(f"unknown table {name!r}; declared: {[t.name for t in self.tables]}")

    def table_models(self) -> dict[str, ConsistencyModel]:
        """Each table's model: its own override, else the job's."""
        models = {}
        for t in self.tables:
            if t.consistency is None and t.staleness is None:
                models[t.name] = self.model
            else:
                kind = t.consistency or self.model.kind
                if t.staleness is not None:
                    staleness = t.staleness
                else:
                    staleness = "auto" if self.model.auto else self.model.staleness
                models[t.name] = ConsistencyModel.parse(
                    kind, None if kind in ("bsp", "async") else staleness,
                    self.model.max_staleness if staleness == "auto" else None)
        return models


@dataclass
class JobResult:
    """What a finished job returns: the run record, final tables, worker return values."""

    record: dict[str, Any]
    tables: dict[str, np.ndarray]
    worker_results: list[Any]


def clocks_run(metrics: list, planned: int | None) -> int:
    """The furthest worker's final clock, at most the planned iterations (workers may stop
    early; a backup worker's read may move its clock to a step past the last one)."""
    furthest = max((m.clocks for m in metrics), default=planned or 0)
    return min(furthest, planned) if planned else furthest


def run(
    worker_fn: WorkerFn,
    tables: Sequence[TableSpec],
    *,
    data: Sequence[Any] | None = None,
    metrics_out: str | None = None,
    final: Callable[[JobResult], dict[str, Any]] | None = None,
    **options: Any,
) -> JobResult:
    """Run ``worker_fn(ctx)`` on every worker and return the result.

    ``data`` is one partition per worker (``ctx.data``). ``options`` are :class:`JobConfig`
    fields: ``workers``, ``consistency``, ``staleness``, ``iterations``, ``runtime``,
    ``shards``, ``stragglers``, ``seed``, ``nan_policy``, ``app``, ``on_clock``,
    ``snapshot_every``/``snapshot_dir``/``resume`` (consistent snapshots, see
    :mod:`stalesync.persist.snapshot`), ``backup_workers`` (synchronous steps taking the first
    ``workers - backup_workers`` gradients, :mod:`stalesync.ps.clock_policies`),
    ``fetch_every``/``push_every`` (async client cadence), and for ``runtime="ray"``:
    ``address``, ``ray_options``, ``max_recoveries``, ``min_nodes``. ``final(result)`` fills the run
    record's ``final`` object.
    """
    unknown = set(options) - set(JobConfig.__dataclass_fields__)
    if unknown:
        raise ConfigError(f"unknown job option(s) {sorted(unknown)}")
    config = JobConfig(tables=list(tables), **options)
    if data is not None and len(data) != config.workers:
        raise ConfigError(
            f"data has {len(data)} partitions but the job has {config.workers} workers"
        )

    writer = None
    if config.tensorboard:
        writer = TensorBoardWriter(config.tensorboard, config.workers, config.objective_reduce)
        previous = config.on_record
        config.on_record = (writer.on_record if previous is None else
                            lambda r: (previous(r), writer.on_record(r)))
    start = time.perf_counter()
    try:
        outcome = ParameterServer(config).run(worker_fn, data)
    finally:
        if writer is not None:
            writer.close()
    wall = time.perf_counter() - start
    record = build_run_record(
        app=config.app,
        strategy="ps",
        runtime=config.runtime,
        consistency=config.model.kind,
        staleness="auto" if config.model.auto else config.model.staleness,
        workers=config.workers,
        clocks=clocks_run(outcome.metrics, config.iterations),
        wall_time_s=wall,
        metrics=outcome.metrics,
        extra=outcome.extra,
    )
    record["objective_reduce"] = config.objective_reduce
    result = JobResult(record=record, tables=outcome.tables, worker_results=outcome.results)
    if final is not None:
        record["final"] = final(result)
    if metrics_out:
        write_run_record(record, metrics_out)
    return result
