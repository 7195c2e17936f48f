"""GARCH(1,1) likelihood, its exact derivatives, and the Newton fit (internals of `garch`).

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

Derivatives. Given the parameters, s is a linear recursion with coefficient beta, and so are its
first derivatives G_t = ds_t/d(mu, omega, alpha, beta) and its second derivatives K_t: each is
`x_t = u_t + beta x_{t-1}` of an input built from the previous stage (only six of the ten second
derivatives are non-zero). The exact gradient and Hessian are then sums over t of products of G, K
with the closed-form partial derivatives of l_t in (s_t, e_t, nu) (`_partials`), collected in
`Sums` and assembled by `_assemble`. Two evaluations produce the same sums:
- one series (`sums_single`): the recursions run in blocks (`linear_filter`, sequential depth about
  2 sqrt(T)) and the sums are reductions over materialised paths;
- a batch (`sums_batch`): one scan over time with the series as the vector axis (time-major
  (T, n) returns), every quantity updated and accumulated in the scan body; nothing of length T
  is materialised, so memory does not grow with the batch.

The optimiser works on unconstrained coordinates u (`to_theta`) that keep omega in arch's range
(1e-8 v, 10 v), v = mean(e0^2), alpha, beta >= 0 with alpha + beta < max_persistence, and
nu in (2.05, 500) (arch's bounds for nu). It is Newton's method with the exact Hessian (eigenvalues
made negative where it is not concave) and a backtracking line search; one evaluation of value,
gradient and Hessian per iteration, at the trial point. Starting values: the best of a grid of
(alpha, alpha + beta) by the normal likelihood with omega targeting the sample variance (arch's
recipe), which leaves Newton 3 to 6 iterations on typical series.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

from jax import lax
from jax.scipy.special import digamma, gammaln, polygamma

from bot4jax.jaxcfg import jax, jnp

BACKCAST_DECAY = 0.94
BACKCAST_SPAN = 75
OMEGA_LO, OMEGA_HI = 1e-8, 10.0  # omega bounds as multiples of v = mean(e0^2), as arch
NU_LO, NU_HI = 2.05, 500.0  # arch's bounds for the Student t degrees of freedom
LOG_2PI = math.log(2.0 * math.pi)

PARAM_NAMES = {"normal": ("mu", "omega", "alpha", "beta"), "t": ("mu", "omega", "alpha", "beta", "nu")}
# index pairs of the upper triangle of the (mu, omega, alpha, beta) block, and of the non-zero K
_GG_PAIRS = ((0, 0), (0, 1), (0, 2), (0, 3), (1, 1), (1, 2), (1, 3), (2, 2), (2, 3), (3, 3))
_K_PAIRS = ((0, 0), (0, 2), (0, 3), (1, 3), (2, 3), (3, 3))


class Consts(NamedTuple):
    """Per-series constants of the problem, fixed before optimisation (scalars, or (n,) in a batch)."""

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
    """Constants of one series r (T,)."""
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
# the linear recursion x_t = u_t + beta x_{t-1} (one series)


def _block_size(n: int) -> int:
    return max(8, int(math.ceil(math.sqrt(n))))


def linear_filter(u: jnp.ndarray, beta, x0) -> jnp.ndarray:
    """x_t = u_t + beta * x_{t-1} for t = 0..T-1 with x_{-1} = x0.

    u: (C, T) inputs of C channels sharing one coefficient beta (scalar, 0 <= beta < 1); x0: (C,).
    Returns x (C, T). Blocked: with blocks of B ~ sqrt(T), a scan over the B positions runs every
    block at once from a zero start, a scan over the T/B block ends carries the state across blocks
    (coefficient beta^B), and x = within-block part + beta^(k+1) * state entering the block.
    Only non-negative powers of beta appear, so nothing is amplified.
    """
    c, t = u.shape
    b = _block_size(t)
    nb = -(-t // b)
    up = jnp.pad(u, ((0, 0), (0, nb * b - t))).reshape(c, nb, b)

    def within(x, ut):
        x = ut + beta * x
        return x, x

    _, y = lax.scan(within, jnp.zeros((c, nb), u.dtype), jnp.moveaxis(up, 2, 0))  # (B, C, nb)
    beta_b = beta**b

    def across(x, yend):
        x = yend + beta_b * x
        return x, x

    _, ends = lax.scan(across, x0, jnp.moveaxis(y[-1], 1, 0))  # (nb, C): state after each block
    entering = jnp.concatenate([x0[None], ends[:-1]], axis=0)  # (nb, C): state before each block
    powers = beta ** jnp.arange(1, b + 1, dtype=u.dtype)  # (B,)
    x = y + powers[:, None, None] * jnp.moveaxis(entering, 1, 0)[None]  # (B, C, nb)
    return jnp.moveaxis(x, 0, 2).reshape(c, nb * b)[:, :t]


def variance_path(theta: jnp.ndarray, r: jnp.ndarray, bc) -> jnp.ndarray:
    """Conditional variances s (T,) of one series for theta = (mu, omega, alpha, beta, ...)."""
    mu, omega, alpha, beta = theta[0], theta[1], theta[2], theta[3]
    e = r - mu
    e2_prev = jnp.concatenate([bc[None], e[:-1] ** 2])
    return linear_filter((omega + alpha * e2_prev)[None], beta, bc[None])[0]


def loglik_obs(theta: jnp.ndarray, r: jnp.ndarray, bc, dist: str) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Per-observation log-likelihoods l (T,) and variances s (T,) of one series (plain reference
    formulas; the fit itself uses `sums_single` / `sums_batch`)."""
    s = variance_path(theta, r, bc)
    e = r - theta[0]
    if dist == "normal":
        return -0.5 * (LOG_2PI + jnp.log(s) + e * e / s), s
    nu = theta[4]
    const = gammaln(0.5 * (nu + 1.0)) - gammaln(0.5 * nu) - 0.5 * jnp.log(jnp.pi * (nu - 2.0))
    return const - 0.5 * jnp.log(s) - 0.5 * (nu + 1.0) * jnp.log1p(e * e / (s * (nu - 2.0))), s


