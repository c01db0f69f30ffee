"""Matrix factorization: kernels, every training mode, block-mode conflict freedom, data
readers, estimator API, persistence and the CLI. Small synthetic data only (no network),
except the MovieLens test marked slow."""

from __future__ import annotations

import json
import math
from collections import defaultdict

import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from stalesync.apps.base import RunConfig
from stalesync.apps.mf import MatrixFactorization, NotFittedError, UnknownIdError
from stalesync.apps.mf.blocks import block_data
from stalesync.apps.mf.sgd import Triples
from stalesync.apps.mf.ssp import partition
from stalesync.cli import main
from stalesync.data.ratings import (
    Ratings,
    from_sparse,
    load_ratings,
    read_matrix_market,
    read_ratings,
)
from stalesync.errors import ConfigError, DataFormatError
from stalesync.faults import Stragglers
from stalesync.kernels.csr import compact_columns, compact_taken
from stalesync.kernels.mf import predict, sgd_pass, sum_squared_error
from stalesync.observe.metrics import RECORD_FIELDS

NOISE = 0.2


def synthetic(n_users=400, n_items=300, rank=4, density=0.25, noise=NOISE, seed=0) -> Ratings:
    """Low-rank ratings around 3 plus Gaussian noise of std ``noise``."""
    rng = np.random.default_rng(seed)
    scale = rank**-0.25
    U = rng.normal(0, scale, (n_users, rank))
    V = rng.normal(0, scale, (n_items, rank))
    u, i = np.nonzero(rng.random((n_users, n_items)) < density)
    r = 3 + (U[u] * V[i]).sum(1) + rng.normal(0, noise, u.size)
    return Ratings(u.astype(np.int32), i.astype(np.int32), r.astype(np.float32),
                   np.arange(n_users) + 100, np.arange(n_items) + 5000)


@pytest.fixture(scope="module")
def split():
    return synthetic().split(0.2, seed=1)


FAST = dict(rank=8, epochs=40, lr=0.02, reg=0.02, reg_bias=0.0, lr_decay=0.05, seed=0)


# -- kernels ------------------------------------------------------------------------------
def test_sgd_step_matches_the_update_rule():
    rng = np.random.default_rng(0)
    P = rng.normal(size=(2, 4)).astype(np.float64)
    Q = rng.normal(size=(3, 4)).astype(np.float64)
    P0, Q0 = P.copy(), Q.copy()
    u, i, r = np.array([1], np.int32), np.array([2], np.int32), np.array([4.0])
    mu, lr, reg, rb = 3.0, 0.1, 0.05, 0.01
    sse = sgd_pass(u, i, r, P, Q, mu=mu, lr=lr, reg=reg, reg_bias=rb)
    err = 4.0 - (mu + P0[1, 3] + Q0[2, 3] + P0[1, :3] @ Q0[2, :3])
    assert sse == pytest.approx(err**2)
    np.testing.assert_allclose(P[1, :3], P0[1, :3] + lr * (err * Q0[2, :3] - reg * P0[1, :3]))
    np.testing.assert_allclose(Q[2, :3], Q0[2, :3] + lr * (err * P0[1, :3] - reg * Q0[2, :3]))
    assert P[1, 3] == pytest.approx(P0[1, 3] + lr * (err - rb * P0[1, 3]))
    np.testing.assert_array_equal(P[0], P0[0])  # untouched rows stay put
    pred = predict(u, i, P, Q, mu)
    assert pred[0] == pytest.approx(mu + P[1, 3] + Q[2, 3] + P[1, :3] @ Q[2, :3])
    assert sum_squared_error(u, i, r, P, Q, mu, clip=(1, 5)) == pytest.approx(
        (4.0 - min(pred[0], 5)) ** 2)


# -- convergence in every mode -------------------------------------------------------------
MODES = [
    ("ssp", 1, {}),
    ("ssp", 2, {"consistency": "ssp", "staleness": 2}),
    ("ssp", 2, {"consistency": "bsp", "clocks_per_epoch": 2}),
    ("ssp", 2, {"consistency": "async"}),
    ("blocks", 2, {}),
    ("blocks", 2, {"num_blocks": 4}),
    ("fugue", 2, {}),
]


