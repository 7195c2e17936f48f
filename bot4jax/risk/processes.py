"""Five return processes for Monte Carlo risk: per-step log-returns, pure functions of (params, words).

Every process is one step of a discrete-time model of the log-price X_t = sum_{s<=t} r_s: one
step is one observation period of the returns it was calibrated on (a day for daily returns), and
all parameters are in per-step units of log-return (fractions, not percent).

    gbm        r = (mu - sigma^2/2) + sigma z                           E[e^r] = e^mu
    merton     r = (mu - sigma^2/2 - lam k) + sigma z + sum_{i<=N} Y_i  N ~ Poisson(lam),
               Y_i ~ N(jump_mean, jump_std^2), k = E[e^Y] - 1          E[e^r] = e^mu
    garch_t    r_t = mu + e_t, e_t = sqrt(h_t) z_t, h_{t+1} = omega + alpha e_t^2 + beta h_t,
               z_t = t(nu) sqrt((nu - 2) / nu) (unit variance), h_1 = h0
    regime     r_t = mu[s_t] + sigma[s_t] z_t, s a two-state Markov chain, P(s_{t+1} = j | s_t = i)
               = trans[i, j], P(s_1 = j) = p0[j]
    student_t  r = loc + scale T, T ~ t(nu): a Student-t Levy process seen at unit steps (the
               t law is infinitely divisible), i.e. fat-tailed "Student-t flights"

A `Process` bundles four pure functions; the engine in `montecarlo` calls them on a block of B
paths (global path indices `paths`, uint64 (B,)) and a chunk of K consecutive steps:
    draw(params, seed, t0, K, paths) -> variates, a pytree of (K, B) arrays for steps t0..t0+K-1
    init(params, seed, paths)        -> state, a pytree of (B,) arrays (the state before step 1)
    step(params, state, v_t)         -> (state, r_t (B,) float64), v_t one row of the variates
The variates come from `counter_rng` streams keyed by (seed, stream, step, path), so a path's
numbers never depend on the blocking or on the number of devices. Variates are stored in float32
(half the memory traffic of the inner loop, which bounds its speed on a CPU) and every return
is formed in float64 in `step`: drift + scale * variate. The Merton draw combines its three
variates into one float32 shock (sigma z + jumps) so that the Box-Muller pair is computed once.
"""
from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import numpy as np

from bot4jax.jaxcfg import jax, jnp
from bot4jax.risk import counter_rng as crng

__all__ = [
    "GBMParams", "MertonParams", "GarchTParams", "RegimeParams", "StudentTParams",
    "Process", "GBM", "MERTON", "GARCH_T", "REGIME", "STUDENT_T", "PROCESSES", "get_process",
    "MAX_JUMPS", "MAX_JUMP_RATE",
    "gbm_moments", "merton_moments", "garch_unconditional_variance", "regime_stationary",
]


class GBMParams(NamedTuple):
    mu: Any     # drift per step: E[S_{t+1} / S_t] = exp(mu)
    sigma: Any  # volatility per step of the log-return


class MertonParams(NamedTuple):
    mu: Any         # drift per step, jumps compensated: E[S_{t+1} / S_t] = exp(mu)
    sigma: Any      # diffusion volatility per step
    lam: Any        # expected jumps per step (at most MAX_JUMP_RATE)
    jump_mean: Any  # mean of a log-jump
    jump_std: Any   # standard deviation of a log-jump


class GarchTParams(NamedTuple):
    mu: Any     # mean log-return per step
    omega: Any  # variance intercept (log-return units squared)
    alpha: Any
    beta: Any
    nu: Any     # Student t degrees of freedom, > 2
    h0: Any     # conditional variance of the first step


class RegimeParams(NamedTuple):
    mu: Any     # (2,) mean log-return per step in each state
    sigma: Any  # (2,) volatility per step in each state
    trans: Any  # (2, 2) row-stochastic transition matrix, trans[i, j] = P(j next | i now)
    p0: Any     # (2,) distribution of the state of the first step


class StudentTParams(NamedTuple):
    loc: Any    # location per step
    scale: Any  # scale per step (standard deviation scale * sqrt(nu / (nu - 2)) when nu > 2)
    nu: Any     # degrees of freedom, >= 1 (the float32 sampler's range)


class Process(NamedTuple):
    name: str
    params_type: type
    draw: Callable
    init: Callable
    step: Callable
    check: Callable  # check(params) raises ValueError naming the bad field (concrete params only)


def _f64(x):
    return jnp.asarray(x, dtype=jnp.float64)


def _normals(seed, stream, t0, k, paths):
    """(k, B) standard normals for steps t0..t0+k-1, one word each (the cosine Box-Muller
    output: using the sine too would need a concatenation, which XLA's CPU backend emits as
    unvectorised code, several times slower than the log it saves)."""
    return crng.normal_pair(crng.words(seed, stream, t0 + jnp.arange(k), paths))[0]


