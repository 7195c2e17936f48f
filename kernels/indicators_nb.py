"""Streaming indicators (Numba): SMA, EMA, RSI, MACD, Bollinger bands, one price at a time.

Each indicator is an optax-style pair over explicit, preallocated state:

    state = <name>_init(params...)          plain Python; a small float64 NumPy array
    value = <name>_update_nb(state, price)  njit(cache=True, nogil=True); O(1) (amortised for the
                                            windowed ones, see below), mutates only `state`,
                                            allocates nothing; callable from other njit code
    out   = <name>_run_nb(state, prices)    the update looped over an array (replay, benchmarks)

The state is one flat float64 array per indicator (counters are stored as exact small integers in
float64) so that a caller can keep many of them side by side, copy them, or checkpoint them as
plain arrays; each init's docstring gives the layout. Outputs equal the batch functions in
`bot4jax.features.indicators` (to ~1e-12 relative in float64, NaN in the same places: warm-up, and
NaN prices with the same semantics: windowed indicators are NaN for windows that contain a NaN,
recursive ones from the NaN on).

Windowed sums (sma, bollinger) do not keep one running sum, which would drift over long series
(and whose sum of squares cancels catastrophically at price levels like 30,000). The stream is cut
into blocks of `window` prices. Inside a block the sums are running sums of (x - c) with c the
block's first price; the part of the window that lies in the previous block is a suffix sum over
that block, recomputed exactly from the ring buffer (shifted by the same c) once, when the block
starts. So every window sum is formed from at most 2*window fresh terms whatever the series
length, c lies inside every window it is used for (the variance cancellation is bounded by the
window length, and a flat window gives exactly 0), and NaN leaves a window when its value does.
Cost: O(1) per price plus O(window) once every `window` prices (amortised O(1); ~window adds in
the worst single update). A compensated (Neumaier) running sum would be strictly O(1) but keeps a
NaN forever and does not fix the cancellation of the sum of squares.
"""
from __future__ import annotations

import numpy as np
from numba import njit

_NB = dict(cache=True, nogil=True)


def _check_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)


# ---------------------------------------------------------------------------------------------
# EMA

_EMA_SIZE = 4


def _ema_fill(state: np.ndarray, offset: int, span: int) -> None:
    state[offset + 0] = 2.0 / (span + 1.0)
    state[offset + 1] = span
    state[offset + 2] = 0.0
    state[offset + 3] = np.nan


def ema_init(span: int) -> np.ndarray:
    """State of an EMA with alpha = 2/(span+1), pandas `ewm(span, adjust=False, min_periods=span)`.

    float64[4]: [0] alpha, [1] span (first output at the span-th price), [2] prices seen
    (saturates at span), [3] current EMA value (NaN before the first price).
    """
    span = _check_int("span", span)
    state = np.empty(_EMA_SIZE)
    _ema_fill(state, 0, span)
    return state


@njit(**_NB)
def _ema_step(state, o, price):
    """Advance the EMA block at state[o:o+4]; return its value (NaN during warm-up)."""
    alpha = state[o]
    count = state[o + 2]
    if count == 0.0:
        value = price
    else:
        value = (1.0 - alpha) * state[o + 3] + alpha * price
    state[o + 3] = value
    if count < state[o + 1]:
        count += 1.0
        state[o + 2] = count
    if count < state[o + 1]:
        return np.nan
    return value


@njit(**_NB)
def ema_update_nb(state, price):
    """y = (1-alpha)*y + alpha*price (y = price at the first price); NaN during warm-up."""
    return _ema_step(state, 0, price)


@njit(**_NB)
def ema_run_nb(state, prices):
    out = np.empty(prices.shape[0])
    for i in range(prices.shape[0]):
        out[i] = _ema_step(state, 0, prices[i])
    return out


# ---------------------------------------------------------------------------------------------
# RSI

_RSI_SIZE = 6


