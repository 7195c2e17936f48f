"""Streaming indicator kernels (Numba) against plain-Python references and the batch functions.

- each `<name>_update_nb` equals a slow, obviously correct Python update (exact window sums with
  math.fsum, two-pass variance) on random walks with random parameters, flat stretches and NaNs;
- the streaming outputs equal the batch outputs (1e-9 of the price, NaN in the same places) on real
  BTC prices and on a random walk with NaNs;
- the windowed kernels do not drift over 2 * 10**6 prices with regime changes and flat stretches;
- the updates are callable from other njit code and allocate nothing per update.
"""
import math
from collections import deque

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numba import njit
from numba.core.runtime import _nrt_python, rtsys
from numpy.lib.stride_tricks import sliding_window_view

from bot4jax.features import indicators as batch
from bot4jax.kernels import indicators_nb as nb

from .test_indicators import (  # noqa: F401  (btc_close is a fixture)
    DEFAULT, LONG_WINDOWS, N_LONG, btc_close, random_walk,
)

NAN = float("nan")


# ---- plain-Python references of the updates ---------------------------------------------------

class PyEMA:
    def __init__(self, span):
        self.alpha, self.span, self.seen, self.value = 2.0 / (span + 1.0), span, 0, NAN

    def update(self, x):
        self.value = x if self.seen == 0 else (1.0 - self.alpha) * self.value + self.alpha * x
        self.seen += 1
        return self.value if self.seen >= self.span else NAN


class PyRSI:
    def __init__(self, period):
        self.period, self.alpha, self.seen = period, 1.0 / period, 0
        self.prev = self.gain = self.loss = NAN

    def update(self, x):
        self.seen += 1
        if self.seen == 1:
            self.prev = x
            return NAN
        d = x - self.prev
        self.prev = x
        g, l = (NAN, NAN) if math.isnan(d) else (max(d, 0.0), max(-d, 0.0))
        if self.seen == 2:
            self.gain, self.loss = g, l
        else:
            self.gain = (1 - self.alpha) * self.gain + self.alpha * g
            self.loss = (1 - self.alpha) * self.loss + self.alpha * l
        if self.seen <= self.period:
            return NAN
        if self.gain + self.loss == 0.0:
            return 50.0
        return 100.0 * self.gain / (self.gain + self.loss)


class PyMACD:
    def __init__(self, fast, slow, signal):
        self.fast, self.slow, self.signal = PyEMA(fast), PyEMA(slow), PyEMA(signal)

    def update(self, x):
        self.fast.update(x)
        self.slow.update(x)
        if self.fast.seen < self.fast.span or self.slow.seen < self.slow.span:
            return NAN, NAN, NAN
        line = self.fast.value - self.slow.value
        sig = self.signal.update(line)
        return line, sig, line - sig


class PyWindow:
    """Exact mean and population std of the last `window` prices (NaN if short or any NaN)."""

    def __init__(self, window, k=0.0):
        self.window, self.k, self.buf = window, k, deque(maxlen=window)

    def moments(self, x):
        self.buf.append(x)
        if len(self.buf) < self.window or any(math.isnan(v) for v in self.buf):
            return NAN, NAN
        mean = math.fsum(self.buf) / self.window
        return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in self.buf) / self.window)


class PySMA(PyWindow):
    def update(self, x):
        return self.moments(x)[0]


class PyBollinger(PyWindow):
    def update(self, x):
        mean, sd = self.moments(x)
        return mean, mean + self.k * sd, mean - self.k * sd


def run_python(ref, prices):
    out = np.array([ref.update(float(p)) for p in prices], dtype=np.float64)
    return tuple(out.T) if out.ndim == 2 else out


def run_updates(update, state, prices):
    """The kernel's update called one price at a time from Python."""
    out = np.array([update(state, p) for p in prices], dtype=np.float64)
    return tuple(out.T) if out.ndim == 2 else out


def assert_close(ours, ref, scale, rel=1e-9, what=""):
    ours, ref = np.asarray(ours), np.asarray(ref)
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref), err_msg=f"NaN places: {what}")
    ok = ~np.isnan(ref)
    tol = rel * (np.abs(ref[ok]) + np.broadcast_to(np.abs(scale), ref.shape)[ok])
    err = np.abs(ours[ok] - ref[ok])
    assert np.all(err <= tol), f"{what}: max excess {np.max(err - tol):.3e}"


