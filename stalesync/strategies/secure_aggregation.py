"""Secure aggregation (Bonawitz et al. 2017, "Practical Secure Aggregation for
Privacy-Preserving Machine Learning"): the arithmetic of one round, simulated in-process.

The server learns the sum of the surviving clients' updates and nothing about any single
one, even though some clients drop out mid-round. The steps, for participants ``U``:

1. **Keys.** Each client ``u`` draws a Diffie-Hellman key pair ``(s_u, G**s_u mod PRIME)``
   and a self-mask seed ``b_u``; it publishes its public key and ``sha256(b_u)`` (the commit
   that lets anyone check a reconstructed seed).
2. **Shares.** ``u`` splits ``s_u`` and ``b_u`` into ``threshold``-of-``|U|`` Shamir shares
   over the prime field of ``PRIME`` and gives one of each to every participant (itself
   included, as in the paper).
3. **Masked input.** ``u`` quantises its update to int64 (:func:`quantize`) and sends
   ``y_u = x_u + PRG(b_u) + sum_{v > u} PRG(s_uv) - sum_{v < u} PRG(s_uv)`` in the ring
   ``Z_{2^64}`` (int64 arithmetic that wraps), where ``s_uv = H(G**(s_u s_v))`` is the seed
   ``u`` and ``v`` agree on without talking. In any sum over all of ``U`` the pairwise masks
   cancel (``u`` adds what ``v`` subtracts); the self mask ``PRG(b_u)`` does not.
4. **Unmasking.** The survivors ``S`` are those whose ``y_u`` arrived; the server adds them
   (an int64 table receiving every ``y_u`` with ``+=`` holds exactly this sum). For each
   other participant every survivor hands over *one* kind of share: of ``s_d`` when ``d``
   dropped (so the server can recompute and remove the pairwise masks the survivors added
   with ``d``), of ``b_u`` when ``u`` survived (so it can remove ``u``'s self mask). What is
   left is ``sum_{u in S} x_u`` mod 2^64, exact.

**What the server sees:** public keys, commits, each ``y_u`` (uniform over ``Z_{2^64}`` and
independent of ``x_u``, because ``PRG(b_u)`` is unknown to it), their sum, the dropped
clients' DH secrets and the survivors' self seeds. **Double masking:** it never gets both
secrets of one client. A survivor's DH secret stays hidden, so its pairwise masks do; a
dropped client's self seed stays hidden, so if its ``y_d`` turns up late (slow, not dead)
the recovered pairwise masks still leave ``x_d`` under ``PRG(b_d)``.
:meth:`SecureAggregator.unmask` refuses key shares of a survivor and seed shares of a
dropped client. The paper takes ``threshold > |U| / 2`` so that a server lying about who
dropped cannot gather ``threshold`` shares of both kinds for one client; this module does
not enforce it, so tests can use any threshold.

**Simulation only.** Key agreement uses the multiplicative group mod the Mersenne prime
``2**127 - 1`` with generator ``G = 43``, its smallest primitive root (3, an obvious choice,
only generates the subgroup of index 3). The agreement is correct for any generator, which
is all a simulation needs, but it hides nothing: ``PRIME - 1`` is smooth (largest prime
factor about 2**36), so Pohlig-Hellman recovers a secret key in seconds. A deployment
would use an elliptic-curve key agreement (X25519), a cryptographic PRG, authenticated and
encrypted channels to deliver the shares (the paper's second key pair), and the paper's
consistency check against an active server; none of those change the arithmetic here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from stalesync.errors import ConfigError

PRIME = 2**127 - 1  # Mersenne prime: the field of keys, seeds and Shamir shares
G = 43  # smallest primitive root of PRIME (see the module docstring)
_FIELD_BYTES = 16  # PRIME < 2**128
_INT64 = np.iinfo(np.int64)


# ---- fixed point ------------------------------------------------------------------------

def quantize(x: np.ndarray, frac_bits: int, bound: float, *, clients: int = 2) -> np.ndarray:
    """``round(x * 2**frac_bits)`` as int64: masks live in a ring, so updates must be integers.

    Refuses non-finite values and ``|x| > bound`` (clip first: a bound is what makes the
    sum's range known), and a bound so large that the sum of ``clients`` quantised values
    could leave the signed int64 range, where the wrapped sum would decode to the wrong
    sign. The default, 2 clients, caps ``bound * 2**frac_bits`` below 2**62; aggregating
    ``n`` clients safely needs ``n * bound * 2**frac_bits < 2**63``: pass ``clients=n``."""
    x = np.asarray(x, dtype=np.float64)
    _check_range(frac_bits, bound, clients)
    if not np.isfinite(x).all():
        raise ConfigError(f"quantize: {int((~np.isfinite(x)).sum())} value(s) are NaN or "
                          "infinite; only finite updates can be quantised")
    over = np.abs(x) > bound
    if over.any():
        raise ConfigError(f"quantize: {int(over.sum())} value(s) exceed the bound {bound} "
                          f"(largest |x| = {float(np.abs(x).max())}); clip the update first")
    return np.rint(np.ldexp(x, frac_bits)).astype(np.int64)


def _check_range(frac_bits: int, bound: float, clients: int) -> None:
    """Refuse a fixed-point range whose ``clients``-fold sum could overflow int64."""
    if int(frac_bits) != frac_bits or frac_bits < 0:
        raise ConfigError(f"quantize: frac_bits must be a non-negative integer, not {frac_bits}")
    if not (np.isfinite(bound) and bound > 0) or int(clients) != clients or clients < 1:
        raise ConfigError(f"quantize: bound must be positive and finite and clients >= 1 "
                          f"(got bound={bound}, clients={clients})")
    peak = int(np.ceil(np.ldexp(float(bound), int(frac_bits))))  # largest |quantised value|
    if clients * peak > _INT64.max:
        raise ConfigError(
            f"quantize: bound {bound} * 2**{frac_bits} summed over {clients} clients would "
            f"overflow int64 (needs {clients} * bound * 2**frac_bits < 2**63); lower the "
            "bound or frac_bits")


def dequantize(q: np.ndarray, frac_bits: int) -> np.ndarray:
    """Back to float64 (``q / 2**frac_bits``, exact): decode the unmasked sum."""
    return np.ldexp(np.asarray(q, dtype=np.int64).astype(np.float64), -int(frac_bits))


# ---- keys and masks ---------------------------------------------------------------------

@dataclass(frozen=True)
class ClientKeys:
    """One client's round secrets and what it publishes (``public``, ``self_commit``)."""

    client: int
    secret: int  # DH private key, in [1, PRIME - 2]
    public: int  # pow(G, secret, PRIME)
    self_seed: int  # seed of the client's self mask, in [0, PRIME)
    self_commit: bytes  # sha256 of the self seed: lets the server check a reconstruction


def _field_element(rng: np.random.Generator, low: int = 0, high: int = PRIME) -> int:
    """A uniform int in ``[low, high)`` (rejection sampling on 127 random bits)."""
    while True:
        value = int.from_bytes(rng.bytes(_FIELD_BYTES), "big") >> 1
        if low <= value < high:
            return value


def _commit(seed: int) -> bytes:
    """sha256 of a field element: binds a client to its self seed without revealing it."""
    return hashlib.sha256(seed.to_bytes(_FIELD_BYTES, "big")).digest()


def client_keys(client: int, rng: np.random.Generator) -> ClientKeys:
    """Draw a client's DH key pair and self-mask seed for one round (step 1)."""
    secret = _field_element(rng, low=1, high=PRIME - 1)
    seed = _field_element(rng)
    return ClientKeys(client, secret, pow(G, secret, PRIME), seed, _commit(seed))


def pair_seed(my_secret: int, their_public: int) -> int:
    """The seed two clients agree on without talking: sha256 of the DH shared value
    ``their_public ** my_secret``, cut to 64 bits. Symmetric, so both add the same mask."""
    shared = pow(their_public, my_secret, PRIME)
    digest = hashlib.sha256(shared.to_bytes(_FIELD_BYTES, "big")).digest()
    return int.from_bytes(digest[:8], "big")


def expand(seed: int, size: int) -> np.ndarray:
    """A mask uniform over ``Z_{2^64}`` (every int64 equally likely), the PRG of a seed."""
    gen = np.random.Generator(np.random.PCG64(seed))
    return gen.integers(_INT64.min, _INT64.max, size, dtype=np.int64, endpoint=True)


def _ring_vector(q: np.ndarray, what: str) -> np.ndarray:
    """``q`` as int64, refusing floats: masking an unquantised update would lose it."""
    q = np.asarray(q)
    if q.dtype != np.int64:
        raise ConfigError(f"{what} must be int64 (quantize() it first), not {q.dtype}")
    return q


def _mask_like(seed: int, q: np.ndarray) -> np.ndarray:
    return expand(seed, q.size).reshape(q.shape)


def mask(q: np.ndarray, me: ClientKeys, publics: Mapping[int, int]) -> np.ndarray:
    """``me``'s masked input (step 3): ``q`` plus its self mask, plus the pairwise mask of
    every higher-numbered participant, minus that of every lower one, wrapping mod 2^64.
    ``publics`` (client -> public key) lists the round's participants; ``me`` is skipped."""
    q = _ring_vector(q, "mask: the update")
    out = q + _mask_like(me.self_seed, q)
    for v, public in publics.items():
        if v != me.client:
            pairwise = _mask_like(pair_seed(me.secret, public), out)
            out = out + pairwise if v > me.client else out - pairwise
    return out


# ---- Shamir secret sharing ----------------------------------------------------------------

def share(secret: int, holders: Sequence[int], threshold: int,
          rng: np.random.Generator) -> dict[int, int]:
    """Shamir shares of ``secret`` (step 2): any ``threshold`` holders can rebuild it, fewer
    learn nothing. Holder ``h`` gets a random degree ``threshold - 1`` polynomial with
    constant term ``secret``, evaluated at ``x = h + 1`` mod PRIME (never at 0)."""
    if not 1 <= threshold <= len(holders):
        raise ConfigError(f"share: threshold must be in [1, {len(holders)}] (the number of "
                          f"holders), not {threshold}")
    if len(set(holders)) != len(holders) or min(holders) < 0 or max(holders) >= PRIME - 1:
        raise ConfigError(f"share: holders must be distinct ids in [0, PRIME - 1), "
                          f"got {list(holders)}")
    coeffs = [secret % PRIME] + [_field_element(rng) for _ in range(threshold - 1)]
    return {h: _evaluate(coeffs, h + 1) for h in holders}


def _evaluate(coeffs: Sequence[int], x: int) -> int:
    """Horner's rule mod PRIME; ``coeffs[0]`` is the constant term."""
    y = 0
    for c in reversed(coeffs):
        y = (y * x + c) % PRIME
    return y


def reconstruct(shares: Mapping[int, int], threshold: int) -> int:
    """The secret behind ``shares`` (holder -> share): Lagrange interpolation at 0 through
    all the given points, of which there must be at least ``threshold`` (with more, every
    share takes part, so a wrong one spoils the result instead of going unseen)."""
    if threshold < 1 or len(shares) < threshold:
        raise ConfigError(f"reconstruct: {len(shares)} share(s) given, {max(threshold, 1)} "
                          "needed")
    xs = {h: h + 1 for h in shares}
    secret = 0
    for h, y in shares.items():
        num, den = 1, 1
        for other, x in xs.items():
            if other != h:
                num = num * x % PRIME
                den = den * (x - xs[h]) % PRIME
        secret = (secret + y * num * pow(den, -1, PRIME)) % PRIME
    return secret


# ---- the server ---------------------------------------------------------------------------

class SecureAggregator:
    """The server side of one round: knows the participants' public keys and self commits,
    and turns the survivors' wrapped masked sum into the sum of their updates (step 4)."""

    def __init__(self, publics: Mapping[int, int], commits: Mapping[int, bytes],
                 threshold: int) -> None:
        if set(publics) != set(commits):
            raise ConfigError("SecureAggregator: public keys and self commits must cover the "
                              f"same clients ({sorted(publics)} vs {sorted(commits)})")
        if not 1 <= threshold <= len(publics):
            raise ConfigError(f"SecureAggregator: threshold must be in [1, {len(publics)}], "
                              f"not {threshold}")
        self.publics = dict(publics)
        self.commits = dict(commits)
        self.threshold = threshold

    def unmask(self, masked_sum: np.ndarray, survivors: Collection[int],
               dropped_key_shares: Mapping[int, Mapping[int, int]],
               survivor_seed_shares: Mapping[int, Mapping[int, int]]) -> np.ndarray:
        """The exact (wrapped) sum of the survivors' quantised updates. ``masked_sum`` adds
        the survivors' masked vectors; the other participants dropped, and for each the
        survivors' shares of its DH secret are in ``dropped_key_shares`` (client -> holder
        -> share); ``survivor_seed_shares`` holds the shares of each survivor's self seed."""
        total = _ring_vector(masked_sum, "unmask: the masked sum").copy()
        dropped = self._dropped(survivors, dropped_key_shares, survivor_seed_shares)
        for d in dropped:
            secret = self._recover(d, dropped_key_shares, "key",
                                   lambda s, d=d: pow(G, s, PRIME) == self.publics[d])
            for u in survivors:  # remove the pairwise mask u added with d (opposite sign)
                pairwise = _mask_like(pair_seed(secret, self.publics[u]), total)
                total = total - pairwise if d > u else total + pairwise
        for u in survivors:
            seed = self._recover(u, survivor_seed_shares, "self-mask seed",
                                 lambda b, u=u: _commit(b) == self.commits[u])
            total = total - _mask_like(seed, total)
        return total

    def _dropped(self, survivors: Collection[int], key_shares: Mapping[int, object],
                 seed_shares: Mapping[int, object]) -> list[int]:
        """The dropped clients, after refusing share sets that would expose a client: never
        both a client's DH secret and its self seed (double masking)."""
        unknown = (set(survivors) | set(key_shares) | set(seed_shares)) - set(self.publics)
        if unknown:
            raise ConfigError(f"unmask: client(s) {sorted(unknown)} are not participants")
        if len(set(survivors)) < self.threshold:
            raise ConfigError(f"unmask: {len(set(survivors))} survivor(s), fewer than the "
                              f"threshold {self.threshold}; the round must be abandoned")
        both = set(survivors) & set(key_shares)
        if both:
            raise ConfigError(f"unmask: client(s) {sorted(both)} are both survivors and "
                              "dropped; revealing a survivor's key would expose its update")
        dropped = sorted(set(self.publics) - set(survivors))
        late = set(seed_shares) & set(dropped)
        if late:
            raise ConfigError(f"unmask: self-seed shares of dropped client(s) {sorted(late)} "
                              "must not be asked for (a late vector would be exposed)")
        return dropped

    def _recover(self, client: int, shares: Mapping[int, Mapping[int, int]], what: str,
                 check: Callable[[int], bool]) -> int:
        """Rebuild ``client``'s secret from its shares and check it against what it
        published, so a wrong share is caught instead of corrupting the sum."""
        if client not in shares:
            raise ConfigError(f"unmask: no shares of the {what} of client {client}")
        try:
            value = reconstruct(shares[client], self.threshold)
        except ConfigError as err:
            raise ConfigError(f"unmask: client {client}'s {what}: {err}") from err
        if not check(value):
            raise ConfigError(f"unmask: share(s) for client {client} do not reconstruct its "
                              f"{what} (a wrong share)")
        return value


# ---- a whole round ------------------------------------------------------------------------

def simulate_round(updates: Mapping[int, np.ndarray], dropped: Collection[int], threshold: int,
                   rng: np.random.Generator) -> tuple[dict[int, np.ndarray], np.ndarray]:
    """One round in-process (for tests and benchmarks): keys, shares of every participant's
    DH secret and self seed for every participant, the survivors' masked (int64) updates,
    the server's wrapped sum and its unmasking. Returns (masked vectors received, sum)."""
    clients = sorted(updates)
    if not set(dropped) <= set(clients):
        raise ConfigError(f"simulate_round: dropped {sorted(set(dropped) - set(clients))} "
                          "are not participants")
    keys = {c: client_keys(c, rng) for c in clients}
    key_shares = {c: share(keys[c].secret, clients, threshold, rng) for c in clients}
    seed_shares = {c: share(keys[c].self_seed, clients, threshold, rng) for c in clients}
    publics = {c: k.public for c, k in keys.items()}
    dropped = sorted(set(dropped))
    survivors = [c for c in clients if c not in dropped]
    masked = {u: mask(updates[u], keys[u], publics) for u in survivors}
    total = np.zeros(np.shape(updates[clients[0]]), dtype=np.int64)
    for y in masked.values():
        total += y  # what an int64 parameter-server table does with each increment
    server = SecureAggregator(publics, {c: k.self_commit for c, k in keys.items()}, threshold)
    held = set(survivors)  # only survivors answer the unmasking request
    unmasked = server.unmask(
        total, survivors,
        {d: {h: s for h, s in key_shares[d].items() if h in held} for d in dropped},
        {u: {h: s for h, s in seed_shares[u].items() if h in held} for u in survivors})
    return masked, unmasked
