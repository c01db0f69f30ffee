"""The Ray backend: one host process per node, members as objects inside it.

A job places one :class:`NodeHost` actor on each node it uses (Bösen's one process per
machine). The members placed on a node (its workers, its server shards, the snapshot
coordinator on the driver's node) are built inside that node's host from their factories
(put in the object store once, so a member rebuilt after a loss is made from the same
bytes) and run there as threads: members of one node call each other directly, exactly as
on the embedded runtime, and only calls between nodes, and the driver's, are Ray actor
calls. A host is threaded (``max_concurrency``), so a shard serves a remote read while
another thread applies clocks. Members that need a process of their own (a
``torch.distributed`` rank: ``own_process=True``) each get a dedicated host.

Placement: a role's members go to the alive nodes that have the CPUs it asks for (at least
one) and the custom resources named in ``ray_options[role]["resources"]``, consecutive
members on one node, nodes used evenly; the coordinator (``near_driver``) on the driver's
node. With ``min_nodes`` (elastic floor), the job's workers wait up to
:data:`NODE_WAIT_S` for that many qualifying nodes, at the start and after a loss, and
the job then fails with a line saying so (logical workers never change: fewer nodes means more
worker threads per host, down to the floor).

Errors: a call whose actor (or any actor it called in turn) died raises
:class:`~stalesync.runtime.backend.WorkerLostError`; any other remote error is re-raised as
the original exception, as on the embedded backend.

Session: a job connects to ``address`` (probed first: nothing there fails in seconds, not
after Ray's minutes of retries) or starts a local Ray on loopback only, with the dashboard
off (:func:`_loopback_node`); a local Ray started here is shut down when the last job using
it ends. A job inside an existing session (``ray.init`` done by the caller) leaves it
running. The node hosts belong to the session: the next job of the process reuses them
(modules imported, kernels loaded).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..errors import ConfigError, RecoveryError

try:
    import ray
    import ray.exceptions as rex
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ConfigError("runtime='ray' needs Ray: pip install 'stalesync[ray]'") from exc

from .address import check_reachable
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
from .threads import LocalHandle

log = logging.getLogger("stalesync.ray")

START_TIMEOUT_S = 120.0  # members not placed by then: the cluster lacks resources
NODE_WAIT_S = 120.0  # below min_nodes: how long a job waits for nodes before it fails
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


def array_bytes(value: Any, depth: int = 0) -> int:
    """The bytes of the numpy arrays (and scipy sparse matrices) in ``value``, looking a
    few levels into containers and objects: a cheap lower bound of its pickled size."""
    if isinstance(value, np.ndarray):
        return value.nbytes
    if depth > 3:
        return 0
    if hasattr(value, "data") and hasattr(value, "indices") and hasattr(value, "nnz"):
        return array_bytes(value.data) + array_bytes(value.indices)  # scipy sparse
    if isinstance(value, dict):
        return sum(array_bytes(v, depth + 1) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(array_bytes(v, depth + 1) for v in value[:64])
    if hasattr(value, "__dict__"):
        return sum(array_bytes(v, depth + 1) for v in vars(value).values())
    return 0


class Frozen:
    """A value serialised when it was shared: every call that passes it sends those same
    bytes, and Ray's own deserialisation on the member's side turns them back into the
    value (they never leave this job: made by this driver, read by its own actors)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __reduce__(self):
        return (ray.cloudpickle.loads, (self.data,))


HOST_CONCURRENCY = 256  # calls a host serves at once: parked reads, runs, pushes, polls
DROP_GRACE_S = 2.0  # a dropped group's calls still running after this: the host is killed

_LOCAL: dict[tuple[str, int], Any] = {}  # (group, index) -> member, in a host's process


class NodeHost:
    """The process that holds a job's members on one node (Bösen's one process per machine).

    Members live in :data:`_LOCAL`; a :class:`NodeHandle` unpickled in this process to a
    member that lives here becomes a :class:`~.threads.LocalHandle`, so members on the
    same node call each other directly (a worker's client gets a
    :class:`~.links.LocalShardLink` to a shard on its node) and only calls between nodes
    (and the driver's) go through Ray. Every call runs on one of the actor's threads."""

    def __init__(self) -> None:
        self.running: dict[str, int] = {}
        self.lock = threading.Lock()

    def build(self, group: str, index: int, factory: Factory) -> str:
        _LOCAL[(group, index)] = factory()
        return self.ping()

    def invoke(self, group: str, index: int, method: Method, *args: Any) -> Any:
        member = _LOCAL.get((group, index))
        if member is None:
            raise WorkerLostError(f"{group} {index}: not on this host any more")
        with self.lock:
            self.running[group] = self.running.get(group, 0) + 1
        try:
            return invoke(member, method, args)
        finally:
            with self.lock:
                self.running[group] -= 1

    def drop(self, group: str, grace_s: float = DROP_GRACE_S) -> int:
        """Forget a group's members; how many of its calls are still running after
        ``grace_s`` (a member stuck in a call)."""
        for key in [k for k in _LOCAL if k[0] == group]:
            del _LOCAL[key]
        deadline = time.monotonic() + grace_s
        while self.running.get(group, 0) and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.running.pop(group, 0)

    def holding(self) -> int:
        """Members held plus calls running (0: nothing of any job is left here)."""
        with self.lock:
            return len(_LOCAL) + sum(self.running.values())

    def ping(self) -> str:
        return ray.get_runtime_context().get_node_id()


