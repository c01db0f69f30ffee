"""Saved models: one directory per model, written atomically, never pickled.

::

    <path>/
        model.json    format, version, estimator class, parameters, fitted values (JSON)
        arrays.npz    fitted arrays (loaded with allow_pickle=False)

Both files are written into a temporary directory beside ``path`` that is then renamed in
one step (:func:`stalesync.persist.files.atomic_directory`), so the pair always matches.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataFormatError
from .files import PathLike, atomic_directory, json_ready, pack_arrays, unpack_arrays, write_npz

FORMAT = "stalesync-model"
VERSION = 1


def save_model(path: PathLike, estimator: Any, arrays: dict[str, Any],
               info: dict[str, Any]) -> Path:
    path = Path(path)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "estimator": type(estimator).__name__,
        "params": json_ready(estimator.get_params(deep=False)),
        "info": json_ready(info),
    }
    flat = pack_arrays(arrays)
    with atomic_directory(path) as tmp:
        (tmp / "model.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
        write_npz(tmp / "arrays.npz", flat)
    return path


def load_model(path: PathLike, cls: type) -> tuple[dict[str, Any], dict[str, Any],
                                                    dict[str, Any]]:
    """(params, arrays, info) of a model of class ``cls`` saved at ``path``."""
    path = Path(path)
    try:
        meta = json.loads((path / "model.json").read_text(encoding="utf-8"))
        with np.load(path / "arrays.npz", allow_pickle=False) as z:
            flat = {name: z[name] for name in z.files}
    except FileNotFoundError as exc:
        raise DataFormatError(f"{path}: not a saved stalesync model "
                              f"({Path(exc.filename).name} missing)") from None
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise DataFormatError(f"{path}: cannot read the saved model ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise DataFormatError(f"{path}: not a saved stalesync model")
    if meta.get("version") != VERSION:
        raise DataFormatError(f"{path}: saved with model format {meta.get('version')}, "
                              f"this stalesync reads format {VERSION}")
    if meta.get("estimator") != cls.__name__:
        raise DataFormatError(f"{path}: holds a {meta.get('estimator')}, not a {cls.__name__}")
    params = meta.get("params")
    if not isinstance(params, dict):
        raise DataFormatError(f"{path}: model.json has no parameters")
    return params, unpack_arrays(flat), dict(meta.get("info") or {})
