"""The 21 microstructure features on one bar grid: the registry `FEATURES` and `all_features`.

`all_features(bars, trades, book, ...)` returns {column: float64 NumPy array (n_bars,)}; every value
at bar t uses data up to the end of bar t only (causal), so the columns can feed forecasts of bar
t + 1 on. Trades are assigned to the bar that contains their timestamp, and the book is read as of
each bar's end (its last snapshot before the next bar opens). Rolling features use the last `window`
bars; NaN marks a value that is not defined yet (warm-up, nothing traded in the window, an estimator
outside its domain). The bars must lie on a regular time grid (fill gaps first). A few jitted
programs compute them (shapes are padded to limit recompiles: every feature is causal, so padding
at the end changes nothing before it).

Features that need trades or a book are left out when `trades` or `book` is None.
"""
from __future__ import annotations

import math
from functools import partial
from typing import NamedTuple

import numpy as np

from bot4jax.data.timeframes import infer_timeframe, timeframe_ms
from bot4jax.features.microstructure._rolling import NAN, check_window, diff, pad_end, padded_length, window_sums
from bot4jax.features.microstructure.decomposition import hs_from_sums, hs_terms
from bot4jax.features.microstructure.flow import (
    _intensity, _micro, _tfi, depth_imbalance_values, ofi_events,
)
from bot4jax.features.microstructure.impact import _amihud, _slope
from bot4jax.features.microstructure.information_share import _is
from bot4jax.features.microstructure.spreads import _ar, _cs, _roll
from bot4jax.features.microstructure.variance import _bv, _noise, _rv, _vr
from bot4jax.features.microstructure.vpin import DEFAULT_SIGMA_WINDOW, bucket_arrays, bucket_bound
from bot4jax.jaxcfg import jax, jnp


class Feature(NamedTuple):
    """One entry of the registry: what it measures, from what, in which units, after which paper."""

    name: str
    columns: tuple[str, ...]   # the columns `all_features` returns for it
    needs: tuple[str, ...]     # "bars", "trades", "book"
    formula: str
    paper: str
    units: str


