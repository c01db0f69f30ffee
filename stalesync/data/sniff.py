"""Guessing a bag-of-words file's format from its name and first lines."""

from __future__ import annotations

import re
from pathlib import Path

from .scan import PathLike, _open, strip_gz

_PAIR = re.compile(r"^\d+:\d+$")


def sniff_format(path: PathLike) -> str:
    """Guess the format from the file name, then from the first lines of the content."""
    p = Path(path)
    if p.is_dir():
        return "text"
    name = strip_gz(p.name).lower()
    if name.startswith("docword."):
        return "uci"
    suffix = Path(name).suffix
    by_suffix = {".ldac": "ldac", ".lda-c": "ldac", ".svm": "libsvm", ".libsvm": "libsvm",
                 ".svmlight": "libsvm", ".npz": "npz"}
    if suffix in by_suffix:
        return by_suffix[suffix]
    with _open(p) as f:
        head = f.read(1 << 16).decode("utf-8", "replace").splitlines()[:20]
    return _sniff_lines([ln.split() for ln in head if ln.strip()])


def _sniff_lines(rows: list[list[str]]) -> str:
    if not rows:
        return "text"
    if len(rows) >= 3 and all(len(r) == 1 and r[0].isdigit() for r in rows[:3]):
        return "uci"
    pairs_ok = all(all(_PAIR.match(t) for t in r[1:]) for r in rows)
    if pairs_ok and all(r[0].isdigit() and int(r[0]) == len(r) - 1 for r in rows):
        return "ldac"
    if pairs_ok and all(":" not in r[0] for r in rows) and any(len(r) > 1 for r in rows):
        return "libsvm"
    return "text"
