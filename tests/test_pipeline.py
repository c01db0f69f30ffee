"""``strategy="pipeline"``: a Sequential cut into stages on gloo ranks. Its steps must be the
steps one process takes on the same batches, for every schedule and micro-batch count."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from stalesync.apps.nn import NeuralNetClassifier  # noqa: E402
from stalesync.errors import ConfigError  # noqa: E402
from stalesync.persist.snapshot import list_snapshots  # noqa: E402
from stalesync.strategies import pipeline  # noqa: E402

F = torch.nn.functional


def network(seed: int = 0):
    torch.manual_seed(seed)
    nn = torch.nn
    return nn.Sequential(nn.Linear(10, 16), nn.Tanh(), nn.Linear(16, 16), nn.ReLU(),
                         nn.Linear(16, 12), nn.Tanh(), nn.Linear(12, 3))


def flat(net) -> np.ndarray:
    return torch.nn.utils.parameters_to_vector(net.parameters()).detach().numpy().copy()


def examples(n: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 10)).astype(np.float32)
    return X, (X[:, 0] + X[:, 1] > 0).astype(np.int64) + (X[:, 2] > 1)


def one_process(X, y, *, optimizer, lr, batch_size, epochs, seed, replicas=1):
    """The steps the pipeline promises, taken in one process: each step on the replicas'
    batches joined (one replica: its batch)."""
    net = network()
    opt = (torch.optim.Adam(net.parameters(), lr=lr, fused=True) if optimizer == "adam"
           else torch.optim.SGD(net.parameters(), lr=lr))  # the pipeline's Adam is fused
    shares = np.array_split(np.random.default_rng(seed).permutation(len(y)), replicas)
    steps = min(map(len, shares)) // batch_size
    for epoch in range(epochs):
        orders = [s[pipeline.epoch_order(seed, r, epoch, len(s))]
                  for r, s in enumerate(shares)]
        for k in range(steps):
            opt.zero_grad()
            loss = sum(F.cross_entropy(net(torch.from_numpy(X[o[k * batch_size:
                                                               (k + 1) * batch_size]])),
                                       torch.from_numpy(y[o[k * batch_size:
                                                            (k + 1) * batch_size]]))
                       for o in orders) / replicas
            loss.backward()
            opt.step()
    return flat(net)


def pipelined(X, y, *, optimizer="sgd", lr=1.0, batch_size=12, epochs=1, seed=3, **options):
    return pipeline.fit(network, flat(network()), X, y, F.cross_entropy,
                        optimizer=optimizer, lr=lr, batch_size=batch_size, epochs=epochs,
                        seed=seed, options=pipeline.PipelineOptions(**options))


# -- cutting the network --------------------------------------------------------------------
def brute_force(costs, trainable, stages):
    n, best = len(costs), None
    for cuts in itertools.combinations(range(1, n), stages - 1):
        edges = (0, *cuts, n)
        parts = list(zip(edges, edges[1:], strict=False))
        if not all(any(trainable[a:b]) for a, b in parts):
            continue
        slowest = max(sum(costs[a:b]) for a, b in parts)
        best = slowest if best is None else min(best, slowest)
    return best


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 50), st.booleans()), min_size=2, max_size=9),
       st.integers(2, 4))
def test_balanced_cuts_make_the_slowest_stage_as_fast_as_any_cut_can(layers, stages):
    costs = [float(c) for c, _ in layers]
    trainable = [t for _, t in layers]
    if sum(trainable) < stages:
        with pytest.raises(ConfigError, match="cannot be cut into"):
            pipeline.balanced_cuts(costs, trainable, stages)
        return
    cuts = pipeline.balanced_cuts(costs, trainable, stages)
    pipeline.check_cuts(cuts, trainable)  # increasing, every stage has parameters
    edges = (0, *cuts, len(costs))
    slowest = max(sum(costs[a:b]) for a, b in zip(edges, edges[1:], strict=False))
    assert slowest == brute_force(costs, trainable, stages)


def test_a_layout_cuts_where_the_measured_time_is_even():
    """Two layers of ~20 ms each among layers of microseconds: a busy machine's time slices
    (a few ms, and the median of three timings) cannot make the cut put them together."""
    nn = torch.nn
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 2048), nn.ReLU(), nn.Linear(2048, 2048), nn.ReLU(),
                        nn.Linear(2048, 2048), nn.Linear(2048, 4))
    X = np.zeros((256, 8), dtype=np.float32)  # batch 256: micro-batches of 64 by default
    plan = pipeline.plan_layout(net, X, 256, pipeline.PipelineOptions())
    assert plan.layout.cuts in ((3,), (4,))  # the two 2048 x 2048 layers in different stages
    assert plan.layout.boundary_elements == (64 * 2048,)
    assert plan.options.micro_batches == 4 and plan.predicted_s == {}
    declared = pipeline.plan_layout(net, X, 256,
                                    pipeline.PipelineOptions(stages=3, cuts=(2, 5)))
    assert declared.layout.bounds == [(0, 2), (2, 5), (5, None)]


def test_auto_stages_take_the_count_the_prediction_pays_for(monkeypatch):
    """``stages='auto'``: a step's time predicted per stage count from the layer times
    (here fixed, not measured); two stages for layers slow against a message, one for
    layers that are not (and then one micro-batch, the default for one stage)."""
    from stalesync.apps.workers import fewest_that_pay

    net = network()  # 7 children, 4 of them with parameters
    X = np.zeros((48, 10), dtype=np.float32)
    for layer_s, stages in ((0.05, 2), (1e-5, 1)):
        costs = [layer_s, 0.0, layer_s, 0.0, layer_s, 0.0, layer_s]
        monkeypatch.setattr(pipeline, "layer_seconds", lambda module, inputs, c=costs: c)
        plan = pipeline.plan_layout(  # at most 2 stages: the 2 cores the app would allow
            net, X, 48, pipeline.PipelineOptions(stages="auto"),
            lambda predicted: fewest_that_pay({s: t for s, t in predicted.items() if s <= 2}))
        assert plan.options.stages == stages, plan.predicted_s
        assert plan.options.micro_batches == (4 if stages == 2 else 1)
        assert sorted(plan.predicted_s) == [1, 2, 3, 4]
        one = plan.predicted_s[1]
        assert one == pytest.approx(4 * sum(costs))  # one stage runs every micro-batch
        assert plan.predicted_s[2] == pytest.approx(
            5 * (2 * layer_s + pipeline.MESSAGE_S) * pipeline.CONTENTION)


def test_the_classifier_keeps_one_stage_where_a_second_does_not_pay():
    """At its defaults (``workers="auto"``, no stages given) the classifier's small MLP's
    layers take microseconds against a message's milliseconds: one stage, and the record
    says why."""
    X, y = examples(600)
    model = NeuralNetClassifier(hidden=16, epochs=1, strategy="pipeline", seed=0).fit(X, y)
    record = model.run_record_
    assert record["workers"] == 1 and record["final"]["stages"] == 1
    assert record["final"]["micro_batches"] == 1
    decision = record["workers_decision"]
    assert decision["requested"] == "auto" and "does not pay" in decision["reason"]
    assert set(decision["predicted_s"]) >= {"1", "2"}


@pytest.mark.parametrize("options,match", [
    ({"stages": 3, "cuts": (1, 2)}, r"stage 2 \(children 1..1\) has no parameters"),
    ({"stages": 2, "cuts": (7,)}, "must increase strictly"),
    ({"stages": 3, "cuts": (4,)}, "cuts must be 2 layer indices"),
    ({"schedule": "zigzag"}, "schedule must be one of"),
    ({"stages": 5}, "cannot be cut into 5 stages"),
])
def test_a_cut_that_cannot_work_is_refused_before_any_rank_starts(options, match):
    X, y = examples(24)
    with pytest.raises(ConfigError, match=match):
        pipelined(X, y, **options)


def test_a_module_that_is_not_sequential_is_refused():
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Linear(10, 3)

        def forward(self, x):
            return self.a(x)

    X, y = examples(24)
    with pytest.raises(ConfigError, match="cuts a torch.nn.Sequential"):
        pipeline.fit(Net, flat(Net()), X, y, F.cross_entropy, optimizer="sgd", lr=0.1,
                     batch_size=12, epochs=1, seed=0, options=pipeline.PipelineOptions())


# -- the steps equal one process's ---------------------------------------------------------
GRADIENT_CASES = [(2, "gpipe", 4), (3, "1f1b", 3)]
SLOW_CASES = [(s, sched, m) for s in (2, 3) for sched in pipeline.SCHEDULES
              for m in (1, 2, 3, 4, 6, 12) if (s, sched, m) not in GRADIENT_CASES]


@pytest.mark.parametrize("stages,schedule,micro_batches", [
    *GRADIENT_CASES,
    *(pytest.param(*case, marks=pytest.mark.slow) for case in SLOW_CASES)])
def test_one_pipelined_step_takes_the_gradient_one_process_takes(stages, schedule,
                                                                 micro_batches):
    """One SGD step with lr 1 from the same start: the change is minus the gradient of the
    batch's mean loss, which must be the single process's (float tolerance)."""
    X, y = examples(12)
    start = flat(network())
    done = pipelined(X, y, stages=stages, schedule=schedule, micro_batches=micro_batches)
    expected = start - one_process(X, y, optimizer="sgd", lr=1.0, batch_size=12, epochs=1,
                                   seed=3)
    got = start - done.params
    assert np.abs(expected).max() > 1e-3  # a real gradient
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert done.steps == 1 and len(done.layout.cuts) == stages - 1
    assert sum(done.stage_parameters) == start.size


@pytest.mark.parametrize("micro_batches", [1, 4])
def test_one_stage_takes_the_steps_one_process_takes(micro_batches):
    """One stage, with one micro-batch or several: Adam over two epochs ends where one
    process does."""
    X, y = examples(48)
    done = pipelined(X, y, optimizer="adam", lr=0.01, batch_size=12, epochs=2, stages=1,
                     micro_batches=micro_batches)
    expected = one_process(X, y, optimizer="adam", lr=0.01, batch_size=12, epochs=2, seed=3)
    assert np.abs(expected - flat(network())).max() > 1e-3  # it trained
    np.testing.assert_allclose(done.params, expected, rtol=1e-5, atol=1e-6)
    assert done.steps == 8 and len(done.losses) == 2


def test_adam_over_epochs_with_replicas_equals_one_process_on_the_joined_batches():
    """2 replicas x 2 stages, Adam, 3 epochs: every replica ends bit-identical and equal to
    one process stepping on both replicas' batches joined."""
    X, y = examples(96)
    done = pipelined(X, y, optimizer="adam", lr=0.01, batch_size=8, epochs=3, stages=2,
                     micro_batches=2, replicas=2)
    assert done.identical and done.steps == 3 * 6 and done.examples == 3 * 6 * 8 * 2
    expected = one_process(X, y, optimizer="adam", lr=0.01, batch_size=8, epochs=3, seed=3,
                           replicas=2)
    np.testing.assert_allclose(done.params, expected, rtol=1e-4, atol=1e-5)
    assert len(done.losses) == 3 and done.losses[-1] < done.losses[0]


