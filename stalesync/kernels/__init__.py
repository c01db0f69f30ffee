"""Compiled (numba) hot loops, kept apart from orchestration code.

Every kernel is ``nogil=True`` so worker threads of the embedded runtime run them in parallel.

A kernel that travels to another process (a worker program captured in a closure and sent to
a Ray host) goes by name (:func:`_reduce_kernel`), so the other side uses its own module's
dispatcher with numba's on-disk cache. Numba's own reduction rebuilds a dispatcher from the
Python function without the cache: the receiving process then compiled every kernel again
(seconds each) before its first clock.
"""

from __future__ import annotations

import copyreg
import importlib
from typing import Any

from numba.core.registry import CPUDispatcher


def _kernel_named(module: str, qualname: str) -> Any:
    target: Any = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target


def _reduce_kernel(kernel: CPUDispatcher) -> Any:
    """By name when the kernel is its module's own (a module-level ``@njit``); else numba's
    reduction (a kernel made at run time, e.g. a GIL-holding twin)."""
    py = kernel.py_func
    try:
        if _kernel_named(py.__module__, py.__qualname__) is kernel:
            return _kernel_named, (py.__module__, py.__qualname__)
    except (ImportError, AttributeError):
        pass
    return kernel.__reduce__()


copyreg.pickle(CPUDispatcher, _reduce_kernel)
