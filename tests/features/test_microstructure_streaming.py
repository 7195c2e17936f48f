"""Streaming microstructure kernels (Numba) against plain-Python references and the batch functions.

- each `<name>_update_nb` equals a slow, obviously correct Python update (deques, math.fsum) on
  random streams with NaNs and empty book sides;
- the streams equal the batch functions (1e-9 relative, NaN in the same places);
- VPIN per trade: the bucket values equal the Python bucket filler and `vpin_buckets` (normal and
  Student-t), the per-trade value is the latest completed bucket's, invalid events are skipped;
- the Student-t CDF kernel equals scipy; the windowed sums do not drift over a long stream;
- the updates are callable from other njit code and allocate nothing per update.
"""
import math
from collections import deque

import numpy as np
import pytest
from numba import njit
from numba.core.runtime import _nrt_python, rtsys
from scipy import special, stats

from bot4jax.features import microstructure as ms
from bot4jax.kernels import microstructure_nb as nb

from .test_microstructure_vpin import py_vpin, tape

NAN = float("nan")


# ---- plain-Python references of the updates ---------------------------------------------------

class PyKyle:
    def __init__(self, window):
        self.window, self.pairs = window, deque(maxlen=window)

    def update(self, dp, sv):
        self.pairs.append((dp, sv))
        if len(self.pairs) < self.window or any(math.isnan(a) or math.isnan(b) for a, b in self.pairs):
            return NAN
        n = float(self.window)
        sx = math.fsum(b for _, b in self.pairs)
        sy = math.fsum(a for a, _ in self.pairs)
        sxy = math.fsum(a * b for a, b in self.pairs)
        sxx = math.fsum(b * b for _, b in self.pairs)
        den = n * sxx - sx * sx
        return (n * sxy - sx * sy) / den if den > 0 else NAN


class PyOFI:
    def __init__(self, window):
        self.window, self.flows, self.prev = window, deque(maxlen=window), None

    def update(self, pb, qb, pa, qa):
        if self.prev is None or any(math.isnan(x) for x in (pb, pa, self.prev[0], self.prev[2])):
            e = NAN
        else:
            pb0, qb0, pa0, qa0 = self.prev
            bid = qb if pb > pb0 else (qb - qb0 if pb == pb0 else -qb0)
            ask = qa if pa < pa0 else (qa - qa0 if pa == pa0 else -qa0)
            e = bid - ask
        self.prev = (pb, qb, pa, qa)
        self.flows.append(e)
        if len(self.flows) < self.window or any(math.isnan(x) for x in self.flows):
            return NAN
        return math.fsum(self.flows)


class PyDepth:
    def __init__(self, levels, window):
        self.levels, self.window, self.values = levels, window, deque(maxlen=window)

    def update(self, bid_sz, ask_sz):
        b, a = math.fsum(bid_sz[:self.levels]), math.fsum(ask_sz[:self.levels])
        self.values.append((b - a) / (b + a) if b + a > 0 else NAN)
        if len(self.values) < self.window or any(math.isnan(x) for x in self.values):
            return NAN
        return math.fsum(self.values) / self.window


def assert_same(got, want, rtol=1e-9, atol=1e-12):
    got, want = np.asarray(got), np.asarray(want)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


def flow_stream(seed, n=3_000):
    rng = np.random.default_rng(seed)
    dp = rng.normal(size=n)
    sv = rng.standard_t(3, n)
    dp[rng.random(n) < 0.002] = np.nan
    sv[[5, 6]] = np.nan
    return dp, sv


def book_stream(seed, n=3_000, levels=4):
    rng = np.random.default_rng(seed)
    mid = 100.0 + 0.5 * np.round(np.cumsum(rng.normal(0, 0.5, n)))
    bid = mid[:, None] - 0.5 * np.cumsum(rng.integers(1, 3, (n, levels)), axis=1)
    ask = mid[:, None] + 0.5 * np.cumsum(rng.integers(1, 3, (n, levels)), axis=1)
    bsz, asz = rng.random((n, levels)), rng.random((n, levels))
    empty = rng.random(n) < 0.003           # an empty bid side now and then
    bid[empty] = np.nan
    bsz[empty] = 0.0
    asz[rng.random(n) < 0.002] = 0.0        # and an empty ask size
    return bid, bsz, ask, asz


