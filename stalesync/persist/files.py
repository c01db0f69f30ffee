"""Files written so that nothing is ever half-written, and output paths checked up front.

Every output (run records, plots, saved models, snapshots) is written to a temporary name
beside its destination and renamed into place in one step. A command checks every output
path with :func:`check_output_path` *before* it loads data or starts work, so a run never
fails at its end because of where it was asked to write.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..errors import ConfigError, DataFormatError

PathLike = str | os.PathLike

# what ``np.load`` / ``scipy.sparse.load_npz`` raise on a damaged or foreign .npz (found by
# fuzzing: an empty file is an EOFError, a cut member a zlib.error or BadZipFile, a flipped
# flag bit "encrypted" or "compression method" a RuntimeError / NotImplementedError)
NPZ_ERRORS = (OSError, ValueError, KeyError, EOFError, RuntimeError, zipfile.BadZipFile,
              zlib.error, struct.error)


def check_output_path(path: PathLike, what: str, *, suffixes: Sequence[str] | None = None,
                      directory: bool = False) -> Path:
    """``path`` resolved, or a :class:`ConfigError` naming ``what`` (e.g. ``--plot``).

    The parent directory must exist and accept a new file (tried for real: this catches
    read-only mounts and ``/proc``); a file output must not be an existing directory; a
    directory output must not be an existing file; ``suffixes`` restricts the extension.
    Nothing is created."""
    p = Path(path).expanduser()
    if str(path) == "" or p.name in ("", ".", ".."):
        raise ConfigError(f"{what}: {str(path)!r} is not a usable path")
    if directory and p.exists() and not p.is_dir():
        raise ConfigError(f"{what}: {p} exists and is not a directory")
    if not directory and p.is_dir():
        raise ConfigError(f"{what}: {p} is a directory; give a file name")
    if suffixes is not None and p.suffix.lower() not in suffixes:
        raise ConfigError(f"{what}: cannot write {p.suffix or 'a file without extension'} "
                          f"({p}); use one of {', '.join(suffixes)}")
    parent = p.parent.resolve()
    if not parent.is_dir():
        raise ConfigError(f"{what}: directory {parent} does not exist (create it first)")
    try:
        fd, probe = tempfile.mkstemp(prefix=".stalesync-probe.", dir=parent)
    except OSError as exc:
        raise ConfigError(f"{what}: cannot write in {parent} ({exc.strerror})") from None
    os.close(fd)
    os.unlink(probe)
    return p


def umask() -> int:
    """The process's umask, read without changing it where the system shows it (Linux's
    ``/proc/self/status``); elsewhere set and put back at once."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def output_mode(path: PathLike | None = None, *, directory: bool = False) -> int:
    """The permissions an output gets: those of the ``path`` it replaces, if any, else what
    ``open`` / ``mkdir`` would give a new one under the user's umask (0644 / 0755 under
    the usual 022). ``mkstemp`` and ``mkdtemp`` make 0600 / 0700, private to the user."""
    if path is not None:
        try:
            return Path(path).stat().st_mode & 0o7777
        except OSError:
            pass
    return (0o777 if directory else 0o666) & ~umask()


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to a temp file beside ``path`` and rename it: never half-written."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, output_mode(path))
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_directory(path: PathLike) -> Iterator[Path]:
    """Fill a temp directory beside ``path``; on success it replaces ``path`` in one rename
    (an older ``path`` is moved aside first and deleted after). On error nothing changes."""
    path = Path(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        os.chmod(tmp, output_mode(path, directory=True))
        yield tmp
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / path.name)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (best effort: not every filesystem allows it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_SPARSE = "__csr__"  # a CSR matrix is stored as <name>__csr__{data,indices,indptr,shape}


def pack_arrays(arrays: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Arrays to write to an ``.npz``: a scipy sparse matrix becomes four plain arrays
    (``<name>__csr__{data,indices,indptr,shape}``), so nothing needs pickle."""
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


def unpack_arrays(flat: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """The inverse of :func:`pack_arrays`."""
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


def write_npz(path: PathLike, arrays: Mapping[str, Any]) -> None:
    """An ``.npz`` that ``np.load(allow_pickle=False)`` reads, written without pickle and
    synced to disk; any key works (no clash with ``np.savez``'s own arguments). The one
    ``.npz`` writer of snapshots and saved models (write it inside a temp directory or
    file that is renamed into place)."""
    with open(path, "wb") as f:
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for key, arr in arrays.items():
                with zf.open(f"{key}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.asanyarray(arr), allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())


def json_ready(value: Any) -> Any:
    """``value`` with every numpy scalar and array turned into plain Python (recursively
    through dicts, lists and tuples): what ``json.dumps`` takes. The one numpy-to-JSON
    conversion of snapshots, checkpoints, saved models and run records."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    return value


def write_json(path: PathLike, obj: Any) -> None:
    """``obj`` as indented JSON (numpy values converted), synced to disk; for files inside
    a directory that is renamed into place (:func:`atomic_directory`)."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(json_ready(obj), f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
