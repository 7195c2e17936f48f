"""Path statistics accumulated inside the time scan, and the risk report reduced from them.

Per path, with X_t the cumulative log-return (X_0 = 0) and P_t = max_{s<=t} X_s its running peak,
the scan carries O(1) numbers, so memory is O(paths) whatever the number of steps:

    x   = X_t
    dd  = P_t - X_t   by Lindley's recursion dd_t = max(dd_{t-1} - r_t, 0) (no peak needed)
    mdd = max_{s<=t} dd_s, the maximum drawdown in log terms (1 - exp(-mdd) as a fraction of equity)
    rt  = recovery bookkeeping of the maximum drawdown:
            0        no drawdown yet,
            -tau     the maximum drawdown so far bottomed at step tau and has not recovered,
            k > 0    it recovered k steps after its trough: X_{tau+k} >= P_tau (back to breakeven,
                     i.e. the equity regained the peak it fell from) for the first time
    uw  = number of steps with dd_t > 0 (time under water)

`risk_report` then reduces the per-path values (over all devices when the paths are sharded):
terminal simple return R = exp(X_T) - 1; VaR_a = -Q_{1-a}(R) with Q numpy's default (linear)
sample quantile, CVaR_a = -mean(R_i : R_i <= Q_{1-a}(R)); both are losses as positive fractions of
the starting equity.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from bot4jax.jaxcfg import jax, jnp

__all__ = ["PathState", "PathStats", "RiskReport", "init", "update", "finish", "risk_report",
           "sort_f64", "quantile_sorted", "VAR_LEVELS", "DRAWDOWN_LEVELS"]

VAR_LEVELS = (0.95, 0.99, 0.999)
DRAWDOWN_LEVELS = (0.5, 0.75, 0.9, 0.95, 0.99)


class PathState(NamedTuple):
    """The scan carry for B paths, each field (B,)."""
    x: Any    # float64 cumulative log-return
    dd: Any   # float64 current log drawdown P_t - X_t
    mdd: Any  # float64 maximum log drawdown
    rt: Any   # int32 recovery bookkeeping (see the module docstring)
    uw: Any   # int32 steps under water


class PathStats(NamedTuple):
    """Per-path results, each (n_paths,)."""
    log_return: Any        # float64 X_T
    max_drawdown_log: Any  # float64 max_t (P_t - X_t)
    recovery: Any          # int32 rt at the end: > 0 recovered after that many steps, < 0 not
    underwater: Any        # int32 steps under water


def init(n: int) -> PathState:
    z = jnp.zeros(n, jnp.float64)
    i = jnp.zeros(n, jnp.int32)
    return PathState(z, z, z, i, i)


def update(s: PathState, r, t) -> PathState:
    """Fold the log-returns r (B,) of step t (int32 scalar, 1-based) into the state."""
    x = s.x + r
    dd = jnp.maximum(s.dd - r, 0.0)
    new = dd > s.mdd
    rt = jnp.where(new, -t, jnp.where((s.rt < 0) & (dd <= 0.0), t + s.rt, s.rt))
    return PathState(x, dd, jnp.maximum(s.mdd, dd), rt, s.uw + (dd > 0.0).astype(jnp.int32))


def finish(s: PathState) -> PathStats:
    return PathStats(s.x, s.mdd, s.rt, s.uw)


_FLIP = np.int64(0x7FFFFFFFFFFFFFFF)


def sort_f64(a):
    """Ascending sort of a float64 vector through an order-preserving int64 key.

    XLA's CPU sort is about 8x faster on integers than on floats (whose comparator handles NaN and
    -0.0); for IEEE doubles, flipping all bits but the sign of the negative ones keeps the order.
    """
    i = jax.lax.bitcast_convert_type(a, jnp.int64)
    k = jnp.sort(jnp.where(i < 0, i ^ _FLIP, i))
    return jax.lax.bitcast_convert_type(jnp.where(k < 0, k ^ _FLIP, k), jnp.float64)


def quantile_sorted(s, q):
    """numpy.quantile(x, q) (method 'linear') from s = sorted(x); q a static sequence in [0, 1]."""
    n = s.shape[0]
    h = (n - 1) * np.asarray(q, dtype=np.float64)
    lo = np.floor(h).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    g = h - lo
    a, b = s[lo], s[hi]
    d = b - a
    return jnp.where(g >= 0.5, b - d * (1 - g), a + d * g)  # numpy's _lerp, for equal rounding


class RiskReport(NamedTuple):
    """Risk of the simulated terminal return and path drawdowns (scalars and small vectors).

    Returns are fractions of the starting equity, times are in steps.
    var, cvar: (len(levels),) losses at the confidence levels `levels` (e.g. var[0] = 0.12: a 5%
    chance of losing more than 12%). max_drawdown_*: of the equity, as fractions (0.3 = -30% from
    the running peak). recovery_mean: mean number of steps from the trough of a path's maximum
    drawdown back to the peak it fell from, over the paths that got back within the horizon
    (nan if none did); recovered_fraction: their share of the paths that had a drawdown.
    underwater_mean: mean number of steps a path spent below its running peak.
    """
    n_paths: Any
    n_steps: Any
    levels: Any
    var: Any
    cvar: Any
    mean_return: Any
    std_return: Any
    log_return_mean: Any
    log_return_var: Any
    max_drawdown_mean: Any
    max_drawdown_levels: Any
    max_drawdown_quantiles: Any
    recovery_mean: Any
    recovered_fraction: Any
    underwater_mean: Any

    def to_dict(self) -> dict:
        """Plain Python numbers and lists, for JSON."""
        out = {}
        for k, v in zip(self._fields, self):
            a = np.asarray(v)
            out[k] = a.tolist() if a.ndim else (int(a) if a.dtype.kind in "iu" else float(a))
        return out


def risk_report(stats: PathStats, n_steps: int, levels=VAR_LEVELS,
                drawdown_levels=DRAWDOWN_LEVELS) -> RiskReport:
    """Reduce per-path statistics to a `RiskReport` (traceable: call under jit)."""
    x = stats.log_return
    n = x.shape[0]
    r = jnp.expm1(x)
    s = sort_f64(r)
    q = quantile_sorted(s, [1.0 - a for a in levels])
    idx = jnp.arange(n)
    count = jnp.searchsorted(s, q, side="right")  # how many R_i <= q
    tail_sum = jnp.sum(jnp.where(idx[None, :] < count[:, None], s[None, :], 0.0), axis=1)
    cvar = -tail_sum / count
    mdd = -jnp.expm1(-stats.max_drawdown_log)
    recovered = stats.recovery > 0
    n_rec = jnp.sum(recovered)
    n_dd = jnp.sum(stats.max_drawdown_log > 0)
    rec_sum = jnp.sum(jnp.where(recovered, stats.recovery, 0).astype(jnp.float64))
    return RiskReport(
        n_paths=jnp.asarray(n), n_steps=jnp.asarray(n_steps),
        levels=jnp.asarray(levels, jnp.float64), var=-q, cvar=cvar,
        mean_return=jnp.mean(r), std_return=jnp.std(r, ddof=1),
        log_return_mean=jnp.mean(x), log_return_var=jnp.var(x, ddof=1),
        max_drawdown_mean=jnp.mean(mdd),
        max_drawdown_levels=jnp.asarray(drawdown_levels, jnp.float64),
        max_drawdown_quantiles=quantile_sorted(sort_f64(mdd), drawdown_levels),
        recovery_mean=jnp.where(n_rec > 0, rec_sum / jnp.maximum(n_rec, 1), jnp.nan),
        recovered_fraction=jnp.where(n_dd > 0, n_rec / jnp.maximum(n_dd, 1), jnp.nan),
        underwater_mean=jnp.mean(stats.underwater.astype(jnp.float64)),
    )
