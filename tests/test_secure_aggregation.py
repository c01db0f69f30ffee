"""Secure aggregation: the server's unmasked sum is exactly the survivors' sum whatever drops
out, pairwise masks cancel, shares rebuild secrets only from ``threshold`` of them, wrong or
missing shares are refused by name, and a single masked vector looks like noise."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stalesync.errors import ConfigError
from stalesync.strategies.secure_aggregation import (
    PRIME,
    SecureAggregator,
    client_keys,
    dequantize,
    expand,
    mask,
    pair_seed,
    quantize,
    reconstruct,
    share,
    simulate_round,
)

INT64 = np.iinfo(np.int64)


def wrapped_sum(vectors) -> np.ndarray:
    """The oracle: exact integer sum (Python ints), reduced mod 2^64 to signed int64."""
    exact = np.sum([np.asarray(v).astype(object) for v in vectors], axis=0)
    return np.array([(int(e) + 2**63) % 2**64 - 2**63 for e in exact], dtype=np.int64)


@st.composite
def rounds(draw):
    """Client ids (not contiguous), a threshold, and a dropout set leaving enough survivors."""
    n = draw(st.integers(2, 8))
    clients = draw(st.lists(st.integers(0, 50), min_size=n, max_size=n, unique=True))
    threshold = draw(st.integers(1, n))
    dropped = draw(st.lists(st.sampled_from(clients), max_size=n - threshold, unique=True))
    return clients, threshold, dropped


@settings(deadline=None, max_examples=40, derandomize=True)
@given(setup=rounds(), size=st.integers(1, 60), seed=st.integers(0, 2**32))
def test_unmasked_sum_is_survivors_exact_sum(setup, size, seed):
    """Full-range int64 updates (so the sum wraps) from 2-8 clients, any dropouts leaving
    >= threshold survivors: the server recovers the wrapped sum of the survivors exactly."""
    clients, threshold, dropped = setup
    rng = np.random.default_rng(seed)
    updates = {c: rng.integers(INT64.min, INT64.max, size, dtype=np.int64, endpoint=True)
               for c in clients}
    masked, total = simulate_round(updates, dropped, threshold, rng)
    survivors = sorted(set(clients) - set(dropped))
    assert sorted(masked) == survivors
    assert total.dtype == np.int64
    np.testing.assert_array_equal(total, wrapped_sum(updates[c] for c in survivors))


@settings(deadline=None, max_examples=25, derandomize=True)
@given(n=st.integers(2, 8), size=st.integers(1, 60), seed=st.integers(0, 2**32))
def test_pairwise_masks_cancel_without_dropouts(n, size, seed):
    """With everyone present, the plain sum of the masked vectors minus the self masks is the
    sum of the updates: each pairwise mask is added by one end and subtracted by the other."""
    rng = np.random.default_rng(seed)
    keys = [client_keys(c, rng) for c in range(n)]
    publics = {k.client: k.public for k in keys}
    updates = [rng.integers(-(2**40), 2**40, size, dtype=np.int64) for _ in keys]
    total = np.zeros(size, dtype=np.int64)
    for k, q in zip(keys, updates, strict=True):
        total += mask(q, k, publics) - expand(k.self_seed, size)
    np.testing.assert_array_equal(total, wrapped_sum(updates))


def test_pair_seed_is_agreed_and_distinct():
    rng = np.random.default_rng(1)
    a, b, c = (client_keys(i, rng) for i in range(3))
    assert pair_seed(a.secret, b.public) == pair_seed(b.secret, a.public)
    assert pair_seed(a.secret, b.public) != pair_seed(a.secret, c.public)
    assert 0 <= pair_seed(a.secret, b.public) < 2**64


def test_float_updates_round_trip_through_a_round():
    """Quantise, aggregate securely, dequantise: the float sum to within rounding."""
    rng = np.random.default_rng(2)
    frac_bits, n = 20, 5
    floats = {c: rng.uniform(-1, 1, 100) for c in range(n)}
    updates = {c: quantize(x, frac_bits, 1.0, clients=n) for c, x in floats.items()}
    _, total = simulate_round(updates, [3], threshold=3, rng=rng)
    expected = sum(floats[c] for c in (0, 1, 2, 4))
    np.testing.assert_allclose(dequantize(total, frac_bits), expected, rtol=0,
                               atol=4 * 2.0**-frac_bits / 2)


# ---- quantisation -----------------------------------------------------------------------

@settings(deadline=None, max_examples=30, derandomize=True)
@given(frac_bits=st.integers(0, 40), seed=st.integers(0, 2**32))
def test_quantize_round_trip(frac_bits, seed):
    x = np.random.default_rng(seed).uniform(-3.0, 3.0, 200)
    q = quantize(x, frac_bits, 3.0)
    assert q.dtype == np.int64
    assert np.abs(dequantize(q, frac_bits) - x).max() <= 2.0**-frac_bits / 2


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_quantize_refuses_non_finite(bad):
    with pytest.raises(ConfigError, match="NaN or infinite"):
        quantize(np.array([0.0, bad]), 8, 1.0)


def test_quantize_refuses_values_over_the_bound():
    with pytest.raises(ConfigError, match=r"1 value\(s\) exceed the bound 1.0"):
        quantize(np.array([0.5, -1.5]), 8, 1.0)
    quantize(np.array([1.0, -1.0]), 8, 1.0)  # the bound itself is allowed


def test_quantize_refuses_a_range_whose_sum_could_overflow():
    quantize(np.zeros(3), 12, 2.0**50 - 1)  # 2 * (2**62 - 4096) < 2**63
    with pytest.raises(ConfigError, match="overflow int64"):
        quantize(np.zeros(3), 12, 2.0**50)  # two values of 2**62 would wrap
    with pytest.raises(ConfigError, match="over 1000 clients"):
        quantize(np.zeros(3), 20, 2.0**34, clients=1000)
    with pytest.raises(ConfigError, match="frac_bits"):
        quantize(np.zeros(3), -1, 1.0)


# ---- Shamir sharing -----------------------------------------------------------------------

@settings(deadline=None, max_examples=20, derandomize=True)
@given(n=st.integers(1, 7), data=st.data())
def test_any_threshold_shares_rebuild_the_secret(n, data):
    threshold = data.draw(st.integers(1, n))
    secret = data.draw(st.integers(0, PRIME - 1))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32)))
    holders = data.draw(st.lists(st.integers(0, 100), min_size=n, max_size=n, unique=True))
    shares = share(secret, holders, threshold, rng)
    for k in range(threshold, n + 1):
        for subset in itertools.combinations(holders, k):
            assert reconstruct({h: shares[h] for h in subset}, threshold) == secret
    if threshold > 1:
        few = {h: shares[h] for h in holders[: threshold - 1]}
        with pytest.raises(ConfigError, match=f"{threshold - 1} share\\(s\\) given, "
                                              f"{threshold} needed"):
            reconstruct(few, threshold)


def test_threshold_minus_one_shares_do_not_pin_the_secret():
    """t-1 shares interpolated as if they were enough give an unrelated value: the
    polynomial's other coefficients are random, so they do not pin the secret down."""
    rng = np.random.default_rng(3)
    shares = share(12345, [0, 1, 2], 3, rng)
    assert reconstruct({0: shares[0], 1: shares[1]}, 2) != 12345