# ---------------------------------------------------------------------------------------------------
# derivatives: partials of l_t, the sums over t, and their assembly into gradient and Hessian


class NuTerms(NamedTuple):
    """Per-series pieces of the t density that do not depend on t (scalars or (n,))."""

    k: jnp.ndarray  # (nu + 1) / 2
    c: jnp.ndarray  # nu - 2
    inv_c: jnp.ndarray
    const0: jnp.ndarray  # the s- and e-free part of l_t
    const1: jnp.ndarray  # its nu-derivative plus the constant part of dl/dnu
    const2: jnp.ndarray  # second nu-derivative plus the constant part of d2l/dnu2


def nu_terms(nu) -> NuTerms:
    k = 0.5 * (nu + 1.0)
    c = nu - 2.0
    const0 = gammaln(k) - gammaln(0.5 * nu) - 0.5 * jnp.log(jnp.pi * c)
    const1 = 0.5 * digamma(k) - 0.5 * digamma(0.5 * nu) - 0.5 / c + k / c
    const2 = 0.25 * polygamma(1, k) - 0.25 * polygamma(1, 0.5 * nu) + 0.5 / (c * c) + 1.0 / c - k / (c * c)
    return NuTerms(k, c, 1.0 / c, const0, const1, const2)


def _partials(s, e, nt: NuTerms | None):
    """Time-varying parts of l_t and of its derivatives in (s, e[, nu]); elementwise, any shape.

    normal (q = e^2/s):  l = -(log s + q)/2,  l_s = (q - 1)/(2s),  l_e = -e/s,
                         l_ss = (1/2 - q)/s^2,  l_se = e/s^2,  l_ee = -1/s.
    t, with k = (nu+1)/2, c = nu - 2, d = c s + e^2 (so l = const + (k - 1/2) log s - k log d + k log c):
        l_s = (k - 1/2)/s - k c/d,  l_e = -2 k e/d,  l_nu = -log(d/(c s))/2 - k s/d,
        l_ss = -(k - 1/2)/s^2 + k c^2/d^2,  l_se = 2 k c e/d^2,  l_ee = -2k/d + 4 k e^2/d^2,
        l_snu = 1/(2s) - (c/2 + k)/d + k c s/d^2,  l_enu = -e/d + 2 k e s/d^2,  l_nunu = -s/d + k s^2/d^2
    (the s- and e-free parts of l, l_nu and l_nunu are in NuTerms). Returns a tuple of arrays:
    (l, l_s, l_e, l_ss, l_se, l_ee) or that plus (l_nu, l_snu, l_enu, l_nunu).
    """
    inv_s = 1.0 / s
    if nt is None:
        q = e * e * inv_s
        return -0.5 * (jnp.log(s) + q), 0.5 * (q - 1.0) * inv_s, -e * inv_s, (0.5 - q) * inv_s * inv_s, e * inv_s * inv_s, -inv_s
    k, c = nt.k, nt.c
    inv_d = 1.0 / (c * s + e * e)
    lw = jnp.log1p(e * e * inv_s * nt.inv_c)
    kd2 = k * inv_d * inv_d
    return (
        -0.5 * jnp.log(s) - k * lw,
        (k - 0.5) * inv_s - k * c * inv_d,
        -2.0 * k * e * inv_d,
        -(k - 0.5) * inv_s * inv_s + kd2 * c * c,
        2.0 * kd2 * c * e,
        -2.0 * k * inv_d + 4.0 * kd2 * e * e,
        -0.5 * lw - k * s * inv_d,
        0.5 * inv_s - (0.5 * c + k) * inv_d + kd2 * c * s,
        -e * inv_d + 2.0 * kd2 * e * s,
        -s * inv_d + kd2 * s * s,
    )


