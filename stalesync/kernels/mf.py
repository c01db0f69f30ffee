"""Compiled kernels of matrix factorization by SGD.

Factor layout, shared by every mode: a factor matrix has ``rank + 1`` columns, the last one
holding the bias (user bias in ``P``, item bias in ``Q``). One row is then one table row of
the parameter server, so a worker moves a user's factors and bias in one batched message.

Every kernel releases the GIL (``nogil=True``) so worker threads run them on all cores.
The model of a rating is ``mu + b_u + b_i + p_u . q_i``.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(nogil=True, cache=True, fastmath=True)
def _sgd_range(users, items, ratings, start, stop, P, Q, mu, lr, reg, reg_bias, use_bias):
    rank = P.shape[1] - 1
    sse = 0.0
    for n in range(start, stop):
        u = users[n]
        i = items[n]
        pred = mu + P[u, rank] + Q[i, rank]
        for f in range(rank):
            pred += P[u, f] * Q[i, f]
        err = ratings[n] - pred
        sse += err * err
        if use_bias:
            P[u, rank] += lr * (err - reg_bias * P[u, rank])
            Q[i, rank] += lr * (err - reg_bias * Q[i, rank])
        for f in range(rank):
            pf = P[u, f]
            qf = Q[i, f]
            P[u, f] = pf + lr * (err * qf - reg * pf)
            Q[i, f] = qf + lr * (err * pf - reg * qf)
    return sse


@numba.njit(nogil=True, cache=True, fastmath=True)
def _predict(users, items, P, Q, mu, out):  # pragma: no cover - compiled
    rank = P.shape[1] - 1
    for n in range(users.shape[0]):
        u = users[n]
        i = items[n]
        pred = mu + P[u, rank] + Q[i, rank]
        for f in range(rank):
            pred += P[u, f] * Q[i, f]
        out[n] = pred


@numba.njit(nogil=True, cache=True, fastmath=True)
def _sse(users, items, ratings, P, Q, mu, lo, hi):  # pragma: no cover - compiled
    rank = P.shape[1] - 1
    total = 0.0
    for n in range(users.shape[0]):
        u = users[n]
        i = items[n]
        pred = mu + P[u, rank] + Q[i, rank]
        for f in range(rank):
            pred += P[u, f] * Q[i, f]
        pred = min(max(pred, lo), hi)
        err = ratings[n] - pred
        total += err * err
    return total


def sgd_pass(
    users: np.ndarray,
    items: np.ndarray,
    ratings: np.ndarray,
    P: np.ndarray,
    Q: np.ndarray,
    *,
    mu: float,
    lr: float,
    reg: float,
    reg_bias: float,
    use_bias: bool = True,
    start: int = 0,
    stop: int | None = None,
) -> float:
    """One SGD pass over ratings ``[start, stop)`` in stored order, updating ``P`` and ``Q``
    in place. Returns the sum of squared errors seen *before* each update (the running
    training loss, free to compute)."""
    stop = users.shape[0] if stop is None else stop
    if stop <= start:
        return 0.0
    return float(
        _sgd_range(users, items, ratings, start, stop, P, Q, P.dtype.type(mu), P.dtype.type(lr),
                   P.dtype.type(reg), P.dtype.type(reg_bias), use_bias)
    )


def predict(users: np.ndarray, items: np.ndarray, P: np.ndarray, Q: np.ndarray,
            mu: float) -> np.ndarray:
    """Predicted ratings for aligned arrays of (dense) user and item indices."""
    out = np.empty(users.shape[0], dtype=np.float64)
    if users.size:
        _predict(users, items, P, Q, P.dtype.type(mu), out)
    return out


def sum_squared_error(users: np.ndarray, items: np.ndarray, ratings: np.ndarray, P: np.ndarray,
                      Q: np.ndarray, mu: float, clip: tuple[float, float] | None = None) -> float:
    """Sum of squared errors of the model on the given ratings, predictions clipped to
    ``clip`` (the rating scale) when given."""
    if not users.size:
        return 0.0
    lo, hi = clip if clip is not None else (-np.inf, np.inf)
    return float(_sse(users, items, ratings, P, Q, P.dtype.type(mu), float(lo), float(hi)))


def warm_up(dtype: str = "float32") -> None:
    """Load (or compile) every kernel for ``dtype`` on a one-rating problem, so that the
    first real epoch, and its timing, does not include numba's start-up (~0.4 s a process)
    and no worker thread sits out a sub-round waiting for another to load the kernel."""
    users = np.zeros(1, dtype=np.int32)
    ratings = np.ones(1, dtype=dtype)
    P = np.zeros((1, 2), dtype=dtype)
    Q = np.zeros((1, 2), dtype=dtype)
    sgd_pass(users, users, ratings, P, Q, mu=0.0, lr=0.0, reg=0.0, reg_bias=0.0)
    predict(users, users, P, Q, 0.0)
    sum_squared_error(users, users, ratings, P, Q, 0.0, (0.0, 1.0))
