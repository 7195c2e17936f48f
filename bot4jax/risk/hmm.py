"""Gaussian hidden Markov model fitted by Baum-Welch (EM) in JAX, float64.

    s_1 ~ p0,  P(s_{t+1} = j | s_t = i) = trans[i, j],  y_t | s_t = k ~ N(mu_k, sigma_k^2)

E-step: the scaled forward-backward recursions (Rabiner 1989, section V.A). With the emission
densities b_t(k) computed in log space and divided by their largest value m_t (so no underflow),

    alpha_1 = p0 * b_1 / c_1,    alpha_t = (alpha_{t-1} trans) * b_t / c_t    (c_t normalises)
    beta_T  = 1,                 beta_t  = trans (b_{t+1} * beta_{t+1}) / c_{t+1}
    log L   = sum_t (log c_t + m_t)
    gamma_t = alpha_t * beta_t,  xi_t(i, j) = alpha_t(i) trans[i, j] b_{t+1}(j) beta_{t+1}(j) / c_{t+1}

M-step: p0 = gamma_1, trans[i, j] = sum_t xi_t(i, j) / sum_j sum_t xi_t(i, j),
mu_k and sigma_k^2 the gamma-weighted mean and variance (floored at 1e-8 of the sample variance
so that a state cannot collapse on one observation). EM never decreases the likelihood; it stops
when an iteration gains less than `tol` (1 + |log L|). The states are returned in order of
increasing sigma (state 0 the calm one).
"""
from __future__ import annotations

import functools
from typing import Any, NamedTuple

import numpy as np

from bot4jax.jaxcfg import jax, jnp

__all__ = ["HMMParams", "HMMResult", "fit_hmm", "hmm_loglik", "hmm_filter", "em_step"]


class HMMParams(NamedTuple):
    mu: Any     # (K,)
    sigma: Any  # (K,)
    trans: Any  # (K, K) row-stochastic
    p0: Any     # (K,)


class HMMResult(NamedTuple):
    params: HMMParams
    loglik: Any          # log-likelihood at `params`
    loglik_history: Any  # (max_iter,) log L of each EM iterate, nan after the last
    n_iter: Any          # EM iterations run
    converged: Any       # the last iteration gained less than tol (1 + |log L|)
    last_state_prob: Any  # (K,) P(s_T = k | y_1..y_T), the filtered state at the end

    @property
    def stationary(self) -> np.ndarray:
        """Stationary distribution of the fitted chain (left eigenvector of trans for 1)."""
        a = np.asarray(self.params.trans, dtype=np.float64)
        w, v = np.linalg.eig(a.T)
        p = np.real(v[:, np.argmin(np.abs(w - 1.0))])
        return p / p.sum()


def _scaled_emissions(p: HMMParams, y):
    var = p.sigma ** 2
    logb = -0.5 * (jnp.log(2 * jnp.pi * var)[None, :] + (y[:, None] - p.mu[None, :]) ** 2 / var[None, :])
    m = jnp.max(logb, axis=1)
    return jnp.exp(logb - m[:, None]), m


def _forward(p: HMMParams, b):
    a1 = p.p0 * b[0]
    c1 = jnp.sum(a1)

    def step(a, bt):
        a = (a @ p.trans) * bt
        c = jnp.sum(a)
        return a / c, (a / c, c)

    _, (alphas, cs) = jax.lax.scan(step, a1 / c1, b[1:])
    return jnp.concatenate([(a1 / c1)[None], alphas]), jnp.concatenate([c1[None], cs])


def _forward_backward(p: HMMParams, y):
    b, m = _scaled_emissions(p, y)
    alpha, c = _forward(p, b)
    loglik = jnp.sum(jnp.log(c)) + jnp.sum(m)

    def back(beta_next, xs):
        bt1, ct1 = xs
        w = bt1 * beta_next / ct1  # b_{t+1} beta_{t+1} / c_{t+1}
        return p.trans @ w, (beta_next, w)

    beta1, (beta_rest, ws) = jax.lax.scan(back, jnp.ones_like(p.p0), (b[1:], c[1:]), reverse=True)
    gamma = alpha * jnp.concatenate([beta1[None], beta_rest])
    gamma = gamma / jnp.sum(gamma, axis=1, keepdims=True)  # sums to 1 already, up to rounding
    xi_sum = p.trans * (alpha[:-1].T @ ws)  # sum_t xi_t(i, j)
    return loglik, gamma, xi_sum


