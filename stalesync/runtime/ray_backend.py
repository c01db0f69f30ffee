"""The Ray backend: every member is a threaded Ray actor.

A member is built inside a :class:`HostActor` from its factory (put in the object store
once, so a member rebuilt after a loss is made from the same bytes). ``handle.call`` is one
actor call; the actor is threaded (``max_concurrency``), so a shard serves reads while
another thread applies clocks, and a worker takes pushes while its program computes.

Errors: a call whose actor (or any actor it called in turn) died raises
:class:`~stalesync.runtime.backend.WorkerLostError`; any other remote error is re-raised as
the original exception, as on the embedded backend.

Session: a job connects to ``address`` (probed first: nothing there fails in seconds, not
after Ray's minutes of retries) or starts a local Ray on loopback only, with the dashboard
off (:func:`_loopback_node`); a local Ray started here is shut down when the last job using
it ends. A job inside an existing session (``ray.init`` done by the caller) leaves it
running.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import ConfigError, RecoveryError

try:
    import ray
    import ray.exceptions as rex
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ConfigError("runtime='ray' needs Ray: pip install 'stalesync[ray]'") from exc

from .backend import (
    POLL_S,
    Backend,
    Factory,
    Group,
    Method,
    WorkerLostError,
    first_error,
    invoke,
    own,
)

log = logging.getLogger("stalesync.ray")

START_TIMEOUT_S = 120.0  # members not placed by then: the cluster lacks resources
LOST = (
    rex.RayActorError,
    rex.ObjectLostError,
    rex.NodeDiedError,
    rex.WorkerCrashedError,
    rex.LocalRayletDiedError,
)


def resolve(refs: Any, what: str, timeout: float | None = None) -> Any:
    """``ray.get`` that turns a lost actor into :class:`WorkerLostError` and a remote
    exception into the original one."""
    try:
        return ray.get(refs, timeout=timeout)
    except rex.RayTaskError as exc:
        cause = exc.cause
        if isinstance(cause, (*LOST, WorkerLostError)):
            raise WorkerLostError(f"{what}: {cause}") from cause
        if isinstance(cause, BaseException):
            raise cause from None  # the program's own error, as on the embedded backend
        raise
    except LOST as exc:
        raise WorkerLostError(f"{what}: {exc}") from exc
    except rex.GetTimeoutError:
        raise WorkerLostError(f"{what}: no answer within {timeout:.0f} s") from None


class RayFuture:
    __slots__ = ("ref", "what")

    def __init__(self, ref: Any, what: str) -> None:
        self.ref, self.what = ref, what

    def result(self, timeout: float | None = None) -> Any:
        return resolve(self.ref, self.what, timeout)

    def done(self) -> bool:
        ready, _ = ray.wait([self.ref], timeout=0)
        return bool(ready)


INLINE_BYTES = 256 << 10  # share(): below this, pass frozen bytes inline


class Frozen:
    """A value serialised when it was shared: every call that passes it sends those same
    bytes, and Ray's own deserialisation on the member's side turns them back into the
    value (they never leave this job: made by this driver, read by its own actors)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __reduce__(self):
        return (ray.cloudpickle.loads, (self.data,))


class HostActor:
    """Holds one member; every call goes through :meth:`invoke`."""

    def __init__(self, factory: Factory) -> None:
        self.member = factory()

    def invoke(self, method: Method, *args: Any) -> Any:
        return invoke(self.member, method, args)

    def ping(self) -> str:
        return ray.get_runtime_context().get_node_id()


class RayHandle:
    """A member's actor; picklable, so members can call each other."""

    __slots__ = ("actor", "what")

    def __init__(self, actor: Any, what: str) -> None:
        self.actor, self.what = actor, what

    def call(self, method: Method, *args: Any) -> RayFuture:
        return RayFuture(self.actor.invoke.remote(method, *args), self.what)

    def cast(self, method: Method, *args: Any) -> None:
        self.actor.invoke.remote(method, *args)  # fire and forget

    def __reduce__(self):
        return (RayHandle, (self.actor, self.what))


