"""Order flow and book state: order flow imbalance, trade flow imbalance, depth imbalance, microprice,
trade intensity.

Book columns are (n,) (best level) or (n, levels) with the best level first, as in
`bot4jax.data.types.Book` (an absent level has price NaN and size 0). Flow measures over a window
are NaN until the window is full and where it holds a NaN input; book-state measures with
window=None give one value per snapshot.
"""
from __future__ import annotations

from functools import partial

from bot4jax.features.microstructure._rolling import (
    NAN, book_levels, check_window, clean, lag, series, top_level, window_sums,
)
from bot4jax.jaxcfg import jax, jnp


def ofi_events(bid_px, bid_sz, ask_px, ask_sz):
    """Per-update order flow e_n of Cont, Kukanov and Stoikov (2014), shape (n,), NaN at n = 0.

        e_n = 1{Pb_n >= Pb_{n-1}} qb_n - 1{Pb_n <= Pb_{n-1}} qb_{n-1}
            - 1{Pa_n <= Pa_{n-1}} qa_n + 1{Pa_n >= Pa_{n-1}} qa_{n-1}

    (best bid/ask prices P and sizes q): bid size added at or above the old best bid is buying
    pressure, ask size added at or below the old best ask selling pressure. NaN where a best price
    of update n or n-1 is NaN (an empty side).
    """
    pb0, qb0, pa0, qa0 = (lag(x, 1) for x in (bid_px, bid_sz, ask_px, ask_sz))
    e = (jnp.where(bid_px >= pb0, bid_sz, 0.0) - jnp.where(bid_px <= pb0, qb0, 0.0)
         - jnp.where(ask_px <= pa0, ask_sz, 0.0) + jnp.where(ask_px >= pa0, qa0, 0.0))
    missing = jnp.isnan(bid_px) | jnp.isnan(pb0) | jnp.isnan(ask_px) | jnp.isnan(pa0)
    return jnp.where(missing, NAN, e)


def _rolling_sum_or_events(e, window):
    if window is None:
        return e
    v, bad = clean(e)
    (s,), ok = window_sums([v], window, bad)
    return jnp.where(ok, s, NAN)


@partial(jax.jit, static_argnames=("window",))
def _ofi(bid_px, bid_sz, ask_px, ask_sz, window):
    return _rolling_sum_or_events(ofi_events(bid_px, bid_sz, ask_px, ask_sz), window)


def order_flow_imbalance(bid_px, bid_sz, ask_px, ask_sz, window=None):
    """Order flow imbalance (Cont, Kukanov and Stoikov 2014, J. Financial Econometrics 12(1)).

    Over an interval, OFI = sum of the per-update flows e_n (see `ofi_events`); CKS find that mid
    price changes are close to linear in OFI divided by the average depth at the touch.

    Inputs: consecutive book states, (n,) or (n, levels) (level 0 used). window=None: the per-update
    e_n, shape (n,), NaN at 0; int w: the sum of the last w updates, shape (n,), NaN for t < w.
    Units: base currency (positive = net buying pressure). The streaming twin is
    `bot4jax.kernels.microstructure_nb.ofi_update_nb`.
    """
    window = check_window(window)
    pb = top_level(bid_px, "bid_px")
    n = pb.shape[0]
    return _ofi(pb, top_level(bid_sz, "bid_sz", n), top_level(ask_px, "ask_px", n),
                top_level(ask_sz, "ask_sz", n), window)


def _rolling_mean_or_values(x, window):
    if window is None:
        return x
    v, bad = clean(x)
    (s,), ok = window_sums([v], window, bad)
    return jnp.where(ok, s / window, NAN)


def depth_imbalance_values(bid_sz, ask_sz):
    """(B - A) / (B + A) per snapshot from (n, levels) sizes summed over the levels; NaN when B + A = 0."""
    b = jnp.sum(bid_sz, axis=1)
    a = jnp.sum(ask_sz, axis=1)
    tot = b + a
    return jnp.where(tot > 0, (b - a) / jnp.where(tot > 0, tot, 1.0), NAN)


@partial(jax.jit, static_argnames=("levels", "window"))
def _depth(bid_sz, ask_sz, levels, window):
    return _rolling_mean_or_values(depth_imbalance_values(bid_sz[:, :levels], ask_sz[:, :levels]), window)