class NodeHandle:
    """A member in a :class:`NodeHost`; picklable, and local where the member is."""

    __slots__ = ("host", "group", "index", "what")

    def __init__(self, host: Any, group: str, index: int, what: str) -> None:
        self.host, self.group, self.index, self.what = host, group, index, what

    def submit(self, method: Method, *args: Any) -> Any:
        return self.host.invoke.remote(self.group, self.index, method, *args)

    def call(self, method: Method, *args: Any) -> RayFuture:
        return RayFuture(self.submit(method, *args), self.what)

    def cast(self, method: Method, *args: Any) -> None:
        self.submit(method, *args)  # fire and forget

    def __reduce__(self):
        return (handle_for, (self.host, self.group, self.index, self.what))


def handle_for(host: Any, group: str, index: int, what: str) -> NodeHandle | LocalHandle:
    """The handle a process should use for a member: direct when it lives here."""
    member = _LOCAL.get((group, index))
    return LocalHandle(member) if member is not None else NodeHandle(host, group, index, what)


def alive_nodes() -> list[dict[str, Any]]:
    return [n for n in ray.nodes() if n.get("Alive")]


def eligible_nodes(role: str, cpus: float, options: dict[str, Any], wait: bool = True,
                   at_least: int = 1) -> list[str]:
    """Nodes a member of ``role`` may live on: alive, with the CPUs it asks for (at least
    one: a shard lives with workers, as in Bösen) and every custom resource named in
    ``ray_options[role]["resources"]``; the driver's node first, then by id. Waits up to
    :data:`START_TIMEOUT_S` for one (a cluster still starting), or :data:`NODE_WAIT_S` for
    ``at_least`` of them (a lost node's replacement under ``min_nodes``)."""
    needs = dict(options.get("resources") or {})
    needs["CPU"] = max(float(options.get("num_cpus", cpus)), 1.0)
    here = ray.get_runtime_context().get_node_id()
    patience = NODE_WAIT_S if at_least > 1 else START_TIMEOUT_S
    deadline = time.monotonic() + patience
    while True:
        ids = sorted((n["NodeID"] for n in alive_nodes()
                      if all(n["Resources"].get(k, 0) >= v for k, v in needs.items())),
                     key=lambda node: (node != here, node))
        if len(ids) >= at_least or not wait:
            return ids
        if time.monotonic() > deadline:
            if at_least > 1:
                raise RecoveryError(
                    f"the job's {role}s need at least {at_least} nodes (min_nodes) and "
                    f"{len(ids)} qualified for {patience:.0f} s: start another node "
                    "(ray start --address HEAD:PORT) or lower min_nodes")
            raise RecoveryError(
                f"Ray could not place the job's {role}s within {START_TIMEOUT_S:.0f} s: no "
                f"alive node has {needs} (see ray_options)")
        time.sleep(0.5)


