"""Streaming GARCH(1,1) variance update for the live path (Numba), the counterpart of the batch filter
in `bot4jax.models.garch` (same recursion, same parameters):

    e_t       = r_t - mu
    s_{t+1}   = omega + alpha * e_t^2 + beta * s_t

Layouts (float64 arrays, preallocated by the caller; nothing is allocated per update):

    params  (PARAMS_SIZE = 4):  [mu, omega, alpha, beta]
    state   (STATE_SIZE = 3):   [0] SIGMA2: conditional variance of the next, not yet seen return
                                [1] RESID:  last residual e_t (0.0 before the first update)
                                [2] COUNT:  number of updates applied (float)

Units: returns in the unit the model was fitted in (e.g. percent), variances in its square.
Start a state with `init_state(sigma2_next)`, e.g. `GarchResult.next_variance` of a fit on the
history up to now (so the first streamed return is the one after the fitted sample).
"""
from __future__ import annotations

import numpy as np
from numba import njit

PARAMS_SIZE = 4
STATE_SIZE = 3
MU, OMEGA, ALPHA, BETA = 0, 1, 2, 3
SIGMA2, RESID, COUNT = 0, 1, 2


def init_state(sigma2_next: float) -> np.ndarray:
    """A fresh state whose next-return variance is sigma2_next (> 0)."""
    if not (np.isfinite(sigma2_next) and sigma2_next > 0.0):
        raise ValueError(f"sigma2_next must be a finite positive variance, got {sigma2_next}")
    state = np.zeros(STATE_SIZE, dtype=np.float64)
    state[SIGMA2] = sigma2_next
    return state


def make_params(mu: float, omega: float, alpha: float, beta: float) -> np.ndarray:
    """The params array of the kernel from the model's parameters."""
    return np.array([mu, omega, alpha, beta], dtype=np.float64)


@njit(cache=True, nogil=True, fastmath=False)
def garch_variance_update_nb(state, params, r):
    """Consume one return r: state[SIGMA2] becomes omega + alpha (r - mu)^2 + beta state[SIGMA2].

    Updates `state` in place and returns the new next-return variance. A non-finite r leaves the
    state unchanged and returns NaN (the caller decides what to do; the hot path never raises).
    """
    if not np.isfinite(r):
        return np.nan
    e = r - params[MU]
    s = params[OMEGA] + params[ALPHA] * e * e + params[BETA] * state[SIGMA2]
    state[SIGMA2] = s
    state[RESID] = e
    state[COUNT] += 1.0
    return s


@njit(cache=True, nogil=True)
def garch_variance_path_nb(state, params, returns, out):
    """Apply `garch_variance_update_nb` to every return in order; out[i] = variance of the return
    after returns[i]. returns, out: (n,) float64. Returns out."""
    for i in range(returns.shape[0]):
        out[i] = garch_variance_update_nb(state, params, returns[i])
    return out
