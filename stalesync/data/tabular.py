"""Readers for regression/classification tables: libsvm/svmlight and CSV.

Both return ``(X, y)``. A malformed file raises :class:`~stalesync.errors.DataFormatError`
naming the file, the line and the problem, never a parser traceback.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ..errors import DataFormatError

_FEATURE = re.compile(r"^(qid:\S+|\d+:[^:\s]+)$")


def _first_bad_svmlight_line(path: Path) -> tuple[int, str]:
    """Locate the first line that is not ``label idx:value ...`` (only on the error path)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            label, *feats = line.split()
            try:
                float(label)
            except ValueError:
                return lineno, f"label {label!r} is not a number"
            last = -1
            for item in feats:
                if not _FEATURE.match(item):
                    return lineno, f"feature {item!r} is not 'index:value'"
                if item.startswith("qid:"):
                    continue
                idx, value = item.split(":")
                try:
                    float(value)
                except ValueError:
                    return lineno, f"value {value!r} of feature {idx} is not a number"
                if int(idx) <= last:
                    return lineno, f"feature indices must increase ({idx} after {last})"
                last = int(idx)
    return 0, ""


def load_svmlight(path: str | os.PathLike, n_features: int | None = None,
                  zero_based: bool | str = "auto") -> tuple[sp.csr_matrix, np.ndarray]:
    """Read a libsvm/svmlight file (``label idx:value ...``) into (CSR float64, labels)."""
    from sklearn.datasets import load_svmlight_file

    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"{path}: no such file")
    try:
        X, y = load_svmlight_file(str(path), n_features=n_features, zero_based=zero_based,
                                  dtype=np.float64)
    except (ValueError, TypeError, RuntimeError) as exc:
        lineno, why = _first_bad_svmlight_line(path)
        where = f"{path}, line {lineno}: {why}" if lineno else f"{path}: {exc}"
        raise DataFormatError(f"{where} (expected libsvm format 'label index:value ...')"
                              ) from None
    if X.shape[0] == 0:
        raise DataFormatError(f"{path}: no samples in the file")
    return X.tocsr(), np.asarray(y, dtype=np.float64)


def _is_number(field: str) -> bool:
    try:
        float(field)
        return True
    except ValueError:
        return False


def load_csv(path: str | os.PathLike, target: str | int | None = -1, delimiter: str = ","
             ) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a numeric CSV into (X, y). ``target`` is the label column, by header name or
    index (default: the last), or None (every column is a feature, y is None). A first line
    with any non-numeric field is a header."""
    path = Path(path)
    fields, header, col = _target_column(path, target, delimiter)
    try:
        data = np.loadtxt(path, delimiter=delimiter, skiprows=int(header), dtype=np.float64,
                          ndmin=2)
    except ValueError as exc:
        raise DataFormatError(f"{path}: {_csv_problem(str(exc), header)}") from None
    if data.shape[0] == 0:
        raise DataFormatError(f"{path}: no data rows")
    if data.shape[1] != len(fields):
        raise DataFormatError(f"{path}: the first line has {len(fields)} columns, the data "
                              f"{data.shape[1]}")
    if not np.all(np.isfinite(data)):
        row = int(np.argwhere(~np.isfinite(data))[0, 0])
        raise DataFormatError(f"{path}, line {row + 1 + int(header)}: NaN or infinite value")
    if col is None:
        return np.ascontiguousarray(data), None
    if data.shape[1] < 2:
        raise DataFormatError(f"{path}: need at least one feature column and a target")
    y = data[:, col].copy()
    X = np.delete(data, col, axis=1)
    return np.asfortranarray(X), y


def _target_column(path: Path, target: str | int | None, delimiter: str
                   ) -> tuple[list[str], bool, int | None]:
    """(the first line's fields, whether it is a header, the label column's index or None)."""
    if not path.is_file():
        raise DataFormatError(f"{path}: no such file")
    with open(path, encoding="utf-8", errors="replace") as f:
        first = f.readline().strip()
    if not first:
        raise DataFormatError(f"{path}, line 1: empty file or empty first line")
    fields = [x.strip().strip('"') for x in first.split(delimiter)]
    header = not all(_is_number(x) for x in fields)
    if target is None or (isinstance(target, str) and target.lower() == "none"):
        col = None
    elif isinstance(target, str) and not target.lstrip("-").isdigit():
        if not header:
            raise DataFormatError(f"{path}: target {target!r} named but the file has no header")
        if target not in fields:
            raise DataFormatError(f"{path}, line 1: no column {target!r}; columns: {fields}")
        col = fields.index(target)
    else:
        col = int(target)
        if not -len(fields) <= col < len(fields):
            raise DataFormatError(f"{path}: target column {col} but lines have {len(fields)}")
        col %= len(fields)
    return fields, header, col


def label_column(path: str | os.PathLike, fmt: str = "auto", target: str | int = -1) -> str:
    """The labels of a table, as a message names them: ``the label column 'timestamp'
    (column 4 of 4)`` of a CSV, ``the label (the first field of each line)`` of libsvm."""
    path = Path(path)
    if _table_format(path, fmt) != "csv":
        return "the label (the first field of each line)"
    fields, header, col = _target_column(path, target, _delimiter(path))
    if col is None:
        return "no column"
    name = f" {fields[col]!r}" if header else ""
    return f"the label column{name} (column {col + 1} of {len(fields)})"


def _csv_problem(message: str, header: bool) -> str:
    """numpy counts data rows from 0 (after the header); turn that into a file line."""
    m = re.search(r"at row (\d+), column (\d+)", message)
    if m:
        line = int(m.group(1)) + 1 + int(header)
        return f"line {line}, column {m.group(2)}: {message.split(' at row')[0]}"
    return message


def load_table(path: str | os.PathLike, fmt: str = "auto", target: str | int = -1):
    """Dispatch on ``fmt`` (``svmlight``/``libsvm``, ``csv``, or ``auto`` by extension:
    ``.csv``/``.tsv`` are CSV, anything else libsvm)."""
    path = Path(path)
    fmt = _table_format(path, fmt)
    if fmt in ("svmlight", "libsvm"):
        return load_svmlight(path)
    if fmt == "csv":
        return load_csv(path, target, _delimiter(path))
    raise DataFormatError(f"{path}: unknown format {fmt!r}; use svmlight, libsvm or csv")


def _table_format(path: Path, fmt: str) -> str:
    if fmt == "auto":
        return "csv" if path.suffix.lower() in (".csv", ".tsv") else "svmlight"
    return fmt


def _delimiter(path: Path) -> str:
    return "\t" if path.suffix.lower() == ".tsv" else ","