@pytest.mark.parametrize("mode,workers,extra", MODES)
def test_test_rmse_approaches_the_noise_level(split, mode, workers, extra):
    train, test = split
    model = MatrixFactorization(mode=mode, workers=workers, **FAST, **extra)
    model.fit(train, eval_set=test)
    final = model.run_record_["final"]
    assert final["test_rmse"] < 1.25 * NOISE, final
    assert model.history_[-1]["test_rmse"] < model.history_[0]["test_rmse"]
    assert len(model.history_) == FAST["epochs"]
    assert final["updates"] >= FAST["epochs"] * len(train)
    assert final["ratings_per_s"] > 0
    assert model.rmse(test) == pytest.approx(final["test_rmse"], rel=1e-4)


@pytest.mark.parametrize("mode", ["ssp", "blocks", "fugue"])
def test_each_regulariser_reaches_the_kernel_and_shrinks_only_its_part(split, mode):
    """reg shrinks the factors and not the biases, reg_bias the biases and not the factors
    (a swap or a dropped setting leaves one norm unchanged)."""
    train, _ = split
    opts = {**FAST, "epochs": 8, "workers": 2, "mode": mode}
    if mode == "fugue":  # no timing-dependent extra passes: the runs compare like for like
        opts["max_extra_passes"] = 0
    if mode == "ssp":  # BSP: the three fits see the same interleaving (under SSP the bias
        opts["consistency"] = "bsp"  # fit's factor norm once came out 15% below the free one)

    def norms(reg, reg_bias):
        m = MatrixFactorization(**{**opts, "reg": reg, "reg_bias": reg_bias}).fit(train)
        return (np.linalg.norm(m.P_[:, :-1]) + np.linalg.norm(m.Q_[:, :-1]),
                np.linalg.norm(m.P_[:, -1]) + np.linalg.norm(m.Q_[:, -1]))

    free_f, free_b = norms(0.0, 0.0)
    reg_f, reg_b = norms(0.5, 0.0)
    bias_f, bias_b = norms(0.0, 2.0)
    assert reg_f < 0.8 * free_f and bias_b < 0.8 * free_b, (free_f, reg_f, free_b, bias_b)
    assert reg_b > 0.9 * free_b and bias_f > 0.9 * free_f, (free_b, reg_b, free_f, bias_f)


# -- block mode: workers never share a row in a sub-round ----------------------------------
@pytest.mark.parametrize("mode,workers,blocks", [("blocks", 2, 2), ("blocks", 3, 5),
                                                 ("fugue", 3, 3)])
def test_block_workers_never_update_the_same_row_in_a_sub_round(split, mode, workers, blocks):
    train, _ = split
    model = MatrixFactorization(mode=mode, workers=workers, num_blocks=blocks, **FAST)
    model.fit(train, trace=True)
    by_step = defaultdict(list)
    for entry in model.trace_:
        by_step[(entry["round"], entry["sub_round"])].append(entry)
    assert len(by_step) == FAST["epochs"] * blocks
    for (_, _), entries in by_step.items():
        assert sorted(e["worker"] for e in entries) == list(range(workers))
        users = np.concatenate([e["users"] for e in entries])
        items = np.concatenate([e["items"] for e in entries])
        assert users.size == np.unique(users).size, "two workers updated one user row"
        assert items.size == np.unique(items).size, "two workers updated one item row"
    # and every rating is visited in every round
    touched = {(e["round"], b) for e in model.trace_ for b in e["blocks"]}
    assert len(touched) == FAST["epochs"] * blocks * blocks


def test_blocked_data_puts_each_rating_in_its_users_and_items_block(split):
    train, _ = split
    from stalesync.apps.mf.sgd import Triples

    data = block_data(Triples(train.users, train.items, train.values), train.n_users,
                      train.n_items, 3, seed=0)
    t = data.triples
    assert len(t) == len(train)
    user_orig, item_orig = np.argsort(data.user_new), np.argsort(data.item_new)
    for r in range(3):
        for c in range(3):
            lo, hi = data.span((r, c))
            assert (data.user_block[user_orig[t.users[lo:hi]]] == r).all()
            assert (data.item_block[item_orig[t.items[lo:hi]]] == c).all()
    # blocked ids are contiguous per block: block r's users are one range of rows
    for r in range(3):
        rows = data.user_new[data.user_block == r]
        assert rows.max() - rows.min() + 1 == rows.size
    # the same multiset of (user, item, rating) triples, in original ids
    got = sorted(zip(user_orig[t.users].tolist(), item_orig[t.items].tolist(),
                     t.ratings.tolist(), strict=True))
    want = sorted(zip(train.users.tolist(), train.items.tolist(), train.values.tolist(),
                      strict=True))
    assert got == want
    P = np.arange(train.n_users * 2, dtype=np.float32).reshape(-1, 2)
    Q = np.arange(train.n_items * 2, dtype=np.float32).reshape(-1, 2)
    back = data.to_original(*data.to_blocked(P, Q))
    np.testing.assert_array_equal(back[0], P)
    np.testing.assert_array_equal(back[1], Q)


