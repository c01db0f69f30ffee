"""Compiled kernels of LDA by collapsed Gibbs sampling: the F+LDA sampler (Yu et al. 2015).

For token i of word w in doc d (counts exclude token i) the exact conditional is
    p(k) ~ (n_dk + alpha) (n_wk + beta) / (n_k + V beta)
         = alpha * A_wk  +  n_dk * A_wk,      A_wk = (n_wk + beta) / (n_k + V beta).
Tokens are visited in word-major order, so A_w. is one vector per word run, kept in an F+ tree
(a binary sum tree: O(log K) to update one topic or to sample). The second part is non-zero
only on the doc's topics and is summed over its sparse (topic, count) list. Cost per token is
O(K_d + log K) instead of O(K), and the sampling is exact Gibbs, so quality per sweep equals a
dense sampler's. (Measured on NYT: Metropolis-Hastings proposals as in LightLDA were faster
per token at K=1000 but mixed so much slower per sweep that they lost at equal wall time.)
"""

from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(nogil=True, cache=True)
def seed_thread(seed):  # pragma: no cover - compiled
    """Seed numba's generator of the calling thread (each thread has its own state)."""
    np.random.seed(seed)


@numba.njit(nogil=True, cache=True)
def count_assignments(words, z, doc_ptr, num_words, num_topics):  # pragma: no cover
    """(word-topic counts V x K, doc-topic counts D x K) implied by assignments ``z``."""
    wt = np.zeros((num_words, num_topics), dtype=np.int32)
    dt = np.zeros((doc_ptr.shape[0] - 1, num_topics), dtype=np.int32)
    for d in range(doc_ptr.shape[0] - 1):
        for i in range(doc_ptr[d], doc_ptr[d + 1]):
            wt[words[i], z[i]] += 1
            dt[d, z[i]] += 1
    return wt, dt


@numba.njit(nogil=True, cache=True)
def word_loglik_rows(wt, beta):  # pragma: no cover - compiled
    """sum over the given rows of sum_k [lgamma(n_wk + beta) - lgamma(beta)]."""
    lg_beta = math.lgamma(beta)
    total = 0.0
    for w in range(wt.shape[0]):
        for k in range(wt.shape[1]):
            if wt[w, k] > 0:
                total += math.lgamma(wt[w, k] + beta) - lg_beta
    return total


@numba.njit(nogil=True, cache=True)
def topic_loglik(nk, num_words, beta):  # pragma: no cover - compiled
    """sum_k [lgamma(V beta) - lgamma(n_k + V beta)]."""
    vbeta = num_words * beta
    total = 0.0
    for k in range(nk.shape[0]):
        total += math.lgamma(vbeta) - math.lgamma(nk[k] + vbeta)
    return total


@numba.njit(nogil=True, cache=True)
def fold_in(doc_ptr, words, phi, alpha, iterations, burn_in, seed):  # pragma: no cover
    """Estimate doc-topic proportions with topics fixed (phi: K x V probabilities).

    Dense Gibbs on each document's tokens; theta averages the post-burn-in samples.
    """
    np.random.seed(seed)
    num_docs = doc_ptr.shape[0] - 1
    k_topics = phi.shape[0]
    theta = np.zeros((num_docs, k_topics))
    p = np.empty(k_topics)
    for d in range(num_docs):
        start, end = doc_ptr[d], doc_ptr[d + 1]
        n_d = end - start
        counts = np.zeros(k_topics)
        z = np.empty(n_d, dtype=np.int32)
        for i in range(n_d):
            z[i] = np.random.randint(k_topics)
            counts[z[i]] += 1
        kept = 0
        for it in range(iterations):
            for i in range(n_d):
                w = words[start + i]
                counts[z[i]] -= 1
                total = 0.0
                for k in range(k_topics):
                    total += (counts[k] + alpha) * phi[k, w]
                    p[k] = total
                u = np.random.random() * total
                lo = 0
                hi = k_topics - 1
                while lo < hi:
                    mid = (lo + hi) // 2
                    if p[mid] < u:
                        lo = mid + 1
                    else:
                        hi = mid
                z[i] = lo
                counts[lo] += 1
            if it >= burn_in:
                for k in range(k_topics):
                    theta[d, k] += counts[k] + alpha
                kept += 1
        norm = 0.0
        for k in range(k_topics):
            norm += theta[d, k]
        if norm > 0:
            for k in range(k_topics):
                theta[d, k] /= norm
        else:
            for k in range(k_topics):
                theta[d, k] = 1.0 / k_topics
    return theta


@numba.njit(nogil=True, cache=True)
def heldout_loglik(doc_ptr, words, theta, phi):  # pragma: no cover - compiled
    """sum over tokens of log sum_k theta_dk phi_kw."""
    total = 0.0
    for d in range(doc_ptr.shape[0] - 1):
        for i in range(doc_ptr[d], doc_ptr[d + 1]):
            w = words[i]
            acc = 0.0
            for k in range(phi.shape[0]):
                acc += theta[d, k] * phi[k, w]
            total += math.log(acc)
    return total


# --- F+LDA: exact Gibbs in word-major order, O(K_d + log K) per token ---------------------


@numba.njit(nogil=True, cache=True)
def _tree_set(tree, size, k, value):  # pragma: no cover - compiled
    i = size + k
    tree[i] = value
    i >>= 1
    while i >= 1:
        tree[i] = tree[2 * i] + tree[2 * i + 1]
        i >>= 1


