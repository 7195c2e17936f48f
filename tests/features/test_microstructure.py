"""Microstructure estimators (batch, JAX) against plain NumPy references, ground truth and their own
rolling windows.

- whole-sample values equal straightforward NumPy / Python computations of each paper's formula;
- on simulated markets with known parameters the estimators recover them within stated tolerances
  (tolerances are about 5 standard deviations of the estimator, measured over 20 seeds);
- a rolling value at t equals the whole-sample value on the slice its window covers, NaN included
  (warm-up, NaN inputs, estimators outside their domain);
- bounds hold, and bad inputs raise errors that name the argument.
"""
import math

import numpy as np
import pytest

from bot4jax.features import microstructure as ms
from bot4jax.features.microstructure import sim

N = 240  # length of the random series of the reference and window tests (one compile per function)


def random_bars(seed, n=N):
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.002, n)))
    high = close * np.exp(np.abs(rng.normal(0.0, 0.002, n)))
    low = close * np.exp(-np.abs(rng.normal(0.0, 0.002, n)))
    volume = rng.pareto(1.5, n) + 0.1
    side = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    return close, high, low, volume, side


# ---- NumPy references of the whole-sample formulas -------------------------------------------

def np_roll(p):
    dp = np.diff(p)
    c = np.cov(dp[1:], dp[:-1])[0, 1]
    return 2 * math.sqrt(-c) if c < 0 else math.nan


def np_slope(y, x):
    return np.polyfit(x, y, 1)[0]


def np_cs(h, lo):
    s = []
    for t in range(1, len(h)):
        beta = math.log(h[t] / lo[t]) ** 2 + math.log(h[t - 1] / lo[t - 1]) ** 2
        gamma = math.log(max(h[t], h[t - 1]) / min(lo[t], lo[t - 1])) ** 2
        k = 3 - 2 * math.sqrt(2)
        alpha = (math.sqrt(2 * beta) - math.sqrt(beta)) / k - math.sqrt(gamma / k)
        s.append(max(0.0, 2 * (math.exp(alpha) - 1) / (1 + math.exp(alpha))))
    return float(np.mean(s))


def np_ar(h, lo, c):
    eta = (np.log(h) + np.log(lo)) / 2
    lc = np.log(c)
    s2 = 4 * np.mean((lc[:-1] - eta[:-1]) * (lc[:-1] - eta[1:]))
    return math.sqrt(max(s2, 0.0))


def np_amihud(p, v):
    r = np.abs(np.diff(np.log(p)))
    has = v[1:] > 0
    return float(np.mean(r[has] / (p[1:][has] * v[1:][has])))


def np_noise(p, k):
    x = np.log(p)
    r1 = np.diff(x)[k - 1:]          # positions t = k..n-1
    rk = x[k:] - x[:-k]
    m = len(rk)
    return (np.sum(r1 ** 2) - np.sum(rk ** 2) / k) / (2 * m * (1 - 1 / k))


def np_vr(p, q):
    x = np.log(p)
    r1 = np.diff(x)[q - 1:]
    rq = x[q:] - x[:-q]
    return np.sum(rq ** 2) / (q * np.sum(r1 ** 2))


def np_hs(p, q):
    dp = np.diff(p)[1:]
    X = np.column_stack([q[2:], q[1:-1], q[:-2]])
    b0, b1, b2 = np.linalg.lstsq(X, dp, rcond=None)[0]
    rho = np.sum(q[1:-1] * q[:-2]) / np.sum(q[:-2] ** 2)
    alpha = -b2 / (b0 * rho)
    beta = b1 / b0 + 1 - alpha
    return b0, alpha, beta, 1 - alpha - beta, (1 - rho) / 2


def np_information_share(pa, pb, lags):
    a, b = np.log(pa), np.log(pb)
    da, db = np.diff(a, prepend=np.nan), np.diff(b, prepend=np.nan)
    rows, ys = [], []
    for t in range(lags + 1, len(a)):
        rows.append([1.0, a[t - 1] - b[t - 1]] + [da[t - j] for j in range(1, lags + 1)]
                    + [db[t - j] for j in range(1, lags + 1)])
        ys.append([da[t], db[t]])
    X, Y = np.array(rows), np.array(ys)
    B = np.linalg.lstsq(X, Y, rcond=None)[0]
    E = Y - X @ B
    omega = E.T @ E / (len(Y) - X.shape[1])
    psi = np.array([B[1, 1], -B[1, 0]])
    total = psi @ omega @ psi
    first = (psi @ np.linalg.cholesky(omega))[0] ** 2 / total
    second = (psi[::-1] @ np.linalg.cholesky(omega[::-1, ::-1]))[1] ** 2 / total
    return min(first, second), max(first, second)


