"""Streaming microstructure kernels (Numba): VPIN per trade, order flow imbalance, rolling Kyle's lambda,
depth imbalance. One event at a time, O(1) (amortised), nothing allocated per event.

Each is an optax-style pair over explicit, preallocated state:

    state = <name>_init(params...)             plain Python; a flat float64 NumPy array (layout below)
    value = <name>_update_nb(state, event...)  njit(cache=True, nogil=True): mutates only `state`
    out   = <name>_run_nb(state, arrays..., out) the update looped over arrays (replay, benchmarks)

Outputs equal the batch functions of `bot4jax.features.microstructure` (same formulas, same NaN
places; ~1e-12 relative in float64): `vpin_buckets` / `vpin`, `order_flow_imbalance(window=w)`,
`kyle_lambda(window=w)`, `depth_imbalance(levels, window)`. One caveat for VPIN: the batch code
places bucket boundaries on the cumulative volume and the kernel fills buckets one trade at a time,
so a trade that ends a bucket exactly (to the last bit, e.g. a bucket size of total / 300 at the very
last trade) can close that bucket in one and leave it open in the other.

Windowed sums use the batch code's blocks: the stream is cut into blocks of `window` events; inside a
block a running sum from its start, and the window sum is that running sum plus the previous
block's total minus the previous block's running sum at the same position. Two buffers of
`window` running sums per channel alternate between blocks, so every window sum is made of at most
2 * window fresh terms (no drift over long streams) and each update is O(1). NaN inputs enter the
sums as 0 with a NaN-count channel beside them, so a NaN leaves the window with its event.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

_NB = dict(cache=True, nogil=True)


def _check_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)


# ---------------------------------------------------------------------------------------------
# Block rolling sums: C channels over a window of w events, at offset o of a state array.
# Layout: [o] w, [o+1] C, [o+2] events seen, then two buffers of C*w running sums.

def _roll_size(channels: int, window: int) -> int:
    return 3 + 2 * channels * window


def _roll_fill(state: np.ndarray, o: int, channels: int, window: int) -> None:
    state[o] = window
    state[o + 1] = channels
    state[o + 2] = 0.0
    state[o + 3:o + _roll_size(channels, window)] = 0.0


@njit(**_NB)
def _roll_begin(state, o):
    """Start an event: (position j in its block, current buffer, previous buffer, w, events before)."""
    w = int(state[o])
    c = int(state[o + 1])
    seen = int(state[o + 2])
    j = seen % w
    b = seen // w
    base = o + 3
    cur = base + (b % 2) * c * w
    prev = base + ((b + 1) % 2) * c * w
    state[o + 2] = seen + 1
    return j, cur, prev, w, seen


@njit(**_NB)
def _roll_add(state, ch, x, j, cur, prev, w):
    """Add x to channel ch; return the sum of the channel over the last w events (partial at first)."""
    c = cur + ch * w
    p = prev + ch * w
    run = x if j == 0 else state[c + j - 1] + x
    state[c + j] = run
    return run + (state[p + w - 1] - state[p + j])


# ---------------------------------------------------------------------------------------------
# Rolling Kyle's lambda

_KYLE_HDR = 1


def kyle_init(window: int) -> np.ndarray:
    """State of the rolling OLS slope of price change on signed volume over `window` (>= 2) events.

    float64: [0] window | block rolling sums of 5 channels (x, y, x*y, x*x, NaN count).
    """
    window = _check_int("window", window, 2)
    state = np.empty(_KYLE_HDR + _roll_size(5, window))
    state[0] = window
    _roll_fill(state, _KYLE_HDR, 5, window)
    return state


@njit(**_NB)
def kyle_update_nb(state, price_change, signed_volume):
    """Add one interval; return kyle_lambda over the last `window` intervals (NaN until full or while a
    NaN is in the window, or when the signed volume does not vary)."""
    bad = math.isnan(price_change) or math.isnan(signed_volume)
    y = 0.0 if bad else price_change
    x = 0.0 if bad else signed_volume
    j, cur, prev, w, seen = _roll_begin(state, _KYLE_HDR)
    sx = _roll_add(state, 0, x, j, cur, prev, w)
    sy = _roll_add(state, 1, y, j, cur, prev, w)
    sxy = _roll_add(state, 2, x * y, j, cur, prev, w)
    sxx = _roll_add(state, 3, x * x, j, cur, prev, w)
    nbad = _roll_add(state, 4, 1.0 if bad else 0.0, j, cur, prev, w)
    if seen + 1 < w or nbad != 0.0:
        return np.nan
    n = float(w)
    den = n * sxx - sx * sx
    if not den > 0.0:
        return np.nan
    return (n * sxy - sx * sy) / den


@njit(**_NB)
def kyle_run_nb(state, price_change, signed_volume, out):
    for i in range(price_change.shape[0]):
        out[i] = kyle_update_nb(state, price_change[i], signed_volume[i])
    return out


# ---------------------------------------------------------------------------------------------
# Order flow imbalance (Cont, Kukanov and Stoikov 2014)

_OFI_HDR = 5  # [0] window, [1..4] previous best bid px, bid sz, ask px, ask sz


def ofi_init(window: int) -> np.ndarray:
    """State of the rolling sum of per-update order flow e_n over `window` (>= 1) book updates.

    float64: [0] window | [1..4] previous bid px, bid sz, ask px, ask sz (NaN before the first) |
    block rolling sums of 2 channels (e, NaN count). window=1 returns e_n itself.
    """
    window = _check_int("window", window, 1)
    state = np.empty(_OFI_HDR + _roll_size(2, window))
    state[0] = window
    state[1:5] = np.nan
    _roll_fill(state, _OFI_HDR, 2, window)
    return state


@njit(**_NB)
def ofi_update_nb(state, bid_px, bid_sz, ask_px, ask_sz):
    """Add one best-level book update; return the sum of e over the last `window` updates (NaN until
    `window` updates after the first, or while an update with an empty side is in the window)."""
    pb0, qb0, pa0, qa0 = state[1], state[2], state[3], state[4]
    state[1], state[2], state[3], state[4] = bid_px, bid_sz, ask_px, ask_sz
    bad = math.isnan(bid_px) or math.isnan(pb0) or math.isnan(ask_px) or math.isnan(pa0)
    e = 0.0
    if not bad:
        if bid_px >= pb0:
            e += bid_sz
        if bid_px <= pb0:
            e -= qb0
        if ask_px <= pa0:
            e -= ask_sz
        if ask_px >= pa0:
            e += qa0
        bad = math.isnan(e)
        if bad:
            e = 0.0
    j, cur, prev, w, seen = _roll_begin(state, _OFI_HDR)
    s = _roll_add(state, 0, e, j, cur, prev, w)
    nbad = _roll_add(state, 1, 1.0 if bad else 0.0, j, cur, prev, w)
    if seen + 1 < w or nbad != 0.0:
        return np.nan
    return s


@njit(**_NB)
def ofi_run_nb(state, bid_px, bid_sz, ask_px, ask_sz, out):
    for i in range(bid_px.shape[0]):
        out[i] = ofi_update_nb(state, bid_px[i], bid_sz[i], ask_px[i], ask_sz[i])
    return out


# ---------------------------------------------------------------------------------------------
# Depth imbalance

_DEPTH_HDR = 2  # [0] levels, [1] window


def depth_imbalance_init(levels: int, window: int = 1) -> np.ndarray:
    """State of the depth imbalance of the top `levels` levels, averaged over `window` snapshots
    (window=1: the snapshot's own value). float64: [0] levels, [1] window | block rolling sums of 2
    channels (imbalance, NaN count)."""
    levels = _check_int("levels", levels, 1)
    window = _check_int("window", window, 1)
    state = np.empty(_DEPTH_HDR + _roll_size(2, window))
    state[0] = levels
    state[1] = window
    _roll_fill(state, _DEPTH_HDR, 2, window)
    return state


@njit(**_NB)
def depth_imbalance_update_nb(state, bid_sz, ask_sz):
    """Add one snapshot (bid_sz, ask_sz: rows of at least `levels` sizes, best first); return the mean
    of (B - A) / (B + A) over the last `window` snapshots (NaN for an empty book or NaN sizes)."""
    levels = int(state[0])
    b = 0.0
    a = 0.0
    for k in range(levels):
        b += bid_sz[k]
        a += ask_sz[k]
    tot = b + a
    bad = not tot > 0.0
    d = 0.0 if bad else (b - a) / tot
    j, cur, prev, w, seen = _roll_begin(state, _DEPTH_HDR)
    s = _roll_add(state, 0, d, j, cur, prev, w)
    nbad = _roll_add(state, 1, 1.0 if bad else 0.0, j, cur, prev, w)
    if seen + 1 < w or nbad != 0.0:
        return np.nan
    return s / w


@njit(**_NB)
def depth_imbalance_run_nb(state, bid_sz, ask_sz, out):
    """bid_sz, ask_sz: (n, levels') with levels' >= the state's levels."""
    for i in range(bid_sz.shape[0]):
        out[i] = depth_imbalance_update_nb(state, bid_sz[i], ask_sz[i])
    return out


# ---------------------------------------------------------------------------------------------
# Student-t CDF (for bulk volume classification with fat tails)

@njit(**_NB)
def _betacf(a, b, x):
    """Continued fraction of the incomplete beta function (modified Lentz), for x < (a+1)/(a+b+2)."""
    tiny = 1e-300
    qab = a + b
    qap = a + 1.0
    qam = a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    if abs(d) < tiny:
        d = tiny
    d = 1.0 / d
    h = d
    for m in range(1, 300):
        m2 = 2.0 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        if abs(d) < tiny:
            d = tiny
        c = 1.0 + aa / c
        if abs(c) < tiny:
            c = tiny
        d = 1.0 / d
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        if abs(d) < tiny:
            d = tiny
        c = 1.0 + aa / c
        if abs(c) < tiny:
            c = tiny
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


@njit(**_NB)
def betainc_nb(a, b, x):
    """Regularised incomplete beta I_x(a, b) for a, b > 0, x in [0, 1]."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    lbt = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(lbt) * _betacf(a, b, x) / a
    return 1.0 - math.exp(lbt) * _betacf(b, a, 1.0 - x) / b


@njit(**_NB)
def student_t_cdf_nb(z, dof):
    """CDF of Student's t with `dof` > 0 degrees of freedom."""
    tail = 0.5 * betainc_nb(0.5 * dof, 0.5, dof / (dof + z * z))
    return 1.0 - tail if z >= 0.0 else tail


@njit(**_NB)
def normal_cdf_nb(z):
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


# ---------------------------------------------------------------------------------------------
# VPIN with bulk volume classification

# header: [0] bucket volume V, [1] window, [2] sigma window, [3] dof (0: normal), [4] observations
# seen, [5] previous price, [6] volume in the open bucket, [7] its buy volume, [8] buckets completed,
# [9] latest VPIN; then the rolling block of squared price changes (1 channel, sigma window) and the
# rolling block of bucket imbalances (1 channel, window).
_VPIN_HDR = 10


def vpin_init(bucket_volume: float, window: int = 50, sigma_window: int = 1000, dof: float = 0.0) -> np.ndarray:
    """State of VPIN with bulk volume classification, equal to `bot4jax.features.microstructure.vpin_buckets`.

    bucket_volume: V > 0; window: buckets averaged (>= 1); sigma_window: price changes in the
    standardisation (>= 1); dof: 0 for the normal CDF, else the Student-t degrees of freedom (> 0).
    """
    if not (isinstance(bucket_volume, (int, float, np.integer, np.floating)) and math.isfinite(bucket_volume)
            and bucket_volume > 0):
        raise ValueError(f"bucket_volume must be a finite number > 0; got {bucket_volume!r}")
    window = _check_int("window", window, 1)
    sigma_window = _check_int("sigma_window", sigma_window, 1)
    if not (math.isfinite(dof) and dof >= 0):
        raise ValueError(f"dof must be 0 (normal CDF) or a finite number > 0; got {dof!r}")
    sig_size = _roll_size(1, sigma_window)
    state = np.empty(_VPIN_HDR + sig_size + _roll_size(1, window))
    state[:_VPIN_HDR] = (bucket_volume, window, sigma_window, dof, 0.0, np.nan, 0.0, 0.0, 0.0, np.nan)
    _roll_fill(state, _VPIN_HDR, 1, sigma_window)
    _roll_fill(state, _VPIN_HDR + sig_size, 1, window)
    return state


@njit(**_NB)
def _vpin_add(state, price, volume, out, n_out):
    """Classify one observation and fill buckets; the VPIN of each completed bucket goes to out[n_out...]
    (while there is room). Returns the new n_out."""
    if not (price > 0.0 and math.isfinite(price) and volume >= 0.0 and math.isfinite(volume)):
        return n_out  # invalid event: skipped (the batch function raises instead)
    big_v = state[0]
    window = int(state[1])
    sw = int(state[2])
    dof = state[3]
    seen = int(state[4])
    state[4] = seen + 1
    dp = 0.0 if seen == 0 else price - state[5]
    state[5] = price
    j, cur, prev, w, _ = _roll_begin(state, _VPIN_HDR)
    s = _roll_add(state, 0, dp * dp, j, cur, prev, w)
    count = min(seen, sw)
    var = s / max(count, 1)
    z = dp / math.sqrt(var) if var > 0.0 else 0.0
    frac = normal_cdf_nb(z) if dof == 0.0 else student_t_cdf_nb(z, dof)
    bo = _VPIN_HDR + 3 + 2 * sw  # offset of the bucket block
    fill = state[6]
    buy = state[7]
    v = volume
    while v > 0.0:
        room = big_v - fill
        if v < room:
            fill += v
            buy += v * frac
            break
        buy += room * frac
        v -= room
        imb = abs(2.0 * buy - big_v) / big_v
        imb = min(max(imb, 0.0), 1.0)
        jb, cb, pb, wb, kb = _roll_begin(state, bo)
        roll = _roll_add(state, 0, imb, jb, cb, pb, wb) / window
        state[8] = kb + 1
        value = np.nan if kb + 1 < window else min(max(roll, 0.0), 1.0)
        state[9] = value
        if n_out < out.shape[0]:
            out[n_out] = value
        n_out += 1
        fill = 0.0
        buy = 0.0
    state[6] = fill
    state[7] = buy
    return n_out


@njit(**_NB)
def vpin_update_nb(state, price, volume):
    """Add one trade (or bar): price > 0, volume >= 0 (others are skipped). Returns the VPIN of the
    latest completed bucket (NaN until `window` buckets exist). O(1) plus O(1) per bucket it completes."""
    _vpin_add(state, price, volume, state[:0], 0)
    return state[9]


@njit(**_NB)
def vpin_run_nb(state, price, volume, out):
    """vpin_update_nb over arrays: out[i] = VPIN after observation i."""
    for i in range(price.shape[0]):
        _vpin_add(state, price[i], volume[i], state[:0], 0)
        out[i] = state[9]
    return out


@njit(**_NB)
def vpin_buckets_run_nb(state, price, volume, out):
    """Feed arrays; write the VPIN of every bucket completed into out; return how many completed
    (out holds the first len(out) of them)."""
    n_out = 0
    for i in range(price.shape[0]):
        n_out = _vpin_add(state, price[i], volume[i], out, n_out)
    return n_out