class Sums(NamedTuple):
    """Sums over t that make up the log-likelihood, gradient and Hessian (leading dims: batch)."""

    l: jnp.ndarray  # sum l_t (time-varying part)
    ls_g: jnp.ndarray  # (..., 4) sum l_s G_i
    le: jnp.ndarray  # sum l_e
    lss_gg: jnp.ndarray  # (..., 10) sum l_ss G_i G_j over _GG_PAIRS
    ls_k: jnp.ndarray  # (..., 6) sum l_s K_ij over _K_PAIRS
    lse_g: jnp.ndarray  # (..., 4) sum l_se G_i
    lee: jnp.ndarray  # sum l_ee
    lnu: jnp.ndarray | None = None  # sum l_nu (t only)
    lsnu_g: jnp.ndarray | None = None  # (..., 4) sum l_snu G_i
    lenu: jnp.ndarray | None = None  # sum l_enu
    lnunu: jnp.ndarray | None = None  # sum l_nunu


def _assemble(sm: Sums, nobs: int, nt: NuTerms | None):
    """(loglik, grad (..., P), hess (..., P, P)) from the sums. e depends on mu only: de/dmu = -1."""
    batch = sm.l.shape
    h4 = jnp.zeros(batch + (4, 4), sm.l.dtype)
    for idx, (i, j) in enumerate(_GG_PAIRS):
        h4 = h4.at[..., i, j].add(sm.lss_gg[..., idx])
    for idx, (i, j) in enumerate(_K_PAIRS):
        h4 = h4.at[..., i, j].add(sm.ls_k[..., idx])
    h4 = h4.at[..., 0, :].add(-sm.lse_g)
    h4 = h4.at[..., 0, 0].add(-sm.lse_g[..., 0] + sm.lee)  # -sum l_se G_mu once more (mu, mu) and l_ee
    h4 = jnp.triu(h4) + jnp.swapaxes(jnp.triu(h4, 1), -1, -2)
    grad4 = sm.ls_g.at[..., 0].add(-sm.le)
    if nt is None:
        return sm.l - 0.5 * LOG_2PI * nobs, grad4, h4
    hsn = sm.lsnu_g.at[..., 0].add(-sm.lenu)  # (..., 4)
    grad = jnp.concatenate([grad4, (sm.lnu + nobs * nt.const1)[..., None]], axis=-1)
    top = jnp.concatenate([h4, hsn[..., :, None]], axis=-1)
    bottom = jnp.concatenate([hsn, (sm.lnunu + nobs * nt.const2)[..., None]], axis=-1)
    hess = jnp.concatenate([top, bottom[..., None, :]], axis=-2)
    return sm.l + nobs * nt.const0, grad, hess


