"""VPIN with bulk volume classification (batch, JAX) and the toxicity regimes.

- `vpin_buckets` equals a plain-Python bucket filler (normal and Student-t CDFs from scipy);
- known values: a steady trend, a hand-worked split of one large trade over several buckets, and
  i.i.d. Gaussian price changes (where the buy share Phi(z) is uniform, so E|2 Phi - 1| = 1/2);
- the CDFs used at runtime (jax.scipy) equal scipy's;
- VPIN lies in [0, 1] on real trades and is NaN for the first window - 1 buckets;
- the regimes use the risk layer's thresholds and comparisons (checked against the risk kernel).
"""
import math
from collections import deque
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from bot4jax.features import microstructure as ms
from bot4jax.risk.sizing import RiskClamps, RiskConfig

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def py_vpin(price, volume, bucket_volume, window=50, sigma_window=1000, dof=None):
    """Plain-Python reference: (VPIN of each completed bucket, buy volume of each bucket)."""
    cdf = stats.norm.cdf if dof is None else (lambda z: stats.t.cdf(z, dof))
    squares = deque(maxlen=sigma_window)
    fill = buy = 0.0
    imbalances, out, buys = [], [], []
    for i, (p, v) in enumerate(zip(price, volume)):
        z = 0.0
        if i > 0:
            dp = p - price[i - 1]
            squares.append(dp * dp)
            var = math.fsum(squares) / len(squares)
            z = dp / math.sqrt(var) if var > 0 else 0.0
        f = float(cdf(z))
        rest = v
        while rest > 0:
            room = bucket_volume - fill
            if rest < room:
                fill += rest
                buy += rest * f
                break
            buy += room * f
            rest -= room
            buys.append(buy)
            imbalances.append(abs(2 * buy - bucket_volume) / bucket_volume)
            out.append(math.fsum(imbalances[-window:]) / window if len(imbalances) >= window else math.nan)
            fill = buy = 0.0
    return np.array(out), np.array(buys)


def tape(seed, n=3_000):
    """Heavy-tailed trade sizes (some larger than a bucket), some zero-volume bars, a random walk."""
    rng = np.random.default_rng(seed)
    price = 1_000.0 * np.exp(np.cumsum(rng.standard_t(3, n) * 1e-3))
    volume = rng.pareto(1.2, n) + 0.01
    volume[rng.random(n) < 0.1] = 0.0
    return price, volume


@pytest.mark.parametrize("dof", [None, 3.0])
def test_vpin_buckets_equal_python_reference(dof):
    price, volume = tape(1)
    bucket = volume.sum() / 300.5
    want, want_buy = py_vpin(price, volume, bucket, window=20, sigma_window=100, dof=dof)
    got = ms.vpin_buckets(price, volume, bucket, window=20, sigma_window=100, dof=dof)
    assert len(got.vpin) == len(want) >= 290
    np.testing.assert_allclose(got.vpin, want, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got.buy, want_buy, rtol=1e-9, atol=1e-9 * bucket)
    cum = np.cumsum(volume)   # the observation that completes bucket k reaches (k + 1) V
    k = np.arange(len(want))
    assert np.all(cum[got.end_index] >= (k + 1) * bucket * (1 - 1e-12))
    assert np.all((got.end_index == 0) | (cum[np.maximum(np.asarray(got.end_index) - 1, 0)] < (k + 1) * bucket))


def test_public_vpin_is_the_normal_cdf_default():
    price, volume = tape(2)
    bucket = volume.sum() / 100.5
    np.testing.assert_array_equal(ms.vpin(price, volume, bucket, 10),
                                  ms.vpin_buckets(price, volume, bucket, 10).vpin)
    want, _ = py_vpin(price, volume, bucket, window=10)
    np.testing.assert_allclose(ms.vpin(price, volume, bucket, 10), want, rtol=1e-9)


