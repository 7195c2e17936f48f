"""Batch indicators (JAX) against pandas references, on real BTC prices and on random walks.

Tolerance: |ours - pandas| <= 1e-9 * (|pandas| + |price|) elementwise (RSI: 1e-9 * 100), with NaN in
exactly the same places. Bollinger's standard deviation is also held to an exact two-pass
reference at 1e-9 of the deviation itself, which pandas' own running update does not meet on long
series. Shapes and parameters are reused across tests to keep the number of XLA compiles small.
"""
import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.lib.stride_tricks import sliding_window_view

from bot4jax.features.indicators import bollinger, ema, macd, rsi, sma

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
N = 300                                       # length of every synthetic series
DEFAULT = dict(window=20, span=20, period=14, fast=12, slow=26, signal=9)
PARAMS = [
    DEFAULT,
    dict(window=1, span=1, period=1, fast=1, slow=2, signal=1),     # degenerate windows
    dict(window=7, span=5, period=3, fast=9, slow=4, signal=5),     # odd sizes, fast > slow
]


# ---- references (pandas; test-only dependency) ----------------------------------------------

def ref_sma(x, window):
    return pd.Series(x).rolling(window).mean().to_numpy()


def ref_ema(x, span):
    return pd.Series(x).ewm(span=span, adjust=False, min_periods=span).mean().to_numpy()


def ref_rsi(x, period):
    d = pd.Series(x).diff()
    gain = d.clip(lower=0).ewm(alpha=1 / period, adjust=False, min_periods=period).mean()
    loss = (-d).clip(lower=0).ewm(alpha=1 / period, adjust=False, min_periods=period).mean()
    out = (100 - 100 / (1 + gain / loss)).to_numpy().copy()
    out[((gain == 0) & (loss == 0)).to_numpy()] = 50.0    # our documented convention for 0/0
    return out


def ref_macd(x, fast, slow, signal):
    s = pd.Series(x)
    line = (s.ewm(span=fast, adjust=False, min_periods=fast).mean()
            - s.ewm(span=slow, adjust=False, min_periods=slow).mean())
    sig = line.ewm(span=signal, adjust=False, min_periods=signal).mean()
    return line.to_numpy(), sig.to_numpy(), (line - sig).to_numpy()


def ref_bollinger(x, window, k):
    s = pd.Series(x)
    mid = s.rolling(window).mean()
    sd = s.rolling(window).std(ddof=0)
    return mid.to_numpy(), (mid + k * sd).to_numpy(), (mid - k * sd).to_numpy()


def exact_rolling_std(x, window):
    """Two-pass population std of every full window (float64, no running sums)."""
    w = sliding_window_view(x, window)
    return np.sqrt(((w - w.mean(axis=1, keepdims=True)) ** 2).mean(axis=1))


def pandas_std_error(x, window):
    """|pandas rolling std - exact two-pass std|: pandas updates one running sum of squared
    deviations along the whole series, which is off by up to ~1e-9 of the price on near-flat
    windows (where the true std is ~0); the band comparison allows for it."""
    err = np.zeros(len(x))
    if len(x) >= window:
        pandas = pd.Series(x).rolling(window).std(ddof=0).to_numpy()[window - 1:]
        err[window - 1:] = np.abs(pandas - exact_rolling_std(x, window))
    return err


def ours_all(x, p):
    return {
        "sma": sma(x, p["window"]), "ema": ema(x, p["span"]), "rsi": rsi(x, p["period"]),
        "macd": macd(x, p["fast"], p["slow"], p["signal"]),
        "bollinger": bollinger(x, p["window"], 2.0),
    }


def refs_all(x, p):
    return {
        "sma": ref_sma(x, p["window"]), "ema": ref_ema(x, p["span"]),
        "rsi": ref_rsi(x, p["period"]),
        "macd": ref_macd(x, p["fast"], p["slow"], p["signal"]),
        "bollinger": ref_bollinger(x, p["window"], 2.0),
    }


def assert_matches(ours, ref, scale, rel=1e-9, what="", slack=0.0):
    """NaN where ref is NaN, and |ours - ref| <= rel * (|ref| + |scale|) + slack elsewhere."""
    ours = np.asarray(ours)
    ref = np.asarray(ref)
    assert ours.dtype == np.float64 and ours.shape == ref.shape, what
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref),
                                  err_msg=f"NaN places differ: {what}")
    scale = np.broadcast_to(np.abs(scale), ref.shape)
    ok = ~np.isnan(ref)
    err = np.abs(ours[ok] - ref[ok])
    tol = rel * (np.abs(ref[ok]) + scale[ok]) + np.broadcast_to(slack, ref.shape)[ok]
    if not np.all(err <= tol):
        i = np.argmax(err / tol)
        raise AssertionError(f"{what}: |diff| {err[i]:.3e} > tol {tol[i]:.3e} "
                             f"(ours {ours[ok][i]!r}, ref {ref[ok][i]!r})")


