"""Saved models: one directory per model, written atomically, never pickled.

::

    <path>/
        model.json    format, version, estimator class, parameters, fitted values (JSON)
        arrays.npz    fitted arrays (loaded with allow_pickle=False)

Both files are written into a temporary directory beside ``path`` that is then renamed in
one step (:func:`stalesync.files.atomic_directory`), so the pair always matches.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from .errors import DataFormatError
from .files import PathLike, atomic_directory

FORMAT = "stalesync-model"
VERSION = 1
_SPARSE = "__csr__"  # a CSR matrix is stored as <name>__csr__{data,indices,indptr,shape}


def _to_json(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): _to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_json(v) for v in value]
    return value


def _flatten_arrays(arrays: dict[str, Any]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for name, value in arrays.items():
        if sp.issparse(value):
            csr = sp.csr_matrix(value)
            out[f"{name}{_SPARSE}data"] = csr.data
            out[f"{name}{_SPARSE}indices"] = csr.indices
            out[f"{name}{_SPARSE}indptr"] = csr.indptr
            out[f"{name}{_SPARSE}shape"] = np.asarray(csr.shape, dtype=np.int64)
        else:
            arr = np.asarray(value)
            if arr.dtype.kind not in "biufcUS":
                raise DataFormatError(f"cannot save {name!r} of dtype {arr.dtype} (no pickle)")
            out[name] = arr
    return out


def _unflatten_arrays(flat: dict[str, np.ndarray]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    sparse: dict[str, dict[str, np.ndarray]] = {}
    for key, arr in flat.items():
        if _SPARSE in key:
            name, part = key.split(_SPARSE)
            sparse.setdefault(name, {})[part] = arr
        else:
            out[key] = arr
    for name, parts in sparse.items():
        out[name] = sp.csr_matrix((parts["data"], parts["indices"], parts["indptr"]),
                                  shape=tuple(int(x) for x in parts["shape"]))
    return out


def save_model(path: PathLike, estimator: Any, arrays: dict[str, Any],
               info: dict[str, Any]) -> Path:
    path = Path(path)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "estimator": type(estimator).__name__,
        "params": _to_json(estimator.get_params(deep=False)),
        "info": _to_json(info),
    }
    flat = _flatten_arrays(arrays)
    with atomic_directory(path) as tmp:
        (tmp / "model.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
        with open(tmp / "arrays.npz", "wb") as f:
            np.savez(f, **flat)
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
    return params, _unflatten_arrays(flat), dict(meta.get("info") or {})
