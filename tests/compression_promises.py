"""What each compressor promises, computed from its parameters as
:mod:`stalesync.ps.compression` documents them (not from its code), shared by the tests.

- :func:`promised_bytes`: the encoded size of a ``rows x width`` update;
- :func:`promised_left`: the largest share of ``||x||^2`` one encoding may leave in the
  residual (each scheme is a contraction; a decoder that delivers nothing leaves all of it).
"""

from __future__ import annotations

import math

import numpy as np


def _squarest(n: int) -> tuple[int, int]:
    m = next(d for d in range(math.isqrt(n), 0, -1) if n % d == 0)
    return m, n // m


def _qsgd_levels_bucket(bits: int) -> tuple[int, int]:
    levels = 2 ** (bits - 1) - 1  # one bit is the sign
    return levels, max(2, min(512, levels * levels // 2))


def promised_bytes(spec: str, rows: int, width: int) -> int:
    """``topk:R`` / ``dgc:R``: ceil(R n) int32 indices + float32 values; ``qsgd:B``: B bits per
    entry + one float32 norm per bucket; ``sign``: one bit per entry + one float32;
    ``powersgd:R``: (m + n) R float32 for the squarest m x n factoring."""
    name, _, arg = spec.partition(":")
    n = rows * width
    if name in ("topk", "dgc"):
        return 8 * max(1, math.ceil(float(arg.split(":")[0]) * n))
    if name == "qsgd":
        bits = int(arg)
        _, bucket = _qsgd_levels_bucket(bits)
        return 4 * math.ceil(n / bucket) + math.ceil(n * bits / 8)
    if name == "sign":
        return math.ceil(n / 8) + 4
    if name == "powersgd":
        m, k = _squarest(n)
        return (m + k) * min(int(arg), m, k) * 4
    raise ValueError(spec)


def promised_left(spec: str, x: np.ndarray) -> float:
    """The share of ``||x||^2`` an encoding of ``x`` may leave undelivered, at most:
    top-k keeps the k largest of n entries (at least k/n of the energy); QSGD rounds each
    entry to a neighbouring level, an error below norm/levels on each of a bucket's entries
    (at most bucket/levels^2 of the bucket's energy); sign sends the mean magnitude with each
    sign, leaving exactly 1 - ||x||_1^2 / (n ||x||^2); PowerSGD projects onto a rank-R basis
    of the update's own columns, so it removes a positive share (no fixed one)."""
    name, _, arg = spec.partition(":")
    n = x.size
    if name in ("topk", "dgc"):
        return 1 - max(1, math.ceil(float(arg.split(":")[0]) * n)) / n
    if name == "qsgd":
        levels, bucket = _qsgd_levels_bucket(int(arg))
        return bucket / levels**2
    if name == "sign":
        return 1 - float(np.abs(x).sum()) ** 2 / (n * float((x * x).sum()))
    if name == "powersgd":
        return 1 - 1e-5
    raise ValueError(spec)
