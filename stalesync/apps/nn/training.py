"""One training run of a network, whatever it is (a built-in one of the classifier or a
user's module): split the examples over the workers, run the strategy's job (or the ranks
of ``allreduce`` or ``pipeline``), and return the parameters and the run record."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from ...errors import ConfigError
from ...observe.metrics import build_run_record
from ...observe.tensorboard import write_record
from ...ps.compression import parse as parse_compressor
from ...ps.tables import TableSpec
from ...strategies import TABLE, Strategy, check_strategy_consistency, make_strategy
from ...strategies import pipeline as pipelining
from ...strategies.registry import STRATEGIES, option_names
from ..base import RunConfig, check_consistency, check_float, check_int
from ..progress import Progress
from ..sgd_job import run_sgd_job
from ..workers import AUTO, Decision, available_cores, fewest_that_pay
from . import networks
from .allreduce import fit as allreduce_fit
from .problem import NNProblem, NNSpec

PS_CHUNK = 512  # ps: examples per worker per clock when clocks_per_epoch is not given
ALLREDUCE = "allreduce"  # not a parameter-server strategy: stalesync.apps.nn.allreduce
PIPELINE = "pipeline"  # model parallelism, no tables: stalesync.strategies.pipeline
COLLECTIVE = (ALLREDUCE, PIPELINE)  # the strategies that run gloo ranks, not a PS job


@dataclass(frozen=True)
class Plan:
    """How the run is parallelised (the estimator's or ``fit``'s settings)."""

    strategy: Strategy | None  # None for allreduce and pipeline
    workers: int
    consistency: str
    staleness: int | str | None
    clocks_per_epoch: int | None
    compress: str
    seed: int
    pipeline: pipelining.PipelineOptions | None = None

    @property
    def name(self) -> str:
        if self.strategy is not None:
            return self.strategy.name
        return ALLREDUCE if self.pipeline is None else PIPELINE


@dataclass(frozen=True)
class Trained:
    params: np.ndarray  # the final table rows
    record: dict[str, Any]  # the run record; ``final`` holds the counts below
    examples: int
    train_s: float


# the NN's own defaults of strategy options (the strategies' are the linear models'): a
# network averages every 10 local steps (Fashion-MNIST, default MLP, 2 workers: train
# accuracy 0.5 points below one worker's at 1.78x its speed, against 1 point below every
# 50 steps, which cost 5-8% less time), and its downpour shard steps with plain SGD
NN_DEFAULTS: dict[str, dict[str, Any]] = {"average": {"average_every": 10},
                                          "downpour": {"server_update": "sgd"}}
NETWORK_SETTINGS = ("lr", "batch_size")  # the network's own, given to the strategies too


def make_plan(strategy: str, *, lr: float, batch_size: int, workers: int, consistency: str,
              staleness: Any, clocks_per_epoch: int | None, compress: str, seed: int,
              strategy_options: dict[str, Any] | None = None) -> Plan:
    """The checked :class:`Plan` of these settings (an error names the bad one). The
    strategy gets ``strategy_options`` over the NN's defaults, and the network's ``lr`` and
    ``batch_size`` where it takes them (they are set on the network, not as options)."""
    check_float(lr, "lr", 0, low_open=True)
    check_int(batch_size, "batch_size", 1)
    check_int(workers, "workers", 1)
    check_int(seed, "seed", 0)
    if clocks_per_epoch is not None:
        check_int(clocks_per_epoch, "clocks_per_epoch", 1)
    check_consistency(consistency, staleness)
    check_strategy_consistency(strategy, consistency, staleness)
    parse_compressor(compress)
    given = dict(strategy_options or {})
    for key in NETWORK_SETTINGS:
        if key in given:
            raise ConfigError(f"strategy_options: {key!r} is the network's: set {key}= on the "
                              "estimator", param=key)
    chosen = pipeline = None
    if strategy in COLLECTIVE:
        if clocks_per_epoch is not None:
            raise ConfigError(f"clocks_per_epoch is for the parameter-server strategies; "
                              f"strategy {strategy!r} has no clocks", param="clocks_per_epoch")
        if strategy == PIPELINE and compress != "none":
            raise ConfigError("compress applies to what workers send of their gradients; "
                              "strategy 'pipeline' sends activations", param="compress")
    if strategy == ALLREDUCE:
        if given:
            raise ConfigError(f"strategy 'allreduce' takes no options, got {sorted(given)}",
                              param="strategy_options")
    elif strategy == PIPELINE:
        pipeline = pipelining.make_options(given)
        if pipeline.stages != pipelining.AUTO and workers != pipeline.workers:
            raise ConfigError(f"strategy 'pipeline' runs stages x replicas = "
                              f"{pipeline.workers} workers; got workers={workers}",
                              param="workers")
    else:
        misplaced = sorted(set(given) & set(pipelining.OPTION_NAMES))
        if misplaced:
            raise ConfigError(f"strategy_options: {misplaced[0]!r} is an option of strategy "
                              f"'pipeline', not {strategy!r}", param=misplaced[0])
        options = {**NN_DEFAULTS.get(strategy, {}), **given}
        takes = option_names(strategy) if strategy in STRATEGIES else ()
        options.update({k: v for k, v in (("lr", lr), ("batch_size", batch_size)) if k in takes})
        chosen = make_strategy(strategy, options)
    return Plan(chosen, workers, consistency, staleness, clocks_per_epoch, compress, seed,
                pipeline)


def train(spec: NNSpec, initial: np.ndarray, X: np.ndarray, targets: np.ndarray,
          plan: Plan, epochs: int, run: RunConfig) -> Trained:
    """Train from ``initial`` (table rows) on ``X`` / ``targets`` for ``epochs`` epochs."""
    if X.shape[0] < plan.workers:
        raise ConfigError(f"{X.shape[0]} examples cannot be split over {plan.workers} "
                          "workers", param="workers")
    rng = np.random.default_rng(plan.seed)
    if plan.pipeline is not None:
        return _pipeline(spec, initial, X, targets, plan.pipeline, epochs, run)
    if plan.strategy is None:
        parts = np.array_split(rng.permutation(X.shape[0]), plan.workers)
        return _allreduce(spec, initial, [(X[p], targets[p]) for p in parts], epochs, run,
                          plan.compress)
    parts = plan.strategy.partition(X.shape[0], plan.workers, rng)  # fedavg: one per client
    per_clock = plan.clocks_per_epoch or max(1, min(p.size for p in parts) // PS_CHUNK)
    def problem(w: int) -> NNProblem:  # numpy's gathers release the GIL: one thread each
        p = parts[w]
        return NNProblem(X[p], targets[p], spec, per_clock, plan.seed + 7919 * w)

    with ThreadPoolExecutor(min(plan.workers, len(parts))) as pool:
        problems = list(pool.map(problem, range(len(parts))))
    strategy = plan.strategy
    table = TableSpec(TABLE, spec.rows, networks.ROW_WIDTH, "float32",
                      update=strategy.table_update(),
                      compress=None if plan.compress == "none" else plan.compress)
    done = run_sgd_job(strategy, problems, table, initial, epochs,
                       workers=plan.workers, consistency=plan.consistency,
                       staleness=plan.staleness, seed=plan.seed, run=run, app="nn",
                       items_per_epoch=X.shape[0])
    done.record["final"]["parameters"] = networks.count(networks.build_for(spec))
    return Trained(np.asarray(done.result.tables[TABLE], dtype=np.float32), done.record,
                   done.record["final"]["examples"], done.train_s)


def _choose_stages(replicas: int, predicted: dict[int, float]) -> int:
    """``stages='auto'``: the fewest stages that pay (:func:`~..workers.fewest_that_pay`),
    at most one per core a replica has."""
    limit = max(1, available_cores() // replicas)
    return fewest_that_pay({s: t for s, t in predicted.items() if s <= limit})


def _stages_decision(result: pipelining.PipelineResult) -> Decision:
    """The run record's ``workers_decision`` when the stages were ``auto``."""
    stages, predicted = result.options.stages, result.predicted_s
    if not predicted:  # resumed: the snapshot's count
        return Decision(result.options.workers, AUTO, "the stage count of the snapshot "
                        "resumed from", 0.0, {})
    ms = {s: round(t * 1e3, 3) for s, t in predicted.items()}
    if stages == 1:
        reason = (f"a second stage does not pay: predicted {ms[1]:.3g} ms per step on 1 "
                  f"stage vs {ms.get(2, float('nan')):.3g} ms on 2")
    else:
        reason = (f"predicted {ms[stages]:.3g} ms per step on {stages} stages vs {ms[1]:.3g} "
                  "ms on 1")
    return Decision(result.options.workers, AUTO, reason, predicted[1] * result.steps,
                    {str(s): round(t, 6) for s, t in predicted.items()})


