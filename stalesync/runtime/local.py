"""The embedded runtime: workers are threads, shards are objects in the same process.

Nothing listens and nothing needs setting up. Worker caches are private, so compiled kernels
that release the GIL run on every core at once. If a worker function raises, the job is
aborted: parked reads wake up and raise, every other worker stops at its next table call,
all threads are joined, and the first real error is re-raised in the caller.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..client import WorkerClient
from ..context import WorkerContext
from ..errors import JobAbortedError
from ..metrics import WorkerMetrics
from ..server import ServerShard
from ..snapshot import restore_metrics
from ..tables import ShardMap
from .barrier import SnapshotBarrier
from .restore import (
    load_resume,
    make_checkpoint,
    make_writer,
    restore_state,
    snapshot_meta,
    start_clocks,
)


@dataclass
class Outcome:
    metrics: list[WorkerMetrics]
    tables: dict[str, np.ndarray]
    results: list[Any]
    extra: dict[str, Any] = field(default_factory=dict)  # run-record fields of the runtime


class LocalRuntime:
    def __init__(self, config) -> None:
        self.config = config
        self.shard_map = ShardMap(config.shards)
        self.models = config.table_models()
        specs = {t.name: t for t in config.tables}
        self.clients: list[WorkerClient] = []
        self.shards = [
            ServerShard(i, self.shard_map, specs, self.models, config.workers, self._deliver)
            for i in range(config.shards)
        ]
        for name, values in config.initial_tables.items():
            self._load_table(name, np.asarray(values, dtype=specs[name].np_dtype))
        self.abort_event = threading.Event()
        # snapshots / resume (off by default: then nothing below touches the hot path)
        self.resume = load_resume(config)
        if self.resume is not None:
            for name, values in self.resume.tables.items():
                self._load_table(name, values)
            for shard in self.shards:  # no worker runs yet: no lock needed
                shard.worker_clocks[:] = start_clocks(self.resume, config.workers)
        self.barrier = None
        if config.snapshot_every:
            writer = make_writer(
                config.snapshot_dir, snapshot_meta(config, uuid.uuid4().hex), self._dump_tables
            )
            self.barrier = SnapshotBarrier(config.workers, writer)

    def _dump_tables(self) -> dict[str, np.ndarray]:
        return {t.name: self.table_values(t.name) for t in self.config.tables}

    def _arrive(self, ctx: WorkerContext) -> None:
        self.barrier.arrive(ctx.worker_id, ctx.snapshot_state())

    def _deliver(self, worker: int, push) -> None:
        self.clients[worker].receive_push(push)

    def _load_table(self, name: str, values: np.ndarray) -> None:
        for shard in self.shards:
            shard.load(name, values[shard.shard_id :: self.shard_map.num_shards])

    def table_values(self, name: str) -> np.ndarray:
        spec = self.config.spec(name)
        out = np.empty((spec.num_rows, spec.row_width), dtype=spec.np_dtype)
        for shard in self.shards:
            out[shard.shard_id :: self.shard_map.num_shards] = shard.dump(name)
        return out

    def run(self, worker_fn, data) -> Outcome:
        cfg = self.config
        start = time.perf_counter()
        metrics = [WorkerMetrics(w, start) for w in range(cfg.workers)]
        specs = {t.name: t for t in cfg.tables}
        self.clients = [
            WorkerClient(
                w, specs, self.models, self.shard_map, self.shards, metrics[w], cfg.nan_policy
            )
            for w in range(cfg.workers)
        ]
        for client in self.clients:
            client._abort_event = self.abort_event
            restored = restore_state(self.resume, client.worker_id)
            if restored is not None:
                client.clock_count = restored.clock
                restore_metrics(metrics[client.worker_id], restored.metrics)
        checkpoint = make_checkpoint(cfg, self._arrive)
        results: list[Any] = [None] * cfg.workers
        errors: list[BaseException | None] = [None] * cfg.workers

        def body(w: int) -> None:
            client = self.clients[w]
            ctx = WorkerContext(
                client,
                cfg.workers,
                None if data is None else data[w],
                cfg.iterations,
                cfg.seed,
                cfg.stragglers.for_worker(w) if cfg.stragglers else None,
                cfg.on_clock,
                restore=restore_state(self.resume, w),
                checkpoint=checkpoint,
            )
            try:
                results[w] = worker_fn(ctx)
                client.finish()
                if self.barrier is not None:
                    self.barrier.finish(w, ctx.snapshot_state(finished=True))
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
                errors[w] = exc
                self._abort()

        threads = [
            threading.Thread(target=body, args=(w,), name=f"stalesync-worker-{w}", daemon=True)
            for w in range(cfg.workers)
            if self.resume is None or not self.resume.workers[w].finished
        ]
        if self.barrier is not None and self.resume is not None:
            for w, state in enumerate(self.resume.workers):
                if state.finished:
                    self.barrier.finish(w, state)
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for client in self.clients:
            client.end()
        real = [e for e in errors if e is not None and not isinstance(e, JobAbortedError)]
        if real:
            raise real[0]
        if any(errors):
            raise next(e for e in errors if e is not None)
        tables = {t.name: self.table_values(t.name) for t in cfg.tables}
        extra = {}
        if self.resume is not None:
            extra["resumed_from_clock"] = self.resume.clock
        if self.barrier is not None:
            extra["snapshots_written"] = list(self.barrier.written)
        return Outcome(metrics=metrics, tables=tables, results=results, extra=extra)

    def _abort(self) -> None:
        self.abort_event.set()
        for shard in self.shards:
            shard.abort()
        if self.barrier is not None:
            self.barrier.abort()
