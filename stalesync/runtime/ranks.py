"""Ranks of one ``torch.distributed`` gloo group, each in its own process: the hosts of the
strategies that talk through PyTorch's collectives and point-to-point messages instead of
the parameter server (``allreduce``, ``pipeline``).

:func:`run_ranks` starts ``world`` ranks, calls
``train(rank, world, host, port, report, *args[rank])`` in each and returns their results in
rank order. ``report(*values)`` sends values to the caller's ``on_report(rank, values)``
while the ranks run (a progress bar's epochs and losses).

On the embedded runtime the ranks are local processes (``torch.multiprocessing``, spawn)
whose rendezvous listens on 127.0.0.1 only; on Ray each rank is an actor of its own (any
node; rank 0's node hosts the rendezvous, on a local Ray that is loopback too).

A rank that raises stops the job: its peers may be blocked in a receive that will never
complete, so every rank is killed and the error is raised in the caller, with a note naming
the rank. A rank that dies without a word (killed, out of memory) is reported the same way.
"""

from __future__ import annotations

import socket
import time
import traceback
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from ..errors import StalesyncError

POLL_S = 0.01


class RankError(StalesyncError):
    """A rank ended without a result (killed, or its error could not be sent back)."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


Report = Callable[[int, tuple], None]


def _ignore(rank: int, values: tuple) -> None:
    return None


def run_ranks(train: Callable[..., Any], args: Sequence[Sequence[Any]], *, runtime: str,
              address: str | None = None, role: str = "rank",
              name: Callable[[int], str] = lambda r: f"rank {r}",
              on_report: Report = _ignore) -> list[Any]:
    """``train(rank, world, host, port, report, *args[rank])`` on ``len(args)`` ranks; their
    results in rank order. ``runtime``: ``embedded`` (local processes) or ``ray``;
    ``name(rank)``: how an error names the rank (``pipeline stage 1``); ``on_report``: called
    in this thread with what a rank reports."""
    if runtime == "ray":
        from .backends import make_backend

        with make_backend("ray", address=address) as backend:
            return _on_backend(backend, train, args, role, name, on_report)
    return _on_processes(train, args, name, on_report)


class _QueueReport:
    """A rank's ``report`` on a local process: a message on the results queue."""

    def __init__(self, out: Any, rank: int) -> None:
        self.out, self.rank = out, rank

    def __call__(self, *values: Any) -> None:
        self.out.put((self.rank, "report", values))


def _on_processes(train: Callable[..., Any], args: Sequence[Sequence[Any]],
                  name: Callable[[int], str], on_report: Report) -> list[Any]:
    import torch.multiprocessing as mp

    world = len(args)
    port = free_port()
    ctx = mp.get_context("spawn")
    out = ctx.SimpleQueue()
    # a rank's arguments (its data) go through a queue once it runs, not with the process:
    # spawn writes a process's arguments into a pipe the parent keeps open for both ends
    # until the write ends, so a child that dies before reading them (a main module that
    # trains at import, re-run by spawn) would block this process forever
    inboxes = [ctx.Queue() for _ in range(world)]
    procs = [ctx.Process(target=_process_main, daemon=True,
                         args=(train, rank, world, port, inboxes[rank], out))
             for rank in range(world)]
    for p in procs:
        p.start()
    for rank, inbox in enumerate(inboxes):
        inbox.put(tuple(args[rank]))  # written by the queue's thread: never blocks here
    results: dict[int, Any] = {}
    try:
        while len(results) < world:
            if out.empty():
                # a rank that ended without a result (its last words, if any, were read:
                # the queue is checked again after it is seen dead) leaves its peers waiting
                # on it, so one such rank ends the job
                dead = [r for r, p in enumerate(procs) if r not in results and not p.is_alive()]
                if dead and out.empty():
                    missing = [f"{name(r)} (exit code {procs[r].exitcode})" for r in dead]
                    raise RankError(f"{', '.join(missing)} ended without a result; its "
                                    "error, if any, is above (a script that fits at import "
                                    "needs `if __name__ == '__main__':`: every rank re-runs "
                                    "the main module)")
                time.sleep(POLL_S)
                continue
            rank, kind, payload = out.get()
            if kind == "report":
                on_report(rank, payload)
            elif kind == "error":
                raise _rank_error(payload, name(rank))
            else:
                results[rank] = payload
    finally:
        for p in procs:
            if p.is_alive() and len(results) < world:
                p.kill()
        for p in procs:
            p.join(10)
        for inbox in inboxes:  # what a dead rank never read is dropped, not waited for
            inbox.cancel_join_thread()
            inbox.close()
    return [results[r] for r in range(world)]


def _rank_error(payload: tuple[BaseException | None, str], where: str) -> BaseException:
    exc, text = payload
    if exc is None:
        return RankError(f"{where} failed: {text}")
    exc.add_note(f"raised in {where}:\n{text}")
    return exc


def _process_main(train: Callable[..., Any], rank: int, world: int, port: int,
                  inbox: Any, out: Any) -> None:  # pragma: no cover - child process
    try:
        args = inbox.get()
        result = train(rank, world, "127.0.0.1", port, _QueueReport(out, rank), *args)
        out.put((rank, "result", result))
    except BaseException as exc:  # report, never leave the parent waiting
        text = traceback.format_exc()
        try:
            out.put((rank, "error", (exc, text)))
        except Exception:  # noqa: BLE001 - an exception that does not pickle: its text
            out.put((rank, "error", (None, text)))


class RankMember:
    """One rank as a backend member (a Ray actor with one CPU of its own)."""

    def __init__(self, rank: int) -> None:
        self.rank = rank

    def endpoint(self) -> tuple[str, int]:
        """Where this member's node can host the rendezvous: (its address, a free port)."""
        import ray

        host = ray.util.get_node_ip_address()
        return host, free_port(host)

    def train(self, train: Callable[..., Any], world: int, host: str, port: int,
              queue: Any, *args: Any) -> Any:
        return train(self.rank, world, host, port, _RayReport(queue, self.rank), *args)


class _RayReport:
    """A rank's ``report`` on a Ray actor: an item on a Ray queue the caller drains."""

    def __init__(self, queue: Any, rank: int) -> None:
        self.queue, self.rank = queue, rank

    def __call__(self, *values: Any) -> None:
        self.queue.put((self.rank, values))


def _on_backend(backend: Any, train: Callable[..., Any], args: Sequence[Sequence[Any]],
                role: str, name: Callable[[int], str], on_report: Report) -> list[Any]:
    from ray.util.queue import Queue

    world = len(args)
    group = backend.host(role, [partial(RankMember, r) for r in range(world)],
                         cpus=1, concurrency=1, own_process=True)
    queue = Queue(actor_options={"num_cpus": 0})

    def drain() -> None:
        while not queue.empty():
            on_report(*queue.get_nowait())

    try:
        host, port = group.map("endpoint")[0]  # rank 0's node hosts the rendezvous
        try:
            results = group.map("train", [(train, world, host, port, queue, *args[r])
                                          for r in range(world)], poll=drain)
            drain()
            return results
        except BaseException as exc:
            exc.add_note(f"raised in one of the {world} {role} actors ({name(0)} .. "
                         f"{name(world - 1)})")
            raise
    finally:
        group.kill()  # a rank blocked on a peer that failed is stopped here
        queue.shutdown()
