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
from ..persist.files import atomic_write_bytes

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


def scaled_images(X: np.ndarray) -> np.ndarray:
    """8-bit pixels (0-255, IDX type 0x08) as float32 in [0, 1], as the built-in
    Fashion-MNIST is given to every app; other types as they are. A network fed raw
    0-255 pixels diverges at the default step size."""
    if X.dtype == np.uint8:
        return X.astype(np.float32) / np.float32(255.0)
    return X


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
        name = images.name.replace("images", "labels").replace("idx3", "idx1")
        base = name.removesuffix(".gz")
        guesses = [images.with_name(n) for n in (name, base, base + ".gz")]
        labels = next((g for g in guesses if g != images and g.is_file()), None)
    if labels is None:
        return X, None
    y = read_idx(labels)
    if y.ndim != 1:
        raise DataFormatError(f"{labels}: a label file has 1 dimension, got {y.ndim}")
    if y.shape[0] != X.shape[0]:
        raise DataFormatError(f"{images} holds {X.shape[0]} images but {labels} holds "
                              f"{y.shape[0]} labels")
    return X, y


SPLIT_PREFIXES = {"train": ("train",), "test": ("t10k", "test")}


def image_files(folder: str | os.PathLike) -> dict[str, Path]:
    """The IDX image files in ``folder`` (``*images*idx3*ubyte[.gz]``, as MNIST and
    Fashion-MNIST name them), by name without ``.gz``; where a file is there both
    compressed and not, the uncompressed one."""
    found: dict[str, Path] = {}
    for f in sorted(Path(folder).iterdir()):
        base = f.name.removesuffix(".gz")
        key = base.lower()
        if "images" in key and "idx3" in key and key.endswith("ubyte") and f.is_file():
            if base not in found or not f.name.endswith(".gz"):
                found[base] = f
    return found


def folder_images(folder: str | os.PathLike, split: str = "train") -> Path | None:
    """The images file of ``split`` (``train``: ``train-*``; ``test``: ``t10k-*`` or
    ``test-*``) in a folder holding an MNIST-style IDX set; the only one if there is one;
    None if there is none. Several with none of the split's name, or more than one with
    it, is an error listing them."""
    files = image_files(folder)
    if len(files) <= 1:
        return next(iter(files.values()), None)
    picked = [f for base, f in files.items() if base.lower().startswith(SPLIT_PREFIXES[split])]
    if len(picked) == 1:
        return picked[0]
    raise DataFormatError(f"{folder}: a folder holding {len(files)} IDX image files "
                          f"({', '.join(f.name for f in files.values())}) and not one "
                          f"{split} set; give the images file itself")


def folder_test_images(folder: str | os.PathLike) -> Path | None:
    """The test images of a folder that holds both a train and a test IDX set (MNIST's
    ``train-*`` and ``t10k-*``), else None."""
    files = image_files(folder)
    test = [f for base, f in files.items() if base.lower().startswith(SPLIT_PREFIXES["test"])]
    train = [f for base, f in files.items()
             if base.lower().startswith(SPLIT_PREFIXES["train"])]
    return test[0] if len(test) == 1 and len(train) == 1 else None
