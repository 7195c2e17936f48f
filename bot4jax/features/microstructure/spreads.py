"""Spread estimators: Roll, Corwin-Schultz, Abdi-Ranaldo, quoted, effective and realized spreads.

Conventions shared by the estimators (roll_spread, corwin_schultz_spread, abdi_ranaldo_spread,
effective_spread, realized_spread): inputs are vectors of shape (n,), NumPy or JAX; `window=None`
gives one float64 value over the whole sample (a 0-d JAX array), `window=w` a rolling array of shape
(n,) whose value at t uses the last w observations (pairs) ending at t, NaN until the window is full
and where it holds a NaN input. `quoted_spread` describes a book state: one value per snapshot, or its
rolling mean with a window.
"""
from __future__ import annotations

import math
from functools import partial

from bot4jax.features.microstructure._rolling import (
    NAN, check_window, clean, diff, lag, series, top_level, window_sums,
)
from bot4jax.jaxcfg import jax, jnp


# ---------------------------------------------------------------------------------------------------
# Roll (1984)

def _roll_from_sums(m, sa, sb, sab):
    """Roll spread 2 sqrt(-cov) from sums over m pairs (a_t, b_t) = (dp_t, dp_{t-1}); NaN if cov >= 0."""
    cov = (sab - sa * sb / m) / (m - 1.0)
    return jnp.where(cov < 0, 2.0 * jnp.sqrt(jnp.where(cov < 0, -cov, 0.0)), NAN)


@partial(jax.jit, static_argnames=("window",))
def _roll(price, window):
    dp = diff(price)
    prev = lag(dp, 1)
    if window is None:  # the pairs t = 2..n-1; a NaN price makes the whole-sample value NaN
        a, b = dp[2:], prev[2:]
        return _roll_from_sums(a.shape[0], jnp.sum(a), jnp.sum(b), jnp.sum(a * b))
    a, bad_a = clean(dp)
    b, bad_b = clean(prev)
    (sa, sb, sab), ok = window_sums([a, b, a * b], window, bad_a | bad_b)
    return jnp.where(ok, _roll_from_sums(float(window), sa, sb, sab), NAN)


def roll_spread(price, window=None):
    """Roll's implicit bid-ask spread from the serial covariance of price changes (Roll 1984).

        dp_t = p_t - p_{t-1},   spread = 2 sqrt(-cov(dp_t, dp_{t-1}))

    With an efficient price that follows a random walk and trades at mid +/- c (buyer- or
    seller-initiated with equal probability, independently), cov(dp_t, dp_{t-1}) = -c^2, so the
    estimate is the full spread 2c. Undefined (NaN) where the sample covariance is not negative.

    price: (n,) trade prices (or closes); pass log prices for a spread as a fraction of the price.
    window: None -> one value over the n - 2 pairs of the sample (covariance with divisor m - 1);
    int w >= 2 -> (n,) over the last w pairs (dp_t, dp_{t-1}) ending at t, NaN for t < w + 1.
    Units: those of `price` (a spread, full width, not the half spread).
    """
    window = check_window(window, minimum=2)
    p = series(price, "price")
    if window is None and p.shape[0] < 4:
        raise ValueError(f"roll_spread needs at least 4 prices (2 pairs of changes); got {p.shape[0]}")
    return _roll(p, window)


# ---------------------------------------------------------------------------------------------------
# Corwin and Schultz (2012)

_CS_K = 3.0 - 2.0 * math.sqrt(2.0)


def corwin_schultz_pairs(high, low):
    """Two-bar Corwin-Schultz spread S_t from bars t-1 and t, shape (n,), NaN at t = 0.

        beta  = ln(H_t / L_t)^2 + ln(H_{t-1} / L_{t-1})^2
        gamma = ln(max(H_t, H_{t-1}) / min(L_t, L_{t-1}))^2
        alpha = (sqrt(2 beta) - sqrt(beta)) / (3 - 2 sqrt 2) - sqrt(gamma / (3 - 2 sqrt 2))
        S_t   = max(0, 2 (e^alpha - 1) / (1 + e^alpha))     (negative estimates set to 0, as in the paper)
    """
    lh, ll = jnp.log(high), jnp.log(low)
    r = lh - ll
    beta = r * r + lag(r * r, 1)
    g = jnp.maximum(lh, lag(lh, 1)) - jnp.minimum(ll, lag(ll, 1))
    alpha = (jnp.sqrt(2.0 * beta) - jnp.sqrt(beta)) / _CS_K - jnp.sqrt(g * g / _CS_K)
    s = 2.0 * jnp.expm1(alpha) / (1.0 + jnp.exp(alpha))
    return jnp.where(jnp.isnan(s), NAN, jnp.maximum(s, 0.0))


def _mean_of(x, window, skip):
    """Mean of x over the whole sample (from index `skip`) or over a trailing window (NaN-aware)."""
    if window is None:
        return jnp.mean(x[skip:])
    v, bad = clean(x)
    (s,), ok = window_sums([v], window, bad)
    return jnp.where(ok, s / window, NAN)


@partial(jax.jit, static_argnames=("window",))
def _cs(high, low, window):
    return _mean_of(corwin_schultz_pairs(high, low), window, 1)


