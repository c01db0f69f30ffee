"""The networks (PyTorch) and their parameters as one flat vector, the shape a parameter
table holds: ``rows x ROW_WIDTH`` float32, the vector padded with zeros at the end.

PyTorch is an optional dependency (``pip install 'stalesync[nn]'``): it is imported here
only, when a network is built.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ...errors import ConfigError

ROW_WIDTH = 1024  # floats per table row: 4 KiB rows, a few hundred per MLP
ARCHS = ("mlp", "cnn")


def torch_module() -> Any:
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - the nn extra is part of the test install
        raise ConfigError("the nn app needs PyTorch: pip install 'stalesync[nn]'",
                          param="arch") from exc
    torch.set_num_threads(1)  # one core per worker: the workers are the parallelism
    return torch


def build(arch: str, n_features: int, n_classes: int, hidden: int, seed: int) -> Any:
    """A freshly initialised network (seeded: every worker builds the same one).

    ``mlp``: features -> hidden -> hidden -> classes, ReLU. ``cnn`` (square grey images,
    e.g. 28 x 28): two 5x5 conv + 2x2 max-pool blocks (16, 32 channels), then hidden ->
    classes."""
    torch = torch_module()
    nn = torch.nn
    torch.manual_seed(seed)
    if arch == "mlp":
        return glorot(nn.Sequential(
            nn.Linear(n_features, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, n_classes)))
    side = math.isqrt(n_features)
    if side * side != n_features or side < 12:
        raise ConfigError(f"arch='cnn' needs square images of at least 12 x 12 pixels; "
                          f"{n_features} features are not", param="arch")
    after = (side // 2 - 4) // 2  # LeNet-5: the first conv pads (28 x 28 -> 5 x 5 at the end)
    return nn.Sequential(
        nn.Unflatten(1, (1, side, side)),
        nn.Conv2d(1, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * after * after, hidden), nn.ReLU(),
        nn.Linear(hidden, n_classes))


def glorot(net: Any) -> Any:
    """Weights and biases of every linear layer uniform in +-sqrt(6 / (fan_in + fan_out)),
    as scikit-learn's MLP starts. PyTorch's default (+-1 / sqrt(fan_in)) starts the 256 x 256
    layer at half that scale, and in the few hundred Adam steps of the default 5 epochs
    the MLP then ended 1-3 points of test accuracy below MLPClassifier."""
    torch = torch_module()
    with torch.no_grad():
        for layer in net:
            if isinstance(layer, torch.nn.Linear):
                bound = math.sqrt(6.0 / (layer.in_features + layer.out_features))
                layer.weight.uniform_(-bound, bound)
                layer.bias.uniform_(-bound, bound)
    return net


def build_for(spec: Any) -> Any:
    """The network of an :class:`~.problem.NNSpec`: the user's (``spec.factory()``, a copy of
    the module they passed) or a built-in one."""
    if spec.factory is not None:
        return spec.factory()
    return build(spec.arch, spec.n_features, spec.n_classes, spec.hidden, spec.seed)


def loss_for(spec: Any) -> Any:
    """``loss(output, target)``: the user's, or cross-entropy for the built-in classifiers."""
    return spec.loss if spec.loss is not None else torch_module().nn.functional.cross_entropy


def count(net: Any) -> int:
    return int(sum(p.numel() for p in net.parameters()))


def rows_for(n_params: int) -> int:
    return -(-n_params // ROW_WIDTH)


def get_flat(net: Any) -> np.ndarray:
    """The parameters as table rows (float32, zero-padded)."""
    torch = torch_module()
    flat = torch.nn.utils.parameters_to_vector(net.parameters()).detach().numpy()
    out = np.zeros(rows_for(flat.size) * ROW_WIDTH, dtype=np.float32)
    out[:flat.size] = flat
    return out.reshape(-1, ROW_WIDTH)


def set_flat(net: Any, values: np.ndarray) -> None:
    """Load table rows into the network's parameters (in place)."""
    torch = torch_module()
    n = count(net)
    flat = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)[:n]
    torch.nn.utils.vector_to_parameters(torch.from_numpy(flat.copy()), net.parameters())


def flat_grads(grads: list[Any], rows: int) -> np.ndarray:
    """Per-parameter gradients as table rows."""
    flat = np.concatenate([g.detach().reshape(-1).numpy() for g in grads])
    out = np.zeros(rows * ROW_WIDTH, dtype=np.float32)
    out[:flat.size] = flat
    return out.reshape(rows, ROW_WIDTH)
