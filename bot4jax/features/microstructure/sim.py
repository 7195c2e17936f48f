"""Ground-truth generators: small market models whose parameters the microstructure estimators must
recover (tests and the accuracy table of `experiments/bench_microstructure.py`).

Each takes the sample size, the true parameters and a seed (NumPy `default_rng`), and returns NumPy
arrays plus, where it is a derived quantity, the true value of the estimand.

- `roll_model`: Roll (1984). m_t = m_{t-1} + sigma eps_t, p_t = m_t + c Q_t, Q_t = +-1 i.i.d. fair:
  the true spread is 2c.
- `kyle_model`: linear impact. dp_t = lambda x_t + sigma eps_t with x_t i.i.d. N(0, volume_sd^2):
  the true slope is lambda.
- `noisy_price`: log p_t = x_t + u_t, x_t a Gaussian random walk (sigma per step), u_t i.i.d.
  N(0, noise_sd^2): the true noise variance is noise_sd^2 (in squared log price).
- `huang_stoll_model`: the three-way spread model of Huang and Stoll (1997), see
  `bot4jax.features.microstructure.decomposition`; the true shares are alpha, beta, 1 - alpha - beta.
- `two_market_model`: two log prices correcting towards each other with independent innovations,
  da_t = -g_a z_{t-1} + u_a,t, db_t = g_b z_{t-1} + u_b,t (z = a - b): the true information share of
  a is g_b^2 s_a^2 / (g_b^2 s_a^2 + g_a^2 s_b^2) (Hasbrouck 1995 with a diagonal Omega, where the
  lower and upper bounds coincide).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np


def _rng(seed) -> np.random.Generator:
    return np.random.default_rng(seed)


def _signs(rng: np.random.Generator, n: int, reversal_prob: float) -> np.ndarray:
    """+-1 Markov chain: each sign flips with probability `reversal_prob`; the first is fair."""
    flips = np.where(rng.random(n) < reversal_prob, -1.0, 1.0)
    flips[0] = 1.0 if rng.random() < 0.5 else -1.0
    return np.cumprod(flips)


class RollSample(NamedTuple):
    price: np.ndarray   # (n,) trade prices
    mid: np.ndarray     # (n,) efficient price
    side: np.ndarray    # (n,) +1 / -1
    spread: float       # true full spread 2c


def roll_model(n: int, half_spread: float, sigma: float, seed=0, price0: float = 100.0) -> RollSample:
    """Roll's model: a random-walk efficient price and trades at m_t +- half_spread (fair i.i.d. sides)."""
    rng = _rng(seed)
    mid = price0 + np.cumsum(sigma * rng.standard_normal(n))
    side = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    return RollSample(mid + half_spread * side, mid, side, 2.0 * half_spread)


class KyleSample(NamedTuple):
    price_change: np.ndarray   # (n,)
    signed_volume: np.ndarray  # (n,)
    lam: float


def kyle_model(n: int, lam: float, sigma: float, seed=0, volume_sd: float = 1.0) -> KyleSample:
    """Linear impact: dp_t = lam * x_t + sigma * eps_t, x_t ~ N(0, volume_sd^2) i.i.d."""
    rng = _rng(seed)
    x = volume_sd * rng.standard_normal(n)
    return KyleSample(lam * x + sigma * rng.standard_normal(n), x, lam)


class NoisySample(NamedTuple):
    price: np.ndarray       # (n,) observed prices
    efficient: np.ndarray   # (n,) exp(x_t)
    noise_variance: float   # noise_sd^2, squared log price


def noisy_price(n: int, sigma: float, noise_sd: float, seed=0, price0: float = 100.0) -> NoisySample:
    """Observed log price = random walk (sigma per step) + i.i.d. Gaussian noise (noise_sd)."""
    rng = _rng(seed)
    x = np.log(price0) + np.cumsum(sigma * rng.standard_normal(n))
    y = x + noise_sd * rng.standard_normal(n)
    return NoisySample(np.exp(y), np.exp(x), noise_sd ** 2)


class HuangStollSample(NamedTuple):
    price: np.ndarray
    side: np.ndarray
    half_spread: float
    adverse_selection: float
    inventory: float
    order_processing: float
    reversal_prob: float


def huang_stoll_model(n: int, half_spread: float, alpha: float, beta: float, reversal_prob: float,
                      sigma: float, seed=0, price0: float = 100.0) -> HuangStollSample:
    """Huang-Stoll (1997): V_t = V_{t-1} + alpha (S/2)(Q_{t-1} - (1 - 2 pi) Q_{t-2}) + sigma e_t,
    M_t = V_t + beta (S/2) sum_{i<t} Q_i, P_t = M_t + (S/2) Q_t, Q a sign chain flipping with prob. pi."""
    rng = _rng(seed)
    q = _signs(rng, n + 2, reversal_prob)  # two signs before the sample
    h = half_spread
    surprise = q[1:-1] - (1.0 - 2.0 * reversal_prob) * q[:-2]   # Q_{t-1} - E[Q_{t-1} | Q_{t-2}]
    v = price0 + np.cumsum(alpha * h * surprise + sigma * rng.standard_normal(n))
    inventory = np.cumsum(q[1:-1])                               # sum of Q_i for i < t
    price = v + beta * h * inventory + h * q[2:]
    return HuangStollSample(price, q[2:], h, alpha, beta, 1.0 - alpha - beta, reversal_prob)


class TwoMarketSample(NamedTuple):
    price_a: np.ndarray
    price_b: np.ndarray
    information_share_a: float


def two_market_model(n: int, gamma_a: float, gamma_b: float, sd_a: float, sd_b: float, seed=0,
                     price0: float = 100.0) -> TwoMarketSample:
    """Two log prices error-correcting towards each other (see the module docstring); 0 < g_a + g_b < 2."""
    if not 0.0 < gamma_a + gamma_b < 2.0:
        raise ValueError("two_market_model needs 0 < gamma_a + gamma_b < 2 (a stationary gap)")
    rng = _rng(seed)
    ua = sd_a * rng.standard_normal(n)
    ub = sd_b * rng.standard_normal(n)
    # z_t = (1 - g_a - g_b) z_{t-1} + u_a,t - u_b,t: the only sequential part (Python floats)
    rho = 1.0 - gamma_a - gamma_b
    z = np.empty(n)
    prev = 0.0
    for t, e in enumerate((ua - ub).tolist()):
        prev = rho * prev + e
        z[t] = prev
    z_lag = np.concatenate([[0.0], z[:-1]])
    a = np.log(price0) + np.cumsum(-gamma_a * z_lag + ua)
    b = np.log(price0) + np.cumsum(gamma_b * z_lag + ub)
    num = gamma_b ** 2 * sd_a ** 2
    return TwoMarketSample(np.exp(a), np.exp(b), num / (num + gamma_a ** 2 * sd_b ** 2))
