"""Vertex programs (GraphLab): answers equal networkx / closed forms, the consistency
models hold over recorded runs, the dynamic engine does less work for the same fixed point,
and bad input is one clear error."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stalesync.apps.base import RunConfig
from stalesync.apps.graph import ConnectedComponents, Graph, LabelPropagation, PageRank
from stalesync.apps.graph.engine import CONSISTENCY, run_engine
from stalesync.apps.graph.graph import read_edge_list
from stalesync.apps.graph.programs import PageRank as PageRankProgram
from stalesync.cli import main
from stalesync.errors import ConfigError, DataFormatError
from stalesync.kernels import graph as kg

HYPOTHESIS = settings(max_examples=25, deadline=None,
                      suppress_health_check=[HealthCheck.too_slow])


@st.composite
def graphs(draw, max_vertices: int = 30):
    n = draw(st.integers(1, max_vertices))
    m = draw(st.integers(0, 4 * n))
    src = np.array(draw(st.lists(st.integers(0, n - 1), min_size=m, max_size=m)), dtype=int)
    dst = np.array(draw(st.lists(st.integers(0, n - 1), min_size=m, max_size=m)), dtype=int)
    weighted = draw(st.booleans())
    w = (np.array(draw(st.lists(st.floats(0.1, 5.0), min_size=m, max_size=m)))
         if weighted else None)
    return n, src, dst, w


def to_networkx(n, src, dst, w, directed=True):
    G = nx.DiGraph() if directed else nx.Graph()
    G.add_nodes_from(range(n))
    for i, (a, b) in enumerate(zip(src.tolist(), dst.tolist(), strict=True)):
        weight = 1.0 if w is None else float(w[i])
        if G.has_edge(a, b):  # parallel edges: weights add, as in stalesync's Graph
            G[a][b]["weight"] += weight
        else:
            G.add_edge(a, b, weight=weight)
    return G


@HYPOTHESIS
@given(graphs(), st.sampled_from(["sync", "dynamic"]), st.integers(1, 2), st.booleans())
def test_pagerank_equals_networkx(g, engine, workers, personalised):
    n, src, dst, w = g
    rng = np.random.default_rng(n)
    p = rng.random(n) + 0.1 if personalised else None
    model = PageRank(engine=engine, workers=min(workers, n), tol=1e-13,
                     personalization=p).fit(Graph.from_edges(src, dst, w, num_vertices=n))
    G = to_networkx(n, src, dst, w)
    ref = nx.pagerank(G, tol=1e-15, max_iter=100_000,
                      personalization=None if p is None else dict(enumerate(p)))
    expected = np.array([ref[i] for i in range(n)])
    assert model.converged_
    assert np.abs(model.scores_ - expected).sum() < 1e-8
    assert model.scores_.sum() == pytest.approx(1.0, abs=1e-12)


def canonical(labels: np.ndarray) -> np.ndarray:
    """Component labels renumbered by each component's first vertex."""
    _, first = np.unique(labels, return_index=True)
    rank = np.empty(first.size, dtype=int)
    rank[np.argsort(first)] = np.arange(first.size)
    return rank[np.unique(labels, return_inverse=True)[1]]


@HYPOTHESIS
@given(graphs(), st.sampled_from(["sync", "dynamic"]),
       st.sampled_from(list(CONSISTENCY)), st.integers(1, 2))
def test_components_equal_networkx(g, engine, consistency, workers):
    n, src, dst, _ = g
    graph = Graph.from_edges(src, dst, num_vertices=n)
    model = ConnectedComponents(engine=engine, consistency=consistency,
                                workers=min(workers, n)).fit(graph)
    expected = np.empty(n, dtype=int)
    for k, comp in enumerate(nx.connected_components(to_networkx(n, src, dst, None, False))):
        expected[list(comp)] = k
    assert model.n_components_ == expected.max() + 1
    np.testing.assert_array_equal(canonical(model.labels_), canonical(expected))


