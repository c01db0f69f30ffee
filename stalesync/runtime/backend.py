"""Where a job's pieces run: one interface, two backends.

A *backend* hosts *members* (a worker program, a server shard, the snapshot coordinator),
each built from a factory, in named groups. Code reaches a member through a :class:`Handle`:
``handle.call(method, *args)`` returns a :class:`Future`, ``handle.cast(method, *args)``
fires and forgets. ``group.map(method, args)`` runs a method on every member of a group at
once, waits for all of them, and stops everything on the first error.

- :class:`~stalesync.runtime.threads.ThreadBackend` (embedded, the default): members are
  plain objects in this process. ``call`` runs on the caller's thread; ``map`` runs each
  member on its own long-lived thread (compiled kernels release the GIL, so every thread
  gets a core).
- :class:`~stalesync.runtime.ray_backend.RayBackend`: one threaded Ray actor per node hosts
  the members placed there; members on one node call each other directly, and a call from
  another node (or the driver) is an actor call whose arguments and results travel through
  Ray's object store.

Everything above this module (the parameter server, the model-parallel scheduler, block
rotation) is written once against this interface. A member that is lost (its actor or node
died) surfaces as :class:`WorkerLostError`, which the job may recover from; any other error
is the program's own and is re-raised in the caller unchanged.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from ..errors import JobAbortedError, StalesyncError

Factory = Callable[[], Any]
Method = str | Callable[..., Any]  # a method name, or fn(member, *args)


class WorkerLostError(StalesyncError, RuntimeError):
    """A member of the job (an actor, a process, a node) is gone: recoverable."""


class Future(Protocol):
    def result(self, timeout: float | None = None) -> Any: ...

    def done(self) -> bool: ...


class Handle(Protocol):
    def call(self, method: Method, *args: Any) -> Future: ...

    def cast(self, method: Method, *args: Any) -> None: ...


class Done:
    """A future that is already resolved (in-process calls)."""

    __slots__ = ("_value", "_error")

    def __init__(self, value: Any = None, error: BaseException | None = None) -> None:
        self._value, self._error = value, error

    def result(self, timeout: float | None = None) -> Any:
        if self._error is not None:
            raise self._error
        return self._value

    def done(self) -> bool:
        return True


def invoke(member: Any, method: Method, args: Sequence[Any]) -> Any:
    """Run ``method`` on ``member``: a name is looked up, a callable gets the member first."""
    if isinstance(method, str):
        return getattr(member, method)(*args)
    return method(member, *args)


class Group(ABC):
    """The members of one role (``"worker"``, ``"shard"``, ...), in index order."""

    role: str
    handles: list[Any]

    def __len__(self) -> int:
        return len(self.handles)

    @abstractmethod
    def map(self, method: Method, args: Sequence[Sequence[Any]] | None = None, *,
            poll: Callable[[], None] | None = None,
            on_error: Callable[[], None] | None = None,
            overlap: Callable[[], None] | None = None) -> list[Any]:
        """``method(*args[i])`` on member ``i`` for every member at once; their results.

        ``overlap()`` runs on the calling thread once the members have started (work the
        caller does while they compute). ``poll()`` runs on the calling thread every
        ``POLL_S`` while it waits (progress, liveness). On the first error ``on_error()``
        runs at once (to wake members blocked on each other), the others are waited for,
        and the error is raised: the program's own error first, then a lost member
        (:class:`WorkerLostError`), then an abort.
        """

    @abstractmethod
    def kill(self) -> None:
        """Stop every member now; nothing of the group is left running."""

    @abstractmethod
    def rebuild(self) -> None:
        """Recreate every member from its factory (after a loss): fresh initial state."""

    def ping(self, timeout: float) -> None:  # noqa: B027 - in-process members never vanish
        """Raise :class:`WorkerLostError` if a member is gone or does not answer."""

    def nodes(self) -> list[str] | None:
        """The node each member was placed on (None: one process, no nodes)."""
        return None

    def could_spread(self) -> bool:
        """A node has joined that this group's members could use (they share fewer nodes
        than there are members); the group would spread over it if placed again."""
        return False


class Backend(ABC):
    """Hosts groups of members; a context manager that releases what it started."""

    name: str
    remote: bool  # members run in other processes: arguments and results are copies

    @abstractmethod
    def host(self, role: str, factories: Sequence[Factory], *, cpus: float = 0,
             concurrency: int = 1, near_driver: bool = False,
             own_process: bool = False, workers: bool = False) -> Group:
        """Start one member per factory. ``cpus``: the cores a member needs on its node
        (Ray); ``concurrency``: how many calls it serves at once; ``near_driver``: place it
        on the driver's node (it writes the driver's files); ``own_process``: each member
        needs a process of its own (a ``torch.distributed`` rank); ``workers``: these are
        the job's workers (Ray: they spread over at least ``min_nodes`` nodes)."""

    def share(self, value: Any) -> Any:
        """``value`` in the form that is cheapest to pass to many calls (Ray: put it in the
        object store once); members receive the value itself."""
        return value

    def close(self) -> None:  # noqa: B027 - optional
        """Release what the backend started (threads, a local Ray)."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


POLL_S = 0.2  # how often a waiting map() calls its poll()


def first_error(errors: Sequence[BaseException | None]) -> BaseException | None:
    """The error a failed ``map`` raises: the program's own before a lost member before an
    abort (the aborts are only the echo of another member's failure)."""
    found = [e for e in errors if e is not None]
    for kind in (lambda e: not isinstance(e, JobAbortedError | WorkerLostError),
                 lambda e: isinstance(e, WorkerLostError)):
        for error in found:
            if kind(error):
                return error
    return found[0] if found else None


def own(value: Any) -> Any:
    """``value`` with every read-only numpy array in it copied (arrays that arrive from
    Ray's object store are read-only views; a program may update its data in place)."""
    if isinstance(value, np.ndarray):
        return value if value.flags.writeable else value.copy()
    if _has_readonly_array(value):
        return copy.deepcopy(value)
    return value


def _has_readonly_array(value: Any, depth: int = 0) -> bool:
    if depth > 4:
        return True  # deep structures: copy to be safe
    if isinstance(value, np.ndarray):
        return not value.flags.writeable
    if isinstance(value, dict):
        return any(_has_readonly_array(v, depth + 1) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_has_readonly_array(v, depth + 1) for v in value)
    if hasattr(value, "__dict__"):
        return any(_has_readonly_array(v, depth + 1) for v in vars(value).values())
    return False