def em_step(p: HMMParams, y, var_floor):
    """One Baum-Welch iteration: (log L at p, updated params)."""
    loglik, gamma, xi_sum = _forward_backward(p, y)
    w = jnp.sum(gamma, axis=0)
    mu = (gamma.T @ y) / w
    var = jnp.sum(gamma * (y[:, None] - mu[None, :]) ** 2, axis=0) / w
    trans = xi_sum / jnp.sum(xi_sum, axis=1, keepdims=True)
    return loglik, HMMParams(mu, jnp.sqrt(jnp.maximum(var, var_floor)), trans, gamma[0])


@jax.jit
def hmm_loglik(p: HMMParams, y):
    """log L(y | p) by the scaled forward recursion."""
    b, m = _scaled_emissions(p, y)
    _, c = _forward(p, b)
    return jnp.sum(jnp.log(c)) + jnp.sum(m)


@jax.jit
def hmm_filter(p: HMMParams, y):
    """Filtered state probabilities P(s_t = k | y_1..y_t), (T, K)."""
    return _forward(p, _scaled_emissions(p, y)[0])[0]


def _initial(y, n_states: int) -> HMMParams:
    """States seeded by quantiles of |y - median|: the calmest observations give state 0."""
    d = np.abs(y - np.median(y))
    edges = np.quantile(d, np.linspace(0, 1, n_states + 1))
    group = np.clip(np.searchsorted(edges, d, side="right") - 1, 0, n_states - 1)
    mu = np.array([y[group == k].mean() for k in range(n_states)])
    sigma = np.array([max(y[group == k].std(), 1e-3 * y.std()) for k in range(n_states)])
    stay = 0.95
    trans = np.full((n_states, n_states), (1 - stay) / (n_states - 1))
    np.fill_diagonal(trans, stay)
    return HMMParams(mu, sigma, trans, np.full(n_states, 1.0 / n_states))


@functools.partial(jax.jit, static_argnames=("max_iter",))
def _em(p: HMMParams, y, var_floor, tol, max_iter: int):
    hist0 = jnp.full(max_iter, jnp.nan)

    def cond(c):
        _, _, i, done = c
        return (i < max_iter) & ~done

    def body(c):
        p, hist, i, _ = c
        ll, p_new = em_step(p, y, var_floor)
        prev = jnp.where(i > 0, hist[jnp.maximum(i - 1, 0)], -jnp.inf)
        done = (i > 0) & (ll - prev <= tol * (1.0 + jnp.abs(ll)))
        # once converged keep the iterate whose log L was just measured
        p_out = jax.tree.map(lambda a, b: jnp.where(done, a, b), p, p_new)
        return p_out, hist.at[i].set(ll), i + 1, done

    return jax.lax.while_loop(cond, body, (p, hist0, 0, False))


def fit_hmm(returns, n_states: int = 2, max_iter: int = 1000, tol: float = 1e-10,
            init: HMMParams | None = None) -> HMMResult:
    """Fit a Gaussian HMM to a 1-D series by Baum-Welch; states sorted by increasing sigma."""
    y = np.asarray(returns, dtype=np.float64).ravel()
    if y.size < 10 * n_states or not np.all(np.isfinite(y)):
        raise ValueError(f"fit_hmm needs at least {10 * n_states} finite returns, "
                         f"got {y.size} ({int(np.sum(~np.isfinite(y)))} not finite)")
    start = init if init is not None else _initial(y, n_states)
    start = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), HMMParams(*start))
    floor = 1e-8 * float(np.var(y))
    p, hist, n, done = _em(start, jnp.asarray(y), floor, tol, max_iter)
    order = np.argsort(np.asarray(p.sigma))
    p = HMMParams(p.mu[order], p.sigma[order], p.trans[order][:, order], p.p0[order])
    yj = jnp.asarray(y)
    return HMMResult(p, float(hmm_loglik(p, yj)), hist, int(n), bool(done), hmm_filter(p, yj)[-1])