def corwin_schultz_spread(high, low, window=None):
    """Corwin-Schultz high-low spread estimator (Corwin and Schultz 2012, J. Finance 67(2)).

    The high-low range of one bar holds volatility plus the spread; that of two bars twice the
    volatility plus the same spread, which separates the two. Per pair of bars see
    `corwin_schultz_pairs`; the estimate is their mean over the sample or over the last `window`
    pairs (a pair ending at t uses bars t-1 and t; NaN for t < window).

    high, low: (n,) bar highs and lows (> 0). Units: a fraction of the price (0.001 = 10 bps).
    """
    window = check_window(window)
    h = series(high, "high")
    lo = series(low, "low", h.shape[0])
    if window is None and h.shape[0] < 2:
        raise ValueError("corwin_schultz_spread needs at least 2 bars")
    return _cs(h, lo, window)


# ---------------------------------------------------------------------------------------------------
# Abdi and Ranaldo (2017)

def abdi_ranaldo_products(high, low, close):
    """(c_{t-1} - eta_{t-1}) (c_{t-1} - eta_t) in logs, eta = (ln H + ln L) / 2; shape (n,), NaN at t = 0."""
    c = jnp.log(close)
    eta = 0.5 * (jnp.log(high) + jnp.log(low))
    c1, eta1 = lag(c, 1), lag(eta, 1)
    return (c1 - eta1) * (c1 - eta)


@partial(jax.jit, static_argnames=("window",))
def _ar(high, low, close, window):
    s2 = 4.0 * _mean_of(abdi_ranaldo_products(high, low, close), window, 1)
    return jnp.where(jnp.isnan(s2), NAN, jnp.sqrt(jnp.maximum(s2, 0.0)))


def abdi_ranaldo_spread(high, low, close, window=None):
    """Abdi-Ranaldo close-high-low spread estimator (Abdi and Ranaldo 2017, Rev. Financ. Stud. 30(12)).

        S^2 = 4 E[(c_{t-1} - eta_{t-1}) (c_{t-1} - eta_t)],   S = sqrt(max(S^2, 0))

    with c the log close and eta the mid-range (ln H + ln L) / 2: the close sits half a spread from
    the efficient price, the mid-range is an unbiased proxy of it. The expectation is the mean over
    the sample or the last `window` pairs (NaN for t < window); a negative mean gives 0, as in the
    paper's averaged estimator.

    high, low, close: (n,) (> 0). Units: a fraction of the price.
    """
    window = check_window(window)
    h = series(high, "high")
    lo = series(low, "low", h.shape[0])
    c = series(close, "close", h.shape[0])
    if window is None and h.shape[0] < 2:
        raise ValueError("abdi_ranaldo_spread needs at least 2 bars")
    return _ar(h, lo, c, window)


# ---------------------------------------------------------------------------------------------------
# Quoted, effective and realized spreads

@partial(jax.jit, static_argnames=("window",))
def _quoted(bid, ask, window):
    rel = (ask - bid) / (0.5 * (ask + bid))
    if window is None:
        return rel
    return _mean_of(rel, window, 0)


def quoted_spread(bid_px, ask_px, window=None):
    """Relative quoted spread (ask - bid) / mid at the best level (e.g. Amihud and Mendelson 1986).

    bid_px, ask_px: (n,) or (n, levels) (level 0 is used). window=None: one value per snapshot,
    shape (n,); int w: its rolling mean over the last w snapshots. An empty side (NaN price) gives
    NaN. Units: a fraction of the mid.
    """
    window = check_window(window)
    b = top_level(bid_px, "bid_px")
    return _quoted(b, top_level(ask_px, "ask_px", b.shape[0]), window)


def _weighted_mean(x, w, window):
    if window is None:
        return jnp.sum(x * w) / jnp.sum(w)
    xv, bad_x = clean(x)
    wv, bad_w = clean(w)
    (sxw, sw), ok = window_sums([xv * wv, wv], window, bad_x | bad_w)
    return jnp.where(ok & (sw > 0), sxw / jnp.where(sw > 0, sw, 1.0), NAN)


@partial(jax.jit, static_argnames=("window",))
def _spread_vs(price, side, mid, ref, weight, window):
    return _weighted_mean(2.0 * side * (price - ref) / mid, weight, window)


def _trade_inputs(price, side, mid, amount, name_mid):
    p = series(price, "price")
    n = p.shape[0]
    q = series(side, "side", n)
    m = series(mid, name_mid, n)
    w = jnp.ones(n) if amount is None else series(amount, "amount", n)
    return p, q, m, w


def effective_spread(price, side, mid, amount=None, window=None):
    """Effective spread 2 q_k (p_k - m_k) / m_k (e.g. Huang and Stoll 1996; Bessembinder 2003).

    price: (n,) trade prices; side: (n,) +1 buyer- / -1 seller-initiated; mid: (n,) the quote
    midpoint prevailing just before each trade; amount: optional (n,) weights (volume-weighted mean).
    window=None: the mean over all trades (scalar); int w: over the last w trades, shape (n,).
    Units: a fraction of the mid (full width: twice the distance from the mid).
    """
    window = check_window(window)
    p, q, m, w = _trade_inputs(price, side, mid, amount, "mid")
    return _spread_vs(p, q, m, m, w, window)


def realized_spread(price, side, mid, mid_later, amount=None, window=None):
    """Realized spread 2 q_k (p_k - m_{k+h}) / m_k: what the liquidity provider keeps once the price
    has moved (e.g. Huang and Stoll 1996; Bessembinder and Kaufman 1997). Effective minus realized is
    the price impact (adverse selection).

    mid_later: (n,) the midpoint a fixed horizon h after each trade (so a value is known only h after
    the trade: shift it before using it as a feature). Other arguments as `effective_spread`.
    """
    window = check_window(window)
    p, q, m, w = _trade_inputs(price, side, mid, amount, "mid")
    later = series(mid_later, "mid_later", p.shape[0])
    return _spread_vs(p, q, m, later, w, window)
