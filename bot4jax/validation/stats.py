"""Ljung-Box, ARCH-LM and augmented Dickey-Fuller tests of one series, equal to statsmodels'.

Each test takes a 1-D array ``x`` of shape (n,) (float64 after conversion; it must be finite) and
returns a ``StatResult(statistic, pvalue)`` that unpacks as a pair. The numbers match, to rounding,
statsmodels' ``acorr_ljungbox``, ``het_arch`` and ``adfuller`` under the settings named in each
docstring. Plain NumPy rather than JAX: each test is a handful of dot products or one LAPACK QR of a
tall (n, k <= ~60) matrix, run once per series, where a jit compile would cost more than the work.
The ADF AIC search reads every candidate lag from one QR instead of refitting each (speed against
statsmodels: experiments/bench_stats.py). The chi-square and normal tails come from closed forms over
``math.erfc`` / ``math.lgamma`` (no scipy at runtime).

Tiny p-values keep full relative accuracy down to the smallest normal double (about 1e-308); below
that they underflow to 0, as scipy's do. The ADF p-value is exactly 0 (1) when tau lies below
(above) the range of MacKinnon's response surface, as in statsmodels.

Degenerate inputs raise ``ValueError`` saying what is needed: a non-finite value (with its index), a
series too short for the lags asked for, a constant series (every test divides by its variance;
statsmodels returns NaN for Ljung-Box and ARCH-LM there and raises for ADF), and regressions that
fit exactly or have collinear regressors (e.g. ADF of a straight line), where statsmodels returns
numbers of rounding noise.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from bot4jax.validation._mackinnon import REGRESSIONS, mackinnon_p

__all__ = ["StatResult", "ljung_box", "arch_lm", "adf", "adf_lag", "chi2_sf"]


class StatResult(NamedTuple):
    """A test statistic and its p-value (floats, or arrays for Ljung-Box at several lags)."""

    statistic: float | np.ndarray
    pvalue: float | np.ndarray


# --------------------------------------------------------------------------------------------------
# distributions


def chi2_sf(q: float, df: int) -> float:
    """P(chi2_df > q) for an integer number of degrees of freedom df >= 1.

    Closed forms of the regularised upper incomplete gamma Q(df/2, q/2), with x = q/2:
      df = 2m:     Q = sum_{j=0}^{m-1} exp(-x) x^j / j!
      df = 2m + 1: Q = erfc(sqrt x) + sum_{j=0}^{m-1} exp(-x) x^(j + 1/2) / Gamma(j + 3/2)
    Every term is positive (no cancellation) and is evaluated as exp of its logarithm, so the tail
    keeps ~1e-13 relative accuracy until it underflows below ~1e-308.
    """
    if df < 1:
        raise ValueError(f"chi2_sf needs df >= 1, got {df}")
    if math.isnan(q):
        return math.nan
    if q <= 0.0:
        return 1.0
    if math.isinf(q):
        return 0.0
    x = 0.5 * q
    log_x = math.log(x)
    m, odd = divmod(df, 2)
    shift = 0.5 if odd else 0.0
    total = math.erfc(math.sqrt(x)) if odd else 0.0
    for j in range(m - 1, -1, -1):
        total += math.exp(-x + (j + shift) * log_x - math.lgamma(j + 1 + shift))
    return min(total, 1.0)


# --------------------------------------------------------------------------------------------------
# input checks


def _series(x) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"x must be a 1-D series, got an array of shape {a.shape}")
    bad = np.flatnonzero(~np.isfinite(a))
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"x[{i}] = {a[i]} is not finite ({bad.size} non-finite values): "
            "drop or fill missing values before testing"
        )
    return a


def _lag(lags, name: str, minimum: int) -> int:
    if isinstance(lags, (bool, np.bool_)) or not isinstance(lags, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {lags!r}")
    if lags < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {lags}")
    return int(lags)


def _not_constant(a: np.ndarray, what: str, test: str) -> None:
    if a.size and a.max() == a.min():
        raise ValueError(f"{what} is constant: {test} is undefined for a series without variation")


# --------------------------------------------------------------------------------------------------
# Ljung-Box


def ljung_box(x, lags: int | Sequence[int]) -> StatResult:
    """Ljung-Box portmanteau test of no autocorrelation up to lag h.

    Q(h) = n (n + 2) sum_{k=1}^{h} r_k^2 / (n - k),   p = P(chi2_h > Q(h)),
    r_k = sum_{t=k}^{n-1} d_t d_{t-k} / sum_t d_t^2,  d = x - mean(x)   (x is demeaned, as statsmodels).

    ``lags``: one integer h (1 <= h < n) gives the scalar pair (Q(h), p) for that lag only; a sequence
    of integers gives two float arrays, Q and p at each listed lag, in the order given. Equals
    ``statsmodels.stats.diagnostic.acorr_ljungbox(x, lags=[...])`` (model_df=0), whose integer form
    instead reports every lag 1..h.
    """
    x = _series(x)
    n = x.size
    several = isinstance(lags, (Sequence, np.ndarray)) and np.ndim(lags) == 1
    hs = [_lag(h, "lags", 1) for h in (lags if several else [lags])]
    if several and not hs:
        raise ValueError("lags is an empty sequence: give at least one lag")
    h_max = max(hs)
    if h_max >= n:
        raise ValueError(
            f"ljung_box needs every lag < len(x): got lag {h_max} with len(x) = {n}; "
            f"use at most {n - 1} lags or a longer series"
        )
    _not_constant(x, "x", "the Ljung-Box test")
    d = x - x.mean()
    c0 = d @ d
    k = np.arange(1, h_max + 1)
    r = np.array([d[j:] @ d[:-j] for j in k]) / c0
    q = n * (n + 2.0) * np.cumsum(r * r / (n - k))
    stats = q[np.asarray(hs) - 1]
    pvals = np.array([chi2_sf(float(s), h) for s, h in zip(stats, hs)])
    if several:
        return StatResult(stats, pvals)
    return StatResult(float(stats[0]), float(pvals[0]))


# --------------------------------------------------------------------------------------------------
# ARCH-LM


def arch_lm(x, lags: int) -> StatResult:
    """Engle's ARCH-LM test of no conditional heteroskedasticity up to lag q.

    With e_t = x_t^2 (x is NOT demeaned: pass residuals, e.g. returns minus their mean, if a mean is
    to be removed), regress by OLS

        e_t = a_0 + a_1 e_{t-1} + ... + a_q e_{t-q} + u_t,    t = q, ..., n - 1,

    LM = (n - q) R^2,  p = P(chi2_q > LM),  R^2 = 1 - SSR / sum_t (e_t - mean e)^2.

    Equals ``statsmodels.stats.diagnostic.het_arch(x, nlags=q)`` (its defaults: ddof=0, nonrobust
    covariance; the LM statistic and its p-value). Needs len(x) >= 2 q + 2 so the auxiliary
    regression keeps a residual degree of freedom.
    """
    x = _series(x)
    q = _lag(lags, "lags", 1)
    n = x.size
    if n < 2 * q + 2:
        raise ValueError(
            f"arch_lm with lags = {q} needs len(x) >= 2 * lags + 2 = {2 * q + 2}, got {n}"
        )
    e = x * x
    _not_constant(e, "x**2", "the ARCH-LM test")
    # R^2 is invariant to rescaling e; unit scale keeps the intercept column commensurate
    e = e / np.mean(e)
    y = e[q:]
    _not_constant(y, f"x[{q}:]**2", "the ARCH-LM test")
    cols = [np.ones(n - q)] + [e[q - j : n - j] for j in range(1, q + 1)]
    X = np.column_stack(cols)
    beta = np.linalg.lstsq(X, y, rcond=None)[0]
    u = y - X @ beta
    yc = y - y.mean()
    r2 = 1.0 - (u @ u) / (yc @ yc)
    lm = (n - q) * r2
    return StatResult(float(lm), chi2_sf(float(lm), q))


# --------------------------------------------------------------------------------------------------
# augmented Dickey-Fuller


def _n_trend(regression: str) -> int:
    if regression not in REGRESSIONS:
        raise ValueError(f"regression must be one of {REGRESSIONS}, got {regression!r}")
    return {"n": 0, "c": 1, "ct": 2, "ctt": 3}[regression]


def _deterministic(m: int, ntrend: int) -> list[np.ndarray]:
    # constant, t, t^2 with t = 1..m as statsmodels; t is scaled by 1/m, which leaves every
    # statistic here unchanged and keeps the columns commensurate
    t = np.arange(1, m + 1, dtype=np.float64) / m
    return [np.ones(m), t, t * t][:ntrend]


def _adf_rows(x: np.ndarray, p: int):
    """y_s = dx_s, level x_s and lagged differences dx_{s-1..s-p}, for s = p..n-2 (m = n-1-p rows)."""
    n = x.size
    d = np.diff(x)
    y = d[p:]
    level = x[p : n - 1]
    lagged = [d[p - j : n - 1 - j] for j in range(1, p + 1)]
    return y, level, lagged


def _qr_r(X: np.ndarray, y: np.ndarray, what: str):
    """R factor of [X | y] (shape (K+1, K+1)) after checking that X has full column rank.

    With X = QR, R[:K, K] = Q'y and R[K, K]^2 = SSR of y on X: no Q is formed.
    """
    R = np.linalg.qr(np.column_stack([X, y]), mode="r")
    K = X.shape[1]
    bad = np.flatnonzero(np.abs(np.diag(R)[:K]) <= 1e-12 * np.linalg.norm(X, axis=0))
    if bad.size:
        raise ValueError(
            f"{what}: regressor {int(bad[0])} is collinear with the others (is x deterministic, "
            "e.g. a straight line or a series with constant differences?)"
        )
    return R


def _max_lags(n: int, ntrend: int, max_lags: int | None, name: str = "max_lags") -> int:
    cap = n // 2 - ntrend - 1
    if max_lags is None:
        # Schwert's (1989) rule, as statsmodels
        ml = min(cap, int(np.ceil(12.0 * np.power(n / 100.0, 0.25))))
        if ml < 0:
            raise ValueError(
                f"adf needs len(x) >= {2 * (ntrend + 1)} for this regression, got {n}"
            )
        return ml
    ml = _lag(max_lags, name, 0)
    if ml > cap:
        raise ValueError(
            f"adf with {name} = {ml} needs {name} <= len(x) // 2 - n_trend - 1 = {cap} "
            f"(len(x) = {n}, n_trend = {ntrend} deterministic terms): use fewer lags or a longer series"
        )
    return ml


def _prepare(x, regression: str):
    x = _series(x)
    ntrend = _n_trend(regression)
    _not_constant(x, "x", "the ADF test")
    return x, ntrend


def _select_lag(x: np.ndarray, ntrend: int, max_lag: int) -> int:
    """Lag in 0..max_lag minimising AIC, all candidates fitted on the same m = n - 1 - max_lag rows.

    AIC = m log(2 pi) + m log(SSR / m) + m + 2 k  (k regressors), ties to the smaller lag. One QR of
    the largest design [deterministic, level, dx_{-1}, ..., dx_{-max_lag}] gives every nested fit:
    with z = Q'y, SSR(k) = SSR(K) + sum_{i >= k} z_i^2.
    """
    if max_lag == 0:
        return 0
    y, level, lagged = _adf_rows(x, max_lag)
    m = y.size
    X = np.column_stack(_deterministic(m, ntrend) + [level] + lagged)
    R = _qr_r(X, y, "adf lag search")
    K = X.shape[1]
    z = R[:K, K]
    ssr_full = R[K, K] ** 2
    tail = np.cumsum((z * z)[::-1])[::-1]  # tail[i] = sum_{i' >= i} z_i'^2
    k0 = ntrend + 1
    ks = np.arange(k0, X.shape[1] + 1)
    ssr = ssr_full + np.append(tail[k0:], 0.0)
    with np.errstate(divide="ignore"):  # an exact fit (SSR = 0) is -inf: chosen, then refused by adf
        aic = m * math.log(2 * math.pi) + m * np.log(ssr / m) + m + 2.0 * ks
    return int(np.argmin(aic))


def adf_lag(x, regression: str = "c", max_lags: int | None = None) -> int:
    """Number of lagged differences that ``adf(x, None, regression=..., max_lags=...)`` uses.

    Chosen by AIC over 0..max_lags (default ceil(12 (n/100)^(1/4)), capped at n // 2 - n_trend - 1)
    on the common sample, as ``adfuller(x, maxlag=max_lags, regression=..., autolag="AIC")``.
    """
    x, ntrend = _prepare(x, regression)
    return _select_lag(x, ntrend, _max_lags(x.size, ntrend, max_lags))


def adf(x, lags: int | None = None, *, regression: str = "c", max_lags: int | None = None) -> StatResult:
    """Augmented Dickey-Fuller test of a unit root in x (null: unit root; small tau rejects it).

    OLS of dx_t = det_t + g x_{t-1} + sum_{j=1}^{p} b_j dx_{t-j} + u_t on the n - 1 - p rows where every
    lag exists, with det_t none ("n"), a constant ("c", default), constant and trend ("ct") or constant,
    trend and trend^2 ("ctt"). Statistic tau = g_hat / se(g_hat); p-value from MacKinnon's (1994)
    response surface (``_mackinnon.mackinnon_p``; MacKinnon, J. G., 1994, "Approximate asymptotic
    distribution functions for unit-root and cointegration tests", JBES 12(2), 167-176).

    ``lags``: p, fixed (0 <= p <= n // 2 - n_trend - 1), or None for the AIC choice over
    0..max_lags (see ``adf_lag``; the search fits all candidates on the sample of the largest one,
    then the chosen p is refitted on its own n - 1 - p rows). Equals
    ``statsmodels.tsa.stattools.adfuller(x, maxlag=lags, regression=regression, autolag=None)`` for
    an integer, and ``adfuller(x, maxlag=max_lags, regression=regression, autolag="AIC")`` for None.
    ``max_lags`` is only for the search (lags=None).
    """
    x, ntrend = _prepare(x, regression)
    n = x.size
    if lags is not None and max_lags is not None:
        raise ValueError("give lags (a fixed order) or max_lags (the bound of the AIC search), not both")
    if lags is None:
        p = _select_lag(x, ntrend, _max_lags(n, ntrend, max_lags))
    else:
        p = _max_lags(n, ntrend, lags, "lags")
    y, level, lagged = _adf_rows(x, p)
    m = y.size
    k = ntrend + 1 + p
    if m - k < 1:
        raise ValueError(
            f"adf with {p} lags on len(x) = {n} leaves no residual degree of freedom: use fewer lags "
            "or a longer series"
        )
    # level last: with X = QR and z = Q'y its coefficient is z_K / R_KK and its variance s^2 / R_KK^2
    X = np.column_stack(_deterministic(m, ntrend) + lagged + [level])
    R = _qr_r(X, y, "adf regression")
    ssr = R[k, k] ** 2
    if ssr <= 1e-24 * (y @ y):
        raise ValueError("the ADF regression fits x exactly (x is deterministic): tau is undefined")
    s = math.sqrt(ssr / (m - k))
    tau = float(math.copysign(1.0, R[k - 1, k - 1]) * R[k - 1, k] / s)
    return StatResult(tau, mackinnon_p(tau, regression))