def _no_state(params, seed, paths):
    return ()


# --- geometric Brownian motion ---------------------------------------------------------------

def _gbm_draw(p, seed, t0, k, paths):
    return _normals(seed, 0, t0, k, paths)


def _gbm_step(p, state, z):
    mu, sigma = _f64(p.mu), _f64(p.sigma)
    return state, (mu - 0.5 * sigma * sigma) + sigma * z.astype(jnp.float64)


def gbm_moments(p: GBMParams, n_steps: int) -> tuple[float, float]:
    """Mean and variance of the n-step log-return: X_n ~ N(n (mu - sigma^2/2), n sigma^2)."""
    return n_steps * (p.mu - 0.5 * p.sigma ** 2), n_steps * p.sigma ** 2


# --- Merton jump diffusion -------------------------------------------------------------------

MAX_JUMPS = 16         # jumps in one step are truncated at this many ...
MAX_JUMP_RATE = 2.0    # ... which loses P(N > 16 | lam <= 2) < 1e-10 of the probability


def _merton_draw(p, seed, t0, k, paths):
    steps = t0 + jnp.arange(k)
    z, zj = crng.normal_pair(crng.words(seed, 0, steps, paths))
    u = crng.uniform(crng.words(seed, 1, steps, paths))
    _, sigma, lam, m, s = (_f64(a) for a in p)
    # Poisson(lam) by inversion: N = #{j < MAX_JUMPS : u > F(j)}, F the Poisson CDF.
    j = jnp.arange(MAX_JUMPS, dtype=jnp.float64)
    cdf = jnp.cumsum(jnp.exp(-lam + j * jnp.log(lam) - jax.lax.lgamma(j + 1.0)))
    n = jnp.zeros(u.shape, jnp.float64)
    for i in range(MAX_JUMPS):  # unrolled compares: vectorised, no gather
        n = n + (u > cdf[i]).astype(jnp.float64)
    shock = sigma * z.astype(jnp.float64) + n * m + s * jnp.sqrt(n) * zj.astype(jnp.float64)
    return shock.astype(jnp.float32)


def _merton_step(p, state, shock):
    mu, sigma, lam, m, s = (_f64(a) for a in p)
    drift = mu - 0.5 * sigma * sigma - lam * jnp.expm1(m + 0.5 * s * s)
    return state, drift + shock.astype(jnp.float64)


def merton_moments(p: MertonParams, n_steps: int) -> tuple[float, float]:
    """Mean and variance of the n-step log-return of the jump diffusion (Merton 1976):
    per step E r = mu - sigma^2/2 - lam k + lam m, Var r = sigma^2 + lam (s^2 + m^2)."""
    kappa = math.expm1(p.jump_mean + 0.5 * p.jump_std ** 2)
    mean = p.mu - 0.5 * p.sigma ** 2 - p.lam * kappa + p.lam * p.jump_mean
    var = p.sigma ** 2 + p.lam * (p.jump_std ** 2 + p.jump_mean ** 2)
    return n_steps * mean, n_steps * var


# --- GARCH(1,1) with Student t innovations ---------------------------------------------------

def _garch_draw(p, seed, t0, k, paths):
    return crng.student_t(crng.words(seed, 0, t0 + jnp.arange(k), paths), p.nu)


def _garch_init(p, seed, paths):
    return jnp.full(paths.shape, _f64(p.h0))


def _garch_step(p, h, t):
    mu, omega, alpha, beta, nu = (_f64(a) for a in p[:5])
    e = jnp.sqrt(h) * (t.astype(jnp.float64) * jnp.sqrt((nu - 2.0) / nu))  # unit-variance t
    return omega + alpha * e * e + beta * h, mu + e


def garch_unconditional_variance(p: GarchTParams) -> float:
    """omega / (1 - alpha - beta): E[h_t] for every t when h0 equals it (inf if alpha + beta >= 1)."""
    persistence = p.alpha + p.beta
    return p.omega / (1.0 - persistence) if persistence < 1.0 else math.inf


# --- two-state regime switching --------------------------------------------------------------

def _regime_draw(p, seed, t0, k, paths):
    z = _normals(seed, 0, t0, k, paths)
    u = crng.uniform_bits(crng.words(seed, 1, t0 + jnp.arange(k), paths))
    return z, u


def _regime_init(p, seed, paths):
    u = crng.uniform(crng.words(seed, 2, jnp.zeros(1, jnp.int64), paths))[0]
    return u < _f64(p.p0)[1]  # True: state 1


