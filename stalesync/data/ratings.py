"""Ratings data: ``user item rating [timestamp]`` files, MatrixMarket, scipy sparse, MovieLens.

Everything is read into :class:`Ratings`: aligned arrays of dense user and item indices
(``0..n-1``) plus the maps back to the raw ids the file used. Raw ids that are all integers
are kept as integers and sorted numerically; otherwise they are strings.

Handling of awkward input, by design:
- a malformed line (too few fields, a rating that is not a finite number) raises
  :class:`~stalesync.errors.DataFormatError` naming the file and line;
- blank lines and lines starting with ``#`` or ``%`` are skipped; a header line is detected
  (its rating field is not a number) and skipped;
- the delimiter is detected from the first data line: ``::`` (MovieLens 1M/10M), tab, comma,
  else whitespace; Netflix prize files (``MovieID:`` lines, then ``user,rating,date``) too;
- a repeated (user, item) pair is kept: it is one more observation of that pair;
- users or items with no rating (MatrixMarket/scipy rows or columns that are empty, or ids
  that land only in the test split) keep their initial factors; their predictions fall back
  to the global mean plus the other side's bias.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import DataFormatError

_NETFLIX_MOVIE = re.compile(r"[^\s,:]+:")
MOVIELENS_100K_MEMBER = "recbole/dataset_example/ml-100k/ml-100k.inter"
DATASETS = ("movielens-100k",)


@dataclass(frozen=True)
class Ratings:
    """Aligned arrays of ratings with dense indices and the raw-id maps."""

    users: np.ndarray  # int32 dense user index per rating
    items: np.ndarray  # int32 dense item index per rating
    values: np.ndarray  # float32 rating
    user_ids: np.ndarray  # raw id of each dense user index
    item_ids: np.ndarray  # raw id of each dense item index
    source: str = "<memory>"

    def __post_init__(self) -> None:
        n = self.users.shape[0]
        if self.items.shape != (n,) or self.values.shape != (n,):
            raise DataFormatError(
                f"{self.source}: users, items and ratings must be aligned 1-D arrays, got shapes "
                f"{self.users.shape}, {self.items.shape}, {self.values.shape}"
            )

    def __len__(self) -> int:
        return int(self.users.shape[0])

    @property
    def n_users(self) -> int:
        return int(self.user_ids.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.item_ids.shape[0])

    @property
    def scale(self) -> tuple[float, float]:
        """(lowest, highest) rating: predictions are clipped to it when scoring."""
        if not len(self):
            return (-math.inf, math.inf)
        return float(self.values.min()), float(self.values.max())

    def subset(self, index: np.ndarray) -> Ratings:
        """The ratings at ``index`` (positions or a boolean mask), same id maps."""
        return replace(self, users=self.users[index], items=self.items[index],
                       values=self.values[index])

    def split(self, test_fraction: float = 0.2, seed: int = 0) -> tuple[Ratings, Ratings]:
        """Random (seeded) train/test split of the ratings; both keep the full id maps."""
        if not 0 < test_fraction < 1:
            raise DataFormatError(f"test_fraction must be in (0, 1), got {test_fraction}")
        perm = np.random.default_rng(seed).permutation(len(self))
        n_test = int(round(test_fraction * len(self)))
        return self.subset(np.sort(perm[n_test:])), self.subset(np.sort(perm[:n_test]))


def _remap(raw: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Dense indices and sorted unique raw ids (integers when every id is one)."""
    try:
        arr: np.ndarray = np.array([int(x) for x in raw], dtype=np.int64)
    except ValueError:
        arr = np.array(raw, dtype=str)
    ids, index = np.unique(arr, return_inverse=True)
    return index.astype(np.int32), ids


