"""Federated averaging on Fashion-MNIST: rounds and wall time to a target test accuracy
for FedSGD, FedAvg (E = 1, 5) and FedAvgM, IID and non-IID, next to Flower's FedAvg on the
same clients, the same network and the same local training; and the cost of secure
aggregation.

100 clients of 600 training images each: IID (a random split) or non-IID (McMahan et al.:
sorted by label, 200 shards of 300, two shards per client, so most clients hold two
labels). 10% of the clients per round. Local training: plain SGD, lr 0.1, batches of 50,
and batches of 10 for E = 5 as in McMahan et al.'s best settings (FedSGD: one full-batch
step per client, E = 1). FedAvgM: server momentum 0.9 with server step 0.1 (Hsu et al.
2019).

Rounds to target are given for three targets per split, and the ratio to FedSGD for each:
the ratio grows with the target (FedSGD's curve flattens first), so one target alone says
little. The headline target is the highest: an accuracy FedSGD reaches in ~400-500 rounds
(84% IID, 82% non-IID; 75%, last run's non-IID target, FedSGD reaches in 75). Non-IID
curves oscillate by a few points from round to round (client drift), so their rounds to a
target move by tens of percent with the seed.

After each round the global model is evaluated on the 10,000 test images (stalesync: the
strategy's ``on_round`` hook; Flower: its ``evaluate_fn``); a round's time is measured from
the first round's end to the last's, evaluation left out (so neither the job's nor Ray's
start counts). Flower runs its Ray simulation engine
(``flwr.simulation.start_simulation``, one CPU per client actor) on this machine.

``--archs cnn`` runs the CNN (the classifier's ``arch="cnn"``, LeNet-5 style): FedSGD and
FedAvg E=5 (both batch sizes) next to Flower. Its rounds take ~10x the MLP's; on 2 cores
FedSGD alone ran for over 10 minutes without reaching the IID target, so the whole group
needs a bigger machine (hours here) and is not in the default run.

``python bench/federated.py [--archs mlp cnn]`` writes ``bench/results/federated.json`` and
``.png`` (default: the MLP). A run of some architectures keeps the other's groups from the
file (each group records when it ran).
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import figure_path, write_json  # noqa: E402

from stalesync.apps.nn import (
    NeuralNetClassifier,  # noqa: E402
    networks,  # noqa: E402
)
from stalesync.data.fashion_mnist import load_fashion_mnist  # noqa: E402
from stalesync.strategies.fedavg import split_by_label  # noqa: E402

CLIENTS, FRACTION, LR, BATCH, HIDDEN, SEED = 100, 0.1, 0.1, 50, 256, 0
TARGETS = {"iid": (0.80, 0.82, 0.84), "non-iid": (0.75, 0.80, 0.82)}  # the last: headline
CONFIGS = {  # name: (local epochs, batch, strategy options)
    "FedSGD": (1, None, {}),
    "FedAvg E=1": (1, BATCH, {}),
    "FedAvg E=5": (5, BATCH, {}),
    "FedAvg E=5 B=10": (5, 10, {}),
    "FedAvgM E=1": (1, BATCH, {"server_momentum": 0.9, "server_lr": 0.1}),
}
RUN = {"mlp": tuple(CONFIGS), "cnn": ("FedSGD", "FedAvg E=5", "FedAvg E=5 B=10")}
MAX_ROUNDS = {"FedSGD": 700, "FedAvg E=1": 250, "FedAvg E=5": 120, "FedAvg E=5 B=10": 100,
              "FedAvgM E=1": 250}
SECURE_ROUNDS = 20


class Reached(Exception):
    """Raised by the evaluation hook once the target accuracy is reached."""


def first_reached(accuracy: list[float], target: float) -> int | None:
    """The first round whose accuracy is at least ``target``."""
    return next((i + 1 for i, a in enumerate(accuracy) if a >= target), None)


class Evaluator:
    """The global model's test accuracy after each round, timed apart from training."""

    def __init__(self, arch: str, X: np.ndarray, y: np.ndarray, target: float | None,
                 targets: tuple[float, ...] = ()):
        import torch

        self.targets = targets
        self.torch, self.X, self.y, self.target = torch, torch.from_numpy(X), y, target
        self.net = networks.build(arch, X.shape[1], 10, HIDDEN, SEED)
        self.accuracy: list[float] = []
        self.ends: list[float] = []  # each round's end, evaluation time taken out
        self.eval_s = 0.0
        self.start = time.perf_counter()

    def __call__(self, round_: int, rows: np.ndarray) -> None:
        t0 = time.perf_counter()
        self.ends.append(t0 - self.eval_s)
        networks.set_flat(self.net, rows)
        with self.torch.no_grad():
            predicted = self.net(self.X).argmax(dim=1).numpy()
        self.accuracy.append(float((predicted == self.y).mean()))
        self.eval_s += time.perf_counter() - t0
        if self.target is not None and self.accuracy[-1] >= self.target:
            raise Reached

    def summary(self) -> dict:
        wall = time.perf_counter() - self.start - self.eval_s
        reached = [i + 1 for i, a in enumerate(self.accuracy)
                   if self.target is not None and a >= self.target]
        # a round's time: from the first round's end to the last's, so the job's start
        # (and Flower's Ray start) is left out
        steady = ((self.ends[-1] - self.ends[0]) / (len(self.ends) - 1)
                  if len(self.ends) > 1 else wall)
        return {"rounds": len(self.accuracy), "rounds_to_target": reached[0] if reached else None,
                "rounds_to": {str(t): first_reached(self.accuracy, t) for t in self.targets},
                "train_s": wall, "s_per_round": steady,
                "final_accuracy": self.accuracy[-1] if self.accuracy else None,
                "accuracy": [round(a, 4) for a in self.accuracy]}


