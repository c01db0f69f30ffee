"""Neural networks (PyTorch CPU) through every strategy: accuracy on a task with a known
answer, SimuParallelSGD with one worker bit for bit, save/load, options and the CLI."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from compression_promises import promised_bytes  # noqa: E402

from stalesync.apps.nn import NeuralNetClassifier, networks  # noqa: E402
from stalesync.apps.nn.problem import NNProblem, NNSpec  # noqa: E402
from stalesync.cli import main  # noqa: E402
from stalesync.errors import ConfigError  # noqa: E402

SGD64 = {"optimizer": "sgd", "batch_size": 64}  # the plain SGD these tests compare against


def blobs(n=2400, side=12, classes=4, seed=0):
    """Grey ``side x side`` images: one bright square per class at its own place, plus
    noise (a CNN and an MLP both reach ~100%; chance is 25%)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, size=n)
    X = rng.normal(0.0, 0.3, size=(n, side, side)).astype(np.float32)
    for c in range(classes):
        r, q = divmod(c, 2)
        X[y == c, 6 * r:6 * r + 5, 6 * q:6 * q + 5] += 1.0
    return X.reshape(n, -1), y


@pytest.fixture(scope="module")
def data():
    X, y = blobs()
    return X[:1800], y[:1800], X[1800:], y[1800:]


@pytest.fixture(scope="module")
def single_process(data):
    """Test accuracy of plain SGD in one process (one worker, no averaging: tested below
    to be plain SGD) at the epochs and step the strategies get."""
    Xtr, ytr, Xte, yte = data
    model = NeuralNetClassifier(hidden=32, epochs=3, lr=0.1,
                                strategy_options={"average_every": 0}, seed=1, **SGD64)
    return model.fit(Xtr, ytr).score(Xte, yte)


STRATEGIES = [
    ("average", {"workers": 2, "strategy_options": {"average_every": 10}}),
    ("ps", {"workers": 2, "consistency": "ssp", "staleness": 1}),
    ("sync", {"workers": 2, "strategy_options": {"backup_workers": 1}, "lr": 0.1}),
    ("downpour", {"workers": 2, "strategy_options": {"n_push": 2}, "lr": 0.1}),
    ("hogwild", {"workers": 1, "strategy_options": {"threads": 2}}),
]


@pytest.mark.parametrize("strategy,extra", STRATEGIES)
def test_every_strategy_is_within_a_point_of_single_process_sgd(data, single_process,
                                                                  strategy, extra):
    Xtr, ytr, Xte, yte = data
    model = NeuralNetClassifier(hidden=32, epochs=3, strategy=strategy, seed=1,
                                **{"lr": 0.1, **SGD64, **extra})
    model.fit(Xtr, ytr)
    assert single_process >= 0.95  # the task is learnt at all
    assert model.score(Xte, yte) >= single_process - 0.01, strategy
    rec = model.run_record_
    assert rec["strategy"] == strategy and rec["app"] == "nn"
    assert rec["final"]["examples"] >= 3 * len(ytr) * (0.5 if strategy == "sync" else 1)
    assert rec["guarantee"]["violations"] == 0


@pytest.mark.parametrize("strategy,compress,points", [
    ("ps", "topk:0.05", 1), ("ps", "qsgd:4", 1), ("downpour", "sign", 1),
    ("ps", "powersgd:2", 5),  # rank 2 of the 64 x 96 reshaped update delays the most
])
def test_compressed_strategies_stay_close_and_send_less(data, single_process, strategy,
                                                        compress, points):
    Xtr, ytr, Xte, yte = data
    fit = lambda c: NeuralNetClassifier(  # noqa: E731
        hidden=32, epochs=3, lr=0.1, strategy=strategy, workers=2, compress=c,
        seed=1, **SGD64).fit(Xtr, ytr)
    dense, packed = fit("none"), fit(compress)
    assert packed.score(Xte, yte) >= single_process - points / 100, compress
    assert packed.run_record_["bytes_sent"] < 0.6 * dense.run_record_["bytes_sent"]


def test_cnn_learns_and_needs_square_images(data):
    Xtr, ytr, Xte, yte = data
    model = NeuralNetClassifier(arch="cnn", hidden=32, epochs=2, workers=2, seed=0)
    assert model.fit(Xtr, ytr).score(Xte, yte) >= 0.95
    with pytest.raises(ConfigError, match="square images"):
        NeuralNetClassifier(arch="cnn").fit(Xtr[:, :100], ytr)