def random_graph(n=300, m=1500, seed=0, directed=True):
    G = nx.gnm_random_graph(n, m, seed=seed, directed=directed)
    src, dst = (np.array(x) for x in zip(*G.edges(), strict=True))
    return Graph.from_edges(src, dst, num_vertices=n)


@pytest.mark.parametrize("consistency,hops", [("edge", 1), ("full", 2)])
def test_no_two_vertices_within_the_models_distance_run_in_one_round(consistency, hops):
    graph = random_graph()
    result = run_engine(graph, PageRankProgram(), engine="dynamic", consistency=consistency,
                        tol=1e-12, workers=2, trace=True)
    assert result.converged and len(result.trace) == result.rounds
    indptr, nbr = graph.neighbours()
    ptr = np.r_[0, np.cumsum([r.size for r in result.trace])]
    assert kg.conflicts(indptr, nbr, ptr, np.concatenate(result.trace), hops) == 0
    # the check is not vacuous: vertex consistency runs neighbours together
    loose = run_engine(graph, PageRankProgram(), engine="dynamic", consistency="vertex",
                       tol=1e-12, workers=2, trace=True)
    ptr = np.r_[0, np.cumsum([r.size for r in loose.trace])]
    assert kg.conflicts(indptr, nbr, ptr, np.concatenate(loose.trace), hops) > 0


def test_dynamic_pagerank_reaches_the_same_fixed_point_with_fewer_updates():
    graph = random_graph(2000, 12000, seed=3)
    sync = PageRank(engine="sync", workers=2, tol=1e-12).fit(graph)
    dynamic = PageRank(engine="dynamic", workers=2, tol=1e-12).fit(graph)
    assert np.abs(sync.scores_ - dynamic.scores_).sum() < 1e-8
    assert dynamic.n_updates_ < 0.7 * sync.n_updates_, (dynamic.n_updates_, sync.n_updates_)
    assert sync.n_updates_ == sync.n_rounds_ * graph.num_vertices  # every vertex, every round


@pytest.mark.parametrize("engine", ["sync", "dynamic"])
def test_results_do_not_depend_on_the_number_of_workers(engine):
    graph = random_graph(500, 4000, seed=4)
    runs = [run_engine(graph, PageRankProgram(), engine=engine, tol=1e-12, workers=w)
            for w in (1, 3)]
    np.testing.assert_array_equal(runs[0].values, runs[1].values)
    assert runs[0].updates == runs[1].updates


def test_label_propagation_equals_the_harmonic_solution():
    graph = random_graph(200, 800, seed=5, directed=False)
    rng = np.random.default_rng(5)
    y = np.full(200, -1)
    known = rng.choice(200, 30, replace=False)
    y[known] = rng.integers(0, 3, 30) * 10  # classes 0, 10, 20
    model = LabelPropagation(tol=1e-12, workers=2).fit(graph, y)
    W = graph.undirected().adjacency()
    deg = np.asarray(W.sum(axis=1)).ravel()
    P = sp.diags(1 / np.where(deg > 0, deg, 1)) @ W
    unknown = np.flatnonzero(y < 0)
    classes = np.unique(y[known])
    Y = (y[known][:, None] == classes[None, :]).astype(float)
    A = sp.eye(unknown.size) - P[unknown][:, unknown]
    F = sp.linalg.spsolve(A.tocsc(), P[unknown][:, known] @ Y)
    reached = F.sum(axis=1) > 1e-9
    expected = F[reached] / F[reached].sum(axis=1, keepdims=True)
    np.testing.assert_allclose(model.label_distributions_[unknown[reached]], expected,
                               atol=1e-8)
    np.testing.assert_array_equal(model.labels_[known], y[known])
    assert set(np.unique(model.labels_)) <= {-1, 0, 10, 20}
    assert (model.labels_[unknown[~reached]] == -1).all()