def ours(arch, X, y, ids, Xt, yt, name, target, rounds=None, targets=(),
         **extra) -> tuple[dict, object]:
    epochs, batch, options = CONFIGS[name]
    evaluator = Evaluator(arch, Xt, yt, target, targets)
    model = NeuralNetClassifier(
        arch, hidden=HIDDEN, optimizer="sgd", lr=LR,
        batch_size=batch or int(np.bincount(ids).max()), strategy="fedavg", workers="auto",
        seed=SEED, strategy_options={
            "clients": ids, "fraction": FRACTION, "min_clients": 1, "local_epochs": epochs,
            "rounds": rounds or MAX_ROUNDS[name], "on_round": evaluator, **options, **extra})
    evaluator.start = time.perf_counter()
    try:
        model.fit(X, y)
    except Reached:
        pass
    except Exception as exc:  # the hook's Reached, re-raised by the job with a note
        if not isinstance(exc.__cause__ or exc.__context__, Reached) and \
                "Reached" not in repr(exc):
            raise
    return evaluator.summary(), model


def flower(arch, X, y, ids, Xt, yt, name, targets, rounds) -> dict:
    """Flower's FedAvg on the same clients and local training (its Ray simulation)."""
    import flwr
    import torch
    from flwr.common import ndarrays_to_parameters

    epochs, batch, _ = CONFIGS[name]
    parts = [np.flatnonzero(ids == c) for c in range(CLIENTS)]
    template = networks.build(arch, X.shape[1], 10, HIDDEN, SEED)
    shapes = [p.shape for p in template.parameters()]
    evaluator = Evaluator(arch, Xt, yt, None, targets)

    def to_list(net):
        return [p.detach().numpy().copy() for p in net.parameters()]

    class Client(flwr.client.NumPyClient):
        def __init__(self, cid: int):
            self.rows = parts[cid]
            self.cid = cid

        def fit(self, parameters, config):
            torch.set_num_threads(1)
            net = networks.build(arch, X.shape[1], 10, HIDDEN, SEED)
            with torch.no_grad():
                for p, v in zip(net.parameters(), parameters, strict=True):
                    p.copy_(torch.from_numpy(v))
            opt = torch.optim.SGD(net.parameters(), lr=LR)
            loss_fn = torch.nn.CrossEntropyLoss()
            b = batch or self.rows.size
            rng = np.random.default_rng([SEED, self.cid, int(config.get("round", 0))])
            for _ in range(epochs):
                order = rng.permutation(self.rows)
                for s in range(0, order.size, b):
                    idx = order[s:s + b]
                    opt.zero_grad()
                    loss_fn(net(torch.from_numpy(X[idx])), torch.from_numpy(y[idx])).backward()
                    opt.step()
            return to_list(net), int(self.rows.size), {}

    def client_fn(cid: str):
        return Client(int(cid)).to_client()

    def evaluate(server_round, parameters, config):
        if server_round == 0:
            evaluator.start = time.perf_counter()
            return None
        flat = np.concatenate([np.asarray(p).ravel() for p in parameters])
        rows = np.zeros(networks.rows_for(flat.size) * networks.ROW_WIDTH, np.float32)
        rows[:flat.size] = flat
        evaluator(server_round, rows.reshape(-1, networks.ROW_WIDTH))
        return 0.0, {"accuracy": evaluator.accuracy[-1]}

    strategy = flwr.server.strategy.FedAvg(
        fraction_fit=FRACTION, fraction_evaluate=0.0, min_fit_clients=int(FRACTION * CLIENTS),
        min_available_clients=CLIENTS, evaluate_fn=evaluate,
        on_fit_config_fn=lambda r: {"round": r},
        initial_parameters=ndarrays_to_parameters(to_list(template)))
    del shapes
    flwr.simulation.start_simulation(
        client_fn=client_fn, num_clients=CLIENTS,
        config=flwr.server.ServerConfig(num_rounds=rounds), strategy=strategy,
        client_resources={"num_cpus": 1}, ray_init_args={"include_dashboard": False,
                                                        "num_cpus": 2})
    out = evaluator.summary()
    out["rounds_to_target"] = first_reached(evaluator.accuracy, targets[-1])
    return out