FEATURES: dict[str, Feature] = {f.name: f for f in (
    Feature("kyle_lambda", ("kyle_lambda",), ("bars", "trades"),
            "OLS slope of dp_t on signed volume sum(q v) per bar", "Kyle 1985", "price per base unit"),
    Feature("amihud_illiquidity", ("amihud_illiquidity",), ("bars",),
            "mean |r_t| / (p_t v_t) over bars with volume", "Amihud 2002", "1 / quote currency"),
    Feature("roll_spread", ("roll_spread",), ("bars",),
            "2 sqrt(-cov(dr_t, dr_{t-1})) of log closes, NaN if cov >= 0", "Roll 1984", "fraction of price"),
    Feature("vpin", ("vpin",), ("bars",),
            "mean |2 B_k - V| / V over the last vpin_window (50) volume buckets, bulk volume classification",
            "Easley, Lopez de Prado and O'Hara 2012", "[0, 1]"),
    Feature("order_flow_imbalance", ("order_flow_imbalance",), ("book",),
            "sum of CKS e_n over the window / mean touch depth", "Cont, Kukanov and Stoikov 2014",
            "dimensionless (touch depths)"),
    Feature("hasbrouck_lambda", ("hasbrouck_lambda",), ("bars", "trades"),
            "OLS slope of r_t on sum(q sqrt(p v)) per bar", "Hasbrouck 2009", "log return per sqrt(quote)"),
    Feature("spread_decomposition", ("spread_adverse_selection", "spread_inventory", "spread_order_processing"),
            ("trades",), "Huang-Stoll shares alpha, beta, 1 - alpha - beta (sum 1)", "Huang and Stoll 1997",
            "shares"),
    Feature("information_share", ("information_share",), ("bars", "book"),
            "Hasbrouck IS (midpoint of bounds) of the trade price against the quote mid (or `other_price`)",
            "Hasbrouck 1995", "[0, 1]"),
    Feature("noise_variance", ("noise_variance",), ("bars",),
            "(sum r1^2 - sum rk^2 / k) / (2 m (1 - 1/k)), log closes", "Zhang, Mykland and Ait-Sahalia 2005",
            "squared log price"),
    Feature("corwin_schultz_spread", ("corwin_schultz_spread",), ("bars",),
            "two-bar high-low estimator, mean over the window", "Corwin and Schultz 2012", "fraction of price"),
    Feature("abdi_ranaldo_spread", ("abdi_ranaldo_spread",), ("bars",),
            "sqrt(max(0, 4 E[(c_{t-1} - eta_{t-1})(c_{t-1} - eta_t)]))", "Abdi and Ranaldo 2017",
            "fraction of price"),
    Feature("effective_spread", ("effective_spread",), ("trades", "book"),
            "volume-weighted mean of 2 q (p - m) / m, m the mid before the trade", "Huang and Stoll 1996",
            "fraction of mid"),
    Feature("realized_spread", ("realized_spread",), ("trades", "book"),
            "volume-weighted mean of 2 q (p - m_{+h}) / m, counted at the bar where m_{+h} is known",
            "Bessembinder and Kaufman 1997", "fraction of mid"),
    Feature("depth_imbalance", ("depth_imbalance",), ("book",),
            "(sum bid_sz - sum ask_sz) / (sum bid_sz + sum ask_sz), top `levels` levels",
            "Cao, Hansch and Wang 2009", "[-1, 1]"),
    Feature("microprice", ("microprice",), ("book",),
            "(P_micro - mid) / mid, P_micro = (P_a Q_b + P_b Q_a) / (Q_a + Q_b)", "Stoikov 2018",
            "fraction of mid"),
    Feature("quoted_spread", ("quoted_spread",), ("book",),
            "(ask - bid) / mid at the bar's end", "Amihud and Mendelson 1986", "fraction of mid"),
    Feature("realized_variance", ("realized_variance",), ("bars",),
            "sum r_t^2 over the window", "Andersen and Bollerslev 1998", "squared log return"),
    Feature("bipower_variation", ("bipower_variation",), ("bars",),
            "(pi/2) sum |r_t| |r_{t-1}| over the window", "Barndorff-Nielsen and Shephard 2004",
            "squared log return"),
    Feature("trade_intensity", ("trade_intensity",), ("trades",),
            "trades per second over the window", "Dufour and Engle 2000", "1 / s"),
    Feature("trade_flow_imbalance", ("trade_flow_imbalance",), ("trades",),
            "sum q v / sum v over the window", "Chordia, Roll and Subrahmanyam 2002", "[-1, 1]"),
    Feature("variance_ratio", ("variance_ratio",), ("bars",),
            "sum r_q^2 / (q sum r_1^2) over the window", "Lo and MacKinlay 1988", "dimensionless"),
)}

N_FEATURES = len(FEATURES)
COLUMNS = tuple(c for f in FEATURES.values() for c in f.columns)


def _rolling_ratio(num, den, window):
    (sn, sd), ok = window_sums([num, den], window)
    return jnp.where(ok & (sd > 0), sn / jnp.where(sd > 0, sd, 1.0), NAN)


# The features are computed by a few jitted programs rather than one: XLA's compile time grows
# faster than the program, and the groups compile in a fraction of the time of the whole (the run
# time is the same: each feature is a few passes over memory either way).

def _per_bar(x, bar_index, n_bars):
    """(m, C) per-trade quantities summed per bar -> (n_bars, C); bar index n_bars (padding) dropped."""
    return jax.ops.segment_sum(x, bar_index, num_segments=n_bars + 1)[:-1]


