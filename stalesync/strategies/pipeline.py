"""``strategy="pipeline"``: one network split into consecutive stages, one worker each
(DistBelief's model parallelism; GPipe and 1F1B pipeline parallelism), optionally in
``replicas`` data-parallel copies.

A ``torch.nn.Sequential`` is cut between its children: at the cuts a user declares
(``cuts``), or where the stages' measured forward-and-backward times are most even
(:func:`balanced_cuts`: every child is timed on one micro-batch before the job starts). Each
stage is a rank of one gloo group (:mod:`stalesync.runtime.ranks`: local processes, or one
Ray actor per stage). Every step a mini-batch of ``batch_size`` examples is cut into
``micro_batches`` equal micro-batches that flow through the stages on PyTorch's own schedules
(``torch.distributed.pipelining``: ``ScheduleGPipe``, ``Schedule1F1B``); activations travel
forward and their gradients back across each cut. The loss is the mean over each
micro-batch and the schedule divides the summed gradients by the number of micro-batches,
so a step's gradient is the whole mini-batch's mean gradient, and each stage's optimiser
(SGD or Adam, per parameter) makes the step one process would make: a pipelined run equals
single-process training on the same batches up to float rounding (tested).

With ``replicas=R`` there are ``R x stages`` ranks: replica r's stages form one pipeline
and train on its share of the examples; after each step's backward the gradients of stage
s are summed over the R replicas (gloo allreduce within the stage's group) and divided by
R, so every replica makes the same step (synchronous data parallelism across pipelines).

Snapshots (``snapshot_every`` steps) are written by the ranks together: each writes its
stage's parameters and optimiser state into one temporary directory, and rank 0 renames it
in place once all have (:mod:`stalesync.persist.snapshot`'s format, npz + JSON).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from .base import positive_int

SCHEDULES = ("1f1b", "gpipe")
TIMING_REPEATS = 3


AUTO = "auto"
DEFAULT_MICRO_BATCHES = 4  # at most: the largest count up to this that divides the batch
# what a pipelined step costs beyond its stages' compute, measured on this project's 2-core
# machine (bench/pipeline.py): per micro-batch and cut, the schedule's messages and Python
# (1.3 ms: the classifier's MLP, 2 stages, ran 10.7 ms steps from 0.6 ms stages), and
# stages running side by side instead of alone (each ~12% slower: memory bandwidth)
MESSAGE_S = 1.3e-3
CONTENTION = 1.12


@dataclass(frozen=True)
class PipelineOptions:
    """``stages`` workers per pipeline (``auto``: as many as pay, predicted from the
    measured layer times; see :func:`predict_step_seconds`); ``micro_batches`` per
    mini-batch (it must divide ``batch_size``; default: 1 for one stage, else the largest
    count up to 4 that divides the batch); ``schedule``: ``1f1b`` (one forward, one
    backward: at most ``stages`` micro-batches' activations held) or ``gpipe`` (all
    forwards, then all backwards; neither was faster than the other in every run of
    ``bench/pipeline.py`` here); ``replicas`` data-parallel pipelines; ``cuts``: the
    children of the Sequential where stages 2.. start (default: balanced by measured
    time)."""

    stages: int | str = 2
    micro_batches: int | None = None
    schedule: str = "1f1b"
    replicas: int = 1
    cuts: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.stages != AUTO:
            positive_int(self.stages, "stages")
        if self.micro_batches is not None:
            positive_int(self.micro_batches, "micro_batches")
        positive_int(self.replicas, "replicas")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}",
                              param="schedule")
        if self.cuts is not None:
            if self.stages == AUTO:
                raise ConfigError("cuts fix the stages: give stages too (not 'auto')",
                                  param="cuts")
            cuts = tuple(self.cuts)
            if len(cuts) != self.stages - 1 or any(
                    isinstance(c, bool) or not isinstance(c, int | np.integer) for c in cuts):
                raise ConfigError(f"cuts must be {self.stages - 1} layer indices (where stages "
                                  f"2..{self.stages} start), got {self.cuts!r}", param="cuts")
            object.__setattr__(self, "cuts", tuple(int(c) for c in cuts))

    @property
    def workers(self) -> int:
        if self.stages == AUTO:
            raise ValueError("stages='auto' is decided when the layers are timed")
        return self.stages * self.replicas

    def micro_batches_for(self, stages: int, batch_size: int) -> int:
        """The micro-batch count of a run of ``stages`` stages (given, or the default)."""
        if self.micro_batches is not None:
            return self.micro_batches
        if stages == 1:
            return 1
        return max(m for m in range(1, DEFAULT_MICRO_BATCHES + 1) if batch_size % m == 0)

    def resolved(self, stages: int, batch_size: int) -> PipelineOptions:
        """These options with ``stages`` and the micro-batch count decided."""
        return replace(self, stages=stages,
                       micro_batches=self.micro_batches_for(stages, batch_size))


OPTION_NAMES = tuple(f for f in PipelineOptions.__dataclass_fields__)


def make_options(given: dict[str, Any]) -> PipelineOptions:
    """The options from ``strategy_options``; one it does not take is refused, named."""
    for key in given:
        if key not in OPTION_NAMES:
            raise ConfigError(f"strategy_options: {key!r} is not an option of strategy "
                              f"'pipeline' (its options: {', '.join(OPTION_NAMES)})", param=key)
    return PipelineOptions(**given)


# -- cutting the network ------------------------------------------------------------------
def layers_of(module: Any) -> list[Any]:
    """The children a pipeline may cut between (a ``torch.nn.Sequential``'s)."""
    import torch

    if not isinstance(module, torch.nn.Sequential):
        raise ConfigError("strategy='pipeline' cuts a torch.nn.Sequential between its "
                          f"children; got a {type(module).__name__} (wrap its layers in a "
                          "Sequential)", param="strategy")
    return list(module)


def layer_inputs(module: Any, x: Any) -> list[Any]:
    """The input of each child for batch ``x``, and the network's output last."""
    import torch

    inputs = [x]
    with torch.no_grad():
        for layer in layers_of(module):
            inputs.append(layer(inputs[-1]))
    return inputs


def layer_seconds(module: Any, inputs: list[Any]) -> list[float]:
    """Each child's forward and backward time on its input (:func:`layer_inputs`; median
    of a few runs, one thread, as a stage runs)."""
    import torch

    layers = layers_of(module)
    times = np.zeros((TIMING_REPEATS, len(layers)))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for rep in range(TIMING_REPEATS):
            for i, (layer, inp) in enumerate(zip(layers, inputs, strict=False)):
                inp = inp.detach().requires_grad_(i > 0 and inp.is_floating_point())
                start = time.perf_counter()
                out = layer(inp)
                if out.requires_grad:
                    out.backward(torch.ones_like(out))
                times[rep, i] = time.perf_counter() - start
    finally:
        module.zero_grad(set_to_none=True)
        torch.set_num_threads(threads)
    return [float(t) for t in np.median(times, axis=0)]


def _has_parameters(layer: Any) -> bool:
    return any(True for _ in layer.parameters())


def balanced_cuts(costs: Sequence[float], trainable: Sequence[bool], stages: int
                  ) -> tuple[int, ...]:
    """Where stages 2..``stages`` start so that the slowest stage is fastest (contiguous
    parts, every part holding a trainable layer: a stage with nothing to step has no
    optimiser); exact, by dynamic programming over the prefix sums."""
    n = len(costs)
    if sum(bool(t) for t in trainable) < stages:
        raise ConfigError(f"the network has {sum(bool(t) for t in trainable)} layers with "
                          f"parameters: it cannot be cut into {stages} stages", param="stages")
    prefix = np.concatenate([[0.0], np.cumsum(costs)])
    params = np.concatenate([[0], np.cumsum([bool(t) for t in trainable])])
    inf = float("inf")
    # best[k][j]: the slowest of k stages over layers [0, j); cut[k][j]: where the last starts
    best = np.full((stages + 1, n + 1), inf)
    cut = np.zeros((stages + 1, n + 1), dtype=np.int64)
    best[0][0] = 0.0
    for k in range(1, stages + 1):
        for j in range(1, n + 1):
            for i in range(k - 1, j):
                if best[k - 1][i] == inf or params[j] == params[i]:
                    continue
                value = max(best[k - 1][i], prefix[j] - prefix[i])
                if value < best[k][j]:
                    best[k][j], cut[k][j] = value, i
    cuts, j = [], n
    for k in range(stages, 1, -1):
        j = int(cut[k][j])
        cuts.append(j)
    return tuple(reversed(cuts))


def check_cuts(cuts: Sequence[int], trainable: Sequence[bool]) -> None:
    bounds = [0, *cuts, len(trainable)]
    for s, (a, b) in enumerate(zip(bounds, bounds[1:], strict=False)):
        if not a < b:
            raise ConfigError(f"cuts {tuple(cuts)} must increase strictly within 1.."
                              f"{len(trainable) - 1} (the Sequential has {len(trainable)} "
                              "children)", param="cuts")
        if not any(trainable[a:b]):
            raise ConfigError(f"cuts {tuple(cuts)}: stage {s + 1} (children {a}..{b - 1}) "
                              "has no parameters to train", param="cuts")


@dataclass(frozen=True)
class Layout:
    """Where the network is cut and what that costs per step."""

    cuts: tuple[int, ...]
    stage_seconds: tuple[float, ...]  # measured forward + backward of one micro-batch
    boundary_elements: tuple[int, ...]  # activation elements per micro-batch at each cut

    @property
    def bounds(self) -> list[tuple[int, int]]:
        n = len(self.stage_seconds)
        edges = [0, *self.cuts, None]
        return [(edges[s], edges[s + 1]) for s in range(n)]


def predict_step_seconds(costs: Sequence[float], trainable: Sequence[bool],
                         micro_batches: int, stages: int) -> float:
    """A step's predicted time from the layers' measured times on one micro-batch: one
    stage runs them ``micro_batches`` times; S stages take ``micro_batches + S - 1`` slots
    of the slowest stage (the pipeline's fill and drain), each slot also paying
    :data:`MESSAGE_S`, all of it :data:`CONTENTION` slower."""
    if stages == 1:
        return micro_batches * float(sum(costs))
    cuts = balanced_cuts(costs, trainable, stages)
    edges = [0, *cuts, len(costs)]
    slowest = max(sum(costs[a:b]) for a, b in zip(edges, edges[1:], strict=False))
    return (micro_batches + stages - 1) * (slowest + MESSAGE_S) * CONTENTION


@dataclass(frozen=True)
class Plan:
    """The options with the stages decided, and the layout."""

    options: PipelineOptions
    layout: Layout
    predicted_s: dict[int, float]  # per stage count, when stages was 'auto'


def plan_layout(module: Any, X: np.ndarray, batch_size: int, options: PipelineOptions,
                choose: Callable[[dict[int, float]], int] | None = None) -> Plan:
    """Time the layers on one micro-batch of ``X``; decide the stages (``auto``: the count
    ``choose(predicted seconds by count)`` picks, among those the network can be cut into)
    and the cuts (declared, or balanced by measured time)."""
    import torch

    layers = layers_of(module)
    trainable = [_has_parameters(layer) for layer in layers]
    guess = options.stages if options.stages != AUTO else 2
    micro = batch_size // options.micro_batches_for(guess, batch_size)
    inputs = layer_inputs(module, torch.from_numpy(np.ascontiguousarray(X[:micro])))
    costs = layer_seconds(module, inputs)
    predicted: dict[int, float] = {}
    stages = options.stages
    if stages == AUTO:
        m = options.micro_batches_for(2, batch_size)
        predicted = {s: predict_step_seconds(costs, trainable, m, s)
                     for s in range(1, sum(trainable) + 1)}
        stages = (choose or (lambda p: 1))(predicted)
    options = options.resolved(stages, batch_size)
    if options.cuts is not None:
        check_cuts(options.cuts, trainable)
        cuts = options.cuts
    else:
        cuts = balanced_cuts(costs, trainable, options.stages)
    edges = [0, *cuts, len(layers)]
    stage_seconds = tuple(float(sum(costs[a:b])) for a, b in zip(edges, edges[1:],
                                                                   strict=False))
    layout = Layout(tuple(cuts), stage_seconds,
                    tuple(int(inputs[c].numel()) for c in cuts))
    return Plan(options, layout, predicted)


# -- the job each rank runs ---------------------------------------------------------------
@dataclass(frozen=True)
class PipelineJob:
    """What every rank needs (pickled to the ranks: functions and plain values only)."""

    factory: Callable[[], Any]  # the whole network, freshly built (the same on every rank)
    initial: np.ndarray  # its parameters, flat float32 (parameters_to_vector order)
    loss: Callable[[Any, Any], Any]  # loss(output, target): the mean over the batch
    optimizer: str  # "sgd" or "adam"
    lr: float
    batch_size: int
    epochs: int
    seed: int
    options: PipelineOptions
    bounds: tuple[tuple[int, int | None], ...]
    steps_per_epoch: int
    snapshot_every: int | None = None
    snapshot_dir: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # what a snapshot records of the job

    def place(self, rank: int) -> tuple[int, int]:
        """(replica, stage) of ``rank``."""
        return divmod(rank, self.options.stages)


def epoch_order(seed: int, replica: int, epoch: int, n: int) -> np.ndarray:
    """Replica ``replica``'s example order in ``epoch`` (every stage of it draws the same)."""
    return np.random.default_rng([seed, replica, 6133, epoch]).permutation(n)


def train_rank(rank: int, world: int, host: str, port: int, report: Callable[..., None],
               job: PipelineJob, X: Any, y: Any, n: int, resume: dict[str, Any] | None
               ) -> dict[str, Any]:  # pragma: no cover - runs in a rank's process
    """One stage of one replica: ``X`` (first stage) and ``y`` (last stage) are the replica's
    share, ``n`` its size; ``resume``: the stage's arrays and the step to start at;
    ``report(epoch, loss)``: the first replica's last stage, as each epoch ends."""
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)  # one core per stage: the stages are the parallelism
    dist.init_process_group("gloo", init_method=f"tcp://{host}:{port}", rank=rank,
                            world_size=world)
    try:
        return _StageRunner(job, rank, world, X, y, n).run(resume, report)
    finally:
        dist.destroy_process_group()


