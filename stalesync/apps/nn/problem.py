"""One worker's share of a neural network's SGD problem (:class:`NNProblem`), the shape
every strategy in :mod:`stalesync.strategies` drives.

The parameter table holds the network's parameters as one flat float32 vector in rows of
:data:`~.networks.ROW_WIDTH`. Every example touches every parameter, so every clock reads
and writes every row; under ``ps`` a worker adds ``1 / workers`` of its chunk's change
(workers that start from the same values and each add their whole change would move the
network ``workers`` times too far: the averaging that ``docs/linear.md`` explains for
shared rows, applied to all of them).

Gradients come from ``torch.autograd.grad`` (no ``.grad`` buffers), and steps are applied
through ``.data``, so HOGWILD!'s threads can share one network without locks: each
thread's forward and backward read the weights as the others leave them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...errors import ConfigError
from ...strategies.base import run_threads
from . import networks


@dataclass(frozen=True)
class NNSpec:
    """The network and its training settings every worker shares."""

    arch: str
    n_features: int
    n_classes: int
    hidden: int
    rows: int  # table rows of the flat parameter vector
    lr: float  # local SGD step (ps, average, hogwild)
    batch_size: int  # local mini-batch
    workers: int
    seed: int
    factory: Any = None  # a user's network: a callable returning a fresh copy (else arch)
    loss: Any = None  # a user's loss(output, target) (else cross-entropy)
    optimizer: str = "sgd"  # the local steps' rule: "sgd" or "adam" (average, ps)


class NNProblem:
    """A worker's examples (float32 rows, int64 labels) and the arithmetic of learning."""

    def __init__(self, X: np.ndarray, labels: np.ndarray, spec: NNSpec,
                 clocks_per_epoch: int, chunk_seed: int) -> None:
        self.X = np.ascontiguousarray(X, dtype=np.float32)
        self.labels = np.ascontiguousarray(labels)  # class indices, or a user loss's targets
        self.spec = spec
        self.clocks_per_epoch = clocks_per_epoch
        self.chunk_seed = chunk_seed
        self.examples_seen = 0
        self._net: Any = None
        self._optimizer: Any = None  # Adam's moments, kept with this worker
        self._optimizer_net: Any = None
        self._chunks: list[np.ndarray] | None = None

    def __getstate__(self) -> dict[str, Any]:  # the network is rebuilt where it runs
        return {**self.__dict__, "_net": None, "_optimizer": None, "_optimizer_net": None}

    # -- shape ---------------------------------------------------------------------------
    @property
    def num_rows(self) -> int:
        return self.spec.rows

    @property
    def row_width(self) -> int:
        return networks.ROW_WIDTH

    @property
    def num_examples(self) -> int:
        return int(self.X.shape[0])

    @property
    def net(self) -> Any:
        if self._net is None:
            self._net = networks.build_for(self.spec)
        return self._net

    def all_rows(self) -> np.ndarray:
        return np.arange(self.spec.rows, dtype=np.int64)

    def shuffled(self, rng: np.random.Generator) -> np.ndarray:
        return rng.permutation(self.num_examples)

    def state(self) -> dict[str, np.ndarray]:
        """What a snapshot keeps of this worker: examples seen and Adam's moments (a
        resumed run then steps exactly as the uninterrupted one)."""
        out = {"seen": np.array([self.examples_seen])}
        if self._optimizer is not None:
            params = list(self._optimizer_net.parameters())
            states = [self._optimizer.state.get(p, {}) for p in params]
            if all(states):
                out["adam_step"] = np.array([float(st["step"]) for st in states])
                out["adam_m"] = np.concatenate([st["exp_avg"].numpy().ravel() for st in states])
                out["adam_v"] = np.concatenate([st["exp_avg_sq"].numpy().ravel()
                                                for st in states])
        return out

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.examples_seen = int(state["seen"][0])
        if "adam_step" not in state:
            return
        torch = networks.torch_module()
        net = self.net
        self._optimizer = self._new_adam(net)
        self._optimizer_net = net
        offset = 0
        for p, step in zip(net.parameters(), state["adam_step"], strict=True):
            n = p.numel()
            self._optimizer.state[p] = {
                "step": torch.tensor(float(step)),
                "exp_avg": torch.from_numpy(state["adam_m"][offset:offset + n].copy()
                                            ).view_as(p).to(p.dtype),
                "exp_avg_sq": torch.from_numpy(state["adam_v"][offset:offset + n].copy()
                                               ).view_as(p).to(p.dtype)}
            offset += n

    # -- the arithmetic --------------------------------------------------------------------
    def _loss_and_grads(self, net: Any, idx: np.ndarray) -> tuple[Any, list[Any]]:
        torch = networks.torch_module()
        x = torch.from_numpy(self.X[idx])
        y = torch.from_numpy(self.labels[idx])
        loss = networks.loss_for(self.spec)(net(x), y)
        return loss, list(torch.autograd.grad(loss, list(net.parameters())))

    def _sgd(self, net: Any, order: np.ndarray) -> float:
        """Local steps over ``order`` in mini-batches (plain SGD, or Adam whose moments
        stay with this worker across clocks and averagings); the sum of the batches' losses
        (each at the weights it saw) over their examples."""
        if self.spec.optimizer == "adam":
            return self._adam(net, order)
        torch = networks.torch_module()
        total = 0.0
        b, lr = self.spec.batch_size, self.spec.lr
        params = list(net.parameters())
        for start in range(0, order.size, b):
            idx = order[start:start + b]
            loss, grads = self._loss_and_grads(net, idx)
            with torch.no_grad():
                for p, g in zip(params, grads, strict=True):
                    p.data.add_(g, alpha=-lr)
            total += self._finite(float(loss.detach())) * idx.size
        return total

    def _adam(self, net: Any, order: np.ndarray) -> float:
        torch = networks.torch_module()
        if self._optimizer is None or self._optimizer_net is not net:
            self._optimizer = self._new_adam(net)
            self._optimizer_net = net
        opt, loss_fn, b = self._optimizer, networks.loss_for(self.spec), self.spec.batch_size
        total = 0.0
        for start in range(0, order.size, b):
            idx = order[start:start + b]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(torch.from_numpy(self.X[idx])),
                           torch.from_numpy(self.labels[idx]))
            loss.backward()
            opt.step()
            total += self._finite(float(loss.detach())) * idx.size
        return total

    def _new_adam(self, net: Any) -> Any:
        """PyTorch's Adam in its fused form: one compiled update of every parameter per step
        instead of a Python loop of tensor operations per parameter (1.6x faster steps of
        the default MLP on one thread here; the loop held the GIL that the other workers'
        steps wait for)."""
        torch = networks.torch_module()
        return torch.optim.Adam(net.parameters(), lr=self.spec.lr, fused=True)

    def _finite(self, loss: float) -> float:
        """``loss``, or the error of a diverged fit when it is NaN or infinite."""
        if not math.isfinite(loss):
            self._diverged(f"the training loss became {loss}")
        return loss

    def _finite_values(self, values: np.ndarray, what: str) -> np.ndarray:
        if not np.isfinite(values).all():
            self._diverged(f"the network's {what} became NaN or infinite")
        return values

    def _diverged(self, what: str) -> None:
        """One line with what to change (the table's 'increment for row 9 contains NaN or
        inf', and a fit that ended at chance accuracy, said neither)."""
        raise ConfigError(
            f"{what}: the steps diverged. Scale the features (pixels 0-255: divide by 255; "
            f"other columns: standardise them) or lower lr (now {self.spec.lr:g})",
            param="lr")

    # -- ps: chunks of local steps -----------------------------------------------------------
    def num_chunks(self) -> int:
        return self.clocks_per_epoch

    def chunks(self) -> list[np.ndarray]:
        if self._chunks is None:
            order = np.random.default_rng(self.chunk_seed).permutation(self.num_examples)
            self._chunks = np.array_split(order, self.clocks_per_epoch)
        return self._chunks

    def chunk_rows(self, chunk: int) -> np.ndarray:
        return self.all_rows()

    def chunk_deltas(self, chunk: int, values: np.ndarray, epoch: int,
                     rng: np.random.Generator) -> tuple[np.ndarray, float]:
        examples = self.chunks()[chunk]
        net = self.model_from(values)
        loss = self._sgd(net, examples[rng.permutation(examples.size)])
        self.examples_seen += examples.size
        change = self._finite_values(networks.get_flat(net), "weights") - np.asarray(
            values, dtype=np.float32)
        return change / self.spec.workers, loss / max(examples.size, 1)

    # -- sync / downpour: gradients ------------------------------------------------------------
    def batches(self, epoch: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
        order = self.shuffled(rng)
        return [order[i:i + batch_size] for i in range(0, order.size, batch_size)]

    def sync_row(self) -> np.ndarray:
        return np.array([0], dtype=np.int64)

    def batch_rows(self, batch: np.ndarray) -> np.ndarray:
        return self.all_rows()

    def batch_gradient(self, batch: np.ndarray, values: np.ndarray
                       ) -> tuple[np.ndarray, float]:
        net = self.model_from(values)
        loss, grads = self._loss_and_grads(net, batch)
        value = self._finite(float(loss.detach()))
        self.examples_seen += batch.size
        return self._finite_values(networks.flat_grads(grads, self.spec.rows),
                                   "gradient"), value

    # -- average / hogwild: a full local model -------------------------------------------------
    def model_from(self, values: np.ndarray) -> Any:
        net = self.net
        networks.set_flat(net, values)
        return net

    def model_values(self, model: Any) -> np.ndarray:
        return self._finite_values(networks.get_flat(model), "weights")

    def local_steps(self, model: Any, examples: np.ndarray) -> float:
        self.examples_seen += examples.size
        return self._sgd(model, examples)

    def hogwild_steps(self, model: Any, examples: np.ndarray, threads: int,
                      epoch: int) -> float:
        """``threads`` threads of lock-free SGD on the one network (PyTorch's kernels
        release the GIL)."""
        parts = np.array_split(examples, threads)
        losses = [0.0] * threads

        def run(i: int) -> None:
            losses[i] = self._sgd(model, parts[i])

        run_threads(run, threads)  # a thread that raises reaches the caller
        self.examples_seen += examples.size
        return float(sum(losses))
