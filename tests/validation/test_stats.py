"""Ljung-Box, ARCH-LM and ADF against statsmodels (and exact arithmetic), on real and simulated data."""
import gzip
import json
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps
from statsmodels.stats.diagnostic import acorr_ljungbox, het_arch
from statsmodels.tsa.adfvalues import mackinnonp
from statsmodels.tsa.stattools import adfuller

from bot4jax.validation import _mackinnon
from bot4jax.validation.stats import adf, adf_lag, arch_lm, chi2_sf, ljung_box

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


@pytest.fixture(scope="module", autouse=True)
def _one_blas_thread():
    # multi-threaded OpenBLAS on a busy 2-core machine spins: statsmodels' pinv calls here ran
    # 5-10x slower; one thread keeps this module at ~10 s (threadpoolctl comes with scikit-learn)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield
RTOL = 1e-8
TINY = 1e-300  # below this scipy's tails are subnormal or 0 and carry no relative precision


# ---------------------------------------------------------------------------------------- references
# statsmodels' return types differ between 0.14 (tuples) and 0.15 (tuples with a FutureWarning);
# indexing works for both.


def sm_ljung_box(x, lags):
    df = acorr_ljungbox(x, lags=list(lags))
    return df["lb_stat"].to_numpy(), df["lb_pvalue"].to_numpy()


def sm_arch(x, lags):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = het_arch(x, nlags=lags)
    return r[0], r[1]


