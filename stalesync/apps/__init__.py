"""The apps: each a model, its kernels and a worker program on the shared base.

An app package exports its estimators lazily (:func:`lazy_exports`): a Ray actor that runs
a worker program imports the package of its worker module, and should not pay for
scikit-learn and the estimator code (over a second per process) that it never uses.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any


def lazy_exports(package: str, where: dict[str, str]) -> tuple[Callable[[str], Any], list[str]]:
    """``(__getattr__, __all__)`` for a package whose names ``where`` maps to the submodule
    defining each (``{"LDA": "model"}``); a name is imported on first use."""

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(import_module(f"{package}.{where[name]}"), name)

    return __getattr__, sorted(where)
