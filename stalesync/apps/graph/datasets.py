"""Real graphs from the data stalesync already reads: a corpus's document-word graph and a
ratings file's user-item graph (both bipartite, every edge in both directions)."""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse as sp

from .graph import Graph, vertex_ids

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


def rating_graph(users: np.ndarray, items: np.ndarray, values: np.ndarray, n_users: int,
                 n_items: int) -> Graph:
    """Users ``0..n_users-1`` and items after them, an edge both ways per rating with the
    rating as its weight (any sign, zero kept: these weights are data, not strengths)."""
    n = n_users + n_items
    rows = np.concatenate([users, items + n_users]).astype(np.int64)
    cols = np.concatenate([items + n_users, users]).astype(np.int64)
    weight = np.concatenate([values, values]).astype(np.float64)
    order = np.lexsort((cols, rows))
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
    # symmetric, so each row lists the in-edges of its vertex too
    return Graph(n, indptr, vertex_ids(cols[order], n), weight[order],
                 np.bincount(rows, weights=weight, minlength=n), symmetric=True)


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
