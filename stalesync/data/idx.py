"""The IDX format of MNIST and Fashion-MNIST (gzip-compressed or not).

Layout: two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
0x0D float32, 0x0E float64), the number of dimensions, each dimension as a big-endian
uint32, then the values, big-endian, in C order. Every field is checked, so a damaged file
is an error naming the file and the byte offset, never a silently wrong array.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataFormatError
from ..files import atomic_write_bytes

TYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
         0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
CODES = {np.dtype(v).newbyteorder("=").str: k for k, v in TYPES.items()}
MAX_BYTES = 8 << 30  # refuse headers that claim more than this


def _raw(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataFormatError(f"{path}: cannot read ({exc.strerror})") from None
    if data[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataFormatError(f"{path}: damaged gzip data ({exc})") from None
    return data


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """The array stored in an IDX file (native byte order)."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"{path}: no such file")
    data = _raw(path)
    if len(data) < 4:
        raise DataFormatError(f"{path}: {len(data)} bytes is too short for an IDX header")
    if data[0] != 0 or data[1] != 0:
        raise DataFormatError(f"{path}, offset 0: bad magic number {data[:4].hex()} "
                              "(an IDX file starts with two zero bytes)")
    if data[2] not in TYPES:
        raise DataFormatError(f"{path}, offset 2: unknown IDX type code 0x{data[2]:02x}")
    ndim = data[3]
    if ndim == 0:
        raise DataFormatError(f"{path}, offset 3: an IDX array needs at least 1 dimension")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataFormatError(f"{path}: truncated header ({len(data)} of {header} bytes)")
    dims = tuple(int(x) for x in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = TYPES[data[2]]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if expected > MAX_BYTES:
        raise DataFormatError(f"{path}, offset 4: dimensions {dims} claim {expected} bytes")
    got = len(data) - header
    if got != expected:
        what = "truncated" if got < expected else "has trailing bytes"
        raise DataFormatError(f"{path}, offset {header}: payload {what}: {got} bytes, "
                              f"dimensions {dims} need {expected}")
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, arr: np.ndarray) -> None:
    """Write ``arr`` as IDX (gzip-compressed when the name ends in ``.gz``)."""
    arr = np.ascontiguousarray(arr)
    code = CODES.get(arr.dtype.newbyteorder("=").str)
    if code is None:
        raise DataFormatError(f"IDX cannot hold dtype {arr.dtype}")
    header = bytes([0, 0, code, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    payload = header + arr.astype(TYPES[code]).tobytes()
    if str(path).endswith(".gz"):
        payload = gzip.compress(payload)
    atomic_write_bytes(path, payload)


def read_idx_pair(images: str | os.PathLike,
                  labels: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Images as rows (n x pixels) and their labels. ``labels`` defaults to the file beside
    ``images`` named with ``labels`` for ``images`` and ``idx1`` for ``idx3``, if it exists."""
    images = Path(images)
    X = read_idx(images)
    if X.ndim < 2:
        raise DataFormatError(f"{images}: an image file has >= 2 dimensions, got {X.ndim}")
    X = X.reshape(X.shape[0], -1)
    if labels is None:
        guess = images.with_name(images.name.replace("images", "labels").replace("idx3",
                                                                                 "idx1"))
        labels = guess if guess != images and guess.is_file() else None
    if labels is None:
        return X, None
    y = read_idx(labels)
    if y.ndim != 1:
        raise DataFormatError(f"{labels}: a label file has 1 dimension, got {y.ndim}")
    if y.shape[0] != X.shape[0]:
        raise DataFormatError(f"{images} holds {X.shape[0]} images but {labels} holds "
                              f"{y.shape[0]} labels")
    return X, y
