"""Price impact and illiquidity: Kyle's lambda, Hasbrouck's lambda, Amihud's illiquidity ratio.

Inputs are vectors of shape (n,), NumPy or JAX. `window=None` gives one float64 value over the
whole sample (a 0-d JAX array; NaN if any input is NaN), `window=w` a rolling array of shape (n,)
whose value at t uses observations t-w+1..t (NaN until the window is full and where it holds a NaN).
"""
from __future__ import annotations

from functools import partial

from bot4jax.features.microstructure._rolling import (
    NAN, check_window, clean, diff, ols_slope, series, window_sums,
)
from bot4jax.jaxcfg import jax, jnp


@partial(jax.jit, static_argnames=("window",))
def _slope(y, x, window):
    if window is None:
        return ols_slope(float(y.shape[0]), jnp.sum(x), jnp.sum(y), jnp.sum(x * y), jnp.sum(x * x))
    yv, bad_y = clean(y)
    xv, bad_x = clean(x)
    (sx, sy, sxy, sxx), ok = window_sums([xv, yv, xv * yv, xv * xv], window, bad_x | bad_y)
    return jnp.where(ok, ols_slope(float(window), sx, sy, sxy, sxx), NAN)


def _regression(y, x, window, y_name, x_name):
    window = check_window(window, minimum=2)
    yv = series(y, y_name)
    xv = series(x, x_name, yv.shape[0])
    if window is None and yv.shape[0] < 2:
        raise ValueError(f"need at least 2 observations to fit a slope; got {yv.shape[0]}")
    return _slope(yv, xv, window)


def kyle_lambda(price_change, signed_volume, window=None):
    """Kyle's lambda: the OLS slope of price changes on signed order flow (Kyle 1985, Econometrica 53(6)).

        dp_t = c + lambda * x_t + e_t,    lambda = cov(dp, x) / var(x)

    In Kyle's model the market maker sets the price linearly in the net order flow, and lambda
    (the inverse of market depth) is the price move per unit of signed volume.

    price_change: (n,) price changes over each interval (p_t - p_{t-1}); signed_volume: (n,) net
    buyer-initiated volume of the same intervals (sum of side * amount). window: None -> scalar;
    int w >= 2 -> rolling, shape (n,). Units: price units per unit of base volume.
    """
    return _regression(price_change, signed_volume, window, "price_change", "signed_volume")


def hasbrouck_lambda(log_return, signed_root_volume, window=None):
    """Hasbrouck's lambda (Hasbrouck 2009, J. Finance 64(3); Goyenko, Holden and Trzcinka 2009): the OLS
    slope of log returns on the signed square root of dollar volume,

        r_t = c + lambda * S_t + e_t,     S_t = sum over the interval's trades of q_k sqrt(p_k v_k)

    The square root makes the impact concave in trade size, as measured in equity and crypto data.
    Build S_t with `signed_root_dollar_volume` per trade summed per interval.

    log_return: (n,) log price changes; signed_root_volume: (n,) S_t. window as `kyle_lambda`.
    Units: log return per sqrt(quote currency).
    """
    return _regression(log_return, signed_root_volume, window, "log_return", "signed_root_volume")


def signed_root_dollar_volume(price, amount, side):
    """q_k sqrt(p_k v_k) per trade, shape (n,) (sum it per interval for `hasbrouck_lambda`)."""
    p = series(price, "price")
    v = series(amount, "amount", p.shape[0])
    q = series(side, "side", p.shape[0])
    return q * jnp.sqrt(p * v)


def amihud_terms(price, volume):
    """(|r_t| / (p_t v_t), has-volume flag), shape (n,): the daily ratio of Amihud (2002) per bar.

    r_t = ln p_t - ln p_{t-1}; a bar without volume has no ratio (its term is 0 and flag False);
    t = 0 has no return and a NaN price or volume gives a NaN term.
    """
    r = diff(jnp.log(price))
    has = volume > 0
    ratio = jnp.abs(r) / jnp.where(has, price * volume, 1.0)
    term = jnp.where(has | jnp.isnan(r), ratio, 0.0)
    return jnp.where(jnp.isnan(volume), NAN, term), has


@partial(jax.jit, static_argnames=("window",))
def _amihud(price, volume, window):
    term, has = amihud_terms(price, volume)
    if window is None:
        term, has = term[1:], has[1:]
        count = jnp.sum(has)
        return jnp.where(count > 0, jnp.sum(term) / jnp.maximum(count, 1), NAN)
    tv, bad = clean(term)
    (s, c), ok = window_sums([tv, has.astype(jnp.float64)], window, bad)
    return jnp.where(ok & (c > 0), s / jnp.maximum(c, 1.0), NAN)


def amihud_illiquidity(price, volume, window=None):
    """Amihud's illiquidity ratio (Amihud 2002, J. Financial Markets 5(1)): the mean of

        |r_t| / (p_t v_t)        (absolute log return per unit of quote-currency volume)

    over the bars with volume (bars without volume have no ratio and are left out of the mean).
    price: (n,) closes; volume: (n,) base-currency volume per bar. window: None -> scalar over bars
    1..n-1; int w -> rolling over the last w bars (NaN for t < w, or if none of them traded).
    Units: 1 / quote currency (1e-6 = a 1 % move per 10,000 quote units).
    """
    window = check_window(window)
    p = series(price, "price")
    v = series(volume, "volume", p.shape[0])
    if window is None and p.shape[0] < 2:
        raise ValueError("amihud_illiquidity needs at least 2 prices")
    return _amihud(p, v, window)