def _paths_single(theta, r, bc):
    """s, G (4, T), K (6, T) and e of one series by blocked recursions."""
    mu, omega, alpha, beta = theta[0], theta[1], theta[2], theta[3]
    t = r.shape[0]
    e = r - mu
    e_prev = jnp.concatenate([jnp.zeros((1,), r.dtype), e[:-1]])
    first = jnp.arange(t) == 0
    e2_prev = jnp.where(first, bc, e_prev * e_prev)
    s = linear_filter((omega + alpha * e2_prev)[None], beta, bc[None])[0]
    s_prev = jnp.concatenate([bc[None], s[:-1]])
    de2_dmu = jnp.where(first, 0.0, -2.0 * e_prev)  # d e_{t-1}^2 / d mu (the backcast is fixed)
    g = linear_filter(
        jnp.stack([alpha * de2_dmu, jnp.ones_like(r), e2_prev, s_prev]), beta, jnp.zeros((4,), r.dtype)
    )
    g_prev = jnp.concatenate([jnp.zeros((4, 1), r.dtype), g[:, :-1]], axis=1)
    k_in = jnp.stack([jnp.where(first, 0.0, 2.0 * alpha), de2_dmu, g_prev[0], g_prev[1], g_prev[2], 2.0 * g_prev[3]])
    k = linear_filter(k_in, beta, jnp.zeros((6,), r.dtype))
    return s, g, k, e


def sums_single(theta, r, bc, dist: str, with_scores: bool = False):
    """Sums (and optionally per-observation scores (T, P)) of one series r (T,)."""
    s, g, k, e = _paths_single(theta, r, bc)
    nt = nu_terms(theta[4]) if dist == "t" else None
    p = _partials(s, e, nt)
    l, l_s, l_e, l_ss, l_se, l_ee = p[:6]
    gg = jnp.stack([g[i] * g[j] for i, j in _GG_PAIRS])
    sm = Sums(jnp.sum(l), g @ l_s, jnp.sum(l_e), gg @ l_ss, k @ l_s, g @ l_se, jnp.sum(l_ee))
    if nt is not None:
        l_nu, l_snu, l_enu, l_nunu = p[6:]
        sm = sm._replace(lnu=jnp.sum(l_nu), lsnu_g=g @ l_snu, lenu=jnp.sum(l_enu), lnunu=jnp.sum(l_nunu))
    scores = None
    if with_scores:
        scores = (g * l_s).T.at[:, 0].add(-l_e)
        if nt is not None:
            scores = jnp.concatenate([scores, (p[6] + nt.const1)[:, None]], axis=1)
    return sm, nt, scores


def derivs_single(theta, r, bc, dist: str):
    """(loglik, grad (P,), hess (P, P)) of one series."""
    sm, nt, _ = sums_single(theta, r, bc, dist)
    return _assemble(sm, r.shape[0], nt)


def sums_batch(theta, r_tm, bc, dist: str, unroll: int = 2):
    """Sums of a batch: theta (n, P), time-major returns r_tm (T, n), backcasts bc (n,).

    One scan over t; the carry holds, per series, e_{t-1}^2 and its mu-derivatives, s_{t-1},
    G_{t-1} (4), K_{t-1} (6) and the running sums.
    """
    mu, omega, alpha, beta = theta[:, 0], theta[:, 1], theta[:, 2], theta[:, 3]
    nt = nu_terms(theta[:, 4]) if dist == "t" else None
    zero = jnp.zeros_like(bc)
    n_sums = 34 if nt is not None else 27

    def step(carry, rt):
        e2p, de2p, d2e2p, sp, g_p, k_p, acc = carry
        s = omega + alpha * e2p + beta * sp
        g = (alpha * de2p + beta * g_p[0], 1.0 + beta * g_p[1], e2p + beta * g_p[2], sp + beta * g_p[3])
        k = (
            alpha * d2e2p + beta * k_p[0],
            de2p + beta * k_p[1],
            g_p[0] + beta * k_p[2],
            g_p[1] + beta * k_p[3],
            g_p[2] + beta * k_p[4],
            2.0 * g_p[3] + beta * k_p[5],
        )
        e = rt - mu
        p = _partials(s, e, nt)
        l, l_s, l_e, l_ss, l_se, l_ee = p[:6]
        a = tuple(l_ss * gi for gi in g)
        terms = (l,) + tuple(l_s * gi for gi in g) + (l_e,) + tuple(a[i] * g[j] for i, j in _GG_PAIRS)
        terms += tuple(l_s * ki for ki in k) + tuple(l_se * gi for gi in g) + (l_ee,)
        if nt is not None:
            l_nu, l_snu, l_enu, l_nunu = p[6:]
            terms += (l_nu,) + tuple(l_snu * gi for gi in g) + (l_enu, l_nunu)
        acc = tuple(x + y for x, y in zip(acc, terms))
        return (e * e, -2.0 * e, jnp.full_like(e, 2.0), s, g, k, acc), None

    init = (bc, zero, zero, bc, (zero,) * 4, (zero,) * 6, (zero,) * n_sums)
    (*_, acc), _ = lax.scan(step, init, r_tm, unroll=unroll)
    v = lambda i, j: jnp.stack(acc[i:j], axis=-1)  # noqa: E731
    sm = Sums(acc[0], v(1, 5), acc[5], v(6, 16), v(16, 22), v(22, 26), acc[26])
    if nt is not None:
        sm = sm._replace(lnu=acc[27], lsnu_g=v(28, 32), lenu=acc[32], lnunu=acc[33])
    return sm, nt