def test_fugue_does_extra_work_instead_of_waiting_for_a_straggler(split):
    train, test = split
    slow = Stragglers(slow={1: 3.0})
    dsgd = MatrixFactorization(mode="blocks", workers=2, **FAST).fit(
        train, run=RunConfig(stragglers=slow))
    fugue = MatrixFactorization(mode="fugue", workers=2, **FAST).fit(
        train, run=RunConfig(stragglers=slow))
    assert dsgd.run_record_["extra_updates"] == 0
    assert fugue.run_record_["extra_updates"] > 0
    assert fugue.updates_ > dsgd.updates_
    # the extra passes are the fast worker's: the straggler is never told to do more
    extra = fugue.run_record_["worker_extra_updates"]
    assert extra[0] > 0 and extra[1] < 0.2 * extra[0]
    # (DSGD's fast worker idles at the barrier while Fugue's computes; busy-time shares
    # are not asserted: they are timings and flake on a loaded machine, the counts above
    # show the same thing)
    assert fugue.rmse(test) < 1.3 * NOISE


def test_ssp_mode_with_a_straggler_respects_the_staleness_bound(split):
    train, test = split
    model = MatrixFactorization(mode="ssp", workers=2, staleness=1, clocks_per_epoch=2,
                                **FAST).fit(train, eval_set=test,
                                            run=RunConfig(stragglers="1:2.0"))
    assert model.run_record_["observed_staleness"]["max"] <= 2  # s + 1 in clocks
    assert model.run_record_["final"]["test_rmse"] < 1.25 * NOISE


# -- estimator API --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fitted(split):
    train, _ = split
    return MatrixFactorization(mode="blocks", workers=2, **FAST).fit(train)


def test_predict_uses_raw_ids_and_rejects_unknown_ones(fitted, split):
    _, test = split
    raw_u, raw_i = test.user_ids[test.users], test.item_ids[test.items]
    pred = fitted.predict(raw_u, raw_i)
    assert pred.shape == (len(test),)
    np.testing.assert_allclose(fitted.predict(np.column_stack([raw_u, raw_i])), pred)
    assert math.sqrt(np.mean((pred - test.values) ** 2)) < 1.25 * NOISE
    with pytest.raises(UnknownIdError, match="user id"):
        fitted.predict([99999], [5000])
    lenient = MatrixFactorization(**fitted.get_params())
    lenient.set_params(unknown="mean")
    for name in ("P_", "Q_", "mu_", "scale_", "user_ids_", "item_ids_"):
        setattr(lenient, name, getattr(fitted, name))
    item_bias = fitted.Q_[0, -1]
    assert lenient.predict([99999], [5000])[0] == pytest.approx(fitted.mu_ + item_bias, rel=1e-5)


def test_recommend_ranks_unseen_items(fitted, split):
    train, _ = split
    user = int(train.user_ids[0])
    items, scores = fitted.recommend(user, n=5)
    assert len(items) == 5 and np.all(np.diff(scores) <= 0)
    seen = set(train.item_ids[train.items[train.users == 0]].tolist())
    assert not seen & set(items.tolist())
    all_items, _ = fitted.recommend(user, n=10_000, exclude_seen=False)
    assert len(all_items) == train.n_items
    with pytest.raises(UnknownIdError):
        fitted.recommend(-1)


def test_save_load_round_trip(fitted, split, tmp_path):
    _, test = split
    path = tmp_path / "model"
    fitted.save(path)
    loaded = MatrixFactorization.load(path)
    np.testing.assert_array_equal(loaded.predict(test.user_ids[test.users],
                                                 test.item_ids[test.items]),
                                  fitted.predict(test.user_ids[test.users],
                                                 test.item_ids[test.items]))
    assert loaded.get_params()["rank"] == FAST["rank"]
    assert json.loads((path / "model.json").read_text())["estimator"] == "MatrixFactorization"
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "model.json").write_text("not a model")
    with pytest.raises(DataFormatError):
        MatrixFactorization.load(tmp_path / "junk")


