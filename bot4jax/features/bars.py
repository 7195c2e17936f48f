"""The bar feature set of the baseline model, batch form (JAX). Its streaming twin is
`bot4jax.kernels.features_nb`, held equal to this by the tests.

Features of bar t, from closes c, highs h, lows l, volumes v up to and including t (no look-ahead):

    ret_1, ret_5, ret_20   log(c_t / c_{t-k})
    rsi_14                 RSI(14) / 100 - 0.5
    macd_hist              MACD(12, 26, 9) histogram / c_t
    bb_pos                 (c_t - middle) / (upper - lower) of Bollinger(20, 2); 0 when the band is flat
    bb_width               (upper - lower) / middle
    ema_gap_50             c_t / EMA_50 - 1
    range                  (h_t - l_t) / c_t
    volume_ratio           v_t / EMA_20(v) - 1; 0 when the average volume is 0

Rows inside a warm-up (any indicator still NaN) are NaN; callers drop them.
"""
from __future__ import annotations

import numpy as np

from bot4jax.features import indicators as ind
from bot4jax.jaxcfg import jax, jnp

FEATURE_NAMES = ("ret_1", "ret_5", "ret_20", "rsi_14", "macd_hist", "bb_pos", "bb_width",
                 "ema_gap_50", "range", "volume_ratio")
RETURN_LAGS = (1, 5, 20)
WARMUP_BARS = 50  # EMA_50 is the longest warm-up; every feature is defined from bar index 49 on


def _lagged_log_return(logc: jnp.ndarray, k: int) -> jnp.ndarray:
    return jnp.concatenate([jnp.full(k, jnp.nan), logc[k:] - logc[:-k]])


@jax.jit
def _features(close, high, low, volume):
    logc = jnp.log(close)
    rets = [_lagged_log_return(logc, k) for k in RETURN_LAGS]
    rsi = ind.rsi(close, 14) / 100.0 - 0.5
    _, _, hist = ind.macd(close, 12, 26, 9)
    mid, upper, lower = ind.bollinger(close, 20, 2.0)
    width = upper - lower
    bb_pos = jnp.where(width > 0, (close - mid) / jnp.where(width > 0, width, 1.0), 0.0)
    bb_pos = jnp.where(jnp.isnan(width), jnp.nan, bb_pos)
    ema_v = ind.ema(volume, 20)
    vol_ratio = jnp.where(ema_v > 0, volume / jnp.where(ema_v > 0, ema_v, 1.0) - 1.0, 0.0)
    vol_ratio = jnp.where(jnp.isnan(ema_v), jnp.nan, vol_ratio)
    cols = rets + [rsi, hist / close, bb_pos, width / mid, close / ind.ema(close, 50) - 1.0,
                   (high - low) / close, vol_ratio]
    return jnp.stack(cols, axis=-1)


def bar_features(close, high, low, volume) -> np.ndarray:
    """Feature matrix of shape (n, len(FEATURE_NAMES)), float64, NaN during warm-up."""
    arrays = [np.asarray(a, np.float64) for a in (close, high, low, volume)]
    return np.asarray(_features(*arrays))