def test_share_refuses_bad_thresholds_and_holders():
    rng = np.random.default_rng(4)
    with pytest.raises(ConfigError, match="threshold"):
        share(7, [0, 1, 2], 0, rng)
    with pytest.raises(ConfigError, match="threshold"):
        share(7, [0, 1, 2], 4, rng)
    with pytest.raises(ConfigError, match="distinct"):
        share(7, [0, 1, 1], 2, rng)


# ---- the server's refusals ------------------------------------------------------------------

def manual_round(n=5, dropped=(1,), threshold=3, size=16, seed=5):
    """A round by hand, so tests can tamper with the shares the server receives."""
    rng = np.random.default_rng(seed)
    keys = {c: client_keys(c, rng) for c in range(n)}
    publics = {c: k.public for c, k in keys.items()}
    survivors = [c for c in keys if c not in dropped]
    updates = {c: rng.integers(-1000, 1000, size, dtype=np.int64) for c in keys}
    masked_sum = wrapped_sum(mask(updates[u], keys[u], publics) for u in survivors)
    key_shares = {d: share(keys[d].secret, survivors, threshold, rng) for d in dropped}
    seed_shares = {u: share(keys[u].self_seed, survivors, threshold, rng) for u in survivors}
    server = SecureAggregator(publics, {c: k.self_commit for c, k in keys.items()}, threshold)
    expected = wrapped_sum(updates[u] for u in survivors)
    return server, masked_sum, survivors, key_shares, seed_shares, expected


