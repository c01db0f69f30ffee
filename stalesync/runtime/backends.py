"""The backends by runtime name: the one place that knows them all.

``embedded`` (threads, :mod:`.threads`) is always there; ``ray`` (:mod:`.ray_backend`) is
imported only when asked for, since Ray is an optional dependency.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .address import check_min_nodes
from .backend import Backend
from .threads import ThreadBackend


def _ray(address: str | None, ray_options: dict[str, dict[str, Any]] | None,
         cpus: int | None, min_nodes: int) -> Backend:
    from .ray_backend import RayBackend  # optional dependency: only when a run asks for Ray

    return RayBackend(address=address, ray_options=ray_options, cpus=cpus,
                      min_nodes=min_nodes)


def _embedded(address: str | None, ray_options: dict[str, dict[str, Any]] | None,
              cpus: int | None, min_nodes: int) -> Backend:
    return ThreadBackend()  # the Ray-only settings were checked against the runtime before


BACKENDS: dict[str, Callable[..., Backend]] = {"embedded": _embedded, "ray": _ray}


def make_backend(runtime: str, *, address: str | None = None,
                 ray_options: dict[str, dict[str, Any]] | None = None,
                 cpus: int | None = None, min_nodes: int = 1) -> Backend:
    """The backend of a runtime name (``min_nodes``: the fewest nodes a role of that many
    members is placed on, see :mod:`.ray_backend`)."""
    check_min_nodes(min_nodes, runtime)
    return BACKENDS[runtime](address, ray_options, cpus, min_nodes)