def _detect_sep(line: str) -> str | None:
    for sep in ("::", "\t", ","):
        if sep in line:
            return sep
    return None  # whitespace


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def read_ratings(path: str | os.PathLike, sep: str | None = "auto",
                 header: bool | None = None) -> Ratings:
    """Read ``user item rating [timestamp ...]`` lines (text, CSV, TSV, ``::``).

    ``sep="auto"`` detects the delimiter; ``header=None`` detects a header line. Extra
    columns (timestamps) are ignored. The Netflix prize layout (a ``MovieID:`` line, then
    ``user,rating,date`` lines for that movie) is read too. Errors name the file and line.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise DataFormatError(f"{path}: cannot read ratings file ({exc.strerror or exc})") from None
    users: list[str] = []
    items: list[str] = []
    values: list[float] = []
    first = True
    movie: str | None = None  # set while inside a Netflix-style "MovieID:" section
    for lineno, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped[0] in "#%":
            continue
        if _NETFLIX_MOVIE.fullmatch(stripped):
            movie = stripped[:-1]
            continue
        if first and sep == "auto":
            sep = _detect_sep(stripped)
        fields = [f.strip() for f in stripped.split(sep)] if sep else stripped.split()
        if movie is not None:
            fields = [fields[0], movie, *fields[1:]]  # user, item, rating, date
        if len(fields) < 3:
            raise DataFormatError(
                f"{path}:{lineno}: expected 'user item rating [timestamp]', got {len(fields)} "
                f"field(s): {stripped[:80]!r}"
            )
        if first:
            first = False
            is_header = header if header is not None else not _is_number(fields[2])
            if is_header:
                continue
        rating = _parse_rating(fields[2], path, lineno)
        users.append(fields[0])
        items.append(fields[1])
        values.append(rating)
    if not values:
        raise DataFormatError(f"{path}: no ratings found")
    u, user_ids = _remap(users)
    i, item_ids = _remap(items)
    return Ratings(u, i, np.asarray(values, dtype=np.float32), user_ids, item_ids, str(path))


def _parse_rating(text: str, path: Path, lineno: int) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise DataFormatError(f"{path}:{lineno}: rating {text!r} is not a finite number")
    return value


def from_sparse(matrix, source: str = "<sparse>", one_based: bool = False) -> Ratings:
    """Ratings from a scipy sparse matrix (rows = users, columns = items; stored entries are
    ratings, explicit zeros included). Raw ids are the row/column numbers."""
    import scipy.sparse as sp

    if not sp.issparse(matrix):
        raise DataFormatError(
            f"{source}: expected a scipy sparse matrix, got {type(matrix).__name__}")
    coo = sp.coo_matrix(matrix)
    values = np.asarray(coo.data, dtype=np.float32)
    if values.size and not np.isfinite(values).all():
        raise DataFormatError(f"{source}: the matrix holds NaN or inf ratings")
    base = 1 if one_based else 0
    return Ratings(
        coo.row.astype(np.int32), coo.col.astype(np.int32), values,
        np.arange(coo.shape[0], dtype=np.int64) + base,
        np.arange(coo.shape[1], dtype=np.int64) + base, source,
    )


MM_FIELDS = ("real", "integer", "double")


def read_matrix_market(path: str | os.PathLike) -> Ratings:
    """Read a MatrixMarket coordinate file (users x items, ``real`` or ``integer``,
    ``general``); raw ids are 1-based as in the file. Empty rows/columns are kept as users /
    items without ratings.

    Parsed here, strictly, rather than by ``scipy.io.mmread``: fuzzing found damaged files
    on which scipy's fast parser crashes the interpreter (a segmentation fault)."""
    import scipy.sparse as sp

    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"{path}: no such file")
    try:
        lines = path.read_bytes().decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"{path}: not a text file ({exc})") from None
    head = lines[0].split() if lines else []
    if len(head) != 5 or head[0].lower() != "%%matrixmarket" or head[1].lower() != "matrix":
        raise DataFormatError(f"{path}, line 1: not a MatrixMarket header "
                              "('%%MatrixMarket matrix coordinate real general')")
    layout, field_, symmetry = (h.lower() for h in head[2:])
    if layout == "array":
        raise DataFormatError(f"{path}: MatrixMarket file is dense ('array'); expected "
                              "'coordinate'")
    if layout != "coordinate" or field_ not in MM_FIELDS or symmetry != "general":
        raise DataFormatError(f"{path}, line 1: unsupported MatrixMarket kind "
                              f"{' '.join(head[2:])!r} (expected coordinate real|integer "
                              "general)")
    body = [(i + 1, ln) for i, ln in enumerate(lines[1:], start=1)
            if ln.strip() and not ln.lstrip().startswith("%")]
    if not body:
        raise DataFormatError(f"{path}: no size line")
    size_line, size = body[0]
    rows, cols, nnz = _ints(size.split(), 3, path, size_line, "size line 'rows cols entries'")
    entries = body[1:]
    if len(entries) != nnz:
        raise DataFormatError(f"{path}: the size line says {nnz} entries, the file has "
                              f"{len(entries)}")
    users, items, values = _entries(entries, path)
    for name, ids, top in (("row", users, rows), ("column", items, cols)):
        bad = np.flatnonzero((ids < 1) | (ids > top))
        if bad.size:
            raise DataFormatError(f"{path}, line {entries[bad[0]][0]}: {name} "
                                  f"{ids[bad[0]]} outside 1..{top}")
    matrix = sp.coo_matrix((values, (users - 1, items - 1)), shape=(rows, cols))
    return from_sparse(matrix, str(path), one_based=True)


