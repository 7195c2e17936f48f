"""GARCH(1,1) likelihood, its exact derivatives, and the Newton fit of one series (internals of `garch`).

The model follows `arch`'s conventions, so that fits compare with
`arch_model(r, mean="Constant", vol="GARCH", p=1, q=1, dist="normal" | "t")`:

    e_t  = r_t - mu                                           t = 0 .. T-1
    s_t  = omega + alpha * e_{t-1}^2 + beta * s_{t-1}         with e_{-1}^2 = s_{-1} = b
    b    = sum_{i<tau} 0.94^i e0_i^2 / sum_{i<tau} 0.94^i     tau = min(75, T), e0 = r - mean(r)

The backcast b is computed once from the residuals at the starting mean and then held fixed, as arch
does. Per-observation log-likelihoods (returns in any unit; the likelihood is in nats):

    normal:  l_t = -(log(2 pi) + log s_t + e_t^2 / s_t) / 2
    t(nu):   l_t = lgamma((nu+1)/2) - lgamma(nu/2) - log(pi (nu-2)) / 2 - log(s_t) / 2
                   - (nu+1)/2 * log(1 + e_t^2 / (s_t (nu-2)))          (unit-variance Student t)

Given the parameters, s is a linear recursion with coefficient beta, and so are its first and second
derivatives with respect to theta = (mu, omega, alpha, beta): each is `x_t = u_t + beta x_{t-1}` of an
input built from the previous stage. `linear_filter` evaluates that recursion in blocks (a short scan
inside every block, all blocks at once, then a scan over block ends), so the sequential depth is about
2 sqrt(T) instead of T. The exact gradient and Hessian then are sums over t of products of these
paths with the closed-form partial derivatives of l_t in (s_t, e_t, nu).

The optimiser works on unconstrained coordinates u (see `to_theta`) that keep omega in arch's range
(1e-8 v, 10 v), v = mean(e0^2), alpha, beta >= 0 with alpha + beta < max_persistence, and
nu in (2.05, 500) (arch's bounds for nu). It is Newton's method with the exact Hessian (eigenvalues
made negative where it is not concave) and a backtracking line search; each iteration costs one pass
of value, gradient and Hessian at the trial point.
"""
from __future__ import annotations

import math
from typing import NamedTuple

from jax import lax
from jax.scipy.special import digamma, gammaln, polygamma

from bot4jax.jaxcfg import jax, jnp

BACKCAST_DECAY = 0.94
BACKCAST_SPAN = 75
OMEGA_LO, OMEGA_HI = 1e-8, 10.0  # omega bounds as multiples of v = mean(e0^2), as arch
NU_LO, NU_HI = 2.05, 500.0  # arch's bounds for the Student t degrees of freedom
LOG_2PI = math.log(2.0 * math.pi)

PARAM_NAMES = {"normal": ("mu", "omega", "alpha", "beta"), "t": ("mu", "omega", "alpha", "beta", "nu")}


class Consts(NamedTuple):
    """Per-series constants of the problem, fixed before optimisation (all scalars)."""

    backcast: jnp.ndarray  # b, the variance before the sample
    mu0: jnp.ndarray  # sample mean: starting mu and centre of the mu coordinate
    sd: jnp.ndarray  # sample standard deviation: scale of the mu coordinate
    log_omega_lo: jnp.ndarray  # log(1e-8 v)
    log_omega_hi: jnp.ndarray  # log(10 v)
    max_persistence: jnp.ndarray  # upper bound of alpha + beta
    l2: jnp.ndarray  # penalty weight


def backcast(r: jnp.ndarray) -> jnp.ndarray:
    """arch's backcast of one series r (T,): 0.94-weighted mean of the first min(75, T) squared
    demeaned returns. Returns a scalar."""
    tau = min(BACKCAST_SPAN, r.shape[-1])
    e0 = r[:tau] - jnp.mean(r)
    w = BACKCAST_DECAY ** jnp.arange(tau, dtype=r.dtype)
    return jnp.sum(w * e0 * e0) / jnp.sum(w)


def make_consts(r: jnp.ndarray, max_persistence, l2) -> Consts:
    mu0 = jnp.mean(r)
    v = jnp.mean((r - mu0) ** 2)
    return Consts(
        backcast=backcast(r),
        mu0=mu0,
        sd=jnp.sqrt(v),
        log_omega_lo=jnp.log(OMEGA_LO * v),
        log_omega_hi=jnp.log(OMEGA_HI * v),
        max_persistence=jnp.asarray(max_persistence, r.dtype),
        l2=jnp.asarray(l2, r.dtype),
    )


