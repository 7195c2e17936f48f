"""Batched GARCH(1,1) maximum likelihood: reparameterisation, starting values, BFGS, chunking.

Optimiser: in unconstrained coordinates u (`to_theta`) that keep omega in arch's range (1e-8 v, 10 v),
v = mean(e0^2), alpha, beta >= 0 with alpha + beta < max_persistence, and nu in (2.05, 500) (arch's
bounds for nu). BFGS started from the exact Hessian at the starting point (eigenvalues made negative
where it is not concave), with a backtracking (Armijo) line search; one value-and-gradient
evaluation (`garch_lik.evaluate`) per iteration. Starting values: the best of a grid of
(alpha, alpha + beta) by the normal likelihood with omega targeting the sample variance (arch's
recipe). Many series run as one vectorised problem (time-major (T, n) returns), in cache-sized chunks,
with the working batch shrinking to its slowest series (`fit_batch`, `fit_chunked`).
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

from jax import lax

from bot4jax.jaxcfg import jax, jnp
from bot4jax.models.garch_lik import (
    NU_HI,
    NU_LO,
    PARAM_NAMES,
    Consts,
    Eval,
    lagged,
    evaluate,
    make_consts,
    scan_filter,
    sum_log,
)

__all__ = ["PARAM_NAMES", "FitOut", "fit_batch", "fit_chunked", "qn_init", "qn_run", "to_theta", "to_u"]


# ---------------------------------------------------------------------------------------------------
# reparameterisation


def to_theta(u: jnp.ndarray, c: Consts) -> jnp.ndarray:
    """Unconstrained u (P,) -> theta = (mu, omega, alpha, beta[, nu]) of one series (scalar consts).

        mu = mu0 + sd u0;  log omega = lo + (hi - lo) sigmoid(u1);  p = max_persistence sigmoid(u2);
        alpha = p sigmoid(u3);  beta = p sigmoid(-u3);  log(nu - 2) = log .05 + log(498 / .05) sigmoid(u4)
    """
    mu = c.mu0 + c.sd * u[0]
    omega = jnp.exp(c.log_omega_lo + (c.log_omega_hi - c.log_omega_lo) * jax.nn.sigmoid(u[1]))
    p = c.max_persistence * jax.nn.sigmoid(u[2])
    out = [mu, omega, p * jax.nn.sigmoid(u[3]), p * jax.nn.sigmoid(-u[3])]
    if u.shape[0] == 5:
        lo, hi = math.log(NU_LO - 2.0), math.log(NU_HI - 2.0)
        out.append(2.0 + jnp.exp(lo + (hi - lo) * jax.nn.sigmoid(u[4])))
    return jnp.stack(out)


def to_u(theta: jnp.ndarray, c: Consts) -> jnp.ndarray:
    """Inverse of `to_theta` for theta strictly inside the bounds (one series)."""
    logit = lambda x: jnp.log(x) - jnp.log1p(-x)  # noqa: E731
    mu, omega, alpha, beta = theta[0], theta[1], theta[2], theta[3]
    out = [
        (mu - c.mu0) / c.sd,
        logit((jnp.log(omega) - c.log_omega_lo) / (c.log_omega_hi - c.log_omega_lo)),
        logit((alpha + beta) / c.max_persistence),
        jnp.log(alpha) - jnp.log(beta),
    ]
    if theta.shape[0] == 5:
        lo, hi = math.log(NU_LO - 2.0), math.log(NU_HI - 2.0)
        out.append(logit((jnp.log(theta[4] - 2.0) - lo) / (hi - lo)))
    return jnp.stack(out)


def penalty(theta, c: Consts, nobs: int):
    """L2 penalty subtracted from the log-likelihood: l2 * T * (alpha^2 + beta^2)."""
    return c.l2 * nobs * (theta[..., 2] ** 2 + theta[..., 3] ** 2)


def penalised(ev: Eval, theta, c: Consts, nobs: int) -> Eval:
    """The objective actually maximised: log-likelihood minus `penalty`, with its derivatives."""
    w = 2.0 * c.l2 * nobs
    grad = ev.grad.at[:, 2:4].add(-w[:, None] * theta[:, 2:4])
    hess = None if ev.hess is None else ev.hess.at[:, 2, 2].add(-w).at[:, 3, 3].add(-w)
    return Eval(ev.loglik - penalty(theta, c, nobs), grad, hess, ev.scores)


def objective(r_tm, c: Consts, dist: str, hessian: bool) -> Callable:
    """u (n, P) -> (obj (n,), grad (n, P)[, hess (n, P, P)]) in the unconstrained coordinates."""
    nobs = r_tm.shape[0]

    def chain(u, c1, grad, hess):
        jac = jax.jacfwd(to_theta)(u, c1)  # d theta_i / d u_j
        if hess is None:
            return jac.T @ grad, None
        curv = jax.hessian(to_theta)(u, c1)  # d2 theta_i / d u_j d u_k
        return jac.T @ grad, jac.T @ hess @ jac + jnp.einsum("i,ijk->jk", grad, curv)

    def f(u):
        theta = jax.vmap(to_theta)(u, c)
        ev = penalised(evaluate(theta, r_tm, c.backcast, dist, hessian=hessian), theta, c, nobs)
        gu, hu = jax.vmap(chain)(u, c, ev.grad, ev.hess)
        return (ev.loglik, gu, hu) if hessian else (ev.loglik, gu)

    return f


# ---------------------------------------------------------------------------------------------------
# starting values

# 3 x 3 instead of arch's 4 x 4: on simulated and hourly BTC series it leaves BFGS as few iterations;
# smaller grids cost about one more iteration for what they save
START_ALPHA = (0.03, 0.07, 0.15)
START_PERSISTENCE = (0.85, 0.95, 0.99)


def start_theta(r_tm, c: Consts, dist: str):
    """Starting theta (n, P) for time-major returns r_tm (T, n).

    The best normal log-likelihood over a grid of (alpha, alpha + beta) with omega = (1 - p) v
    (arch's recipe; one candidate after the other, all series at once); for t, nu from the kurtosis k of
    the standardised residuals at that start, (4k - 6)/(k - 3), as arch (12 when k <= 3.75).
    """
    v = c.sd**2
    e = r_tm - c.mu0
    e2 = e * e
    e2_prev = lagged(e2, c.backcast)
    cands = [(a, p) for a in START_ALPHA for p in START_PERSISTENCE if a < p]

    def params(a, p):
        p = jnp.minimum(p, 0.99 * c.max_persistence)
        a = jnp.minimum(a, 0.5 * p)
        return (1.0 - p) * v, a, p - a

    def path(omega, a, beta):
        return scan_filter(omega + a * e2_prev, beta, c.backcast)

    # one candidate at a time keeps the working set at a few (T, n) arrays
    best_ll = jnp.full_like(v, -jnp.inf)
    best = jnp.zeros(v.shape + (3,), v.dtype)
    for a, p in cands:
        omega, a, beta = params(a, p)
        s = path(omega, a, beta)
        ll = -0.5 * (sum_log(s / c.backcast) + jnp.sum(e2 / s, axis=0))
        better = jnp.isfinite(ll) & (ll > best_ll)
        best_ll = jnp.where(better, ll, best_ll)
        best = jnp.where(better[:, None], jnp.stack([omega, a, beta], axis=1), best)
    theta = jnp.concatenate([c.mu0[:, None], best], axis=1)
    if dist == "t":
        z2 = e2 / path(best[:, 0], best[:, 1], best[:, 2])
        kurt = jnp.mean(z2 * z2, axis=0) / jnp.mean(z2, axis=0) ** 2
        nu = jnp.where(kurt > 3.75, (4.0 * kurt - 6.0) / (kurt - 3.0), 12.0)
        theta = jnp.concatenate([theta, jnp.clip(nu, 4.0, 100.0)[:, None]], axis=1)
    return theta


# ---------------------------------------------------------------------------------------------------
# BFGS over a batch


class QNState(NamedTuple):
    """State of the quasi-Newton maximisation of n problems at once (leading axis n)."""

    u: jnp.ndarray  # (n, P) accepted point
    obj: jnp.ndarray  # (n,)
    grad: jnp.ndarray  # (n, P)
    hinv: jnp.ndarray  # (n, P, P) positive definite approximation of (-Hessian)^-1
    decrement: jnp.ndarray  # (n,) grad' hinv grad: twice the gain a full step is predicted to bring
    step: jnp.ndarray  # (n,) step length to try next
    iters: jnp.ndarray  # (n,) int, evaluations after the first
    done: jnp.ndarray  # (n,) bool
    converged: jnp.ndarray  # (n,) bool


MAX_STEP = 5.0  # largest move of one u coordinate in one iteration


def _inverse_negative(hess):
    """(-H)^-1 with H's eigenvalues made negative (modified Newton): (n, P, P) -> (n, P, P)."""
    w, v = jnp.linalg.eigh(hess)
    scale = jnp.max(jnp.abs(w), axis=-1, keepdims=True)
    w_mod = jnp.maximum(jnp.abs(w), 1e-9 * scale + 1e-300)
    return jnp.einsum("nij,nj,nkj->nik", v, 1.0 / w_mod, v)


def _finite(*xs):
    out = True
    for x in xs:
        out = out & jnp.all(jnp.isfinite(x.reshape(x.shape[0], -1)), axis=-1)
    return out


def qn_init(f_hess, u0, tol: float) -> QNState:
    """Evaluate value, gradient and the exact Hessian at u0."""
    obj, grad, hess = f_hess(u0)
    hinv = _inverse_negative(hess)
    dec = jnp.einsum("ni,nij,nj->n", grad, hinv, grad)
    ok = _finite(obj, grad, hess)
    small = dec < tol * (1.0 + jnp.abs(obj))
    n = u0.shape[0]
    return QNState(u0, obj, grad, hinv, dec, jnp.ones_like(obj), jnp.zeros(n, jnp.int32), ~ok | small, ok & small)


def qn_run(f_grad, st: QNState, max_iter: int, tol: float, keep_going=None) -> QNState:
    """BFGS iterations while some problem is not done (and `keep_going(state)`, when given, holds).

    Every iteration evaluates all problems at u + step * d, d = hinv grad (scaled so no coordinate
    moves more than MAX_STEP); problems already done ignore the result. A trial is accepted when it
    gains at least 1e-4 of the linear prediction (Armijo), else its step is quartered. On acceptance
    hinv gets the BFGS update when the curvature condition holds. A problem is done, converged, when
    grad' hinv grad < tol * (1 + |obj|) at its accepted point; done, not converged, after max_iter
    evaluations or when the step underflows far from the optimum.
    """
    eye = jnp.eye(st.u.shape[1], dtype=st.u.dtype)

    def cond(st):
        go = jnp.any(~st.done)
        return go if keep_going is None else go & keep_going(st)

    def body(st):
        active = ~st.done
        d = jnp.einsum("nij,nj->ni", st.hinv, st.grad)
        d = d * jnp.minimum(1.0, MAX_STEP / jnp.maximum(jnp.max(jnp.abs(d), axis=1), 1e-300))[:, None]
        u_try = st.u + st.step[:, None] * d
        obj_t, grad_t = f_grad(u_try)
        accept = active & _finite(obj_t, grad_t) & (obj_t >= st.obj + 1e-4 * st.step * jnp.sum(st.grad * d, axis=1))
        # BFGS update of the inverse of -H: s = step taken, y = -(change of gradient)
        s = u_try - st.u
        y = st.grad - grad_t
        sy = jnp.sum(s * y, axis=1)
        update = accept & (sy > 1e-10 * jnp.sqrt(jnp.sum(s * s, axis=1) * jnp.sum(y * y, axis=1)))
        rho = 1.0 / jnp.where(update, sy, 1.0)
        left = eye - rho[:, None, None] * s[:, :, None] * y[:, None, :]
        hinv_new = left @ st.hinv @ jnp.swapaxes(left, 1, 2) + rho[:, None, None] * s[:, :, None] * s[:, None, :]
        hinv = jnp.where(update[:, None, None], hinv_new, st.hinv)
        a1 = accept[:, None]
        u = jnp.where(a1, u_try, st.u)
        obj = jnp.where(accept, obj_t, st.obj)
        grad = jnp.where(a1, grad_t, st.grad)
        dec = jnp.where(accept, jnp.einsum("ni,nij,nj->n", grad, hinv, grad), st.decrement)
        iters = st.iters + active.astype(jnp.int32)
        step = jnp.where(accept, 1.0, jnp.where(active, 0.25 * st.step, st.step))
        small = dec < tol * (1.0 + jnp.abs(obj))
        stalled = step < 1e-10
        # a stalled line search at a point whose remaining gain is negligible still counts as converged
        converged = st.converged | (active & ((accept & small) | (stalled & (dec < 1e-6 * (1.0 + jnp.abs(obj))))))
        done = st.done | converged | (active & (stalled | (iters >= max_iter)))
        return QNState(u, obj, grad, hinv, dec, step, iters, done, converged)

    return lax.while_loop(cond, body, st)


# ---------------------------------------------------------------------------------------------------
# fits


class FitOut(NamedTuple):
    """What a fit produces, per series (leading axis n)."""

    theta: jnp.ndarray  # (n, P)
    loglik: jnp.ndarray  # (n,) unpenalised log-likelihood at theta
    converged: jnp.ndarray  # (n,) bool
    iterations: jnp.ndarray  # (n,) int
    decrement: jnp.ndarray  # (n,)
    backcast: jnp.ndarray  # (n,)


MIN_SHRINK = 16  # smaller batches gain too little from compaction to pay for compiling its levels
CHUNK_ELEMS = 128_000  # returns per (T, chunk) array (1 MB): a chunk's working arrays stay in the caches


def _levels(n: int, shrink: int) -> list[int]:
    """Batch sizes of the successive compaction levels: n, ceil(n / shrink), ..., 1."""
    sizes = [n]
    while sizes[-1] > 1:
        sizes.append(-(-sizes[-1] // shrink))
    return sizes


def fit_batch(r_tm, max_persistence, l2, dist: str, max_iter: int, tol: float, shrink: int = 8) -> FitOut:
    """Fit every column of time-major returns r_tm (T, n). Pure: jit it.

    Iterations evaluate every series of the working batch, finished or not, so a few slow series
    would keep the whole batch busy. The batch therefore shrinks in levels: all n series iterate
    until at most n / shrink are still running, those are gathered into a batch of that size and
    iterate until at most n / shrink^2 are running, and so on down to one. Each series follows the
    same path as it would alone. Batches of at most MIN_SHRINK series (or shrink < 2) run as one.
    """
    t, n = r_tm.shape
    c = make_consts(r_tm, max_persistence, l2)
    u0 = jax.vmap(to_u)(start_theta(r_tm, c, dist), c)
    st = qn_init(objective(r_tm, c, dist, hessian=True), u0, tol)
    sizes = _levels(n, shrink) if shrink > 1 and n > MIN_SHRINK else [n]
    for level, size in enumerate(sizes):
        last = level == len(sizes) - 1
        keep_going = None if last else (lambda s, nxt=sizes[level + 1]: jnp.sum(~s.done) > nxt)
        if size == n:
            st = qn_run(objective(r_tm, c, dist, hessian=False), st, max_iter, tol, keep_going)
            continue
        idx = jnp.argsort(st.done, stable=True)[:size]  # running series first
        take = lambda x, idx=idx: x[idx]  # noqa: E731
        f = objective(r_tm[:, idx], jax.tree_util.tree_map(take, c), dist, hessian=False)
        sub = qn_run(f, jax.tree_util.tree_map(take, st), max_iter, tol, keep_going)
        st = jax.tree_util.tree_map(lambda x, y, idx=idx: x.at[idx].set(y), st, sub)
    theta = jax.vmap(to_theta)(st.u, c)
    ll = st.obj + penalty(theta, c, t)
    ok = st.converged & (c.sd > 0.0)
    return FitOut(theta, ll, ok, st.iters, st.decrement, c.backcast)


def fit_chunked(r_tm, max_persistence, l2, dist: str, max_iter: int, tol: float) -> FitOut:
    """`fit_batch` over chunks of columns, one chunk after the other (`lax.map`).

    A chunk has about CHUNK_ELEMS returns per array (64 series of 2,000), so its working arrays stay
    in the CPU caches (1,000 series of 2,000 returns fit about 1.5x faster than as one batch whose
    every pass goes through main memory). The last chunk is padded with copies of the first columns.
    """
    t, n = r_tm.shape
    chunk = max(MIN_SHRINK, CHUNK_ELEMS // t)
    if n <= chunk:
        return fit_batch(r_tm, max_persistence, l2, dist, max_iter, tol)
    k = -(-n // chunk)
    pad = k * chunk - n
    r_pad = jnp.concatenate([r_tm, r_tm[:, :pad]], axis=1) if pad else r_tm
    xs = jnp.moveaxis(r_pad.reshape(t, k, chunk), 1, 0)  # (k, T, chunk)
    out = lax.map(lambda x: fit_batch(x, max_persistence, l2, dist, max_iter, tol), xs)
    return jax.tree_util.tree_map(lambda a: a.reshape((k * chunk,) + a.shape[2:])[:n], out)
