"""Microstructure layer of the simulator: the trade tape, the bars aggregated from it, L2 book snapshots.

The latent per-bar paths (mid, volatility, informed signal, intensity) come from `simulator.py`, whose
docstring states the whole model; this module turns them into market data:

- `trade_tape`: Poisson market orders at sorted uniform times in each bar (drawn as normalised
  exponential spacings, so no sort), the mid at each order on a Brownian bridge between the bar's
  end points (plus the jump after its time), the aggressor side tilted by the informed signal, the
  price at the ask for a buy and at the bid for a sell, 1 + Poisson(e) fills per order in one
  millisecond, Pareto amounts.
- `bars_from_trades`: OHLCV of the trades in each bar, exactly; an empty bar is flat at the previous close.
- `book_snapshots`: one L2 snapshot per bar close on the tick grid.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from bot4jax.data.types import Bars, Book, Trades

if TYPE_CHECKING:
    from bot4jax.data.simulator import SimulatorParams


def _segment_cumsum(a: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Cumulative sum of `a` restarting at each segment start (segments tile `a` in order)."""
    c = np.cumsum(a)
    return c - np.repeat(c[starts] - a[starts], lengths)


def _quotes(mid: np.ndarray, half_spread: np.ndarray, tick: float) -> tuple[np.ndarray, np.ndarray]:
    """(bid, ask) in whole ticks: the mid ∓ the half spread, rounded outwards, at least one tick apart."""
    bid = np.maximum(np.floor(mid * (1.0 - half_spread) / tick), 1.0)
    ask = np.maximum(np.ceil(mid * (1.0 + half_spread) / tick), bid + 1.0)
    return bid, ask


def trade_tape(rng: np.random.Generator, p: SimulatorParams, *, bar_open: np.ndarray, dt_ms: int,
               log_mid: np.ndarray, diffusive: np.ndarray, jump: np.ndarray, jump_frac: np.ndarray,
               sigma: np.ndarray, intensity: np.ndarray, half_spread: np.ndarray,
               signal: np.ndarray) -> Trades:
    """The trades of every bar. All inputs are per bar, shape (n,); `log_mid` is L_t at the bar's close,
    `diffusive` = L_t - L_{t-1} - J_t, `jump_frac` the jump's time as a fraction of the bar."""
    n = len(bar_open)
    e = p.fills_extra
    orders = rng.poisson(intensity / (1.0 + e))
    # Each bar gets orders + 1 exponential spacings; their normalised partial sums are the sorted
    # uniform order times and the last one closes the bar at u = 1 (where the bridge is pinned).
    seg = orders + 1
    seg_bar = np.repeat(np.arange(n), seg)
    starts = np.cumsum(seg) - seg
    spacing = rng.standard_exponential(seg_bar.size)
    spacing /= np.bincount(seg_bar, spacing, minlength=n)[seg_bar]
    u_all = _segment_cumsum(spacing, starts, seg)
    w_all = _segment_cumsum(rng.standard_normal(seg_bar.size) * np.sqrt(spacing), starts, seg)
    is_end = np.zeros(seg_bar.size, bool)
    is_end[starts + seg - 1] = True
    ob = seg_bar[~is_end]  # bar of each order
    u = np.clip(u_all[~is_end], 0.0, np.nextafter(1.0, 0.0))
    bridge = w_all[~is_end] - u * w_all[is_end][ob]  # W(u) - u W(1): zero at both ends of the bar

    prev = log_mid - diffusive - jump  # L_{t-1}
    log_m = prev[ob] + u * diffusive[ob] + sigma[ob] * bridge + np.where(u >= jump_frac[ob], jump[ob], 0.0)
    bid, ask = _quotes(np.exp(log_m), half_spread[ob], p.tick_size)
    buy = rng.random(ob.size) < 0.5 * (1.0 + np.tanh(p.signal_flow * signal[ob]))
    ticks = np.where(buy, ask, bid)
    ts = bar_open[ob] + np.floor(u * dt_ms).astype(np.int64)

    fills = 1 + rng.poisson(e, ob.size)
    k = np.repeat(np.arange(ob.size), fills)
    amount = p.size_scale * (1.0 + rng.pareto(p.size_tail, k.size))
    amount = np.maximum(np.round(amount / p.lot_size), 1.0) * p.lot_size
    return Trades(ts=ts[k], price=ticks[k] * p.tick_size, amount=amount,
                  side=np.where(buy[k], 1, -1).astype(np.int8), id=np.arange(1, k.size + 1, dtype=np.int64))