@partial(jax.jit, static_argnames=("window", "noise_k", "vr_q"))
def _bar_features(close, high, low, volume, *, window, noise_k, vr_q):
    w = window
    return {"amihud_illiquidity": _amihud(close, volume, w), "roll_spread": _roll(jnp.log(close), w),
            "noise_variance": _noise(close, w, noise_k), "corwin_schultz_spread": _cs(high, low, w),
            "abdi_ranaldo_spread": _ar(high, low, close, w), "realized_variance": _rv(close, w),
            "bipower_variation": _bv(close, w), "variance_ratio": _vr(close, w, vr_q)}


@partial(jax.jit, static_argnames=("vpin_window", "sigma_window", "max_buckets"))
def _vpin_per_bar(close, volume, bucket_volume, *, vpin_window, sigma_window, max_buckets):
    vp, _, end_idx, _ = bucket_arrays(close, volume, bucket_volume, vpin_window, sigma_window, None, max_buckets)
    done = jnp.searchsorted(end_idx, jnp.arange(close.shape[0]), side="right")  # buckets completed by t
    return jnp.where(done > 0, vp[jnp.maximum(done - 1, 0)], NAN)


@partial(jax.jit, static_argnames=("window", "seconds"))
def _trade_features(close, trade, *, window, seconds):
    w = window
    q, amt, px = trade["side"], trade["amount"], trade["price"]
    first2 = jnp.arange(px.shape[0]) < 2
    hs = [jnp.where(first2, 0.0, t) for t in hs_terms(jnp.log(px), q)]
    # every per-trade quantity summed per bar in one scatter
    cols = [q * amt, amt, q * jnp.sqrt(px * amt), jnp.ones_like(amt)] + hs
    per_bar = _per_bar(jnp.stack(cols, axis=1), trade["bar"], close.shape[0])
    signed, tvol, root, count = (per_bar[:, i] for i in range(4))
    out = {"kyle_lambda": _slope(diff(close), signed, w),
           "hasbrouck_lambda": _slope(diff(jnp.log(close)), root, w),
           "trade_intensity": _intensity(count, w, seconds), "trade_flow_imbalance": _tfi(signed, tvol, w)}
    # Huang-Stoll: per-trade products summed per bar, then over the window
    sums, ok = window_sums([per_bar[:, 4 + i] for i in range(len(hs))], w)
    dec = hs_from_sums(sums)
    enough = ok & (sums[2] >= 10.0)  # at least 10 trades in the window
    out["spread_adverse_selection"] = jnp.where(enough, dec.adverse_selection, NAN)
    out["spread_inventory"] = jnp.where(enough, dec.inventory, NAN)
    out["spread_order_processing"] = jnp.where(enough, dec.order_processing, NAN)
    return out


@partial(jax.jit, static_argnames=("window", "levels", "is_lags"))
def _book_features(close, other, book, *, window, levels, is_lags):
    w = window
    bpx, bsz, apx, asz = book["bid_px"], book["bid_sz"], book["ask_px"], book["ask_sz"]
    mid = 0.5 * (bpx[:, 0] + apx[:, 0])
    e = ofi_events(bpx[:, 0], bsz[:, 0], apx[:, 0], asz[:, 0])
    bad = jnp.isnan(e)
    depth = 0.5 * (bsz[:, 0] + asz[:, 0])
    (s_e, s_d), ok = window_sums([jnp.where(bad, 0.0, e), jnp.where(bad, 0.0, depth)], w, bad)
    ref = jnp.where(jnp.isnan(other), mid, other)
    return {"order_flow_imbalance": jnp.where(ok & (s_d > 0), s_e / jnp.where(s_d > 0, s_d, 1.0) * w, NAN),
            "depth_imbalance": depth_imbalance_values(bsz[:, :levels], asz[:, :levels]),
            "microprice": _micro(bpx[:, 0], bsz[:, 0], apx[:, 0], asz[:, 0]) / mid - 1.0,
            "quoted_spread": (apx[:, 0] - bpx[:, 0]) / mid,
            "information_share": _is(close, ref, w, is_lags).mid}


