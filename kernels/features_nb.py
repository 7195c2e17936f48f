"""Streaming twin of `bot4jax.features.bars` (Numba): one bar in, the feature row out, O(1).

    state = features_init()                                   float64 array, layout below
    valid = features_update_nb(state, close, high, low, volume, out)   writes out[:N_FEATURES]

The state is the indicator states of `indicators_nb` side by side plus a ring of the last
RING log closes for the lagged returns. Nothing is allocated per bar: the indicator updates work on
views into this one array.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from bot4jax.kernels import indicators_nb as ind

N_FEATURES = 10
RING = 21  # the longest return lag (20) plus the current bar

# offsets of each part in the state array
_RSI = 0
_MACD = _RSI + ind.rsi_init(14).size
_BB = _MACD + ind.macd_init(12, 26, 9).size
_EMA50 = _BB + ind.bollinger_init(20, 2.0).size
_EMAV = _EMA50 + ind.ema_init(50).size
_RING = _EMAV + ind.ema_init(20).size
_COUNT = _RING + RING  # bars seen
_SIZE = _COUNT + 1


def features_init() -> np.ndarray:
    """Fresh state: RSI(14) | MACD(12, 26, 9) | Bollinger(20, 2) | EMA50(close) | EMA20(volume) |
    ring of log closes (RING) | bars seen."""
    state = np.zeros(_SIZE)
    state[_RSI:_MACD] = ind.rsi_init(14)
    state[_MACD:_BB] = ind.macd_init(12, 26, 9)
    state[_BB:_EMA50] = ind.bollinger_init(20, 2.0)
    state[_EMA50:_EMAV] = ind.ema_init(50)
    state[_EMAV:_RING] = ind.ema_init(20)
    state[_RING:_COUNT] = np.nan
    return state


@njit(cache=True, nogil=True)
def _lag(state, n, k):
    """log close k bars ago (NaN before it exists); the ring slot of bar i is i % RING."""
    if n - 1 - k < 0:
        return np.nan
    return state[_RING + (n - 1 - k) % RING]


@njit(cache=True, nogil=True)
def features_update_nb(state, close, high, low, volume, out):
    """Add one bar; write the features of `bot4jax.features.bars.FEATURE_NAMES` into out[:10].
    Returns True when every feature is defined (the warm-up is over)."""
    n = int(state[_COUNT]) + 1
    state[_COUNT] = n
    logc = np.log(close)
    state[_RING + (n - 1) % RING] = logc
    out[0] = logc - _lag(state, n, 1)
    out[1] = logc - _lag(state, n, 5)
    out[2] = logc - _lag(state, n, 20)
    out[3] = ind.rsi_update_nb(state[_RSI:_MACD], close) / 100.0 - 0.5
    _, _, hist = ind.macd_update_nb(state[_MACD:_BB], close)
    out[4] = hist / close
    mid, upper, lower = ind.bollinger_update_nb(state[_BB:_EMA50], close)
    width = upper - lower
    if np.isnan(width):
        out[5] = np.nan
    elif width > 0.0:
        out[5] = (close - mid) / width
    else:
        out[5] = 0.0
    out[6] = width / mid
    out[7] = close / ind.ema_update_nb(state[_EMA50:_EMAV], close) - 1.0
    out[8] = (high - low) / close
    ema_v = ind.ema_update_nb(state[_EMAV:_RING], volume)
    if np.isnan(ema_v):
        out[9] = np.nan
    elif ema_v > 0.0:
        out[9] = volume / ema_v - 1.0
    else:
        out[9] = 0.0
    for i in range(N_FEATURES):
        if not np.isfinite(out[i]):
            return False
    return True
