"""``KMeans``: mini-batch k-means, data-parallel on the parameter server."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import ClusterMixin, TransformerMixin
from sklearn.cluster import kmeans_plusplus
from sklearn.utils.validation import validate_data
from threadpoolctl import threadpool_limits

from ... import job
from ...errors import ConfigError
from ...ps.tables import TableSpec
from ..base import (
    RunConfig,
    StalesyncEstimator,
    check_choice,
    check_consistency,
    check_float,
    check_int,
    check_sparse_structure,
)
from ..progress import Progress
from ..workers import AUTO, Work, decide, timed
from .worker import COUNTS, SUMS, Points, centroids, make_worker

INITS = ("k-means++", "random")
PROBE_POINTS = 4096  # workers="auto" times assigning this many points
ASSIGN_CHUNK = 8192  # points per matrix product of the final assignment
CLOCK_WORK = 2**22  # multiply-adds a clock carries at least (a few milliseconds)
# workers="auto": each worker makes at least this many clocks per epoch. With fewer, a
# worker assigns its whole share against centroids the others have not moved yet (1,797
# digits on 2 workers: one clock per epoch each, inertia 1.237e6 against 1.17-1.22e6 for one
# worker over three seeds, and slower)
MIN_CLOCKS_PER_EPOCH = 4


class KMeans(ClusterMixin, TransformerMixin, StalesyncEstimator):
    """K-means clustering by mini-batches on the parameter server (Sculley 2010).

    The tables hold each cluster's sum of points and count; workers assign ``batch_size``
    of their points (or more, so that a clock carries at least 4 M multiply-adds) per
    clock to the nearest (bounded-stale) centroids and move those points' contributions
    between clusters, so the tables always hold the statistics of
    the current assignment (see :mod:`stalesync.apps.kmeans.worker`). Initial centroids by
    k-means++ (``init="k-means++"``, on a sample of at most ``init_size`` points) or
    ``random`` points. A worker stops after ``epochs`` passes or when at most ``tol`` of
    its points changed cluster in its last pass. ``init`` may also be an array of starting
    centres (n_clusters x n_features). Where and how the fit runs is
    ``fit(X, run=RunConfig(...))``.

    Attributes: ``cluster_centers_``, ``labels_`` and ``inertia_`` (of the training data
    under the final centres), ``n_iter_`` (epochs), ``run_record_``.
    """

    _fitted_attributes = ("cluster_centers_", "n_features_in_")
    _model_arrays = ("cluster_centers_",)
    _model_info = ("inertia_", "n_iter_", "n_features_in_")

    def __init__(self, n_clusters: int = 8, *, epochs: int = 20, batch_size: int = 1024,
                 tol: float = 1e-4, init: str | np.ndarray = "k-means++",
                 init_size: int | None = None,
                 workers: int | str = "auto", consistency: str = "ssp", staleness: int | None = 1,
                 seed: int = 0) -> None:
        self.n_clusters = n_clusters
        self.epochs = epochs
        self.batch_size = batch_size
        self.tol = tol
        self.init = init
        self.init_size = init_size
        self.workers = workers
        self.consistency = consistency
        self.staleness = staleness
        self.seed = seed

    def _check_own_params(self) -> None:
        check_int(self.n_clusters, "n_clusters", 1)
        check_int(self.batch_size, "batch_size", 1)
        check_float(self.tol, "tol", 0, 1)
        if isinstance(self.init, str):
            check_choice(self.init, "init", INITS)
        elif np.shape(self.init) != (self.n_clusters, np.shape(self.init)[-1]):
            raise ConfigError(f"init must be one of {INITS} or an array of n_clusters="
                              f"{self.n_clusters} rows, got shape {np.shape(self.init)}",
                              param="init")
        if self.init_size is not None:
            check_int(self.init_size, "init_size", 1)
        check_consistency(self.consistency, self.staleness)

    def _validate(self, X: Any, reset: bool):
        return check_sparse_structure(validate_data(self, X, reset=reset, accept_sparse="csr",
                                                    dtype=[np.float64, np.float32], order="C"))

    def _initial_centroids(self, X, rng: np.random.Generator) -> np.ndarray:
        """k-means++ (or random points) on a sample of ``init_size`` points (default 10,000
        or 20 per cluster, whichever is more), as MiniBatchKMeans seeds on a sample."""
        if not isinstance(self.init, str):
            C = np.asarray(self.init, dtype=np.float64)
            if C.shape[1] != X.shape[1]:
                raise ConfigError(f"init has {C.shape[1]} features, X has {X.shape[1]}",
                                  param="init")
            return C.copy()
        n = X.shape[0]
        size = min(n, self.init_size or max(10_000, 20 * self.n_clusters))
        sample = rng.choice(n, size=size, replace=False) if size < n else np.arange(n)
        Xs = X[np.sort(sample)].astype(np.float64)  # scikit-learn's k-means++ is faster so
        if self.init == "random":
            pick = rng.choice(Xs.shape[0], size=self.n_clusters, replace=False)
            C = Xs[pick]
        else:
            C, _ = kmeans_plusplus(Xs, self.n_clusters,
                                   random_state=int(rng.integers(2**31 - 1)))
        return np.asarray(C.toarray() if sp.issparse(C) else C, dtype=np.float64)

    def fit(self, X: Any, y: Any = None, *, run: RunConfig | dict | None = None) -> KMeans:
        """Cluster the rows of ``X`` (dense or scipy sparse); ``y`` is ignored."""
        self._check_params()
        run = RunConfig.coerce(run)
        X = self._validate(X, reset=True)
        n, d = X.shape
        if n < self.n_clusters:
            raise ConfigError(f"n_samples={n} should be >= n_clusters={self.n_clusters}",
                              param="n_clusters")
        if self.workers != AUTO and n < self.workers:
            raise ConfigError(f"{n} points cannot be split over {self.workers} workers",
                              param="workers")
        rng = np.random.default_rng(self.seed)
        init = self._initial_centroids(X, rng)
        order = rng.permutation(n)
        batch = self._clock_points(d)
        decision = decide(self.workers, lambda: Work(
            self._probe(X, order, init) * n * self.epochs, self.epochs * -(-n // batch),
            split_clocks=True, max_workers=max(1, n // (MIN_CLOCKS_PER_EPOCH * batch)),
            min_clocks=self.epochs), resume=run.resume)
        workers = decision.workers
        with ThreadPoolExecutor(workers) as pool:  # one thread cuts each worker's part
            parts = list(pool.map(Points.create, [X] * workers,
                                  np.array_split(order, workers), [batch] * workers))
        batches = max(p.num_batches for p in parts)
        for p in parts:  # every worker has the same number of clocks per epoch
            p.batch_size = -(-p.size // batches)
        K = self.n_clusters
        progress = Progress(desc="kmeans", epochs=self.epochs, clocks_per_epoch=batches,
                            workers=workers, enabled=run.progress,
                            objective="inertia/point", items_per_epoch=n, items="points")
        start = time.perf_counter()
        with progress, threadpool_limits(limits=1, user_api="blas"):
            result = job.run(
                make_worker(init, self.epochs, self.tol),
                [TableSpec(SUMS, K, d, "float64"), TableSpec(COUNTS, K, 1, "int64")],
                data=parts, workers=workers, consistency=self.consistency,
                staleness=None if self.consistency in ("bsp", "async") else self.staleness,
                iterations=self.epochs * batches, seed=self.seed, app="kmeans",
                on_clock=progress.on_clock, **run.job_options(self.seed))
        train_s = time.perf_counter() - start
        fallback = result.worker_results[0]["centroids"]
        self.cluster_centers_ = centroids(result.tables[SUMS], result.tables[COUNTS], fallback)
        self.labels_, dist = self._assign(X, threads=workers)
        self.inertia_ = float(dist.sum())
        self.n_iter_ = int(max(r["epochs"] for r in result.worker_results))
        record = result.record
        record["workers_decision"] = decision.as_record()
        record["epochs"] = self.n_iter_
        record["objective_name"] = "inertia per point (at assignment)"
        record["final"] = {"inertia": self.inertia_, "epochs": self.n_iter_,
                           "n_samples": n, "n_features": d, "n_clusters": K,
                           "points_per_s": n * self.n_iter_ / max(train_s, 1e-12),
                           "clocks_per_epoch": batches}
        self._keep_record(record)
        return self

    def _probe(self, X, order: np.ndarray, init: np.ndarray) -> float:
        """Seconds of compute per point and epoch, timed on assigning a sample of the
        points to the initial centres (a clock also adds its points to the sums: about as
        much again)."""
        sample = Points.create(X, np.sort(order[:PROBE_POINTS]), self.batch_size)
        m = sample.size
        labels, dist = np.empty(m, dtype=np.int64), np.empty(m)
        return 2 * timed(sample.assign, 0, m, init, labels, dist) / m

    def _clock_points(self, d: int) -> int:
        """Points a worker assigns per clock: ``batch_size``, or more, so that a clock
        carries at least CLOCK_WORK multiply-adds (points x features x clusters): a clock's
        fixed cost in the table layer is tens of microseconds, and a clock of 1,024 digits
        against 10 centres (0.7 M) was mostly that. Fixed by the data's shape, never by a
        timing, so a seeded fit repeats and a snapshot resumes on the same clocks."""
        return max(self.batch_size, -(-CLOCK_WORK // max(1, d * self.n_clusters)))

    def _assign(self, X, threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Exact labels and squared distances under the centres (float64, in chunks of
        ASSIGN_CHUNK points, on ``threads`` threads with one BLAS thread each)."""
        n = X.shape[0]
        labels = np.empty(n, dtype=np.int64)
        dist = np.empty(n)
        C = self.cluster_centers_

        def chunk(lo: int) -> None:
            hi = min(lo + ASSIGN_CHUNK, n)
            part = X[lo:hi]  # a view of dense rows; float32 is scored in float64
            pts = Points.of(part.astype(np.float64, copy=False))
            pts.assign(0, hi - lo, C, labels[lo:hi], dist[lo:hi])

        starts = range(0, n, ASSIGN_CHUNK)
        if threads <= 1 or n <= ASSIGN_CHUNK:
            for lo in starts:
                chunk(lo)
        else:
            with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(
                    threads) as pool:
                list(pool.map(chunk, starts))
        return labels, dist

    def predict(self, X: Any) -> np.ndarray:
        """The nearest centre of each row of ``X``."""
        self._check_fitted()
        return self._assign(self._validate(X, reset=False))[0]

    def transform(self, X: Any) -> np.ndarray:
        """Euclidean distance of each row of ``X`` to every centre (n x K)."""
        self._check_fitted()
        X = self._validate(X, reset=False)
        C = self.cluster_centers_
        sq = (np.asarray(X.multiply(X).sum(axis=1)).ravel() if sp.issparse(X)
              else np.einsum("ij,ij->i", X, X))
        d2 = sq[:, None] - 2.0 * np.asarray(X @ C.T) + np.einsum("ij,ij->i", C, C)[None, :]
        return np.sqrt(np.maximum(d2, 0.0))

    def score(self, X: Any, y: Any = None) -> float:
        """Minus the inertia of ``X`` under the centres (greater is better)."""
        self._check_fitted()
        return -float(self._assign(self._validate(X, reset=False))[1].sum())

    def _after_load(self) -> None:
        self.inertia_ = float(self.inertia_)
        self.n_iter_ = int(self.n_iter_)
        self.n_features_in_ = int(self.n_features_in_)