def test_whole_sample_values_equal_numpy_references():
    c, h, lo, v, q = random_bars(1)
    rel = dict(rel=1e-9)
    roll = sim.roll_model(N, half_spread=0.05, sigma=0.02, seed=1).price
    assert float(ms.roll_spread(roll)) == pytest.approx(np_roll(roll), **rel)
    assert float(ms.kyle_lambda(np.diff(c), v[1:] * q[1:])) == pytest.approx(np_slope(np.diff(c), v[1:] * q[1:]), **rel)
    r = np.diff(np.log(c))
    s = q[1:] * np.sqrt(c[1:] * v[1:])
    assert float(ms.hasbrouck_lambda(r, s)) == pytest.approx(np_slope(r, s), **rel)
    assert float(ms.corwin_schultz_spread(h, lo)) == pytest.approx(np_cs(h, lo), **rel)
    assert float(ms.abdi_ranaldo_spread(h, lo, c)) == pytest.approx(np_ar(h, lo, c), **rel)
    v0 = v.copy()
    v0[::7] = 0.0  # bars without volume are left out of Amihud's mean
    assert float(ms.amihud_illiquidity(c, v0)) == pytest.approx(np_amihud(c, v0), **rel)
    assert float(ms.realized_variance(c)) == pytest.approx(np.sum(r ** 2), **rel)
    assert float(ms.bipower_variation(c)) == pytest.approx(math.pi / 2 * np.sum(np.abs(r[1:] * r[:-1])), **rel)
    assert float(ms.noise_variance(c, k=5)) == pytest.approx(np_noise(c, 5), rel=1e-7)
    assert float(ms.variance_ratio(c, q=5)) == pytest.approx(np_vr(c, 5), **rel)
    assert float(ms.trade_flow_imbalance(q * v, v)) == pytest.approx(np.sum(q * v) / np.sum(v), **rel)
    assert float(ms.trade_intensity(v, seconds_per_interval=2.0)) == pytest.approx(np.mean(v) / 2.0, **rel)


def test_decomposition_and_information_share_equal_numpy_references():
    c, _, _, _, _ = random_bars(2, n=2_000)
    hs = sim.huang_stoll_model(2_000, 0.05, 0.4, 0.1, 0.25, 0.02, seed=3)
    got = ms.spread_decomposition(hs.price, hs.side)
    np.testing.assert_allclose([float(x) for x in got], np_hs(hs.price, hs.side), rtol=1e-8)
    other = c * np.exp(np.random.default_rng(4).normal(0, 1e-3, c.size))
    for lags in (0, 2):
        share = ms.information_share(c, other, lags=lags)
        np.testing.assert_allclose([float(share.lower), float(share.upper)], np_information_share(c, other, lags),
                                   rtol=1e-7)
        assert float(share.mid) == pytest.approx((float(share.lower) + float(share.upper)) / 2)


