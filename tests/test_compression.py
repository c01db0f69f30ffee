"""Compression with error feedback: nothing is lost, only delayed (exactly), payloads are
as small as each scheme says, bad specs are refused, and a compressed table trains."""

from __future__ import annotations

import numpy as np
import pytest
from compression_promises import promised_bytes, promised_left
from hypothesis import given, settings
from hypothesis import strategies as st

import stalesync as ss
from stalesync.errors import ConfigError
from stalesync.ps.compression import ErrorFeedback, parse

SPECS = ["topk:0.05", "qsgd:8", "qsgd:4", "sign", "powersgd:2"]


@settings(max_examples=25, deadline=None)
@given(spec=st.sampled_from(SPECS), seed=st.integers(0, 2**16), steps=st.integers(1, 12),
       rows=st.integers(1, 20), width=st.integers(1, 40))
def test_sent_plus_residual_is_everything_produced(spec, seed, steps, rows, width):
    """Error feedback's invariant over T clocks, each touching a random subset of rows:
    what reached the shard plus the residual equals the sum of the uncompressed updates.
    That alone holds for any decoder (the residual is defined as the difference), so each
    clock must also deliver what the scheme promises: leave at most its share of the
    corrected update (update + residual) behind, and send its promised number of bytes."""
    rng = np.random.default_rng(seed)
    table_rows = 2 * rows
    fb = ErrorFeedback(parse(spec), table_rows, width, np.random.default_rng(seed))
    produced = np.zeros((table_rows, width))
    delivered = np.zeros((table_rows, width))
    for _ in range(steps):
        touched = np.sort(rng.choice(table_rows, size=rows, replace=False))
        deltas = rng.normal(size=(rows, width)) * rng.choice([1e-3, 1.0, 1e3])
        corrected = deltas + fb.residual[touched]
        sent, nbytes = fb.step(touched, deltas)
        assert sent.shape == deltas.shape
        assert nbytes == promised_bytes(spec, rows, width)
        left = float(np.square(fb.residual[touched]).sum())
        whole = float(np.square(corrected).sum())
        assert left <= (promised_left(spec, corrected) + 1e-6) * whole, (spec, left / whole)
        produced[touched] += deltas
        delivered[touched] += sent
    scale = max(1.0, float(np.abs(produced).max()))
    np.testing.assert_allclose(delivered + fb.residual, produced, rtol=0, atol=1e-9 * scale)


@pytest.mark.parametrize("spec", ["topk:0.01", "dgc:0.05", "qsgd:8", "qsgd:4", "qsgd:3", "sign",
                                  "powersgd:2", "powersgd:8"])
@pytest.mark.parametrize("rows,width", [(512, 1024), (37, 100)])
def test_payloads_are_as_small_as_the_scheme_says(spec, rows, width):
    """The ratio to float64 is what the scheme's parameters promise (e.g. topk:0.01 ~100x,
    qsgd:4 ~12x, sign ~64x, powersgd:2 on 512 x 1024 ~341x), within 1%."""
    x = np.random.default_rng(0).normal(size=(rows, width))  # float64: 8 bytes per entry
    fb = ErrorFeedback(parse(spec), rows, width, np.random.default_rng(1))
    _, nbytes = fb.step(np.arange(rows), x)
    promised = x.nbytes / promised_bytes(spec, rows, width)
    assert x.nbytes / nbytes == pytest.approx(promised, rel=0.01), (spec, x.nbytes / nbytes)
    if rows == 512:  # the headline figures, from the scheme's parameters alone
        headline = {"topk:0.01": 100, "dgc:0.05": 20, "qsgd:8": 64 / (8 + 32 / 512),
                    "qsgd:4": 64 / (4 + 32 / 24), "qsgd:3": 64 / (3 + 32 / 4), "sign": 64,
                    "powersgd:2": 64 * 512 * 1024 / (32 * 2 * (512 + 1024)),
                    "powersgd:8": 64 * 512 * 1024 / (32 * 8 * (512 + 1024))}[spec]
        assert x.nbytes / nbytes == pytest.approx(headline, rel=0.01), spec


