"""Variation measures from high-frequency prices: realized variance, bipower variation, microstructure
noise variance (two scales), variance ratio.

All take prices (n,) (> 0) and work on log returns r_t = ln p_t - ln p_{t-1}. `window=None` gives
one float64 value over the whole sample (0-d JAX array), `window=w` a rolling (n,) array over the last
w terms ending at t (NaN until the window is full and where it holds a NaN price).
"""
from __future__ import annotations

import math
from functools import partial

from bot4jax.features.microstructure._rolling import (
    NAN, check_window, clean, diff, lag, series, window_sums,
)
from bot4jax.jaxcfg import jax, jnp


def _sums(terms, window, first):
    """Sums of each term (n,) over the whole sample from index `first`, or rolling (NaN-aware)."""
    if window is None:
        return [jnp.sum(t[first:]) for t in terms], jnp.asarray(True)
    clean_terms, bads = zip(*(clean(t) for t in terms))
    bad = bads[0]
    for b in bads[1:]:
        bad = bad | b
    return window_sums(list(clean_terms), window, bad)


@partial(jax.jit, static_argnames=("window",))
def _rv(price, window):
    r = diff(jnp.log(price))
    (s,), ok = _sums([r * r], window, 1)
    return jnp.where(ok, s, NAN)


def realized_variance(price, window=None):
    """Realized variance, the sum of squared log returns (Andersen and Bollerslev 1998; Andersen,
    Bollerslev, Diebold and Labys 2001): RV = sum_t r_t^2.

    window=None: over the n - 1 returns; int w: over the last w returns, shape (n,), NaN for t < w.
    Units: squared log return per window (not annualised).
    """
    window = check_window(window)
    p = series(price, "price")
    if window is None and p.shape[0] < 2:
        raise ValueError("realized_variance needs at least 2 prices")
    return _rv(p, window)


@partial(jax.jit, static_argnames=("window",))
def _bv(price, window):
    r = jnp.abs(diff(jnp.log(price)))
    (s,), ok = _sums([r * lag(r, 1)], window, 2)
    return jnp.where(ok, 0.5 * math.pi * s, NAN)


def bipower_variation(price, window=None):
    """Bipower variation (Barndorff-Nielsen and Shephard 2004, J. Financial Econometrics 2(1)):

        BV = (pi / 2) sum_t |r_t| |r_{t-1}|

    It estimates the integrated variance without the jumps (a jump enters only one of two adjacent
    returns), so RV - BV measures the jump part. window=None: over the n - 2 pairs; int w: over the
    last w pairs, shape (n,), NaN for t < w + 1. Units: squared log return per window.
    """
    window = check_window(window)
    p = series(price, "price")
    if window is None and p.shape[0] < 3:
        raise ValueError("bipower_variation needs at least 3 prices")
    return _bv(p, window)


def _scale_returns(price, k):
    """(r1_t, rk_t): one-step and k-step log returns, NaN where undefined (t < 1, t < k)."""
    x = jnp.log(price)
    return diff(x), x - lag(x, k)


@partial(jax.jit, static_argnames=("window", "k"))
def _noise(price, window, k):
    r1, rk = _scale_returns(price, k)
    (s1, sk), ok = _sums([r1 * r1, rk * rk], window, k)
    m = (price.shape[0] - k) if window is None else window
    return jnp.where(ok, (s1 - sk / k) / (2.0 * m * (1.0 - 1.0 / k)), NAN)


def noise_variance(price, window=None, k=10):
    """Variance of i.i.d. microstructure noise in log prices from two sampling scales (Zhang, Mykland and
    Ait-Sahalia 2005, J. Am. Stat. Assoc. 100(472)).

    With observed log price y_t = x_t + u_t (x a martingale with variance s^2 per step, u i.i.d.
    noise of variance w^2), E[r1_t^2] = s^2 + 2 w^2 and E[rk_t^2] = k s^2 + 2 w^2 for the one-step
    and k-step returns. Over m positions,

        w^2_hat = (sum r1_t^2 - sum rk_t^2 / k) / (2 m (1 - 1/k))

    is unbiased for w^2 whatever s^2 (the plain RV / 2n of Bandi and Russell is biased up by s^2 / 2).
    It can be negative in a sample without noise; it is returned as is.

    price: (n,) prices (> 0). k: the slow scale (int >= 2). window=None: over positions t = k..n-1;
    int w: the last w positions, shape (n,), NaN for t < w + k - 1. Units: squared log price.
    """
    window = check_window(window)
    k = check_window(k, "k", minimum=2, allow_none=False)
    p = series(price, "price")
    if window is None and p.shape[0] < k + 2:
        raise ValueError(f"noise_variance with k={k} needs at least {k + 2} prices")
    return _noise(p, window, k)


@partial(jax.jit, static_argnames=("window", "q"))
def _vr(price, window, q):
    r1, rq = _scale_returns(price, q)
    (s1, sq), ok = _sums([r1 * r1, rq * rq], window, q)
    return jnp.where(ok & (s1 > 0), sq / (q * jnp.where(s1 > 0, s1, 1.0)), NAN)


def variance_ratio(price, window=None, q=10):
    """Variance ratio (Lo and MacKinlay 1988, Rev. Financ. Stud. 1(1)): VR(q) = sum r_q^2 / (q sum r_1^2),
    with r_q the overlapping q-step log returns over the same positions.

    1 for a random walk; below 1 when returns mean-revert (bid-ask bounce, noise), above 1 with
    momentum. window=None: over positions t = q..n-1; int w: the last w positions, shape (n,).
    NaN where the one-step returns are all 0. Dimensionless.
    """
    window = check_window(window)
    q = check_window(q, "q", minimum=2, allow_none=False)
    p = series(price, "price")
    if window is None and p.shape[0] < q + 2:
        raise ValueError(f"variance_ratio with q={q} needs at least {q + 2} prices")
    return _vr(p, window, q)
