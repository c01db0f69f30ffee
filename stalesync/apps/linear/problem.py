"""One worker's share of a linear model's SGD problem (:class:`LinearProblem`), the shape
every strategy in :mod:`stalesync.strategies` drives.

The parameter table has ``d + 2`` rows of ``K`` columns: rows ``0..d-1`` the features, row
``d`` the bias, row ``d + 1`` column 0 the log of a scale ``a``, so the weights are
``w = exp(log a) * V``. Only the ``ps`` strategy moves the scale: a chunk's L2 decay of
*every* weight is one increment of ``log a`` (decays multiply, so their logs add, from any
number of workers), and the chunk's rows get ``V' / a`` so that ``a V`` is what the chunk
computed. The other strategies keep ``log a = 0`` and store the weights themselves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from ...kernels import linear as k
from ...kernels.csr import column_counts, compact_columns
from ...strategies.base import run_threads
from ..workers import available_cores

SHUFFLE_BLOCK = 256  # rows per block of an epoch's order (see LinearProblem.shuffled)


@dataclass(frozen=True)
class LinearSpec:
    """The model's settings every worker shares (small: travels with each problem)."""

    num_features: int
    outputs: int  # K
    loss: int  # kernels.linear.LOSSES code
    mode: int  # 0: binary / one-vs-rest, 1: multinomial
    classify: bool
    alpha: float
    l1_ratio: float
    schedule: int
    eta0: float
    t0: float
    power_t: float
    epsilon: float
    fit_intercept: bool
    intercept_decay: float
    average_from: int  # ASGD from this step of a worker (-1: off)
    t_step: float  # a worker's step counter advances this much per example (its share)
    workers: int = 1  # how many workers' changes meet in the table (ps: see Chunk.weight)

    @property
    def bias_row(self) -> int:
        return self.num_features

    @property
    def scale_row(self) -> int:
        return self.num_features + 1


@dataclass
class Chunk:
    """A ``ps`` clock's examples, with their columns renumbered to the rows they touch."""

    rows: np.ndarray  # global feature ids, sorted
    indptr: np.ndarray
    indices: np.ndarray  # local ids into rows
    data: np.ndarray
    labels: np.ndarray
    yvals: np.ndarray
    weight: np.ndarray  # per row: 1 / expected number of workers changing it this clock
    table_rows: np.ndarray  # rows, then the bias and scale rows: what a clock reads


@dataclass
class LocalModel:
    """A worker's full local model: ``w = s V``, the averaging sums, the L1 bookkeeping."""

    V: np.ndarray
    bias: np.ndarray
    state: np.ndarray  # [s, t, B, u, averaged steps]
    A: np.ndarray
    bias_sum: np.ndarray


