"""``strategy="allreduce"``: synchronous data-parallel SGD with the gradients summed across
workers every step by ``torch.distributed``'s gloo allreduce (Horovod's scheme, no
parameter server). Each worker is a rank of one gloo process group
(:mod:`stalesync.runtime.ranks`: local processes on the embedded runtime, one actor per
worker on Ray).

Every step each worker takes the next ``batch_size`` examples of its share, computes the
gradient of their mean loss, and the flattened gradients (one buffer, like DDP's buckets)
are allreduced and divided by the number of workers; every worker then makes the same SGD
step. So all workers hold bit-identical parameters after every step (tested), and a run
equals single-process SGD on the concatenated batches up to float rounding (tested).
Steps per epoch are the full batches of the smallest share, the same on every worker (a
collective that one worker skips would hang the others).

With ``compress`` (any :mod:`stalesync.ps.compression` codec) each worker folds its gradient
into its error-feedback residual and encodes it; the encoded arrays (top-k indices and
values, QSGD codes and norms, packed signs, PowerSGD's P and Q) are exchanged with gloo's
``all_gather`` instead of the dense ``all_reduce``, and every worker decodes every worker's
payload in rank order and steps with their mean: the parameters stay bit-identical on every
worker. Bytes counted are those of the buffers handed to the collective.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...ps.compression import Encoded, ErrorFeedback
from ...ps.compression import parse as parse_compressor
from ...runtime.ranks import run_ranks
from . import networks
from .problem import NNSpec


@dataclass(frozen=True)
class AllreduceResult:
    params: np.ndarray  # the final table rows (rank 0's; every rank's are identical)
    identical: bool  # every rank ended with the same parameters, bit for bit
    losses: list[float]  # mean training loss per epoch (rank 0's batches)
    examples: int
    wall_s: float  # including starting the processes
    train_s: float  # the training loops (the slowest worker's)
    bytes_allreduced: int  # per worker: the buffers handed to the collective, measured
    dense_bytes: int  # per worker: what uncompressed gradients would have been


def epoch_order(seed: int, rank: int, epoch: int, n: int) -> np.ndarray:
    return np.random.default_rng([seed, rank, 4409, epoch]).permutation(n)


def fit(spec: NNSpec, shares: list[tuple[np.ndarray, np.ndarray]], epochs: int,
        initial: np.ndarray, compress: str = "none", *, runtime: str = "embedded",
        address: str | None = None, on_epoch: Any = None) -> AllreduceResult:
    """Train with ``len(shares)`` ranks (:func:`~stalesync.runtime.ranks.run_ranks`: local
    processes, or Ray actors); ``shares[w]`` = (X, labels) of worker w; ``compress``: a
    compressor spec, or ``none`` for the dense allreduce; ``on_epoch(epoch, loss)``: rank
    0's epochs as they end."""
    start = time.perf_counter()
    ranks = run_ranks(_train, [(spec, share, epochs, initial, compress) for share in shares],
                      runtime=runtime, address=address, role="allreduce-worker",
                      name=lambda r: f"allreduce worker {r}",
                      on_report=lambda rank, values: on_epoch and on_epoch(*values))
    return _result(ranks, time.perf_counter() - start)


def _result(ranks: list[dict[str, Any]], wall_s: float) -> AllreduceResult:
    first = ranks[0]
    identical = all(np.array_equal(first["params"], r["params"]) for r in ranks)
    return AllreduceResult(first["params"], identical, first["losses"],
                           int(sum(r["examples"] for r in ranks)), wall_s,
                           max(r["train_s"] for r in ranks), int(first["bytes"]),
                           int(first["dense_bytes"]))


