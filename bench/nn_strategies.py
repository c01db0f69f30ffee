"""Neural networks on Fashion-MNIST through every strategy, next to plain PyTorch and DDP.

Groups (one command runs them all; ``--quick`` only the first):

- **MLP, 2 workers** (784 -> 256 -> 256 -> 10, ``--epochs`` epochs, batch 64, lr 0.05): plain
  PyTorch (one thread, the same SGD steps: the ceiling of one core), stalesync with one
  worker, and with 2 workers every strategy (average every 50 steps, ps SSP s=1, sync and
  sync with one backup worker, downpour, hogwild 1 worker x 2 threads, allreduce) next to
  PyTorch's own DistributedDataParallel (gloo, the same model, batch and epochs; both timed
  over the training loop, process start-up apart), and every compressor (error feedback)
  with ``ps`` and with ``allreduce``;
- **MLP, 4 workers** and **CNN (LeNet-5 style), 2 workers** (``--cnn-epochs``): plain
  PyTorch, DDP and a subset of strategies and compressors;
- **a 2x straggler**: ``sync`` with 3 workers, worker 0 twice as slow, with and without one
  backup worker, trained epoch by epoch (``partial_fit``): the wall time until the test
  accuracy first reaches the target (plain PyTorch's at ``--epochs`` minus 2 points).

``bytes`` is the run record's ``bytes_sent`` (reads and pushes, or what the workers handed to
the collective; measured), ``ratio`` its ``compression_ratio``. Medians of ``--repeats``
seeds for the first group (``--repeats-other`` for the others). Writes
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

COMPRESSORS = ["topk:0.01", "dgc:0.01", "qsgd:8", "sign", "powersgd:2"]


def configs(workers: int, subset: bool) -> dict[str, dict]:
    """The strategies (and compressors) of a group with ``workers`` workers."""
    w = workers
    out = {f"average x{w}": {"strategy": "average", "workers": w,
                             "strategy_options": {"average_every": 50}},
           f"ps ssp s=1 x{w}": {"strategy": "ps", "workers": w, "consistency": "ssp",
                                "staleness": 1},
           f"sync x{w}": {"strategy": "sync", "workers": w},
           f"allreduce x{w}": {"strategy": "allreduce", "workers": w}}
    if subset:
        out[f"allreduce x{w} topk:0.01"] = {"strategy": "allreduce", "workers": w,
                                            "compress": "topk:0.01"}
        out[f"ps x{w} topk:0.01"] = {"strategy": "ps", "workers": w, "compress": "topk:0.01"}
        return out
    out = {"1 worker": {"strategy": "average", "workers": 1,
                        "strategy_options": {"average_every": 0}}, **out,
           f"sync x{w + 1} b=1": {"strategy": "sync", "workers": w + 1,
                                  "strategy_options": {"backup_workers": 1}},
           f"downpour x{w}": {"strategy": "downpour", "workers": w},
           f"hogwild 1x{w} threads": {"strategy": "hogwild", "workers": 1,
                                      "strategy_options": {"threads": w}}}
    for c in COMPRESSORS:
        out[f"ps x{w} {c}"] = {"strategy": "ps", "workers": w, "compress": c}
        out[f"allreduce x{w} {c}"] = {"strategy": "allreduce", "workers": w, "compress": c}
    return out


def accuracy(net, Xt, yt) -> float:
    torch = networks.torch_module()
    with torch.no_grad():
        out = torch.cat([net(torch.from_numpy(Xt[i:i + 2000])) for i in range(0, len(yt), 2000)])
    return float((out.argmax(1).numpy() == yt).mean())


def plain_torch(arch, X, y, Xt, yt, epochs: int, seed: int) -> dict:
    """The same SGD in a bare PyTorch loop (one thread)."""
    torch = networks.torch_module()
    net = networks.build(arch, X.shape[1], 10, 256, seed)
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
    return {"wall_s": wall, "test_accuracy": accuracy(net, Xt, yt),
            "examples_per_s": epochs * len(y) / wall, "bytes_sent": 0}


def _ddp_rank(rank, world, port, arch, X, y, epochs, seed, out):
    """One PyTorch DDP process (gloo, loopback), the same network, batch 64 per worker."""
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)
    net = DistributedDataParallel(networks.build(arch, X.shape[1], 10, 256, seed))
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


def ddp(arch, X, y, Xt, yt, epochs: int, seed: int, world: int) -> dict:
    import torch.multiprocessing as mp

    from stalesync.runtime.ranks import free_port

    ctx = mp.get_context("spawn")
    out = ctx.SimpleQueue()
    port = free_port()
    procs = [ctx.Process(target=_ddp_rank,
                         args=(r, world, port, arch, X, y, epochs, seed, out))
             for r in range(world)]
    for p in procs:
        p.start()
    wall, params, examples = out.get()
    for p in procs:
        p.join()
    net = networks.build(arch, X.shape[1], 10, 256, seed)
    networks.set_flat(net, params)
    return {"wall_s": wall, "test_accuracy": accuracy(net, Xt, yt),
            "examples_per_s": examples / wall, "bytes_sent": 0}


def stalesync_run(arch, cfg, X, y, Xt, yt, epochs: int, seed: int) -> dict:
    model = NeuralNetClassifier(arch, epochs=epochs, seed=seed, **cfg)
    model.fit(X, y, run={"progress": False})
    rec = model.run_record_
    return {"wall_s": rec["wall_time_s"], "test_accuracy": float(model.score(Xt, yt)),
            "examples_per_s": rec["final"]["examples_per_s"], "bytes_sent": rec["bytes_sent"],
            "compression_ratio": rec.get("compression_ratio", 1.0)}


def group(name, arch, workers, subset, X, y, Xt, yt, epochs, repeats, only=None) -> dict:
    """Every configuration of one group (those whose label contains ``only``, next to plain
    PyTorch, when given), ``repeats`` seeds each; medians."""
    runs: dict[str, list] = {"plain PyTorch": []}
    if only is None:
        runs[f"PyTorch DDP x{workers} (gloo)"] = []
    chosen = {k: v for k, v in configs(workers, subset).items() if only is None or only in k}
    for seed in range(repeats):
        runs["plain PyTorch"].append(plain_torch(arch, X, y, Xt, yt, epochs, seed))
        if only is None:
            runs[f"PyTorch DDP x{workers} (gloo)"].append(
                ddp(arch, X, y, Xt, yt, epochs, seed, workers))
        for label, cfg in chosen.items():
            runs.setdefault(label, []).append(
                stalesync_run(arch, cfg, X, y, Xt, yt, epochs, seed))
            print(name, label, runs[label][-1], flush=True)
    base = runs["plain PyTorch"]
    base_eps = statistics.median(r["examples_per_s"] for r in base)
    base_acc = statistics.median(r["test_accuracy"] for r in base)
    rows = {}
    for label, rs in runs.items():
        med = {k: statistics.median(r.get(k, 1.0) for r in rs)
               for k in ("wall_s", "test_accuracy", "examples_per_s", "bytes_sent",
                         "compression_ratio")}
        med["points_vs_plain"] = 100 * (med["test_accuracy"] - base_acc)
        med["vs_plain_pytorch"] = med["examples_per_s"] / base_eps
        rows[label] = {**med, "runs": rs}
        print(f"{name:12s} {label:26s} acc {med['test_accuracy']:.4f} "
              f"({med['points_vs_plain']:+.1f})  {med['examples_per_s']:8.0f} ex/s "
              f"({med['vs_plain_pytorch']:.2f}x)  {med['bytes_sent'] / 1e6:8.1f} MB  "
              f"ratio {med['compression_ratio']:.1f}", flush=True)
    return {"arch": arch, "workers": workers, "epochs": epochs, "repeats": repeats,
            "rows": rows}


def straggler(X, y, Xt, yt, target: float, max_epochs: int, pieces: int = 4) -> dict:
    """sync with 3 workers, worker 0 2x slower, without and with one backup worker: wall
    time (training only) until the test accuracy first reaches ``target``, checked after
    every ``1/pieces`` of an epoch (``partial_fit`` on each piece in turn)."""
    parts = np.array_split(np.random.default_rng(0).permutation(len(y)), pieces)
    out = {}
    for label, backup in (("sync x3 b=0", 0), ("sync x3 b=1", 1)):
        model = NeuralNetClassifier(epochs=1, strategy="sync", workers=3,
                                    strategy_options={"backup_workers": backup}, seed=0)
        wall, curve, hit = 0.0, [], None
        for k in range(max_epochs * pieces):
            fit = model.fit if k == 0 else model.partial_fit
            piece = parts[k % pieces]
            fit(X[piece], y[piece], run={"stragglers": "0:2.0"})
            wall += model.run_record_["wall_time_s"]
            acc = float(model.score(Xt, yt))
            curve.append({"epochs": (k + 1) / pieces, "wall_s": wall, "test_accuracy": acc})
            if acc >= target:
                hit = wall
                break
        out[label] = {"curve": curve, "time_to_target_s": hit}
        print("straggler", label, out[label], flush=True)
    b0, b1 = (out[k]["time_to_target_s"] for k in ("sync x3 b=0", "sync x3 b=1"))
    return {"target_accuracy": target, "runs": out,
            "backup_speedup": b0 / b1 if b0 and b1 else None}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--cnn-epochs", type=int, default=1)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--repeats-other", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="only the MLP x2 group")
    p.add_argument("--only", help="only the MLP x2 configurations whose label contains this "
                                  "(next to plain PyTorch); writes nn_strategies_only.json")
    args = p.parse_args()
    X, y = load_fashion_mnist("train")
    Xt, yt = load_fashion_mnist("test")
    groups = {"mlp x2": group("mlp x2", "mlp", 2, False, X, y, Xt, yt, args.epochs,
                              args.repeats, args.only)}
    result = {"groups": groups}
    if args.only:
        write_json("nn_strategies_only", {**result, "only": args.only})
        return
    if not args.quick:
        groups["mlp x4"] = group("mlp x4", "mlp", 4, True, X, y, Xt, yt, args.epochs,
                                 args.repeats_other)
        groups["cnn x2"] = group("cnn x2", "cnn", 2, True, X, y, Xt, yt, args.cnn_epochs,
                                 args.repeats_other)
        target = groups["mlp x2"]["rows"]["plain PyTorch"]["test_accuracy"] - 0.02
        result["straggler"] = straggler(X, y, Xt, yt, target, max_epochs=2 * args.epochs)
    write_json("nn_strategies", result)
    plot(groups)


def plot(groups: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(groups), 2, figsize=(13, 4.5 * len(groups)), squeeze=False)
    for (name, g), (ax_t, ax_b) in zip(groups.items(), axes, strict=True):
        for i, (label, r) in enumerate(g["rows"].items()):
            kw = {"color": f"C{i % 10}", "marker": "os^Dv<>p*h"[i // 10 % 10]}
            ax_t.scatter(r["wall_s"], r["test_accuracy"], label=label, **kw)
            if r["bytes_sent"]:
                ax_b.scatter(r["bytes_sent"] / 1e6, r["test_accuracy"], **kw)
        ax_t.set_xlabel("wall time (s, median)")
        ax_b.set_xlabel("bytes sent (MB, measured; log)")
        ax_b.set_xscale("log")
        for ax in (ax_t, ax_b):
            ax.set_ylabel("test accuracy")
            ax.set_title(f"{name}, {g['epochs']} epoch(s)")
            ax.grid(alpha=0.3)
        ax_t.legend(fontsize=6, ncol=2, loc="lower right")
    fig.suptitle("Fashion-MNIST on the 2-core machine: accuracy vs time and vs bytes")
    fig.tight_layout()
    fig.savefig(figure_path("nn_strategies"), dpi=100)


if __name__ == "__main__":
    main()
