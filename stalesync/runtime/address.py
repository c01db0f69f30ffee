"""A Ray cluster address checked before any work: its form (without Ray), then, for a run
on Ray, that Ray is installed and that a cluster answers there.

Forms: ``host:port`` (what ``ray start --head`` prints), ``ray://host:port`` (Ray Client),
``auto`` (the cluster started on this machine, or ``RAY_ADDRESS``) and ``local`` (a new
local Ray, as no address does). A bad form, a missing Ray, ``auto`` with no cluster
running and an address where nothing answers are one :class:`ConfigError` each, naming the
address, in a second; left to ``ray.init`` they are a ValueError, an ImportError, a
41-line ConnectionError or minutes of retries, after the data has loaded.
"""

from __future__ import annotations

import socket
from types import ModuleType

from ..errors import ConfigError

PROBE_TIMEOUT_S = 3.0  # seconds a probe of a cluster address waits for an answer

FORMS = "host:port (as `ray start --head` prints it), ray://host:port, auto or local"


def check_address_format(address: str) -> None:
    """A :class:`ConfigError` unless ``address`` has one of the :data:`FORMS`."""
    if not isinstance(address, str):
        raise ConfigError(f"address must be a string, got {address!r}", param="address")
    if address in ("auto", "local"):
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    host = host.strip("[]")  # an IPv6 host is written [::1]:6379
    if not sep or not host or any(c.isspace() or c in "/@" for c in host):
        raise ConfigError(f"address {address!r} is not a cluster address; give {FORMS}",
                          param="address")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"address {address!r}: the port {port!r} is not a number in "
                          f"1-65535; give {FORMS}", param="address")


def check_min_nodes(min_nodes: int, runtime: str, workers: int | None = None) -> None:
    """``min_nodes``: the fewest nodes a Ray job runs its workers on (the elastic floor)."""
    if isinstance(min_nodes, bool) or not isinstance(min_nodes, int) or min_nodes < 1:
        raise ConfigError(f"min_nodes must be a positive int, got {min_nodes!r}",
                          param="min_nodes")
    if min_nodes > 1 and runtime != "ray":
        raise ConfigError("min_nodes (the fewest nodes to run on) applies to the Ray runtime",
                          param="min_nodes")
    if workers is not None and min_nodes > workers:
        raise ConfigError(f"min_nodes ({min_nodes}) exceeds the workers ({workers}): a node "
                          "runs at least one worker", param="min_nodes")


def ray_module() -> ModuleType:
    """Ray, or a :class:`ConfigError` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError("runtime 'ray' needs Ray, which is not installed: pip install "
                          "'stalesync[ray]' (or run on the embedded runtime)",
                          param="runtime") from None
    return ray


def check_ray(address: str | None) -> None:
    """Before a run on Ray loads anything: Ray is installed and, for an ``address``, it has
    a valid form and a cluster answers there (``auto``: one is running). Nothing to check
    when no address is given (a local Ray is started) or this process is already connected
    (the run uses that session)."""
    ray = ray_module()
    if address is None or address == "local" or ray.is_initialized():
        return
    check_address_format(address)
    target = _resolve_auto() if address == "auto" else address
    if target is not None:
        check_reachable(target)


def _resolve_auto() -> str | None:
    """The ``host:port`` that ``auto`` stands for, or a :class:`ConfigError` when no cluster
    runs here; None where this Ray resolves it otherwise (left to ``ray.init``)."""
    try:
        from ray._private.services import canonicalize_bootstrap_address
    except ImportError:  # pragma: no cover - another Ray layout
        return None
    try:
        return canonicalize_bootstrap_address("auto")
    except ConnectionError:
        raise ConfigError(
            "address 'auto': no Ray cluster is running on this machine (none started by "
            "`ray start --head`, and RAY_ADDRESS is not set); start one, give its host:port, "
            "or leave the address out to start a local Ray for the run",
            param="address") from None
    except Exception:  # noqa: BLE001 - anything else is ray.init's to report
        return None



def check_reachable(address: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Fail within seconds when nothing listens at a ``host:port`` (or ``ray://host:port``)
    address: ``ray.init`` itself retries for minutes before it gives up. ``auto`` and other
    forms are left to Ray."""
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