def _entries(entries: list[tuple[int, str]], path: Path
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, columns, values) of the entry lines: one vectorised parse; only when it
    fails, line by line to name the first bad line."""
    import io
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            table = np.loadtxt(io.StringIO("\n".join(t for _, t in entries)),
                               dtype=np.float64, ndmin=2)
        ok = (table.shape == (len(entries), 3) and np.isfinite(table).all()
              and (table[:, :2] == np.round(table[:, :2])).all()
              and (np.abs(table[:, :2]) < 2**31).all())
    except (ValueError, UserWarning):
        ok = False
    if ok or not entries:
        if not entries:
            table = np.zeros((0, 3))
        return table[:, 0].astype(np.int64), table[:, 1].astype(np.int64), table[:, 2]
    for number, text in entries:  # find and name the first bad line
        parts = text.split()
        if len(parts) != 3:
            raise DataFormatError(f"{path}, line {number}: expected 'row column value', got "
                                  f"{text.strip()[:60]!r}")
        _ints(parts[:2], 2, path, number, "row and column")
        _finite(parts[2], path, number)
    raise DataFormatError(f"{path}: unreadable entries")  # pragma: no cover


def _ints(parts: list[str], n: int, path: Path, line: int, what: str) -> list[int]:
    if len(parts) != n:
        raise DataFormatError(f"{path}, line {line}: expected the {what}")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise DataFormatError(f"{path}, line {line}: the {what} must be integers, got "
                              f"{' '.join(parts)[:60]!r}") from None
    if any(v < 0 or v > 2**31 - 1 for v in values):
        raise DataFormatError(f"{path}, line {line}: the {what} must be in 0..2^31-1")
    return values


def _finite(text: str, path: Path, line: int) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DataFormatError(f"{path}, line {line}: value {text[:30]!r} is not a number"
                              ) from None
    if not np.isfinite(value):
        raise DataFormatError(f"{path}, line {line}: value {text!r} is not finite")
    return value


def load_movielens_100k() -> Ratings:
    """MovieLens 100K (943 users x 1,682 items, 100,000 ratings), fetched once from the copy
    in the ``recbole`` wheel (pinned sha256) and cached; see :mod:`stalesync.data.fetch`."""
    from .fetch import RECBOLE, cached_member

    return read_ratings(cached_member(RECBOLE, MOVIELENS_100K_MEMBER), sep="\t")


RATING_FORMATS = ("auto", "text", "mtx")


def load_ratings(source: str | os.PathLike, format: str = "auto") -> Ratings:
    """A named dataset (``movielens-100k``) or a file: ``format="mtx"`` (or ``auto`` with a
    ``.mtx`` name) is MatrixMarket, ``text`` (or anything else) ``user item rating`` text
    with the separator detected."""
    if format not in RATING_FORMATS:
        from ..errors import ConfigError

        raise ConfigError(f"unknown ratings format {format!r}; choose one of "
                          f"{RATING_FORMATS}", param="format")
    name = str(source)
    if name.lower() in ("movielens-100k", "ml-100k"):
        return load_movielens_100k()
    path = Path(name)
    if not path.exists():
        raise DataFormatError(
            f"{name}: no such file, and not a known dataset (known: {', '.join(DATASETS)})"
        )
    if format == "mtx" or (format == "auto" and path.suffix.lower() == ".mtx"):
        return read_matrix_market(path)
    return read_ratings(path)