class Exploding(torch.nn.Module):
    """Raises in a rank's forward (not in the layer timing the caller does first)."""

    def forward(self, x):
        import torch.distributed as dist

        if dist.is_initialized() and dist.get_rank() == 1:
            raise FloatingPointError("injected in the second stage")
        return x


def exploding_network():
    nn = torch.nn
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 8), Exploding(),
                         nn.Linear(8, 3))


def test_a_stage_that_raises_stops_the_job_with_its_error():
    factory = exploding_network
    X, y = examples(48)
    with pytest.raises(FloatingPointError, match="injected in the second stage") as caught:
        pipeline.fit(factory, flat(factory()), X, y, F.cross_entropy, optimizer="sgd",
                     lr=0.1, batch_size=12, epochs=2, seed=0,
                     options=pipeline.PipelineOptions(cuts=(2,)))
    assert any("pipeline stage 1 (rank 1)" in n for n in caught.value.__notes__)


def test_a_resumed_pipelined_run_ends_where_an_uninterrupted_one_does(tmp_path, monkeypatch):
    X, y = examples(96)
    kw = dict(optimizer="adam", lr=0.01, batch_size=8, epochs=2, stages=2, micro_batches=4)
    whole = pipelined(X, y, **kw)
    snapped = pipeline.fit(network, flat(network()), X, y, F.cross_entropy,
                           optimizer="adam", lr=0.01, batch_size=8, epochs=2, seed=3,
                           options=pipeline.PipelineOptions(micro_batches=4),
                           snapshot_every=5, snapshot_dir=str(tmp_path))
    np.testing.assert_array_equal(snapped.params, whole.params)  # snapshots change nothing
    kept = list_snapshots(tmp_path)
    assert [c for c, _ in kept] == [15, 20]  # every 5 steps of 24, the newest two kept
    # Layer times are measured again on resume; they must not move the cuts the snapshot has.
    skewed = [0.0] * 6 + [1.0]
    monkeypatch.setattr(pipeline, "layer_seconds", lambda module, inputs: skewed)
    assert pipeline.balanced_cuts(skewed, [True, False] * 3 + [True], 2) != snapped.layout.cuts
    resumed = pipeline.fit(network, flat(network()), X, y, F.cross_entropy,
                           optimizer="adam", lr=0.01, batch_size=8, epochs=2, seed=3,
                           options=pipeline.PipelineOptions(micro_batches=4),
                           resume=str(kept[0][1]))
    assert resumed.layout.cuts == snapped.layout.cuts
    np.testing.assert_array_equal(resumed.params, whole.params)
    assert resumed.losses[-1] == pytest.approx(whole.losses[-1])
    auto = pipeline.fit(network, flat(network()), X, y, F.cross_entropy, optimizer="adam",
                        lr=0.01, batch_size=8, epochs=2, seed=3,
                        options=pipeline.PipelineOptions(stages="auto", micro_batches=4),
                        resume=str(kept[0][1]), choose_stages=lambda predicted: 1)
    assert auto.options.stages == 2  # stages='auto' resumes with the snapshot's count
    np.testing.assert_array_equal(auto.params, whole.params)
    with pytest.raises(Exception, match="not of this pipelined job: it has batch_size 8"):
        pipeline.fit(network, flat(network()), X, y, F.cross_entropy, optimizer="adam",
                     lr=0.01, batch_size=12, epochs=2, seed=3,
                     options=pipeline.PipelineOptions(micro_batches=4),
                     resume=str(kept[0][1]))


