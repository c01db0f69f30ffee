"""Real graphs from the data stalesync already reads: a corpus's document-word graph and a
ratings file's user-item graph (both bipartite, every edge in both directions)."""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse as sp

from .graph import Graph

BUILT_IN = ("nyt", "reuters", "clothing", "movielens-100k")


def bipartite(left: np.ndarray, right: np.ndarray, n_left: int, n_right: int,
              weight: np.ndarray | None = None) -> Graph:
    """Vertices ``0..n_left-1`` then ``n_left..n_left+n_right-1``; an edge both ways
    between ``left[i]`` and ``n_left + right[i]`` (repeated pairs: weights added)."""
    n = n_left + n_right
    w = np.ones(left.size) if weight is None else np.asarray(weight, dtype=np.float64)
    A = sp.coo_matrix((w, (left.astype(np.int64), right.astype(np.int64) + n_left)),
                      shape=(n, n)).tocsr()
    A.sum_duplicates()
    graph = Graph.from_adjacency(A + A.T)
    return dataclasses.replace(graph, symmetric=True)


def doc_word_graph(name: str) -> Graph:
    """A built-in corpus as documents (first) linked to the distinct words they use."""
    from ...data.datasets import load_dataset

    corpus = load_dataset(name)
    doc = np.repeat(np.arange(corpus.num_docs), np.diff(corpus.doc_ptr))
    pairs = np.unique(doc.astype(np.int64) * corpus.num_words + corpus.words)
    return bipartite(pairs // corpus.num_words, pairs % corpus.num_words, corpus.num_docs,
                     corpus.num_words)


def ratings_graph(name: str) -> Graph:
    """A ratings file (or ``movielens-100k``) as users (first) linked to the items they
    rated."""
    from ...data.ratings import load_ratings

    r = load_ratings(name)
    return bipartite(r.users, r.items, r.n_users, r.n_items)


def load_graph(name: str, files_only: bool = False) -> Graph:
    """A built-in graph by name (unless ``files_only``), else an edge-list file."""
    from .graph import read_edge_list

    if files_only:
        return read_edge_list(name)
    if name in ("nyt", "reuters", "clothing"):
        return doc_word_graph(name)
    if name == "movielens-100k":
        return ratings_graph(name)
    return read_edge_list(name)