def _regime_step(p, s, v):
    z, u = v
    mu, sigma, trans = _f64(p.mu), _f64(p.sigma), _f64(p.trans)
    r = jnp.where(s, mu[1], mu[0]) + jnp.where(s, sigma[1], sigma[0]) * z.astype(jnp.float64)
    # P(next = 1) as a 32-bit threshold: u ~ Uniform{0..2^32-1}, P(u < k) = k / 2^32
    s_next = u < jnp.where(s, crng.threshold32(trans[1, 1]), crng.threshold32(trans[0, 1]))
    return s_next, r


def regime_stationary(trans) -> np.ndarray:
    """Stationary distribution of a 2 x 2 transition matrix: (p10, p01) / (p01 + p10)."""
    trans = np.asarray(trans, dtype=np.float64)
    p01, p10 = trans[0, 1], trans[1, 0]
    return np.array([p10, p01]) / (p01 + p10)


# --- Student-t flights -----------------------------------------------------------------------

def _student_draw(p, seed, t0, k, paths):
    return crng.student_t(crng.words(seed, 0, t0 + jnp.arange(k), paths), p.nu)


def _student_step(p, state, t):
    return state, _f64(p.loc) + _f64(p.scale) * t.astype(jnp.float64)


# --- parameter checks (on concrete values, before anything is compiled) ------------------------

def _require(name: str, field: str, ok, what: str, value) -> None:
    if not bool(np.all(ok)):
        raise ValueError(f"{name} parameter '{field}' = {np.asarray(value).tolist()} must be {what}")


def _finite(name, p):
    for field, v in zip(p._fields, p):
        _require(name, field, np.isfinite(np.asarray(v, dtype=np.float64)), "finite", v)


def _check_gbm(p):
    _finite("gbm", p)
    _require("gbm", "sigma", np.asarray(p.sigma) >= 0, ">= 0", p.sigma)


def _check_merton(p):
    _finite("merton", p)
    _require("merton", "sigma", np.asarray(p.sigma) >= 0, ">= 0", p.sigma)
    _require("merton", "jump_std", np.asarray(p.jump_std) >= 0, ">= 0", p.jump_std)
    lam = np.asarray(p.lam)
    _require("merton", "lam", (lam > 0) & (lam <= MAX_JUMP_RATE),
             f"in (0, {MAX_JUMP_RATE}] jumps per step (shorter steps for more)", p.lam)


def _check_garch(p):
    _finite("garch_t", p)
    _require("garch_t", "omega", np.asarray(p.omega) > 0, "> 0", p.omega)
    _require("garch_t", "alpha", np.asarray(p.alpha) >= 0, ">= 0", p.alpha)
    _require("garch_t", "beta", np.asarray(p.beta) >= 0, ">= 0", p.beta)
    _require("garch_t", "nu", np.asarray(p.nu) > 2, "> 2 (unit-variance innovations)", p.nu)
    _require("garch_t", "h0", np.asarray(p.h0) > 0, "> 0", p.h0)


def _check_regime(p):
    _finite("regime", p)
    mu, sigma, trans, p0 = (np.asarray(a, dtype=np.float64) for a in p)
    _require("regime", "mu", mu.shape == (2,), "of shape (2,)", mu)
    _require("regime", "sigma", (sigma.shape == (2,)) and np.all(sigma >= 0), ">= 0, shape (2,)", sigma)
    ok = trans.shape == (2, 2) and np.all(trans >= 0) and np.allclose(trans.sum(axis=1), 1.0)
    _require("regime", "trans", ok, "a 2 x 2 row-stochastic matrix", trans)
    ok = p0.shape == (2,) and np.all(p0 >= 0) and np.isclose(p0.sum(), 1.0)
    _require("regime", "p0", ok, "a probability vector of length 2", p0)


def _check_student(p):
    _finite("student_t", p)
    _require("student_t", "scale", np.asarray(p.scale) > 0, "> 0", p.scale)
    _require("student_t", "nu", np.asarray(p.nu) >= 1, ">= 1", p.nu)


GBM = Process("gbm", GBMParams, _gbm_draw, _no_state, _gbm_step, _check_gbm)
MERTON = Process("merton", MertonParams, _merton_draw, _no_state, _merton_step, _check_merton)
GARCH_T = Process("garch_t", GarchTParams, _garch_draw, _garch_init, _garch_step, _check_garch)
REGIME = Process("regime", RegimeParams, _regime_draw, _regime_init, _regime_step, _check_regime)
STUDENT_T = Process("student_t", StudentTParams, _student_draw, _no_state, _student_step,
                    _check_student)
PROCESSES = {p.name: p for p in (GBM, MERTON, GARCH_T, REGIME, STUDENT_T)}


def get_process(process) -> Process:
    """A `Process` from itself or its name ('gbm', 'merton', 'garch_t', 'regime', 'student_t')."""
    if isinstance(process, Process):
        return process
    try:
        return PROCESSES[process]
    except (KeyError, TypeError):
        raise ValueError(f"unknown process {process!r}: choose one of {sorted(PROCESSES)}") from None