@pytest.mark.parametrize("dof", [None, 4.0])
def test_steady_trend_gives_the_cdf_at_one(dof):
    # dp = 1 every step: z = dp / rms(dp) = 1 for every observation after the first
    n, window = 200, 10
    price = 100.0 + np.arange(n)
    vp = np.asarray(ms.vpin_buckets(price, np.ones(n), 1.0, window, dof=dof).vpin)
    f = stats.norm.cdf(1.0) if dof is None else stats.t.cdf(1.0, dof)
    assert np.isnan(vp[:window - 1]).all()
    assert vp[window - 1] == pytest.approx((window - 1) / window * (2 * f - 1), rel=1e-12)  # bucket 0: dp = 0
    np.testing.assert_allclose(vp[window:], 2 * f - 1, rtol=1e-12)


def test_large_trade_splits_over_buckets_in_proportion():
    v = 2.0
    got = ms.vpin_buckets([100.0, 101.0], [0.5 * v, 3.25 * v], v, window=1)
    f = stats.norm.cdf(1.0)  # second trade: dp = 1, rms of the changes so far = 1
    buy = np.array([0.5 * v * 0.5 + 0.5 * v * f, v * f, v * f])   # 3/4 of a bucket is left open
    np.testing.assert_allclose(got.buy, buy, rtol=1e-12)
    np.testing.assert_allclose(got.vpin, np.abs(2 * buy - v) / v, rtol=1e-12)
    np.testing.assert_array_equal(got.end_index, [1, 1, 1])


@pytest.mark.parametrize("per_bucket", [1, 4])
def test_iid_gaussian_changes_give_the_uniform_imbalance(per_bucket):
    # Phi(z) of a standard normal z is uniform: the imbalance of a bucket made of m observations is
    # |mean of m uniforms on [-1, 1]|, 1/2 for m = 1 (its mean for m = 4 from a large simulation).
    rng = np.random.default_rng(3)
    n = 40_000
    price = 1e4 + np.cumsum(rng.normal(size=n))
    vp = np.asarray(ms.vpin_buckets(price, np.full(n, 1.0 / per_bucket), 1.0, 50).vpin)
    u = np.random.default_rng(4).random((1_000_000, per_bucket))
    want = np.mean(np.abs(np.mean(2 * u - 1, axis=1)))
    assert np.nanmean(vp) == pytest.approx(want, abs=0.005)


def test_runtime_cdfs_equal_scipy():
    rng = np.random.default_rng(5)
    price = 100.0 + np.cumsum(rng.normal(size=500))
    dp = np.diff(price, prepend=price[0])
    w = 50
    z = np.zeros_like(dp)
    for i in range(1, dp.size):  # rms of the changes j = max(1, i - w + 1) .. i
        window = dp[max(1, i - w + 1):i + 1]
        z[i] = dp[i] / math.sqrt(np.mean(window ** 2))
    np.testing.assert_allclose(ms.bvc_buy_fraction(price, w), stats.norm.cdf(z), rtol=1e-12)
    np.testing.assert_allclose(ms.bvc_buy_fraction(price, w, dof=2.5), stats.t.cdf(z, 2.5), rtol=1e-10)
    grid = np.linspace(-8.0, 8.0, 161)
    for dof in (0.25, 1.0, 3.0, 30.0):
        np.testing.assert_allclose(ms.student_t_cdf(grid, dof), stats.t.cdf(grid, dof), rtol=1e-10, atol=1e-15)


def test_fewer_than_one_bucket_gives_no_value():
    assert ms.vpin([1.0, 1.1, 1.2], [1.0, 1.0, 1.0], 10.0).shape == (0,)


@pytest.mark.parametrize("price, volume, bucket, match", [
    ([1.0, np.nan, 1.0], [1.0, 1.0, 1.0], 1.0, r"price\[1\] = nan is not a finite positive number"),
    ([1.0, 2.0, -1.0], [1.0, 1.0, 1.0], 1.0, r"price\[2\] = -1.0"),
    ([1.0, 2.0, 3.0], [1.0, -1.0, np.nan], 1.0, r"volume\[1\] = -1.0 .* \(2 such values\)"),
    ([1.0, 2.0, 3.0], [1.0, 1.0, 1.0], 0.0, "bucket_volume must be a finite number > 0"),
    ([1.0, 2.0, 3.0], [1.0, 1.0, 1.0], float("nan"), "bucket_volume must be a finite number > 0"),
    ([1.0, 2.0, 3.0], [1.0, 1.0], 1.0, "volume has 2 elements but the first input has 3"),
])
def test_bad_vpin_input_is_refused(price, volume, bucket, match):
    with pytest.raises(ValueError, match=match):
        ms.vpin(np.array(price), np.array(volume), bucket)