def test_a_failing_program_stops_the_run_with_its_error():
    class Broken(PageRankProgram):
        def gather(self, part, values, local):
            if part.lo > 0:
                raise RuntimeError("gather failed on a later shard")
            return super().gather(part, values, local)

    with pytest.raises(RuntimeError, match="gather failed"):
        run_engine(random_graph(), Broken(), engine="sync", workers=2)


def test_the_run_record_says_what_ran():
    model = PageRank(engine="dynamic", workers=2, tol=1e-10).fit(random_graph())
    record = model.run_record_
    assert record["app"] == "graph" and record["strategy"] == "vertex-dynamic"
    assert record["workers"] == 2 and record["consistency"] == "edge"
    assert "adjacent" in record["guarantee"]["promise"]
    final = record["final"]
    assert final["vertex_updates"] == model.n_updates_ and final["colours"] >= 2
    assert final["converged"] and final["score_sum"] == pytest.approx(1.0)


@pytest.mark.parametrize("kwargs,param", [
    ({"damping": 1.0}, "damping"), ({"tol": 0.0}, "tol"), ({"engine": "async"}, "engine"),
    ({"consistency": "strict"}, "consistency"), ({"max_rounds": 0}, "max_rounds"),
    ({"workers": 301}, "workers"),
])
def test_bad_parameters_are_refused_by_name(kwargs, param):
    with pytest.raises(ConfigError) as err:
        PageRank(**kwargs).fit(random_graph())
    assert err.value.param == param


def test_bad_personalization_and_labels_are_refused():
    with pytest.raises(ConfigError, match="personalization"):
        PageRank(personalization=np.zeros(300)).fit(random_graph())
    with pytest.raises(ConfigError, match="labels no vertex"):
        LabelPropagation().fit(random_graph(), np.full(300, -1))
    with pytest.raises(ConfigError, match="one label per vertex"):
        LabelPropagation().fit(random_graph(), np.zeros(3, dtype=int))
    with pytest.raises(ConfigError, match="snapshots"):
        PageRank().fit(random_graph(), run=RunConfig(snapshot_every=2, snapshot_dir="x"))


@pytest.mark.parametrize("text,message", [
    ("0 1\n1 2 3 4\n", ":2: expected 'src dst [weight]'"),
    ("0 1 1.0\n1 2\n", ":2: 2 fields, but earlier lines have 3"),
    ("0 1 x\n", ":1: weight 'x' is not a number"),
    ("0 1 -1\n", ":1: weight -1 must be finite and >= 0"),
    ("# only a comment\n", ": no edges"),
])
def test_a_malformed_edge_list_names_the_file_and_line(tmp_path, text, message):
    path = tmp_path / "edges.txt"
    path.write_text(text)
    with pytest.raises(DataFormatError) as err:
        read_edge_list(path)
    assert str(err.value).startswith(str(path)) and message in str(err.value)


def test_edge_lists_with_names_weights_and_comments(tmp_path):
    path = tmp_path / "edges.csv"
    path.write_text("% a comment\nb,a,2\na,c,1  # trailing comment\nc,b,0.5\n")
    graph = read_edge_list(path)
    assert graph.names.tolist() == ["a", "b", "c"]
    np.testing.assert_array_equal(graph.adjacency().toarray(),
                                  [[0, 0, 1], [2, 0, 0], [0, 0.5, 0]])


def test_the_command_runs_each_program_and_writes_its_results(tmp_path, capsys):
    edges = tmp_path / "e.txt"
    edges.write_text("a b\nb c\nc a\nd e\n")
    labels = tmp_path / "l.txt"
    labels.write_text("a 0\nd 1\n")
    out = tmp_path / "out.csv"
    assert main(["graph", "--data", str(edges), "--program", "labels", "--labels",
                 str(labels), "--out", str(out), "--no-progress"]) == 0
    assert out.read_text().splitlines() == ["vertex,value", "a,0", "b,0", "c,0", "d,1",
                                            "e,1"]
    assert main(["graph", "--data", str(edges), "--program", "components",
                 "--no-progress"]) == 0
    assert "2 components, the largest of 3 vertices" in capsys.readouterr().out
    assert main(["graph", "--data", str(edges), "--personalize", "d", "--top", "2",
                 "--out", str(out), "--no-progress"]) == 0
    scores = dict(line.split(",") for line in out.read_text().splitlines()[1:])
    # d -> e, e dangling: x_d = 0.15 + 0.85 x_e, x_e = 0.85 x_d
    assert float(scores["a"]) == 0.0
    assert float(scores["d"]) == pytest.approx(0.15 / (1 - 0.85**2), abs=1e-9)
    assert float(scores["e"]) == pytest.approx(0.85 * 0.15 / (1 - 0.85**2), abs=1e-9)