def assert_all_match(ours, refs, x, window=20, k=2.0):
    for name, ref in refs.items():
        scale = 100.0 if name == "rsi" else x
        slack = k * pandas_std_error(x, window) if name == "bollinger" else 0.0
        if isinstance(ref, tuple):
            assert len(ours[name]) == len(ref)
            for i, (o, r) in enumerate(zip(ours[name], ref)):
                assert_matches(o, r, scale, what=f"{name}[{i}]", slack=slack)
        else:
            assert_matches(ours[name], ref, scale, what=name)


def random_walk(seed, n=N, scale=30_000.0, vol=0.01, flat=0.0):
    """Geometric random walk; a fraction `flat` of the steps is exactly zero (flat stretches)."""
    rng = np.random.default_rng(seed)
    steps = rng.normal(0.0, vol, n)
    steps[rng.random(n) < flat] = 0.0
    return scale * np.exp(np.cumsum(steps))


# ---- real prices ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def btc_close():
    """Binance BTC/USDT 1h closes 2017-2021 (3,000-65,000 USDT): sorted, one row per hour."""
    path = DATA / "Binance_BTCUSDT_1h.csv.gz"
    if not path.exists():
        pytest.skip(f"no shared data at {path}")
    with gzip.open(path, "rt") as f:
        a = np.genfromtxt(f, delimiter=",", skip_header=1, usecols=(0, 6))   # unix, close
    a[a[:, 0] < 1e11, 0] *= 1000                  # older rows give seconds
    a = a[np.argsort(a[:, 0], kind="stable")]
    keep = np.concatenate([[True], np.diff(a[:, 0]) > 0])   # the overlap lists hours twice
    close = a[keep, 1]
    assert 33_000 < close.size < 34_000 and np.all(np.isfinite(close))
    return close


def test_btc_hourly_matches_pandas(btc_close):
    assert_all_match(ours_all(btc_close, DEFAULT), refs_all(btc_close, DEFAULT), btc_close)


def test_btc_bollinger_std_is_exact(btc_close):
    """The band half-width equals an exact two-pass std to 1e-9 of the std itself."""
    w = DEFAULT["window"]
    middle, upper, _ = (np.asarray(a) for a in bollinger(btc_close, w, 2.0))
    ours = ((upper - middle) / 2.0)[w - 1:]
    exact = exact_rolling_std(btc_close, w)
    err = np.abs(ours - exact)
    assert np.all(err <= 1e-9 * exact + 1e-12 * btc_close[w - 1:]), err.max()


# ---- random walks ---------------------------------------------------------------------------

@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    log_scale=st.floats(-4.0, 6.0),
    vol=st.sampled_from([1e-4, 1e-2, 0.1]),
    flat=st.sampled_from([0.0, 0.3, 0.9]),
    p=st.sampled_from(PARAMS),
)
def test_random_walks_match_pandas_2d(seed, log_scale, vol, flat, p):
    """Three random walks at different price scales as one (3, N) batch: every row matches."""
    rows = np.stack([random_walk(seed + i, scale=10.0 ** (log_scale - i), vol=vol, flat=flat)
                     for i in range(3)])
    ours = ours_all(rows, p)
    for i, x in enumerate(rows):
        row = {k: (tuple(a[i] for a in v) if isinstance(v, tuple) else v[i])
               for k, v in ours.items()}
        assert_all_match(row, refs_all(x, p), x, window=p["window"])
        # and the std itself to the exact two-pass reference, 1e-9 of the std
        middle, upper = (np.asarray(a)[p["window"] - 1:] for a in row["bollinger"][:2])
        exact = exact_rolling_std(x, p["window"])
        tol = 1e-9 * exact + 1e-12 * x[p["window"] - 1:]
        assert np.all(np.abs((upper - middle) / 2.0 - exact) <= tol)