def test_book_measures_equal_their_formulas():
    rng = np.random.default_rng(5)
    n, levels = 50, 4
    bid = 100.0 - np.cumsum(rng.integers(1, 3, (n, levels)), axis=1) * 0.1
    ask = 100.0 + np.cumsum(rng.integers(1, 3, (n, levels)), axis=1) * 0.1
    bsz, asz = rng.random((n, levels)), rng.random((n, levels))
    np.testing.assert_allclose(ms.quoted_spread(bid, ask), (ask[:, 0] - bid[:, 0]) / ((ask[:, 0] + bid[:, 0]) / 2))
    micro = (ask[:, 0] * bsz[:, 0] + bid[:, 0] * asz[:, 0]) / (bsz[:, 0] + asz[:, 0])
    np.testing.assert_allclose(ms.microprice(bid, bsz, ask, asz), micro)
    b2, a2 = bsz[:, :2].sum(1), asz[:, :2].sum(1)
    np.testing.assert_allclose(ms.depth_imbalance(bsz, asz, levels=2), (b2 - a2) / (b2 + a2))
    e = ms.order_flow_imbalance(bid, bsz, ask, asz)
    for t in range(1, n):  # the four cases of Cont, Kukanov and Stoikov, written out
        pb, qb, pa, qa = bid[t, 0], bsz[t, 0], ask[t, 0], asz[t, 0]
        pb0, qb0, pa0, qa0 = bid[t - 1, 0], bsz[t - 1, 0], ask[t - 1, 0], asz[t - 1, 0]
        bid_flow = qb if pb > pb0 else (qb - qb0 if pb == pb0 else -qb0)
        ask_flow = qa if pa < pa0 else (qa - qa0 if pa == pa0 else -qa0)
        assert float(e[t]) == pytest.approx(bid_flow - ask_flow, abs=1e-12)
    assert math.isnan(float(e[0]))
    mid = (bid[:, 0] + ask[:, 0]) / 2
    side = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    px = np.where(side > 0, ask[:, 0], bid[:, 0])
    w = rng.random(n)
    es = 2 * side * (px - mid) / mid
    assert float(ms.effective_spread(px, side, mid, w)) == pytest.approx(np.sum(es * w) / np.sum(w))
    later = np.roll(mid, -3)
    rs = 2 * side * (px - later) / mid
    assert float(ms.realized_spread(px, side, mid, later)) == pytest.approx(np.mean(rs))


# ---- ground truth ---------------------------------------------------------------------------

def test_roll_recovers_the_spread_of_a_roll_model():
    m = sim.roll_model(50_000, half_spread=0.5, sigma=0.2, seed=11)
    assert float(ms.roll_spread(m.price)) == pytest.approx(m.spread, rel=0.04)


def test_kyle_lambda_recovers_the_impact_coefficient():
    m = sim.kyle_model(50_000, lam=0.3, sigma=1.0, seed=12)
    assert float(ms.kyle_lambda(m.price_change, m.signed_volume)) == pytest.approx(0.3, rel=0.10)


def test_noise_variance_recovers_the_injected_noise():
    m = sim.noisy_price(50_000, sigma=5e-5, noise_sd=1e-4, seed=13)
    assert float(ms.noise_variance(m.price)) == pytest.approx(m.noise_variance, rel=0.04)
    # without noise the estimate is ~0 next to the realized variance per return
    assert abs(float(ms.noise_variance(m.efficient))) < 0.01 * m.noise_variance


def test_huang_stoll_recovers_the_three_shares():
    m = sim.huang_stoll_model(50_000, half_spread=0.5, alpha=0.3, beta=0.2, reversal_prob=0.3, sigma=0.1, seed=14)
    d = ms.spread_decomposition(m.price, m.side)
    assert float(d.adverse_selection) == pytest.approx(0.3, abs=0.03)
    assert float(d.inventory) == pytest.approx(0.2, abs=0.03)
    assert float(d.order_processing) == pytest.approx(0.5, abs=0.04)
    assert float(d.half_spread) == pytest.approx(0.5, abs=0.005)
    assert float(d.reversal_prob) == pytest.approx(0.3, abs=0.01)
    assert float(d.adverse_selection + d.inventory + d.order_processing) == pytest.approx(1.0, abs=1e-12)


def test_information_share_recovers_the_leading_market():
    m = sim.two_market_model(20_000, gamma_a=0.1, gamma_b=0.3, sd_a=1e-3, sd_b=1e-3, seed=15)
    share = ms.information_share(m.price_a, m.price_b)
    assert m.information_share_a == pytest.approx(0.9)
    assert float(share.mid) == pytest.approx(m.information_share_a, abs=0.05)
    assert float(share.upper - share.lower) < 0.02   # independent innovations: the bounds nearly meet
    swapped = ms.information_share(m.price_b, m.price_a)
    assert float(swapped.mid) == pytest.approx(1.0 - float(share.mid), abs=1e-9)


# ---- rolling windows equal the whole-sample function on the window's slice -------------------

NAN_AT = 150  # the index of the missing price in `series_with_nan`