def rsi_init(period: int = 14) -> np.ndarray:
    """State of Wilder's RSI (see `bot4jax.features.indicators.rsi` for the convention).

    float64[6]: [0] alpha = 1/period, [1] period, [2] prices seen (saturates at period+1),
    [3] previous price, [4] average gain, [5] average loss.
    """
    period = _check_int("period", period)
    return np.array([1.0 / period, period, 0.0, np.nan, np.nan, np.nan])


@njit(**_NB)
def rsi_update_nb(state, price):
    """RSI after `price`: 100*avg_gain/(avg_gain+avg_loss), 50 if both are 0; NaN during warm-up
    (the first `period` prices)."""
    count = state[2]
    if count == 0.0:
        state[3] = price
        state[2] = 1.0
        return np.nan
    delta = price - state[3]
    state[3] = price
    if delta != delta:                     # NaN propagates, as jnp.maximum does in the batch
        gain = delta
        loss = delta
    else:
        gain = delta if delta > 0.0 else 0.0
        loss = -delta if delta < 0.0 else 0.0
    alpha = state[0]
    if count == 1.0:
        state[4] = gain
        state[5] = loss
    else:
        state[4] = (1.0 - alpha) * state[4] + alpha * gain
        state[5] = (1.0 - alpha) * state[5] + alpha * loss
    if count <= state[1]:
        count += 1.0
        state[2] = count
    if count <= state[1]:
        return np.nan
    total = state[4] + state[5]
    if total == 0.0:
        return 50.0
    return 100.0 * (state[4] / total)


@njit(**_NB)
def rsi_run_nb(state, prices):
    out = np.empty(prices.shape[0])
    for i in range(prices.shape[0]):
        out[i] = rsi_update_nb(state, prices[i])
    return out


# ---------------------------------------------------------------------------------------------
# MACD

_MACD_SIZE = 3 * _EMA_SIZE


def macd_init(fast: int = 12, slow: int = 26, signal: int = 9) -> np.ndarray:
    """State of MACD(fast, slow, signal) (convention of `bot4jax.features.indicators.macd`).

    float64[12]: three EMA blocks laid out as in `ema_init`: [0:4] fast EMA of prices,
    [4:8] slow EMA of prices, [8:12] signal EMA of the macd line (fed from the first price at
    which both price EMAs are past their warm-up).
    """
    fast = _check_int("fast", fast)
    slow = _check_int("slow", slow)
    signal = _check_int("signal", signal)
    state = np.empty(_MACD_SIZE)
    _ema_fill(state, 0, fast)
    _ema_fill(state, 4, slow)
    _ema_fill(state, 8, signal)
    return state


@njit(**_NB)
def macd_update_nb(state, price):
    """-> (macd, signal, histogram) after `price`; NaN during the respective warm-ups."""
    _ema_step(state, 0, price)
    _ema_step(state, 4, price)
    if state[2] < state[1] or state[6] < state[5]:
        return np.nan, np.nan, np.nan
    line = state[3] - state[7]
    sig = _ema_step(state, 8, line)
    return line, sig, line - sig


@njit(**_NB)
def macd_run_nb(state, prices):
    n = prices.shape[0]
    line = np.empty(n)
    sig = np.empty(n)
    hist = np.empty(n)
    for i in range(n):
        line[i], sig[i], hist[i] = macd_update_nb(state, prices[i])
    return line, sig, hist


# ---------------------------------------------------------------------------------------------
# Windowed sums: SMA and Bollinger bands

_W_HEAD = 8   # [0] window w, [1] k, [2] prices seen (saturates at w), [3] position in block,
#               [4] shift c, [5] P1, [6] P2, [7] unused


def _window_init(window: int, k: float) -> np.ndarray:
    w = window
    state = np.zeros(_W_HEAD + 3 * w + 2)
    state[0] = w
    state[1] = k
    return state