# -- the estimator ---------------------------------------------------------------------------
def test_the_classifier_trains_pipelined_and_says_how():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 900)
    X = (rng.normal(size=(900, 20)) + 2.0 * np.eye(3, 20)[y]).astype(np.float32)
    model = NeuralNetClassifier(hidden=32, epochs=6, strategy="pipeline",
                                strategy_options={"stages": 2, "micro_batches": 4},
                                batch_size=20, seed=2).fit(X[:600], y[:600])
    record = model.run_record_
    final = record["final"]
    assert record["strategy"] == "pipeline" and record["workers"] == 2
    assert final["stages"] == 2 and final["micro_batches"] == 4 and final["steps"] == 180
    assert final["parameters"] == sum(final["stage_parameters"])
    assert final["bytes_sent"] > 0 and "micro-batches" in record["guarantee"]["promise"]
    assert model.score(X[600:], y[600:]) >= 0.75  # one process, Adam, the same: 0.80


@pytest.mark.parametrize("kwargs,match", [
    ({"workers": 3}, "stages x replicas = 2 workers; got workers=3"),
    ({"compress": "topk:0.1"}, "sends activations"),
    ({"clocks_per_epoch": 4}, "has no clocks"),
    ({"batch_size": 30, "strategy_options": {"micro_batches": 4}}, "must divide batch_size"),
    ({"strategy_options": {"stage": 2}}, "'stage' is not an option of strategy 'pipeline'"),
    ({"consistency": "async"}, "is ignored: strategy 'pipeline'"),
])
def test_the_classifier_refuses_what_a_pipeline_cannot_honour(kwargs, match):
    X, y = examples(120)
    model = NeuralNetClassifier(hidden=8, epochs=1, **{"strategy": "pipeline", **kwargs})
    with pytest.raises(ConfigError, match=match):
        model.fit(X, y)


def test_a_pipeline_option_given_to_another_strategy_is_refused_naming_pipeline():
    X, y = examples(120)
    with pytest.raises(ConfigError, match="'stages' is an option of strategy 'pipeline'"):
        NeuralNetClassifier(strategy="average", strategy_options={"stages": 2}).fit(X, y)


@pytest.mark.ray
def test_pipeline_stages_on_ray_actors_equal_the_local_processes(ray_cluster):
    X, y = examples(48)
    fit = lambda run: NeuralNetClassifier(  # noqa: E731
        hidden=8, epochs=2, batch_size=12, strategy="pipeline", optimizer="sgd", lr=0.1,
        strategy_options={"micro_batches": 3}, seed=1).fit(X, y, run=run)
    local, on_ray = fit(None), fit({"runtime": "ray"})
    assert on_ray.run_record_["runtime"] == "ray"
    np.testing.assert_array_equal(on_ray.params_, local.params_)