# ---- kernels against references and batch -------------------------------------------------------

@pytest.mark.parametrize("window", [2, 37])
def test_kyle_stream_equals_reference_and_batch(window):
    dp, sv = flow_stream(1)
    state = nb.kyle_init(window)
    ref = PyKyle(window)
    got = np.array([nb.kyle_update_nb(state, a, b) for a, b in zip(dp[:600], sv[:600])])
    assert_same(got, [ref.update(a, b) for a, b in zip(dp[:600], sv[:600])])
    full = nb.kyle_run_nb(nb.kyle_init(window), dp, sv, np.empty(dp.size))
    assert_same(full, ms.kyle_lambda(dp, sv, window))


@pytest.mark.parametrize("window", [1, 25])
def test_ofi_stream_equals_reference_and_batch(window):
    bid, bsz, ask, asz = (x[:, 0] for x in book_stream(2))
    state = nb.ofi_init(window)
    ref = PyOFI(window)
    got = [nb.ofi_update_nb(state, *row) for row in zip(bid[:600], bsz[:600], ask[:600], asz[:600])]
    assert_same(got, [ref.update(*row) for row in zip(bid[:600], bsz[:600], ask[:600], asz[:600])])
    full = nb.ofi_run_nb(nb.ofi_init(window), bid, bsz, ask, asz, np.empty(bid.size))
    batch = ms.order_flow_imbalance(bid, bsz, ask, asz, None if window == 1 else window)
    assert_same(full, batch)


@pytest.mark.parametrize("levels, window", [(1, 1), (3, 20)])
def test_depth_stream_equals_reference_and_batch(levels, window):
    _, bsz, _, asz = book_stream(3)
    state = nb.depth_imbalance_init(levels, window)
    ref = PyDepth(levels, window)
    got = [nb.depth_imbalance_update_nb(state, b, a) for b, a in zip(bsz[:600], asz[:600])]
    assert_same(got, [ref.update(list(b), list(a)) for b, a in zip(bsz[:600], asz[:600])])
    full = nb.depth_imbalance_run_nb(nb.depth_imbalance_init(levels, window), bsz, asz, np.empty(len(bsz)))
    assert_same(full, ms.depth_imbalance(bsz, asz, levels, None if window == 1 else window))


@pytest.mark.parametrize("dof", [None, 3.0])
def test_vpin_stream_equals_reference_and_batch(dof):
    price, volume = tape(4)
    bucket = volume.sum() / 300.5
    state = nb.vpin_init(bucket, 20, 100, 0.0 if dof is None else dof)
    out = np.full(400, np.nan)
    k = nb.vpin_buckets_run_nb(state, price, volume, out)
    want, _ = py_vpin(price, volume, bucket, window=20, sigma_window=100, dof=dof)
    assert k == len(want)
    assert_same(out[:k], want)
    batch = ms.vpin_buckets(price, volume, bucket, 20, 100, dof)
    assert_same(out[:k], batch.vpin)
    # per trade: the VPIN of the latest completed bucket (NaN before the window is full)
    per_trade = nb.vpin_run_nb(nb.vpin_init(bucket, 20, 100, 0.0 if dof is None else dof), price, volume,
                               np.empty(price.size))
    done = np.searchsorted(np.asarray(batch.end_index), np.arange(price.size), side="right")
    expect = np.where(done > 0, np.asarray(batch.vpin)[np.maximum(done - 1, 0)], np.nan)
    assert_same(per_trade, expect)


def test_vpin_update_returns_the_latest_bucket_and_skips_invalid_events():
    price, volume = tape(5, n=500)
    bucket = volume.sum() / 60.5
    state = nb.vpin_init(bucket, 5, 50)
    values = [nb.vpin_update_nb(state, p, v) for p, v in zip(price, volume)]
    bad = nb.vpin_init(bucket, 5, 50)
    with_junk = []
    for p, v in zip(price, volume):
        nb.vpin_update_nb(bad, np.nan, 1.0)   # skipped: not a price
        nb.vpin_update_nb(bad, p, -1.0)       # skipped: negative volume
        with_junk.append(nb.vpin_update_nb(bad, p, v))
    assert_same(with_junk, values, rtol=0, atol=0)
    np.testing.assert_array_equal(state, bad)
    assert values[-1] == pytest.approx(float(ms.vpin_buckets(price, volume, bucket, 5, 50).vpin[-1]), rel=1e-9)