# ---------------------------------------------------------------------------------------------------
# reparameterisation


def to_theta(u: jnp.ndarray, c: Consts) -> jnp.ndarray:
    """Unconstrained u (P,) -> theta = (mu, omega, alpha, beta[, nu]) of one series.

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


def _chain(u, c: Consts, theta, ll, grad, hess, nobs: int):
    """Penalised objective, gradient and Hessian in u from those in theta (one series)."""
    obj = ll - penalty(theta, c, nobs)
    grad = grad.at[2:4].add(-2.0 * c.l2 * nobs * theta[2:4])
    hess = hess.at[2, 2].add(-2.0 * c.l2 * nobs).at[3, 3].add(-2.0 * c.l2 * nobs)
    jac = jax.jacfwd(to_theta)(u, c)  # (P, P): d theta_i / d u_j
    curv = jax.hessian(to_theta)(u, c)  # (P, P, P): d2 theta_i / d u_j d u_k
    return obj, jac.T @ grad, jac.T @ hess @ jac + jnp.einsum("i,ijk->jk", grad, curv)


def objective_single(r, c: Consts, dist: str) -> Callable:
    """u (1, P) -> (obj (1,), grad (1, P), hess (1, P, P)) for one series r (T,)."""

    def evaluate(u):
        theta = to_theta(u[0], c)
        ll, g, h = derivs_single(theta, r, c.backcast, dist)
        out = _chain(u[0], c, theta, ll, g, h, r.shape[0])
        return tuple(x[None] for x in out)

    return evaluate


def objective_batch(r_tm, c: Consts, dist: str) -> Callable:
    """u (n, P) -> (obj (n,), grad (n, P), hess (n, P, P)) for time-major returns r_tm (T, n)."""

    def evaluate(u):
        theta = jax.vmap(to_theta)(u, c)
        sm, nt = sums_batch(theta, r_tm, c.backcast, dist)
        ll, g, h = _assemble(sm, r_tm.shape[0], nt)
        return jax.vmap(lambda *a: _chain(*a, r_tm.shape[0]))(u, c, theta, ll, g, h)

    return evaluate


# ---------------------------------------------------------------------------------------------------
# starting values


START_ALPHA = (0.02, 0.05, 0.1, 0.2)
START_PERSISTENCE = (0.5, 0.8, 0.9, 0.95, 0.98)


def start_theta(r_tm, c: Consts, dist: str):
    """Starting theta (n, P) for time-major returns r_tm (T, n) with batched constants c.

    The best normal log-likelihood over a grid of (alpha, alpha + beta) with omega = (1 - p) v
    (arch's recipe, one scan over t for all candidates and series); for t, nu from the kurtosis k of
    the standardised residuals at that start, (4k - 6)/(k - 3), as arch (12 when k <= 3.75).
    """
    v = c.sd**2
    cands = [(a, p) for a in START_ALPHA for p in START_PERSISTENCE if a < p]
    p = jnp.minimum(jnp.array([x[1] for x in cands], r_tm.dtype)[:, None], 0.99 * c.max_persistence)  # (K, n)
    a = jnp.minimum(jnp.array([x[0] for x in cands], r_tm.dtype)[:, None], 0.5 * p)
    omega, beta = (1.0 - p) * v, p - a
    e = r_tm - c.mu0

    def step(carry, et):
        e2p, sp, acc, acc_z2, acc_z4 = carry
        s = omega + a * e2p + beta * sp
        z2 = et * et / s
        return (et * et, s, acc - 0.5 * (jnp.log(s) + z2), acc_z2 + z2, acc_z4 + z2 * z2), None

    bc = jnp.broadcast_to(c.backcast, omega.shape)
    zero = jnp.zeros_like(omega)
    (_, _, ll, z2, z4), _ = lax.scan(step, (c.backcast, bc, zero, zero, zero), e, unroll=2)
    best = jnp.argmax(jnp.where(jnp.isfinite(ll), ll, -jnp.inf), axis=0)  # (n,)
    pick = lambda x: jnp.take_along_axis(x, best[None], axis=0)[0]  # noqa: E731
    theta = jnp.stack([c.mu0, pick(omega), pick(a), pick(beta)], axis=1)
    if dist == "t":
        t = r_tm.shape[0]
        kurt = (pick(z4) / t) / (pick(z2) / t) ** 2
        nu = jnp.where(kurt > 3.75, (4.0 * kurt - 6.0) / (kurt - 3.0), 12.0)
        theta = jnp.concatenate([theta, jnp.clip(nu, 4.0, 100.0)[:, None]], axis=1)
    return theta


# ---------------------------------------------------------------------------------------------------
# Newton's method over a batch


class NewtonState(NamedTuple):
    """State of Newton's method for n problems at once (leading axis n)."""

    u: jnp.ndarray  # (n, P) accepted point
    obj: jnp.ndarray  # (n,)
    grad: jnp.ndarray  # (n, P)
    direction: jnp.ndarray  # (n, P) modified-Newton ascent direction at u
    decrement: jnp.ndarray  # (n,) grad' direction: twice the gain a full step would bring
    step: jnp.ndarray  # (n,) step length to try next
    iters: jnp.ndarray  # (n,) int, evaluations after the first
    done: jnp.ndarray  # (n,) bool
    converged: jnp.ndarray  # (n,) bool


MAX_STEP = 5.0  # largest move of one u coordinate in one iteration


def _direction(grad, hess):
    """Newton ascent direction with the Hessian's eigenvalues made negative (modified Newton).
    grad (n, P), hess (n, P, P) -> direction (n, P), decrement (n,)."""
    w, v = jnp.linalg.eigh(hess)
    scale = jnp.max(jnp.abs(w), axis=-1, keepdims=True)
    w_mod = jnp.maximum(jnp.abs(w), 1e-9 * scale + 1e-300)
    d = jnp.einsum("nij,nj->ni", v, jnp.einsum("nji,nj->ni", v, grad) / w_mod)
    biggest = jnp.max(jnp.abs(d), axis=-1, keepdims=True)
    d = d * jnp.minimum(1.0, MAX_STEP / jnp.maximum(biggest, 1e-300))
    return d, jnp.sum(grad * d, axis=-1)


def _finite(*xs):
    out = True
    for x in xs:
        out = out & jnp.all(jnp.isfinite(x.reshape(x.shape[0], -1)), axis=-1)
    return out


def newton_init(evaluate, u0, tol: float) -> NewtonState:
    obj, grad, hess = evaluate(u0)
    d, dec = _direction(grad, hess)
    ok = _finite(obj, grad, hess)
    small = dec < tol * (1.0 + jnp.abs(obj))
    n = u0.shape[0]
    return NewtonState(
        u0, obj, grad, d, dec, jnp.ones_like(obj), jnp.zeros(n, jnp.int32), ~ok | small, ok & small
    )


def newton_run(evaluate, st: NewtonState, max_iter: int, tol: float, keep_going=None) -> NewtonState:
    """Iterate while some problem is not done (and `keep_going(state)`, when given, holds).

    Each iteration evaluates every problem at u + step * direction; a problem that is done ignores the
    result. A trial is accepted when it gains at least 1e-4 of the linear prediction (Armijo), else
    its step is quartered. A problem is done, converged, when the Newton decrement at its accepted
    point is below tol * (1 + |obj|); done, not converged, after max_iter evaluations or when the
    step underflows far from the optimum.
    """

    def cond(st):
        go = jnp.any(~st.done)
        return go if keep_going is None else go & keep_going(st)

    def body(st):
        active = ~st.done
        u_try = st.u + st.step[:, None] * st.direction
        obj_t, grad_t, hess_t = evaluate(u_try)
        good = _finite(obj_t, grad_t, hess_t)
        accept = active & good & (obj_t >= st.obj + 1e-4 * st.step * st.decrement)
        d_t, dec_t = _direction(grad_t, hess_t)
        a1 = accept[:, None]
        iters = st.iters + active.astype(jnp.int32)
        u = jnp.where(a1, u_try, st.u)
        obj = jnp.where(accept, obj_t, st.obj)
        grad = jnp.where(a1, grad_t, st.grad)
        d = jnp.where(a1, d_t, st.direction)
        dec = jnp.where(accept, dec_t, st.decrement)
        step = jnp.where(accept, 1.0, jnp.where(active, 0.25 * st.step, st.step))
        small = dec < tol * (1.0 + jnp.abs(obj))
        stalled = step < 1e-10
        # a stalled line search at a point whose remaining gain is negligible still counts as converged
        converged = st.converged | (active & ((accept & small) | (stalled & (dec < 1e-6 * (1.0 + jnp.abs(obj))))))
        done = st.done | converged | (active & (stalled | (iters >= max_iter)))
        return NewtonState(u, obj, grad, d, dec, step, iters, done, converged)

    return lax.while_loop(cond, body, st)


# ---------------------------------------------------------------------------------------------------
# fits


class FitOut(NamedTuple):
    """What a fit produces, per series (leading axis n; scalars per series)."""

    theta: jnp.ndarray  # (n, P)
    loglik: jnp.ndarray  # (n,) unpenalised log-likelihood at theta
    converged: jnp.ndarray  # (n,) bool
    iterations: jnp.ndarray  # (n,) int
    decrement: jnp.ndarray  # (n,)
    backcast: jnp.ndarray  # (n,)


def _finish(st: NewtonState, c: Consts, nobs: int) -> FitOut:
    theta = jax.vmap(to_theta)(st.u, c)
    ll = st.obj + penalty(theta, c, nobs)
    ok = st.converged & (c.sd > 0.0)
    return FitOut(theta, ll, ok, st.iters, st.decrement, c.backcast)


def fit_one(r, max_persistence, l2, dist: str, max_iter: int, tol: float) -> FitOut:
    """Fit one series r (T,); outputs have a leading axis of length 1. Pure: jit it."""
    c1 = make_consts(r, max_persistence, l2)
    cb = jax.tree_util.tree_map(lambda x: x[None], c1)
    u0 = jax.vmap(to_u)(start_theta(r[:, None], cb, dist), cb)
    evaluate = objective_single(r, c1, dist)
    st = newton_run(evaluate, newton_init(evaluate, u0, tol), max_iter, tol)
    return _finish(st, cb, r.shape[0])


def fit_batch(r_tm, max_persistence, l2, dist: str, max_iter: int, tol: float, straggler_frac: float = 0.125) -> FitOut:
    """Fit every column of time-major returns r_tm (T, n). Pure: jit it.

    The whole batch iterates until at most m = ceil(straggler_frac * n) series are still running;
    the stragglers are then gathered into a batch of m and finished there, so that a few slow series
    do not keep the whole batch iterating. Every series follows the same Newton path as `fit_one`.
    """
    t, n = r_tm.shape
    c = jax.vmap(lambda col: make_consts(col, max_persistence, l2), in_axes=1)(r_tm)
    u0 = jax.vmap(to_u)(start_theta(r_tm, c, dist), c)
    st = newton_init(objective_batch(r_tm, c, dist), u0, tol)
    m = max(1, min(n, int(math.ceil(straggler_frac * n))))
    if m < n:
        many = lambda s: jnp.sum(~s.done) > m  # noqa: E731
        st = newton_run(objective_batch(r_tm, c, dist), st, max_iter, tol, keep_going=many)

    def cond(st):
        return jnp.any(~st.done)

    def body(st):
        idx = jnp.argsort(st.done, stable=True)[:m]  # running series first
        take = lambda x: x[idx]  # noqa: E731
        sub_c = jax.tree_util.tree_map(take, c)
        sub = newton_run(objective_batch(r_tm[:, idx], sub_c, dist), jax.tree_util.tree_map(take, st), max_iter, tol)
        return jax.tree_util.tree_map(lambda x, y: x.at[idx].set(y), st, sub)

    st = lax.while_loop(cond, body, st)
    return _finish(st, c, t)