def secure_cost(arch, X, y, ids, Xt, yt) -> dict:
    """FedAvg E=1 for SECURE_ROUNDS rounds in fixed point, with and without secure
    aggregation, and in floating point (each twice, interleaved; the faster): round time,
    and whether the models are the same bit for bit."""
    runs = {"fixed point": {"quantize_bits": 24},
            "secure aggregation": {"quantize_bits": 24, "secure_aggregation": True},
            "float": {}}
    times: dict = {label: [] for label in runs}
    row: dict = {}
    params = {}
    for _ in range(2):
        for label, extra in runs.items():
            summary, model = ours(arch, X, y, ids, Xt, yt, "FedAvg E=1", None,
                                  rounds=SECURE_ROUNDS, **extra)
            times[label].append(summary["s_per_round"])
            row[label] = {"final_accuracy": summary["final_accuracy"]}
            params[label] = model.params_
    for label in runs:
        row[label]["s_per_round"] = min(times[label])
        row[label]["s_per_round_runs"] = times[label]
    row["secure_same_bits_as_fixed_point"] = bool(
        np.array_equal(params["secure aggregation"], params["fixed point"]))
    row["secure_vs_fixed_point_time"] = (row["secure aggregation"]["s_per_round"]
                                         / row["fixed point"]["s_per_round"])
    row["secure_vs_float_time"] = (row["secure aggregation"]["s_per_round"]
                                   / row["float"]["s_per_round"])
    row["fixed_point_max_difference_from_float"] = float(
        np.abs(params["fixed point"] - params["float"]).max())
    print("secure aggregation", row, flush=True)
    return row


def main(archs=("mlp",)) -> None:
    warnings.simplefilter("ignore")
    X, y = load_fashion_mnist("train")
    Xt, yt = load_fashion_mnist("test")
    X, Xt = X.reshape(X.shape[0], -1), Xt.reshape(Xt.shape[0], -1)
    splits = {"iid": np.random.default_rng(SEED).permutation(X.shape[0]) % CLIENTS,
              "non-iid": split_by_label(y, CLIENTS, 2, SEED)}
    results: dict = {}
    for arch in archs:
        for split, ids in splits.items():
            targets = TARGETS[split]
            rows: dict = {}
            for name in RUN[arch]:
                rows[name], _ = ours(arch, X, y, ids, Xt, yt, name, targets[-1],
                                     targets=targets)
                print(arch, split, name, {k: v for k, v in rows[name].items()
                                          if k != "accuracy"}, flush=True)
            mine = rows["FedAvg E=5"]["rounds_to_target"] or MAX_ROUNDS["FedAvg E=5"]
            rows["Flower FedAvg E=5"] = flower(arch, X, y, ids, Xt, yt, "FedAvg E=5", targets,
                                               rounds=max(2 * mine, mine + 5))
            print(arch, split, "Flower", {k: v for k, v in rows["Flower FedAvg E=5"].items()
                                          if k != "accuracy"}, flush=True)
            for name in RUN[arch]:
                if name != "FedSGD":
                    rows[name]["fewer_rounds_than_fedsgd"] = {
                        str(t): fewer(rows["FedSGD"]["rounds_to"][str(t)],
                                      rows[name]["rounds_to"][str(t)]) for t in targets}
            results[f"{arch} {split}"] = {"target": targets[-1], "targets": list(targets),
                                          "rows": rows, "ran": time.strftime("%Y-%m-%d")}
    if "mlp" in archs:
        results["secure aggregation (mlp, iid)"] = secure_cost("mlp", X, y, splits["iid"],
                                                               Xt, yt)
    kept = {k: v for k, v in previous_results().items() if k.split()[0] not in archs
            and not (k.startswith("secure") and "mlp" in archs)}
    results = {**kept, **results}
    write_json("federated", {"clients": CLIENTS, "fraction": FRACTION, "lr": LR,
                             "batch": BATCH, "results": results})
    plot(results)


def previous_results() -> dict:
    """The groups of the results file as it stands (none when there is no file)."""
    import json

    path = figure_path("federated").with_suffix(".json")
    return json.loads(path.read_text())["results"] if path.is_file() else {}


def fewer(sgd: int | None, avg: int | None) -> float | str | None:
    """FedSGD's rounds over FedAvg's to one target (a bound when FedSGD did not reach it)."""
    if sgd and avg:
        return sgd / avg
    return f">= {MAX_ROUNDS['FedSGD'] / avg:.1f}" if avg else None


def plot(results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [k for k in results if "rows" in results[k]]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for ax, key in zip(axes[0], panels, strict=True):
        for name, row in results[key]["rows"].items():
            ax.plot(np.arange(1, len(row["accuracy"]) + 1), row["accuracy"], label=name)
        ax.axhline(results[key]["target"], color="k", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_title(f"Fashion-MNIST {key}: 100 clients, 10 a round")
        ax.set_xlabel("round")
        ax.set_ylabel("test accuracy")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(figure_path("federated"), dpi=110)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archs", nargs="+", choices=("mlp", "cnn"), default=["mlp"])
    main(tuple(parser.parse_args().archs))