def test_input_forms_and_validation(split):
    train, _ = split
    triples = np.column_stack([train.user_ids[train.users], train.item_ids[train.items],
                               train.values])
    one = {**FAST, "epochs": 3, "workers": 1}  # deterministic: the forms must agree
    a = MatrixFactorization(**one).fit(triples)
    b = MatrixFactorization(**one).fit(triples[:, :2], triples[:, 2])
    np.testing.assert_allclose(a.P_, b.P_)
    r2 = 1 - a.rmse(triples) ** 2 / triples[:, 2].var()  # R^2, as scikit-learn regressors
    assert a.score(triples) == pytest.approx(r2, rel=1e-5)
    with pytest.raises(DataFormatError, match="requires y to be passed"):
        MatrixFactorization().fit(triples[:, :2])
    bad = triples.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN"):
        MatrixFactorization().fit(bad)
    with pytest.raises(ConfigError, match="mode"):
        MatrixFactorization(mode="gossip").fit(triples)
    with pytest.raises(ConfigError, match="rank"):
        MatrixFactorization(rank=0).fit(triples)
    with pytest.raises(NotFittedError):
        MatrixFactorization().predict([1], [2])


def test_run_record_has_the_core_schema(split, tmp_path):
    train, test = split
    model = MatrixFactorization(mode="fugue", workers=2, **{**FAST, "epochs": 4}).fit(
        train, eval_set=test)
    record = model.run_record_
    assert set(record) >= set(RECORD_FIELDS)
    assert record["app"] == "mf" and record["epochs"] == 4 and record["strategy"] == "fugue"
    assert record["clocks"] == 4 * 2  # a clock is a sub-round: d = workers = 2 per epoch
    assert {"train_rmse", "test_rmse", "ratings_per_s"} <= set(record["final"])
    assert {r["iteration"] for r in record["records"]} == {0, 1, 2, 3}


@pytest.mark.ray
def test_ssp_mode_on_ray_approaches_the_noise_level(ray_cluster, split):
    """The same SSP program with worker and shard actors in other processes."""
    train, test = split
    model = MatrixFactorization(mode="ssp", workers=2, staleness=2, **FAST)
    model.fit(train, eval_set=test, run=RunConfig(runtime="ray"))
    final = model.run_record_["final"]
    assert model.run_record_["runtime"] == "ray"
    assert final["test_rmse"] < 1.25 * NOISE, final
    assert len(model.history_) == FAST["epochs"]  # worker 0's history came back with it
    assert model.rmse(test) == pytest.approx(final["test_rmse"], rel=1e-4)


def test_ssp_mode_resumes_from_a_snapshot_exactly(split, tmp_path):
    """One worker is deterministic: resuming from the clock-4 snapshot must end with the
    very factors of the uninterrupted run (the snapshot holds the tables exactly)."""
    train, test = split
    opts = {**FAST, "epochs": 8, "workers": 1}
    reference = MatrixFactorization(**opts)
    reference.fit(train, eval_set=test, run=RunConfig(snapshot_every=4,
                                                      snapshot_dir=str(tmp_path)))
    resumed = MatrixFactorization(**opts)
    resumed.fit(train, eval_set=test, run=RunConfig(resume=str(tmp_path / "snap-00000004")))
    assert resumed.run_record_["resumed_from_clock"] == 4
    np.testing.assert_array_equal(resumed.P_, reference.P_)
    np.testing.assert_array_equal(resumed.Q_, reference.Q_)
    assert [h["epoch"] for h in resumed.history_] == [4, 5, 6, 7]