def test_simuparallel_sgd_with_one_worker_is_plain_sgd(data):
    """``average`` with one worker and one averaging at the end adds nothing to SGD (but
    the table's float32 rounding of ``base + (model - base)``)."""
    Xtr, ytr, _, _ = data
    model = NeuralNetClassifier(hidden=16, epochs=2, strategy="average",
                                strategy_options={"average_every": 0},
                                workers=1, seed=3, **SGD64).fit(Xtr, ytr)
    net = networks.build("mlp", Xtr.shape[1], 4, 16, 3)
    rows = networks.get_flat(net).shape[0]
    spec = NNSpec("mlp", Xtr.shape[1], 4, 16, rows, 0.05, 64, 1, 3)
    order = np.random.default_rng(3).permutation(len(ytr))
    problem = NNProblem(Xtr[order], ytr[order], spec, 1, 0)
    from stalesync.strategies.base import epoch_rng

    class Ctx:
        seed, worker_id = 3, 0

    for epoch in range(2):
        problem._sgd(net, problem.shuffled(epoch_rng(Ctx, epoch)))
    np.testing.assert_allclose(model.params_, networks.get_flat(net), rtol=0, atol=1e-7)


def test_save_load_predicts_the_same(data, tmp_path):
    Xtr, ytr, Xte, _ = data
    labels = np.array(["a", "b", "c", "d"])[ytr]
    model = NeuralNetClassifier(hidden=16, epochs=1).fit(Xtr, labels)
    model.save(tmp_path / "m")
    again = NeuralNetClassifier.load(tmp_path / "m")
    np.testing.assert_array_equal(again.predict(Xte), model.predict(Xte))
    np.testing.assert_allclose(again.predict_proba(Xte).sum(axis=1), 1.0, rtol=1e-5)
    assert set(model.predict(Xte)) <= set("abcd")


@pytest.mark.parametrize("params,match", [
    ({"arch": "resnet"}, "arch"), ({"lr": 0.0}, "lr"), ({"strategy": "gossip"}, "strategy"),
    ({"workers": 0}, "workers"), ({"strategy_options": {"backup_workers": 1}}, "backup_workers"),
    ({"compress": "topk:5"}, "compress"),
])
def test_options_are_checked_before_any_work(data, params, match):
    Xtr, ytr, _, _ = data
    with pytest.raises(ConfigError, match=match):
        NeuralNetClassifier(**params).fit(Xtr, ytr)


def test_nan_input_and_one_class_are_refused(data):
    Xtr, ytr, _, _ = data
    bad = Xtr.copy()
    bad[3, 4] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        NeuralNetClassifier().fit(bad, ytr)
    with pytest.raises(ConfigError, match="1 class"):
        NeuralNetClassifier().fit(Xtr, np.zeros(len(ytr), dtype=int))


