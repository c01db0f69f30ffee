"""The command line every app shares: the same flags and groups, defaults in --help, every
option and output path checked before any data is read, one-line errors naming the flag."""

from __future__ import annotations

import json

import numpy as np
import pytest
from lda_fixtures import planted_corpus

from stalesync.cli import APPS, build_parser, main
from stalesync.data.writers import write_ldac

SHARED = ("--data", "--format", "--test", "--test-fraction", "--epochs", "--workers",
          "--runtime", "--address", "--stragglers", "--snapshot-every", "--snapshot-dir",
          "--resume", "--max-recoveries", "--min-nodes", "--metrics-out", "--plot",
          "--save-model", "--seed", "--no-progress")
GROUPS = ["data", "model", "training", "parallelism", "runtime", "output"]


def subparser(name: str):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sub.choices[name]


TEST_FLAGS = {"--test", "--test-fraction"}


@pytest.mark.parametrize("app", APPS)
def test_every_app_has_the_shared_flags_in_the_same_groups(app):
    parser = subparser(app)
    flags = {s for a in parser._actions for s in a.option_strings}
    shared = set(SHARED) - TEST_FLAGS if app in ("lasso", "graph") else set(SHARED)  # no test set
    assert shared <= flags, shared - flags
    titles = [g.title for g in parser._action_groups if g.title in GROUPS]
    assert titles == GROUPS
    text = parser.format_help()
    assert "(default: auto)" in text  # --workers, and every other non-empty default


def test_parameter_server_apps_take_a_consistency_model_and_the_others_do_not():
    for app in ("lda", "mf", "kmeans"):
        assert "--consistency" in subparser(app).format_help()
    assert "--consistency" not in subparser("lasso").format_help()


@pytest.fixture
def ldac(tmp_path):
    corpus, _ = planted_corpus(num_docs=40, seed=0)
    path = tmp_path / "docs.ldac"
    write_ldac(corpus, path)
    return path