N_LONG = 1000
LONG_WINDOWS = [65, 300]      # above the direct-summation limits: the chunked path (sma: 300 only)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    log_scale=st.floats(-4.0, 6.0),
    flat=st.sampled_from([0.0, 0.5]),
    nans=st.integers(0, 3),
    window=st.sampled_from(LONG_WINDOWS),
)
def test_long_windows_match_pandas(seed, log_scale, flat, nans, window):
    x = random_walk(seed, n=N_LONG, scale=10.0**log_scale, vol=0.02, flat=flat)
    x[np.random.default_rng(seed).integers(0, N_LONG, nans)] = np.nan
    scale = np.nan_to_num(x)
    assert_matches(sma(x, window), ref_sma(x, window), scale, what="sma")
    ours = bollinger(x, window, 2.0)
    slack = 2.0 * np.nan_to_num(pandas_std_error(x, window))
    for i, (o, r) in enumerate(zip(ours, ref_bollinger(x, window, 2.0))):
        assert_matches(o, r, scale, what=f"bollinger[{i}]", slack=slack)
    middle, upper = (np.asarray(a)[window - 1:] for a in ours[:2])
    exact = exact_rolling_std(x, window)
    ok = ~np.isnan(exact)
    err = np.abs((upper - middle)[ok] / 2.0 - exact[ok])
    assert np.all(err <= 1e-9 * exact[ok] + 1e-12 * np.abs(x[window - 1:][ok]))


def test_batch_rows_equal_1d():
    rows = np.stack([random_walk(s, scale=c) for s, c in [(1, 30_000.0), (2, 0.05), (3, 1.0)]])
    batch = ours_all(rows, DEFAULT)
    for i, x in enumerate(rows):
        single = ours_all(x, DEFAULT)
        for name in batch:
            b = batch[name] if isinstance(batch[name], tuple) else (batch[name],)
            s = single[name] if isinstance(single[name], tuple) else (single[name],)
            atol = 1e-12 * (100.0 if name == "rsi" else np.abs(x).max())
            for bb, ss in zip(b, s):
                np.testing.assert_allclose(np.asarray(bb)[i], np.asarray(ss), rtol=1e-12, atol=atol,
                                           err_msg=name)


def test_long_random_walk():
    """10**5 steps of a volatile walk: no error builds up along the series. The bands equal the
    exact two-pass reference; a slow EMA (span 200, where the blocked recursion chains the most
    powers of the decay) equals pandas."""
    x = random_walk(7, n=100_000, scale=30_000.0, vol=0.02, flat=0.2)
    assert_matches(ema(x, 200), ref_ema(x, 200), x, what="ema 200")
    w = DEFAULT["window"]
    middle, upper, lower = (np.asarray(a) for a in bollinger(x, w, 2.0))
    exact = exact_rolling_std(x, w)
    sd = ((upper - middle) / 2.0)[w - 1:]
    assert np.all(np.abs(sd - exact) <= 1e-9 * exact + 1e-12 * x[w - 1:])
    np.testing.assert_allclose(middle[w - 1:], sliding_window_view(x, w).mean(axis=1), rtol=1e-13)


# ---- warm-up, edge cases, NaN, validation ----------------------------------------------------

def leading_nans(a):
    a = np.asarray(a)
    finite = np.flatnonzero(~np.isnan(a))
    return a.size if finite.size == 0 else int(finite[0])


def test_warmup_lengths():
    x = random_walk(11)
    out = ours_all(x, DEFAULT)
    assert leading_nans(out["sma"]) == 19
    assert leading_nans(out["ema"]) == 19
    assert leading_nans(out["rsi"]) == 14
    line, sig, hist = out["macd"]
    assert (leading_nans(line), leading_nans(sig), leading_nans(hist)) == (25, 33, 33)
    assert [leading_nans(a) for a in out["bollinger"]] == [19, 19, 19]
    for a in [out["sma"], out["ema"], out["rsi"], *out["macd"], *out["bollinger"]]:
        assert not np.any(np.isnan(np.asarray(a)[leading_nans(a):]))   # no NaN after warm-up


@pytest.mark.parametrize("n", [1, 40])
def test_short_series(n):
    """Series shorter than (or barely past) the warm-ups are all or mostly NaN, never zeros."""
    x = random_walk(5, n=n)
    ours = ours_all(x, DEFAULT)
    assert_all_match(ours, refs_all(x, DEFAULT), x)
    assert np.all(np.isnan(np.asarray(ours["bollinger"][0])[: min(n, 19)]))