def test_cli_trains_and_reports_test_accuracy(data, tmp_path, capsys):
    Xtr, ytr, _, _ = data
    path = tmp_path / "blobs.npz"
    np.savez(path, X=Xtr, y=ytr)
    out = tmp_path / "run.json"
    assert main(["nn", "--data", str(path), "--test-fraction", "0.25", "--epochs", "3",
                 "--hidden", "32", "--workers", "2", "--average-every", "5", "--lr", "0.1",
                 "--metrics-out", str(out),
                 "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "test accuracy" in text
    record = json.loads(out.read_text())
    assert record["app"] == "nn" and record["final"]["test_accuracy"] >= 0.9
    from stalesync.observe.plots import run_panels  # the plot shows the accuracy

    assert "_accuracy_panel" in [p.func.__name__ for p in run_panels(record)]
    with pytest.raises(SystemExit):  # argparse's own choice check
        main(["nn", "--data", str(path), "--model", "resnet", "--no-progress"])
    assert main(["nn", "--data", str(path), "--lr", "0", "--no-progress"]) == 2
    assert "--lr" in capsys.readouterr().err


def test_partial_fit_continues_from_the_current_parameters(data):
    Xtr, ytr, Xte, yte = data
    model = NeuralNetClassifier(hidden=16, seed=0, **SGD64)
    model.partial_fit(Xtr[:200], ytr[:200], classes=[0, 1, 2, 3])
    first, start = model.params_.copy(), model.score(Xte, yte)
    for _ in range(2):  # two more epochs, each from where the last one ended
        model.partial_fit(Xtr, ytr)
    assert not np.array_equal(first, model.params_)
    assert start < 0.7 and model.score(Xte, yte) >= 0.95, start
    with pytest.raises(ConfigError, match="not in classes_"):
        model.partial_fit(Xtr[:10], np.full(10, 7))


def test_allreduce_workers_stay_identical_and_equal_sgd_on_the_joined_batches(data):
    """Two gloo processes: bit-identical parameters on both after training, and the same
    parameters as one process taking SGD steps on each pair of batches joined (the mean of
    the two halves' mean gradients is the joined batch's mean gradient)."""
    from stalesync.apps.nn.allreduce import epoch_order

    Xtr, ytr, Xte, yte = data
    X, y = Xtr[:640], ytr[:640]
    model = NeuralNetClassifier(hidden=16, epochs=2, lr=0.1, batch_size=32,
                                strategy="allreduce", workers=2, seed=4).fit(X, y)
    final = model.run_record_["final"]
    assert final["identical_parameters"] is True
    assert final["examples"] == 2 * 640 and model.run_record_["strategy"] == "allreduce"
    # the same steps in one process
    net = networks.build("mlp", X.shape[1], 4, 16, 4)
    parts = np.array_split(np.random.default_rng(4).permutation(640), 2)
    tx, ty = torch.from_numpy(X), torch.from_numpy(y)
    params = list(net.parameters())
    for epoch in range(2):
        orders = [parts[r][epoch_order(4, r, epoch, len(parts[r]))] for r in range(2)]
        for k in range(10):
            idx = torch.from_numpy(np.concatenate([o[32 * k:32 * (k + 1)] for o in orders]))
            loss = torch.nn.functional.cross_entropy(net(tx[idx]), ty[idx])
            with torch.no_grad():
                for p, g in zip(params, torch.autograd.grad(loss, params), strict=True):
                    p.data.add_(g, alpha=-0.1)
    np.testing.assert_allclose(model.params_, networks.get_flat(net), rtol=0, atol=2e-6)
    assert model.score(Xte, yte) >= 0.9


@pytest.mark.parametrize("strategy,options,param", [
    ("allreduce", {"consistency": "essp"}, "consistency"),
    ("sync", {"staleness": 3}, "staleness"),
    ("downpour", {"consistency": "bsp", "staleness": 0}, "consistency"),
])
def test_a_consistency_the_strategy_would_ignore_is_refused(strategy, options, param):
    X, y = blobs(n=64)
    model = NeuralNetClassifier(hidden=4, epochs=1, strategy=strategy, workers=2, **options)
    with pytest.raises(ConfigError, match=f"{param} .* is ignored: strategy '{strategy}'"
                       ) as caught:
        model.fit(X, y)
    assert caught.value.param == param


def test_a_hogwild_helper_thread_that_raises_fails_the_fit_naming_it(monkeypatch):
    """HOGWILD! threads on one network: a helper thread's exception reaches the caller with
    a note naming the thread (it used to be printed, and the fit succeeded without it)."""
    real = NNProblem._sgd
    calls = []

    def failing(self, net, examples):
        calls.append(threading.current_thread().name)
        if threading.current_thread().name == "hogwild-1":
            raise FloatingPointError("injected in a helper thread")
        return real(self, net, examples)

    monkeypatch.setattr(NNProblem, "_sgd", failing)
    X, y = blobs(n=200)
    with pytest.raises(FloatingPointError, match="injected in a helper thread") as caught:
        NeuralNetClassifier(hidden=8, epochs=2, strategy="hogwild", workers=1,
                            strategy_options={"threads": 2}, seed=0).fit(X, y)
    notes = getattr(caught.value, "__notes__", [])
    assert any("helper thread hogwild-1" in note for note in notes), notes
    assert len(calls) == 2 and "hogwild-1" in calls  # the first epoch's two threads


@pytest.mark.parametrize("compress,points", [
    ("topk:0.05", 1),
    pytest.param("qsgd:4", 1, marks=pytest.mark.slow),  # passed this session: 12.7 s each
    pytest.param("sign", 1, marks=pytest.mark.slow),
    ("powersgd:2", 5),  # as with ps: rank 2 of the reshaped update delays the most
])
def test_compressed_allreduce_stays_close_identical_and_sends_less(data, single_process,
                                                                   compress, points):
    """The encoded gradients are all-gathered and decoded on every worker in rank order:
    the workers stay bit-identical, and error feedback keeps the accuracy."""
    Xtr, ytr, Xte, yte = data
    model = NeuralNetClassifier(hidden=32, epochs=3, lr=0.1, strategy="allreduce",
                                workers=2, compress=compress, seed=1, **SGD64).fit(Xtr, ytr)
    final = model.run_record_["final"]
    assert final["identical_parameters"] is True
    assert model.score(Xte, yte) >= single_process - points / 100, compress
    # measured from the gathered buffers, against float32 gradients: what the scheme's
    # parameters promise for the network's table layout (rows of ROW_WIDTH, zero-padded)
    size = final["parameters"]
    rows = -(-size // networks.ROW_WIDTH)
    promised = 4 * size / promised_bytes(compress, rows, networks.ROW_WIDTH)
    assert final["compression_ratio"] == pytest.approx(promised, rel=0.02), final
    assert final["compress"] == compress


@pytest.mark.ray
def test_allreduce_on_ray_actors_equals_the_local_processes(data, ray_cluster):
    """One Ray actor per worker in the gloo group (rendezvous on rank 0's node): the same
    steps, so the same parameters bit for bit as the local processes (compressed here; the
    dense exchange is the same code path with all_reduce)."""
    Xtr, ytr, _, _ = data
    fit = lambda run: NeuralNetClassifier(  # noqa: E731
        hidden=16, epochs=1, lr=0.1, batch_size=32, strategy="allreduce", workers=2,
        compress="topk:0.05", seed=4).fit(Xtr[:640], ytr[:640], run=run)
    local, on_ray = fit(None), fit({"runtime": "ray"})
    assert on_ray.run_record_["runtime"] == "ray"
    assert on_ray.run_record_["final"]["identical_parameters"] is True
    np.testing.assert_array_equal(on_ray.params_, local.params_)


def test_allreduce_refuses_what_it_cannot_do(data):
    Xtr, ytr, _, _ = data
    with pytest.raises(ConfigError, match="no snapshots"):
        NeuralNetClassifier(strategy="allreduce", workers=2).fit(
            Xtr, ytr, run={"snapshot_every": 5, "snapshot_dir": "unused"})
    with pytest.raises(ConfigError, match="min_nodes does not apply"):  # before Ray starts
        NeuralNetClassifier(strategy="allreduce", workers=2).fit(
            Xtr, ytr, run={"runtime": "ray", "min_nodes": 2})


# -- a user's own module: stalesync.nn.fit ----------------------------------------------------
class TwoHeads(torch.nn.Module):
    """A module that is not a Sequential: a regression net with a skip connection."""

    def __init__(self, d):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(d, 16), torch.nn.Tanh())
        self.head = torch.nn.Linear(16, 1)
        self.skip = torch.nn.Linear(d, 1, bias=False)

    def forward(self, x):
        return (self.head(self.body(x)) + self.skip(x)).squeeze(1)


def regression(n=1200, d=6, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    y = (np.sin(X[:, 0]) + 0.5 * X[:, 1] * X[:, 2] + 0.1 * rng.normal(size=n)).astype(np.float32)
    return X, y


@pytest.mark.parametrize("strategy,extra", [("ps", {"workers": 2}),
                                            ("average", {"workers": 2, "strategy_options":
                                                         {"average_every": 5}}),
                                            ("sync", {"workers": 2, "batch_size": 16}),
                                            ("allreduce", {"workers": 2, "batch_size": 16})])
def test_fit_trains_a_users_module_with_its_own_loss(strategy, extra):
    import stalesync.nn

    X, y = regression()
    torch.manual_seed(0)
    net = TwoHeads(X.shape[1])
    mse = torch.nn.MSELoss()
    with torch.no_grad():
        before = float(mse(net(torch.from_numpy(X)), torch.from_numpy(y)))
    result = stalesync.nn.fit(net, mse, X, y, strategy=strategy, epochs=15, lr=0.05, seed=1,
                              **extra)
    assert result.module is net  # trained in place
    with torch.no_grad():
        after = float(mse(net(torch.from_numpy(X)), torch.from_numpy(y)))
    final = result.run_record["final"]
    assert after == pytest.approx(final["train_loss"], rel=1e-5)
    assert after < 0.35 * before, (before, after)  # the variance of y is ~0.8
    assert final["strategy"] == strategy
    assert final["examples"] >= 15 * len(y) * (0.95 if strategy == "allreduce" else 1)
    assert final["parameters"] == sum(p.numel() for p in net.parameters())


def test_fit_with_class_indices_and_cross_entropy_matches_the_estimator(data):
    """A user's module equal to the built-in MLP, trained by fit, ends where the estimator
    ends: same initial weights, same split, same steps (one worker: deterministic)."""
    import stalesync.nn

    Xtr, ytr, _, _ = data
    est = NeuralNetClassifier(hidden=16, epochs=2, lr=0.1, strategy="ps", workers=1,
                              seed=3, **SGD64).fit(Xtr, ytr)
    net = networks.build("mlp", Xtr.shape[1], 4, 16, 3)
    result = stalesync.nn.fit(net, torch.nn.functional.cross_entropy, Xtr, ytr, strategy="ps",
                              workers=1, epochs=2, lr=0.1, seed=3)
    np.testing.assert_allclose(networks.get_flat(result.module), est.params_, atol=1e-6)


def test_fit_checks_the_module_loss_and_data_before_any_work():
    import stalesync.nn
    from stalesync.errors import DataFormatError

    X, y = regression(n=50)
    net = TwoHeads(X.shape[1])
    with pytest.raises(ConfigError, match="torch.nn.Module"):
        stalesync.nn.fit(lambda x: x, torch.nn.MSELoss(), X, y)
    with pytest.raises(ConfigError, match="do not fit X and y"):
        stalesync.nn.fit(net, torch.nn.MSELoss(), X[:, :3], y)  # wrong width
    with pytest.raises(ConfigError, match="scalar"):
        stalesync.nn.fit(net, lambda out, t: out - t, X, y)
    with pytest.raises(DataFormatError, match="50 examples but y has 49"):
        stalesync.nn.fit(net, torch.nn.MSELoss(), X, y[:49])
    with pytest.raises(ConfigError, match="strategy"):
        stalesync.nn.fit(net, torch.nn.MSELoss(), X, y, strategy="gossip")


def test_default_adam_learns_where_sgd_would_not_and_keeps_its_moments_in_snapshots(
        data, tmp_path):
    """The default local steps are Adam (as MLPClassifier's), refused where workers take no
    local steps; a crash-and-resume run with Adam ends where the uninterrupted one does
    (the moments travel in the snapshot)."""
    from stalesync.apps.base import RunConfig
    from stalesync.apps.nn.model import ChanceWarning

    Xtr, ytr, Xte, yte = data
    opts = dict(hidden=32, strategy="ps", workers=1, clocks_per_epoch=4, seed=2)
    reference = NeuralNetClassifier(**opts).fit(Xtr, ytr)
    assert reference.score(Xte, yte) >= 0.95
    snaps = tmp_path / "snaps"
    NeuralNetClassifier(**opts).fit(Xtr, ytr, run=RunConfig(snapshot_every=3,
                                                             snapshot_dir=str(snaps)))
    from stalesync.persist.snapshot import list_snapshots

    clock, path = list_snapshots(snaps)[0]
    resumed = NeuralNetClassifier(**opts).fit(Xtr, ytr, run=RunConfig(resume=str(path)))
    assert resumed.run_record_["resumed_from_clock"] == clock > 0
    np.testing.assert_array_equal(resumed.params_, reference.params_)
    with pytest.raises(ConfigError, match="optimizer='adam' is for the workers' local"):
        NeuralNetClassifier(strategy="hogwild", optimizer="adam").fit(Xtr, ytr)
    flat = np.zeros_like(Xtr)  # nothing to learn: the fit says so
    with pytest.warns(ChanceWarning, match="no better than always predicting"):
        NeuralNetClassifier(hidden=4, epochs=1, workers=1).fit(flat, ytr)
