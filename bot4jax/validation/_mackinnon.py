"""MacKinnon's (1994) approximate asymptotic p-values of the Dickey-Fuller tau statistic.

Reference: J. G. MacKinnon (1994), "Approximate asymptotic distribution functions for unit-root and
cointegration tests", Journal of Business & Economic Statistics 12(2), 167-176. The numbers below are
the paper's response-surface coefficients for one I(1) variable (the ADF case, N = 1), as tabulated
there and as used by statsmodels' ``mackinnonp``.

The p-value of an ADF statistic tau is the standard normal CDF of a polynomial in tau:

    tau > tau_max                 p = 1
    tau < tau_min                 p = 0           (outside the range the surface was fitted on)
    tau_min <= tau <= tau_star    p = Phi(g0 + g1 tau + g2 tau^2)                 (small-p branch)
    tau_star < tau <= tau_max     p = Phi(d0 + d1 tau + d2 tau^2 + d3 tau^3)      (large-p branch)

The paper prints g2 in units of 1e-2 and d1, d2 in units of 1e-1 and d3 in units of 1e-2; the tables
keep the printed numbers and the scales are applied below.
"""
from __future__ import annotations

import math

# deterministic terms of the test regression: "n" none, "c" constant, "ct" constant and linear trend,
# "ctt" constant, linear and quadratic trend
REGRESSIONS = ("n", "c", "ct", "ctt")

#                 tau_min  tau_star tau_max
_CUTOFFS = {
    "n": (-19.04, -1.04, math.inf),
    "c": (-18.83, -1.61, 2.74),
    "ct": (-16.18, -2.89, 0.7),
    "ctt": (-17.17, -3.21, 0.54),
}

# small-p branch (g0, g1, g2 x 1e-2), as printed
_SMALL_P = {
    "n": (0.6344, 1.2378, 3.2496),
    "c": (2.1659, 1.4412, 3.8269),
    "ct": (3.2512, 1.6047, 4.9588),
    "ctt": (4.0003, 1.658, 4.8288),
}
_SMALL_P_SCALE = (1.0, 1.0, 1e-2)

# large-p branch (d0, d1 x 1e-1, d2 x 1e-1, d3 x 1e-2), as printed
_LARGE_P = {
    "n": (0.4797, 9.3557, -0.6999, 3.3066),
    "c": (1.7339, 9.3202, -1.2745, -1.0368),
    "ct": (2.5261, 6.1654, -3.7956, -6.0285),
    "ctt": (3.0778, 4.9529, -4.1477, -5.9359),
}
_LARGE_P_SCALE = (1.0, 1e-1, 1e-1, 1e-2)


def norm_cdf(z: float) -> float:
    """Standard normal CDF, Phi(z) = erfc(-z / sqrt 2) / 2: erfc keeps the left tail accurate in relative
    terms down to the smallest normal double (about z = -37.5), where it underflows to 0."""
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


def _poly(coef: tuple[float, ...], scale: tuple[float, ...], t: float) -> float:
    # Horner from the highest power: sum_k coef[k] * scale[k] * t^k
    acc = 0.0
    for c, s in zip(reversed(coef), reversed(scale)):
        acc = acc * t + c * s
    return acc


def mackinnon_p(tau: float, regression: str = "c") -> float:
    """Approximate p-value of the ADF statistic ``tau`` (left tail: small tau rejects a unit root).

    ``regression`` names the deterministic terms of the test regression (one of ``REGRESSIONS``).
    Returns exactly 1.0 above tau_max and exactly 0.0 below tau_min, as statsmodels does.
    """
    if regression not in _CUTOFFS:
        raise ValueError(f"regression must be one of {REGRESSIONS}, got {regression!r}")
    if math.isnan(tau):
        return math.nan
    tau_min, tau_star, tau_max = _CUTOFFS[regression]
    if tau > tau_max:
        return 1.0
    if tau < tau_min:
        return 0.0
    if tau <= tau_star:
        return norm_cdf(_poly(_SMALL_P[regression], _SMALL_P_SCALE, tau))
    return norm_cdf(_poly(_LARGE_P[regression], _LARGE_P_SCALE, tau))