@njit(**_NB)
def _window_step(state, price):
    """Add `price`; return (count, c, S1, S2) with S1 = sum over the window of (x - c) and
    S2 = sum of (x - c)**2 (valid once count == w)."""
    w = int(state[0])
    j = int(state[3])
    ring = _W_HEAD
    q1 = _W_HEAD + w
    q2 = _W_HEAD + 2 * w + 1
    if j == 0:
        # A block starts: the window's older part is now a suffix of the previous block (the ring
        # holds it whole); sum it exactly around the new shift, from the back.
        c = price
        state[4] = c
        s1 = 0.0
        s2 = 0.0
        state[q1 + w] = 0.0
        state[q2 + w] = 0.0
        for i in range(w - 1, -1, -1):
            y = state[ring + i] - c
            s1 += y
            s2 += y * y
            state[q1 + i] = s1
            state[q2 + i] = s2
        state[5] = 0.0
        state[6] = 0.0
    else:
        c = state[4]
    y = price - c
    p1 = state[5] + y
    p2 = state[6] + y * y
    state[5] = p1
    state[6] = p2
    state[ring + j] = price
    total1 = p1 + state[q1 + j + 1]
    total2 = p2 + state[q2 + j + 1]
    j += 1
    state[3] = 0.0 if j == w else j
    count = state[2]
    if count < w:
        count += 1.0
        state[2] = count
    return count, c, total1, total2


def sma_init(window: int) -> np.ndarray:
    """State of a simple moving average over `window` prices (pandas `rolling(window).mean()`).

    float64[8 + 3*window + 2]: header [0] window, [1] unused (0), [2] prices seen (saturates at
    window), [3] position of the next price in its block, [4] shift c (first price of the current
    block), [5] P1 = sum of (x - c) over the current block so far, [6] P2 = sum of (x - c)**2,
    [7] unused; then [8 : 8+w] ring buffer (ring[i] = latest price at block position i),
    [8+w : 9+2w] Q1 (Q1[i] = sum over previous-block positions >= i of (x - c), Q1[w] = 0),
    [9+2w : 10+3w] Q2 (the same for (x - c)**2).
    """
    window = _check_int("window", window)
    return _window_init(window, 0.0)


@njit(**_NB)
def sma_update_nb(state, price):
    """Mean of the last `window` prices including `price`; NaN during warm-up or if one is NaN."""
    count, c, s1, _ = _window_step(state, price)
    if count < state[0]:
        return np.nan
    return c + s1 / state[0]


@njit(**_NB)
def sma_run_nb(state, prices):
    out = np.empty(prices.shape[0])
    for i in range(prices.shape[0]):
        out[i] = sma_update_nb(state, prices[i])
    return out


def bollinger_init(window: int = 20, k: float = 2.0) -> np.ndarray:
    """State of Bollinger bands (window, k): rolling mean +/- k * population std (ddof=0).

    Layout as in `sma_init`, with [1] = k.
    """
    window = _check_int("window", window)
    k = float(k)
    if not np.isfinite(k):
        raise ValueError(f"k must be finite; got {k!r}")
    return _window_init(window, k)


@njit(**_NB)
def bollinger_update_nb(state, price):
    """-> (middle, upper, lower) after `price`; NaN during warm-up or if the window holds a NaN."""
    count, c, s1, s2 = _window_step(state, price)
    w = state[0]
    if count < w:
        return np.nan, np.nan, np.nan
    mean_dev = s1 / w
    var = s2 / w - mean_dev * mean_dev
    if var < 0.0:
        var = 0.0
    middle = c + mean_dev
    half = state[1] * np.sqrt(var)
    return middle, middle + half, middle - half


@njit(**_NB)
def bollinger_run_nb(state, prices):
    n = prices.shape[0]
    middle = np.empty(n)
    upper = np.empty(n)
    lower = np.empty(n)
    for i in range(n):
        middle[i], upper[i], lower[i] = bollinger_update_nb(state, prices[i])
    return middle, upper, lower


__all__ = [
    "ema_init", "ema_update_nb", "ema_run_nb",
    "rsi_init", "rsi_update_nb", "rsi_run_nb",
    "macd_init", "macd_update_nb", "macd_run_nb",
    "sma_init", "sma_update_nb", "sma_run_nb",
    "bollinger_init", "bollinger_update_nb", "bollinger_run_nb",
]
