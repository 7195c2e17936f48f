"""Hasbrouck's information share of two prices of one asset (Hasbrouck 1995, J. Finance 50(4)).

Two log prices a, b of the same asset (two venues, spot and perpetual, trade price and quote mid)
share one efficient price, so z = a - b is stationary. The vector error correction model

    da_t = c_a + alpha_a z_{t-1} + sum_{j=1..L} (g_aa,j da_{t-j} + g_ab,j db_{t-j}) + e_a,t
    db_t = c_b + alpha_b z_{t-1} + sum_{j=1..L} (g_ba,j da_{t-j} + g_bb,j db_{t-j}) + e_b,t

with Omega = cov(e) gives the common row of the long-run impact matrix, psi proportional to the
orthogonal complement of alpha: psi = (alpha_b, -alpha_a) (the scale cancels). The efficient price's
innovation variance is psi Omega psi'; with F the lower Cholesky factor of Omega (a first),

    IS_a = ((psi F)_a)^2 / (psi Omega psi')

An innovation correlated across the two prices is credited to whichever comes first in the Cholesky
order, so the share is an interval: the upper bound puts a first, the lower bound b first; `mid` is
their average (Baillie, Booth, Tse and Zabotina 2002). IS_b = 1 - IS_a for each ordering.

Estimation: equation-by-equation OLS (the same regressors in both, so this is the VECM's ML estimate
under Gaussian errors), the intercept taken out by centring the cross-products, the centred normal
equations solved by an unrolled Cholesky (see `_rolling.cholesky`).
"""
from __future__ import annotations

from functools import partial
from typing import NamedTuple

import numpy as np

from bot4jax.features.microstructure._rolling import (
    NAN, block_sums, check_window, chol_solve, cholesky, diff, lag, series,
)
from bot4jax.jaxcfg import jax, jnp


class InformationShare(NamedTuple):
    """Information share of the first price (IS of the second: 1 - upper .. 1 - lower)."""

    lower: object  # the second price first in the Cholesky order
    upper: object  # the first price first
    mid: object    # (lower + upper) / 2


def vecm_series(log_a, log_b, lags: int):
    """(regressors, responses): lists of (n,) arrays, NaN where undefined (t < lags + 1).

    regressors: z_{t-1}, da_{t-1..t-L}, db_{t-1..t-L}; responses: da_t, db_t (intercept apart).
    """
    da, db = diff(log_a), diff(log_b)
    x = [lag(log_a - log_b, 1)]
    x += [lag(da, j) for j in range(1, lags + 1)]
    x += [lag(db, j) for j in range(1, lags + 1)]
    return x, [da, db]


def product_terms(x, y):
    """Every product Z_i Z_j (i <= j) of Z = [1, x_1..x_k, y_a, y_b], shape (p, n) with p = (k+3)(k+4)/2,
    in `np.triu_indices` order: their sums are all the OLS and residual-covariance estimator needs.
    Built as one gathered product (XLA writes the (p, n) array in a single pass)."""
    z = jnp.stack([jnp.ones_like(y[0])] + list(x) + list(y))
    i, j = np.triu_indices(z.shape[0])
    return z[i] * z[j]