def depth_imbalance(bid_sz, ask_sz, levels=None, window=None):
    """Depth imbalance of the top `levels` levels (e.g. Cao, Hansch and Wang 2009, J. Futures Markets 29(1)):

        D = (sum_k bid_sz_k - sum_k ask_sz_k) / (sum_k bid_sz_k + sum_k ask_sz_k),  in [-1, 1]

    bid_sz, ask_sz: (n,) or (n, levels). levels: how many levels from the best (None: all given).
    window=None: one value per snapshot, shape (n,); int w: the rolling mean over the last w
    snapshots. NaN where the book is empty or a size is NaN. Dimensionless, positive = more bids.
    The streaming twin is `bot4jax.kernels.microstructure_nb.depth_imbalance_update_nb`.
    """
    window = check_window(window)
    b = book_levels(bid_sz, "bid_sz")
    a = book_levels(ask_sz, "ask_sz", b.shape[0])
    if a.shape != b.shape:
        raise ValueError(f"bid_sz and ask_sz must have the same shape; got {b.shape} and {a.shape}")
    if levels is None:
        levels = b.shape[1]
    levels = check_window(levels, "levels", allow_none=False)
    if levels > b.shape[1]:
        raise ValueError(f"levels={levels} but the book has {b.shape[1]} levels")
    return _depth(b, a, levels, window)


@jax.jit
def _micro(bid_px, bid_sz, ask_px, ask_sz):
    tot = bid_sz + ask_sz
    w = jnp.where(tot > 0, bid_sz / jnp.where(tot > 0, tot, 1.0), 0.5)
    return ask_px * w + bid_px * (1.0 - w)


def microprice(bid_px, bid_sz, ask_px, ask_sz):
    """Size-weighted mid, the first-order micro-price (Gatheral and Oomen 2010; Stoikov 2018, Quant. Fin. 18(12)):

        P_micro = (P_ask * Q_bid + P_bid * Q_ask) / (Q_bid + Q_ask)

    It leans towards the side with less size (the side more likely to be taken next). Inputs (n,) or
    (n, levels) (level 0 used); returns (n,) in price units (the mid where both sizes are 0).
    """
    pb = top_level(bid_px, "bid_px")
    n = pb.shape[0]
    return _micro(pb, top_level(bid_sz, "bid_sz", n), top_level(ask_px, "ask_px", n),
                  top_level(ask_sz, "ask_sz", n))


@partial(jax.jit, static_argnames=("window",))
def _tfi(signed, volume, window):
    if window is None:
        s, v = jnp.sum(signed), jnp.sum(volume)
        return jnp.where(v > 0, s / jnp.where(v > 0, v, 1.0), NAN)
    sv, bad_s = clean(signed)
    vv, bad_v = clean(volume)
    (s, v), ok = window_sums([sv, vv], window, bad_s | bad_v)
    return jnp.where(ok & (v > 0), s / jnp.where(v > 0, v, 1.0), NAN)


def trade_flow_imbalance(signed_volume, volume, window=None):
    """Trade (order) imbalance, sum of signed volume over total volume (Chordia, Roll and Subrahmanyam 2002,
    J. Financial Economics 65(1)): in [-1, 1], positive = buyer-initiated volume dominates.

    signed_volume: (n,) sum of side * amount per interval; volume: (n,) sum of amount. window=None:
    scalar; int w: over the last w intervals, shape (n,). NaN where the volume is 0.
    """
    window = check_window(window)
    s = series(signed_volume, "signed_volume")
    return _tfi(s, series(volume, "volume", s.shape[0]), window)


@partial(jax.jit, static_argnames=("window",))
def _intensity(count, window, seconds):
    if window is None:
        return jnp.sum(count) / (count.shape[0] * seconds)
    cv, bad = clean(count)
    (s,), ok = window_sums([cv], window, bad)
    return jnp.where(ok, s / (window * seconds), NAN)


def trade_intensity(trade_count, window=None, seconds_per_interval=1.0):
    """Trade arrival rate, trades per second (Engle and Russell 1998; Dufour and Engle 2000, J. Finance 55(6):
    trades cluster and faster trading carries more information per trade).

    trade_count: (n,) number of trades per interval of `seconds_per_interval` seconds. window=None:
    the mean rate over the sample; int w: over the last w intervals, shape (n,).
    """
    window = check_window(window)
    if not seconds_per_interval > 0:
        raise ValueError(f"seconds_per_interval must be > 0; got {seconds_per_interval!r}")
    return _intensity(series(trade_count, "trade_count"), window, float(seconds_per_interval))