def sm_adf(x, lags=None, regression="c", max_lags=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if lags is None:
            r = adfuller(x, maxlag=max_lags, regression=regression, autolag="AIC")
        else:
            r = adfuller(x, maxlag=lags, regression=regression, autolag=None)
    return r[0], r[1], r[2]


def close(ours, ref, rtol=RTOL, atol=0.0):
    """Relative agreement; p-values that scipy/statsmodels underflow (< 1e-300) must underflow too."""
    ours, ref = np.atleast_1d(np.asarray(ours, float)), np.atleast_1d(np.asarray(ref, float))
    assert ours.shape == ref.shape
    small = np.abs(ref) < TINY
    assert np.all(np.abs(ours[small]) < 1e-290), (ours, ref)
    np.testing.assert_allclose(ours[~small], ref[~small], rtol=rtol, atol=atol)


def check_all(x, lb_lags=(1, 5, 10), arch_lags=(1, 5), adf_lags=(0, 1, 4), regressions=("n", "c", "ct")):
    q, p = ljung_box(x, list(lb_lags))
    qs, ps = sm_ljung_box(x, lb_lags)
    close(q, qs)
    close(p, ps)
    for lag in arch_lags:
        lm, p = arch_lm(x, lag)
        lms, ps = sm_arch(x, lag)
        close(lm, lms)
        close(p, ps)
    for reg in regressions:
        for lag in adf_lags:
            t, p = adf(x, lag, regression=reg)
            ts, ps, _ = sm_adf(x, lag, reg)
            close(t, ts)
            close(p, ps)
        t, p = adf(x, regression=reg)
        ts, ps, used = sm_adf(x, None, reg)
        assert adf_lag(x, regression=reg) == used
        close(t, ts)
        close(p, ps)


# ---------------------------------------------------------------------------------------- real data


def _hourly_close():
    p = DATA / "Binance_BTCUSDT_1h.csv.gz"
    if not p.exists():
        pytest.skip(f"{p} is absent (real data lives in ../shared/data)")
    a = np.genfromtxt(gzip.open(p, "rt"), delimiter=",", skip_header=1, usecols=(0, 3, 4, 5, 6, 7, 8))
    a[a[:, 0] < 1e11, 0] *= 1000  # seconds -> ms for the older row style
    a = a[np.argsort(a[:, 0], kind="stable")]
    _, first = np.unique(a[:, 0], return_index=True)  # the overlap repeats 2,649 hours
    return a[first, 4]


def _btc_5m_close():
    p = DATA / "BTC_USDT-5m-2023.json.gz"
    if not p.exists():
        pytest.skip(f"{p} is absent (real data lives in ../shared/data)")
    d = json.load(gzip.open(p))
    cols = ("date", "open", "high", "low", "close", "volume")
    a = np.array([[d[c][str(i)] for c in cols] for i in range(len(d["date"]))])
    a = a[np.argsort(a[:, 0], kind="stable")]
    _, first = np.unique(a[:, 0], return_index=True)
    return a[first, 4]


@pytest.fixture(scope="module")
def real():
    h, m5 = np.log(_hourly_close()), np.log(_btc_5m_close())
    assert h.size > 33_000 and m5.size == 10_999
    return {
        # statsmodels' autolag refits ~50 OLS per call: slices keep the suite fast
        "hourly log price": h[-4000:],
        "hourly log return": np.diff(h)[-6000:],
        "5m log price": m5[:3000],
        "5m log return": np.diff(m5)[-5000:],
    }


@pytest.mark.parametrize("name", ["hourly log price", "hourly log return", "5m log price", "5m log return"])
def test_real_data_matches_statsmodels(real, name):
    check_all(real[name], lb_lags=(1, 6, 24, 100), arch_lags=(1, 12), adf_lags=(0, 2, 12))


def test_real_full_hourly_series_fixed_lags(real):
    h = np.log(_hourly_close())
    r = np.diff(h)
    # tiny p-values: Ljung-Box ~1e-28 .. 1e-69, ARCH ~1e-223 on hourly BTC returns
    q, p = ljung_box(r, [1, 12, 100])
    qs, ps = sm_ljung_box(r, (1, 12, 100))
    assert np.all(ps < 1e-20) and np.all(ps > TINY)
    close(q, qs)
    close(p, ps)
    lm, p = arch_lm(r, 1)
    lms, ps = sm_arch(r, 1)
    assert TINY < ps < 1e-100
    close(lm, lms)
    close(p, ps)
    for reg in ("n", "c", "ct"):
        t, p = adf(h, 5, regression=reg)
        ts, ps, _ = sm_adf(h, 5, reg)
        close(t, ts)
        close(p, ps)


# ---------------------------------------------------------------------------------------- simulated


def _simulate(kind, n, seed):
    rng = np.random.default_rng(seed)
    e = rng.standard_normal(n)
    if kind == "white noise":
        return e
    if kind == "random walk":
        return np.cumsum(e)
    if kind in ("ar1", "near unit root"):
        phi = 0.6 if kind == "ar1" else 0.995
        x = np.empty(n)
        x[0] = e[0]
        for t in range(1, n):
            x[t] = phi * x[t - 1] + e[t]
        return x
    if kind == "garch":
        x, v = np.empty(n), 1.0
        for t in range(n):
            x[t] = np.sqrt(v) * e[t]
            v = 0.05 + 0.1 * x[t] ** 2 + 0.85 * v
        return 0.01 * x + 0.0002  # a return-like scale and a mean: ARCH-LM does not demean
    raise ValueError(kind)


@pytest.mark.parametrize("n", [120, 1500])
@pytest.mark.parametrize("kind", ["white noise", "random walk", "ar1", "near unit root", "garch"])
def test_simulated_matches_statsmodels(kind, n):
    # "ctt" only on the short series: on long ones statsmodels' own "ctt" loses digits (its t^2
    # column is unscaled), see test_adf_equals_exact_arithmetic_on_a_long_series
    regressions = ("n", "c", "ct", "ctt") if n <= 1000 else ("n", "c", "ct")
    check_all(_simulate(kind, n, seed=n), regressions=regressions)


def test_arch_lm_detects_garch_and_not_white_noise():
    assert arch_lm(_simulate("garch", 3000, 1), 5).pvalue < 1e-6
    assert arch_lm(_simulate("white noise", 3000, 1), 5).pvalue > 1e-3


# ---------------------------------------------------------------------------------------- distributions


def test_chi2_sf_matches_scipy_into_the_far_tail():
    worst = 0.0
    for df in (1, 2, 3, 4, 7, 12, 51, 100, 1001):
        for q in np.geomspace(1e-4, 4000.0, 300):
            ref = sps.chi2.sf(q, df)
            ours = chi2_sf(float(q), df)
            if ref > TINY:
                worst = max(worst, abs(ours - ref) / ref)
            else:
                assert ours < 1e-290
    assert worst < 1e-11
    assert chi2_sf(0.0, 3) == 1.0 and chi2_sf(np.inf, 3) == 0.0
    # p around 1e-10 and 1e-100, where absolute checks would pass anything
    for df, q in ((5, 55.0), (1, 42.0), (20, 560.0)):
        ref = sps.chi2.sf(q, df)
        assert 1e-120 < ref < 1e-8
        assert abs(chi2_sf(q, df) - ref) <= 1e-11 * ref


@pytest.mark.parametrize("regression", ["n", "c", "ct", "ctt"])
def test_mackinnon_p_both_branches_and_cutoffs(regression):
    tau_min, tau_star, tau_max = _mackinnon._CUTOFFS[regression]
    hi = 4.0 if np.isinf(tau_max) else tau_max + 1.0
    grid = np.r_[np.linspace(tau_min - 1.0, hi, 400), tau_min, tau_star, tau_max if np.isfinite(tau_max) else 0.0]
    small = large = 0
    for tau in grid:
        ours, ref = _mackinnon.mackinnon_p(float(tau), regression), mackinnonp(float(tau), regression, N=1)
        if tau < tau_min:
            assert ours == ref == 0.0
        elif tau > tau_max:
            assert ours == ref == 1.0
        else:
            small += tau <= tau_star
            large += tau > tau_star
            assert abs(ours - ref) <= 1e-12 * ref, (tau, ours, ref)
    assert small > 50 and large > 20
    # the smallest p-value the surface gives (at tau_min) keeps its relative precision
    assert mackinnonp(tau_min, regression, N=1) < 1e-10


def test_adf_p_values_in_each_mackinnon_branch():
    rng = np.random.default_rng(7)
    cases = {
        "large-p (tau > tau_star)": np.cumsum(0.3 + rng.standard_normal(400)),  # drifting walk
        "small-p (tau_min <= tau <= tau_star)": _simulate("ar1", 300, 3),
        "below tau_min (p = 0)": rng.standard_normal(3000),
        "above tau_max (p = 1)": np.cumprod(np.full(200, 1.02)) + rng.standard_normal(200),
    }
    tau_min, tau_star, tau_max = _mackinnon._CUTOFFS["c"]
    got = {}
    for name, x in cases.items():
        t, p = adf(x, 1)
        ts, ps, _ = sm_adf(x, 1)
        close(t, ts)
        assert p == ps if p in (0.0, 1.0) else abs(p - ps) <= RTOL * ps
        got[name] = t
    assert got["large-p (tau > tau_star)"] > tau_star
    assert tau_min <= got["small-p (tau_min <= tau <= tau_star)"] <= tau_star
    assert got["below tau_min (p = 0)"] < tau_min
    assert got["above tau_max (p = 1)"] > tau_max


# ---------------------------------------------------------------------------------------- ADF details


def _exact_tau(x, p, ntrend):
    """ADF tau in exact rational arithmetic (normal equations over the floats' exact values)."""
    n = x.size
    d = np.diff(x)
    m = n - 1 - p
    t = np.arange(1, m + 1)
    cols = [np.ones(m), t, t * t][:ntrend] + [d[p - j : n - 1 - j] for j in range(1, p + 1)] + [x[p : n - 1]]
    y = d[p:]

    def ints(v):  # exact integers and a common power-of-two denominator
        fr = [float(a).as_integer_ratio() for a in v]
        den = max(b for _, b in fr)
        return [a * (den // b) for a, b in fr], den

    C = [ints(c) for c in cols]
    Y = ints(y)
    k = len(C)
    dot = lambda u, v: Fraction(sum(a * b for a, b in zip(u[0], v[0])), u[1] * v[1])  # noqa: E731
    A = [[dot(C[i], C[j]) for j in range(k)] for i in range(k)]
    b = [dot(C[i], Y) for i in range(k)]
    M = [A[i] + [Fraction(int(i == j)) for j in range(k)] for i in range(k)]
    for c in range(k):  # Gauss-Jordan inverse, exact
        piv = next(r for r in range(c, k) if M[r][c] != 0)
        M[c], M[piv] = M[piv], M[c]
        M[c] = [v / M[c][c] for v in M[c]]
        for r in range(k):
            if r != c and M[r][c] != 0:
                f = M[r][c]
                M[r] = [a - f * e for a, e in zip(M[r], M[c])]
    inv = [row[k:] for row in M]
    beta = [sum(inv[i][j] * b[j] for j in range(k)) for i in range(k)]
    ssr = dot(Y, Y) - sum(beta[i] * b[i] for i in range(k))
    tau2 = beta[-1] ** 2 / (ssr / (m - k) * inv[-1][-1])
    return float(np.sign(float(beta[-1])) * np.sqrt(float(tau2)))


@pytest.mark.parametrize("regression,ntrend", [("c", 1), ("ct", 2), ("ctt", 3)])
def test_adf_equals_exact_arithmetic_on_a_long_series(regression, ntrend):
    # on long series statsmodels' unscaled t^2 column costs it digits for "ctt" (~1e-9 .. 1e-6 at
    # n = 5,000 .. 33,000); ours is held to exact arithmetic instead
    x = np.cumsum(np.random.default_rng(11).standard_normal(6000)) * 0.01 + 9.0
    for p in (0, 2):
        exact = _exact_tau(x, p, ntrend)
        assert abs(adf(x, p, regression=regression).statistic - exact) <= 1e-12 * abs(exact)


def test_aic_choice_is_refitted_on_its_own_sample():
    x = _simulate("ar1", 700, 5)
    x = np.cumsum(x)  # an integrated AR(1): AIC picks a positive lag
    p = adf_lag(x)
    assert p == sm_adf(x)[2] and p >= 1
    assert adf(x) == adf(x, p)
    # an explicit max_lags bounds the search, as adfuller's maxlag with autolag="AIC"
    for ml in (0, 1, 3, 20):
        assert adf_lag(x, max_lags=ml) == sm_adf(x, None, "c", max_lags=ml)[2]
        close(adf(x, max_lags=ml).statistic, sm_adf(x, None, "c", max_lags=ml)[0])


def test_ljung_box_lag_forms():
    x = _simulate("ar1", 500, 9)
    q, p = ljung_box(x, [10, 1, 5])
    assert q.shape == p.shape == (3,)
    for i, h in enumerate((10, 1, 5)):
        assert ljung_box(x, h) == (q[i], p[i])
    s = ljung_box(x, np.int64(3))
    assert isinstance(s.statistic, float) and isinstance(s.pvalue, float)
    assert 1e-200 < s.pvalue < 1e-10  # a small p-value, checked relatively by check_all
    close(s.pvalue, sm_ljung_box(x, (3,))[1][0])
    close(ljung_box(x, 499).statistic, sm_ljung_box(x, (499,))[0][0])  # the longest lag allowed


# ---------------------------------------------------------------------------------------- properties


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(30, 400),
    seed=st.integers(0, 2**31 - 1),
    kind=st.sampled_from(["white noise", "random walk", "ar1", "garch"]),
    frac=st.floats(0.0, 1.0),
    regression=st.sampled_from(["n", "c", "ct"]),
)
def test_property_random_lengths_and_lags(n, seed, kind, frac, regression):
    x = _simulate(kind, n, seed)
    h = 1 + int(frac * (n - 2))  # any lag 1..n-1
    close(ljung_box(x, h).statistic, sm_ljung_box(x, (h,))[0][0])
    close(ljung_box(x, h).pvalue, sm_ljung_box(x, (h,))[1][0])
    q = 1 + int(frac * ((n - 2) // 2 - 1))  # any lag with n >= 2 q + 2
    lm, p = arch_lm(x, q)
    lms, ps = sm_arch(x, q)
    close(lm, lms, atol=1e-9)  # LM is (n - q) R^2: near 0 only rounding of R^2 is left
    close(p, ps, atol=1e-12)
    ntrend = {"n": 0, "c": 1, "ct": 2}[regression]
    cap = n // 2 - ntrend - 1
    lag = int(frac * cap)
    if n - 1 - lag - (ntrend + 1 + lag) >= 1:
        t, p = adf(x, lag, regression=regression)
        ts, ps, _ = sm_adf(x, lag, regression)
        close(t, ts, atol=1e-10)  # tau near 0 leaves only rounding
        close(p, ps)
    t, p = adf(x, regression=regression)
    ts, ps, used = sm_adf(x, None, regression)
    assert adf_lag(x, regression=regression) == used
    close(t, ts, atol=1e-10)
    close(p, ps)


# ---------------------------------------------------------------------------------------- bad input


def test_errors_say_what_is_needed():
    x = np.random.default_rng(0).standard_normal(20)
    with pytest.raises(ValueError, match=r"every lag < len\(x\).*at most 19"):
        ljung_box(x, 20)
    with pytest.raises(ValueError, match=r">= 1"):
        ljung_box(x, 0)
    with pytest.raises(ValueError, match="empty"):
        ljung_box(x, [])
    with pytest.raises(ValueError, match="integer"):
        ljung_box(x, 2.0)
    with pytest.raises(ValueError, match="integer"):
        arch_lm(x, True)
    with pytest.raises(ValueError, match=r"len\(x\) >= 2 \* lags \+ 2 = 24"):
        arch_lm(x, 11)
    with pytest.raises(ValueError, match=r"lags = 9 needs lags <= len\(x\) // 2 - n_trend - 1 = 8"):
        adf(x, 9)
    with pytest.raises(ValueError, match=r"max_lags = 8 needs max_lags <= .* = 7"):
        adf(x, regression="ct", max_lags=8)
    with pytest.raises(ValueError, match=r"adf needs len\(x\) >= 4"):
        adf(x[:3])
    with pytest.raises(ValueError, match="not both"):
        adf(x, 2, max_lags=3)
    with pytest.raises(ValueError, match="regression must be one of"):
        adf(x, regression="t")
    with pytest.raises(ValueError, match=r"x\[3\] = nan is not finite"):
        ljung_box(np.r_[x[:3], np.nan, x[4:]], 2)
    with pytest.raises(ValueError, match="1-D"):
        arch_lm(x.reshape(4, 5), 1)


def test_constant_and_deterministic_series():
    c = np.full(50, 3.0)
    for call in (lambda: ljung_box(c, 2), lambda: arch_lm(c, 2), lambda: adf(c)):
        with pytest.raises(ValueError, match="constant"):
            call()
    # +-1: x varies but x**2 does not
    with pytest.raises(ValueError, match=r"x\*\*2 is constant"):
        arch_lm(np.tile([1.0, -1.0], 25), 2)
    line = np.arange(50.0)
    with pytest.raises(ValueError, match="collinear"):
        adf(line, 2)
    with pytest.raises(ValueError, match="fits x exactly"):
        adf(line, 0)