def _check_rolling(rolling, whole, span, n):
    """rolling (n,) against whole(slice) for the slice of `span` observations ending at t: the first
    few t after the warm-up, the t where the NaN enters and leaves the window, and every 9th t."""
    rolling = np.asarray(rolling)
    assert rolling.shape == (n,)
    assert np.isnan(rolling[:span - 1]).all()
    edges = {span - 1, span, span + 1} | {NAN_AT + d for d in (-1, 0, 1, 2)}
    edges |= {NAN_AT + span + d for d in (-2, -1, 0, 1)}
    for t in sorted((edges | set(range(span - 1, n, 9))) & set(range(span - 1, n))):
        want = float(whole(slice(t - span + 1, t + 1)))
        if math.isnan(want):
            assert math.isnan(rolling[t]), t
        else:
            assert rolling[t] == pytest.approx(want, rel=1e-8, abs=1e-14), t


@pytest.fixture(scope="module")
def series_with_nan():
    c, h, lo, v, q = random_bars(21)
    c = c.copy()
    c[NAN_AT] = np.nan     # a missing price: every window holding it is NaN
    return c, h, lo, v, q


def test_rolling_price_estimators_equal_whole_sample_on_the_window(series_with_nan):
    c, h, lo, v, q = series_with_nan
    w = 20
    _check_rolling(ms.roll_spread(c, w), lambda s: ms.roll_spread(c[s]), w + 2, N)
    _check_rolling(ms.realized_variance(c, w), lambda s: ms.realized_variance(c[s]), w + 1, N)
    _check_rolling(ms.bipower_variation(c, w), lambda s: ms.bipower_variation(c[s]), w + 2, N)
    _check_rolling(ms.noise_variance(c, w, k=4), lambda s: ms.noise_variance(c[s], k=4), w + 4, N)
    _check_rolling(ms.variance_ratio(c, w, q=4), lambda s: ms.variance_ratio(c[s], q=4), w + 4, N)
    _check_rolling(ms.amihud_illiquidity(c, v, w), lambda s: ms.amihud_illiquidity(c[s], v[s]), w + 1, N)
    h2, lo2 = np.maximum(h, c), np.minimum(lo, c)
    _check_rolling(ms.corwin_schultz_spread(h2, lo2, w), lambda s: ms.corwin_schultz_spread(h2[s], lo2[s]), w + 1, N)
    _check_rolling(ms.abdi_ranaldo_spread(h2, lo2, c, w),
                   lambda s: ms.abdi_ranaldo_spread(h2[s], lo2[s], c[s]), w + 1, N)


def test_rolling_flow_estimators_equal_whole_sample_on_the_window(series_with_nan):
    c, _, _, v, q = series_with_nan
    w = 20
    dp = np.diff(c, prepend=np.nan)
    _check_rolling(ms.kyle_lambda(dp, q * v, w), lambda s: ms.kyle_lambda(dp[s], (q * v)[s]), w, N)
    _check_rolling(ms.trade_flow_imbalance(q * v, v, w), lambda s: ms.trade_flow_imbalance((q * v)[s], v[s]), w, N)
    _check_rolling(ms.trade_intensity(v, w, 0.5), lambda s: ms.trade_intensity(v[s], None, 0.5), w, N)
    mid = c * (1 + 1e-4 * q)
    _check_rolling(ms.effective_spread(c, q, mid, v, w), lambda s: ms.effective_spread(c[s], q[s], mid[s], v[s]), w, N)
    d = ms.spread_decomposition(c, q, w)
    for field in ("half_spread", "adverse_selection", "inventory"):
        _check_rolling(getattr(d, field), lambda s: getattr(ms.spread_decomposition(c[s], q[s]), field), w + 2, N)
    other = np.roll(c, 1) * np.exp(np.random.default_rng(23).normal(0, 1e-3, N))  # b follows a
    other[0] = c[0]
    share = ms.information_share(c, other, w, lags=1)
    _check_rolling(share.mid, lambda s: ms.information_share(c[s], other[s], lags=1).mid, w + 2, N)


