"""``runtime.ranks``: gloo ranks in local processes. A rank that dies, however early, must
reach the caller as an error naming it, never as a wait that does not end."""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("torch")

from stalesync.runtime.ranks import RankError, run_ranks  # noqa: E402


def _module(tmp_path, monkeypatch, name: str, body: str):
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(body))
    monkeypatch.syspath_prepend(str(tmp_path))  # spawn gives the ranks this sys.path
    __import__(name)
    return sys.modules[name]


def test_each_rank_gets_its_own_arguments_and_reports(tmp_path, monkeypatch):
    ranks = _module(tmp_path, monkeypatch, "ranks_echo", """
        def train(rank, world, host, port, report, array, tag):
            report(rank, tag)
            return {"rank": rank, "world": world, "sum": float(array.sum()), "tag": tag}
        """)
    reports = []
    args = [(np.full(1000, r, dtype=np.float64), f"t{r}") for r in range(2)]
    out = run_ranks(ranks.train, args, runtime="embedded",
                    on_report=lambda rank, values: reports.append((rank, values)))
    assert out == [{"rank": r, "world": 2, "sum": 1000.0 * r, "tag": f"t{r}"}
                   for r in range(2)]
    assert sorted(reports) == [(0, (0, "t0")), (1, (1, "t1"))]


@pytest.mark.timeout(120)
def test_a_rank_that_dies_before_reading_its_data_is_an_error_not_a_hang(tmp_path,
                                                                       monkeypatch):
    """The rank process dies while loading its target (as one does when a user's main
    module trains at import and spawn re-runs it): with 64 MB of data to hand over, the
    handing over must not block the caller on a pipe nobody reads."""
    ranks = _module(tmp_path, monkeypatch, "ranks_dying", """
        import os

        if os.environ.get("RANKS_DYING_IN_RANK"):  # set after this process imported it
            os._exit(3)

        def train(rank, world, host, port, report, array):
            return float(array.sum())
        """)
    monkeypatch.setenv("RANKS_DYING_IN_RANK", "1")  # the rank's import of it dies
    big = np.ones(8 * 2**20)  # 64 MB: far more than a pipe holds
    with pytest.raises(RankError, match=r"rank 0 \(exit code 3\) ended without a result"):
        run_ranks(ranks.train, [(big,)], runtime="embedded")


@pytest.mark.timeout(120)
def test_one_rank_dying_ends_the_job_while_its_peer_waits(tmp_path, monkeypatch):
    """Rank 1 dies without a word while rank 0 waits for it (as it would in a receive):
    the caller hears of rank 1 at once and rank 0 is stopped."""
    ranks = _module(tmp_path, monkeypatch, "ranks_one_dies", """
        import os
        import time

        def train(rank, world, host, port, report):
            if rank == 1:
                os._exit(5)
            time.sleep(600)  # a peer blocked on the rank that died
        """)
    with pytest.raises(RankError, match=r"^rank 1 \(exit code 5\) ended without a result"):
        run_ranks(ranks.train, [(), ()], runtime="embedded")
