"""K-means' worker program on the parameter server.

Tables hold the sufficient statistics of the current assignment of every point: ``sums``
(K x d, the sum of the points in each cluster) and ``counts`` (K x 1). A centroid is
``sums / counts``. Each clock a worker reads both tables (bounded-stale), assigns its next
mini-batch of points to their nearest centroids with a compiled kernel, and adds the change
of the statistics: a point that moved from cluster a to b subtracts itself from a and adds
itself to b. So the tables always equal the statistics of the assignments (exactly, as
LDA's counts equal its topic assignments), and the fixed points are Lloyd's.

Assignment is one matrix product per mini-batch (``X_batch @ C^T``, BLAS limited to one
thread per worker while the job runs, so workers do not fight over cores).

In the first epoch no point has an assignment yet, so it is Sculley's mini-batch k-means
(each centroid the running mean of the points given to it); later epochs refine like
Lloyd's algorithm, but every mini-batch sees the centroids its predecessors moved, which
is why it needs fewer passes. A worker stops when at most ``tol`` of its points changed
cluster in its last epoch, or after ``epochs``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ...kernels import kmeans as k
from ...kernels.csr import take_rows
from ...kernels.rows import gather_rows

# float64 points against at most this many centroid entries (K x d) are scored by the
# compiled loop: it beat BLAS inside the fit at 10 x 64 (a 500,000-point job 0.86 -> 0.61 s);
# BLAS won at 32 x 64 and 20 x 100, and on float32 points (single-precision products) at
# every size measured, 10 x 784 included
FUSED_ASSIGN_MAX = 1024
SUMS = "sums"
COUNTS = "counts"


@dataclass
class Points:
    """One worker's points (its own contiguous copy, in shuffled order) and their state."""

    X: np.ndarray | sp.csr_matrix
    x_norm2: np.ndarray  # ||x||^2 of each point
    labels: np.ndarray  # int64, -1 = not yet assigned
    dist: np.ndarray  # squared distance to the centroid it was assigned to
    batch_size: int

    @classmethod
    def create(cls, X, rows: np.ndarray, batch_size: int) -> Points:
        """The points ``X[rows]`` (a copy: a remote worker receives only its own). The copy
        and the norms run in compiled loops without the GIL, so one thread per worker cuts
        the partitions at once."""
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        if sp.issparse(X):
            local = take_rows(sp.csr_matrix(X), rows)
            norms = k.row_norms2_csr(local.indptr, local.data, local.shape[0])
        else:
            local = gather_rows(np.ascontiguousarray(X), rows)
            norms = k.row_norms2_dense(local)
        return cls.of(local, norms, batch_size)

    @classmethod
    def of(cls, X, norms: np.ndarray | None = None, batch_size: int = 1) -> Points:
        """``X`` itself, not a copy (C-ordered dense or CSR rows)."""
        if norms is None:
            norms = (k.row_norms2_csr(X.indptr, X.data, X.shape[0]) if sp.issparse(X)
                     else k.row_norms2_dense(X))
        n = X.shape[0]
        return cls(X, norms, np.full(n, -1, dtype=np.int64), np.zeros(n), batch_size)

    @property
    def size(self) -> int:
        return int(self.X.shape[0])

    @property
    def num_batches(self) -> int:
        return max(1, -(-self.size // self.batch_size))

    def batch(self, b: int) -> tuple[int, int]:
        lo = b * self.batch_size
        return lo, min(lo + self.batch_size, self.size)

    def assign(self, lo: int, hi: int, C: np.ndarray, labels: np.ndarray,
               dist: np.ndarray) -> None:
        """Nearest centroid of points ``lo..hi``: ``||x||^2 - 2 x.c + ||c||^2``. Few
        centroids of few features against float64 points (``C.size <= FUSED_ASSIGN_MAX``):
        one compiled loop without the GIL (the matrix product is too thin to pay there, and
        every numpy step after it hands the GIL to the other workers); else the cross term
        as one matrix product (BLAS, in the data's precision)."""
        if hi <= lo:
            return
        c_norm2 = np.einsum("ij,ij->i", C, C)
        if (C.size <= FUSED_ASSIGN_MAX and not sp.issparse(self.X)
                and self.X.dtype == np.float64):
            k.assign_dense(self.X, lo, hi, np.ascontiguousarray(C, dtype=np.float64),
                           c_norm2, self.x_norm2, labels, dist)
            return
        cross = self.X[lo:hi] @ C.T.astype(self.X.dtype, copy=False)
        scores = c_norm2[None, :] - 2.0 * np.asarray(cross, dtype=np.float64)
        best = np.argmin(scores, axis=1)
        labels[lo:hi] = best
        dist[lo:hi] = np.maximum(scores[np.arange(hi - lo), best] + self.x_norm2[lo:hi], 0.0)

    def deltas(self, lo: int, hi: int, new: np.ndarray, K: int, d: int
               ) -> tuple[np.ndarray, np.ndarray, int]:
        dS = np.zeros((K, d))
        dN = np.zeros(K, dtype=np.int64)
        if sp.issparse(self.X):
            moved = k.deltas_csr(self.X.indptr, self.X.indices, self.X.data, lo, hi,
                                 self.labels, new, dS, dN)
        else:
            moved = k.deltas_dense(self.X, lo, hi, self.labels, new, dS, dN)
        return dS, dN, moved


def centroids(sums: np.ndarray, counts: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """``sums / counts``; a cluster with no point keeps ``fallback``'s centroid."""
    n = counts[:, 0].astype(np.float64)
    out = fallback.copy()
    full = n > 0
    out[full] = sums[full] / n[full, None]
    return out


def make_worker(init: np.ndarray, epochs: int, tol: float):
    """The ``worker(ctx)`` function: ``init`` are the starting centroids (K x d)."""
    K, d = init.shape

    def worker(ctx) -> dict:
        pts: Points = ctx.data
        restored = ctx.load_state()
        last = init.copy()
        moved = np.zeros(1, dtype=np.int64)  # points that changed cluster this epoch so far
        # the sum of pts.dist, kept up to date a batch at a time: the clock's objective (the
        # mean over the points assigned so far) then costs O(batch), not a pass over them all
        dist_sum = np.zeros(1)
        if restored is not None:
            pts.labels[:] = restored["labels"]
            pts.dist[:] = restored["dist"]
            last[:] = restored["centroids"]
            moved[:] = restored.get("moved_in_epoch", 0)
            dist_sum[:] = restored.get("dist_sum", pts.dist.sum())
        ctx.save_state({"labels": pts.labels, "dist": pts.dist, "centroids": last,
                        "moved_in_epoch": moved, "dist_sum": dist_sum})
        epochs_done = ctx.clock_count // pts.num_batches
        new = np.empty(pts.size, dtype=np.int64)
        while ctx.clock_count < ctx.iterations:
            b = ctx.clock_count % pts.num_batches
            lo, hi = pts.batch(b)
            last[:] = centroids(ctx.read(SUMS), ctx.read(COUNTS), last)
            before = pts.dist[lo:hi].sum()  # zeros before a point's first assignment
            pts.assign(lo, hi, last, new, pts.dist)
            dist_sum[0] += pts.dist[lo:hi].sum() - before
            dS, dN, moved_now = pts.deltas(lo, hi, new, K, d)
            pts.labels[lo:hi] = new[lo:hi]
            touched = np.flatnonzero(dN != 0) if moved_now else np.zeros(0, dtype=np.int64)
            if touched.size:
                ctx.inc(SUMS, touched, dS[touched])
                ctx.inc(COUNTS, touched, dN[touched, None])
            moved[0] += moved_now
            seen = hi if epochs_done == 0 else pts.size  # points assigned so far
            ctx.clock(objective=float(dist_sum[0] / seen) if seen else None)
            if b == pts.num_batches - 1:
                epochs_done += 1
                if epochs_done > 1 and moved[0] <= tol * pts.size:
                    break
                moved[0] = 0
        return {"epochs": epochs_done, "centroids": last}

    return worker
