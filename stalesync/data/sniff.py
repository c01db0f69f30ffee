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


def _is_number(field: str) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True


def numeric_table(path: PathLike) -> str | None:
    """What a file that the sniffer takes for text is when it is a table of numbers (a
    ratings or feature CSV, whitespace columns): ``"a CSV table of numbers (4 columns:
    userId, movieId, ...)"``; None when it is not one. A first line of names is a header;
    every other line of the first 20 must be two or more numbers, split by the same
    delimiter."""
    p = Path(path)
    if not p.is_file():
        return None
    with _open(p) as f:
        sample = f.read(1 << 16)
    head = sample.decode("utf-8", "replace").splitlines()
    if len(sample) == 1 << 16:
        head = head[:-1]  # the sample may end inside a line
    lines = [ln.strip() for ln in head if ln.strip()][:20]
    if not lines:
        return None
    for delimiter, kind in ((",", "CSV"), ("\t", "tab-separated"), (";", "CSV"),
                            (None, "whitespace-separated")):
        rows = [[x.strip().strip('"') for x in ln.split(delimiter)] for ln in lines]
        header = rows[0] if not all(_is_number(x) for x in rows[0]) else None
        data = rows[1:] if header is not None else rows
        width = len(rows[0])
        if (data and width >= 2 and all(len(r) == width for r in rows)
                and all(_is_number(x) for r in data for x in r)):
            names = f": {', '.join(header[:4])}{', ...' if width > 4 else ''}" if header else ""
            return f"a {kind} table of numbers ({width} columns{names})"
    return None
