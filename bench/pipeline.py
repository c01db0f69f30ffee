"""Pipeline parallelism (``strategy="pipeline"``) on Fashion-MNIST: one network cut into 2
stages against the same network in one stage and against plain PyTorch in one process.

Groups (one command runs both):

- **deep MLP** (784 -> 8 hidden layers of 2048 -> 10, ReLU; 31M parameters): Adam lr 3e-4,
  batch ``--mlp-batch`` (1024) in ``--micro-batches`` (8) micro-batches, ``--epochs`` over the
  first ``--train`` (8,192) training images;
- **CNN** (the classifier's ``arch="cnn"``, LeNet-5 style, 256 hidden units): its defaults
  (Adam, batch 200) in 4 micro-batches, the same epochs and images;
- **MLP, defaults**: the classifier's MLP (784 -> 256 -> 256 -> 10, Adam, batch 200) on
  all 60,000 training images.

The classifier groups add a row at the strategy's defaults (``workers="auto"``: as many
stages as pay, predicted from the layers' timings; the row's ``stages`` says how many).

Rows: plain PyTorch (the same module, optimiser and batches in a loop in this process, on 1
thread and on the 2 threads PyTorch takes here by default), stalesync's pipeline with 1
stage (one worker: the "one process" of the goal), and 2 stages under 1F1B and GPipe. Each
fit is trained from the same initial parameters; ``examples_per_s`` is over the training
loop (the slowest rank's; process start-up and the layer timing apart), ``wall_s`` the whole
fit. ``test_accuracy`` on the first ``--test`` test images. 2 replicas x 2 stages would put
4 ranks on this machine's 2 cores and is not run here. Medians of ``--repeats``. Writes
bench/results/pipeline.json and .png.

    python bench/pipeline.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import figure_path, write_json  # noqa: E402

import stalesync.nn as ssnn  # noqa: E402
from stalesync.apps.nn import NeuralNetClassifier, networks  # noqa: E402
from stalesync.data.fashion_mnist import load_fashion_mnist  # noqa: E402


def deep_mlp(depth: int = 8, width: int = 2048):
    torch = networks.torch_module()
    nn = torch.nn
    torch.manual_seed(0)
    layers = [nn.Linear(784, width), nn.ReLU()]
    for _ in range(depth - 1):
        layers += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(width, 10))


def accuracy(net, X, y) -> float:
    torch = networks.torch_module()
    with torch.no_grad():
        return float((net(torch.from_numpy(X)).argmax(1).numpy() == y).mean())


def plain(make, X, y, *, optimizer: str, lr: float, batch: int, epochs: int, threads: int,
          seed: int = 0):
    """The network trained the plain way: a loop over shuffled batches in this process."""
    torch = networks.torch_module()
    torch.set_num_threads(threads)
    net = make()
    opt = (torch.optim.Adam if optimizer == "adam" else torch.optim.SGD)(net.parameters(),
                                                                          lr=lr)
    tx, ty = torch.from_numpy(X), torch.from_numpy(y)
    steps = len(y) // batch
    start = time.perf_counter()
    for epoch in range(epochs):
        order = torch.from_numpy(np.random.default_rng([seed, epoch]).permutation(len(y)))
        for k in range(steps):
            idx = order[k * batch:(k + 1) * batch]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(tx[idx]), ty[idx]).backward()
            opt.step()
    train_s = time.perf_counter() - start
    torch.set_num_threads(1)
    return net, {"examples_per_s": epochs * steps * batch / train_s, "train_s": train_s,
                 "wall_s": train_s}


def mlp_group(X, y, Xt, yt, args) -> dict:
    rows = {}
    for threads in (1, 2):
        name = f"plain PyTorch, {threads} thread{'s' * (threads > 1)}"
        rows[name] = repeat(args.repeats, lambda t=threads: plain_row(
            deep_mlp, X, y, Xt, yt, optimizer="adam", lr=3e-4, batch=args.mlp_batch,
            epochs=args.epochs, threads=t))
    for name, options in pipeline_rows(args.micro_batches):
        rows[name] = repeat(args.repeats, lambda o=options: mlp_pipeline_row(
            X, y, Xt, yt, o, args))
    return {"network": "784 -> 8 x 2048 -> 10 ReLU MLP", "optimizer": "adam lr 3e-4",
            "batch_size": args.mlp_batch, "rows": rows,
            "parameters": networks.count(deep_mlp())}


def plain_row(make, X, y, Xt, yt, **kw) -> dict:
    net, row = plain(make, X, y, **kw)
    return {**row, "test_accuracy": accuracy(net, Xt, yt)}


def pipeline_rows(micro_batches: int) -> list[tuple[str, dict]]:
    return [("stalesync pipeline, 1 stage", {"stages": 1, "micro_batches": 1}),
            ("stalesync pipeline, 2 stages 1F1B",
             {"stages": 2, "micro_batches": micro_batches, "schedule": "1f1b"}),
            ("stalesync pipeline, 2 stages GPipe",
             {"stages": 2, "micro_batches": micro_batches, "schedule": "gpipe"})]


def record_row(record: dict, accuracy_: float) -> dict:
    final = record["final"]
    return {"examples_per_s": final["examples_per_s"], "train_s": final["train_s"],
            "wall_s": record["wall_time_s"], "test_accuracy": accuracy_,
            "cuts": final.get("cuts"), "stage_seconds": final.get("stage_seconds"),
            "stages": final["stages"], "micro_batches": final["micro_batches"]}


def mlp_pipeline_row(X, y, Xt, yt, options: dict, args) -> dict:
    torch = networks.torch_module()
    net = deep_mlp()
    torch.set_num_threads(1)
    done = ssnn.fit(net, torch.nn.functional.cross_entropy, X, y, strategy="pipeline",
                    workers=options["stages"], epochs=args.epochs, lr=3e-4, optimizer="adam",
                    batch_size=args.mlp_batch, strategy_options=options, seed=0)
    return record_row(done.run_record, accuracy(done.module, Xt, yt))


def classifier_group(arch: str, X, y, Xt, yt, args) -> dict:
    """The classifier's own network at its defaults (Adam 0.001, batch 200, 256 hidden),
    pipelined at the strategy's defaults (2 stages, 4 micro-batches)."""
    def make():
        return networks.build(arch, 784, 10, 256, 0)

    rows = {}
    for threads in (1, 2):
        name = f"plain PyTorch, {threads} thread{'s' * (threads > 1)}"
        rows[name] = repeat(args.repeats, lambda t=threads: plain_row(
            make, X, y, Xt, yt, optimizer="adam", lr=1e-3, batch=200, epochs=args.epochs,
            threads=t))
    for name, options in [("stalesync pipeline, defaults", None), *pipeline_rows(4)]:
        def fit(o=options) -> dict:
            model = NeuralNetClassifier(arch, epochs=args.epochs, strategy="pipeline",
                                        strategy_options=o, seed=0).fit(X, y)
            return record_row(model.run_record_, model.score(Xt, yt))
        rows[name] = repeat(args.repeats, fit)
    network = {"cnn": "LeNet-5 style CNN (arch='cnn', 256 hidden)",
               "mlp": "the classifier's MLP (784 -> 256 -> 256 -> 10)"}[arch]
    return {"network": network, "optimizer": "adam lr 0.001 (the classifier's default)",
            "batch_size": 200, "examples": len(y), "rows": rows,
            "parameters": networks.count(make())}


