"""Three-way spread decomposition of Huang and Stoll (1997, Rev. Financ. Stud. 10(4)).

The model: a trade indicator Q_t (+1 buy, -1 sell) that continues with probability 1 - pi
(E[Q_{t-1} | Q_{t-2}] = (1 - 2 pi) Q_{t-2}); the fundamental value moves on the surprise in the
order flow (adverse selection, share alpha of the half spread S/2), the dealer's quotes shift against
the accumulated inventory (share beta), and the trade prints at the quote:

    V_t = V_{t-1} + alpha (S/2) (Q_{t-1} - (1 - 2 pi) Q_{t-2}) + e_t
    M_t = V_t + beta (S/2) sum_{i < t} Q_i,           P_t = M_t + (S/2) Q_t

which gives the trade-price regression

    dP_t = (S/2) Q_t + (alpha + beta - 1)(S/2) Q_{t-1} - alpha (S/2)(1 - 2 pi) Q_{t-2} + e_t.

Estimation (exactly identified method of moments, which is what the paper's GMM reduces to with
these four moment conditions): OLS without intercept of dP_t on (Q_t, Q_{t-1}, Q_{t-2}) gives
(b0, b1, b2), and 1 - 2 pi_hat = sum Q_{t-1} Q_{t-2} / sum Q_{t-2}^2. Then

    S/2 = b0,  alpha = -b2 / (b0 (1 - 2 pi)),  beta = b1 / b0 + 1 - alpha,  order processing = 1 - alpha - beta

so the three shares sum to 1 by construction (each may leave [0, 1] in a noisy sample). alpha is not
identified when trade signs are serially uncorrelated (pi = 1/2): NaN there.
"""
from __future__ import annotations

from functools import partial
from typing import NamedTuple

from bot4jax.features.microstructure._rolling import (
    NAN, check_window, chol_solve, cholesky, diff, lag, series, window_sums,
)
from bot4jax.jaxcfg import jax, jnp


class SpreadDecomposition(NamedTuple):
    """Huang-Stoll estimates; each field a 0-d array (whole sample) or (n,) (rolling)."""

    half_spread: object       # S/2, price units
    adverse_selection: object  # alpha, share of the half spread
    inventory: object          # beta
    order_processing: object   # 1 - alpha - beta
    reversal_prob: object      # pi: probability that the next trade has the opposite sign


# Products that enter the normal equations, in this order (see `hs_terms`).
N_TERMS = 9


def hs_terms(price, side):
    """The 9 per-trade products whose sums estimate the model, each (n,), NaN where undefined (t < 2):

    Q_t^2, Q_{t-1}^2, Q_{t-2}^2, Q_t Q_{t-1}, Q_t Q_{t-2}, Q_{t-1} Q_{t-2}, dP_t Q_t, dP_t Q_{t-1}, dP_t Q_{t-2}
    """
    dp = diff(price)
    q0, q1, q2 = side, lag(side, 1), lag(side, 2)
    return [q0 * q0, q1 * q1, q2 * q2, q0 * q1, q0 * q2, q1 * q2, dp * q0, dp * q1, dp * q2]


def hs_from_sums(s) -> SpreadDecomposition:
    """The estimates from the 9 sums of `hs_terms` (arrays of any one shape)."""
    a00, a11, a22, a01, a02, a12, y0, y1, y2 = s
    L = cholesky([[a00, a01, a02], [a01, a11, a12], [a02, a12, a22]])
    b0, b1, b2 = chol_solve(L, [y0, y1, y2])
    rho = a12 / a22  # 1 - 2 pi
    ok = jnp.abs(rho) > 1e-12
    alpha = jnp.where(ok, -b2 / (b0 * jnp.where(ok, rho, 1.0)), NAN)
    beta = b1 / b0 + 1.0 - alpha
    return SpreadDecomposition(b0, alpha, beta, 1.0 - alpha - beta, 0.5 * (1.0 - rho))


@partial(jax.jit, static_argnames=("window",))
def _hs(price, side, window):
    if window is None:
        return hs_from_sums([jnp.sum(t[2:]) for t in hs_terms(price, side)])
    # a trade whose products involve a NaN (or t < 2) is bad; its products are zeroed
    terms = hs_terms(price, side)
    bad = jnp.isnan(terms[6] + terms[7] + terms[8] + terms[3] + terms[4] + terms[5])
    sums, ok = window_sums([jnp.where(bad, 0.0, t) for t in terms], window, bad)
    return SpreadDecomposition(*(jnp.where(ok, v, NAN) for v in hs_from_sums(sums)))


def spread_decomposition(price, side, window=None) -> SpreadDecomposition:
    """Huang-Stoll three-way decomposition of the spread into adverse selection, inventory and order
    processing shares (see the module docstring for the model and the estimator).

    price: (n,) trade prices; side: (n,) trade indicators +1 buyer- / -1 seller-initiated.
    window: None -> one estimate over trades 2..n-1 (0-d arrays); int w >= 3 -> rolling over the
    last w trades, each field (n,), NaN for t < w + 1 and where the window holds a NaN.
    Units: half_spread in price units (pass log prices for a fraction); shares dimensionless.
    """
    window = check_window(window, minimum=3)
    p = series(price, "price")
    q = series(side, "side", p.shape[0])
    if window is None and p.shape[0] < 5:
        raise ValueError(f"spread_decomposition needs at least 5 trades; got {p.shape[0]}")
    return _hs(p, q, window)
