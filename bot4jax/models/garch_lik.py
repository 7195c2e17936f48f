"""GARCH(1,1) log-likelihood and its exact derivatives, for many series at once (float64).

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

Layout: every array is time-major, (T, n) for n series, so that one `lax.scan` step updates all
series at once; one series is the case n = 1. theta is (n, P), P = 4 (normal) or 5 (t), in the order
(mu, omega, alpha, beta[, nu]).

Derivatives. Given the parameters, s is a linear recursion with coefficient beta, and so are its
derivatives G_t = ds_t/d(mu, omega, alpha, beta) (`scan_filter` of inputs built from e and s). With
the closed-form partial derivatives of l_t in (s_t, e_t, nu) (`_partials`):
- gradient, by the adjoint (reverse mode) of the recursion: sum_t l_s,t G_t = sum_t lam_t u_t with
  lam_t = l_s,t + beta lam_{t+1} (one reverse scan) and u_t the inputs of G;
- Hessian: sum_t l_ss G G' + sum_t l_s K + cross terms, where K = d2 s is again a beta-recursion
  whose weighted sum is taken by the same adjoint lam (no K path is formed).
Sums of logarithms take one log per 8 observations (the log of a product of 8 terms near 1).
The tests hold all of it equal to JAX autodiff of the plain formulas in `loglik_obs`.
"""
from __future__ import annotations

import math
from typing import NamedTuple

from jax import lax
from jax.scipy.special import digamma, gammaln, polygamma

from bot4jax.jaxcfg import jnp

BACKCAST_DECAY = 0.94
BACKCAST_SPAN = 75
OMEGA_LO, OMEGA_HI = 1e-8, 10.0  # omega bounds as multiples of v = mean(e0^2), as arch
NU_LO, NU_HI = 2.05, 500.0  # arch's bounds for the Student t degrees of freedom
LOG_2PI = math.log(2.0 * math.pi)
LOG_BLOCK = 8  # observations per logarithm in sums of logs

PARAM_NAMES = {"normal": ("mu", "omega", "alpha", "beta"), "t": ("mu", "omega", "alpha", "beta", "nu")}
_GG_PAIRS = ((0, 0), (0, 1), (0, 2), (0, 3), (1, 1), (1, 2), (1, 3), (2, 2), (2, 3), (3, 3))


class Consts(NamedTuple):
    """Per-series constants of the problem, fixed before optimisation ((n,) arrays, or scalars)."""

    backcast: jnp.ndarray  # b, the variance before the sample
    mu0: jnp.ndarray  # sample mean: starting mu and centre of the mu coordinate
    sd: jnp.ndarray  # sample standard deviation: scale of the mu coordinate
    log_omega_lo: jnp.ndarray  # log(1e-8 v)
    log_omega_hi: jnp.ndarray  # log(10 v)
    max_persistence: jnp.ndarray  # upper bound of alpha + beta
    l2: jnp.ndarray  # penalty weight


def backcast(r_tm: jnp.ndarray) -> jnp.ndarray:
    """arch's backcast of each column of r_tm (T, n): the 0.94-weighted mean of the first min(75, T)
    squared demeaned returns. Returns (n,)."""
    tau = min(BACKCAST_SPAN, r_tm.shape[0])
    e0 = r_tm[:tau] - jnp.mean(r_tm, axis=0)
    w = BACKCAST_DECAY ** jnp.arange(tau, dtype=r_tm.dtype)
    return w @ (e0 * e0) / jnp.sum(w)


def make_consts(r_tm: jnp.ndarray, max_persistence, l2) -> Consts:
    """Constants of every column of r_tm (T, n)."""
    mu0 = jnp.mean(r_tm, axis=0)
    v = jnp.mean((r_tm - mu0) ** 2, axis=0)
    full = lambda x: jnp.broadcast_to(jnp.asarray(x, r_tm.dtype), mu0.shape)  # noqa: E731
    return Consts(
        backcast=backcast(r_tm),
        mu0=mu0,
        sd=jnp.sqrt(v),
        log_omega_lo=jnp.log(OMEGA_LO * v),
        log_omega_hi=jnp.log(OMEGA_HI * v),
        max_persistence=full(max_persistence),
        l2=full(l2),
    )


# ---------------------------------------------------------------------------------------------------
# recursions and log-likelihood


def scan_filter(u: jnp.ndarray, beta, x0, reverse: bool = False) -> jnp.ndarray:
    """x_t = u_t + beta x_{t-1} along axis 0 (x_{-1} = x0); with reverse, x_t = u_t + beta x_{t+1}
    (x_T = x0). u (T, ...), beta and x0 broadcast against u[0]. Returns x like u."""

    def step(x, ut):
        x = ut + beta * x
        return x, x

    return lax.scan(step, x0, u, reverse=reverse)[1]


def lagged(x, first):
    """(first, x_0, ..., x_{T-2}) along axis 0: the value at t-1, `first` before the sample."""
    return jnp.concatenate([jnp.broadcast_to(first, x[:1].shape), x[:-1]], axis=0)


