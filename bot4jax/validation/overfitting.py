"""Backtest-overfitting statistics: probability of backtest overfitting and the deflated Sharpe ratio.

    res = pbo(perf, n_blocks=16)                                     (T, N) -> PBOResult
    res = deflated_sharpe_ratio(returns, trial_sharpes)              (T,), (N,) -> DSRResult
    psr = probabilistic_sharpe_ratio(returns, sr_benchmark)          (T,) -> float
    sr0 = expected_max_sharpe(sr_variance, n_trials)                 -> float

PBO (Bailey, Borwein, Lopez de Prado & Zhu 2017, "The probability of backtest overfitting",
J. Computational Finance), by combinatorially symmetric cross-validation (CSCV): the (T x N) matrix
of per-period returns of N configurations (strategies, blend modes, hyperparameters) is cut into S
contiguous row blocks (S even; ``numpy.array_split`` sizes); for each of the C(S, S/2) ways to pick
S/2 blocks as in-sample (IS), the rest being out-of-sample (OOS),

    n*     = argmax_n  metric_IS(n)                  (the configuration one would have chosen; first on ties)
    omega  = rank_OOS(n*) / (N + 1)                  (rank 1 = worst OOS, N = best; ties averaged)
    lambda = log(omega / (1 - omega))                (the logit; > 0 when n* beats the OOS median)

and PBO = fraction of the C(S, S/2) logits with lambda <= 0: how often the IS winner does no better
than the median configuration OOS. About 0.5 when no configuration is better than another, near 0
when the IS winner is truly better. The metric is the per-period Sharpe ratio mean / std (ddof 1)
or the mean, from per-block sums (so ~10^4 combinations cost one matrix product).

Deflated Sharpe ratio (Bailey & Lopez de Prado 2014, "The deflated Sharpe ratio", J. Portfolio
Management): the probabilistic Sharpe ratio (Bailey & Lopez de Prado 2012)

    PSR(SR*) = Phi( (SR - SR*) sqrt(T - 1) / sqrt(1 - g3 SR + (g4 - 1) / 4 SR^2) )

of the chosen strategy's per-period Sharpe ratio SR (mean / std, ddof 1; T periods; g3 skewness and g4
kurtosis, non-excess, both the biased moment estimators), evaluated at the Sharpe ratio one expects
from the best of N unskilled trials,

    SR* = sqrt(V) ((1 - gamma) Phi^-1(1 - 1/N) + gamma Phi^-1(1 - 1/(N e))),   gamma = 0.5772...,

V the variance of the N trials' Sharpe ratios (ddof 1, same period as SR). DSR = PSR(SR*): the
probability that the true Sharpe ratio is above what selection alone would produce. All Sharpe
ratios here are per period, not annualised. Phi is the standard normal distribution
(``statistics.NormalDist``).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Callable

import numpy as np

__all__ = [
    "DSRResult", "PBOResult", "deflated_sharpe_ratio", "expected_max_sharpe", "pbo",
    "probabilistic_sharpe_ratio", "psr_from_moments", "sharpe_moments",
]

EULER_GAMMA = 0.5772156649015329
_N = NormalDist()


@dataclass(frozen=True)
class PBOResult:
    """pbo: fraction of logits <= 0; logits (C,); best_is (C,) the IS-best configuration of each
    combination; perf_is, perf_oos (C,): its IS and OOS metric; rank_oos (C,) its OOS rank in
    [1, N]; prob_oos_loss: fraction of combinations where the IS-best has OOS metric < 0;
    degradation_slope: least-squares slope of perf_oos on perf_is (negative is typical of overfitting)."""

    pbo: float
    logits: np.ndarray
    best_is: np.ndarray
    perf_is: np.ndarray
    perf_oos: np.ndarray
    rank_oos: np.ndarray
    prob_oos_loss: float
    degradation_slope: float
    n_blocks: int
    n_combinations: int


def _rank_avg(v: np.ndarray) -> np.ndarray:
    """Ranks 1..N of each row of v (C, N), ties given their average rank."""
    C, N = v.shape
    order = np.argsort(v, axis=1, kind="stable")
    sv = np.take_along_axis(v, order, axis=1)
    ranks = np.empty((C, N))
    for c in range(C):  # ties are rare; a per-row pass keeps this exact and simple
        s = sv[c]
        starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
        ends = np.r_[starts[1:], N]
        ranks[c, order[c]] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return ranks


def _block_metric(sums, sq, cnt, metric: str):
    mean = sums / cnt
    if metric == "mean":
        return mean
    var = (sq - sums * sums / cnt) / (cnt - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        sr = mean / np.sqrt(np.maximum(var, 0.0))
    return np.where(var > 0, sr, 0.0)


def pbo(perf, n_blocks: int = 16, metric: str | Callable = "sharpe") -> PBOResult:
    """Probability of backtest overfitting of N configurations by CSCV (see the module docstring).

    Args:
      perf: (T, N) per-period returns (or any per-period performance) of N >= 2 configurations over
        the same T periods, in time order; finite.
      n_blocks: S, even, 2 <= S <= T.
      metric: "sharpe" (mean / std, ddof 1; 0 where std is 0), "mean", or a callable
        ``f(rows (k, N)) -> (N,)`` applied to the IS and OOS rows (slower: one call per combination).
    """
    perf = np.asarray(perf, np.float64)
    if perf.ndim != 2 or perf.shape[1] < 2:
        raise ValueError(f"perf must be (T periods, N >= 2 configurations), got shape {perf.shape}")
    bad = np.argwhere(~np.isfinite(perf))
    if bad.size:
        raise ValueError(f"perf is not finite at period {bad[0][0]}, configuration {bad[0][1]}")
    T, N = perf.shape
    if not (isinstance(n_blocks, (int, np.integer)) and n_blocks >= 2 and n_blocks % 2 == 0):
        raise ValueError(f"n_blocks must be an even integer >= 2, got {n_blocks!r}")
    if n_blocks > T // 2:
        raise ValueError(f"n_blocks={n_blocks} needs at least 2 periods per block, have T={T}")
    blocks = np.array_split(np.arange(T), n_blocks)
    combos = np.array(list(itertools.combinations(range(n_blocks), n_blocks // 2)))
    member = np.zeros((len(combos), n_blocks))
    member[np.arange(len(combos))[:, None], combos] = 1.0  # (C, S): block in IS
    if callable(metric):
        m_is = np.empty((len(combos), N))
        m_oos = np.empty((len(combos), N))
        for c in range(len(combos)):
            inside = np.concatenate([blocks[b] for b in range(n_blocks) if member[c, b]])
            outside = np.concatenate([blocks[b] for b in range(n_blocks) if not member[c, b]])
            m_is[c] = metric(perf[inside])
            m_oos[c] = metric(perf[outside])
    elif metric in ("sharpe", "mean"):
        s = np.stack([perf[b].sum(axis=0) for b in blocks])            # (S, N)
        q = np.stack([(perf[b] ** 2).sum(axis=0) for b in blocks])     # (S, N)
        k = np.array([b.size for b in blocks], np.float64)             # (S,)
        out = 1.0 - member
        m_is = _block_metric(member @ s, member @ q, (member @ k)[:, None], metric)
        m_oos = _block_metric(out @ s, out @ q, (out @ k)[:, None], metric)
    else:
        raise ValueError(f"metric must be 'sharpe', 'mean' or a callable, got {metric!r}")
    best = np.argmax(m_is, axis=1)
    rows = np.arange(len(combos))
    rank = _rank_avg(m_oos)[rows, best]
    omega = rank / (N + 1.0)
    logits = np.log(omega / (1.0 - omega))
    x, yv = m_is[rows, best], m_oos[rows, best]
    vx = np.var(x)
    slope = float(np.cov(x, yv, ddof=0)[0, 1] / vx) if vx > 0 else float("nan")
    return PBOResult(float(np.mean(logits <= 0)), logits, best, x, yv, rank,
                     float(np.mean(yv < 0)), slope, n_blocks, len(combos))


# ---------------------------------------------------------------------------------- deflated Sharpe


def sharpe_moments(returns) -> tuple[float, float, float, int]:
    """(SR = mean / std with ddof 1, skewness g3, kurtosis g4 (non-excess), T) of per-period returns.
    g3 = m3 / m2^1.5 and g4 = m4 / m2^2 with central moments m_k = mean((r - mean)^k)."""
    r = np.asarray(returns, np.float64)
    if r.ndim != 1 or r.size < 3:
        raise ValueError(f"returns must be 1-D with at least 3 periods, got shape {r.shape}")
    if not np.all(np.isfinite(r)):
        raise ValueError(f"returns are not finite at period {int(np.flatnonzero(~np.isfinite(r))[0])}")
    d = r - r.mean()
    m2 = np.mean(d * d)
    if not m2 > 0:
        raise ValueError("returns are constant: the Sharpe ratio is undefined")
    return (float(r.mean() / r.std(ddof=1)), float(np.mean(d ** 3) / m2 ** 1.5),
            float(np.mean(d ** 4) / m2 ** 2), int(r.size))


def psr_from_moments(sr: float, sr_benchmark: float, skew: float, kurtosis: float,
                     n_periods: int) -> float:
    """PSR from its ingredients (all per period; kurtosis non-excess, 3 for a normal)."""
    return _psr(sr, sr_benchmark, skew, kurtosis, n_periods)


def _psr(sr, sr_star, skew, kurt, T):
    if not T >= 2:
        raise ValueError(f"PSR needs at least 2 periods, got {T}")
    denom = 1.0 - skew * sr + (kurt - 1.0) / 4.0 * sr * sr
    if not denom > 0:
        raise ValueError(f"PSR undefined: 1 - g3 SR + (g4 - 1)/4 SR^2 = {denom} <= 0 "
                         f"(SR={sr}, skew={skew}, kurtosis={kurt})")
    return _N.cdf((sr - sr_star) * math.sqrt(T - 1) / math.sqrt(denom))


def probabilistic_sharpe_ratio(returns, sr_benchmark: float = 0.0) -> float:
    """PSR: probability that the true per-period Sharpe ratio exceeds ``sr_benchmark`` (per period)."""
    sr, g3, g4, T = sharpe_moments(returns)
    return _psr(sr, sr_benchmark, g3, g4, T)


def expected_max_sharpe(sr_variance: float, n_trials: int) -> float:
    """E[max of N trial Sharpe ratios] under zero true skill (the False Strategy theorem):
    ``sqrt(V) ((1 - gamma) Phi^-1(1 - 1/N) + gamma Phi^-1(1 - 1/(N e)))``; 0 for N = 1."""
    if not (isinstance(n_trials, (int, np.integer)) and n_trials >= 1):
        raise ValueError(f"n_trials must be an integer >= 1, got {n_trials!r}")
    if not (sr_variance >= 0 and math.isfinite(sr_variance)):
        raise ValueError(f"sr_variance must be finite and >= 0, got {sr_variance}")
    if n_trials == 1:
        return 0.0
    z = ((1 - EULER_GAMMA) * _N.inv_cdf(1 - 1 / n_trials)
         + EULER_GAMMA * _N.inv_cdf(1 - 1 / (n_trials * math.e)))
    return math.sqrt(sr_variance) * z


@dataclass(frozen=True)
class DSRResult:
    """dsr = PSR(sr_benchmark); psr_zero = PSR(0); sr: the chosen strategy's per-period Sharpe
    ratio; sr_benchmark: the expected maximum Sharpe of n_trials unskilled trials; sr_variance,
    skew, kurtosis (non-excess), n_periods: the inputs used."""

    dsr: float
    psr_zero: float
    sr: float
    sr_benchmark: float
    n_trials: int
    sr_variance: float
    skew: float
    kurtosis: float
    n_periods: int


def deflated_sharpe_ratio(returns, trial_sharpes=None, *, n_trials: int | None = None,
                          sr_variance: float | None = None) -> DSRResult:
    """Deflated Sharpe ratio of the chosen strategy's per-period returns (T,).

    Give either ``trial_sharpes`` (N,), the per-period Sharpe ratios of all N configurations tried
    (including the chosen one), or ``n_trials`` and ``sr_variance`` directly.
    """
    sr, g3, g4, T = sharpe_moments(returns)
    if trial_sharpes is not None:
        ts = np.asarray(trial_sharpes, np.float64)
        if ts.ndim != 1 or ts.size < 1 or not np.all(np.isfinite(ts)):
            raise ValueError("trial_sharpes must be a non-empty 1-D array of finite Sharpe ratios")
        n_trials = int(ts.size)
        sr_variance = float(ts.var(ddof=1)) if ts.size > 1 else 0.0
    elif n_trials is None or sr_variance is None:
        raise ValueError("give trial_sharpes, or both n_trials and sr_variance")
    sr0 = expected_max_sharpe(float(sr_variance), int(n_trials))
    return DSRResult(_psr(sr, sr0, g3, g4, T), _psr(sr, 0.0, g3, g4, T), sr, sr0, int(n_trials),
                     float(sr_variance), g3, g4, T)