@partial(jax.jit, static_argnames=("window",))
def _spread_features(trade, n_bars, *, window):
    """Effective and realized spreads per bar; n_bars: a (n_bars,) array giving the bar count."""
    w = window
    q, amt, px = trade["side"], trade["amount"], trade["price"]
    m0, m1 = trade["mid_before"], trade["mid_later"]
    ok_e = ~jnp.isnan(m0)
    ok_r = ok_e & ~jnp.isnan(m1)
    m0s = jnp.where(ok_e, m0, 1.0)
    wt = jnp.where(ok_e, amt, 0.0)
    wr = jnp.where(ok_r, amt, 0.0)
    es = jnp.where(ok_e, 2.0 * q * (px - m0) / m0s, 0.0)
    rs = jnp.where(ok_r, 2.0 * q * (px - m1) / m0s, 0.0)
    n = n_bars.shape[0]
    eff = _per_bar(jnp.stack([es * wt, wt], axis=1), trade["bar"], n)
    real = _per_bar(jnp.stack([rs * wr, wr], axis=1), trade["realized_bar"], n)
    return {"effective_spread": _rolling_ratio(eff[:, 0], eff[:, 1], w),
            "realized_spread": _rolling_ratio(real[:, 0], real[:, 1], w)}


def all_features(bars, trades=None, book=None, *, window: int = 300, bucket_volume: float | None = None,
                 vpin_window: int = 50, sigma_window: int = DEFAULT_SIGMA_WINDOW, levels: int = 5,
                 noise_k: int = 10, vr_q: int = 10, is_lags: int = 1, realized_horizon_ms: int | None = None,
                 other_price=None) -> dict[str, np.ndarray]:
    """All microstructure features on the bar grid of `bars`: {column: (n_bars,) float64}.

    bars: `Bars` (validated, time ascending); trades: `Trades` or None; book: `Book` or None.
    window: bars in every rolling window (default 300: five minutes of one-second bars).
    bucket_volume: VPIN bucket size V; None takes the bars' mean daily volume / 50 (which looks at
    the whole sample: pass a fixed value, e.g. yesterday's, for a strictly causal column).
    vpin_window: buckets averaged; sigma_window: price changes in the BVC standardisation.
    levels: book levels in the depth imbalance. noise_k: slow scale of the noise variance.
    vr_q: horizon of the variance ratio. is_lags: VECM lags of the information share.
    realized_horizon_ms: horizon of the realized spread (default 10 bars).
    other_price: (n_bars,) a second price of the asset (e.g. the perpetual's) for the information
    share; None uses the book's mid.
    See `FEATURES` for each feature's formula, paper and units.
    """
    window = check_window(window, minimum=3, allow_none=False)
    vpin_window = check_window(vpin_window, "vpin_window", allow_none=False)
    sigma_window = check_window(sigma_window, "sigma_window", allow_none=False)
    levels = check_window(levels, "levels", allow_none=False)
    n = len(bars)
    if n < 2:
        raise ValueError(f"all_features needs at least 2 bars; got {n}")
    dt = timeframe_ms(infer_timeframe(bars.ts))
    ts = bars.ts
    gaps = np.flatnonzero(np.diff(ts) != dt)
    if gaps.size:
        i = int(gaps[0]) + 1
        raise ValueError(f"all_features needs bars on a regular {dt} ms grid: bar {i} opens at {ts[i]}, "
                         f"{ts[i] - ts[i - 1]} ms after the previous one ({gaps.size} such gaps); fill them first")
    n_pad = padded_length(n)
    bar = {name: pad_end(getattr(bars, name), n_pad, "edge") for name in ("close", "high", "low")}
    bar["volume"] = pad_end(bars.volume, n_pad, "zeros")
    if other_price is None:
        bar["other"] = np.full(n_pad, np.nan)
    else:
        other = np.asarray(other_price, np.float64)
        if other.shape != (n,):
            raise ValueError(f"other_price must have shape ({n},) like the bars; got {other.shape}")
        bar["other"] = pad_end(other, n_pad, "edge")
    if bucket_volume is None:
        days = n * dt / 86_400_000
        bucket_volume = float(bars.volume.sum()) / days / 50.0
    if not (math.isfinite(bucket_volume) and bucket_volume > 0):
        raise ValueError(f"bucket_volume must be a finite number > 0 (the bars have no volume?); got {bucket_volume!r}")
    max_buckets = bucket_bound(float(bars.volume.sum()), bucket_volume)

    book_in = {}
    if book is not None:
        if book.levels < levels:
            raise ValueError(f"levels={levels} but the book has {book.levels} levels")
        rows = np.searchsorted(book.ts, ts + dt, side="left") - 1   # last snapshot before the next bar
        # only the columns the features read go to the device: best prices, the top `levels` sizes
        cols = {"bid_px": book.bid_px[:, :1], "ask_px": book.ask_px[:, :1],
                "bid_sz": book.bid_sz[:, :levels], "ask_sz": book.ask_sz[:, :levels]}
        aligned = len(book) == n and rows[0] == 0 and rows[-1] == n - 1 and np.all(np.diff(rows) == 1)
        for name, a in cols.items():
            if not aligned:  # as of each bar's end; NaN before the first snapshot
                a = np.where((rows >= 0)[:, None], a[np.maximum(rows, 0)], np.nan)
            book_in[name] = pad_end(np.ascontiguousarray(a), n_pad, "edge")

    trade_in = {}
    if trades is not None:  # per trade: its bar; with a book, the mid before it and `horizon` after it
        bi = np.searchsorted(ts, trades.ts, side="right") - 1
        keep = (bi >= 0) & (trades.ts < ts[-1] + dt)
        m = int(keep.sum())
        m_pad = 1 << (max(m, 1) - 1).bit_length()  # trades are cheap next to bars: a power of two
        trade_in["bar"] = np.concatenate([bi[keep], np.full(m_pad - m, n_pad)]).astype(np.int32)
        for name in ("price", "amount"):
            trade_in[name] = pad_end(getattr(trades, name)[keep], m_pad, "edge")
        trade_in["amount"][m:] = 0.0
        trade_in["side"] = pad_end(trades.side[keep].astype(np.float64), m_pad, "zeros")
        if book is not None:
            tts = trades.ts[keep]
            mid = 0.5 * (book.bid_px[:, 0] + book.ask_px[:, 0])
            horizon = 10 * dt if realized_horizon_ms is None else int(realized_horizon_ms)
            before = np.searchsorted(book.ts, tts, side="left") - 1
            later = np.searchsorted(book.ts, tts + horizon, side="right") - 1
            trade_in["mid_before"] = pad_end(np.where(before >= 0, mid[np.maximum(before, 0)], np.nan), m_pad, "zeros")
            trade_in["mid_later"] = pad_end(np.where(later >= 0, mid[np.maximum(later, 0)], np.nan), m_pad, "zeros")
            rb = np.searchsorted(ts, tts + horizon, side="right") - 1
            rb = np.where(tts + horizon < ts[-1] + dt, rb, n_pad)   # known only after the last bar
            trade_in["realized_bar"] = np.concatenate([rb, np.full(m_pad - m, n_pad)]).astype(np.int32)

    out = _bar_features(bar["close"], bar["high"], bar["low"], bar["volume"], window=window, noise_k=noise_k,
                        vr_q=vr_q)
    out["vpin"] = _vpin_per_bar(bar["close"], bar["volume"], float(bucket_volume), vpin_window=vpin_window,
                                sigma_window=sigma_window, max_buckets=max_buckets)
    if trades is not None:
        out.update(_trade_features(bar["close"], trade_in, window=window, seconds=dt / 1000.0))
    if book is not None:
        out.update(_book_features(bar["close"], bar["other"], book_in, window=window, levels=levels,
                                  is_lags=is_lags))
        if trades is not None:
            out.update(_spread_features(trade_in, bar["close"], window=window))
    return {c: np.asarray(out[c])[:n] for c in COLUMNS if c in out}