def test_manual_round_unmasks():
    server, masked_sum, survivors, key_shares, seed_shares, expected = manual_round()
    np.testing.assert_array_equal(
        server.unmask(masked_sum, survivors, key_shares, seed_shares), expected)


def test_wrong_key_share_is_caught():
    server, masked_sum, survivors, key_shares, seed_shares, _ = manual_round()
    key_shares[1][survivors[0]] = (key_shares[1][survivors[0]] + 1) % PRIME
    with pytest.raises(ConfigError, match=r"share\(s\) for client 1 do not reconstruct its "
                                          r"key \(a wrong share\)"):
        server.unmask(masked_sum, survivors, key_shares, seed_shares)


def test_wrong_seed_share_is_caught():
    server, masked_sum, survivors, key_shares, seed_shares, _ = manual_round()
    seed_shares[2][survivors[-1]] ^= 1
    with pytest.raises(ConfigError, match=r"client 2 do not reconstruct its self-mask seed"):
        server.unmask(masked_sum, survivors, key_shares, seed_shares)


def test_missing_shares_are_named():
    server, masked_sum, survivors, key_shares, seed_shares, _ = manual_round(dropped=(1, 3))
    del key_shares[3]
    with pytest.raises(ConfigError, match="no shares of the key of client 3"):
        server.unmask(masked_sum, survivors, key_shares, seed_shares)
    server, masked_sum, survivors, key_shares, seed_shares, _ = manual_round()
    del seed_shares[4]
    with pytest.raises(ConfigError, match="self-mask seed of client 4"):
        server.unmask(masked_sum, survivors, key_shares, seed_shares)
    server, masked_sum, survivors, key_shares, seed_shares, _ = manual_round()
    key_shares[1] = {h: s for h, s in list(key_shares[1].items())[:2]}
    with pytest.raises(ConfigError, match=r"client 1's key: .*2 share\(s\) given, 3 needed"):
        server.unmask(masked_sum, survivors, key_shares, seed_shares)


def test_server_never_gets_both_secrets_of_a_client():
    """Double masking: key shares of a survivor, or seed shares of a dropped client, are
    refused (either would let the server peel a client's own update)."""
    server, masked_sum, survivors, key_shares, seed_shares, _ = manual_round()
    with pytest.raises(ConfigError, match=r"\[0\] are both survivors and dropped"):
        server.unmask(masked_sum, survivors, {**key_shares, 0: seed_shares[0]}, seed_shares)
    with pytest.raises(ConfigError, match=r"dropped client\(s\) \[1\]"):
        server.unmask(masked_sum, survivors, key_shares, {**seed_shares, 1: key_shares[1]})
    with pytest.raises(ConfigError, match="fewer than the threshold"):
        server.unmask(masked_sum, survivors[:2], key_shares, seed_shares)


# ---- a masked vector reveals nothing ----------------------------------------------------------

@pytest.mark.parametrize("kind", ["zeros", "ramp"])
def test_masked_vector_looks_uniform(kind):
    """Each of the 64 bits of a masked structured update is set about half the time, and the
    masked vector is uncorrelated with the update: one stored vector shows nothing."""
    size = 20_000
    rng = np.random.default_rng(6)
    keys = [client_keys(c, rng) for c in range(3)]
    publics = {k.client: k.public for k in keys}
    q = np.zeros(size, np.int64) if kind == "zeros" else quantize(
        np.linspace(-1, 1, size), 16, 1.0)
    y = mask(q, keys[1], publics)
    bits = (y.view(np.uint64)[:, None] >> np.arange(64, dtype=np.uint64)) & np.uint64(1)
    stderr = np.sqrt(0.25 / size)
    assert np.abs(bits.mean(axis=0) - 0.5).max() < 5 * stderr
    if kind == "ramp":
        assert abs(np.corrcoef(q.astype(float), y.astype(float))[0, 1]) < 0.05


def test_mask_refuses_unquantised_updates():
    rng = np.random.default_rng(7)
    k = client_keys(0, rng)
    with pytest.raises(ConfigError, match="int64"):
        mask(np.zeros(3), k, {0: k.public})