def _refuse_run_options(run: RunConfig, strategy: str, snapshots: bool) -> None:
    """What a run of gloo ranks cannot honour, refused before any rank starts."""
    if run.stragglers is not None or (run.snapshot_every and not snapshots):
        what = "injected stragglers" if snapshots else "snapshots or injected stragglers"
        raise ConfigError(f"strategy={strategy!r} takes no {what}", param="strategy")
    if run.min_nodes != 1:
        raise ConfigError(f"strategy={strategy!r} places its ranks with Ray's SPREAD and does "
                          "not recover them: min_nodes does not apply", param="min_nodes")
    if run.shards != 1:
        raise ConfigError(f"strategy={strategy!r} has no parameter server: shards does not "
                          "apply", param="shards")


def _progress(run: RunConfig, strategy: str, epochs: int, examples: int) -> Progress:
    """The bar of a run of gloo ranks: moved as the first rank's epochs end."""
    return Progress(desc=f"nn[{strategy}]", epochs=epochs, enabled=run.progress,
                    objective="loss", items_per_epoch=examples, items="examples")


def _collective_record(run: RunConfig, strategy: str, workers: int, epochs: int,
                       losses: list[float], wall_s: float, final: dict[str, Any],
                       clocks: int = 0) -> dict[str, Any]:
    """The run record of a run of gloo ranks (no parameter-server metrics): ``final`` and
    one record per epoch of its mean loss."""
    record = build_run_record(
        app="nn", strategy=strategy,
        runtime="ray" if run.runtime == "ray" else "processes", consistency="bsp",
        staleness=0, workers=workers, clocks=clocks, epochs=epochs,
        wall_time_s=wall_s, metrics=[], final=final)
    record["bytes_sent"] = final["bytes_sent"]
    record["objective_name"] = "mean loss of the first replica's batches, per epoch"
    record["records"] = [{"iteration": e, "worker": 0, "time_s": None, "duration_s": 0.0,
                          "wait_s": 0.0, "bytes_sent": 0, "objective": loss}
                         for e, loss in enumerate(losses)]
    if run.tensorboard:  # no parameter-server job streams them: written at the end
        write_record(run.tensorboard, record)
    return record