# -- data readers -----------------------------------------------------------------------------
def test_read_ratings_formats(tmp_path):
    csv = tmp_path / "r.csv"
    csv.write_text("userId,movieId,rating,timestamp\n10,7,4.0,1\n2,7,3.5,2\n10,3,1,3\n")
    r = read_ratings(csv)
    assert len(r) == 3 and r.user_ids.tolist() == [2, 10] and r.item_ids.tolist() == [3, 7]
    assert r.user_ids[r.users].tolist() == [10, 2, 10]
    np.testing.assert_allclose(r.values, [4.0, 3.5, 1.0])
    ml1m = tmp_path / "ratings.dat"
    ml1m.write_text("1::1193::5::978300760\n1::661::3::978302109\n")
    assert read_ratings(ml1m).values.tolist() == [5.0, 3.0]
    netflix = tmp_path / "mv_0000001.txt"
    netflix.write_text("1:\n1488844,3,2005-09-06\n822109,5,2005-05-13\n8:\n1488844,4,2005-01-01\n")
    r = read_ratings(netflix)
    assert r.user_ids[r.users].tolist() == [1488844, 822109, 1488844]
    assert r.item_ids[r.items].tolist() == [1, 1, 8] and r.values.tolist() == [3.0, 5.0, 4.0]
    ws = tmp_path / "r.txt"
    ws.write_text("# comment\nalice  matrix 5\nbob   matrix 2\n\n")
    r = read_ratings(ws)
    assert r.user_ids.tolist() == ["alice", "bob"] and r.n_items == 1


def test_read_ratings_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("1\t2\t3\n1\t2\n")
    with pytest.raises(DataFormatError, match=r"bad\.tsv:2: expected"):
        read_ratings(bad)
    bad.write_text("1\t2\t3\n4\t5\tfive\n")
    with pytest.raises(DataFormatError, match=r"bad\.tsv:2: rating 'five'"):
        read_ratings(bad)
    bad.write_text("1\t2\tnan\n")
    with pytest.raises(DataFormatError, match="not a finite number"):
        read_ratings(bad, header=False)
    bad.write_text("# only a comment\n")
    with pytest.raises(DataFormatError, match="no ratings"):
        read_ratings(bad)
    with pytest.raises(DataFormatError, match="not a known dataset"):
        load_ratings(tmp_path / "missing.csv")


def test_matrix_market_and_sparse(tmp_path):
    m = sp.coo_matrix(([5.0, 3.0, 1.0], ([0, 2, 2], [1, 0, 3])), shape=(4, 4))
    path = tmp_path / "r.mtx"
    scipy.io.mmwrite(str(path), m)
    r = read_matrix_market(path)
    assert (r.n_users, r.n_items, len(r)) == (4, 4, 3)
    assert r.user_ids.tolist() == [1, 2, 3, 4]  # 1-based as in the file; row 4 is empty
    assert len(load_ratings(path)) == 3
    s = from_sparse(m.tocsr())
    assert s.user_ids[s.users].tolist() == [0, 2, 2]
    model = MatrixFactorization(rank=2, epochs=2).fit(m.tocsr())
    assert np.isfinite(model.predict([3], [3])).all()  # an empty row still predicts
    (tmp_path / "bad.mtx").write_text("not matrix market\n")
    with pytest.raises(DataFormatError, match="MatrixMarket"):
        read_matrix_market(tmp_path / "bad.mtx")


def test_split_is_seeded_and_disjoint():
    r = synthetic(n_users=50, n_items=40)
    a_train, a_test = r.split(0.25, seed=3)
    b_train, b_test = r.split(0.25, seed=3)
    np.testing.assert_array_equal(a_test.users, b_test.users)
    assert len(a_train) + len(a_test) == len(r)
    assert len(a_test) == round(0.25 * len(r))


# -- CLI ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["ssp", "fugue"])
def test_cli_trains_and_writes_the_run_record(tmp_path, mode, capsys):
    r = synthetic(n_users=300, n_items=200, density=0.3)
    data = tmp_path / "ratings.tsv"
    lines = [f"{u}\t{i}\t{v:.3f}\t0" for u, i, v in
             zip(r.user_ids[r.users], r.item_ids[r.items], r.values, strict=True)]
    data.write_text("user\titem\trating\ttime\n" + "\n".join(lines) + "\n")
    out, png, model = tmp_path / "run.json", tmp_path / "run.png", tmp_path / "m"
    code = main(["mf", "--data", str(data), "--rank", "4", "--epochs", "30", "--lr", "0.03",
                 "--workers", "2", "--mode", mode, "--metrics-out", str(out), "--plot", str(png),
                 "--save-model", str(model), "--no-progress"])
    assert code == 0
    record = json.loads(out.read_text())
    baseline = float(r.values.std())  # predicting the mean
    assert record["final"]["test_rmse"] < 0.5 * baseline and record["data"]["train"] > 0
    from stalesync.observe.plots import run_panels  # the plot shows train and test RMSE

    assert "_rmse_panel" in [p.func.__name__ for p in run_panels(record)]
    assert png.stat().st_size > 0 and model.exists()
    assert "test RMSE" in capsys.readouterr().out


