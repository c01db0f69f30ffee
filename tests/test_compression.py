"""Compression with error feedback: nothing is lost, only delayed (exactly), payloads are
as small as each scheme says, bad specs are refused, and a compressed table trains."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import stalesync as ss
from stalesync.compression import ErrorFeedback, parse
from stalesync.errors import ConfigError

SPECS = ["topk:0.05", "qsgd:8", "qsgd:4", "sign", "powersgd:2"]


@settings(max_examples=25, deadline=None)
@given(spec=st.sampled_from(SPECS), seed=st.integers(0, 2**16), steps=st.integers(1, 12),
       rows=st.integers(1, 20), width=st.integers(1, 40))
def test_sent_plus_residual_is_everything_produced(spec, seed, steps, rows, width):
    """Error feedback's invariant over T clocks, each touching a random subset of rows:
    what reached the shard plus the residual equals the sum of the uncompressed updates."""
    rng = np.random.default_rng(seed)
    table_rows = 2 * rows
    fb = ErrorFeedback(parse(spec), table_rows, width, np.random.default_rng(seed))
    produced = np.zeros((table_rows, width))
    delivered = np.zeros((table_rows, width))
    for _ in range(steps):
        touched = np.sort(rng.choice(table_rows, size=rows, replace=False))
        deltas = rng.normal(size=(rows, width)) * rng.choice([1e-3, 1.0, 1e3])
        sent, nbytes = fb.step(touched, deltas)
        assert sent.shape == deltas.shape and nbytes > 0
        produced[touched] += deltas
        delivered[touched] += sent
    scale = max(1.0, float(np.abs(produced).max()))
    np.testing.assert_allclose(delivered + fb.residual, produced, rtol=0, atol=1e-9 * scale)


@pytest.mark.parametrize("spec,at_least", [
    ("topk:0.01", 50), ("qsgd:8", 7.9), ("qsgd:4", 11.9), ("sign", 63), ("powersgd:2", 100),
])
def test_payloads_are_as_small_as_the_scheme_says(spec, at_least):
    x = np.random.default_rng(0).normal(size=(512, 1024))  # float64: 8 bytes per entry
    fb = ErrorFeedback(parse(spec), 512, 1024, np.random.default_rng(1))
    _, nbytes = fb.step(np.arange(512), x)
    assert x.nbytes / nbytes >= at_least, (spec, x.nbytes / nbytes)


@pytest.mark.parametrize("spec", ["qsgd:8", "qsgd:4", "sign", "topk:0.01", "powersgd:2"])
def test_error_feedback_stays_bounded_on_a_network_sized_update(spec):
    """Error feedback needs a compressor that shrinks the error (a contraction): QSGD with
    one norm over 270k entries is not one, and its residual grew without bound. A steady
    stream of same-sized updates must keep the residual within a few updates' size."""
    rng = np.random.default_rng(0)
    fb = ErrorFeedback(parse(spec), 264, 1024, np.random.default_rng(1))
    rows = np.arange(264)
    for _ in range(30):
        g = rng.normal(size=(264, 1024)) * 1e-3
        fb.step(rows, g)
    assert np.isfinite(fb.residual).all()
    assert np.linalg.norm(fb.residual) < 40 * np.linalg.norm(g), spec


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
    from stalesync.snapshot import load_snapshot

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
