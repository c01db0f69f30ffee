"""The apps: each a model, its kernels and a worker program on the shared base.

An app package exports its estimators lazily (:func:`lazy_exports`): a Ray actor that runs
a worker program imports the package of its worker module, and should not pay for
scikit-learn and the estimator code (over a second per process) that it never uses.
"""

from __future__ import annotations

import pkgutil
from collections.abc import Callable
from importlib import import_module
from pathlib import Path
from typing import Any


def app_names() -> tuple[str, ...]:
    """Every app: each sub-package with a ``cli`` module (its ``COMMAND``), sorted. Adding
    an app is adding its package; nothing else lists the apps."""
    here = [str(Path(__file__).parent)]
    return tuple(sorted(
        m.name for m in pkgutil.iter_modules(here)
        if m.ispkg and (Path(here[0]) / m.name / "cli.py").is_file()))


def lazy_exports(package: str, where: dict[str, str]) -> tuple[Callable[[str], Any], list[str]]:
    """``(__getattr__, __all__)`` for a package whose names ``where`` maps to the submodule
    defining each (``{"LDA": "model"}``); a name is imported on first use."""

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(import_module(f"{package}.{where[name]}"), name)

    return __getattr__, sorted(where)
