"""Neural networks on Fashion-MNIST through every strategy, next to a plain PyTorch loop.

An MLP (784 -> 256 -> 256 -> 10) for ``--epochs`` epochs, batch 64, lr 0.05: plain PyTorch
(one thread, the same SGD steps: the ceiling of one core), then stalesync with one worker
(``average``, which with one worker is plain SGD through the engine), and with 2 workers
every strategy: average (every 50 steps), ps (SSP s=1), sync (and with one backup worker),
downpour, hogwild (1 worker x 2 threads), allreduce (2 gloo processes) next to PyTorch's
own DistributedDataParallel (2 gloo processes, the same model, batch and epochs; both
timed over the training loop, process start-up apart), and ps with each compressor (error
feedback; ``bytes_sent`` is measured: the encoded arrays' sizes, plus the reads). Test accuracy on
the 10,000 test images, wall time and examples/s; median of ``--repeats``. Writes
bench/results/nn_strategies.json and .png.

    flock /tmp/stalesync-bench.lock .venv/bin/python bench/nn_strategies.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import figure_path, write_json  # noqa: E402

from stalesync.apps.nn import (
    NeuralNetClassifier,  # noqa: E402
    networks,  # noqa: E402
)
from stalesync.data.fashion_mnist import load_fashion_mnist  # noqa: E402

CONFIGS = {
    "1 worker": {"strategy": "average", "workers": 1, "average_every": 0},
    "average x2": {"strategy": "average", "workers": 2, "average_every": 50},
    "ps ssp s=1 x2": {"strategy": "ps", "workers": 2, "consistency": "ssp", "staleness": 1},
    "sync x2": {"strategy": "sync", "workers": 2},
    "sync x3 b=1": {"strategy": "sync", "workers": 3, "backup_workers": 1},
    "downpour x2": {"strategy": "downpour", "workers": 2},
    "hogwild 1x2 threads": {"strategy": "hogwild", "workers": 1, "threads": 2},
    "allreduce x2": {"strategy": "allreduce", "workers": 2},
    "ps x2 topk:0.01": {"strategy": "ps", "workers": 2, "compress": "topk:0.01"},
    "ps x2 qsgd:8": {"strategy": "ps", "workers": 2, "compress": "qsgd:8"},
    "ps x2 sign": {"strategy": "ps", "workers": 2, "compress": "sign"},
    "ps x2 powersgd:2": {"strategy": "ps", "workers": 2, "compress": "powersgd:2"},
}


def plain_torch(X, y, Xt, yt, epochs: int, seed: int) -> tuple[float, float]:
    """(seconds, test accuracy) of the same SGD in a bare PyTorch loop."""
    torch = networks.torch_module()
    net = networks.build("mlp", X.shape[1], 10, 256, seed)
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    tx, ty = torch.from_numpy(X), torch.from_numpy(y)
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    for _ in range(epochs):
        order = torch.from_numpy(rng.permutation(len(y)))
        for i in range(0, len(y), 64):
            idx = order[i:i + 64]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(tx[idx]), ty[idx]).backward()
            opt.step()
    wall = time.perf_counter() - start
    with torch.no_grad():
        acc = float((net(torch.from_numpy(Xt)).argmax(1).numpy() == yt).mean())
    return wall, acc


def _ddp_rank(rank, world, port, X, y, epochs, seed, out):
    """One PyTorch DDP process (gloo, loopback), the same MLP, batch 64 per worker."""
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)
    net = DistributedDataParallel(networks.build("mlp", X.shape[1], 10, 256, seed))
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    share = np.array_split(np.random.default_rng(seed).permutation(len(y)), world)[rank]
    tx, ty = torch.from_numpy(X[share]), torch.from_numpy(y[share])
    steps = len(share) // 64
    dist.barrier()
    start = time.perf_counter()
    for epoch in range(epochs):
        order = torch.from_numpy(np.random.default_rng([seed, rank, epoch]).permutation(
            len(share)))
        for k in range(steps):
            idx = order[64 * k:64 * (k + 1)]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(tx[idx]), ty[idx]).backward()
            opt.step()
    wall = time.perf_counter() - start
    if rank == 0:
        out.put((wall, networks.get_flat(net.module), epochs * steps * 64 * world))
    dist.destroy_process_group()


def ddp(X, y, Xt, yt, epochs: int, seed: int, world: int = 2) -> dict:
    import torch.multiprocessing as mp

    from stalesync.apps.nn.allreduce import free_port

    ctx = mp.get_context("spawn")
    out = ctx.SimpleQueue()
    port = free_port()
    procs = [ctx.Process(target=_ddp_rank, args=(r, world, port, X, y, epochs, seed, out))
             for r in range(world)]
    for p in procs:
        p.start()
    wall, params, examples = out.get()
    for p in procs:
        p.join()
    torch = networks.torch_module()
    net = networks.build("mlp", X.shape[1], 10, 256, seed)
    networks.set_flat(net, params)
    with torch.no_grad():
        acc = float((net(torch.from_numpy(Xt)).argmax(1).numpy() == yt).mean())
    return {"wall_s": wall, "test_accuracy": acc, "examples_per_s": examples / wall,
            "bytes_sent": 0}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    X, y = load_fashion_mnist("train")
    Xt, yt = load_fashion_mnist("test")
    rows: dict[str, dict] = {}
    runs: dict[str, list] = {k: [] for k in ["plain PyTorch", "PyTorch DDP x2 (gloo)",
                                             *CONFIGS]}
    for seed in range(args.repeats):
        wall, acc = plain_torch(X, y, Xt, yt, args.epochs, seed)
        runs["plain PyTorch"].append({"wall_s": wall, "test_accuracy": acc,
                                      "examples_per_s": args.epochs * len(y) / wall})
        runs["PyTorch DDP x2 (gloo)"].append(ddp(X, y, Xt, yt, args.epochs, seed))
        for name, cfg in CONFIGS.items():
            model = NeuralNetClassifier(epochs=args.epochs, seed=seed, **cfg)
            model.fit(X, y, run={"progress": False})
            f = model.run_record_["final"]
            runs[name].append({"wall_s": model.run_record_["wall_time_s"],
                               "test_accuracy": float(model.score(Xt, yt)),
                               "examples_per_s": f["examples_per_s"],
                               "bytes_sent": model.run_record_["bytes_sent"]})
            print(name, runs[name][-1], flush=True)
    base = statistics.median(r["examples_per_s"] for r in runs["plain PyTorch"])
    for name, rs in runs.items():
        eps = statistics.median(r["examples_per_s"] for r in rs)
        rows[name] = {"wall_s": statistics.median(r["wall_s"] for r in rs),
                      "bytes_sent": statistics.median(r.get("bytes_sent", 0) for r in rs),
                      "test_accuracy": statistics.median(r["test_accuracy"] for r in rs),
                      "examples_per_s": eps, "vs_plain_pytorch": eps / base, "runs": rs}
        print(f"{name:22s} {rows[name]['wall_s']:7.1f} s  accuracy "
              f"{rows[name]['test_accuracy']:.4f}  {eps:8.0f} examples/s "
              f"({eps / base:.2f}x plain PyTorch)  {rows[name]['bytes_sent'] / 1e6:8.1f} MB",
              flush=True)
    write_json("nn_strategies", {"epochs": args.epochs, "repeats": args.repeats,
                                 "rows": rows})
    plot(rows)


def plot(rows: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(rows)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    axes[0].barh(names, [rows[n]["examples_per_s"] for n in names], color="C0")
    axes[0].set_xlabel("examples / s (median)")
    axes[1].barh(names, [rows[n]["test_accuracy"] for n in names], color="C2")
    axes[1].set_xlim(0.7, 0.9)
    axes[1].set_xlabel("test accuracy")
    for ax in axes:
        ax.invert_yaxis()
        ax.grid(alpha=0.3, axis="x")
    fig.suptitle("MLP on Fashion-MNIST, 2 epochs, 2-core machine")
    fig.tight_layout()
    fig.savefig(figure_path("nn_strategies"), dpi=100)


if __name__ == "__main__":
    main()