def _train(rank, world, host, port, report, spec, share, epochs, initial, compress
           ):  # pragma: no cover - child
    torch = networks.torch_module()
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://{host}:{port}", rank=rank,
                            world_size=world)
    try:
        X, labels = share
        net = networks.build_for(spec)
        networks.set_flat(net, initial)
        loss_fn = networks.loss_for(spec)
        params = list(net.parameters())
        tx, ty = torch.from_numpy(np.ascontiguousarray(X)), torch.from_numpy(labels)
        b = spec.batch_size
        steps = _steps_shared(len(labels), b, world)
        exchange = _Exchange(compress, rank, world, sum(p.numel() for p in params))
        losses = []
        dist.barrier()
        start = time.perf_counter()
        for epoch in range(epochs):
            order = torch.from_numpy(epoch_order(spec.seed, rank, epoch, len(labels)))
            total = 0.0
            for k in range(steps):
                idx = order[k * b:(k + 1) * b]
                loss = loss_fn(net(tx[idx]), ty[idx])
                grads = torch.autograd.grad(loss, params)
                flat = exchange.mean(torch.cat([g.reshape(-1) for g in grads]),
                                     epoch * steps + k)
                with torch.no_grad():
                    offset = 0
                    for p in params:
                        n = p.numel()
                        p.data.add_(flat[offset:offset + n].view_as(p), alpha=-spec.lr)
                        offset += n
                total += float(loss.detach())
            losses.append(total / max(steps, 1))
            if rank == 0:
                report(epoch + 1, losses[-1])
        return {"params": networks.get_flat(net), "losses": losses,
                "examples": epochs * steps * b, "bytes": exchange.sent,
                "dense_bytes": exchange.dense,
                "train_s": time.perf_counter() - start}
    finally:
        dist.destroy_process_group()


class _Exchange:  # pragma: no cover - child process
    """The mean of every worker's gradient: a dense ``all_reduce``, or (compressed) an
    ``all_gather`` of each worker's encoded, error-fed gradient decoded on every worker."""

    def __init__(self, compress: str, rank: int, world: int, size: int) -> None:
        codec = parse_compressor(compress)
        self.world = world
        self.size = size
        # the table's layout (rows of ROW_WIDTH, zero-padded), as the parameter-server
        # strategies encode it: PowerSGD factors it squarely, not as a few odd rows
        self.rows = -(-size // networks.ROW_WIDTH)
        self.feedback = None if codec is None else ErrorFeedback(
            codec, self.rows, networks.ROW_WIDTH, np.random.default_rng([rank, 5581]),
            seed=(rank, 5581))
        self.sent = self.dense = 0
        self._rows = np.arange(self.rows)

    def mean(self, flat: Any, step: int) -> Any:
        import torch
        import torch.distributed as dist

        self.dense += flat.numel() * flat.element_size()
        if self.feedback is None:
            dist.all_reduce(flat, op=dist.ReduceOp.SUM)
            self.sent += flat.numel() * flat.element_size()
            return flat / self.world
        padded = np.zeros(self.rows * networks.ROW_WIDTH)
        padded[:self.size] = flat.detach().numpy()
        enc, _ = self.feedback.encode(self._rows, padded.reshape(self.rows, -1), step)
        gathered: list[dict[str, np.ndarray]] = [{} for _ in range(self.world)]
        for key in sorted(enc.arrays):
            mine = torch.from_numpy(np.ascontiguousarray(enc.arrays[key]))
            parts = [torch.empty_like(mine) for _ in range(self.world)]
            dist.all_gather(parts, mine)
            self.sent += mine.numel() * mine.element_size()
            for r, part in enumerate(parts):
                gathered[r][key] = part.numpy()
        codec = self.feedback.compressor
        total = np.zeros(enc.shape)
        for arrays in gathered:  # rank order on every worker: identical sums
            total += codec.decode(Encoded(arrays, enc.shape))
        return torch.from_numpy((total.ravel()[:self.size] / self.world).astype(np.float32))


def _steps_shared(n: int, batch_size: int, world: int) -> int:  # pragma: no cover - child
    """Every rank must make the same number of steps: agree on the smallest share's."""
    import torch
    import torch.distributed as dist

    mine = torch.tensor([n // batch_size], dtype=torch.int64)
    dist.all_reduce(mine, op=dist.ReduceOp.MIN)
    return max(1, int(mine.item()))