def repeat(n: int, fn) -> dict:
    print(" ", fn.__defaults__ or "", end="", flush=True)
    runs = [fn() for _ in range(n)]
    out = {k: statistics.median(r[k] for r in runs) for k in
           ("examples_per_s", "train_s", "wall_s", "test_accuracy")}
    out["runs_examples_per_s"] = [round(r["examples_per_s"], 1) for r in runs]
    for key in ("cuts", "stage_seconds", "stages", "micro_batches"):
        if runs[0].get(key) is not None:
            out[key] = runs[0][key]
    print(f"  {out['examples_per_s']:9.1f} examples/s  train {out['train_s']:6.2f} s  "
          f"wall {out['wall_s']:6.2f} s  test accuracy {out['test_accuracy']:.4f}",
          flush=True)
    return out


def add_ratios(group: dict) -> None:
    rows = group["rows"]
    one = rows["stalesync pipeline, 1 stage"]["examples_per_s"]
    plain1 = rows["plain PyTorch, 1 thread"]["examples_per_s"]
    for row in rows.values():
        row["vs_1_stage"] = row["examples_per_s"] / one
        row["vs_plain_1_thread"] = row["examples_per_s"] / plain1


def plot(result: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = result["groups"]
    fig, axes = plt.subplots(1, len(groups), figsize=(6 * len(groups), 3.6))
    for ax, (name, group) in zip(np.atleast_1d(axes), groups.items(), strict=True):
        labels = list(group["rows"])
        values = [group["rows"][k]["examples_per_s"] for k in labels]
        ax.barh(range(len(labels)), values,
                color=["#999999"] * 2 + ["#4477aa"] * (len(labels) - 2))
        ax.set_yticks(range(len(labels)), [k.replace("stalesync ", "") for k in labels],
                      fontsize=8)
        for i, k in enumerate(labels):
            ax.text(values[i], i, f" {group['rows'][k]['vs_1_stage']:.2f}x", va="center",
                    fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("training examples/s (ratio: vs 1 stage)")
        ax.set_title(f"{name}: {group['network']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(figure_path("pipeline"), dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=int, default=8192)
    parser.add_argument("--test", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--mlp-batch", type=int, default=1024)
    parser.add_argument("--micro-batches", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--render", action="store_true",
                        help="only redraw the PNG from bench/results/pipeline.json")
    args = parser.parse_args()
    if args.render:
        import json

        from _common import RESULTS

        plot(json.loads((RESULTS / "pipeline.json").read_text()))
        return
    X, y = load_fashion_mnist("train")
    Xt, yt = load_fashion_mnist("test")
    Xt, yt = Xt[:args.test], yt[:args.test]
    groups = {}
    for name, build in (("deep MLP", mlp_group),
                        ("CNN", partial(classifier_group, "cnn")),
                        ("MLP, defaults", partial(classifier_group, "mlp"))):
        print(name, flush=True)
        n = len(X) if name == "MLP, defaults" else args.train
        groups[name] = build(X[:n], y[:n], Xt, yt, args)
        add_ratios(groups[name])
    result = {"settings": vars(args), "groups": groups}
    print(write_json("pipeline", result))
    plot(result)


if __name__ == "__main__":
    main()