def test_the_command_runs_als_on_a_ratings_file(tmp_path, capsys):
    data = planted_ratings(users=30, items=20, seed=3)
    path = tmp_path / "ratings.txt"
    path.write_text("".join(f"{u} {i} {r:.4f}\n" for u, i, r in
                            zip(data.users, data.items, data.values, strict=True)))
    assert main(["graph", "--data", str(path), "--program", "als", "--rank", "3",
                 "--epochs", "15", "--no-progress", "--save-model", str(tmp_path / "m")]) == 0
    out = capsys.readouterr().out
    assert "30 users, 20 items" in out and "rank 3, 30 rounds (dynamic)" in out
    rmse = float(out.split("train RMSE ")[1].split(",")[0])
    assert rmse < 0.3  # planted rank 3 (the ratings spread ~1.7), noise 0.05, reg 0.1


@pytest.mark.parametrize("args,message", [
    (["--program", "labels"], "--program labels needs --labels"),
    (["--program", "als", "--out", "x.csv"], "als has factors"),
    (["--rank", "3"], "--rank and --reg are for --program als"),
    (["--tol", "1e-3", "--program", "components"], "--tol does not apply"),
    (["--personalize", "zz"], "--personalize: no vertex named 'zz'"),
    (["--snapshot-every", "2", "--snapshot-dir", "s"], "take no snapshots"),
])
def test_the_command_refuses_bad_options_in_one_line(tmp_path, capsys, args, message):
    edges = tmp_path / "e.txt"
    edges.write_text("a b\nb c\n")
    assert main(["graph", "--data", str(edges), *args, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


@pytest.mark.ray
@pytest.mark.parametrize("engine", ["sync", "dynamic"])
def test_pagerank_on_ray_equals_the_embedded_run(ray_cluster, engine):
    graph = random_graph(400, 3000, seed=6)
    embedded = PageRank(engine=engine, workers=2, tol=1e-12).fit(graph)
    on_ray = PageRank(engine=engine, workers=2, tol=1e-12).fit(
        graph, run=RunConfig(runtime="ray"))
    assert on_ray.run_record_["runtime"] == "ray"
    np.testing.assert_array_equal(on_ray.scores_, embedded.scores_)
    assert on_ray.n_updates_ == embedded.n_updates_


def test_several_supersteps_per_hand_off_equal_one_per_hand_off(monkeypatch):
    """The embedded sync engine runs up to SUPERSTEPS_PER_ROUND supersteps per scheduler
    round, the workers meeting at a barrier of their own: the same values, bit for bit,
    and the same stopping superstep as one superstep per round."""
    from stalesync.apps.graph import engine

    graph = random_graph(800, 6000, seed=7)
    many = run_engine(graph, PageRankProgram(), engine="sync", tol=1e-12, workers=2)
    monkeypatch.setattr(engine, "SUPERSTEPS_PER_ROUND", 1)
    one = run_engine(graph, PageRankProgram(), engine="sync", tol=1e-12, workers=2)
    np.testing.assert_array_equal(many.values, one.values)
    assert many.rounds == one.rounds and many.updates == one.updates
    assert many.converged and one.converged


@pytest.mark.parametrize("engine", ["sync", "dynamic"])
def test_max_rounds_bounds_the_run(engine):
    model = PageRank(engine=engine, max_rounds=5, workers=2, tol=1e-14).fit(random_graph())
    assert model.n_rounds_ == 5 and not model.converged_
    assert not model.run_record_["final"]["converged"]


def planted_ratings(users=60, items=40, rank=3, density=0.5, noise=0.05, seed=0):
    from stalesync.data.ratings import Ratings

    rng = np.random.default_rng(seed)
    P, Q = rng.normal(0, 1, (users, rank)), rng.normal(0, 1, (items, rank))
    mask = rng.random((users, items)) < density
    u, i = np.nonzero(mask)
    values = 3.0 + (P[u] * Q[i]).sum(axis=1) + rng.normal(0, noise, u.size)
    return Ratings(u.astype(np.int32), i.astype(np.int32), values.astype(np.float32),
                   np.arange(users), np.arange(items))


def reference_als(data, rank, reg, sweeps, first_users, seed):
    """Textbook ALS-WR in numpy, from the program's own starting factors."""
    rng = np.random.default_rng(seed)
    F = rng.normal(0.0, 0.1, (data.n_users + data.n_items, rank))
    r = data.values.astype(np.float64)
    mean = float(np.mean(r))
    r = r - mean
    u, i = data.users.astype(int), data.items.astype(int) + data.n_users
    sides = [(u, i), (i, u)] if first_users else [(i, u), (u, i)]
    for _ in range(sweeps):
        for me, other in sides:
            new = F.copy()
            for v in np.unique(me):
                rows = me == v
                G = F[other[rows]]
                A = G.T @ G + reg * rows.sum() * np.eye(rank)
                new[v] = np.linalg.solve(A, G.T @ r[rows])
            F = new
    return F[:data.n_users], F[data.n_users:], mean


def test_als_alternates_users_and_items_as_textbook_als():
    from stalesync.apps.graph import ALS

    data = planted_ratings()
    model = ALS(rank=3, reg=0.1, epochs=4, workers=2).fit(data)
    assert model.run_record_["final"]["colours"] == 2
    degree = np.bincount(np.r_[data.users, data.items + data.n_users])
    first_users = bool(np.argmax(degree) < data.n_users)  # colour 0: the busiest vertex's side
    P, Q, mean = reference_als(data, 3, 0.1, 4, first_users, seed=0)
    np.testing.assert_allclose(model.user_factors_, P, atol=1e-9)
    np.testing.assert_allclose(model.item_factors_, Q, atol=1e-9)
    assert model.mean_ == pytest.approx(mean)


def test_als_recovers_a_planted_low_rank_matrix_on_any_worker_count():
    from stalesync.apps.graph import ALS

    data = planted_ratings(users=200, items=120, rank=3, density=0.3, noise=0.05, seed=1)
    one = ALS(rank=3, reg=0.01, epochs=25, workers=1).fit(data)
    two = ALS(rank=3, reg=0.01, epochs=25, workers=2).fit(data)
    np.testing.assert_array_equal(one.user_factors_, two.user_factors_)
    assert one.rmse(data) < 0.1  # noise 0.05; the ratings' own spread is ~1.7
    assert one.run_record_["final"]["train_rmse"] == pytest.approx(one.rmse(data))


def test_recut_moves_work_from_the_slow_worker_and_keeps_every_vertex_once():
    from stalesync.apps.graph.engine import make_shards, prepare, recut

    prepared = prepare(random_graph(600, 5000, seed=8), PageRankProgram(), engine="sync")
    shards = make_shards(prepared, 2)
    before = shards[0].part.hi
    recut(prepared, shards, np.array([1.0, 3.0]))  # worker 1 measured three times slower
    assert shards[0].part.lo == 0 and shards[0].part.hi == shards[1].part.lo
    assert shards[1].part.hi == 600 and shards[0].part.hi > before
    work = np.diff(prepared.graph.indptr) + 4
    assert work[:shards[0].part.hi].sum() > 1.5 * work[shards[0].part.hi:].sum()
    assert shards[1].every.size == 600 - shards[0].part.hi  # rebuilt, not just relabelled
