"""Crash and resume every parameter-server app at seeded random clocks (embedded runtime).

Each run: a one-worker job that snapshots every few clocks is killed at a random clock (the
worker raises inside ``ctx.clock``, as a crashed process would stop there), then resumed from
its newest snapshot; it must end bit for bit where the same job without a crash ends. Two
seeds per app run in the default suite; ``-m soak`` runs SOAK_RUNS per app
(``STALESYNC_SOAK_RUNS``) and prints the counts (runs, kills, resumes, mismatches, skipped).
A run whose job has too few clocks for a crash after a snapshot is counted as skipped, never
skips the soak: the default runs must not skip, a soak may skip at most a tenth.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from lda_fixtures import planted_corpus
from sklearn.datasets import make_blobs

from stalesync.apps.base import RunConfig
from stalesync.apps.kmeans import KMeans
from stalesync.apps.lda import LDA
from stalesync.apps.linear import LinearClassifier
from stalesync.apps.mf import MatrixFactorization
from stalesync.data.ratings import Ratings
from stalesync.ps.context import WorkerContext

SOAK_RUNS = int(os.environ.get("STALESYNC_SOAK_RUNS", "50"))  # per app


class InjectedCrash(RuntimeError):
    pass


def _ratings(seed=0, n_users=120, n_items=90, density=0.2):
    rng = np.random.default_rng(seed)
    mask = rng.random((n_users, n_items)) < density
    users, items = np.nonzero(mask)
    P, Q = rng.normal(size=(n_users, 3)), rng.normal(size=(n_items, 3))
    values = 3 + (P[users] * Q[items]).sum(1) + 0.1 * rng.normal(size=users.size)
    return Ratings(users.astype(np.int32), items.astype(np.int32), values.astype(np.float32),
                   np.arange(n_users), np.arange(n_items))


def _linear_data():
    X, y = make_blobs(n_samples=600, centers=2, n_features=8, random_state=0)
    return X.astype(np.float64), y


def _nn_data():
    X, y = make_blobs(n_samples=400, centers=3, n_features=10, random_state=1)
    return X.astype(np.float32), y


APPS = {
    "lda": (lambda: LDA(n_topics=5, epochs=4, workers=1, docs_per_clock=0.25, seed=3),
            lambda: (planted_corpus(num_docs=120, seed=2)[0],),
            lambda m: [m.word_topic_, m.doc_topic_counts_.toarray()]),
    "mf": (lambda: MatrixFactorization(rank=4, epochs=4, workers=1, mode="ssp",
                                       clocks_per_epoch=3, seed=3),
           lambda: (_ratings(),), lambda m: [m.P_, m.Q_]),
    "linear": (lambda: LinearClassifier(epochs=4, strategy="ps", workers=1,
                                        clocks_per_epoch=3, seed=3),
               _linear_data, lambda m: [m.coef_, m.intercept_]),
    # one clock per epoch here (a clock carries at least CLOCK_WORK multiply-adds)
    "kmeans": (lambda: KMeans(n_clusters=3, epochs=10, batch_size=100, workers=1, seed=3),
               lambda: (make_blobs(n_samples=500, centers=3, random_state=2)[0],),
               lambda m: [m.cluster_centers_]),
}


def _nn_app():
    from stalesync.apps.nn import NeuralNetClassifier

    return (lambda: NeuralNetClassifier(hidden=16, epochs=3, strategy="ps", workers=1,
                                        clocks_per_epoch=3, seed=3),
            _nn_data, lambda m: [m.params_])


def crash_and_resume(app: str, seed: int, tmp_path, monkeypatch) -> dict:
    """One soak run; returns its counts (and raises on a mismatch). A job with no room for a
    crash after a snapshot is counted as skipped (not ``pytest.skip``, which would end a
    soak's loop and skip all of it)."""
    make, data, arrays = _nn_app() if app == "nn" else APPS[app]
    args = data()
    reference = make().fit(*args)
    clocks = reference.run_record_["clocks"]  # run (k-means stops once nothing moves)
    rng = np.random.default_rng([seed, 17])
    every = int(rng.integers(1, max(2, clocks // 3) + 1))
    if clocks <= every + 1:  # no room for a crash after a snapshot
        return {"runs": 1, "kills": 0, "resumes": 0, "mismatches": 0, "skipped": 1}
    crash_at = int(rng.integers(every + 1, clocks))  # after at least one snapshot
    where = tmp_path / f"{app}-{seed}"
    real_clock = WorkerContext.clock

    def crashing_clock(self, *a, **k):
        if self.clock_count == crash_at:
            raise InjectedCrash(f"{app}: worker killed at clock {crash_at}")
        return real_clock(self, *a, **k)

    monkeypatch.setattr(WorkerContext, "clock", crashing_clock)
    with pytest.raises(InjectedCrash):
        make().fit(*args, run=RunConfig(snapshot_every=every, snapshot_dir=str(where)))
    monkeypatch.setattr(WorkerContext, "clock", real_clock)
    resumed = make().fit(*args, run=RunConfig(resume=str(where)))
    start = resumed.run_record_["resumed_from_clock"]
    assert 0 < start <= crash_at and start % every == 0, (start, crash_at, every)
    for got, want in zip(arrays(resumed), arrays(reference), strict=True):
        np.testing.assert_array_equal(got, want, err_msg=f"{app} seed {seed}: crash at "
                                      f"{crash_at}, snapshots every {every}")
    return {"runs": 1, "kills": 1, "resumes": 1, "mismatches": 0, "skipped": 0}


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("app", [*APPS, "nn"])
def test_a_crashed_run_resumes_bit_identical(app, seed, tmp_path, monkeypatch):
    counts = crash_and_resume(app, seed, tmp_path, monkeypatch)
    assert counts["kills"] == counts["resumes"] == 1, (app, seed, counts)


@pytest.mark.soak
@pytest.mark.parametrize("app", [*APPS, "nn"])
def test_soak_crash_and_resume(app, tmp_path, monkeypatch):
    totals = {"runs": 0, "kills": 0, "resumes": 0, "mismatches": 0, "skipped": 0}
    failures = []
    for seed in range(SOAK_RUNS):
        try:
            counts = crash_and_resume(app, seed, tmp_path, monkeypatch)
        except AssertionError as exc:
            counts = {"runs": 1, "kills": 1, "resumes": 1, "mismatches": 1, "skipped": 0}
            failures.append(str(exc).splitlines()[0])
        for key in totals:
            totals[key] += counts[key]
    print(f"\nsoak {app}: {totals}")
    assert not failures, failures[:3]
    assert totals["runs"] == SOAK_RUNS, totals
    assert totals["skipped"] <= SOAK_RUNS // 10, f"{app}: too many runs without a crash {totals}"
    assert totals["kills"] == totals["resumes"] == SOAK_RUNS - totals["skipped"], totals