def streams(p):
    """name -> (init state, run kernel, update kernel, python reference), parameters from p."""
    w, k = p["window"], 2.0
    return {
        "sma": (nb.sma_init(w), nb.sma_run_nb, nb.sma_update_nb, PySMA(w)),
        "ema": (nb.ema_init(p["span"]), nb.ema_run_nb, nb.ema_update_nb, PyEMA(p["span"])),
        "rsi": (nb.rsi_init(p["period"]), nb.rsi_run_nb, nb.rsi_update_nb, PyRSI(p["period"])),
        "macd": (nb.macd_init(p["fast"], p["slow"], p["signal"]), nb.macd_run_nb, nb.macd_update_nb,
                 PyMACD(p["fast"], p["slow"], p["signal"])),
        "bollinger": (nb.bollinger_init(w, k), nb.bollinger_run_nb, nb.bollinger_update_nb,
                      PyBollinger(w, k)),
    }


def batch_all(x, p):
    return {
        "sma": batch.sma(x, p["window"]), "ema": batch.ema(x, p["span"]),
        "rsi": batch.rsi(x, p["period"]), "macd": batch.macd(x, p["fast"], p["slow"], p["signal"]),
        "bollinger": batch.bollinger(x, p["window"], 2.0),
    }


def as_tuple(a):
    return a if isinstance(a, tuple) else (a,)


# ---- kernels vs Python references ------------------------------------------------------------

@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 160),
    log_scale=st.floats(-4.0, 6.0),
    flat=st.sampled_from([0.0, 0.5]),
    nans=st.integers(0, 2),
    window=st.integers(1, 30),
    span=st.integers(1, 30),
    period=st.integers(1, 30),
    fast=st.integers(1, 20),
    slow=st.integers(1, 40),
    signal=st.integers(1, 15),
)
def test_kernels_match_python_reference(seed, n, log_scale, flat, nans, window, span, period, fast,
                                        slow, signal):
    x = random_walk(seed, n=n, scale=10.0**log_scale, vol=0.02, flat=flat)
    rng = np.random.default_rng(seed)
    x[rng.integers(0, n, nans)] = np.nan
    p = dict(window=window, span=span, period=period, fast=fast, slow=slow, signal=signal)
    for name, (state, run, update, ref) in streams(p).items():
        expected = as_tuple(run_python(ref, x))
        scale = 100.0 if name == "rsi" else np.nan_to_num(x)
        by_run = as_tuple(run(state.copy(), x))
        by_update = as_tuple(run_updates(update, state.copy(), x))
        for i, e in enumerate(expected):
            # the window sums are exact references, so hold those to 1e-12 of the price
            assert_close(by_run[i], e, scale, rel=1e-12, what=f"{name}[{i}] run")
            np.testing.assert_array_equal(by_update[i], by_run[i])


# ---- kernels vs batch --------------------------------------------------------------------------

def test_streaming_equals_batch_btc(btc_close):
    x = btc_close
    expected = batch_all(x, DEFAULT)
    for name, (state, run, _, _) in streams(DEFAULT).items():
        scale = 100.0 if name == "rsi" else x
        for i, (s, b) in enumerate(zip(as_tuple(run(state, x)), as_tuple(expected[name]))):
            assert_close(s, b, scale, what=f"{name}[{i}]")


def test_streaming_equals_batch_with_nans():
    x = random_walk(21)
    x[[3, 150, 151, 290]] = np.nan
    expected = batch_all(x, DEFAULT)
    for name, (state, run, _, _) in streams(DEFAULT).items():
        scale = 100.0 if name == "rsi" else np.nan_to_num(x)
        for i, (s, b) in enumerate(zip(as_tuple(run(state, x)), as_tuple(expected[name]))):
            assert_close(s, b, scale, what=f"{name}[{i}]")


@pytest.mark.parametrize("window", LONG_WINDOWS)
def test_long_windows_streaming_equals_batch(window):
    x = random_walk(17, n=N_LONG, vol=0.02, flat=0.3)
    x[[10, 400, 401, 950]] = np.nan
    scale = np.nan_to_num(x)
    assert_close(nb.sma_run_nb(nb.sma_init(window), x), batch.sma(x, window), scale, what="sma")
    streamed = nb.bollinger_run_nb(nb.bollinger_init(window, 2.0), x)
    for i, (s, b) in enumerate(zip(streamed, batch.bollinger(x, window, 2.0))):
        assert_close(s, b, scale, what=f"bollinger[{i}]")