def test_cli_reports_bad_data_in_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("1,2,3\n1,2,x\n")
    assert main(["mf", "--data", str(bad), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "bad.csv:2" in err and "Traceback" not in err


# -- MovieLens 100K (needs the cached download) ---------------------------------------------------
@pytest.mark.slow
def test_movielens_100k_reaches_rmse_below_095():
    from stalesync.data.fetch import DatasetUnavailableError
    from stalesync.data.ratings import load_movielens_100k

    try:
        ratings = load_movielens_100k()
    except DatasetUnavailableError as exc:
        pytest.skip(f"MovieLens 100K unavailable: {exc}")
    assert (ratings.n_users, ratings.n_items, len(ratings)) == (943, 1682, 100_000)
    train, test = ratings.split(0.2, seed=0)
    for mode in ("ssp", "blocks", "fugue"):
        model = MatrixFactorization(rank=32, epochs=20, mode=mode, workers=2, seed=0)
        model.fit(train, eval_set=test)
        assert model.run_record_["final"]["test_rmse"] < 0.95, mode


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-3, 60), min_size=1, max_size=80), st.booleans())
def test_ids_are_compacted_as_np_unique_does(ids, as_float):
    """The O(n) id compaction (whole non-negative ids) and its fallback give exactly
    ``np.unique(..., return_inverse=True)``; the counting sort of the seen items is the
    stable argsort."""
    from stalesync.apps.mf.estimator import dense_ids
    from stalesync.kernels.csr import group_by

    raw = np.array(ids, dtype=np.float64 if as_float else np.int64)
    got, inverse = dense_ids(raw)
    want, want_inverse = np.unique(raw, return_inverse=True)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(inverse, want_inverse)
    order, indptr = group_by(want_inverse, want.size)
    np.testing.assert_array_equal(order, np.argsort(want_inverse, kind="stable"))
    np.testing.assert_array_equal(np.diff(indptr), np.bincount(want_inverse,
                                                               minlength=want.size))


@settings(max_examples=60, derandomize=True, deadline=None)
@given(values=st.lists(st.integers(0, 40), max_size=80), seed=st.integers(0, 2**31))
def test_compaction_of_taken_entries_is_the_sorted_distinct_values_and_their_ranks(values,
                                                                                   seed):
    indices = np.array(values, dtype=np.int32)
    order = np.random.default_rng(seed).permutation(indices.size)[: indices.size // 2 + 1]
    order = order[order < indices.size].astype(np.int64)
    scratch = np.full(41, -1, dtype=np.int64)
    local = np.empty(order.size, dtype=np.int32)
    columns = compact_taken(indices, order, scratch, local)
    np.testing.assert_array_equal(columns, np.unique(indices[order]))
    np.testing.assert_array_equal(columns[local], indices[order])
    assert (scratch == -1).all()  # left for the next chunk
    columns, local = compact_columns(indices, scratch)
    np.testing.assert_array_equal(columns[local], indices)
    assert (scratch == -1).all()


@pytest.mark.parametrize("workers,clocks", [(1, 1), (2, 3), (3, 2)])
def test_partition_deals_every_rating_once_by_user(workers, clocks):
    rng = np.random.default_rng(5)
    n_users = 50
    t = Triples(rng.integers(0, n_users, 3000).astype(np.int32),
                rng.integers(0, 30, 3000).astype(np.int32),
                rng.random(3000).astype(np.float32))
    parts = partition(t, n_users, workers, clocks, seed=0)
    assert len(parts) == workers and all(len(p) == clocks for p in parts)
    seen, owners = [], {}
    for w, chunks in enumerate(parts):
        for c in chunks:
            users, items = c.user_rows[c.users], c.item_rows[c.items]
            seen += list(zip(users.tolist(), items.tolist(), c.ratings.tolist(), strict=True))
            for u in np.unique(users):
                assert owners.setdefault(int(u), w) == w  # each user has one writer
    expected = zip(t.users.tolist(), t.items.tolist(), t.ratings.tolist(), strict=True)
    assert sorted(seen) == sorted(expected)
