"""What training hands to the live risk layer: a bar-volatility model and the payoff ratio.

The volatility model is a GARCH(1,1)-t fitted to the training span's bar log returns in percent
(arch's convention, and better conditioned); live updates its variance one bar at a time with the
streaming kernel and divides by scale^2 for decimal units. A fit that did not converge is never used
as if fine: the model falls back to a constant variance (alpha = beta = 0, omega = the sample
variance) and says so.
"""
from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger("bot4jax.risk")

SCALE = 100.0  # percent returns


def fit_bar_volatility(log_returns: np.ndarray) -> dict:
    """GARCH(1,1)-t of `log_returns` (decimal, one per bar) as a JSON-ready dict (percent units)."""
    from bot4jax.models import garch

    r = SCALE * np.asarray(log_returns, np.float64)
    res = garch.fit(r, dist="t")
    if res.converged:
        p = {k: float(v) for k, v in res.params.items()}
        h0 = float(res.next_variance)
        long_run = float(res.unconditional_variance) if res.persistence < 1.0 else h0
        log.info("bar volatility: GARCH(1,1)-t alpha %.4f beta %.4f nu %.2f, long-run vol %.4f %% per bar",
                 p["alpha"], p["beta"], p["nu"], np.sqrt(long_run))
    else:
        var = float(r.var())
        p = {"mu": float(r.mean()), "omega": var, "alpha": 0.0, "beta": 0.0, "nu": None}
        h0 = long_run = var
        log.warning("bar volatility: the GARCH fit did not converge after %d iterations; using a constant "
                    "variance (%.4g %%^2 per bar) for the volatility layers", res.iterations, var)
    return {**p, "scale": SCALE, "h0": h0, "long_run_variance": long_run, "converged": bool(res.converged)}


def payoff_ratio(forward_returns: np.ndarray) -> float:
    """Average gain / average loss of the forward returns (the b of Kelly's f* = p - (1 - p) / b);
    1.0 when either side is empty."""
    fwd = np.asarray(forward_returns, np.float64)
    wins, losses = fwd[fwd > 0], -fwd[fwd < 0]
    if wins.size == 0 or losses.size == 0:
        return 1.0
    return float(wins.mean() / losses.mean())