def bars_from_trades(trades: Trades, start_ms: int, dt_ms: int, n_bars: int,
                     first_open: float) -> tuple[Bars, np.ndarray]:
    """OHLCV bars (n_bars,) of time-sorted trades, bar i = [start_ms + i dt_ms, start_ms + (i+1) dt_ms),
    and each bar's order-flow imbalance Σ side·amount / Σ amount (0 for a bar without trades).

    A bar with no trade is flat at the previous close (`first_open` before the first trade), volume 0.
    """
    bi = (trades.ts - start_ms) // dt_ms
    if bi.size and (bi[0] < 0 or bi[-1] >= n_bars):
        raise ValueError(f"trades fall outside the {n_bars} bars starting at {start_ms}")
    counts = np.bincount(bi, minlength=n_bars)
    volume = np.bincount(bi, trades.amount, minlength=n_bars)
    signed = np.bincount(bi, trades.side * trades.amount, minlength=n_bars)
    imbalance = np.where(volume > 0, signed / np.where(volume > 0, volume, 1.0), 0.0)

    full = counts > 0
    first = (np.cumsum(counts) - counts)[full]
    last = first + counts[full] - 1
    # The last bar with trades at or before each bar, to carry its close into empty bars.
    src = np.maximum.accumulate(np.where(full, np.arange(n_bars), -1))
    close_full = np.full(n_bars, np.nan)
    close_full[full] = trades.price[last]
    carried = np.where(src >= 0, close_full[np.maximum(src, 0)], first_open)
    o, h, lo, c = carried.copy(), carried.copy(), carried.copy(), carried
    if first.size:
        o[full] = trades.price[first]
        h[full] = np.maximum.reduceat(trades.price, first)
        lo[full] = np.minimum.reduceat(trades.price, first)
    ts = start_ms + dt_ms * np.arange(n_bars, dtype=np.int64)
    return Bars(ts=ts, open=o, high=h, low=lo, close=c, volume=volume), imbalance


def book_snapshots(rng: np.random.Generator, p: SimulatorParams, *, ts: np.ndarray, mid: np.ndarray,
                   half_spread: np.ndarray, signal: np.ndarray, vol_ratio: np.ndarray) -> Book:
    """L2 books (n, levels), best level first. Inputs per snapshot, shape (n,): `mid` price, `half_spread`
    fraction, informed `signal` x_t and `vol_ratio` σ_t / σ̄.

    Level k (0 = touch) lies a geometric number of ticks (mean level_gap_ticks) beyond level k-1; its
    size is depth_size (1 + depth_growth k) vol_ratio^-ε · exp(±θ x_t) · lognormal(0, depth_noise),
    on the lot grid. A level that would fall at or below zero is absent (px NaN, size 0).
    """
    n, levels = len(ts), int(p.levels)
    bid0, ask0 = _quotes(mid, half_spread, p.tick_size)
    thin = vol_ratio ** -p.depth_vol_elasticity

    def side_levels(touch, direction, tilt):
        gaps = rng.geometric(1.0 / p.level_gap_ticks, (n, levels - 1))
        offs = np.concatenate([np.zeros((n, 1)), np.cumsum(gaps, axis=1)], axis=1)
        ticks = touch[:, None] + direction * offs
        mean = p.depth_size * (1.0 + p.depth_growth * np.arange(levels)) * np.exp(tilt)[:, None]
        noise = np.exp(p.depth_noise * rng.standard_normal((n, levels)) - 0.5 * p.depth_noise ** 2)
        size = np.maximum(np.round(mean * thin[:, None] * noise / p.lot_size), 1.0) * p.lot_size
        present = ticks >= 1
        return np.where(present, ticks * p.tick_size, np.nan), np.where(present, size, 0.0)

    bid_px, bid_sz = side_levels(bid0, -1.0, p.depth_signal_tilt * signal)
    ask_px, ask_sz = side_levels(ask0, 1.0, -p.depth_signal_tilt * signal)
    return Book(ts=ts, bid_px=bid_px, bid_sz=bid_sz, ask_px=ask_px, ask_sz=ask_sz)
