"""F+LDA on sparse word rows: exact collapsed Gibbs at O(K_d + K_w + log K) per token.

For large K (10,000 topics) the word-topic rows are sparse (a word uses few topics) and a
dense row per word is what costs: :func:`stalesync.kernels.lda.sweep` rebuilds an F+ tree over
all K topics for every word run, O(K) per distinct word per chunk. Here the conditional
    p(k) ~ (n_dk + alpha) (n_wk + beta) / (n_k + V beta)
is split three ways (as SparseLDA, Yao et al. 2009, with F+LDA's tree for the dense part):
    alpha beta inv_k          one F+ tree over K for the whole call (it depends on n_k only)
  + alpha n_wk inv_k          the word's non-zero topics (a list, its sum kept current)
  + n_dk (n_wk + beta) inv_k  the document's non-zero topics (its sparse list),
with ``inv_k = 1 / (n_k + V beta)``. A word run costs O(K_w) to set up from its CSR row and
to emit its change as CSR; nothing is O(K) per word. Drawing from the word bucket scans its
list, O(K_w); a frequent word (its run's tokens x K_w > K) keeps that bucket in an F+ tree
of its own instead, O(log K) per draw, built in O(K) once for the run. The draw is exact
Gibbs, as F+LDA's (the chi-square test of the samplers covers this one too), but not the
same draws.
"""

from __future__ import annotations

import numba
import numpy as np

from .lda import _tree_set, add_to_doc, next_uniform


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
def _emit(k, w, wrow, orig, mark, ent_row, ent_col, ent_val, n_ent):  # pragma: no cover
    """Record row w's change at topic k once (``mark``); returns the entry count."""
    if not mark[k]:
        mark[k] = True
        if wrow[k] != orig[k]:
            ent_row[n_ent], ent_col[n_ent], ent_val[n_ent] = w, k, wrow[k] - orig[k]
            n_ent += 1
    return n_ent