@pytest.mark.parametrize("args,flag", [
    (["--topics", "0"], "--topics must be positive"),
    (["--consistency", "bsp", "--staleness", "3"], "bsp has --staleness 0"),
    (["--staleness", "-1"], "--staleness must be >= 0"),
    (["--docs-per-clock", "2"], "--docs-per-clock must be"),
    (["--test-fraction", "1.5"], "--test-fraction must be in [0, 1)"),
    (["--shards", "0"], "--shards must be positive"),
    (["--snapshot-every", "3"], "--snapshot-dir"),
    (["--address", "1.2.3.4:6379"], "--address"),
    (["--min-nodes", "2"], "--min-nodes (the fewest nodes to run on) applies to the Ray runtime"),
    (["--min-nodes", "0"], "--min-nodes must be a positive int"),
])
def test_option_errors_name_the_flag_before_any_data_is_read(ldac, capsys, monkeypatch, args,
                                                              flag):
    import stalesync.data.load as load

    def must_not_load(*a, **k):
        raise AssertionError("data was loaded before the options were checked")

    monkeypatch.setattr(load, "load_corpus", must_not_load)
    assert main(["lda", "--data", str(ldac), *args, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert flag in err and "Traceback" not in err, err
    assert err.count("\n") == 1


@pytest.mark.parametrize("flag,value,message", [
    ("--plot", "{tmp}/missing/x.png", "does not exist"),
    ("--plot", "{tmp}/run.gif", "cannot write .gif"),
    ("--plot", "{tmp}", "is a directory"),
    ("--metrics-out", "/proc/run.json", "cannot write in /proc"),
    ("--metrics-out", "{tmp}", "is a directory"),
    ("--save-model", "{tmp}/missing/model", "does not exist"),
])
def test_bad_output_paths_fail_before_the_run(ldac, tmp_path, capsys, flag, value, message):
    value = value.format(tmp=tmp_path)
    before = set(tmp_path.iterdir())
    assert main(["lda", "--data", str(ldac), "--epochs", "1", flag, value,
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert flag in err and message in err, err
    assert "log-likelihood" not in capsys.readouterr().out  # nothing was trained
    assert set(tmp_path.iterdir()) == before  # nothing was created


def test_plot_is_written_in_the_format_of_its_extension(ldac, tmp_path):
    pdf, svg = tmp_path / "run.pdf", tmp_path / "run.svg"
    assert main(["lda", "--data", str(ldac), "--topics", "3", "--epochs", "2",
                 "--plot", str(pdf), "--no-progress"]) == 0
    assert pdf.read_bytes()[:4] == b"%PDF"
    assert main(["lda", "--data", str(ldac), "--topics", "3", "--epochs", "2",
                 "--plot", str(svg), "--no-progress"]) == 0
    assert b"<svg" in svg.read_bytes()[:400]


def test_run_record_names_clocks_and_epochs(ldac, tmp_path, capsys):
    out = tmp_path / "run.json"
    assert main(["lda", "--data", str(ldac), "--topics", "4", "--epochs", "3",
                 "--docs-per-clock", "0.25", "--metrics-out", str(out), "--show-topics", "2",
                 "--no-progress"]) == 0
    record = json.loads(out.read_text())
    assert (record["epochs"], record["clocks"]) == (3, 12)
    assert "top 10 words of 2 of 4 topics" in capsys.readouterr().out


def test_mf_block_modes_refuse_a_consistency_model(tmp_path, capsys):
    data = tmp_path / "r.tsv"
    rng = np.random.default_rng(0)
    data.write_text("".join(f"{u}\t{i}\t{rng.integers(1, 6)}\n"
                            for u in range(30) for i in range(20) if rng.random() < 0.5))
    for extra in (["--consistency", "ssp"], ["--staleness", "2"], ["--clocks-per-epoch", "2"]):
        assert main(["mf", "--data", str(data), "--mode", "blocks", *extra,
                     "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert extra[0] in err and "mode='ssp' only" in err, err
    assert main(["mf", "--data", str(data), "--num-blocks", "0", "--mode", "blocks",
                 "--no-progress"]) == 2
    assert "--num-blocks must be positive" in capsys.readouterr().err


def test_unknown_dataset_and_debug_traceback(capsys):
    assert main(["kmeans", "--data", "no-such-thing", "--no-progress"]) == 2
    assert "no such file, and not a built-in dataset" in capsys.readouterr().err
    with pytest.raises(Exception, match="no such file"):
        main(["--debug", "kmeans", "--data", "no-such-thing", "--no-progress"])


def test_an_address_where_nothing_listens_fails_in_seconds():
    """ray.init retries an unreachable address for minutes; a job probes it first (the
    probe itself: a CLI run inside this test session would join the session's Ray)."""
    import socket
    import time

    pytest.importorskip("ray")
    from stalesync.errors import ConfigError
    from stalesync.runtime.address import check_reachable

    with socket.socket() as s:  # a loopback port that was free a moment ago
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(ConfigError, match="nothing answers there") as info:
        check_reachable(f"127.0.0.1:{port}")
    assert info.value.param == "address"
    with pytest.raises(ConfigError, match="nothing answers"):
        check_reachable(f"ray://127.0.0.1:{port}")
    assert time.monotonic() - start < 30  # Ray alone: over 2 minutes
    assert check_reachable("auto") is None  # other forms are Ray's to resolve


@pytest.fixture
def libsvm(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 6))
    y = (X[:, 0] + 0.2 * rng.normal(size=120) > 0).astype(int)
    path = tmp_path / "small.svm"
    path.write_text("".join(f"{label} " + " ".join(f"{j + 1}:{v:.4f}" for j, v in enumerate(row))
                            + "\n" for label, row in zip(y, X, strict=True)))
    return path


@pytest.mark.parametrize("app,args,flag,runs", [
    ("linear", ["--strategy", "average", "--consistency", "ssp", "--staleness", "7"],
     "--consistency 'ssp'", "'average' runs bsp"),
    ("linear", ["--strategy", "sync", "--staleness", "2"], "--staleness 2", "runs bsp"),
    ("linear", ["--strategy", "downpour", "--consistency", "bsp"], "--consistency 'bsp'",
     "'downpour' runs async"),
    ("linear", ["--strategy", "hogwild", "--staleness", "auto"], "--staleness 'auto'",
     "runs bsp"),
    ("nn", ["--strategy", "allreduce", "--consistency", "essp"], "--consistency 'essp'",
     "runs bsp"),
    ("nn", ["--strategy", "average", "--staleness", "1"], "--staleness 1", "runs bsp"),
])
def test_strategies_refuse_a_consistency_they_would_ignore(libsvm, capsys, monkeypatch, app,
                                                           args, flag, runs):
    """Only ps takes --consistency/--staleness: the others used to run their own model
    without a word. Refused in one line naming the flag, before any data is read, even
    when the value typed is the default one."""
    import stalesync.data.load as load

    def must_not_load(*a, **k):
        raise AssertionError("data was loaded before the options were checked")

    monkeypatch.setattr(load, "load_features", must_not_load)
    assert main([app, "--data", str(libsvm), *args, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"stalesync {app}: error: {flag} is ignored"), err
    assert runs in err and "strategy 'ps'" in err and err.count("\n") == 1, err


@pytest.mark.parametrize("args,consistency", [
    (["--strategy", "average", "--consistency", "bsp", "--staleness", "0"], "bsp"),
    (["--strategy", "downpour", "--consistency", "async"], "async"),
    (["--strategy", "hogwild"], "bsp"),  # the defaults are not a choice the user made
    (["--strategy", "ps", "--consistency", "essp", "--staleness", "2"], "essp"),
])
def test_strategies_take_the_consistency_they_run(libsvm, tmp_path, args, consistency):
    out = tmp_path / "run.json"
    assert main(["linear", "--data", str(libsvm), *args, "--epochs", "1", "--workers", "2",
                 "--metrics-out", str(out), "--no-progress"]) == 0
    record = json.loads(out.read_text())
    assert record["consistency"] == consistency


def test_help_lists_only_flags_the_command_takes_and_every_flag_has_help_and_its_default():
    """lasso refuses a test set, so its help does not offer one; every option says what it
    does; a default is shown where there is one, 0 included, but not for a --no-x switch
    (``--no-biases (default: True)`` read as if the switch were on)."""
    import argparse

    lasso = subparser("lasso")
    assert not TEST_FLAGS & {s for a in lasso._actions for s in a.option_strings}
    for app in APPS:
        parser = subparser(app)
        formatter = parser._get_formatter()
        for action in parser._actions:
            if not action.option_strings or action.dest == "help":
                continue
            assert action.help, (app, action.option_strings)
            switch = isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction))
            shown = "(default: %(default)s)" in formatter._get_help_string(action)
            assert shown == (action.default is not None and not switch
                             and not action.required), (app, action.option_strings)
    mf = " ".join(subparser("mf").format_help().split())
    assert "--rank RANK latent factors per user and per item (default: 32)" in mf
    assert "--no-biases fit factors only training:" in mf  # no "(default: True)"
    for app in ("lda", "kmeans"):
        text = " ".join(subparser(app).format_help().split())
        assert "for testing (0: none) (default: 0.0)" in text


def test_lasso_refuses_a_test_set_naming_why(capsys):
    for flags in (["--test", "t.svm"], ["--test-fraction", "0.2"]):
        with pytest.raises(SystemExit) as exit_:
            main(["lasso", "--data", "synthetic", *flags, "--no-progress"])
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert err == (f"stalesync lasso: error: unrecognized arguments: {' '.join(flags)} "
                       "(lasso takes no test set: it reports the training objective (R2 on "
                       "the training data)); see stalesync lasso --help\n")


@pytest.mark.parametrize("argv,expected", [
    (["lda", "--data", "x", "--consistency", "weird"],
     "stalesync lda: error: argument --consistency: invalid choice: 'weird' (choose from "
     "'bsp', 'ssp', 'essp', 'async'); see stalesync lda --help"),
    (["linear", "--data", "x", "--strategy", "averge"],
     "stalesync linear: error: argument --strategy: invalid choice: 'averge' (choose from "
     "'ps', 'sync', 'downpour', 'average', 'hogwild', 'fedavg') (did you mean 'average'?); see "
     "stalesync linear --help"),
    (["mf", "--data", "x", "--epcohs", "3"],
     "stalesync mf: error: unrecognized arguments: --epcohs 3 (did you mean --epochs?); see "
     "stalesync mf --help"),
    (["kmeans", "--data", "x", "--clustres=4", "--tol", "0", "--sede", "2"],
     "stalesync kmeans: error: unrecognized arguments: --clustres=4 --sede 2 (did you mean "
     "--clusters for --clustres, --seed for --sede?); see stalesync kmeans --help"),
    (["lda", "--topics", "3"],
     "stalesync lda: error: the following arguments are required: --data; see stalesync lda "
     "--help"),
])
def test_usage_errors_are_one_line_with_the_closest_flag_or_choice(capsys, argv, expected):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    captured = capsys.readouterr()
    assert captured.err == expected + "\n" and captured.out == ""


@pytest.fixture
def inputs(tmp_path, ldac, libsvm):
    rng = np.random.default_rng(3)
    ratings = tmp_path / "ratings.csv"
    rows = np.c_[rng.integers(0, 40, 600), rng.integers(0, 30, 600), rng.integers(1, 6, 600)]
    ratings.write_text("\n".join(f"{u},{i},{r}" for u, i, r in rows))
    return {"ldac": ldac, "libsvm": libsvm, "ratings": ratings}


COMMANDS = [  # every command (and every way a command runs: a job, the scheduler, allreduce)
    ("lda", ["--topics", "3"], "ldac"),
    ("mf", ["--mode", "ssp"], "ratings"),
    ("mf", ["--mode", "blocks"], "ratings"),
    ("mf", ["--mode", "fugue"], "ratings"),
    ("lasso", ["--alpha", "0.01"], "libsvm"),
    ("kmeans", ["--clusters", "2"], "libsvm"),
    ("linear", [], "libsvm"),
    ("nn", ["--hidden", "4"], "libsvm"),
    ("nn", ["--hidden", "4", "--strategy", "allreduce"], "libsvm"),
]


@pytest.mark.parametrize("app,extra,data", COMMANDS,
                         ids=[" ".join([c[0], *c[1][-1:]]) for c in COMMANDS])
def test_every_command_honours_every_output_option(inputs, tmp_path, app, extra, data):
    """--metrics-out, --plot, --tensorboard and --save-model each leave their output on
    every path a command can take (a parameter-server job streams its scalars; the
    scheduler's apps and allreduce write them at the end): none is silently ignored."""
    pytest.importorskip("tensorboard")
    from stalesync.observe.tensorboard import read_scalars

    out = {"metrics": tmp_path / "run.json", "plot": tmp_path / "run.png",
           "tb": tmp_path / "tb", "model": tmp_path / "model"}
    assert main([app, "--data", str(inputs[data]), *extra, "--epochs", "2", "--workers", "2",
                 "--no-progress", "--metrics-out", str(out["metrics"]), "--plot",
                 str(out["plot"]), "--tensorboard", str(out["tb"]), "--save-model",
                 str(out["model"])]) == 0
    record = json.loads(out["metrics"].read_text())
    assert record["app"] == app and record["workers"] == 2
    assert out["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    objective = read_scalars(out["tb"]).get("objective", [])
    assert len(objective) >= 1 and all(np.isfinite(v) for _, v in objective)
    assert (out["model"] / "model.json").is_file()


@pytest.mark.parametrize("app,extra,data", COMMANDS,
                         ids=[" ".join([c[0], *c[1][-1:]]) for c in COMMANDS])
def test_every_command_refuses_ray_only_options_on_the_embedded_runtime(inputs, capsys, app,
                                                                        extra, data):
    """--max-recoveries (restarts after a lost worker) and --min-nodes mean nothing where a
    worker is a thread: refused in one line naming the flag, on every command."""
    for flag, value in (("--max-recoveries", "5"), ("--min-nodes", "2")):
        assert main([app, "--data", str(inputs[data]), *extra, "--epochs", "1",
                     "--no-progress", flag, value]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and flag in err[0] and "Ray runtime" in err[0], err


@pytest.mark.parametrize("app,args,flag", [
    ("linear", ["--strategy", "ps", "--batch-size", "32"], "--batch-size"),
    ("linear", ["--strategy", "average", "--threads", "4"], "--threads"),
    ("nn", ["--strategy", "sync", "--average-every", "5"], "--average-every"),
])
def test_a_strategy_flag_the_strategy_does_not_take_is_refused(libsvm, capsys, app, args, flag):
    """The strategy flags are typed for one strategy; given to another they are refused in
    one line naming the flag, not silently ignored."""
    assert main([app, "--data", str(libsvm), *args, "--epochs", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and flag in err[0] and "is not an option of strategy" in err[0], err
