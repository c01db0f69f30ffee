"""What a new user types with their own files: each command as typed, and the one line it
answers (before any work starts) or the run it makes."""

from __future__ import annotations

import importlib
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from lda_fixtures import planted_corpus

from stalesync.cli import main
from stalesync.data.writers import write_ldac

ROOT = Path(__file__).resolve().parents[1]


# -- the docs' snippets -----------------------------------------------------------------------
def test_doc_snippets_import_the_run_config_they_use():
    """A snippet copied from the docs runs as it stands: one that builds a RunConfig imports
    it (docs/mf.md and docs/scheduler.md did not)."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    missing = []
    for page in pages:
        blocks = re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), re.S)
        for block in blocks:
            if "RunConfig(" in block and not re.search(r"^from \S+ import .*\bRunConfig\b",
                                                       block, re.M):
                missing.append(f"{page.name}: {block.splitlines()[0]}")
    assert not missing, missing


# -- the permissions of what a run writes ------------------------------------------------------
@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_outputs_take_the_users_umask(tmp_path, umask_022):
    """Run record, saved model and snapshots are readable by others under umask 022 (0644
    files, 0755 folders) as any file the user makes; they were 0600 / 0700."""
    corpus, _ = planted_corpus(num_docs=30, seed=0)
    data = tmp_path / "docs.ldac"
    write_ldac(corpus, data)
    run, model, snaps = tmp_path / "run.json", tmp_path / "model", tmp_path / "snaps"
    assert main(["lda", "--data", str(data), "--topics", "3", "--epochs", "2",
                 "--workers", "1", "--metrics-out", str(run), "--save-model", str(model),
                 "--snapshot-every", "1", "--snapshot-dir", str(snaps), "--show-topics", "0",
                 "--no-progress"]) == 0
    snapshots = [p for p in snaps.iterdir() if p.is_dir()]
    assert snapshots
    written = [run, model, *model.iterdir(), *snapshots,
               *(f for s in snapshots for f in s.iterdir())]
    modes = {str(p.relative_to(tmp_path)): oct(stat.S_IMODE(p.stat().st_mode))
             for p in written}
    assert modes == {name: oct(0o755 if (tmp_path / name).is_dir() else 0o644)
                     for name in modes}


def test_a_plot_takes_the_users_umask(tmp_path, umask_022):
    from matplotlib.figure import Figure

    from stalesync.observe.plots import save_figure

    save_figure(Figure(figsize=(1, 1)), tmp_path / "run.svg")
    assert stat.S_IMODE((tmp_path / "run.svg").stat().st_mode) == 0o644


# -- --runtime ray: Ray and --address checked before the data ------------------------------------
@pytest.fixture
def no_data(monkeypatch):
    """Fails the test if any data is read (every check must come first)."""
    import stalesync.data.load as load

    def must_not_load(*a, **k):
        raise AssertionError("data was loaded before the options were checked")

    for name in ("load_corpus", "load_features"):
        monkeypatch.setattr(load, name, must_not_load)


def one_line_error(capsys, argv: list[str], *expected: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for text in expected:
        assert text in err, err
    return err


@pytest.mark.parametrize("address,why", [
    ("not-a-host:xx", "the port 'xx' is not a number"),
    ("localhost", "is not a cluster address"),
    ("ray://head:0", "the port '0' is not a number in 1-65535"),
])
def test_a_malformed_address_is_one_line_before_the_data(tmp_path, capsys, no_data, address,
                                                         why):
    """Ray's ValueError ('Invalid address format') came after the data had loaded; the form
    is checked without Ray."""
    for app in ("lda", "linear"):
        err = one_line_error(capsys, [app, "--data", str(tmp_path / "x.csv"), "--runtime",
                                      "ray", "--address", address, "--no-progress"],
                             f"--address {address!r}", why)
        assert err.startswith(f"stalesync {app}: error: ")


def test_missing_ray_is_said_before_the_data(tmp_path, capsys, no_data, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray: ImportError
    one_line_error(capsys, ["lda", "--data", str(tmp_path / "x.csv"), "--runtime", "ray",
                            "--no-progress"],
                   "--runtime 'ray' needs Ray, which is not installed",
                   "pip install 'stalesync[ray]'")


def test_address_auto_with_no_cluster_is_one_line_before_the_data(tmp_path, capsys, no_data,
                                                                  monkeypatch):
    """Was a 41-line ConnectionError after the data had loaded. (Ray's discovery is told
    that nothing runs here, whatever this test session started.)"""
    ray = pytest.importorskip("ray")
    from ray._private import services

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(services, "find_gcs_addresses", lambda: set())
    monkeypatch.setattr(services, "find_bootstrap_address", lambda temp_dir=None: None)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    one_line_error(capsys, ["lda", "--data", str(tmp_path / "x.csv"), "--runtime", "ray",
                            "--address", "auto", "--no-progress"],
                   "--address 'auto': no Ray cluster is running", "ray start --head")


# -- lda --data ratings.csv ---------------------------------------------------------------------
def ratings_csv(path: Path, header: bool = True, rows: int = 300) -> Path:
    rng = np.random.default_rng(0)
    lines = ["userId,movieId,rating,timestamp"] if header else []
    lines += [f"{rng.integers(1, 60)},{rng.integers(1, 400)},{rng.integers(1, 11) / 2},"
              f"{rng.integers(8 * 10**8, 9 * 10**8)}" for _ in range(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("header", [True, False])
def test_lda_refuses_a_table_of_numbers_naming_what_it_reads(tmp_path, capsys, header):
    """A ratings CSV was read as text: its header became one 4-word document and the rest
    empty ones (exit 0, garbage topics; with 2 workers an IndexError in lda/worker.py)."""
    data = ratings_csv(tmp_path / "ratings.csv", header)
    err = one_line_error(capsys, ["lda", "--data", str(data), "--no-progress"],
                         f"{data}: a CSV table of numbers (4 columns", "not documents",
                         "UCI docword", "LDA-C", "libsvm-style", "text")
    assert ("userId, movieId" in err) == header


@pytest.mark.filterwarnings("ignore:2 workers. coordination")
def test_lda_runs_when_a_worker_gets_only_empty_documents(tmp_path, capsys):
    """Token-balanced partitions can leave a worker nothing but empty documents; its
    partition was an IndexError."""
    data = tmp_path / "docs.txt"
    data.write_text("apple banana cherry apple banana\n" + "\n" * 20)
    assert main(["lda", "--data", str(data), "--topics", "2", "--epochs", "1", "--workers",
                 "2", "--show-topics", "0", "--no-progress"]) == 0
    assert "log-likelihood per token" in capsys.readouterr().out


# -- linear --data ratings.csv: the last column taken for the label ---------------------------
class Trained(Exception):
    """Raised in place of a fit: the command got past every check."""


@pytest.fixture
def no_fit(monkeypatch):
    def fit(self, *a, **k):
        raise Trained

    for app in ("linear", "nn"):
        command = importlib.import_module(f"stalesync.apps.{app}.cli").COMMAND
        monkeypatch.setattr(type(command), "fit", fit)


def test_linear_refuses_a_label_column_of_too_many_classes_naming_it(tmp_path, capsys, no_fit):
    """The timestamp column became the label (64,285 classes in the user's file): two
    minutes of training, then a 38 GiB allocation. Refused before training, naming the
    column and the ways out."""
    data = ratings_csv(tmp_path / "ratings.csv", rows=400)
    one_line_error(capsys, ["linear", "--data", str(data), "--no-progress"],
                   f"{data}: the label column 'timestamp' (column 4 of 4) has 400 distinct "
                   "values in 400 rows", "too many classes", "--target",
                   "--loss squared_error")
    bare = ratings_csv(tmp_path / "bare.csv", header=False, rows=400)
    one_line_error(capsys, ["nn", "--data", str(bare), "--no-progress"],
                   "the label column (column 4 of 4) has 400 distinct values", "--target")
    for ok in (["--target", "rating"], ["--loss", "squared_error"]):  # what it suggests
        with pytest.raises(Trained):
            main(["linear", "--data", str(data), *ok, "--no-progress"])


# -- a folder as --data ---------------------------------------------------------------------------
def uci_folder(folder: Path, name: str = "tiny", extra: bool = True) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / f"docword.{name}.txt").write_text(
        "5\n4\n7\n1 1 2\n1 2 1\n2 3 4\n3 4 2\n4 1 1\n5 2 3\n5 3 1\n")
    (folder / f"vocab.{name}.txt").write_text("apple\nbanana\ncherry\ndate\n")
    if extra:
        (folder / "readme.txt").write_text("The tiny corpus: five documents, four words.\n")
    return folder


def test_lda_reads_a_folder_holding_a_uci_corpus(tmp_path, capsys):
    """Every file in it was read as a text document (the counts, the vocabulary and the
    readme: 3 documents of words like 'apple' and 'tiny'), exit 0."""
    folder = uci_folder(tmp_path / "tiny")
    assert main(["lda", "--data", str(folder), "--topics", "2", "--epochs", "1",
                 "--workers", "1", "--show-topics", "0", "--no-progress"]) == 0
    assert "corpus: 5 documents, 4 words, 14 tokens" in capsys.readouterr().err


@pytest.mark.parametrize("make,expected", [
    (lambda d: (uci_folder(d, "kos"), uci_folder(d, "nips")),
     ["a folder holding 2 UCI corpora (docword.kos.txt, docword.nips.txt)"]),
    (lambda d: (d / "vocab.kos.txt").write_text("apple\n"),
     ["is a folder (vocab.kos.txt)", "docword.NAME.txt"]),
    (lambda d: (d / "notes.md").write_text("x"),
     ["is a folder (1 file(s), none of them .txt)", "LDA reads one corpus file"]),
])
def test_lda_refuses_a_folder_it_cannot_read_as_one_corpus(tmp_path, capsys, make, expected):
    folder = tmp_path / "corpus"
    folder.mkdir()
    make(folder)
    one_line_error(capsys, ["lda", "--data", str(folder), "--no-progress"], str(folder),
                   *expected)


@pytest.mark.parametrize("app", ["linear", "nn", "kmeans"])
def test_feature_apps_refuse_a_folder_without_an_idx_set(tmp_path, capsys, app):
    """They said 'no such file' for a folder that exists."""
    folder = uci_folder(tmp_path / "tiny")
    one_line_error(capsys, [app, "--data", str(folder), "--no-progress"],
                   f"{folder} is a folder; a feature table is one file",
                   "train-images-idx3-ubyte[.gz]")


def mnist_folder(folder: Path, train: int = 240, test: int = 60, gz: bool = True) -> Path:
    """An MNIST-shaped IDX set of 8x8 uint8 'digits' of 3 classes, as downloaded."""
    from stalesync.data.idx import write_idx

    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    suffix = ".gz" if gz else ""
    for stem, n in (("train", train), ("t10k", test)):
        y = rng.integers(0, 3, n).astype(np.uint8)
        X = rng.integers(0, 60, (n, 8, 8)).astype(np.uint8)
        for i, c in enumerate(y):
            X[i, 2 * c:2 * c + 3] = 255
        write_idx(folder / f"{stem}-images-idx3-ubyte{suffix}", X)
        write_idx(folder / f"{stem}-labels-idx1-ubyte{suffix}", y)
    return folder


@pytest.fixture(scope="module")
def torch():
    """PyTorch, imported once for the nn commands (1.5 s, not theirs)."""
    return pytest.importorskip("torch")


def test_nn_trains_on_a_folder_holding_an_mnist_idx_set_and_tests_on_its_t10k(tmp_path,
                                                                                  capsys, torch):
    """As on the built-in fashion-mnist: train-* to train, t10k-* to test."""
    folder = mnist_folder(tmp_path / "mnist")
    assert main(["nn", "--data", str(folder), "--epochs", "1", "--workers", "1",
                 "--no-progress"]) == 0
    assert "test accuracy" in (out := capsys.readouterr().out) and "(60 examples)" in out


def test_kmeans_reads_the_train_set_of_a_folder_holding_an_mnist_idx_set(tmp_path, capsys):
    folder = mnist_folder(tmp_path / "mnist", gz=False)
    assert main(["kmeans", "--data", str(folder), "--clusters", "3", "--epochs", "1",
                 "--workers", "1", "--no-progress"]) == 0
    assert "3 clusters of 240 points x 64 features" in capsys.readouterr().out


# -- nn on MNIST as downloaded (0-255 pixels), and a fit that diverges ---------------------------
def test_nn_on_idx_files_as_downloaded_learns(tmp_path, capsys, torch):
    """IDX pixels reach the network scaled to [0, 1] as the built-in Fashion-MNIST's are;
    raw 0-255 pixels stayed at chance (0.3 here) or diverged to NaN."""
    from stalesync.data.load import load_features

    folder = mnist_folder(tmp_path / "mnist")
    train, test = (folder / f"{s}-images-idx3-ubyte.gz" for s in ("train", "t10k"))
    X, _ = load_features(train)
    assert X.dtype == np.float32 and X.max() == 1.0
    assert main(["nn", "--data", str(train), "--test", str(test), "--epochs", "2",
                 "--workers", "1", "--metrics-out", str(tmp_path / "run.json"),
                 "--no-progress"]) == 0
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["final"]["test_accuracy"] >= 0.9, capsys.readouterr().out


@pytest.mark.filterwarnings("ignore:2 workers. coordination")
@pytest.mark.parametrize("strategy", ["average", "ps", "sync"])
def test_nn_says_when_the_loss_diverges_and_what_to_change(tmp_path, capsys, torch,
                                                           strategy):
    """Features far too large for the step: ps said "table 'params': increment for row 0
    contains NaN or inf", average and sync trained NaN weights to chance accuracy, exit 0.
    (hogwild takes the same check, but whether its racing threads reach NaN varies.)"""
    rng = np.random.default_rng(0)
    data = tmp_path / "features.npz"
    np.savez(data, X=(rng.random((200, 16)) * 1e19).astype(np.float32),
             y=rng.integers(0, 3, 200))
    one_line_error(capsys, ["nn", "--data", str(data), "--strategy", strategy, "--epochs",
                            "1", "--workers", "2", "--optimizer", "sgd", "--batch-size", "64",
                            "--no-progress"],
                   "became nan", "the steps diverged", "Scale the features",
                   "lower --lr (now 0.05)")


def test_nn_says_when_it_learnt_nothing(tmp_path, capsys, torch):
    """A fit that ends at chance accuracy (here: features that carry nothing, at a scale
    where Adam's bounded steps do not diverge) said nothing; now one warning line says so
    and what to change."""
    rng = np.random.default_rng(0)
    data = tmp_path / "features.npz"
    np.savez(data, X=np.full((200, 16), 1e19, dtype=np.float32), y=rng.integers(0, 3, 200))
    done = subprocess.run([sys.executable, "-m", "stalesync.cli", "nn", "--data", str(data),
                           "--epochs", "1", "--workers", "1", "--no-progress"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    err = done.stderr
    lines = [line for line in err.splitlines() if "no better than" in line]
    assert len(lines) == 1 and lines[0].startswith("stalesync nn: warning: train accuracy")
    assert "scale the features" in lines[0]