class RayGroup(Group):
    def __init__(self, role: str, factories: Sequence[Factory], options: dict[str, Any]) -> None:
        self.role = role
        self.options = options
        self.factory_refs = [ray.put(f) for f in factories]
        self.handles: list[RayHandle] = []
        self._start()

    def _start(self) -> None:
        cls = ray.remote(HostActor).options(**self.options)
        actors = [cls.remote(ref) for ref in self.factory_refs]
        self.handles = [RayHandle(a, f"{self.role} {i}") for i, a in enumerate(actors)]
        try:
            ray.get([a.ping.remote() for a in actors], timeout=START_TIMEOUT_S)
        except LOST as exc:
            raise WorkerLostError(f"a {self.role} died while starting: {exc}") from exc
        except rex.RayTaskError as exc:  # the factory raised: the program's own error
            self.kill()
            raise exc.cause if isinstance(exc.cause, BaseException) else exc from None
        except rex.GetTimeoutError:
            self.kill()
            raise RecoveryError(
                f"Ray could not place the job's {self.role}s within {START_TIMEOUT_S:.0f} s: "
                "the cluster lacks the CPUs or custom resources they ask for (see ray_options)"
            ) from None

    @property
    def actors(self) -> list[Any]:
        return [h.actor for h in self.handles]

    def ping(self, timeout: float) -> list[str]:
        """Node id of every member; :class:`WorkerLostError` if one is gone or silent."""
        return resolve([a.ping.remote() for a in self.actors], f"{self.role} ping", timeout)

    def map(self, method: Method, args: Sequence[Sequence[Any]] | None = None, *,
            poll: Callable[[], None] | None = None,
            on_error: Callable[[], None] | None = None,
            overlap: Callable[[], None] | None = None) -> list[Any]:
        n = len(self.handles)
        args = [()] * n if args is None else list(args)
        pending = {h.actor.invoke.remote(method, *a): i
                   for i, (h, a) in enumerate(zip(self.handles, args, strict=True))}
        results: list[Any] = [None] * n
        errors: list[BaseException | None] = [None] * n
        alarmed = False
        if overlap is not None:
            overlap()
        while pending:
            # take answers as they come: the first error must wake the others (on_error)
            ready, _ = ray.wait(list(pending), num_returns=1,
                                timeout=POLL_S if poll is not None else None)
            for ref in ready:
                i = pending.pop(ref)
                try:
                    results[i] = own(resolve(ref, f"{self.role} {i}"))
                except BaseException as exc:  # noqa: BLE001 - raised below
                    errors[i] = exc
                    if not alarmed and on_error is not None:
                        alarmed = True
                        on_error()
            if poll is not None:
                try:
                    poll()
                except WorkerLostError as exc:
                    errors.append(exc)
                    break
        error = first_error(errors)
        if error is not None:
            raise error
        return results

    def kill(self) -> None:
        for handle in self.handles:
            try:
                ray.kill(handle.actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                pass

    def rebuild(self) -> None:
        self.kill()
        self._start()


PROBE_TIMEOUT_S = 3.0


def check_reachable(address: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Fail within seconds when nothing listens at a ``host:port`` (or ``ray://host:port``)
    address: ``ray.init`` itself retries for minutes before it gives up. ``auto`` and other
    forms are left to Ray."""
    import socket

    from ..errors import ConfigError

    target = address.removeprefix("ray://")
    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit():
        return
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        raise ConfigError(f"address {address!r}: nothing answers there ({exc}); start the "
                          "cluster first (ray start --head) or check host and port",
                          param="address") from None


@contextlib.contextmanager
def _loopback_node():
    """Start the local node as a one-machine node: every server it runs (GCS, raylet,
    object manager, workers, agents) then binds 127.0.0.1 only.

    ``ray.init(_node_ip_address="127.0.0.1")`` is not enough: Ray replaces a loopback node
    address with the machine's reachable one and binds its servers there. Ray takes the
    loopback address itself for a node that is not part of a cluster
    (``ray_constants.ENABLE_RAY_CLUSTER``, set from ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER``
    when Ray is imported); it is turned off here for the start only."""
    from ray._private import ray_constants

    saved = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved


class _Session:
    """A process-wide, reference-counted connection: the first job connects (or starts a
    local Ray at 127.0.0.1), the last one to leave shuts down what was started here."""

    lock = threading.Lock()
    users = 0
    owned = False

    @classmethod
    def enter(cls, address: str | None, cpus: int | None) -> None:
        with cls.lock:
            if cls.users == 0 and not ray.is_initialized():
                common = {"include_dashboard": False, "logging_level": logging.WARNING}
                if address:
                    check_reachable(address)
                    try:
                        ray.init(address=address, **common)
                    except (ConnectionError, ValueError) as exc:  # no cluster, bad form
                        why = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                        raise ConfigError(f"address {address!r}: {why}",
                                          param="address") from None
                else:
                    # address="local": a new instance even when another Ray runs here
                    with _loopback_node():
                        ray.init(address="local", num_cpus=cpus or os.cpu_count() or 1,
                                 **common)
                cls.owned = True
            cls.users += 1

    @classmethod
    def leave(cls) -> None:
        with cls.lock:
            cls.users -= 1
            if cls.users == 0 and cls.owned:
                ray.shutdown()
                cls.owned = False


class RayBackend(Backend):
    """Members as Ray actors on a local Ray (started for the job) or a cluster."""

    name = "ray"
    remote = True

    def __init__(self, address: str | None = None,
                 ray_options: dict[str, dict[str, Any]] | None = None,
                 cpus: int | None = None) -> None:
        self.address = address
        self.ray_options = ray_options or {}
        self.groups: list[RayGroup] = []
        _Session.enter(address, cpus)
        self._open = True

    def host(self, role: str, factories: Sequence[Factory], *, cpus: float = 0,
             concurrency: int = 1, near_driver: bool = False) -> RayGroup:
        options: dict[str, Any] = {"num_cpus": cpus, "max_concurrency": concurrency}
        if near_driver:
            node = ray.get_runtime_context().get_node_id()
            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node, soft=False)
        else:
            options["scheduling_strategy"] = "SPREAD"
        options.update(self.ray_options.get(role, {}))
        group = RayGroup(role, factories, options)
        self.groups.append(group)
        return group

    def share(self, value: Any) -> Any:
        """Small values travel inline as bytes frozen now (a put costs about a millisecond
        here, as much as the call); large ones go to the object store once."""
        data = ray.cloudpickle.dumps(value)
        return Frozen(data) if len(data) < INLINE_BYTES else ray.put(value)

    def close(self) -> None:
        for group in self.groups:
            group.kill()
        self.groups = []
        if self._open:
            self._open = False
            _Session.leave()