# ||residual|| / ||one update|| after 30 clocks of i.i.d. N(0, 1e-6) updates, measured
# 0.073, 0.30, 0.77, 3.6, 5.2 (sign's steady state in theory: sqrt((1 - 2/pi) / (2/pi)) =
# 0.75); a decoder that delivers nothing keeps the whole sum, sqrt(30) = 5.5
RESIDUAL_LIMIT = {"qsgd:8": 0.15, "qsgd:4": 0.6, "sign": 1.0, "topk:0.01": 4.5,
                  "powersgd:2": 5.35}


@pytest.mark.parametrize("spec", list(RESIDUAL_LIMIT))
def test_error_feedback_stays_bounded_on_a_network_sized_update(spec):
    """Error feedback needs a compressor that shrinks the error (a contraction): QSGD with
    one norm over 270k entries is not one, and its residual grew without bound. A steady
    stream of same-sized updates must keep the residual at the scheme's steady level."""
    rng = np.random.default_rng(0)
    fb = ErrorFeedback(parse(spec), 264, 1024, np.random.default_rng(1))
    rows = np.arange(264)
    total = np.zeros((264, 1024))
    for _ in range(30):
        g = rng.normal(size=(264, 1024)) * 1e-3
        total += g
        fb.step(rows, g)
    assert np.isfinite(fb.residual).all()
    ratio = np.linalg.norm(fb.residual) / np.linalg.norm(g)
    assert ratio < RESIDUAL_LIMIT[spec], (spec, ratio)
    assert RESIDUAL_LIMIT[spec] < 0.98 * np.linalg.norm(total) / np.linalg.norm(g)


def test_qsgd_is_unbiased_and_topk_keeps_the_largest():
    x = np.random.default_rng(2).normal(size=(64, 64))
    codec = parse("qsgd:4")
    mean = np.mean([codec.decode(codec.encode(x, np.random.default_rng(s)))
                    for s in range(400)], axis=0)
    assert np.abs(mean - x).max() < 0.25 * np.abs(x).max()
    top = parse("topk:0.01")
    kept = top.decode(top.encode(x, None))
    assert np.count_nonzero(kept) == 41
    assert np.abs(kept).min(initial=np.inf, where=kept != 0) >= np.sort(np.abs(x.ravel()))[-41]


@pytest.mark.parametrize("spec", ["topk", "topk:0", "topk:2", "qsgd:1", "qsgd:9", "sign:1",
                                  "powersgd:0", "gzip", "qsgd:x"])
def test_bad_specs_are_refused_with_the_usage(spec):
    with pytest.raises(ConfigError, match="compress must be"):
        parse(spec)
    with pytest.raises(ConfigError, match="compress must be"):
        ss.TableSpec("w", 4, 4, "float32", compress=spec)


def test_a_compressed_table_delivers_everything_in_the_end():
    """Each worker adds the same known increments every clock; with top-k 10% and error
    feedback the table lags behind but, once a last clock flushes zero new increments
    many times, holds nearly all of it; bytes sent are a fraction of the dense job's."""
    rows, width, clocks = 8, 256, 40
    inc = np.arange(rows * width, dtype=np.float64).reshape(rows, width) / 100

    def worker(ctx):
        while ctx.clock_count < ctx.iterations:  # no reads: bytes_sent is the pushes alone
            if ctx.clock_count < 10:
                ctx.inc("w", np.arange(rows), inc)
            else:  # nothing new: the residual drains, a tenth of the entries per clock
                ctx.inc("w", np.arange(rows), np.zeros_like(inc))
            ctx.clock()

    def run(compress):
        return ss.run(worker, [ss.TableSpec("w", rows, width, "float64", compress=compress)],
                      workers=2, consistency="bsp", iterations=clocks)

    dense, packed = run(None), run("topk:0.1")
    np.testing.assert_allclose(dense.tables["w"], 2 * 10 * inc)
    np.testing.assert_allclose(packed.tables["w"], dense.tables["w"], rtol=0, atol=1e-9)
    assert packed.record["bytes_sent"] < 0.2 * dense.record["bytes_sent"]


