"""Fashion-MNIST (Zalando, MIT licence): 60,000 + 10,000 grey 28x28 images, 10 classes.

Where it comes from, in order: the Debian package ``dataset-fashion-mnist`` if it is
installed (``/usr/share/datasets/fashion-mnist``); the stalesync cache
(``~/.cache/stalesync/fashion-mnist``); else the package is fetched with Debian's own client
(``apt-get download dataset-fashion-mnist``) and unpacked in Python (no root needed to
unpack). Every file is checked against a pinned SHA-256 of its decompressed contents, so the
original files from Zalando (https://github.com/zalandoresearch/fashion-mnist, ``data/fashion``)
placed in the cache directory are accepted too.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from ..persist.files import atomic_write_bytes
from .fetch import DatasetUnavailableError, cache_dir
from .idx import read_idx_pair, scaled_images

PACKAGE = "dataset-fashion-mnist"
INSTALLED = Path("/usr/share/datasets/fashion-mnist")
ORIGINAL = "https://github.com/zalandoresearch/fashion-mnist (data/fashion)"
FILES = {  # name: sha256 of the decompressed IDX bytes
    "train-images-idx3-ubyte.gz":
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte.gz":
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte.gz":
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte.gz":
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
SPLITS = {"train": "train", "test": "t10k"}


def _stamp(folder: Path) -> dict[str, list[int]]:
    return {name: [(folder / name).stat().st_size, (folder / name).stat().st_mtime_ns]
            for name in FILES}


def _verified(folder: Path) -> bool:
    """All four files present with the pinned contents (hashed once; then a stamp of their
    sizes and times in the cache says they were)."""
    stamps = cache_dir() / "fashion-mnist.verified.json"
    try:
        known = json.loads(stamps.read_text())
        if known.get(str(folder)) == _stamp(folder):
            return True
    except (OSError, ValueError):
        known = {}
    if not _hashes_match(folder):
        return False
    known[str(folder)] = _stamp(folder)
    atomic_write_bytes(stamps, json.dumps(known).encode())
    return True


def _hashes_match(folder: Path) -> bool:
    for name, digest in FILES.items():
        path = folder / name
        if not path.is_file():
            return False
        try:
            data = gzip.decompress(path.read_bytes())
        except (OSError, EOFError):
            return False
        if hashlib.sha256(data).hexdigest() != digest:
            return False
    return True


def _ar_members(data: bytes) -> dict[str, bytes]:
    """The members of a Debian package (an ``ar`` archive)."""
    if not data.startswith(b"!<arch>\n"):
        raise DatasetUnavailableError(f"{PACKAGE}: not a Debian package")
    out, pos = {}, 8
    while pos + 60 <= len(data):
        name = data[pos:pos + 16].decode().strip().rstrip("/")
        size = int(data[pos + 48:pos + 58].decode().strip())
        out[name] = data[pos + 60:pos + 60 + size]
        pos += 60 + size + (size % 2)
    return out


def _fetch_package(target: Path) -> None:
    with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
        try:
            proc = subprocess.run(["apt-get", "download", PACKAGE], cwd=tmp,
                                  capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise _unavailable(str(exc)) from None
        debs = list(Path(tmp).glob(f"{PACKAGE}_*.deb"))
        if proc.returncode != 0 or not debs:
            raise _unavailable((proc.stderr.strip().splitlines() or ["apt-get failed"])[-1])
        members = _ar_members(debs[0].read_bytes())
        payload = next((v for k, v in members.items() if k.startswith("data.tar")), None)
        if payload is None:
            raise _unavailable("the package has no data archive")
        staging = Path(tmp) / "files"
        staging.mkdir()
        with tarfile.open(fileobj=io.BytesIO(payload)) as tar:
            for name in FILES:
                member = tar.extractfile(f"./usr/share/datasets/fashion-mnist/{name}")
                if member is None:
                    raise _unavailable(f"{name} is missing from the package")
                (staging / name).write_bytes(member.read())
        if not _hashes_match(staging):
            raise DatasetUnavailableError(f"{PACKAGE}: checksum mismatch; refusing to use it")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)


def _unavailable(why: str) -> DatasetUnavailableError:
    return DatasetUnavailableError(
        f"could not fetch Fashion-MNIST ({why}). Install the Debian package "
        f"({PACKAGE}), or put the four files {', '.join(FILES)} from {ORIGINAL} into "
        f"{cache_dir() / 'fashion-mnist'}.")


def fashion_mnist_dir() -> Path:
    """A directory holding the four verified files (fetched once if needed)."""
    if _verified(INSTALLED):
        return INSTALLED
    cached = cache_dir() / "fashion-mnist"
    if not _verified(cached):
        _fetch_package(cached)
    return cached


def load_fashion_mnist(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """``(images as float32 rows scaled to [0, 1], labels)`` of ``split`` (train or test)."""
    if split not in SPLITS:
        raise DatasetUnavailableError(f"Fashion-MNIST has splits {tuple(SPLITS)}, not {split!r}")
    folder = fashion_mnist_dir()
    stem = SPLITS[split]
    X, y = read_idx_pair(folder / f"{stem}-images-idx3-ubyte.gz",
                         folder / f"{stem}-labels-idx1-ubyte.gz")
    return scaled_images(X), y.astype(np.int64)
