"""A seeded BSP job is bit-reproducible with any number of workers, floats included: the
shard applies a clock's increments once every worker has sent them, in worker order
(:class:`stalesync.ps.clock_policies.InWorkerOrder`)."""

from __future__ import annotations

import time

import numpy as np
import pytest

import stalesync as ss


def feedback_worker(ctx: ss.WorkerContext):
    """Each clock adds a float function of what it read, after a pause that differs from
    run to run (``ctx.data``): what a read sees and the order increments are summed in
    both reach the result."""
    pauses = ctx.data
    rng = np.random.default_rng([ctx.seed, ctx.worker_id])
    while ctx.clock_count < ctx.iterations:
        time.sleep(pauses[ctx.clock_count])
        seen = ctx.read("t", np.arange(4))
        delta = np.sin(seen * 1.7 + rng.random((4, 3))) * 0.1 + 1e-9 * rng.random((4, 3))
        ctx.inc("t", np.arange(4), delta)
        ctx.clock()
    return None


def run(consistency: str, timing_seed: int) -> np.ndarray:
    rng = np.random.default_rng(timing_seed)
    pauses = [rng.choice([0.0, 0.0, 0.002, 0.006], size=12) for _ in range(3)]
    result = ss.run(feedback_worker, [ss.TableSpec("t", 4, 3, "float64")], data=pauses,
                    workers=3, shards=2, iterations=12, consistency=consistency, seed=5,
                    staleness=None if consistency == "bsp" else 2)
    return result.tables["t"]


def test_bsp_is_bit_reproducible_whatever_the_timing():
    first = run("bsp", timing_seed=1)
    for timing in (2, 3, 4):
        np.testing.assert_array_equal(run("bsp", timing), first)


@pytest.mark.parametrize("consistency", ["ssp"])
def test_ssp_is_not_held_back(consistency):
    """SSP keeps applying increments on arrival (fresher reads): its runs may differ, and
    the hold applies to BSP jobs only."""
    from stalesync.ps.clock_policies import EveryWorker, InWorkerOrder, make_policy
    from stalesync.ps.consistency import ConsistencyModel
    from stalesync.runtime.members import all_bsp

    bsp, ssp = ConsistencyModel.parse("bsp"), ConsistencyModel.parse(consistency, 2)
    assert isinstance(make_policy(3, 0, all_bsp({"a": bsp, "b": bsp})), InWorkerOrder)
    policy = make_policy(3, 0, all_bsp({"a": bsp, "b": ssp}))
    assert type(policy) is EveryWorker


def test_two_worker_bsp_fits_repeat_exactly():
    """What scikit-learn's idempotence checks ask of a seeded fit, at 2 workers."""
    from lda_fixtures import planted_corpus
    from sklearn.datasets import make_blobs

    from stalesync.apps.kmeans import KMeans
    from stalesync.apps.lda import LDA

    X = make_blobs(n_samples=3000, centers=5, n_features=8, random_state=0)[0]
    bsp = {"workers": 2, "consistency": "bsp", "staleness": None}

    def centres():
        return KMeans(5, epochs=4, batch_size=64, seed=1, **bsp).fit(X).cluster_centers_

    np.testing.assert_array_equal(centres(), centres())
    corpus, _ = planted_corpus(num_docs=200, seed=6)

    def topics():
        return LDA(n_topics=4, epochs=5, seed=2, **bsp).fit(corpus).word_topic_

    np.testing.assert_array_equal(topics(), topics())