@pytest.mark.parametrize("spec", ["topk:0.1", "qsgd:4", "dgc:0.1"])
def test_residuals_are_in_the_snapshot_and_a_resume_matches_the_uninterrupted_run(tmp_path,
                                                                                   spec):
    """One worker adds seeded random increments to a compressed table; crash at clock 7,
    resume from the snapshot at 6: the table ends bit for bit where the uninterrupted run
    ends (the residual and the stochastic rounding's draws are restored, not restarted)."""
    rows, width, clocks = 6, 64, 12

    def worker(ctx):
        while ctx.clock_count < ctx.iterations:
            if ctx.clock_count == (ctx.data or {}).get("crash_at"):
                raise RuntimeError("injected crash")
            ctx.inc("w", np.arange(rows), ctx.rng.normal(size=(rows, width)))
            ctx.save_state({"clock": np.array([ctx.clock_count])})
            ctx.clock()

    opts = dict(workers=1, consistency="bsp", iterations=clocks, seed=4)
    tables = [ss.TableSpec("w", rows, width, "float64", compress=spec)]
    reference = ss.run(worker, tables, **opts)
    with pytest.raises(RuntimeError, match="injected crash"):
        ss.run(worker, tables, data=[{"crash_at": 7}], snapshot_every=3,
               snapshot_dir=str(tmp_path), **opts)
    from stalesync.persist.snapshot import load_snapshot

    saved = load_snapshot(tmp_path).workers[0].arrays
    assert any(key.startswith("_stalesync_residual_") for key in saved)
    assert np.abs(saved["_stalesync_residual_0"]).sum() > 0  # compression held some back
    resumed = ss.run(worker, tables, resume=str(tmp_path), **opts)
    assert resumed.record["resumed_from_clock"] == 6
    np.testing.assert_array_equal(resumed.tables["w"], reference.tables["w"])


def test_dgc_accumulates_momentum_and_masks_it_where_it_sent():
    """Two entries, top-1 of 2, momentum 0.9, gradients (10, 1) every step, by hand:
    entry 0 is sent at steps 1-4 and its velocity restarts at 10 each time; entry 1's
    velocity grows 1, 1.9, 2.71, 3.439, 4.0951 and its residual 1, 2.9, 5.61, 9.049, 13.1441,
    which beats entry 0 at step 5 and is sent; then entry 0 (velocity 0.9 * 10 + 10 = 19 on a
    residual of 10) is sent at step 6 with 29."""
    fb = ErrorFeedback(parse("dgc:0.5:0.9"), 1, 2, np.random.default_rng(0))
    grad = np.array([[10.0, 1.0]])
    sent = np.array([fb.step(np.array([0]), grad.copy())[0][0] for _ in range(6)])
    np.testing.assert_allclose(sent, [[10, 0], [10, 0], [10, 0], [10, 0], [0, 13.1441],
                                      [29, 0]], rtol=1e-6)  # float32 on the wire
    np.testing.assert_allclose(fb.residual, [[0.0, 1.0]], atol=1e-6)
    np.testing.assert_allclose(fb.velocity, [[0.0, 1.0]])  # entry 0 masked at step 6


def test_dgc_without_momentum_is_top_k():
    rng = np.random.default_rng(3)
    plain = ErrorFeedback(parse("topk:0.1"), 5, 40, np.random.default_rng(0))
    dgc = ErrorFeedback(parse("dgc:0.1:0"), 5, 40, np.random.default_rng(0))
    for _ in range(8):
        rows = np.sort(rng.choice(5, size=3, replace=False))
        d = rng.normal(size=(3, 40))
        np.testing.assert_array_equal(plain.step(rows, d.copy())[0], dgc.step(rows, d.copy())[0])
    np.testing.assert_array_equal(plain.residual, dgc.residual)


def test_every_registered_compressor_parses_from_its_own_usage_and_a_new_one_plugs_in(
        monkeypatch):
    """The spec's name picks a class in COMPRESSORS, which parses its own argument: every
    registered compressor round-trips from an example of its usage, and a compressor added
    to the registry (one line) is parsed like the built-in ones and named in the usage."""
    from stalesync.ps import compression

    examples = {"topk": "topk:0.5", "dgc": "dgc:0.5:0.8", "qsgd": "qsgd:4", "sign": "sign",
                "powersgd": "powersgd:2"}
    assert set(examples) == set(compression.COMPRESSORS)
    for name, spec in examples.items():
        assert type(parse(spec)) is compression.COMPRESSORS[name]

    class Half(compression.Compressor):
        name = "half"
        usage = "half"

        @classmethod
        def from_arg(cls, arg):
            return None if arg else cls()

    monkeypatch.setitem(compression.COMPRESSORS, "half", Half)
    assert isinstance(parse("half"), Half)
    with pytest.raises(ConfigError, match="sign, powersgd:R, half; got 'half:1'"):
        parse("half:1")