def is_from_sums(s, k: int) -> InformationShare:
    """Information share from the sums of `product_terms` (s: (p, ...) array; k regressors besides
    the intercept)."""
    pair = {ij: row for row, ij in enumerate(zip(*np.triu_indices(k + 3)))}

    def at(a, b):
        return s[pair[(min(a, b), max(a, b))]]

    m = at(0, 0)
    xs, ys = range(1, k + 1), (k + 1, k + 2)

    def centred(a, b):  # sum of (Z_a - mean)(Z_b - mean)
        return at(a, b) - at(0, a) * at(0, b) / m

    xx = [[centred(a, b) for b in xs] for a in xs]
    xy = [[centred(a, r) for a in xs] for r in ys]
    yy = [centred(ys[0], ys[0]), centred(ys[0], ys[1]), centred(ys[1], ys[1])]
    L = cholesky(xx)
    beta = [chol_solve(L, xy[r]) for r in range(2)]
    # residual cross-products: Y'Y - B'X'Y (centred), divisor m - k - 1 (the intercept too)
    fit = [sum(beta[r][i] * xy[c][i] for i in range(k)) for r, c in ((0, 0), (0, 1), (1, 1))]
    dof = m - k - 1.0
    oaa, oab, obb = ((yy[i] - fit[i]) / dof for i in range(3))
    alpha_a, alpha_b = beta[0][0], beta[1][0]
    p1, p2 = alpha_b, -alpha_a
    total = p1 * p1 * oaa + 2.0 * p1 * p2 * oab + p2 * p2 * obb
    # A singular Omega (one price a deterministic function of the other's past) or psi = 0 leaves the
    # share undefined: NaN rather than a ratio of rounding errors.
    det = oaa * obb - oab * oab
    ok = (oaa > 0) & (obb > 0) & (det > 1e-12 * oaa * obb) & (total > 1e-12 * (p1 * p1 * oaa + p2 * p2 * obb))
    oaa_s, obb_s, total_s = (jnp.where(ok, x, 1.0) for x in (oaa, obb, total))
    f11 = jnp.sqrt(oaa_s)
    first = (p1 * f11 + p2 * oab / f11) ** 2 / total_s
    second = p1 * p1 * (det / obb_s) / total_s
    lo = jnp.where(ok, jnp.clip(jnp.minimum(first, second), 0.0, 1.0), NAN)
    hi = jnp.where(ok, jnp.clip(jnp.maximum(first, second), 0.0, 1.0), NAN)
    return InformationShare(lo, hi, 0.5 * (lo + hi))


@partial(jax.jit, static_argnames=("window", "lags"))
def _is(price_a, price_b, window, lags):
    x, y = vecm_series(jnp.log(price_a), jnp.log(price_b), lags)
    k = len(x)
    if window is None:
        return is_from_sums(jnp.sum(product_terms(x, y)[:, lags + 1:], axis=1), k)
    # an observation with any NaN series is bad; zeroed first, so that every product is NaN-free
    bad = jnp.zeros(x[0].shape, bool)
    for v in x + y:
        bad = bad | jnp.isnan(v)
    x, y = ([jnp.where(bad, 0.0, v) for v in vs] for vs in (x, y))
    terms = product_terms(x, y)
    sums = block_sums(jnp.concatenate([terms, bad[None].astype(jnp.float64)]), window)
    ok = (jnp.arange(bad.shape[0]) >= window - 1) & (sums[-1] == 0.0)
    return InformationShare(*(jnp.where(ok, v, NAN) for v in is_from_sums(sums[:-1], k)))


def information_share(price_a, price_b, window=None, lags=1) -> InformationShare:
    """Hasbrouck's information share of `price_a` against `price_b` (see the module docstring).

    price_a, price_b: (n,) prices of one asset on a common clock (> 0; logs are taken here).
    window: None -> one estimate (0-d arrays); int w -> rolling over the last w observations, each
    field (n,), NaN for t < w + lags. lags: L >= 0 lagged price changes in the VECM.
    Returns InformationShare(lower, upper, mid) for price_a, each in [0, 1]; NaN where the VECM is
    degenerate (e.g. a constant price over the window).
    """
    lags = check_window(lags, "lags", minimum=0, allow_none=False)
    k = 1 + 2 * lags
    window = check_window(window, minimum=k + 3)
    a = series(price_a, "price_a")
    b = series(price_b, "price_b", a.shape[0])
    if window is None and a.shape[0] < lags + k + 4:
        raise ValueError(f"information_share with lags={lags} needs at least {lags + k + 4} prices")
    return _is(a, b, window, lags)