def test_rolling_book_measures(series_with_nan):
    c, _, _, v, _ = series_with_nan
    rng = np.random.default_rng(22)
    bid = c - 0.01 * rng.integers(1, 3, N)
    ask = c + 0.01 * rng.integers(1, 3, N)
    bsz, asz = rng.random(N), rng.random(N)
    e = np.asarray(ms.order_flow_imbalance(bid, bsz, ask, asz))
    w = 10
    _check_rolling(ms.order_flow_imbalance(bid, bsz, ask, asz, w), lambda s: np.sum(e[s]), w, N)
    d = np.asarray(ms.depth_imbalance(bsz, asz))
    _check_rolling(ms.depth_imbalance(bsz, asz, window=w), lambda s: np.mean(d[s]), w, N)
    qs = np.asarray(ms.quoted_spread(bid, ask))
    _check_rolling(ms.quoted_spread(bid, ask, w), lambda s: np.mean(qs[s]), w, N)


def test_roll_is_nan_where_the_covariance_is_not_negative():
    trend = 100.0 + np.arange(50.0) + 0.1 * np.sin(np.arange(50.0))  # smooth: positive autocovariance
    assert math.isnan(float(ms.roll_spread(trend)))
    assert np.isnan(np.asarray(ms.roll_spread(trend, 10))).all()


def test_bounds():
    c, h, lo, v, q = random_bars(31, n=2_000)
    tfi = np.asarray(ms.trade_flow_imbalance(q * v, v, 30))[29:]
    assert np.all(np.abs(tfi) <= 1.0)
    rng = np.random.default_rng(32)
    d = np.asarray(ms.depth_imbalance(rng.random((50, 3)), rng.random((50, 3)) * (rng.random((50, 3)) > 0.5)))
    assert np.all(np.abs(d) <= 1.0)
    hs = sim.huang_stoll_model(2_000, 0.05, 0.4, 0.1, 0.25, 0.02, seed=33)
    dec = ms.spread_decomposition(hs.price, hs.side, 200)
    total = np.asarray(dec.adverse_selection + dec.inventory + dec.order_processing)[201:]
    np.testing.assert_allclose(total, 1.0, atol=1e-9)
    share = ms.information_share(c, c * np.exp(rng.normal(0, 1e-3, c.size)), 300)
    for x in share:
        x = np.asarray(x)[301:]
        assert np.all((x >= 0) & (x <= 1))
    assert np.all(np.asarray(share.lower)[301:] <= np.asarray(share.upper)[301:])


def test_empty_book_side_gives_nan():
    bid = np.array([[99.0], [np.nan], [99.0], [99.0]])
    ask = np.array([[101.0], [101.0], [101.0], [101.0]])
    sz = np.array([[1.0], [0.0], [1.0], [2.0]])
    e = np.asarray(ms.order_flow_imbalance(bid, sz, ask, sz))
    assert np.isnan(e[:3]).all() and e[3] == pytest.approx(2.0 - 1.0 - 2.0 + 1.0)
    assert math.isnan(float(ms.quoted_spread(bid, ask)[1]))
    assert math.isnan(float(ms.depth_imbalance(np.zeros((1, 2)), np.zeros((1, 2)))[0]))


# ---- bad input --------------------------------------------------------------------------------

@pytest.mark.parametrize("window", [0, 1, 2.5, True, "5"])
def test_bad_windows_are_refused(window):
    with pytest.raises(ValueError, match="window must be an integer >= 2"):
        ms.roll_spread(np.arange(1.0, 20.0), window)


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="signed_volume has 3 elements but the first input has 4"):
        ms.kyle_lambda(np.ones(4), np.ones(3))
    with pytest.raises(ValueError, match=r"price must be a vector of shape \(n,\)"):
        ms.realized_variance(np.ones((3, 3)))
    with pytest.raises(ValueError, match="needs at least 4 prices"):
        ms.roll_spread([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="levels=3 but the book has 2 levels"):
        ms.depth_imbalance(np.ones((5, 2)), np.ones((5, 2)), levels=3)
    with pytest.raises(ValueError, match="k must be an integer >= 2"):
        ms.noise_variance(np.arange(1.0, 30.0), k=1)
    with pytest.raises(ValueError, match="seconds_per_interval must be > 0"):
        ms.trade_intensity(np.ones(5), 2, 0.0)
    with pytest.raises(ValueError, match="two_market_model needs"):
        sim.two_market_model(10, 1.5, 1.0, 1.0, 1.0)