@numba.njit(nogil=True, cache=True)
def sweep_rows(tok_row, tok_doc, tok_base, z, lo, hi, lists, indptr, cols, vals, nk, alpha,
               beta, vbeta, hot_above, rng):  # pragma: no cover - compiled
    """Resample tokens [lo, hi) (sorted by row) exactly against CSR rows (indptr, cols,
    vals); updates z, the doc lists and nk. Returns the rows' changes as CSR
    (indptr, cols, vals) over the same rows; the input rows are not modified.

    A word run whose tokens x K_w pass ``hot_above`` (K: measured best) keeps its word
    bucket in a tree. ``tok_doc`` is unused (the signature of the other samplers)."""
    k_topics = nk.shape[0]
    n_rows = indptr.shape[0] - 1
    size = 1
    while size < k_topics:
        size *= 2
    inv = np.empty(k_topics)
    tree = np.zeros(2 * size)
    ab = alpha * beta
    for k in range(k_topics):
        inv[k] = 1.0 / (nk[k] + vbeta)
        tree[size + k] = ab * inv[k]
    for node in range(size - 1, 0, -1):
        tree[node] = tree[2 * node] + tree[2 * node + 1]
    wrow = np.zeros(k_topics, dtype=np.int32)  # the current word's counts (scratch)
    orig = np.zeros(k_topics, dtype=np.int32)
    wpos = np.full(k_topics, -1, dtype=np.int32)  # position in wlist, -1: count is 0
    wlist = np.empty(k_topics, dtype=np.int32)
    mark = np.zeros(k_topics, dtype=np.bool_)
    wtree = np.zeros(2 * size)  # a frequent word's bucket: leaves alpha n_wk inv_k
    cum = np.empty(k_topics)
    cap = vals.shape[0] + (hi - lo) + 1
    ent_row = np.empty(cap, dtype=np.int64)
    ent_col = np.empty(cap, dtype=np.int32)
    ent_val = np.empty(cap, dtype=np.int32)
    n_ent = 0
    x = rng[0]
    i = lo
    while i < hi:
        w = tok_row[i]
        m = 0
        for e in range(indptr[w], indptr[w + 1]):
            wrow[cols[e]] += vals[e]
            orig[cols[e]] += vals[e]
        for e in range(indptr[w], indptr[w + 1]):
            k = cols[e]
            if wrow[k] > 0 and wpos[k] < 0:
                wpos[k] = m
                wlist[m] = k
                m += 1
        run = i
        while run < hi and tok_row[run] == w:
            run += 1
        hot = (run - i) * m > hot_above  # list scans would cost more than one tree
        r_sum = 0.0
        if hot:
            for j in range(m):
                wtree[size + wlist[j]] = alpha * wrow[wlist[j]] * inv[wlist[j]]
            for node in range(size - 1, 0, -1):
                wtree[node] = wtree[2 * node] + wtree[2 * node + 1]
        else:
            for j in range(m):
                r_sum += alpha * wrow[wlist[j]] * inv[wlist[j]]
        while i < hi and tok_row[i] == w:
            s = z[i]
            # remove token i from its word, topic and document
            r_sum -= alpha * wrow[s] * inv[s]
            wrow[s] -= 1
            nk[s] -= 1
            inv[s] = 1.0 / (nk[s] + vbeta)
            r_sum += alpha * wrow[s] * inv[s]
            if hot:
                _tree_set(wtree, size, s, alpha * wrow[s] * inv[s])
                r_sum = wtree[1]
            if wrow[s] == 0 and wpos[s] >= 0:
                last = wlist[m - 1]
                wlist[wpos[s]] = last
                wpos[last] = wpos[s]
                wpos[s] = -1
                m -= 1
            _tree_set(tree, size, s, ab * inv[s])
            base = tok_base[i]
            nd = lists[base]
            first = base + 2
            js = -1
            q_sum = 0.0
            for j in range(nd):
                tp = lists[first + 2 * j]
                c = lists[first + 2 * j + 1]
                if tp == s:
                    c -= 1
                    lists[first + 2 * j + 1] = c
                    js = j
                q_sum += c * (wrow[tp] + beta) * inv[tp]
                cum[j] = q_sum
            if r_sum < 0.0:
                r_sum = 0.0
            x, uniform = next_uniform(x)
            u = uniform * (q_sum + r_sum + tree[1])
            jt = -1
            if u < q_sum:
                jt = 0
                while jt < nd - 1 and cum[jt] <= u:
                    jt += 1
                t = lists[first + 2 * jt]
            else:
                u -= q_sum
                if hot and u < r_sum:
                    t = _tree_sample(wtree, size, u)
                    if t >= k_topics:
                        t = k_topics - 1
                elif u < r_sum and m > 0:
                    t = wlist[m - 1]  # round-off at the bucket's end
                    acc = 0.0
                    for j in range(m):
                        acc += alpha * wrow[wlist[j]] * inv[wlist[j]]
                        if u < acc:
                            t = wlist[j]
                            break
                else:
                    t = _tree_sample(tree, size, max(u - r_sum, 0.0))
                    if t >= k_topics:
                        t = k_topics - 1
                for j in range(nd):
                    if lists[first + 2 * j] == t:
                        jt = j
                        break
            # add token i back with topic t
            z[i] = t
            r_sum -= alpha * wrow[t] * inv[t]
            wrow[t] += 1
            nk[t] += 1
            inv[t] = 1.0 / (nk[t] + vbeta)
            r_sum += alpha * wrow[t] * inv[t]
            if hot:
                _tree_set(wtree, size, t, alpha * wrow[t] * inv[t])
            if wpos[t] < 0:
                wpos[t] = m
                wlist[m] = t
                m += 1
            _tree_set(tree, size, t, ab * inv[t])
            add_to_doc(lists, base, t, jt, js)
            i += 1
        if hot:
            wtree[:] = 0.0
        # emit the run's change of row w (topics it had, and topics it has now); reset
        for e in range(indptr[w], indptr[w + 1]):
            n_ent = _emit(cols[e], w, wrow, orig, mark, ent_row, ent_col, ent_val, n_ent)
        for j in range(m):
            n_ent = _emit(wlist[j], w, wrow, orig, mark, ent_row, ent_col, ent_val, n_ent)
        for e in range(indptr[w], indptr[w + 1]):
            k = cols[e]
            wrow[k], orig[k], wpos[k], mark[k] = 0, 0, -1, False
        for j in range(m):
            k = wlist[j]
            wrow[k], orig[k], wpos[k], mark[k] = 0, 0, -1, False
    rng[0] = x
    # the entries as CSR over the rows (a counting sort: runs need not come in row order)
    out_indptr = np.zeros(n_rows + 1, dtype=np.int64)
    for e in range(n_ent):
        out_indptr[ent_row[e] + 1] += 1
    for r in range(n_rows):
        out_indptr[r + 1] += out_indptr[r]
    fill = out_indptr[:-1].copy()
    out_cols = np.empty(n_ent, dtype=np.int32)
    out_vals = np.empty(n_ent, dtype=np.int32)
    for e in range(n_ent):
        p = fill[ent_row[e]]
        out_cols[p], out_vals[p] = ent_col[e], ent_val[e]
        fill[ent_row[e]] += 1
    return out_indptr, out_cols, out_vals
