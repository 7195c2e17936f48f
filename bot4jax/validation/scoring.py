"""Scores of probabilistic forecasts and of the simple cost-aware long/flat rule built on them.

All functions take NumPy arrays of shape (n,) and return Python floats or arrays; they are used on
out-of-sample predictions only.
"""
from __future__ import annotations

import numpy as np

_EPS = 1e-12


def log_loss(p: np.ndarray, y: np.ndarray) -> float:
    """Mean binary cross-entropy -[y log p + (1 - y) log(1 - p)], p clipped to [1e-12, 1 - 1e-12]."""
    p = np.clip(p, _EPS, 1 - _EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def brier(p: np.ndarray, y: np.ndarray) -> float:
    """Mean squared error of the probability, (p - y)^2."""
    return float(np.mean((p - y) ** 2))


def accuracy(p: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean((p > 0.5) == (y > 0.5)))


def auc(p: np.ndarray, y: np.ndarray) -> float:
    """Area under the ROC curve by the rank-sum (Mann-Whitney) formula, ties given average ranks."""
    pos = y > 0.5
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(p, kind="mergesort")
    ranks = np.empty(len(p))
    sorted_p = p[order]
    # average ranks over tied groups
    starts = np.flatnonzero(np.r_[True, sorted_p[1:] != sorted_p[:-1]])
    ends = np.r_[starts[1:], len(p)]
    avg = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(avg, ends - starts)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def reliability(p: np.ndarray, y: np.ndarray, bins: int = 10):
    """Per equal-width probability bin: (mean predicted, observed frequency, count)."""
    idx = np.minimum((p * bins).astype(int), bins - 1)
    count = np.bincount(idx, minlength=bins)
    with np.errstate(invalid="ignore"):
        mean_p = np.bincount(idx, p, bins) / count
        freq = np.bincount(idx, y, bins) / count
    return mean_p, freq, count


def expected_calibration_error(p: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """ECE = sum over bins of (count / n) * |observed frequency - mean predicted|."""
    mean_p, freq, count = reliability(p, y, bins)
    ok = count > 0
    return float(np.sum(count[ok] / count.sum() * np.abs(freq[ok] - mean_p[ok])))


def long_flat_returns(p: np.ndarray, next_ret: np.ndarray, min_edge: float, cost_bps: float):
    """Per-bar log returns of holding 1 unit of equity long when p > 0.5 + min_edge, flat otherwise.

    The position decided at bar t's close earns next_ret[t] = log(close[t+1] / close[t]); every change
    of position pays cost_bps (fee plus slippage, per side) on the traded fraction. Returns
    (returns, positions), both (n,).
    """
    pos = (p > 0.5 + min_edge).astype(np.float64)
    turnover = np.abs(np.diff(np.r_[0.0, pos]))
    ret = pos * next_ret + np.log1p(-turnover * cost_bps * 1e-4)
    return ret, pos


def sharpe(returns: np.ndarray, periods_per_year: float) -> float:
    """Annualised Sharpe ratio mean / std * sqrt(periods_per_year) of per-period returns (no risk-free)."""
    sd = returns.std(ddof=1) if len(returns) > 1 else 0.0
    if not sd > 0:
        return 0.0
    return float(returns.mean() / sd * np.sqrt(periods_per_year))


def max_drawdown(equity: np.ndarray) -> float:
    """Largest fall from a running peak, as a positive fraction of that peak."""
    if len(equity) == 0:
        return 0.0
    peak = np.maximum.accumulate(equity)
    return float(np.max(1.0 - equity / peak))