# ---------------------------------------------------------------------------------------------------
# the linear recursion x_t = u_t + beta x_{t-1}


def _block_size(n: int) -> int:
    return max(8, int(math.ceil(math.sqrt(n))))


def linear_filter(u: jnp.ndarray, beta, x0) -> jnp.ndarray:
    """x_t = u_t + beta * x_{t-1} for t = 0..T-1 with x_{-1} = x0.

    u: (C, T) inputs of C independent channels sharing one coefficient beta (scalar, |beta| < 1);
    x0: (C,). Returns x (C, T). Blocked: with blocks of B ~ sqrt(T), a scan over the B positions runs
    every block at once from a zero start, a scan over the T/B block ends carries the state across
    blocks (coefficient beta^B), and x = within-block part + beta^(k+1) * state entering the block.
    Only non-negative powers of beta appear, so nothing is amplified.
    """
    c, t = u.shape
    b = _block_size(t)
    nb = -(-t // b)
    up = jnp.pad(u, ((0, 0), (0, nb * b - t))).reshape(c, nb, b)

    def within(x, ut):
        x = ut + beta * x
        return x, x

    _, y = lax.scan(within, jnp.zeros((c, nb), u.dtype), jnp.moveaxis(up, 2, 0), unroll=4)  # (B, C, nb)
    beta_b = beta**b

    def across(x, yend):
        x = yend + beta_b * x
        return x, x

    _, ends = lax.scan(across, x0, jnp.moveaxis(y[-1], 1, 0), unroll=4)  # (nb, C): state after block
    entering = jnp.concatenate([x0[None], ends[:-1]], axis=0)  # (nb, C): state before each block
    powers = beta ** jnp.arange(1, b + 1, dtype=u.dtype)  # (B,)
    x = y + powers[:, None, None] * jnp.moveaxis(entering, 1, 0)[None]  # (B, C, nb)
    return jnp.moveaxis(x, 0, 2).reshape(c, nb * b)[:, :t]


def variance_path(theta: jnp.ndarray, r: jnp.ndarray, bc) -> jnp.ndarray:
    """Conditional variances s (T,) for theta = (mu, omega, alpha, beta, ...)."""
    mu, omega, alpha, beta = theta[0], theta[1], theta[2], theta[3]
    e = r - mu
    e2_prev = jnp.concatenate([bc[None], e[:-1] ** 2])
    return linear_filter((omega + alpha * e2_prev)[None], beta, bc[None])[0]


# ---------------------------------------------------------------------------------------------------
# log-likelihood and its exact derivatives in theta


def _nu_const(nu):
    """The s- and e-free part of the t log-density, and its first two derivatives in nu."""
    k = 0.5 * (nu + 1.0)
    c = nu - 2.0
    val = gammaln(k) - gammaln(0.5 * nu) - 0.5 * jnp.log(jnp.pi * c)
    d1 = 0.5 * digamma(k) - 0.5 * digamma(0.5 * nu) - 0.5 / c
    d2 = 0.25 * polygamma(1, k) - 0.25 * polygamma(1, 0.5 * nu) + 0.5 / (c * c)
    return val, d1, d2


def loglik_obs(theta: jnp.ndarray, r: jnp.ndarray, bc, dist: str) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Per-observation log-likelihoods l (T,) and variances s (T,)."""
    s = variance_path(theta, r, bc)
    e = r - theta[0]
    if dist == "normal":
        return -0.5 * (LOG_2PI + jnp.log(s) + e * e / s), s
    nu = theta[4]
    const, _, _ = _nu_const(nu)
    return const - 0.5 * jnp.log(s) - 0.5 * (nu + 1.0) * jnp.log1p(e * e / (s * (nu - 2.0))), s


def penalty(theta, consts: Consts, nobs: int):
    """L2 penalty subtracted from the log-likelihood: l2 * T * (alpha^2 + beta^2)."""
    return consts.l2 * nobs * (theta[2] ** 2 + theta[3] ** 2)


class Derivs(NamedTuple):
    loglik: jnp.ndarray  # scalar, unpenalised
    grad: jnp.ndarray  # (P,)
    hess: jnp.ndarray  # (P, P)
    scores: jnp.ndarray | None  # (T, P) per-observation gradients, when asked


def derivs(theta: jnp.ndarray, r: jnp.ndarray, bc, dist: str, with_scores: bool = False) -> Derivs:
    """Log-likelihood with its exact gradient and Hessian in theta = (mu, omega, alpha, beta[, nu]).

    Chain rule through z_t = (s_t, e_t, nu): with G_t = ds_t/d(mu, omega, alpha, beta) and
    K_t = d2 s_t / d(...)^2 (both linear recursions in beta, see the module docstring),
        grad = sum_t [ l_s G_t - l_e e_mu + ... ],    Hess = sum_t [ l_ss G G' + l_s K + cross terms ].
    """
    mu, omega, alpha, beta = theta[0], theta[1], theta[2], theta[3]
    t = r.shape[0]
    e = r - mu
    e_prev = jnp.concatenate([jnp.zeros((1,), r.dtype), e[:-1]])
    first = jnp.arange(t) == 0
    e2_prev = jnp.where(first, bc, e_prev * e_prev)
    # stage 1: variances
    s = linear_filter((omega + alpha * e2_prev)[None], beta, bc[None])[0]
    s_prev = jnp.concatenate([bc[None], s[:-1]])
    # stage 2: first derivatives, channels (mu, omega, alpha, beta); zero before the sample
    de2_dmu = jnp.where(first, 0.0, -2.0 * e_prev)  # d e_{t-1}^2 / d mu (the backcast is fixed)
    g = linear_filter(
        jnp.stack([alpha * de2_dmu, jnp.ones_like(r), e2_prev, s_prev]), beta, jnp.zeros((4,), r.dtype)
    )
    g_prev = jnp.concatenate([jnp.zeros((4, 1), r.dtype), g[:, :-1]], axis=1)
    # stage 3: the non-zero second derivatives (mu,mu) (mu,alpha) (mu,beta) (omega,beta) (alpha,beta) (beta,beta)
    k = linear_filter(
        jnp.stack(
            [
                jnp.where(first, 0.0, 2.0 * alpha),
                de2_dmu,
                g_prev[0],
                g_prev[1],
                g_prev[2],
                2.0 * g_prev[3],
            ]
        ),
        beta,
        jnp.zeros((6,), r.dtype),
    )
    # partial derivatives of l_t in (s, e[, nu]) (closed forms; see tests for the autodiff check)
    inv_s = 1.0 / s
    if dist == "normal":
        q = e * e * inv_s
        ll_t = -0.5 * (LOG_2PI + jnp.log(s) + q)
        l_s = 0.5 * (q - 1.0) * inv_s
        l_e = -e * inv_s
        l_ss = (0.5 - q) * inv_s * inv_s
        l_se = e * inv_s * inv_s
        l_ee = -inv_s
    else:
        nu = theta[4]
        kk = 0.5 * (nu + 1.0)
        c = nu - 2.0
        d = c * s + e * e  # l = const + (k - 1/2) log s - k log d + k log c
        inv_d = 1.0 / d
        const, c1, c2 = _nu_const(nu)
        ll_t = const - 0.5 * jnp.log(s) - kk * jnp.log1p(e * e / (c * s))
        l_s = (kk - 0.5) * inv_s - kk * c * inv_d
        l_e = -2.0 * kk * e * inv_d
        l_nu = -0.5 * jnp.log1p(e * e / (c * s)) - kk * s * inv_d + kk / c + c1
        l_ss = -(kk - 0.5) * inv_s * inv_s + kk * c * c * inv_d * inv_d
        l_se = 2.0 * kk * c * e * inv_d * inv_d
        l_ee = -2.0 * kk * inv_d + 4.0 * kk * e * e * inv_d * inv_d
        l_snu = 0.5 * inv_s - (0.5 * c + kk) * inv_d + kk * c * s * inv_d * inv_d
        l_enu = -e * inv_d + 2.0 * kk * e * s * inv_d * inv_d
        l_nunu = -s * inv_d + kk * s * s * inv_d * inv_d + 1.0 / c - kk / (c * c)

    # gradient over (mu, omega, alpha, beta): l_s G, plus de/dmu = -1
    grad4 = g @ l_s + jnp.array([-jnp.sum(l_e), 0.0, 0.0, 0.0])
    h4 = (g * l_ss) @ g.T
    kk_sum = k @ l_s  # (6,)
    # place the second-derivative sums
    h4 = h4 + jnp.array(
        [
            [kk_sum[0], 0.0, kk_sum[1], kk_sum[2]],
            [0.0, 0.0, 0.0, kk_sum[3]],
            [kk_sum[1], 0.0, 0.0, kk_sum[4]],
            [kk_sum[2], kk_sum[3], kk_sum[4], kk_sum[5]],
        ]
    )
    cross = g @ l_se  # sum l_se G_j, with de/dmu = -1 on the mu row and column
    h4 = h4.at[0, :].add(-cross).at[:, 0].add(-cross).at[0, 0].add(jnp.sum(l_ee))
    if dist == "normal":
        grad, hess = grad4, h4
        scores = (g * l_s).T.at[:, 0].add(-l_e) if with_scores else None
    else:
        hsn = g @ l_snu + jnp.array([-jnp.sum(l_enu), 0.0, 0.0, 0.0])
        grad = jnp.concatenate([grad4, jnp.sum(l_nu)[None]])
        hess = jnp.zeros((5, 5), r.dtype).at[:4, :4].set(h4).at[:4, 4].set(hsn).at[4, :4].set(hsn)
        hess = hess.at[4, 4].set(jnp.sum(l_nunu) + t * c2)
        scores = None
        if with_scores:
            scores = jnp.concatenate([(g * l_s).T.at[:, 0].add(-l_e), l_nu[:, None]], axis=1)
    return Derivs(jnp.sum(ll_t), grad, hess, scores)


# ---------------------------------------------------------------------------------------------------
# reparameterisation


def to_theta(u: jnp.ndarray, c: Consts) -> jnp.ndarray:
    """Unconstrained u -> theta = (mu, omega, alpha, beta[, nu]).

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
    """Inverse of `to_theta` for theta strictly inside the bounds."""
    logit = lambda x: jnp.log(x) - jnp.log1p(-x)  # noqa: E731
    mu, omega, alpha, beta = theta[0], theta[1], theta[2], theta[3]
    p = alpha + beta
    out = [
        (mu - c.mu0) / c.sd,
        logit((jnp.log(omega) - c.log_omega_lo) / (c.log_omega_hi - c.log_omega_lo)),
        logit(p / c.max_persistence),
        jnp.log(alpha) - jnp.log(beta),
    ]
    if theta.shape[0] == 5:
        lo, hi = math.log(NU_LO - 2.0), math.log(NU_HI - 2.0)
        out.append(logit((jnp.log(theta[4] - 2.0) - lo) / (hi - lo)))
    return jnp.stack(out)


def objective_u(u, r, c: Consts, dist: str):
    """Penalised log-likelihood, gradient and Hessian in the unconstrained coordinates u."""
    theta = to_theta(u, c)
    d = derivs(theta, r, c.backcast, dist)
    nobs = r.shape[0]
    obj = d.loglik - penalty(theta, c, nobs)
    grad = d.grad.at[2:4].add(-2.0 * c.l2 * nobs * theta[2:4])
    hess = d.hess.at[2, 2].add(-2.0 * c.l2 * nobs).at[3, 3].add(-2.0 * c.l2 * nobs)
    jac = jax.jacfwd(to_theta)(u, c)  # (P, P): d theta_i / d u_j
    curv = jax.hessian(to_theta)(u, c)  # (P, P, P): d2 theta_i / d u_j d u_k
    grad_u = jac.T @ grad
    hess_u = jac.T @ hess @ jac + jnp.einsum("i,ijk->jk", grad, curv)
    return obj, grad_u, hess_u


# ---------------------------------------------------------------------------------------------------
# starting values and Newton


START_ALPHA = (0.02, 0.05, 0.1, 0.2)
START_PERSISTENCE = (0.5, 0.8, 0.9, 0.95, 0.98)


def start_theta(r, c: Consts, dist: str):
    """Best normal log-likelihood over a small grid of (alpha, alpha + beta) with omega targeting the
    sample variance (arch's recipe); for t, nu from the kurtosis of the standardised residuals."""
    v = c.sd**2
    e = r - c.mu0
    cands = [(a, p) for a in START_ALPHA for p in START_PERSISTENCE if a < p]
    a = jnp.array([x[0] for x in cands], r.dtype)
    p = jnp.minimum(jnp.array([x[1] for x in cands], r.dtype), 0.99 * c.max_persistence)
    a = jnp.minimum(a, 0.5 * p)
    omega = (1.0 - p) * v
    e2_prev = jnp.concatenate([c.backcast[None], e[:-1] ** 2])

    def one(om, al, be):
        return linear_filter((om + al * e2_prev)[None], be, c.backcast[None])[0]

    s = jax.vmap(one)(omega, a, p - a)  # (n_cands, T)
    ll = -0.5 * jnp.sum(jnp.log(s) + e * e / s, axis=1)
    best = jnp.argmax(jnp.where(jnp.isfinite(ll), ll, -jnp.inf))
    theta = jnp.stack([c.mu0, omega[best], a[best], p[best] - a[best]])
    if dist == "t":
        z2 = e * e / s[best]
        kurt = jnp.mean(z2 * z2) / jnp.mean(z2) ** 2
        nu = jnp.where(kurt > 3.75, (4.0 * kurt - 6.0) / (kurt - 3.0), 12.0)
        theta = jnp.concatenate([theta, jnp.clip(nu, 4.0, 100.0)[None]])
    return theta


class NewtonState(NamedTuple):
    u: jnp.ndarray
    obj: jnp.ndarray
    grad: jnp.ndarray
    hess: jnp.ndarray
    direction: jnp.ndarray
    decrement: jnp.ndarray  # grad' direction: twice the predicted gain of the full step
    step: jnp.ndarray
    iters: jnp.ndarray
    done: jnp.ndarray
    converged: jnp.ndarray


MAX_STEP = 5.0  # largest move of one u coordinate in one iteration


def _direction(grad, hess):
    """Newton ascent direction with the Hessian's eigenvalues made negative (modified Newton)."""
    w, v = jnp.linalg.eigh(hess)
    scale = jnp.max(jnp.abs(w))
    w_mod = jnp.maximum(jnp.abs(w), 1e-9 * scale + 1e-300)
    d = v @ ((v.T @ grad) / w_mod)
    d = d * jnp.minimum(1.0, MAX_STEP / jnp.maximum(jnp.max(jnp.abs(d)), 1e-300))
    return d, grad @ d


def newton(evaluate, u0, max_iter: int, tol: float) -> NewtonState:
    """Maximise with Newton steps and backtracking; `evaluate(u) -> (obj, grad, hess)`.

    One evaluation per iteration, at the trial point u + step * d. A trial is accepted when it gains at
    least 1e-4 of the linear prediction (Armijo); otherwise the step is quartered. Stops, converged,
    when the Newton decrement grad' H^-1 grad (twice the gain a full step would still bring) is below
    tol * (1 + |obj|); stops, not converged, when the budget is spent or the step underflows.
    """
    obj, grad, hess = evaluate(u0)
    d, dec = _direction(grad, hess)
    ok = jnp.isfinite(obj) & jnp.all(jnp.isfinite(grad))
    init = NewtonState(u0, obj, grad, hess, d, dec, jnp.ones_like(obj), jnp.array(0), ~ok, jnp.array(False))
    init = init._replace(done=init.done | (ok & (dec < tol * (1.0 + jnp.abs(obj)))))
    init = init._replace(converged=ok & init.done)

    def cond(st):
        return ~st.done

    def body(st):
        u_try = st.u + st.step * st.direction
        obj_t, grad_t, hess_t = evaluate(u_try)
        good = jnp.isfinite(obj_t) & jnp.all(jnp.isfinite(grad_t)) & jnp.all(jnp.isfinite(hess_t))
        accept = good & (obj_t >= st.obj + 1e-4 * st.step * st.decrement)
        d_t, dec_t = _direction(grad_t, hess_t)
        pick = lambda a, b: jnp.where(accept, a, b)  # noqa: E731
        u, obj, grad, hess = pick(u_try, st.u), pick(obj_t, st.obj), pick(grad_t, st.grad), pick(hess_t, st.hess)
        d, dec = pick(d_t, st.direction), pick(dec_t, st.decrement)
        step = pick(jnp.ones_like(st.step), 0.25 * st.step)
        iters = st.iters + 1
        small = dec < tol * (1.0 + jnp.abs(obj))
        # a stalled line search at a point whose remaining gain is negligible still counts as converged
        stalled = step < 1e-10
        converged = (accept & small) | (stalled & (dec < 1e-6 * (1.0 + jnp.abs(obj))))
        done = converged | stalled | (iters >= max_iter)
        return NewtonState(u, obj, grad, hess, d, dec, step, iters, done, converged)

    return lax.while_loop(cond, body, init)


class FitOut(NamedTuple):
    """Everything a fit of one series produces (arrays; scalars are 0-d)."""

    theta: jnp.ndarray  # (P,)
    loglik: jnp.ndarray  # unpenalised log-likelihood at theta
    converged: jnp.ndarray
    iterations: jnp.ndarray
    decrement: jnp.ndarray
    backcast: jnp.ndarray


def fit_one(r, max_persistence, l2, dist: str, max_iter: int, tol: float) -> FitOut:
    """Fit one series r (T,). Pure and traceable: jit it, vmap it over series."""
    c = make_consts(r, max_persistence, l2)
    u0 = to_u(start_theta(r, c, dist), c)
    st = newton(lambda u: objective_u(u, r, c, dist), u0, max_iter, tol)
    theta = to_theta(st.u, c)
    ll = st.obj + penalty(theta, c, r.shape[0])
    degenerate = ~(c.sd > 0.0)
    return FitOut(theta, ll, st.converged & ~degenerate, st.iters, st.decrement, c.backcast)
