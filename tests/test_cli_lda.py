"""The main job's command line, end to end on small files."""

from __future__ import annotations

import json

import numpy as np
from lda_fixtures import planted_corpus

from stalesync.apps.lda import LDA
from stalesync.cli import main
from stalesync.data.writers import write_ldac


def test_help_lists_the_commands(capsys):
    assert main([]) == 2
    out = capsys.readouterr().out
    for command in ("lda", "lasso", "mf", "kmeans"):
        assert command in out


def test_lda_command_trains_reports_and_saves(tmp_path, capsys):
    corpus, _ = planted_corpus(num_docs=200, seed=1)
    data = tmp_path / "docs.ldac"
    write_ldac(corpus, data)
    run_json, plot, model_dir = tmp_path / "run.json", tmp_path / "run.png", tmp_path / "m"
    code = main(["lda", "--data", str(data), "--topics", "5", "--epochs", "15",
                 "--workers", "2", "--consistency", "essp", "--staleness", "1",
                 "--test-fraction", "0.2", "--metrics-out", str(run_json), "--plot", str(plot),
                 "--save-model", str(model_dir), "--no-progress"])
    assert code == 0
    out = capsys.readouterr().out
    assert out.count("topic ") == 5 and "held-out log-likelihood per token" in out
    assert "5 of 5 topics" in out
    record = json.loads(run_json.read_text())
    assert record["app"] == "lda" and record["consistency"] == "essp"
    assert record["staleness"] == 1 and record["workers"] == 2
    final = record["final"]
    # the best any one word distribution does on this corpus (its unigram entropy, -3.73
    # nats; uniform words: -log 60 = -4.09): topics that fit the planted ones do far better
    # (-3.26 train, -3.05 held out at this seed; random assignments do worse than unigram)
    counts = np.bincount(corpus.words, minlength=corpus.num_words)
    p = counts[counts > 0] / counts.sum()
    unigram = float((p * np.log(p)).sum())
    assert final["loglik_per_token"] > unigram + 0.3, (final, unigram)
    assert final["test_loglik_per_token"] > unigram + 0.3, (final, unigram)
    assert final["loglik_per_token"] < 0 and final["test_loglik_per_token"] < 0
    assert record["epochs"] == 15 and record["clocks"] == 15 * 10
    assert final["tokens_per_s"] > 0 and final["num_docs"] == 160
    assert plot.read_bytes()[:4] == b"\x89PNG"
    model = LDA.load(model_dir)
    assert model.components_.shape == (5, corpus.num_words)
    assert np.isclose(model.loglik_per_token_, final["loglik_per_token"])
    assert model.doc_topic_.shape == (160, 5)  # kept with the saved model


def test_lda_command_names_file_and_line_of_bad_input(tmp_path, capsys):
    bad = tmp_path / "bad.ldac"
    bad.write_text("2 0:1 1:2\n2 0:1 x:2\n")
    assert main(["lda", "--data", str(bad), "--format", "ldac", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "bad.ldac" in err and "line 2" in err


def test_lda_command_rejects_unknown_consistency(tmp_path, capsys):
    corpus, _ = planted_corpus(num_docs=20)
    data = tmp_path / "docs.ldac"
    write_ldac(corpus, data)
    try:
        main(["lda", "--data", str(data), "--consistency", "weird"])
    except SystemExit as exc:
        assert exc.code == 2
    assert "invalid choice: 'weird'" in capsys.readouterr().err


def test_lda_command_snapshots_and_resumes(tmp_path, capsys):
    corpus, _ = planted_corpus(num_docs=100, seed=2)
    data, snaps = tmp_path / "docs.ldac", tmp_path / "snaps"
    write_ldac(corpus, data)
    common = ["lda", "--data", str(data), "--topics", "4", "--epochs", "4",
              "--docs-per-clock", "0.5", "--no-progress"]
    assert main([*common, "--snapshot-every", "3", "--snapshot-dir", str(snaps)]) == 0
    assert sorted(p.name for p in snaps.glob("snap-*")) == ["snap-00000003", "snap-00000006"]
    run_json = tmp_path / "run.json"
    assert main([*common, "--resume", str(snaps), "--metrics-out", str(run_json)]) == 0
    assert json.loads(run_json.read_text())["resumed_from_clock"] == 6
    assert "log-likelihood per token" in capsys.readouterr().out