def test_windowed_kernels_do_not_drift():
    """2 * 10**6 prices: calm and wild regimes, a 1000x crash, flat stretches. The last windows and
    a sample along the way equal exact two-pass statistics (the std to 1e-9 of itself)."""
    n, w = 2_000_000, 20
    rng = np.random.default_rng(3)
    vol = np.where((np.arange(n) // 100_000) % 2 == 0, 0.001, 0.05)
    steps = rng.normal(0.0, 1.0, n) * vol
    steps[rng.random(n) < 0.3] = 0.0
    stretches = np.arange(50_000, n, 100_000)[:, None] + np.arange(200)     # 200 flat prices each
    steps[stretches.ravel()] = 0.0
    steps[1_000_000] = np.log(1e-3)
    x = 60_000.0 * np.exp(np.cumsum(steps))
    middle, upper, _ = nb.bollinger_run_nb(nb.bollinger_init(w, 2.0), x)
    sma = nb.sma_run_nb(nb.sma_init(w), x)
    check = np.concatenate([np.arange(n - 20_000, n), rng.integers(w - 1, n, 20_000),
                            stretches.ravel()])
    windows = sliding_window_view(x, w)[check - (w - 1)]
    exact_mean = windows.mean(axis=1)
    exact_sd = np.sqrt(((windows - exact_mean[:, None]) ** 2).mean(axis=1))
    np.testing.assert_allclose(middle[check], exact_mean, rtol=1e-13)
    np.testing.assert_allclose(sma[check], exact_mean, rtol=1e-13)
    sd = (upper[check] - middle[check]) / 2.0
    assert np.all(np.abs(sd - exact_sd) <= 1e-9 * exact_sd + 1e-12 * x[check])
    flat = windows.max(axis=1) == windows.min(axis=1)
    assert flat.sum() > 1000 and np.all(sd[flat] == 0.0)     # flat windows give exactly 0


# ---- use from other njit code, allocation, state --------------------------------------------

@njit(cache=False)
def _replay_all(sma_s, ema_s, rsi_s, macd_s, bb_s, prices, out):
    for i in range(prices.shape[0]):
        p = prices[i]
        out[i, 0] = nb.sma_update_nb(sma_s, p)
        out[i, 1] = nb.ema_update_nb(ema_s, p)
        out[i, 2] = nb.rsi_update_nb(rsi_s, p)
        out[i, 3], out[i, 4], out[i, 5] = nb.macd_update_nb(macd_s, p)
        out[i, 6], out[i, 7], out[i, 8] = nb.bollinger_update_nb(bb_s, p)


def _fresh_states():
    return (nb.sma_init(20), nb.ema_init(20), nb.rsi_init(14), nb.macd_init(12, 26, 9),
            nb.bollinger_init(20, 2.0))


def test_updates_callable_from_njit_without_allocation():
    x = random_walk(5, n=5_000)
    out = np.empty((x.size, 9))
    _replay_all(*_fresh_states(), x, out)
    runs = [nb.sma_run_nb(nb.sma_init(20), x), nb.ema_run_nb(nb.ema_init(20), x),
            nb.rsi_run_nb(nb.rsi_init(14), x), *nb.macd_run_nb(nb.macd_init(12, 26, 9), x),
            *nb.bollinger_run_nb(nb.bollinger_init(20, 2.0), x)]
    for j, r in enumerate(runs):
        np.testing.assert_array_equal(out[:, j], r)

    def allocations(m):
        _nrt_python.memsys_enable_stats()
        try:
            before = rtsys.get_allocation_stats().alloc
            _replay_all(*_fresh_states(), x[:m], out[:m])
            return rtsys.get_allocation_stats().alloc - before
        finally:
            _nrt_python.memsys_disable_stats()

    # Boxing the arguments costs a fixed few; the updates themselves add none.
    assert allocations(10) == allocations(5_000)


def test_state_is_plain_data():
    """States are float64 arrays of the documented sizes; a copy taken mid-stream resumes
    exactly."""
    for w in (1, 20):
        assert nb.sma_init(w).shape == (8 + 3 * w + 2,)
        assert nb.bollinger_init(w, 2.5)[1] == 2.5
    assert nb.ema_init(10).shape == (4,) and nb.rsi_init(14).shape == (6,)
    assert nb.macd_init().shape == (12,)
    x = random_walk(8, n=500)
    for name, (state, run, _, _) in streams(DEFAULT).items():
        full = as_tuple(run(state.copy(), x))
        head = state.copy()
        run(head, x[:237])
        tail = as_tuple(run(head.copy(), x[237:]))
        for f, t in zip(full, tail):
            np.testing.assert_array_equal(f[237:], t, err_msg=name)
        assert head.dtype == np.float64
    ema = nb.ema_init(5)
    value = nb.ema_run_nb(ema, x[:50])[-1]
    assert ema[3] == value and ema[2] == 5          # [3] value, [2] saturating count


def test_init_validation():
    with pytest.raises(ValueError, match="window"):
        nb.sma_init(0)
    with pytest.raises(ValueError, match="span"):
        nb.ema_init(1.5)
    with pytest.raises(ValueError, match="period"):
        nb.rsi_init(-1)
    with pytest.raises(ValueError, match="slow"):
        nb.macd_init(12, True, 9)
    with pytest.raises(ValueError, match="k must be finite"):
        nb.bollinger_init(20, float("inf"))