def _allreduce(spec: NNSpec, initial: np.ndarray, shares: list, epochs: int,
               run: RunConfig, compress: str) -> Trained:
    _refuse_run_options(run, ALLREDUCE, snapshots=False)
    with _progress(run, ALLREDUCE, epochs, sum(len(s[1]) for s in shares)) as bar:
        result = allreduce_fit(spec, shares, epochs, initial, compress, runtime=run.runtime,
                               address=run.address, on_epoch=bar.advance)
    workers = len(shares)
    final = {
        "train_loss": result.losses[-1], "epochs": epochs, "examples": result.examples,
        "examples_per_s": result.examples / max(result.train_s, 1e-12),
        "train_s": result.train_s, "strategy": ALLREDUCE,
        "parameters": networks.count(networks.build_for(spec)),
        "identical_parameters": result.identical,
        "bytes_sent": result.bytes_allreduced * workers, "compress": compress,
        "compression_ratio": result.dense_bytes / max(result.bytes_allreduced, 1)}
    record = _collective_record(run, ALLREDUCE, workers, epochs, result.losses,
                                result.wall_s, final)
    record["compression_ratio"] = final["compression_ratio"]
    return Trained(np.asarray(result.params, dtype=np.float32), record, result.examples,
                   result.train_s)


def _pipeline(spec: NNSpec, initial: np.ndarray, X: np.ndarray, targets: np.ndarray,
              options: pipelining.PipelineOptions, epochs: int, run: RunConfig) -> Trained:
    """The network cut into stages (:mod:`stalesync.strategies.pipeline`)."""
    _refuse_run_options(run, PIPELINE, snapshots=True)
    n = networks.count(networks.build_for(spec))
    with _progress(run, PIPELINE, epochs, X.shape[0]) as bar:
        result = pipelining.fit(
            partial(networks.build_for, spec), initial.reshape(-1)[:n].copy(), X, targets,
            networks.loss_for(spec), optimizer=spec.optimizer, lr=spec.lr,
            batch_size=spec.batch_size, epochs=epochs, seed=spec.seed, options=options,
            runtime=run.runtime, address=run.address, snapshot_every=run.snapshot_every,
            snapshot_dir=run.snapshot_dir, resume=run.resume, on_epoch=bar.advance,
            choose_stages=partial(_choose_stages, options.replicas))
    layout, asked, options = result.layout, options, result.options
    final = {
        "train_loss": result.losses[-1] if result.losses else None, "epochs": epochs,
        "examples": result.examples,
        "examples_per_s": result.examples / max(result.train_s, 1e-12),
        "train_s": result.train_s, "strategy": PIPELINE, "parameters": n,
        "identical_parameters": result.identical, "bytes_sent": result.bytes_sent,
        **pipelining.options_record(options), "cuts": list(layout.cuts),
        "stage_parameters": list(result.stage_parameters),
        "stage_seconds": list(layout.stage_seconds), "steps": result.steps}
    record = _collective_record(run, PIPELINE, options.workers, epochs, result.losses,
                                result.wall_s, final, clocks=result.steps)
    if asked.stages == pipelining.AUTO:
        record["workers_decision"] = _stages_decision(result).as_record()
    rows = np.zeros(initial.size, dtype=np.float32)
    rows[:n] = result.params
    return Trained(rows.reshape(initial.shape), record, result.examples, result.train_s)
