"""Lossy compression of what a worker sends, with error feedback.

A table declared with ``TableSpec(..., compress="topk:0.01")`` has every clock's coalesced
increments of a worker (the rows it changed, ``rows x width``) encoded before they leave
the worker. What the encoding drops is kept in the worker's *residual* and added to the
next clock's increments (error feedback, Karimireddy et al. 2019), so nothing is lost, only
delayed: over any number of clocks, what was sent plus the residual equals what was
produced (tested for every compressor). The shard receives the decoded values; the bytes
counted as sent are those of the encoded arrays (measured with ``nbytes``, not estimated).

Compressors (:data:`COMPRESSORS`, parsed by :func:`parse`):

- ``topk:R``: the ``R`` share of entries largest in magnitude (Deep Gradient Compression's
  sparsification), int32 indices + float32 values;
- ``dgc:R[:M]``: top-k with DGC's momentum correction and momentum factor masking (Lin et al.
  2018): the worker keeps a velocity ``u = M u + update`` (M = 0.9 by default), accumulates
  ``u`` (not the raw update) in the residual, sends the residual's top-k, and zeroes both the
  residual and the velocity where it sent. For strategies that push gradients (``sync``,
  ``downpour``) with plain SGD on the shard, that is momentum SGD whose momentum survives the
  sparsification;
- ``qsgd:B``: QSGD (Alistarh et al. 2017), ``B``-bit stochastic rounding of ``|x| / ||x||``
  with the sign, in buckets of ``min(512, s^2 / 2)`` entries for ``s`` levels (one float32
  norm each) + ``B`` bits per entry. Buckets keep it a contraction: with one norm over a
  270k-parameter network the rounding error exceeds the update itself and error feedback
  diverges (it did, to inf);
- ``sign``: 1-bit SGD (Seide et al. 2014), the sign of each entry times the mean magnitude:
  one bit per entry + one float32;
- ``powersgd:R``: PowerSGD (Vogels et al. 2019), a rank-``R`` ``P Q^T`` from one power
  iteration warm-started from the last ``Q``, of the update reshaped to its squarest
  ``m x n`` (a few rows of a flattened network are a poor shape for a low rank):
  ``(m + n) R`` float32.

One extension point: a :class:`Compressor` subclass with ``encode`` / ``decode``, its
``name``, ``usage`` and ``from_arg``, added to :data:`COMPRESSORS` (one line).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from ..errors import ConfigError


@dataclass
class Encoded:
    """An encoded update: its arrays (what would cross the network) and its shape."""

    arrays: dict[str, np.ndarray]
    shape: tuple[int, int]

    @property
    def nbytes(self) -> int:
        return int(sum(a.nbytes for a in self.arrays.values()))


class Compressor:
    """Encodes a ``rows x width`` float update and decodes it back (lossy)."""

    name: str
    usage: ClassVar[str]  # how its spec is written, for the error of a bad one
    momentum: float = 0.0  # > 0: error feedback keeps a DGC velocity (see DGC)

    @classmethod
    def from_arg(cls, arg: str) -> Compressor | None:
        """The compressor a spec's argument (after ``name:``) asks for; None when the
        argument is not one it takes (a ValueError from parsing it means the same)."""
        raise NotImplementedError

    def encode(self, x: np.ndarray, rng: np.random.Generator) -> Encoded:
        raise NotImplementedError

    def decode(self, enc: Encoded) -> np.ndarray:
        raise NotImplementedError


@dataclass
class TopK(Compressor):
    ratio: float
    name: str = "topk"
    usage: ClassVar[str] = "topk:R (0 < R <= 1)"

    @classmethod
    def from_arg(cls, arg: str) -> TopK | None:
        return cls(float(arg)) if 0 < float(arg) <= 1 else None

    def encode(self, x, rng):
        flat = x.ravel()
        k = max(1, min(flat.size, math.ceil(self.ratio * flat.size)))
        idx = np.argpartition(np.abs(flat), flat.size - k)[flat.size - k:]
        return Encoded({"index": idx.astype(np.int32), "value": flat[idx].astype(np.float32)},
                       x.shape)

    def decode(self, enc):
        out = np.zeros(enc.shape[0] * enc.shape[1])
        out[enc.arrays["index"]] = enc.arrays["value"]
        return out.reshape(enc.shape)


@dataclass
class DGC(TopK):
    momentum: float = 0.9
    name: str = "dgc"
    usage: ClassVar[str] = "dgc:R[:M] (0 <= M < 1)"

    @classmethod
    def from_arg(cls, arg: str) -> DGC | None:
        ratio, _, momentum = arg.partition(":")
        m = float(momentum) if momentum else 0.9
        return cls(float(ratio), momentum=m) if 0 < float(ratio) <= 1 and 0 <= m < 1 else None


@dataclass
class QSGD(Compressor):
    bits: int
    name: str = "qsgd"
    usage: ClassVar[str] = "qsgd:B (2..8)"

    @classmethod
    def from_arg(cls, arg: str) -> QSGD | None:
        return cls(int(arg)) if 2 <= int(arg) <= 8 else None

    @property
    def bucket(self) -> int:
        """Entries per norm: fewer than levels^2 / 2, so that the rounding error stays
        below the update (QSGD's variance bound, min(d / s^2, sqrt(d) / s))."""
        levels = 2 ** (self.bits - 1) - 1
        return max(2, min(512, levels * levels // 2))

    def encode(self, x, rng):
        levels = 2 ** (self.bits - 1) - 1  # one bit of each code is the sign
        flat = x.ravel()
        pad = -flat.size % self.bucket
        buckets = np.concatenate([flat, np.zeros(pad)]).reshape(-1, self.bucket)
        norms = np.linalg.norm(buckets, axis=1)
        safe = np.where(norms > 0, norms, 1.0)[:, None]
        scaled = np.minimum(np.abs(buckets) / safe * levels, levels)
        low = np.floor(scaled)
        q = low + (rng.random(scaled.shape) < scaled - low)
        q = (np.minimum(q, levels) * np.sign(buckets)).astype(np.int8).ravel()[:flat.size]
        payload = q if self.bits == 8 else _pack(q.astype(np.int16) + levels, self.bits)
        return Encoded({"norms": norms.astype(np.float32), "codes": payload}, x.shape)

    def decode(self, enc):
        levels = 2 ** (self.bits - 1) - 1
        n = enc.shape[0] * enc.shape[1]
        codes = enc.arrays["codes"]
        q = codes.astype(np.float64) if self.bits == 8 else (
            _unpack(codes, self.bits, n).astype(np.float64) - levels)
        scale = np.repeat(enc.arrays["norms"].astype(np.float64) / levels, self.bucket)[:n]
        return (q * scale).reshape(enc.shape)


def _pack(values: np.ndarray, bits: int) -> np.ndarray:
    """Non-negative ints below ``2**bits`` packed ``bits`` each, little-endian bit order."""
    as_bits = ((values[:, None] >> np.arange(bits)) & 1).astype(np.uint8)
    return np.packbits(as_bits.ravel(), bitorder="little")


def _unpack(packed: np.ndarray, bits: int, n: int) -> np.ndarray:
    as_bits = np.unpackbits(packed, bitorder="little")[:n * bits].reshape(n, bits)
    return (as_bits.astype(np.int64) << np.arange(bits)).sum(axis=1)


@dataclass
class Sign(Compressor):
    name: str = "sign"
    usage: ClassVar[str] = "sign"

    @classmethod
    def from_arg(cls, arg: str) -> Sign | None:
        return None if arg else cls()

    def encode(self, x, rng):
        flat = x.ravel()
        scale = float(np.mean(np.abs(flat))) if flat.size else 0.0
        return Encoded({"scale": np.array([scale], dtype=np.float32),
                        "signs": np.packbits(flat >= 0)}, x.shape)

    def decode(self, enc):
        n = enc.shape[0] * enc.shape[1]
        positive = np.unpackbits(enc.arrays["signs"])[:n].astype(bool)
        scale = float(enc.arrays["scale"][0])
        return np.where(positive, scale, -scale).reshape(enc.shape)


@dataclass
class PowerSGD(Compressor):
    rank: int
    name: str = "powersgd"
    usage: ClassVar[str] = "powersgd:R"

    @classmethod
    def from_arg(cls, arg: str) -> PowerSGD | None:
        return cls(int(arg)) if int(arg) >= 1 else None
    _q: dict[int, np.ndarray] = field(default_factory=dict)  # warm start, per width

    def encode(self, x, rng):
        m = _squarest_divisor(x.size)  # a few rows of a flat vector: factor it squarer
        y = x.reshape(m, x.size // m)
        r = max(1, min(self.rank, *y.shape))
        q = self._q.get(y.shape[1])
        if q is None or q.shape[1] != r:
            q = rng.standard_normal((y.shape[1], r))
        p, _ = np.linalg.qr(y @ q)  # orthonormal basis of the column space's best guess
        q = y.T @ p
        self._q[y.shape[1]] = q
        return Encoded({"p": p.astype(np.float32), "q": q.astype(np.float32)}, x.shape)

    def decode(self, enc):
        low_rank = enc.arrays["p"].astype(np.float64) @ enc.arrays["q"].astype(np.float64).T
        return low_rank.reshape(enc.shape)


def _squarest_divisor(n: int) -> int:
    """The divisor of ``n`` closest to (and at most) its square root."""
    for m in range(math.isqrt(n), 0, -1):
        if n % m == 0:
            return m
    return 1


COMPRESSORS: dict[str, type[Compressor]] = {
    c.name: c for c in (TopK, DGC, QSGD, Sign, PowerSGD)}


def parse(spec: str | Compressor | None) -> Compressor | None:
    """``none`` / ``topk:0.01`` / ``qsgd:8`` / ``sign`` / ``powersgd:2`` -> a compressor
    (the name picks the class in :data:`COMPRESSORS`, which parses its argument)."""
    if spec is None or spec == "none":
        return None
    if isinstance(spec, Compressor):
        return spec
    name, _, arg = str(spec).partition(":")
    chosen = None
    if name in COMPRESSORS:
        try:
            chosen = COMPRESSORS[name].from_arg(arg)
        except ValueError:
            chosen = None
    if chosen is None:
        usage = ", ".join(c.usage for c in COMPRESSORS.values())
        raise ConfigError(f"compress must be none, {usage}; got {spec!r}", param="compress")
    return chosen


class ErrorFeedback:
    """One worker's residual for one table, and the compressor it feeds."""

    def __init__(self, compressor: Compressor, num_rows: int, width: int,
                 rng: np.random.Generator, seed: tuple[int, ...] | None = None) -> None:
        self.compressor = compressor
        self.residual = np.zeros((num_rows, width))
        self.velocity = np.zeros((num_rows, width)) if compressor.momentum > 0 else None
        self.rng = rng
        self.seed = seed  # with a clock: a generator per clock, so a resume draws the same

    def step(self, rows: np.ndarray, deltas: np.ndarray,
             clock: int | None = None) -> tuple[np.ndarray, int]:
        """(what to send for ``rows`` this clock, its encoded size in bytes)."""
        enc, sent = self.encode(rows, deltas, clock)
        return sent, enc.nbytes

    def encode(self, rows: np.ndarray, deltas: np.ndarray,
               clock: int | None = None) -> tuple[Encoded, np.ndarray]:
        """Fold ``deltas`` into the residual of ``rows``, encode it: (the encoding, what it
        decodes to). The residual keeps exactly what the encoding does not deliver."""
        if self.velocity is not None:  # DGC: accumulate the momentum, not the update
            u = self.compressor.momentum * self.velocity[rows] + deltas
            self.velocity[rows] = u
            deltas = u
        corrected = deltas + self.residual[rows]
        rng = (self.rng if clock is None or self.seed is None
               else np.random.default_rng([*self.seed, clock]))
        enc = self.compressor.encode(corrected, rng)
        sent = self.compressor.decode(enc).astype(deltas.dtype, copy=False)
        self.residual[rows] = corrected - sent  # exactly what was not delivered
        if self.velocity is not None:  # momentum factor masking: where sent, start over
            self.velocity[rows] = np.where(sent != 0, 0.0, self.velocity[rows])
        return enc, sent