def variance_path(theta: jnp.ndarray, r_tm: jnp.ndarray, bc) -> jnp.ndarray:
    """Conditional variances s (T, n) for theta (n, P) and returns r_tm (T, n)."""
    e = r_tm - theta[:, 0]
    return scan_filter(theta[:, 1] + theta[:, 2] * lagged(e * e, bc), theta[:, 3], bc)


def loglik_obs(theta: jnp.ndarray, r_tm: jnp.ndarray, bc, dist: str) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Per-observation log-likelihoods l (T, n) and variances s (T, n): the plain formulas, a
    reference for the derivative code and the source of reported per-observation values."""
    s = variance_path(theta, r_tm, bc)
    e = r_tm - theta[:, 0]
    if dist == "normal":
        return -0.5 * (LOG_2PI + jnp.log(s) + e * e / s), s
    nu = theta[:, 4]
    const = gammaln(0.5 * (nu + 1.0)) - gammaln(0.5 * nu) - 0.5 * jnp.log(jnp.pi * (nu - 2.0))
    return const - 0.5 * jnp.log(s) - 0.5 * (nu + 1.0) * jnp.log1p(e * e / (s * (nu - 2.0))), s


def sum_log(x: jnp.ndarray) -> jnp.ndarray:
    """sum_t log x_t over axis 0 with one logarithm per LOG_BLOCK rows (x > 0 and products of
    LOG_BLOCK terms inside the float64 range: terms within 1e-30 .. 1e30 of 1)."""
    t = x.shape[0]
    pad = (-t) % LOG_BLOCK
    if pad:
        x = jnp.concatenate([x, jnp.ones((pad,) + x.shape[1:], x.dtype)], axis=0)
    return jnp.sum(jnp.log(jnp.prod(x.reshape((-1, LOG_BLOCK) + x.shape[1:]), axis=1)), axis=0)


# ---------------------------------------------------------------------------------------------------
# derivatives


class NuTerms(NamedTuple):
    """Per-series pieces of the t density that do not depend on t ((n,) arrays)."""

    k: jnp.ndarray  # (nu + 1) / 2
    c: jnp.ndarray  # nu - 2
    const0: jnp.ndarray  # the s- and e-free part of l_t
    const1: jnp.ndarray  # its nu-derivative plus the constant part of dl/dnu
    const2: jnp.ndarray  # second nu-derivative plus the constant part of d2l/dnu2


def nu_terms(nu) -> NuTerms:
    k = 0.5 * (nu + 1.0)
    c = nu - 2.0
    const0 = gammaln(k) - gammaln(0.5 * nu) - 0.5 * jnp.log(jnp.pi * c)
    const1 = 0.5 * digamma(k) - 0.5 * digamma(0.5 * nu) - 0.5 / c + k / c
    const2 = 0.25 * polygamma(1, k) - 0.25 * polygamma(1, 0.5 * nu) + 0.5 / (c * c) + 1.0 / c - k / (c * c)
    return NuTerms(k, c, const0, const1, const2)


def _partials(s, e, nt: NuTerms | None, second: bool = True) -> dict:
    """Time-varying parts of the derivatives of l_t in (s, e[, nu]); elementwise.

    normal (q = e^2/s):  l_s = (q - 1)/(2s),  l_e = -e/s,  l_ss = (1/2 - q)/s^2,  l_se = e/s^2,  l_ee = -1/s.
    t, with k = (nu+1)/2, c = nu - 2, d = c s + e^2 (so l = const + (k - 1/2) log s - k log d + k log c):
        l_s = (k - 1/2)/s - k c/d,  l_e = -2 k e/d,  l_nu = -log(d/(c s))/2 - k s/d,
        l_ss = -(k - 1/2)/s^2 + k c^2/d^2,  l_se = 2 k c e/d^2,  l_ee = -2k/d + 4 k e^2/d^2,
        l_snu = 1/(2s) - (c/2 + k)/d + k c s/d^2,  l_enu = -e/d + 2 k e s/d^2,  l_nunu = -s/d + k s^2/d^2.
    The s- and e-free parts (of l, l_nu, l_nunu) are in NuTerms; `lnu_nolog` is l_nu without its
    logarithm, which the callers sum separately (`sum_log`).
    """
    inv_s = 1.0 / s
    if nt is None:
        q = e * e * inv_s
        out = {"l_s": 0.5 * (q - 1.0) * inv_s, "l_e": -e * inv_s}
        if second:
            out.update(l_ss=(0.5 - q) * inv_s * inv_s, l_se=e * inv_s * inv_s, l_ee=-inv_s)
        return out
    k, c = nt.k, nt.c
    inv_d = 1.0 / (c * s + e * e)
    out = {"l_s": (k - 0.5) * inv_s - k * c * inv_d, "l_e": -2.0 * k * e * inv_d, "lnu_nolog": -k * s * inv_d}
    if second:
        kd2 = k * inv_d * inv_d
        out.update(
            l_ss=-(k - 0.5) * inv_s * inv_s + kd2 * c * c,
            l_se=2.0 * kd2 * c * e,
            l_ee=-2.0 * k * inv_d + 4.0 * kd2 * e * e,
            l_snu=0.5 * inv_s - (0.5 * c + k) * inv_d + kd2 * c * s,
            l_enu=-e * inv_d + 2.0 * kd2 * e * s,
            l_nunu=-s * inv_d + kd2 * s * s,
        )
    return out


class Eval(NamedTuple):
    """Log-likelihood (n,), gradient (n, P), Hessian (n, P, P) or None, scores (T, n, P) or None."""

    loglik: jnp.ndarray
    grad: jnp.ndarray
    hess: jnp.ndarray | None = None
    scores: jnp.ndarray | None = None


def evaluate(theta, r_tm, bc, dist: str, hessian: bool = True, scores: bool = False) -> Eval:
    """Log-likelihood with its exact gradient (and Hessian, and per-observation scores) in
    theta = (mu, omega, alpha, beta[, nu]) for every column: theta (n, P), r_tm (T, n), bc (n,)."""
    mu, omega, alpha, beta = theta[:, 0], theta[:, 1], theta[:, 2], theta[:, 3]
    nt = nu_terms(theta[:, 4]) if dist == "t" else None
    t = r_tm.shape[0]
    e = r_tm - mu
    e2 = e * e
    e2_prev = lagged(e2, bc)  # e_{t-1}^2, the backcast before the sample
    s = scan_filter(omega + alpha * e2_prev, beta, bc)
    s_prev = lagged(s, bc)
    de2_prev = lagged(-2.0 * e, 0.0)  # d e_{t-1}^2 / d mu (the backcast is fixed)
    p = _partials(s, e, nt, second=hessian)
    lam = scan_filter(p["l_s"], beta, jnp.zeros_like(bc), reverse=True)  # adjoint of the beta-recursion
    red = lambda x: jnp.sum(x, axis=0)  # noqa: E731
    # log-likelihood: logs summed blockwise, s scaled by the backcast to keep products in range
    slog_s = sum_log(s / bc) + t * jnp.log(bc)
    if nt is None:
        ll = -0.5 * (slog_s + red(e2 / s)) - 0.5 * LOG_2PI * t
    else:
        slog_w = sum_log(1.0 + e2 / (nt.c * s))
        ll = t * nt.const0 - 0.5 * slog_s - nt.k * slog_w
    # gradient: sum_t lam_t * (inputs of G): (alpha de2_prev, 1, e2_prev, s_prev)
    g_mu = alpha * red(lam * de2_prev) - red(p["l_e"])
    grad = [g_mu, red(lam), red(lam * e2_prev), red(lam * s_prev)]
    if nt is not None:
        grad.append(-0.5 * slog_w + red(p["lnu_nolog"]) + t * nt.const1)
    grad = jnp.stack(grad, axis=-1)
    if not hessian:
        return Eval(ll, grad)
    zero = jnp.zeros_like(bc)
    g = [scan_filter(x, beta, zero) for x in (alpha * de2_prev, jnp.ones_like(e), e2_prev, s_prev)]
    h = jnp.zeros(bc.shape + (4, 4), r_tm.dtype)
    for i, j in _GG_PAIRS:
        h = h.at[:, i, j].add(red(p["l_ss"] * g[i] * g[j]))
    # sum_t l_s K_t = sum_t lam_t (inputs of K): K_(mu,mu) <- 2 alpha [t>0], K_(mu,alpha) <- de2_prev,
    # K_(x,beta) <- G_x,t-1 (twice for beta itself)
    lam_next = lam[1:]
    h = h.at[:, 0, 0].add(2.0 * alpha * red(lam_next))
    h = h.at[:, 0, 2].add(-2.0 * red(lam_next * e[:-1]))
    for i in range(4):
        h = h.at[:, i, 3].add((2.0 if i == 3 else 1.0) * red(lam_next * g[i][:-1]))
    cross = jnp.stack([red(p["l_se"] * gi) for gi in g], axis=-1)  # de/dmu = -1
    h = h.at[:, 0, :].add(-cross).at[:, 0, 0].add(-cross[:, 0] + red(p["l_ee"]))
    h = jnp.triu(h) + jnp.swapaxes(jnp.triu(h, 1), -1, -2)
    if nt is not None:
        hsn = jnp.stack([red(p["l_snu"] * gi) for gi in g], axis=-1).at[:, 0].add(-red(p["l_enu"]))
        top = jnp.concatenate([h, hsn[:, :, None]], axis=-1)
        bottom = jnp.concatenate([hsn, (red(p["l_nunu"]) + t * nt.const2)[:, None]], axis=-1)
        h = jnp.concatenate([top, bottom[:, None, :]], axis=-2)
    sc = None
    if scores:
        cols = [p["l_s"] * g[0] - p["l_e"]] + [p["l_s"] * gi for gi in g[1:]]
        if nt is not None:
            cols.append(-0.5 * jnp.log1p(e2 / (nt.c * s)) + p["lnu_nolog"] + nt.const1)
        sc = jnp.stack(cols, axis=-1)
    return Eval(ll, grad, h, sc)