@numba.njit(nogil=True, cache=True)
def _tree_sample(tree, size, u):  # pragma: no cover - compiled
    i = 1
    while i < size:
        left = tree[2 * i]
        if u < left:
            i = 2 * i
        else:
            u -= left
            i = 2 * i + 1
    return i - size


@numba.njit(nogil=True, cache=True)
def build_doc_lists(tok_doc, z, num_docs, doc_len, num_topics):  # pragma: no cover
    """Sparse doc-topic counts as interleaved (topic, count) pairs.

    Doc d's pairs are ``pairs[2j], pairs[2j+1]`` for j in ``[ptr[d], ptr[d] + nnz[d])``; the
    capacity min(n_d, K) can never overflow (a doc has at most n_d distinct topics).
    """
    ptr = np.zeros(num_docs + 1, dtype=np.int64)
    for d in range(num_docs):
        ptr[d + 1] = ptr[d] + min(doc_len[d], num_topics)
    pairs = np.zeros(2 * ptr[num_docs], dtype=np.int32)
    nnz = np.zeros(num_docs, dtype=np.int32)
    for i in range(tok_doc.shape[0]):
        d = tok_doc[i]
        base = ptr[d]
        found = False
        for j in range(base, base + nnz[d]):
            if pairs[2 * j] == z[i]:
                pairs[2 * j + 1] += 1
                found = True
                break
        if not found:
            j = base + nnz[d]
            pairs[2 * j] = z[i]
            pairs[2 * j + 1] = 1
            nnz[d] += 1
    return ptr, pairs, nnz


@numba.njit(nogil=True, cache=True)
def sweep(
    tok_word, tok_doc, z, lo, hi, ptr, pairs, nnz, wt, nk, alpha, beta, vbeta
):  # pragma: no cover - compiled
    """Resample tokens [lo, hi) (sorted by word) exactly. Updates z, doc lists, wt, nk.

    p(k) ~ alpha * (n_wk + b)/(n_k + Vb)  [F+ tree over K, rebuilt once per word run]
         + n_dk  * (n_wk + b)/(n_k + Vb)  [sum over the doc's nonzero topics only]
    """
    k_topics = nk.shape[0]
    size = 1
    while size < k_topics:
        size *= 2
    tree = np.zeros(2 * size)
    cum = np.empty(k_topics)
    i = lo
    while i < hi:
        w = tok_word[i]
        wt_row = wt[w]
        for k in range(k_topics):
            tree[size + k] = (wt_row[k] + beta) / (nk[k] + vbeta)
        for node in range(size - 1, 0, -1):
            tree[node] = tree[2 * node] + tree[2 * node + 1]
        while i < hi and tok_word[i] == w:
            d = tok_doc[i]
            s = z[i]
            wt_row[s] -= 1
            nk[s] -= 1
            _tree_set(tree, size, s, (wt_row[s] + beta) / (nk[s] + vbeta))
            base = 2 * ptr[d]
            m = nnz[d]
            js = -1
            r = 0.0
            for j in range(m):  # remove token i from its doc while summing the doc bucket
                tp = pairs[base + 2 * j]
                c = pairs[base + 2 * j + 1]
                if tp == s:
                    c -= 1
                    pairs[base + 2 * j + 1] = c
                    js = j
                r += c * tree[size + tp]
                cum[j] = r
            u = np.random.random() * (r + alpha * tree[1])
            jt = -1
            if u < r:
                jt = 0
                while jt < m - 1 and cum[jt] <= u:
                    jt += 1
                t = pairs[base + 2 * jt]
            else:
                t = _tree_sample(tree, size, (u - r) / alpha)
                if t >= k_topics:  # float round-off at the right edge
                    t = k_topics - 1
                for j in range(m):
                    if pairs[base + 2 * j] == t:
                        jt = j
                        break
            z[i] = t
            wt_row[t] += 1
            nk[t] += 1
            _tree_set(tree, size, t, (wt_row[t] + beta) / (nk[t] + vbeta))
            if jt >= 0:
                pairs[base + 2 * jt + 1] += 1
            elif js >= 0 and pairs[base + 2 * js + 1] == 0:
                pairs[base + 2 * js] = t  # reuse the slot token i just emptied
                pairs[base + 2 * js + 1] = 1
                js = -1
            else:
                pairs[base + 2 * m] = t
                pairs[base + 2 * m + 1] = 1
                nnz[d] = m = m + 1
            if js >= 0 and pairs[base + 2 * js + 1] == 0:  # drop the emptied slot
                last = m - 1
                pairs[base + 2 * js] = pairs[base + 2 * last]
                pairs[base + 2 * js + 1] = pairs[base + 2 * last + 1]
                nnz[d] = last
            i += 1


@numba.njit(nogil=True, cache=True)
def doc_loglik(ptr, pairs, nnz, doc_len, num_topics, alpha):  # pragma: no cover
    """log p(z) from sparse doc-topic lists ."""
    lg_alpha = math.lgamma(alpha)
    lg_k_alpha = math.lgamma(num_topics * alpha)
    total = 0.0
    for d in range(doc_len.shape[0]):
        total += lg_k_alpha - math.lgamma(doc_len[d] + num_topics * alpha)
        for j in range(ptr[d], ptr[d] + nnz[d]):
            total += math.lgamma(pairs[2 * j + 1] + alpha) - lg_alpha
    return total