def test_rsi_flat_and_monotone():
    up = np.linspace(100.0, 200.0, N)
    assert np.all(np.asarray(rsi(up, 14))[14:] == 100.0)
    assert np.all(np.asarray(rsi(up[::-1].copy(), 14))[14:] == 0.0)
    flat = np.full(N, 123.45)
    assert np.all(np.asarray(rsi(flat, 14))[14:] == 50.0)
    # flat after a rise: no loss ever, so RSI stays exactly 100 through the flat part
    mixed = np.concatenate([up[:150], np.full(N - 150, up[149])])
    assert np.all(np.asarray(rsi(mixed, 14))[14:] == 100.0)


def test_flat_series_bands_collapse():
    flat = np.full(N, 123.45)
    middle, upper, lower = (np.asarray(a)[19:] for a in bollinger(flat, 20, 2.0))
    np.testing.assert_array_equal(upper, lower)
    np.testing.assert_allclose(middle, 123.45, rtol=1e-15)
    np.testing.assert_allclose(np.asarray(macd(flat)[0])[25:], 0.0, atol=1e-12 * 123.45)


def test_nan_semantics():
    """Windowed: NaN exactly for windows holding the NaN (as pandas). Recursive: NaN from it on."""
    x = random_walk(13)
    i = 100
    xn = x.copy()
    xn[i] = np.nan
    clean, dirty = ours_all(x, DEFAULT), ours_all(xn, DEFAULT)
    assert_matches(dirty["sma"], ref_sma(xn, 20), xn, what="sma")
    for o, r in zip(dirty["bollinger"], ref_bollinger(xn, 20, 2.0)):
        assert_matches(o, r, xn, what="bollinger")
    recursive = [(dirty["ema"], clean["ema"]), (dirty["rsi"], clean["rsi"]),
                 *zip(dirty["macd"], clean["macd"])]
    for d, c in recursive:
        d, c = np.asarray(d), np.asarray(c)
        assert np.all(np.isnan(d[i:]))
        np.testing.assert_array_equal(d[:i], c[:i])


@pytest.mark.parametrize("i", [0, 7, 8, 101, N - 1])
def test_recursive_nan_anywhere_in_a_batch(i):
    """A NaN at a block's edge, the first or the last price of one row: that row is NaN from it
    on and equal to the clean result before it; the other row is untouched."""
    rows = np.stack([random_walk(21), random_walk(22)])
    dirty = rows.copy()
    dirty[1, i] = np.nan
    for name, fn in [("ema", lambda v: [ema(v, 20)]), ("rsi", lambda v: [rsi(v, 14)]),
                     ("macd", lambda v: macd(v, 12, 26, 9))]:
        for d, c in zip(fn(dirty), fn(rows)):
            d, c = np.asarray(d), np.asarray(c)
            np.testing.assert_array_equal(d[0], c[0], err_msg=name)
            np.testing.assert_array_equal(d[1, :i], c[1, :i], err_msg=name)
            assert np.all(np.isnan(d[1, i:])), name


def test_dtype_and_validation():
    ints = np.arange(1, N + 1)
    np.testing.assert_allclose(np.asarray(sma(ints, 20))[19:], np.arange(10.5, N - 9.0), rtol=1e-15)
    assert np.asarray(ema(ints.astype(np.float32), 20)).dtype == np.float64
    for bad in [0, -3, 2.5, True, None]:
        with pytest.raises(ValueError, match="window"):
            sma(np.ones(N), bad)
    with pytest.raises(ValueError, match="span"):
        ema(np.ones(N), 0)
    with pytest.raises(ValueError, match="period"):
        rsi(np.ones(N), 0)
    with pytest.raises(ValueError, match="signal"):
        macd(np.ones(N), 12, 26, 0)
    with pytest.raises(ValueError, match=r"shape \(n,\) or \(m, n\)"):
        bollinger(np.ones((2, 2, N)))


def test_nan_in_one_row_leaves_other_rows_alone():
    """A NaN in one row of a batch sends the recursive indicators down their NaN path for the
    whole batch; the clean rows still equal their clean results and the dirty row is NaN from
    its NaN on."""
    rows = np.stack([random_walk(21), random_walk(22)])
    dirty = rows.copy()
    dirty[1, 150] = np.nan
    for name, fn in [("ema", lambda v: (ema(v, 20),)), ("rsi", lambda v: (rsi(v, 14),)),
                     ("macd", lambda v: macd(v))]:
        for c, d in zip(fn(rows), fn(dirty)):
            c, d = np.asarray(c), np.asarray(d)
            np.testing.assert_array_equal(d[0], c[0], err_msg=name)
            np.testing.assert_array_equal(d[1, :150], c[1, :150], err_msg=name)
            assert np.all(np.isnan(d[1, 150:])), name