def test_student_t_and_normal_cdf_kernels_equal_scipy():
    for a, b in ((0.125, 0.5), (1.5, 0.5), (15.0, 0.5), (2.0, 3.0)):
        for x in np.linspace(0.0, 1.0, 41):
            assert nb.betainc_nb(a, b, x) == pytest.approx(special.betainc(a, b, x), rel=1e-12, abs=1e-15)
    z = np.linspace(-10.0, 10.0, 81)
    for dof in (0.25, 1.0, 4.0, 50.0):
        got = [nb.student_t_cdf_nb(v, dof) for v in z]
        np.testing.assert_allclose(got, stats.t.cdf(z, dof), rtol=1e-11, atol=1e-15)
    np.testing.assert_allclose([nb.normal_cdf_nb(v) for v in z], stats.norm.cdf(z), rtol=1e-13, atol=1e-300)


def test_windowed_sums_do_not_drift_over_a_long_stream():
    rng = np.random.default_rng(6)
    n, w = 400_000, 50
    sv = rng.normal(size=n) + 1e3 * (np.arange(n) > n // 2)   # a level shift: a running sum would carry it
    dp = 0.5 * sv + rng.normal(size=n)
    got = nb.kyle_run_nb(nb.kyle_init(w), dp, sv, np.empty(n))
    ref = PyKyle(w)
    for a, b in zip(dp[-w:], sv[-w:]):
        want = ref.update(a, b)
    assert got[-1] == pytest.approx(want, rel=1e-9)
    assert_same(got[-1000:], np.asarray(ms.kyle_lambda(dp, sv, w))[-1000:], rtol=1e-8)


# ---- use from njit code, allocation, bad parameters -------------------------------------------

@njit(cache=False)
def _replay(kyle_s, ofi_s, depth_s, vpin_s, dp, sv, bid, bsz, ask, asz, price, volume, out):
    for i in range(dp.shape[0]):
        out[i, 0] = nb.kyle_update_nb(kyle_s, dp[i], sv[i])
        out[i, 1] = nb.ofi_update_nb(ofi_s, bid[i, 0], bsz[i, 0], ask[i, 0], asz[i, 0])
        out[i, 2] = nb.depth_imbalance_update_nb(depth_s, bsz[i], asz[i])
        out[i, 3] = nb.vpin_update_nb(vpin_s, price[i], volume[i])


def test_updates_callable_from_njit_without_allocation():
    n = 3_000
    dp, sv = flow_stream(7, n)
    bid, bsz, ask, asz = book_stream(7, n)
    price, volume = tape(7, n)
    out = np.empty((n, 4))

    def fresh():
        return nb.kyle_init(30), nb.ofi_init(30), nb.depth_imbalance_init(3, 10), nb.vpin_init(volume.sum() / 200.5, 10)

    _replay(*fresh(), dp, sv, bid, bsz, ask, asz, price, volume, out)
    assert_same(out[:, 0], ms.kyle_lambda(dp, sv, 30))
    assert_same(out[:, 3], nb.vpin_run_nb(fresh()[3], price, volume, np.empty(n)), rtol=0, atol=0)

    def allocations(m):
        _nrt_python.memsys_enable_stats()
        try:
            before = rtsys.get_allocation_stats().alloc
            _replay(*fresh(), dp[:m], sv[:m], bid[:m], bsz[:m], ask[:m], asz[:m], price[:m], volume[:m], out[:m])
            return rtsys.get_allocation_stats().alloc - before
        finally:
            _nrt_python.memsys_disable_stats()

    # Boxing the arguments costs a fixed few; the updates themselves add none.
    assert allocations(10) == allocations(n)


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="window must be an integer >= 2"):
        nb.kyle_init(1)
    with pytest.raises(ValueError, match="window must be an integer >= 1"):
        nb.ofi_init(0)
    with pytest.raises(ValueError, match="levels must be an integer >= 1"):
        nb.depth_imbalance_init(0)
    with pytest.raises(ValueError, match="bucket_volume must be a finite number > 0"):
        nb.vpin_init(0.0)
    with pytest.raises(ValueError, match="dof must be 0"):
        nb.vpin_init(1.0, dof=-2.0)
