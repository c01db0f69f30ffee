"""Compiled SGD kernels for linear models on sparse CSR rows (Bottou's tricks).

Weights are rows of features x K outputs (K = 1 for binary classification and regression,
K classes for one-vs-rest and multinomial), plus a bias per output.

``sgd_epoch`` runs plain or averaged SGD over a list of examples:

- the **scaled weight vector** ``w = s * V``: the L2 step ``w <- (1 - eta lambda) w`` is
  ``s <- (1 - eta lambda) s`` (O(1)), and an update touches only the example's non-zeros;
- step sizes ``eta_t = 1 / (alpha (t + t0))`` (``optimal``, Bottou), ``eta0`` (``constant``)
  or ``eta0 / t^power`` (``invscaling``);
- **averaged SGD** (ASGD, Polyak-Ruppert from step ``avg_start``), sparse: with ``B`` the
  running sum of scales, ``sum_t w_t = A + B V`` where an update ``V_j += d`` does
  ``A_j -= B d``: O(nnz) per example;
- **L1** by Tsuruoka et al.'s cumulative penalty (as scikit-learn's SGD): the total penalty
  ``u`` a weight could have received, and ``q_j`` what it did, clip ``w_j`` towards 0;
- for losses with unbounded derivatives, the step is capped at ``1 / (1 + ||x||^2)``
  (normalised LMS), so badly scaled features cannot make SGD diverge.

``batch_gradient`` is the mean gradient of a mini-batch at fixed weights, on the rows it
touches (for the gradient-sending strategies: synchronous SGD, Downpour). Its L2 term is
spread over the examples by feature frequency (``lambda w_j n_j / (|B| f_j)``, HOGWILD!'s
form), so it touches only the batch's rows and averages to ``lambda w_j``.

Loss codes (``LOSSES``): hinge, log_loss, squared_hinge, modified_huber (classification,
``y`` in {-1, +1} per output, or a class index for multinomial), squared_error, huber,
epsilon_insensitive (regression).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

LOSSES = {"hinge": 0, "log_loss": 1, "squared_hinge": 2, "modified_huber": 3,
          "squared_error": 4, "huber": 5, "epsilon_insensitive": 6}
CLASSIFICATION = ("hinge", "log_loss", "squared_hinge", "modified_huber")
REGRESSION = ("squared_error", "huber", "epsilon_insensitive")
SCHEDULES = {"optimal": 0, "constant": 1, "invscaling": 2}
MULTINOMIAL = 1  # class mode: 0 = binary / one-vs-rest, 1 = multinomial softmax
# losses whose derivative grows with the error (squared hinge, modified Huber, squared
# error): their steps are capped at 1 / (1 + ||x||^2), so no scaling of X can make SGD diverge
UNBOUNDED = (2, 3, 4)

_OPTS = {"cache": True, "nogil": True, "fastmath": {"reassoc", "contract", "arcp", "nsz"}}
# Positions in the CSR arrays and feature ids are cast to unsigned before indexing: numba
# wraps a negative signed index around (a test and a conditional move on every load), and
# scipy's int32 ``indptr`` / ``indices`` make every position signed. Unsigned, the sparse
# dot product of a row runs 2-3x faster (as fast as scipy's own matrix-vector product).
U = np.uint64


@njit(**_OPTS, inline="always")
def dloss(loss, p, y, eps):
    """d loss(p, y) / d p for one output (classification: y in {-1, +1})."""
    if loss == 0:  # hinge
        return -y if y * p < 1.0 else 0.0
    if loss == 1:  # log loss, numerically stable
        z = y * p
        if z > 18.0:
            return -y * math.exp(-z)
        if z < -18.0:
            return -y
        return -y / (1.0 + math.exp(z))
    if loss == 2:  # squared hinge
        z = y * p
        return -2.0 * y * (1.0 - z) if z < 1.0 else 0.0
    if loss == 3:  # modified Huber
        z = y * p
        if z >= 1.0:
            return 0.0
        if z >= -1.0:
            return -2.0 * y * (1.0 - z)
        return -4.0 * y
    r = p - y
    if loss == 4:  # squared error (1/2 r^2)
        return r
    if loss == 5:  # Huber
        if abs(r) <= eps:
            return r
        return eps if r > 0 else -eps
    # epsilon-insensitive
    if r > eps:
        return 1.0
    if r < -eps:
        return -1.0
    return 0.0


@njit(**_OPTS, inline="always")
def loss_value(loss, p, y, eps):
    if loss == 0:
        return max(0.0, 1.0 - y * p)
    if loss == 1:
        z = y * p
        if z > 18.0:
            return math.exp(-z)
        if z < -18.0:
            return -z
        return math.log1p(math.exp(-z))
    if loss == 2:
        z = max(0.0, 1.0 - y * p)
        return z * z
    if loss == 3:
        z = y * p
        if z >= 1.0:
            return 0.0
        if z >= -1.0:
            return (1.0 - z) * (1.0 - z)
        return -4.0 * z
    r = p - y
    if loss == 4:
        return 0.5 * r * r
    if loss == 5:
        a = abs(r)
        return 0.5 * r * r if a <= eps else eps * a - 0.5 * eps * eps
    return max(0.0, abs(r) - eps)


@njit(**_OPTS, inline="always")
def _output_grads(loss, mode, margins, label, targets, eps, g):
    """Per-output d loss / d margin of one example into ``g``."""
    K = margins.shape[0]
    if mode == MULTINOMIAL:
        top = margins[0]
        for k in range(1, K):
            top = max(top, margins[k])
        total = 0.0
        for k in range(K):
            g[k] = math.exp(margins[k] - top)
            total += g[k]
        for k in range(K):
            g[k] = g[k] / total - (1.0 if k == label else 0.0)
        return
    for k in range(K):
        g[k] = dloss(loss, margins[k], targets[k], eps)


@njit(**_OPTS, inline="always")
def _targets(mode, K, label, y_value, classify, targets):
    """The per-output targets of one example: +-1 per class (one-vs-rest, binary) or the
    regression value."""
    if not classify:
        targets[0] = y_value
        return
    if K == 1:
        targets[0] = 1.0 if label == 1 else -1.0
        return
    for k in range(K):
        targets[k] = 1.0 if k == label else -1.0


@njit(**_OPTS, inline="always")
def _eta(schedule, eta0, alpha, t, t0, power):
    if schedule == 0:
        return 1.0 / (alpha * (t + t0))
    if schedule == 1:
        return eta0
    return eta0 / (t + 1.0) ** power


@njit(**_OPTS)
def sgd_epoch(indptr, indices, data, labels, yvals, order, V, bias, state, A, bias_sum,
              q, loss, mode, classify, alpha, l1_ratio, schedule, eta0, t0, power, eps,
              intercept_decay, avg_start, fit_intercept, t_step):
    """SGD over the examples ``order`` (row ids of the CSR arrays), in place.

    ``state`` = [scale s, step t, B (sum of scales since avg_start), u (cumulative L1),
    steps averaged]; ``A`` / ``bias_sum`` the averaging sums (unused if ``avg_start < 0``),
    ``q`` the L1 penalty applied per weight; ``t`` advances by ``t_step`` per example (a
    worker's share of the global count). Returns the sum of the examples' losses (at the
    weights each example saw)."""
    K = V.shape[1]
    if K == 1 and mode != MULTINOMIAL:
        return _sgd_one_output(indptr, indices, data, labels, yvals, order, V.reshape(-1),
                               bias, state, A.reshape(-1), bias_sum, q.reshape(-1), loss,
                               classify, alpha,
                               l1_ratio, schedule, eta0, t0, power, eps, intercept_decay,
                               avg_start, fit_intercept, t_step)
    margins = np.empty(K)
    g = np.empty(K)
    targets = np.empty(K)
    total_loss = 0.0
    l2 = alpha * (1.0 - l1_ratio)
    l1 = alpha * l1_ratio
    for n in range(order.shape[0]):
        i = order[n]
        s, t = state[0], state[1]
        eta = _eta(schedule, eta0, alpha, t, t0, power)
        lo, hi = U(indptr[i]), U(indptr[i + 1])
        if loss in UNBOUNDED:  # normalised step (NLMS): never more than the example's scale
            x2 = 1.0
            for p in range(lo, hi):
                x2 += data[p] * data[p]
            eta = min(eta, 1.0 / x2)
        for k in range(K):
            acc = 0.0
            for p in range(lo, hi):
                acc += data[p] * V[U(indices[p]), k]
            margins[k] = s * acc + bias[k]
        label = labels[i]
        _targets(mode, K, label, yvals[i], classify, targets)
        if mode == MULTINOMIAL:
            top = margins[0]
            for k in range(1, K):
                top = max(top, margins[k])
            z = 0.0
            for k in range(K):
                z += math.exp(margins[k] - top)
            total_loss += math.log(z) + top - margins[label]
        else:
            for k in range(K):
                total_loss += loss_value(loss, margins[k], targets[k], eps)
        _output_grads(loss, mode, margins, label, targets, eps, g)
        # L2: shrink every weight at once through the scale
        if l2 > 0.0:
            s *= max(0.0, 1.0 - eta * l2)
            if s < 1e-9:  # fold the scale into V before it underflows
                for j in range(V.shape[0]):
                    for k in range(K):
                        V[j, k] *= s
                if avg_start >= 0:
                    state[2] /= s
                s = 1.0
        averaging = avg_start >= 0 and t >= avg_start
        B = state[2]
        for p in range(lo, hi):
            j = U(indices[p])
            x = data[p]
            for k in range(K):
                if g[k] != 0.0:
                    d = -eta * g[k] * x / s
                    V[j, k] += d
                    if avg_start >= 0:
                        A[j, k] -= B * d
        if fit_intercept:
            for k in range(K):
                bias[k] -= eta * g[k] * intercept_decay
        if l1 > 0.0:  # cumulative L1 penalty on the touched weights
            state[3] += eta * l1
            u = state[3]
            for p in range(lo, hi):
                j = U(indices[p])
                for k in range(K):
                    z = V[j, k]
                    w = s * z
                    if w > 0.0:
                        V[j, k] = max(0.0, w - (u + q[j, k])) / s
                    elif w < 0.0:
                        V[j, k] = min(0.0, w + (u - q[j, k])) / s
                    q[j, k] += s * (V[j, k] - z)
                    if avg_start >= 0:
                        A[j, k] -= B * (V[j, k] - z)
        if averaging:
            state[2] = B + s
            state[4] += 1.0
            for k in range(K):
                bias_sum[k] += bias[k]
        state[0] = s
        state[1] = t + t_step
    return total_loss


@njit(**_OPTS, inline="always")
def _loss_and_dloss(loss, p, y, eps):
    """(loss, d loss / d p) of one output, sharing the one ``exp`` of the log loss."""
    if loss == 1:
        z = y * p
        if z > 18.0:
            e = math.exp(-z)
            return e, -y * e
        if z < -18.0:
            return -z, -y
        e = math.exp(-z)
        return math.log1p(e), -y * e / (1.0 + e)
    return loss_value(loss, p, y, eps), dloss(loss, p, y, eps)


@njit(**_OPTS)
def _sgd_one_output(indptr, indices, data, labels, yvals, order, v, bias, state, a,
                    bias_sum, q, loss, classify, alpha, l1_ratio, schedule, eta0, t0, power,
                    eps, intercept_decay, avg_start, fit_intercept, t_step):
    """:func:`sgd_epoch` for one output (binary classification, regression) on 1-D weight
    views: the same updates without the per-output loops and scratch arrays (the common
    case; about twice as fast)."""
    total_loss = 0.0
    l2 = alpha * (1.0 - l1_ratio)
    l1 = alpha * l1_ratio
    unbounded = loss == 2 or loss == 3 or loss == 4
    averaged = avg_start >= 0
    s, t, B = state[0], state[1], state[2]
    b = bias[0]
    for n in range(order.shape[0]):
        i = order[n]
        eta = _eta(schedule, eta0, alpha, t, t0, power)
        lo, hi = U(indptr[i]), U(indptr[i + 1])
        if unbounded:
            x2 = 1.0
            for p in range(lo, hi):
                x2 += data[p] * data[p]
            eta = min(eta, 1.0 / x2)
        acc = _sparse_dot(lo, hi, indices, data, v)
        margin = s * acc + b
        target = (1.0 if labels[i] == 1 else -1.0) if classify else yvals[i]
        value, g = _loss_and_dloss(loss, margin, target, eps)
        total_loss += value
        if l2 > 0.0:
            s *= max(0.0, 1.0 - eta * l2)
            if s < 1e-9:  # fold the scale into v before it underflows
                for j in range(v.shape[0]):
                    v[j] *= s
                if averaged:
                    B /= s
                s = 1.0
        if g != 0.0:
            step = -eta * g / s
            for p in range(lo, hi):
                j = U(indices[p])
                d = step * data[p]
                v[j] += d
                if averaged:
                    a[j] -= B * d
        if fit_intercept:
            b -= eta * g * intercept_decay
        if l1 > 0.0:
            state[3] += eta * l1
            u = state[3]
            for p in range(lo, hi):
                j = U(indices[p])
                z = v[j]
                w = s * z
                if w > 0.0:
                    v[j] = max(0.0, w - (u + q[j])) / s
                elif w < 0.0:
                    v[j] = min(0.0, w + (u - q[j])) / s
                q[j] += s * (v[j] - z)
                if averaged:
                    a[j] -= B * (v[j] - z)
        if averaged and t >= avg_start:
            B += s
            state[4] += 1.0
            bias_sum[0] += b
        t += t_step
    state[0], state[1], state[2] = s, t, B
    bias[0] = b
    return total_loss


@njit(**_OPTS)
def batch_gradient(indptr, indices, data, labels, yvals, batch, local, W, bias, freq,
                   n_total, loss, mode, classify, alpha, eps, G, g_bias):
    """Mean gradient of the examples ``batch`` at weights ``W`` (rows: the batch's features,
    ``local[j]`` is feature j's row); accumulates into ``G`` / ``g_bias``. ``freq[j]``:
    the share of all examples with feature j (spreads the L2 term, see the module
    docstring). Returns the batch's summed loss."""
    K = W.shape[1]
    margins = np.empty(K)
    g = np.empty(K)
    targets = np.empty(K)
    m = batch.shape[0]
    total = 0.0
    for n in range(m):
        i = batch[n]
        lo, hi = U(indptr[i]), U(indptr[i + 1])
        for k in range(K):
            acc = 0.0
            for p in range(lo, hi):
                acc += data[p] * W[U(local[U(indices[p])]), k]
            margins[k] = acc + bias[k]
        label = labels[i]
        _targets(mode, K, label, yvals[i], classify, targets)
        for k in range(K):
            total += loss_value(loss, margins[k], targets[k], eps) if mode != MULTINOMIAL \
                else 0.0
        _output_grads(loss, mode, margins, label, targets, eps, g)
        for p in range(lo, hi):
            j = U(indices[p])
            r = U(local[j])
            x = data[p]
            reg = alpha / (freq[j] * m) if alpha > 0.0 and freq[j] > 0.0 else 0.0
            for k in range(K):
                G[r, k] += (g[k] * x + reg * W[r, k]) / m
        for k in range(K):
            g_bias[k] += g[k] / m
    return total


@njit(**_OPTS)
def decision(indptr, indices, data, W, bias, out):
    """``out = X W + bias`` for CSR ``X``."""
    K = W.shape[1]
    for i in range(indptr.shape[0] - 1):
        for k in range(K):
            acc = bias[k]
            for p in range(U(indptr[i]), U(indptr[i + 1])):
                acc += data[p] * W[U(indices[p]), k]
            out[i, k] = acc


@njit(**_OPTS)
def hogwild_epoch(indptr, indices, data, labels, yvals, order, W, bias, freq, loss, mode,
                  classify, alpha, eta0, eps, intercept_decay, fit_intercept):
    """Lock-free SGD (HOGWILD!, Recht et al. 2011) over ``order`` on a shared ``W``: several
    threads run this at once on one array. Per-coordinate L2 spread by feature frequency,
    constant step ``eta0``: no shared scale, no shared step counter. Returns the loss sum."""
    K = W.shape[1]
    margins = np.empty(K)
    g = np.empty(K)
    targets = np.empty(K)
    total = 0.0
    n_examples = order.shape[0]
    for n in range(n_examples):
        i = order[n]
        lo, hi = U(indptr[i]), U(indptr[i + 1])
        eta = eta0
        if loss in UNBOUNDED:
            x2 = 1.0
            for p in range(lo, hi):
                x2 += data[p] * data[p]
            eta = min(eta0, 1.0 / x2)
        for k in range(K):
            acc = bias[k]
            for p in range(lo, hi):
                acc += data[p] * W[U(indices[p]), k]
            margins[k] = acc
        label = labels[i]
        _targets(mode, K, label, yvals[i], classify, targets)
        for k in range(K):
            total += loss_value(loss, margins[k], targets[k], eps) if mode != MULTINOMIAL \
                else 0.0
        _output_grads(loss, mode, margins, label, targets, eps, g)
        for p in range(lo, hi):
            j = U(indices[p])
            x = data[p]
            reg = alpha / freq[j] if alpha > 0.0 and freq[j] > 0.0 else 0.0
            for k in range(K):
                W[j, k] -= eta * (g[k] * x + reg * W[j, k])
        if fit_intercept:
            for k in range(K):
                bias[k] -= eta * g[k] * intercept_decay
    return total


@njit(**_OPTS, inline="always")
def _margins(lo, hi, indices, data, W, bias, margins):
    """``margins = x W + bias`` for the CSR row whose entries are ``lo..hi``."""
    for k in range(W.shape[1]):
        acc = bias[k]
        for p in range(U(lo), U(hi)):
            acc += data[p] * W[U(indices[p]), k]
        margins[k] = acc


@njit(**_OPTS, inline="always")
def _example_loss(loss, mode, margins, label, targets, eps):
    """One example's loss over its outputs (multinomial: the softmax cross-entropy)."""
    total = 0.0
    if mode == MULTINOMIAL:
        top = margins[0]
        for k in range(1, margins.shape[0]):
            top = max(top, margins[k])
        z = 0.0
        for k in range(margins.shape[0]):
            z += math.exp(margins[k] - top)
        return math.log(z) + top - margins[label]
    for k in range(margins.shape[0]):
        total += loss_value(loss, margins[k], targets[k], eps)
    return total


@njit(**_OPTS)
def objective_terms(indptr, indices, data, labels, yvals, W, bias, loss, mode, classify,
                    eps):
    """Summed loss of every example at ``W``, and the number of correct predictions
    (classification) or the summed squared error (regression)."""
    K = W.shape[1]
    margins = np.empty(K)
    targets = np.empty(K)
    total = 0.0
    score = 0.0
    for i in range(indptr.shape[0] - 1):
        lo, hi = indptr[i], indptr[i + 1]
        _margins(lo, hi, indices, data, W, bias, margins)
        label = labels[i]
        _targets(mode, K, label, yvals[i], classify, targets)
        total += _example_loss(loss, mode, margins, label, targets, eps)
        if classify:
            if K == 1:
                pred = 1 if margins[0] > 0.0 else 0
            else:
                pred = 0
                for k in range(1, K):
                    if margins[k] > margins[pred]:
                        pred = k
            if pred == label:
                score += 1.0
        else:
            r = margins[0] - yvals[i]
            score += r * r
    return total, score


@njit(**_OPTS)
def full_gradient(indptr, indices, data, labels, yvals, W, bias, loss, mode, classify, eps,
                  G, g_bias):
    """Summed loss of every example at ``W`` / ``bias`` (no penalty), its gradient added to
    ``G`` (features x K) and ``g_bias``: one pass of a batch method (L-BFGS)."""
    K = W.shape[1]
    margins = np.empty(K)
    g = np.empty(K)
    targets = np.empty(K)
    total = 0.0
    for i in range(indptr.shape[0] - 1):
        lo, hi = indptr[i], indptr[i + 1]
        _margins(lo, hi, indices, data, W, bias, margins)
        label = labels[i]
        _targets(mode, K, label, yvals[i], classify, targets)
        total += _example_loss(loss, mode, margins, label, targets, eps)
        _output_grads(loss, mode, margins, label, targets, eps, g)
        for p in range(U(lo), U(hi)):
            j = U(indices[p])
            x = data[p]
            for k in range(K):
                G[j, k] += g[k] * x
        for k in range(K):
            g_bias[k] += g[k]
    return total


@njit(nogil=True, cache=True, inline="always")
def _sparse_dot(lo, hi, indices, data, w):
    """``sum data[p] w[indices[p]]`` over ``lo..hi`` in four independent sums: the loads
    overlap (the plain loop, vectorised into gathers under fastmath, took 1.6x as long on a
    bag of words). Positions and ids are unsigned (see :data:`U`)."""
    a0 = 0.0
    a1 = 0.0
    a2 = 0.0
    a3 = 0.0
    p = U(lo)
    end = U(hi)
    while p + U(4) <= end:
        a0 += data[p] * w[U(indices[p])]
        a1 += data[p + U(1)] * w[U(indices[p + U(1)])]
        a2 += data[p + U(2)] * w[U(indices[p + U(2)])]
        a3 += data[p + U(3)] * w[U(indices[p + U(3)])]
        p += U(4)
    while p < end:
        a0 += data[p] * w[U(indices[p])]
        p += U(1)
    return (a0 + a1) + (a2 + a3)


@njit(**_OPTS)
def full_gradient_single(indptr, indices, data, targets, w, b, loss, eps, g, scratch):
    """:func:`full_gradient` for one output (binary classification with targets +-1, or
    regression), in three tight passes as a sparse matrix-vector product would run them:
    the margins (into ``scratch``, one per row), each row's loss and derivative (one
    ``exp`` for the log loss), and the scatter of ``X^T d`` into ``g``. Returns (summed
    loss, the bias's gradient)."""
    n = indptr.shape[0] - 1
    for i in range(n):
        scratch[i] = b + _sparse_dot(indptr[i], indptr[i + 1], indices, data, w)
    total = 0.0
    g_bias = 0.0
    for i in range(n):
        value, d = _loss_and_dloss(loss, scratch[i], targets[i], eps)
        total += value
        g_bias += d
        scratch[i] = d
    for i in range(n):
        d = scratch[i]
        if d != 0.0:
            for p in range(U(indptr[i]), U(indptr[i + 1])):
                g[U(indices[p])] += d * data[p]
    return total, g_bias
