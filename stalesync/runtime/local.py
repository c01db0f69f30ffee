"""The embedded runtime: workers are threads, shards are objects in the same process.

Nothing listens and nothing needs setting up. Worker caches are private, so compiled kernels
that release the GIL run on every core at once. If a worker function raises, the job is
aborted: parked reads wake up and raise, every other worker stops at its next table call,
all threads are joined, and the first real error is re-raised in the caller.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..client import WorkerClient
from ..context import WorkerContext
from ..errors import JobAbortedError
from ..metrics import WorkerMetrics
from ..server import ServerShard
from ..tables import ShardMap


@dataclass
class Outcome:
    metrics: list[WorkerMetrics]
    tables: dict[str, np.ndarray]
    results: list[Any]


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
            )
            try:
                results[w] = worker_fn(ctx)
                client.finish()
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
                errors[w] = exc
                self._abort()

        threads = [
            threading.Thread(target=body, args=(w,), name=f"stalesync-worker-{w}", daemon=True)
            for w in range(cfg.workers)
        ]
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
        return Outcome(metrics=metrics, tables=tables, results=results)

    def _abort(self) -> None:
        self.abort_event.set()
        for shard in self.shards:
            shard.abort()
