"""The dense exact Gibbs sampler of LDA (exact up to float32 rounding), for K up to a few
times the document length (the F+LDA sampler is for larger K).

Same conditional as :mod:`stalesync.kernels.lda`,
    p(k) ~ (n_dk + alpha) (n_wk + beta) / (n_k + V beta),
but computed for all K topics per token from dense, K-contiguous counts: the word's factor
``a_k = (n_wk + beta) / (n_k + V beta)`` is one vector per word run (tokens are sorted by word),
the doc's counts one dense row, and a token costs K multiply-adds plus a binary search of the
prefix sums. With no tree, no sparse list and no data-dependent branch in the inner loop, this
beats F+LDA's O(K_d + log K) when documents are long enough that K_d approaches K (tomotopy's
approach). The doc-topic state stays in the sparse per-document lists that the rest of LDA
reads: a sweep expands its chunk's documents to dense rows first and writes them back after.
"""

from __future__ import annotations

import numba
import numpy as np

from .lda import next_uniform

STRIPES = 8  # independent prefix-sum chains (see sweep_dense); a multiple of SIMD width


@numba.njit(nogil=True, cache=True)
def _expand_docs(tok_doc, tok_base, lo, hi, lists, width):  # pragma: no cover
    """Dense doc-topic rows (``width`` >= K columns, the rest zero) for the documents of
    tokens [lo, hi), which form a contiguous id range."""
    doc_lo = tok_doc[lo]
    doc_hi = tok_doc[lo]
    for i in range(lo, hi):
        doc_lo = min(doc_lo, tok_doc[i])
        doc_hi = max(doc_hi, tok_doc[i])
    num_docs = doc_hi - doc_lo + 1
    dt = np.zeros((num_docs, width), dtype=np.int32)
    base = np.full(num_docs, -1, dtype=np.int64)
    for i in range(lo, hi):
        d = tok_doc[i] - doc_lo
        if base[d] < 0:
            b = tok_base[i]
            base[d] = b
            for j in range(lists[b]):
                dt[d, lists[b + 2 + 2 * j]] = lists[b + 3 + 2 * j]
    return doc_lo, dt, base


@numba.njit(nogil=True, cache=True)
def _write_back_docs(dt, base, lists, num_topics):  # pragma: no cover - compiled
    for d in range(dt.shape[0]):
        b = base[d]
        if b < 0:
            continue
        m = 0
        for k in range(num_topics):
            if dt[d, k] > 0:
                lists[b + 2 + 2 * m] = k
                lists[b + 3 + 2 * m] = dt[d, k]
                m += 1
        lists[b] = m


@numba.njit(nogil=True, cache=True, fastmath=True)
def sweep_dense(
    tok_word, tok_doc, tok_base, z, lo, hi, lists, wt, nk, alpha, beta, vbeta, rng
):  # pragma: no cover - compiled
    """Resample tokens [lo, hi) (sorted by word) exactly. Updates z, doc lists, wt, nk.

    Arguments as :func:`stalesync.kernels.lda.sweep`; ``tok_doc`` is the token's local
    document id (the chunk's documents form one contiguous range of ids).

    Inverse-CDF sampling needs the cumulative sums in some fixed order of the topics, not
    necessarily 0..K-1. Topics are taken as STRIPES interleaved chains (chain j holds the
    topics k = j mod STRIPES), so ``cum[k] = p[k] + cum[k - STRIPES]``: a loop-carried
    dependence at distance STRIPES, which keeps STRIPES additions in flight instead of one
    serial chain of K. The per-topic arithmetic is float32 (eight lanes of a 256-bit
    register; the sums' relative rounding error stays below 1e-4 for K up to 1,000s, far
    below the sampler's Monte Carlo noise). Measured against the same loop in float64, in one
    process on NYT: 1.14x at K = 50, 1.33x at K = 100, 1.6-1.7x at K = 300, 1.8x at 1,000.
    """
    if hi <= lo:
        return
    k_topics = nk.shape[0]
    alpha = np.float32(alpha)  # all of the per-topic arithmetic in float32: twice the lanes
    beta = np.float32(beta)
    width = (k_topics + STRIPES - 1) // STRIPES * STRIPES  # padded: a and dt are 0 there
    doc_lo, dt, base = _expand_docs(tok_doc, tok_base, lo, hi, lists, width)
    inv = np.empty(k_topics, dtype=np.float32)  # 1 / (n_k + V beta)
    for k in range(k_topics):
        inv[k] = np.float32(1.0 / (nk[k] + vbeta))
    a = np.zeros(width, dtype=np.float32)
    cum = np.empty(width, dtype=np.float32)
    last = width - STRIPES
    x = rng[0]
    i = lo
    while i < hi:
        w = tok_word[i]
        wt_row = wt[w]
        for k in range(k_topics):
            a[k] = (np.float32(wt_row[k]) + beta) * inv[k]
        while i < hi and tok_word[i] == w:
            s = z[i]
            dt_row = dt[tok_doc[i] - doc_lo]
            wt_row[s] -= 1
            nk[s] -= 1
            dt_row[s] -= 1
            inv[s] = np.float32(1.0 / (nk[s] + vbeta))
            a[s] = (np.float32(wt_row[s]) + beta) * inv[s]
            for k in range(STRIPES):
                cum[k] = (np.float32(dt_row[k]) + alpha) * a[k]
            for k in range(STRIPES, width):
                cum[k] = cum[k - STRIPES] + (np.float32(dt_row[k]) + alpha) * a[k]
            total = np.float32(0.0)
            for j in range(STRIPES):
                total += cum[last + j]
            x, uniform = next_uniform(x)
            u = np.float32(uniform) * total
            j = 0
            while j < STRIPES - 1 and u >= cum[last + j]:
                u -= cum[last + j]
                j += 1
            left, right = 0, width // STRIPES - 1  # first m with cum[j + STRIPES m] > u
            while left < right:
                mid = (left + right) >> 1
                if cum[j + STRIPES * mid] > u:
                    right = mid
                else:
                    left = mid + 1
            t = j + STRIPES * left
            while t >= k_topics:  # round-off past a chain's last real topic (padding)
                t -= STRIPES
            z[i] = t
            wt_row[t] += 1
            nk[t] += 1
            dt_row[t] += 1
            inv[t] = np.float32(1.0 / (nk[t] + vbeta))
            a[t] = (np.float32(wt_row[t]) + beta) * inv[t]
            i += 1
    rng[0] = x
    _write_back_docs(dt, base, lists, k_topics)
