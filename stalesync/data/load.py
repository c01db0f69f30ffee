"""From a name or a path to data: the one entry point of every app's ``--data``.

``load_corpus`` (documents for LDA), with the readers of :mod:`.readers` and the built-in
datasets of :mod:`.datasets`; this module sits above both, so neither imports the other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataFormatError
from .corpus import Corpus
from .datasets import DATASETS, load_dataset
from .readers import FORMATS, READERS
from .scan import PathLike
from .sniff import numeric_table, sniff_format

__all__ = ["load_corpus", "load_features", "FEATURE_FORMATS", "FEATURE_DATASETS"]

FEATURE_FORMATS = ("auto", "svmlight", "libsvm", "csv", "npz", "idx")
FEATURE_DATASETS = ("fashion-mnist", "fashion-mnist-test", "adult", "clothing-recommend")


def load_corpus(path_or_name: PathLike, format: str = "auto", **options) -> Corpus:
    """Load a corpus from a file, a directory of text files, or a built-in dataset name.

    ``format``: ``"auto"`` (sniffed, see :func:`sniff_format`) or one of :data:`FORMATS`.
    Options go to the reader (``vocab``, ``index_base``, tokenizer options...). A name that is
    not an existing path is looked up in :func:`stalesync.data.datasets.load_dataset`.
    """
    p = Path(path_or_name)
    if not p.exists():
        if str(path_or_name) in DATASETS:
            return load_dataset(str(path_or_name), **options)
        raise ConfigError(f"{path_or_name}: no such file or directory, and not a built-in "
                          f"dataset ({', '.join(DATASETS)})")
    if p.is_dir():
        p, format = _corpus_in_folder(p, format)
    fmt = sniff_format(p) if format == "auto" else format
    table = numeric_table(p) if format == "auto" and fmt == "text" else None
    if table:
        raise DataFormatError(
            f"{p}: {table}, not documents; LDA reads documents: UCI docword.NAME.txt with "
            "vocab.NAME.txt, LDA-C ('N id:count ...'), libsvm-style ('label word:count ...') "
            "or text (one document per line; --format text reads this file so)")
    if fmt not in READERS:
        raise ConfigError(f"unknown corpus format {format!r}; choose from auto, "
                          f"{', '.join(FORMATS)}")
    _check_options(fmt, READERS[fmt], options)
    return READERS[fmt](p, **options)


CORPUS_FOLDER = ("a folder holding one UCI docword.NAME.txt[.gz] (with its vocab.NAME.txt), "
                 "or .txt files (one document each)")


def _corpus_in_folder(folder: Path, format: str) -> tuple[Path, str]:
    """(what to read, its format) for a folder given as a corpus: the UCI ``docword`` file
    in it (its vocabulary beside it is found by the reader), or the folder itself as
    ``.txt`` documents; an error for anything else (a folder of ``docword``, ``vocab`` and
    other files was read as text documents, the counts and vocabulary included)."""
    names = sorted(f.name for f in folder.iterdir() if f.is_file())
    docword = [n for n in names if n.lower().startswith("docword.")]
    vocab = [n for n in names if n.lower().startswith("vocab.")]
    if len(docword) > 1:
        raise DataFormatError(f"{folder}: a folder holding {len(docword)} UCI corpora "
                              f"({', '.join(docword)}); give one of them as the file to read")
    if docword and format in ("auto", "uci"):
        return folder / docword[0], "uci"
    texts = [n for n in names if n.endswith(".txt") and n not in vocab]
    if not docword and not vocab and texts and format in ("auto", "text"):
        return folder, "text"
    what = (f"{', '.join((docword + vocab)[:3])}" if docword or vocab
            else f"{len(names)} file(s), none of them .txt" if names else "empty")
    raise DataFormatError(f"{folder} is a folder ({what}); LDA reads one corpus file (UCI "
                          "docword, LDA-C, libsvm-style or text) or " + CORPUS_FOLDER)


def _check_options(fmt: str, reader, options: dict) -> None:
    """Reject an option the reader does not take, with the list of those it does."""
    import inspect

    allowed = [n for n, prm in inspect.signature(reader).parameters.items()
               if prm.kind is not prm.VAR_KEYWORD][1:]
    if fmt == "text":
        from .text import Tokenizer

        allowed += list(inspect.signature(Tokenizer).parameters)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(f"format {fmt!r} does not take option(s) {', '.join(unknown)}; "
                          f"it takes: {', '.join(allowed)}")


def load_features(path_or_name: PathLike, format: str = "auto",
                  target: str | int | None = -1, split: str = "train"
                  ) -> tuple[Any, np.ndarray | None]:
    """``(X, y or None)`` of a feature table: libsvm/svmlight (sparse), CSV (``target``: the
    label column by name or index, None for none), ``.npz`` (arrays ``X`` [and ``y``], or a
    scipy sparse matrix from ``save_npz``), IDX images (8-bit pixels scaled to [0, 1], as
    in the built-in Fashion-MNIST; labels from the ``labels`` file beside them), or a
    built-in dataset (``fashion-mnist``, ``fashion-mnist-test``, ``adult``,
    ``clothing-recommend``). A folder holding an MNIST-style IDX set is read as
    that set (``split``: ``train`` picks ``train-*``, ``test`` picks ``t10k-*`` / ``test-*``
    where both are there); any other folder is an error."""
    name = str(path_or_name)
    p = Path(path_or_name)
    if not p.exists():
        if name.startswith("fashion-mnist"):
            from .fashion_mnist import load_fashion_mnist

            return load_fashion_mnist("test" if name.endswith("-test") else "train")
        if name in ("adult", "clothing-recommend"):
            from .labeled import load_adult, load_clothing_recommend

            X, y, _ = load_adult() if name == "adult" else load_clothing_recommend()
            return X, y
        raise ConfigError(f"{name}: no such file, and not a built-in dataset "
                          f"({', '.join(FEATURE_DATASETS)})")
    if format not in FEATURE_FORMATS:
        raise ConfigError(f"unknown format {format!r}; choose one of {FEATURE_FORMATS}",
                          param="format")
    if p.is_dir():
        p, format = _features_in_folder(p, format, split), "idx"
    if format == "auto":
        format = _feature_format(p)
    if format == "npz":
        return _read_feature_npz(p)
    if format == "idx":
        from .idx import read_idx_pair, scaled_images

        X, y = read_idx_pair(p)
        return scaled_images(X), y
    from .tabular import load_table

    return load_table(p, format, target)


FEATURE_FOLDER = ("a folder holding an MNIST-style IDX set (train-images-idx3-ubyte[.gz] with "
                  "train-labels-idx1-ubyte[.gz])")


def _features_in_folder(folder: Path, format: str, split: str) -> Path:
    """The IDX images file to read for a folder given as a feature table, or an error
    saying what a folder may hold."""
    from .idx import folder_images

    images = folder_images(folder, split) if format in ("auto", "idx") else None
    if images is None:
        raise DataFormatError(f"{folder} is a folder; a feature table is one file (libsvm / "
                              f"svmlight, CSV, .npz or IDX images): give one file or "
                              + FEATURE_FOLDER)
    return images


def describe_labels(path_or_name: PathLike, format: str = "auto",
                    target: str | int | None = -1) -> str:
    """Where :func:`load_features` took the labels from, as a message names them: ``the
    label column 'timestamp' (column 4 of 4)`` of a CSV, the first field of a libsvm line,
    ``y`` of a ``.npz``, the labels file beside IDX images."""
    p = Path(path_or_name)
    if not p.is_file():
        return "the labels"
    fmt = _feature_format(p) if format == "auto" else format
    if fmt == "npz":
        return "the labels (array 'y')"
    if fmt == "idx":
        return "the labels (the labels file)"
    from .tabular import label_column

    return label_column(p, fmt, -1 if target is None else target)


def _feature_format(p: Path) -> str:
    name = p.name.lower()
    if name.endswith(".npz"):
        return "npz"
    if "idx" in name and (name.endswith("-ubyte") or name.endswith("-ubyte.gz")
                          or name.endswith(".idx")):
        return "idx"
    if name.endswith((".csv", ".tsv")):
        return "csv"
    return "svmlight"


def _read_feature_npz(p: Path) -> tuple[Any, np.ndarray | None]:
    import scipy.sparse as sp

    from ..persist.files import NPZ_ERRORS

    try:
        with np.load(p, allow_pickle=False) as z:
            files = set(z.files)
            if "X" in files:
                X = z["X"]
                y = z["y"] if "y" in files else None
            else:
                X, y = None, None
    except NPZ_ERRORS as exc:
        raise DataFormatError(f"{p}: not a readable .npz file ({exc})") from None
    if X is None:
        try:
            X = sp.load_npz(p).tocsr()
        except NPZ_ERRORS as exc:
            raise DataFormatError(f"{p}: holds neither an array 'X' nor a scipy sparse "
                                  f"matrix ({exc})") from None
    if X.ndim != 2:
        raise DataFormatError(f"{p}: 'X' must be 2-D (samples x features), got {X.shape}")
    if y is not None and (y.ndim != 1 or y.shape[0] != X.shape[0]):
        raise DataFormatError(f"{p}: 'y' must be 1-D with one label per row of 'X', "
                              f"got {y.shape} for {X.shape[0]} rows")
    return X, y