@dataclass
class LinearProblem:
    """One worker's examples (CSR rows) and its optimizer state (step count, L1 sums)."""

    X: sp.csr_matrix
    labels: np.ndarray  # class index (classification) or 0
    yvals: np.ndarray  # regression target (or unused)
    freq: np.ndarray  # share of all examples with each feature (the L2 spread)
    spec: LinearSpec
    clocks_per_epoch: int
    t: float = 0.0
    u: float = 0.0
    q: np.ndarray | None = None
    examples_seen: int = 0
    _chunks: list[Chunk] | None = field(default=None, repr=False)
    _local: np.ndarray | None = field(default=None, repr=False)
    _targets: np.ndarray | None = field(default=None, repr=False)
    _scratch: np.ndarray | None = field(default=None, repr=False)

    @property
    def num_rows(self) -> int:
        return self.spec.num_features + 2

    @property
    def row_width(self) -> int:
        return self.spec.outputs

    @property
    def num_examples(self) -> int:
        return int(self.X.shape[0])

    def _q(self) -> np.ndarray:
        if self.q is None:
            self.q = np.zeros((self.spec.num_features, self.spec.outputs))
        return self.q

    # -- optimizer state (snapshots) ---------------------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        return {"t": np.array([self.t]), "u": np.array([self.u]), "q": self._q(),
                "seen": np.array([self.examples_seen])}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.t, self.u = float(state["t"][0]), float(state["u"][0])
        self.q = np.array(state["q"], dtype=np.float64)
        self.examples_seen = int(state["seen"][0])

    def shuffled(self, rng: np.random.Generator) -> np.ndarray:
        """An epoch's example order: blocks of ``SHUFFLE_BLOCK`` consecutive rows, in a
        random order. The rows were put in a random order once, when the problem was
        built, so every block is a random sample; reading a block's rows in memory order
        makes an epoch twice as fast as a full permutation once the data outgrows the
        cache (Bottou's SGD does not reshuffle at all)."""
        n = self.num_examples
        blocks = -(-n // SHUFFLE_BLOCK)
        grid = np.arange(blocks * SHUFFLE_BLOCK, dtype=np.int64).reshape(blocks, -1)
        order = grid[rng.permutation(blocks)].ravel()
        return order[order < n]

    def all_rows(self) -> np.ndarray:
        return np.arange(self.num_rows, dtype=np.int64)

    # -- ps: chunks ---------------------------------------------------------------------
    def num_chunks(self) -> int:
        return self.clocks_per_epoch

    def chunks(self) -> list[Chunk]:
        """The epoch's chunks: consecutive runs of this worker's rows, which were put in a
        random order when the problem was built (so each chunk is a random sample, cut
        without copying or sorting the examples)."""
        if self._chunks is None:
            cuts = np.linspace(0, self.num_examples, self.clocks_per_epoch + 1).astype(np.int64)
            scratch = np.full(self.spec.num_features, -1, dtype=np.int64)
            self._chunks = [self._chunk(lo, hi, scratch)
                            for lo, hi in zip(cuts[:-1], cuts[1:], strict=True)]
        return self._chunks

    def _chunk(self, lo: int, hi: int, scratch: np.ndarray) -> Chunk:
        X = self.X
        start, end = X.indptr[lo], X.indptr[hi]
        rows, local = compact_columns(X.indices[start:end], scratch)
        # the chance that another worker's chunk of as many examples touches each row
        touched = -np.expm1((hi - lo) * np.log1p(-np.minimum(self.freq[rows], 1 - 1e-12)))
        weight = 1.0 / np.maximum(1.0, self.spec.workers * touched)
        table_rows = np.concatenate([rows, [self.spec.bias_row, self.spec.scale_row]])
        return Chunk(rows, (X.indptr[lo:hi + 1] - start).astype(np.int64), local,
                     X.data[start:end], self.labels[lo:hi], self.yvals[lo:hi], weight,
                     table_rows)

    def chunk_rows(self, chunk: int) -> np.ndarray:
        return self.chunks()[chunk].table_rows

    def chunk_deltas(self, chunk: int, values: np.ndarray, epoch: int,
                     rng: np.random.Generator) -> tuple[np.ndarray, float]:
        """SGD over the chunk against ``values`` (its rows, then bias and scale rows):
        the deltas to add, and the mean loss."""
        c = self.chunks()[chunk]
        r = c.rows.size
        a0 = math.exp(values[r + 1, 0])
        V = values[:r] * a0  # the weights themselves, scale 1
        bias = values[r].copy()
        q = self._q()[c.rows]
        model = LocalModel(V, bias, np.array([1.0, self.t, 0.0, self.u, 0.0]),
                           np.zeros((0, 0)), np.zeros(0))
        order = rng.permutation(c.labels.size).astype(np.int64)
        loss = self._sgd(c.indptr, c.indices, c.data, c.labels, c.yvals, order, model, q,
                         averaging=False)
        s = model.state[0]
        shared = 1.0 / self.spec.workers  # every worker changes the bias and the scale
        deltas = np.zeros_like(values)
        deltas[:r] = (model.V / a0 - values[:r]) * c.weight[:, None]
        deltas[r] = (model.bias - values[r]) * shared
        deltas[r + 1, 0] = math.log(s) * shared
        self._q()[c.rows] = q
        self.t, self.u = model.state[1], model.state[3]
        self.examples_seen += order.size
        return deltas, loss / max(order.size, 1)

    # -- sync / downpour: gradients ---------------------------------------------------------
    def batches(self, epoch: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
        order = self.shuffled(rng)
        return [order[i:i + batch_size] for i in range(0, order.size, batch_size)]

    def sync_row(self) -> np.ndarray:
        return np.array([self.spec.bias_row], dtype=np.int64)

    def batch_rows(self, batch: np.ndarray) -> np.ndarray:
        X = self.X
        used = np.concatenate([X.indices[X.indptr[i]:X.indptr[i + 1]] for i in batch]) \
            if batch.size else np.zeros(0, np.int64)
        return np.concatenate([np.unique(used), [self.spec.bias_row]]).astype(np.int64)

    def batch_gradient(self, batch: np.ndarray, values: np.ndarray
                       ) -> tuple[np.ndarray, float]:
        spec, X = self.spec, self.X
        rows = self.batch_rows(batch)
        if self._local is None:
            self._local = np.zeros(spec.num_features, dtype=np.int64)
        features = rows[:-1]
        self._local[features] = np.arange(features.size)
        G = np.zeros((features.size, spec.outputs))
        g_bias = np.zeros(spec.outputs)
        loss = k.batch_gradient(X.indptr, X.indices, X.data, self.labels, self.yvals,
                                batch.astype(np.int64), self._local, values[:-1],
                                values[-1], self.freq, self.num_examples, spec.loss,
                                spec.mode, spec.classify, spec.alpha, spec.epsilon, G,
                                g_bias)
        grads = np.vstack([G, g_bias[None] if spec.fit_intercept else 0 * g_bias[None]])
        self.examples_seen += batch.size
        return grads, loss / max(batch.size, 1)

    # -- lbfgs: the full batch ------------------------------------------------------------
    def loss_grad(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """The summed loss of this worker's examples at ``theta`` (the weights, features x
        K row-major, then the K biases) and its gradient, without the penalty."""
        spec, X = self.spec, self.X
        d, K = spec.num_features, spec.outputs
        if K == 1 and spec.mode != k.MULTINOMIAL:
            return self._loss_grad_single(theta)
        G, g_bias = np.zeros((d, K)), np.zeros(K)
        loss = k.full_gradient(X.indptr, X.indices, X.data, self.labels, self.yvals,
                               theta[: d * K].reshape(d, K), theta[d * K:], spec.loss,
                               spec.mode, spec.classify, spec.epsilon, G, g_bias)
        if not spec.fit_intercept:
            g_bias[:] = 0.0
        self.examples_seen += self.num_examples
        return loss, np.concatenate([G.ravel(), g_bias])

    def _loss_grad_single(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        spec, X = self.spec, self.X
        if self._targets is None:  # +-1 labels (binary) or the regression values
            self._targets = (np.where(self.labels == 1, 1.0, -1.0) if spec.classify
                             else np.ascontiguousarray(self.yvals, dtype=np.float64))
            # kept: a fresh buffer of this size per pass costs its page faults every time
            # (the kernel's own time on 1M rows grew by a quarter), and two workers' faults
            # serialise on the process's memory map
            self._scratch = np.empty(self.num_examples)
        grad = np.zeros(theta.size)
        loss, g_bias = k.full_gradient_single(X.indptr, X.indices, X.data, self._targets,
                                              theta[:-1], theta[-1], spec.loss, spec.epsilon,
                                              grad[:-1], self._scratch)
        grad[-1] = g_bias if spec.fit_intercept else 0.0
        self.examples_seen += self.num_examples
        return loss, grad

    # -- average / hogwild: a full local model ---------------------------------------------
    def model_from(self, values: np.ndarray) -> LocalModel:
        d, K = self.spec.num_features, self.spec.outputs
        scale = math.exp(values[d + 1, 0])
        V = values[:d] * scale if scale != 1.0 else values[:d].copy()
        averaging = self.spec.average_from >= 0
        return LocalModel(V, values[d].copy(), np.array([1.0, self.t, 0.0, self.u, 0.0]),
                          np.zeros((d, K)) if averaging else np.zeros((0, 0)),
                          np.zeros(K))

    def model_values(self, model: LocalModel) -> np.ndarray:
        d, K = self.spec.num_features, self.spec.outputs
        out = np.zeros((d + 2, K))
        steps = model.state[4]
        if steps > 0:  # ASGD: the average of the iterates since averaging began
            out[:d] = (model.A + model.state[2] * model.V) / steps
            out[d] = model.bias_sum / steps
        else:
            out[:d] = model.state[0] * model.V
            out[d] = model.bias
        return out

    def local_steps(self, model: LocalModel, examples: np.ndarray) -> float:
        X = self.X
        return self._sgd(X.indptr, X.indices, X.data, self.labels, self.yvals,
                         examples.astype(np.int64), model, self._q(),
                         averaging=self.spec.average_from >= 0)

    def _sgd(self, indptr, indices, data, labels, yvals, order, model: LocalModel,
             q: np.ndarray, averaging: bool) -> float:
        spec = self.spec
        loss = k.sgd_epoch(
            indptr, indices, data, labels, yvals, order, model.V, model.bias, model.state,
            model.A, model.bias_sum, q, spec.loss, spec.mode, spec.classify, spec.alpha,
            spec.l1_ratio, spec.schedule, spec.eta0, spec.t0, spec.power_t, spec.epsilon,
            spec.intercept_decay, spec.average_from if averaging else -1, spec.fit_intercept,
            spec.t_step)
        self.t, self.u = model.state[1], model.state[3]
        self.examples_seen += order.size
        return loss

    def hogwild_steps(self, model: LocalModel, examples: np.ndarray, threads: int,
                      epoch: int) -> float:
        """``threads`` threads of lock-free SGD on ``model.V`` (shared, scale 1); the step
        size of an epoch follows the schedule at the examples seen before it."""
        spec, X = self.spec, self.X
        if spec.schedule == 0:
            eta = 1.0 / (spec.alpha * (self.t + spec.t0))
        elif spec.schedule == 1:
            eta = spec.eta0
        else:
            eta = spec.eta0 / (self.t + 1.0) ** spec.power_t
        parts = np.array_split(examples.astype(np.int64), threads)
        losses = [0.0] * threads

        def run(i: int) -> None:
            losses[i] = k.hogwild_epoch(X.indptr, X.indices, X.data, self.labels, self.yvals,
                                        parts[i], model.V, model.bias, self.freq, spec.loss,
                                        spec.mode, spec.classify, spec.alpha, eta,
                                        spec.epsilon, spec.intercept_decay,
                                        spec.fit_intercept)

        run_threads(run, threads)  # a thread that raises reaches the caller
        self.t += examples.size * spec.t_step
        self.examples_seen += examples.size
        return float(sum(losses))


def feature_frequency(X: sp.csr_matrix) -> np.ndarray:
    """The share of examples in which each feature is non-zero (counted on every core)."""
    counts = column_counts(X.indices, X.shape[1], available_cores()).astype(np.float64)
    return counts / max(X.shape[0], 1)


def hash_columns(X: sp.csr_matrix, buckets: int) -> sp.csr_matrix:
    """Feature hashing (Weinberger et al. 2009): column ``j`` goes to bucket ``h(j) %
    buckets`` with sign ``+-1`` from another bit of the hash, so collisions cancel in
    expectation. A fixed integer hash (splitmix64), the same in every process."""
    j = X.indices.astype(np.uint64)
    z = j + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    cols = (z % np.uint64(buckets)).astype(np.int64)
    sign = np.where((z >> np.uint64(63)) == 1, -1.0, 1.0)
    rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
    out = sp.csr_matrix((X.data * sign, (rows, cols)), shape=(X.shape[0], buckets))
    out.sum_duplicates()
    return out