def spread(nodes: Sequence[str], count: int) -> list[str]:
    """Member i's node: consecutive members share a node, nodes used evenly."""
    return [nodes[i * len(nodes) // count] for i in range(count)] if count else []


class Hosts:
    """The job's node hosts, one per node, started when a member is first placed there and
    replaced when found dead (after a node or process loss)."""

    def __init__(self) -> None:
        self.by_node: dict[str, Any] = {}

    def on(self, node: str) -> Any:
        host = self.by_node.get(node)
        if host is not None:
            try:
                ray.get(host.ping.remote(), timeout=PING_S)
                return host
            except Exception:  # noqa: BLE001 - dead, silent or of an ended session
                self.by_node.pop(node, None)
                kill_actor(host)
        host = start_host(node)
        self.by_node[node] = host
        return host

    def forget(self, host: Any) -> None:
        for node, known in list(self.by_node.items()):
            if known == host:
                del self.by_node[node]
        kill_actor(host)

    def close(self) -> None:
        for host in self.by_node.values():
            kill_actor(host)
        self.by_node = {}


PING_S = 10.0


def start_host(node: str | None, options: dict[str, Any] | None = None) -> Any:
    """A :class:`NodeHost` actor pinned to ``node`` (or placed by ``options``)."""
    opts: dict[str, Any] = {"num_cpus": 0, "max_concurrency": HOST_CONCURRENCY}
    if node is not None:
        opts["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node, soft=False)
    opts.update(options or {})
    return ray.remote(NodeHost).options(**opts).remote()


def kill_actor(actor: Any) -> None:
    try:
        ray.kill(actor, no_restart=True)
    except Exception:  # noqa: BLE001 - already gone
        pass


class NodeGroup(Group):
    """A role's members, each in the host of the node it was placed on; or, for members
    that need a process of their own (a ``torch.distributed`` rank), each in a dedicated
    host."""

    def __init__(self, role: str, factories: Sequence[Factory], hosts: Hosts,
                 place: Callable[..., list[str]], own_process: dict[str, Any] | None) -> None:
        self.role = role
        self.hosts = hosts
        self.place = place
        self.own_process = own_process
        self.factory_refs = [ray.put(f) for f in factories]
        self.handles: list[NodeHandle] = []
        self.key = ""
        self.placed: list[str] = []
        self._start()

    def _start(self) -> None:
        self.key = f"{self.role}-{uuid.uuid4().hex[:12]}"
        n = len(self.factory_refs)
        if self.own_process is not None:
            hosts = [start_host(None, self.own_process) for _ in range(n)]
            self.placed = []
        else:
            self.placed = self.place()
            hosts = [self.hosts.on(node) for node in self.placed]
        self.handles = [NodeHandle(h, self.key, i, f"{self.role} {i}")
                        for i, h in enumerate(hosts)]
        try:
            ray.get([h.host.build.remote(self.key, i, ref)
                     for i, (h, ref) in enumerate(zip(self.handles, self.factory_refs,
                                                         strict=True))],
                    timeout=START_TIMEOUT_S)
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
        """Each member's host actor (members on one node share it)."""
        return [h.host for h in self.handles]

    def nodes(self) -> list[str] | None:
        return list(self.placed) or None

    def could_spread(self) -> bool:
        used = set(self.placed)
        if not used or len(used) >= len(self.handles):
            return False
        return bool(set(self.place(wait=False)) - used)

    def ping(self, timeout: float) -> list[str]:
        """Node id of every member; :class:`WorkerLostError` if one is gone or silent."""
        hosts = {id(h.host): h.host for h in self.handles}
        answers = resolve([h.ping.remote() for h in hosts.values()], f"{self.role} ping",
                          timeout)
        nodes = dict(zip(hosts, answers, strict=True))
        return [nodes[id(h.host)] for h in self.handles]

    def map(self, method: Method, args: Sequence[Sequence[Any]] | None = None, *,
            poll: Callable[[], None] | None = None,
            on_error: Callable[[], None] | None = None,
            overlap: Callable[[], None] | None = None) -> list[Any]:
        n = len(self.handles)
        args = [()] * n if args is None else list(args)
        pending = {h.submit(method, *a): i
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
        """Dedicated hosts are killed; shared hosts forget the members, and a host where
        one is still stuck in a call is killed (it is replaced when next needed)."""
        hosts = {id(h.host): h.host for h in self.handles}
        if self.own_process is not None:
            for host in hosts.values():
                kill_actor(host)
            return
        drops = {key: host.drop.remote(self.key) for key, host in hosts.items()}
        for key, ref in drops.items():
            try:
                stuck = ray.get(ref, timeout=DROP_GRACE_S + PING_S)
            except (*LOST, rex.GetTimeoutError, rex.RayTaskError):
                stuck = 1
            if stuck:
                self.hosts.forget(hosts[key])

    def rebuild(self) -> None:
        self.kill()
        self._start()


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


TOKEN_HINT = (
    "the cluster requires its authentication token and this process has none or another "
    "one: copy the token of the head (`ray get-auth-token` there) to ~/.ray/auth_token "
    "here, or point RAY_AUTH_TOKEN_PATH at a file holding it (docs/ray.md)")


def connect_failure(address: str, exc: BaseException) -> str:
    """One line for a failed connection: a missing or wrong token said as such (Ray's own
    message is a page about auth modes), else the first line of Ray's message."""
    chain, seen = [], exc
    while seen is not None and len(chain) < 5:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    if any(isinstance(e, rex.AuthenticationError) or "InvalidAuthToken" in str(e)
           for e in chain):
        return f"address {address!r}: {TOKEN_HINT}"
    why = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return f"address {address!r}: {why}"


def same_cluster(address: str, connected: str) -> bool:
    """Whether ``address`` names the cluster whose GCS is at ``connected`` (Ray reports
    the machine's address for a cluster reached through loopback; ``auto`` and Ray Client
    ``ray://`` addresses name whatever the process is connected to)."""
    if address == "auto" or address.startswith("ray://"):
        return True

    def endpoint(text: str) -> tuple[str, str]:
        host, _, port = text.rpartition(":")
        try:
            ip = socket.gethostbyname(host)
        except OSError:
            ip = host
        if ip.startswith("127.") or ip == ray.util.get_node_ip_address():
            ip = "this machine"
        return ip, port

    return endpoint(address) == endpoint(connected)


class _Session:
    """A process-wide, reference-counted connection: the first job connects (or starts a
    local Ray at 127.0.0.1), the last one to leave shuts down what was started here.

    The node hosts belong to the session, not to a job: the next job of this process
    finds them started, their modules imported and their kernels loaded (a job drops its
    members when it ends). They end with a session started here, or with the caller's own
    session (``ray.shutdown``, or this process's exit)."""

    lock = threading.Lock()
    users = 0
    owned = False
    hosts: Hosts | None = None
    hosts_of: str | None = None  # the Ray job (one per ray.init) the hosts belong to

    @classmethod
    def enter(cls, address: str | None, cpus: int | None) -> Hosts:
        with cls.lock:
            cls._connect(address, cpus)
            cls.users += 1
            job = ray.get_runtime_context().get_job_id()
            if cls.hosts is None or cls.hosts_of != job:
                cls.hosts, cls.hosts_of = Hosts(), job
            return cls.hosts

    @classmethod
    def _connect(cls, address: str | None, cpus: int | None) -> None:
        if address and ray.is_initialized():
            connected = ray.get_runtime_context().gcs_address
            if not same_cluster(address, connected):
                raise ConfigError(
                    f"address {address!r}: this process is already connected to the Ray "
                    f"cluster at {connected}; pass that address, or call ray.shutdown() "
                    "first", param="address")
        if cls.users == 0 and not ray.is_initialized():
            common = {"include_dashboard": False, "logging_level": logging.WARNING}
            if address:
                check_reachable(address)
                try:
                    ray.init(address=address, **common)
                except (ConnectionError, ValueError, rex.AuthenticationError) as exc:
                    raise ConfigError(connect_failure(address, exc), param="address") from None
            else:
                # address="local": a new instance even when another Ray runs here
                with _loopback_node():
                    ray.init(address="local", num_cpus=cpus or os.cpu_count() or 1,
                             **common)
            cls.owned = True

    @classmethod
    def leave(cls) -> None:
        with cls.lock:
            cls.users -= 1
            if cls.users == 0 and cls.owned:
                if cls.hosts is not None:
                    cls.hosts.close()
                cls.hosts = cls.hosts_of = None
                ray.shutdown()
                cls.owned = False


class RayBackend(Backend):
    """Members as Ray actors on a local Ray (started for the job) or a cluster."""

    name = "ray"
    remote = True

    def __init__(self, address: str | None = None,
                 ray_options: dict[str, dict[str, Any]] | None = None,
                 cpus: int | None = None, min_nodes: int = 1) -> None:
        self.address = address
        self.ray_options = ray_options or {}
        self.min_nodes = min_nodes
        self.groups: list[NodeGroup] = []
        self.hosts = _Session.enter(address, cpus)
        self._open = True

    def host(self, role: str, factories: Sequence[Factory], *, cpus: float = 0,
             concurrency: int = 1, near_driver: bool = False,
             own_process: bool = False, workers: bool = False) -> NodeGroup:
        options = self.ray_options.get(role, {})
        count = len(factories)
        floor = min(self.min_nodes, count) if workers else 1

        def place(wait: bool = True) -> list[str]:
            if near_driver:
                return [ray.get_runtime_context().get_node_id()] * count
            return spread(eligible_nodes(role, cpus, options, wait, floor), count)

        dedicated = None
        if own_process:
            dedicated = {"num_cpus": cpus, "scheduling_strategy": "SPREAD", **options}
        group = NodeGroup(role, factories, self.hosts, place, dedicated)
        self.groups.append(group)
        return group

    def share(self, value: Any) -> Any:
        """Small values travel inline as bytes frozen now (a put costs about a millisecond
        here, as much as the call); large ones go to the object store once (without being
        serialised first just to learn their size: a data partition is hundreds of MB)."""
        if array_bytes(value) >= INLINE_BYTES:
            return ray.put(value)
        data = ray.cloudpickle.dumps(value)
        return Frozen(data) if len(data) < INLINE_BYTES else ray.put(value)

    def close(self) -> None:
        for group in self.groups:
            group.kill()
        self.groups = []
        if self._open:
            self._open = False
            _Session.leave()