class _StageRunner:  # pragma: no cover - runs in a rank's process
    def __init__(self, job: PipelineJob, rank: int, world: int, X: Any, y: Any,
                 n: int) -> None:
        import torch
        import torch.distributed as dist
        from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleGPipe

        self.job, self.rank, self.n = job, rank, n
        options = job.options
        self.replica, self.stage = job.place(rank)
        pipe, self.replica_group = None, None  # one replica: the default group
        if options.replicas > 1:  # every rank creates every group, in the same order
            pipes = [dist.new_group(list(range(r * options.stages, (r + 1) * options.stages)))
                     for r in range(options.replicas)]
            across = [dist.new_group([r * options.stages + s for r in range(options.replicas)])
                      for s in range(options.stages)]
            pipe, self.replica_group = pipes[self.replica], across[self.stage]
        net = job.factory()
        torch.nn.utils.vector_to_parameters(torch.from_numpy(job.initial.copy()),
                                            net.parameters())
        start, stop = job.bounds[self.stage]
        self.module = torch.nn.Sequential(*list(net)[start:stop])
        self.params = list(self.module.parameters())
        self.first, self.last = self.stage == 0, self.stage == options.stages - 1
        stage = PipelineStage(self.module, self.stage, options.stages, torch.device("cpu"),
                              group=pipe)
        schedule = {"gpipe": ScheduleGPipe, "1f1b": Schedule1F1B}[options.schedule]
        self.schedule = schedule(stage, options.micro_batches,
                                 loss_fn=job.loss, scale_grads=True)  # every stage: a
        # schedule without a loss runs no backward (only the last stage calls it)
        # Adam in its fused form (one compiled update instead of a loop of tensor operations
        # per parameter), as the classifier's other strategies step
        self.optimizer = (torch.optim.Adam(self.params, lr=job.lr, fused=True)
                          if job.optimizer == "adam" else torch.optim.SGD(self.params, lr=job.lr))
        self.X = torch.from_numpy(np.ascontiguousarray(X)) if self.first else None
        self.y = torch.from_numpy(np.ascontiguousarray(y)) if self.last else None
        self.losses: list[float] = []  # per epoch (the last stage's)
        self.epoch_losses: list[float] = []  # the steps of the epoch under way

    def run(self, resume: dict[str, Any] | None, report: Callable[..., None]
            ) -> dict[str, Any]:
        import torch.distributed as dist

        job = self.job
        step = 0 if resume is None else self._load(resume)
        total = job.epochs * job.steps_per_epoch
        dist.barrier()
        begin = time.perf_counter()
        order_of = (-1, None)  # (epoch, its example order): drawn once an epoch
        while step < total:
            epoch, k = divmod(step, job.steps_per_epoch)
            if order_of[0] != epoch:
                order_of = (epoch, epoch_order(job.seed, self.replica, epoch, self.n))
            idx = order_of[1][k * job.batch_size:(k + 1) * job.batch_size]
            self.epoch_losses.append(self._step(idx))
            step += 1
            if step % job.steps_per_epoch == 0 and self.last:
                self.losses.append(float(np.mean(self.epoch_losses)))
                self.epoch_losses = []
                if self.replica == 0:
                    report(step // job.steps_per_epoch, self.losses[-1])
            if job.snapshot_every and step % job.snapshot_every == 0 and step < total:
                self._snapshot(step)
        train_s = time.perf_counter() - begin
        import torch

        flat = torch.nn.utils.parameters_to_vector(self.params).detach().numpy().copy()
        return {"replica": self.replica, "stage": self.stage, "params": flat,
                "losses": self.losses, "train_s": train_s}

    def _step(self, idx: np.ndarray) -> float:
        import torch
        import torch.distributed as dist

        self.optimizer.zero_grad(set_to_none=False)
        index = torch.from_numpy(idx)
        losses: list[Any] = []
        if self.first and self.last:
            self.schedule.step(self.X[index], target=self.y[index], losses=losses)
        elif self.first:
            self.schedule.step(self.X[index])
        elif self.last:
            self.schedule.step(target=self.y[index], losses=losses)
        else:
            self.schedule.step()
        if self.replica_group is not None:  # the same step on every replica
            grads = [p.grad for p in self.params]
            flat = torch.cat([g.reshape(-1) for g in grads])
            dist.all_reduce(flat, group=self.replica_group)
            flat /= self.job.options.replicas
            torch.nn.utils.vector_to_parameters(flat, grads)
        self.optimizer.step()
        return float(torch.stack(losses).detach().mean()) if losses else 0.0

    # -- snapshots -------------------------------------------------------------------------
    def _snapshot(self, step: int) -> None:
        """Every rank writes its stage's part into one temporary directory; rank 0 adds the
        meta file and renames it in place once all have (a ``snap-*`` is always whole)."""
        import torch.distributed as dist

        from ..persist.files import fsync_dir
        from ..persist.snapshot import (
            WorkerState,
            prune,
            snapshot_name,
            write_tables_and_meta,
            write_worker_state,
        )

        root = Path(self.job.snapshot_dir)
        tmp = root / f".{snapshot_name(step)}.pipeline-tmp"
        if self.rank == 0:
            root.mkdir(parents=True, exist_ok=True)
            _clear(tmp)
            tmp.mkdir()
        dist.barrier()
        metrics = {"losses": self.losses, "epoch_losses": self.epoch_losses}
        write_worker_state(tmp, self.rank, WorkerState(step, self._state(), metrics=metrics))
        dist.barrier()
        if self.rank == 0:
            write_tables_and_meta(tmp, step, {}, dist.get_world_size(), self.job.meta)
            final = root / snapshot_name(step)
            _clear(final)
            tmp.rename(final)
            fsync_dir(root)
            prune(root, 2)
        dist.barrier()

    def _state(self) -> dict[str, np.ndarray]:
        import torch

        arrays = {"params": torch.nn.utils.parameters_to_vector(self.params)
                  .detach().numpy().copy()}
        for i, state in self.optimizer.state_dict()["state"].items():
            for key, value in state.items():
                arrays[f"optimizer.{i}.{key}"] = torch.as_tensor(value).numpy().copy()
        return arrays

    def _load(self, resume: dict[str, Any]) -> int:
        import torch

        arrays = resume["arrays"]
        torch.nn.utils.vector_to_parameters(torch.from_numpy(arrays["params"].copy()),
                                            self.params)
        state: dict[int, dict[str, Any]] = {}
        for name, value in arrays.items():
            if name.startswith("optimizer."):
                _, i, key = name.split(".", 2)
                state.setdefault(int(i), {})[key] = torch.from_numpy(value.copy())
        if state:
            saved = self.optimizer.state_dict()
            saved["state"] = state
            self.optimizer.load_state_dict(saved)
        self.losses = list(resume["metrics"].get("losses", []))
        self.epoch_losses = list(resume["metrics"].get("epoch_losses", []))
        return int(resume["step"])


@dataclass(frozen=True)
class PipelineResult:
    params: np.ndarray  # flat float32 (parameters_to_vector order), replica 0's
    identical: bool  # every replica ended with the same parameters, bit for bit
    losses: list[float]  # mean loss of replica 0's batches, per epoch
    examples: int  # trained on, all replicas
    steps: int
    wall_s: float  # including starting the ranks and timing the layers
    train_s: float  # the training loops (the slowest rank's)
    layout: Layout
    bytes_sent: int  # activations and their gradients across the cuts, plus the
    # replicas' gradient allreduce (the buffers handed to gloo)
    stage_parameters: tuple[int, ...]
    options: PipelineOptions  # as run: the stages and micro-batch count decided
    predicted_s: dict[int, float]  # a step's predicted seconds by stage count ('auto')


def fit(factory: Callable[[], Any], initial: np.ndarray, X: np.ndarray, y: np.ndarray,
        loss: Callable[[Any, Any], Any], *, optimizer: str, lr: float, batch_size: int,
        epochs: int, seed: int, options: PipelineOptions, runtime: str = "embedded",
        address: str | None = None, snapshot_every: int | None = None,
        snapshot_dir: str | None = None, resume: str | None = None,
        on_epoch: Callable[[int, float], None] | None = None,
        choose_stages: Callable[[dict[int, float]], int] | None = None) -> PipelineResult:
    """Train ``factory()`` (a Sequential; parameters ``initial``) on ``X`` / ``y`` split into
    ``options.stages`` stages on as many ranks per replica (see the module docstring);
    ``on_epoch(epoch, loss)`` as each epoch ends; ``choose_stages(predicted seconds per
    step by stage count)``: the count ``stages='auto'`` runs. A resumed run keeps its
    snapshot's stages and cuts unless it declares its own (measured layer times differ
    from run to run, so balancing them again could cut elsewhere)."""
    import torch

    from ..runtime.ranks import run_ranks

    if options.micro_batches is not None and batch_size % options.micro_batches:
        raise ConfigError(f"micro_batches {options.micro_batches} must divide batch_size "
                          f"{batch_size} (micro-batches of equal size: a step's gradient is "
                          "then the batch's mean gradient)", param="micro_batches")
    if resume is not None:
        options = _keep_snapshot_layout(options, resume)
    start = time.perf_counter()
    shares = np.array_split(np.random.default_rng(seed).permutation(X.shape[0]),
                            options.replicas)
    steps_per_epoch = min(len(s) for s in shares) // batch_size
    if steps_per_epoch < 1:
        raise ConfigError(f"batch_size {batch_size} is more than the {min(map(len, shares))} "
                          f"examples of a replica's share", param="batch_size")
    net = factory()
    torch.nn.utils.vector_to_parameters(torch.from_numpy(initial.copy()), net.parameters())
    plan = plan_layout(net, X, batch_size, options, choose_stages)
    options, layout = plan.options, plan.layout
    declared = {k: v for k, v in options_record(options).items() if k != "cuts"}
    meta = {"strategy": "pipeline", "options": declared, "cuts": list(layout.cuts),
            "batch_size": batch_size, "seed": seed, "examples": int(X.shape[0]),
            "optimizer": optimizer}
    resumed = _resume_states(resume, meta, options.workers)
    if snapshot_every and snapshot_dir is None and resume is not None:
        from ..persist.snapshot import snapshot_root

        snapshot_dir = str(snapshot_root(resume))
    job = PipelineJob(factory, initial, loss, optimizer, lr, batch_size, epochs, seed,
                      options, tuple(layout.bounds), steps_per_epoch, snapshot_every,
                      snapshot_dir, meta)
    args = []
    for rank in range(options.workers):
        replica, stage = job.place(rank)
        share = shares[replica]
        args.append((job, X[share] if stage == 0 else None,
                     y[share] if stage == options.stages - 1 else None, len(share),
                     None if resumed is None else resumed[rank]))

    def name(rank: int) -> str:
        replica, stage = job.place(rank)
        return (f"pipeline stage {stage} of replica {replica} (rank {rank})"
                if options.replicas > 1 else f"pipeline stage {stage} (rank {rank})")

    ranks = run_ranks(train_rank, args, runtime=runtime, address=address,
                      role="pipeline-stage", name=name,
                      on_report=lambda rank, values: on_epoch and on_epoch(*values))
    return _result(ranks, plan, steps_per_epoch * epochs, batch_size,
                   time.perf_counter() - start)


def _result(ranks: list[dict[str, Any]], plan: Plan, steps: int, batch_size: int,
            wall_s: float) -> PipelineResult:
    options, layout = plan.options, plan.layout
    by_place = {(r["replica"], r["stage"]): r for r in ranks}
    stages = range(options.stages)
    params = np.concatenate([by_place[0, s]["params"] for s in stages]).astype(np.float32)
    identical = all(np.array_equal(by_place[0, s]["params"], by_place[r, s]["params"])
                    for r in range(options.replicas) for s in stages)
    sizes = tuple(int(by_place[0, s]["params"].size) for s in stages)
    crossing = 2 * options.micro_batches * sum(layout.boundary_elements) * 4  # per step
    allreduce = 4 * sum(sizes) if options.replicas > 1 else 0
    return PipelineResult(
        params, identical, by_place[0, options.stages - 1]["losses"],
        steps * batch_size * options.replicas, steps, wall_s,
        max(r["train_s"] for r in ranks), layout,
        steps * options.replicas * (crossing + allreduce), sizes, options, plan.predicted_s)


def _keep_snapshot_layout(options: PipelineOptions, resume: str) -> PipelineOptions:
    """``options`` with the snapshot's stage count (for ``auto``) and its cuts (where the
    job declares none and runs as many stages): its meta file only."""
    import json

    from ..persist.snapshot import SnapshotError, latest_snapshot

    path = latest_snapshot(resume)
    try:
        meta = json.loads((path / "meta.json").read_text())
        stages, cuts = int(meta["options"]["stages"]), tuple(int(c) for c in meta["cuts"])
    except (TypeError, OSError, ValueError, KeyError) as exc:
        raise SnapshotError(f"{resume}: no pipelined snapshot to resume ({exc})") from exc
    if options.stages == AUTO:
        options = replace(options, stages=stages)
    if options.cuts is None and options.stages == stages:
        options = replace(options, cuts=cuts)
    return options


def _resume_states(resume: str | None, meta: dict[str, Any], workers: int
                   ) -> list[dict[str, Any]] | None:
    """Each rank's arrays and the step to go on from, out of the snapshot ``resume``
    (refused, naming what differs, when it is not this job's)."""
    if resume is None:
        return None
    from ..persist.snapshot import check_meta, load_snapshot

    snap = load_snapshot(resume)
    check_meta(snap, meta, "pipelined job", workers)
    return [{"arrays": w.arrays, "step": snap.clock, "metrics": w.metrics or {}}
            for w in snap.workers]


def _clear(path: Path) -> None:
    import shutil

    if path.exists():
        shutil.rmtree(path)


def options_record(options: PipelineOptions) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(options).items()}