def test_bad_vpin_options_are_refused():
    with pytest.raises(ValueError, match="window must be an integer >= 1"):
        ms.vpin([1.0, 2.0], [1.0, 1.0], 1.0, window=0)
    with pytest.raises(ValueError, match="dof must be None"):
        ms.vpin_buckets([1.0, 2.0], [1.0, 1.0], 1.0, dof=-1.0)


# ---- toxicity regimes ------------------------------------------------------------------------

def test_risk_config_defaults_are_the_issue_thresholds():
    c = RiskConfig()
    assert (c.toxicity_cautious, c.toxicity_defensive, c.toxicity_exit) == (0.2, 0.3, 0.4)
    assert (c.toxicity_cautious_scale, c.toxicity_defensive_scale) == (0.5, 0.2)  # 50 % and 80 % smaller


@pytest.mark.parametrize("value, regime", [
    (0.0, "normal"), (0.1999, "normal"), (0.2, "cautious"), (0.2999, "cautious"), (0.3, "defensive"),
    (0.3999, "defensive"), (0.4, "exit_only"), (1.0, "exit_only"),
])
def test_toxicity_regime_boundaries(value, regime):
    assert ms.toxicity_regime(value) == regime
    assert regime in ms.TOXICITY_REGIMES


def test_toxicity_regime_follows_the_config_and_the_risk_kernel():
    config = RiskConfig(toxicity_cautious=0.1, toxicity_defensive=0.5, toxicity_exit=0.9)
    assert [ms.toxicity_regime(v, config) for v in (0.05, 0.1, 0.6, 0.95)] == [
        "normal", "cautious", "defensive", "exit_only"]
    clamps = RiskClamps()
    flags = {"cautious": "toxicity_cautious", "defensive": "toxicity_defensive", "exit_only": "toxicity_exit"}
    from bot4jax.kernels import risk_nb
    bits = {"toxicity_cautious": risk_nb.R_TOXICITY_CAUTIOUS, "toxicity_defensive": risk_nb.R_TOXICITY_DEFENSIVE,
            "toxicity_exit": risk_nb.R_TOXICITY_EXIT}
    for v in np.linspace(0.0, 1.0, 41):
        _, rec = clamps.size(p_up=0.6, payoff_ratio=1.2, forecast_vol=0.5, var_per_unit=0.05,
                             es_per_unit=0.06, toxicity=float(v))
        regime = ms.toxicity_regime(v)
        raised = {name for name, bit in bits.items() if int(rec["reasons"]) & bit}
        assert raised == ({flags[regime]} if regime != "normal" else set()), v


@pytest.mark.parametrize("value", [float("nan"), -0.1, 1.5])
def test_toxicity_regime_refuses_values_outside_the_unit_interval(value):
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        ms.toxicity_regime(value)


# ---- real trades -------------------------------------------------------------------------------

def test_vpin_on_real_trades_is_finite_and_bounded():
    path = DATA / "binance_XRP_ETH-trades-2019.json.gz"
    if not path.exists():
        pytest.skip(f"{path} not present")
    from bot4jax.data.loaders import load
    trades = load(path)
    bucket = float(trades.amount.sum()) / 125   # about 50 buckets a day over 2.5 days
    got = ms.vpin_buckets(trades.price, trades.amount, bucket, 50)
    vp = np.asarray(got.vpin)
    assert len(vp) == 124 or len(vp) == 125
    assert np.isnan(vp[:49]).all()
    assert np.isfinite(vp[49:]).all() and np.all((vp[49:] >= 0) & (vp[49:] <= 1))
    # the bulk classification's buy volume per bucket follows the tape's aggressor flags
    cum = np.cumsum(trades.amount)
    bucket_of = np.floor((cum - 1e-9) / bucket).astype(int)   # whole trades, by where they end
    tagged = np.bincount(bucket_of, trades.amount * (trades.side > 0), minlength=len(vp) + 1)[:len(vp)]
    # (0.37 on this tape: bulk classification of trade-by-trade changes is a coarse classifier)
    assert np.corrcoef(tagged, np.asarray(got.buy))[0, 1] > 0.25
