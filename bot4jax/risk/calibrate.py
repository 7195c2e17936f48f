"""Calibrate the Monte Carlo processes from one series of log-returns.

Input: log-returns as fractions (np.diff(np.log(close))), one per step of the simulation to come
(daily returns make one simulated step a day). Each function returns the process's parameter
NamedTuple in those per-step units:

- `calibrate_gbm`: moments. sigma^2 = sample variance (ddof 1), mu = mean + sigma^2 / 2 (so that
  E[e^r] = e^mu matches the lognormal model).
- `calibrate_merton`: maximum likelihood. The density of one step is the Poisson mixture
  sum_{k <= 16} Pois(k; lam) N(r; a + k m, sigma^2 + k s^2) (truncated as the simulation is);
  Newton's method (exact Hessian, Levenberg-Marquardt damping) on (a, log sigma, logit(lam / 2),
  m, log s) of the standardised series, from three starts (lam = 0.02, 0.1, 0.4 jumps per step,
  the jump variance from the excess kurtosis: the method of moments with a zero-mean jump),
  keeping the best likelihood. Then mu = a + sigma^2/2 + lam k.
- `calibrate_garch_t`: `bot4jax.models.garch.fit(100 r, dist="t")` (percent returns, the scale the
  optimiser is tuned for), rescaled: mu / 100, omega / 100^2; h0 = the variance of the step after
  the series (start="last", the default: risk from today), or the unconditional variance
  omega / (1 - alpha - beta) (start="unconditional", the long-run view; on daily BTC the fit sits
  near the persistence bound and that level is several times the sample variance).
- `calibrate_regime`: `fit_hmm` (Baum-Welch); p0 = the filtered state at the end of the series
  moved one step by the chain (start="last", the default), or the stationary distribution
  (start="stationary").
- `calibrate_student_t`: maximum likelihood of the location-scale t (the same Newton method on
  loc, log scale, log(nu - 1) of the standardised series).
A failed optimisation raises ValueError rather than returning unusable parameters.
"""
from __future__ import annotations

import numpy as np

from bot4jax.jaxcfg import jax, jnp
from bot4jax.risk.hmm import fit_hmm
from bot4jax.risk.processes import (MAX_JUMP_RATE, MAX_JUMPS, GarchTParams, GBMParams,
                                    MertonParams, RegimeParams, StudentTParams, regime_stationary)

__all__ = ["calibrate_gbm", "calibrate_merton", "calibrate_garch_t", "calibrate_regime",
           "calibrate_student_t", "merton_loglik", "student_t_loglik"]


def _series(returns, min_len: int = 30) -> np.ndarray:
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim != 1:
        raise ValueError(f"returns must be one series of shape (T,), got shape {r.shape}")
    if r.size < min_len:
        raise ValueError(f"returns: need at least {min_len} observations, got {r.size}")
    bad = np.flatnonzero(~np.isfinite(r))
    if bad.size:
        raise ValueError(f"returns[{bad[0]}] is {r[bad[0]]}: log-returns must be finite")
    if not np.std(r) > 0:
        raise ValueError("returns: the series is constant")
    return r


def calibrate_gbm(returns) -> GBMParams:
    r = _series(returns, 2)
    var = float(np.var(r, ddof=1))
    return GBMParams(mu=float(np.mean(r)) + 0.5 * var, sigma=float(np.sqrt(var)))


# --- Merton: maximum likelihood ---------------------------------------------------------------

def _merton_unpack(theta):
    a, log_sigma, lam_logit, m, log_s = theta
    return a, jnp.exp(log_sigma), MAX_JUMP_RATE * jax.nn.sigmoid(lam_logit), m, jnp.exp(log_s)


def merton_loglik(y, a, sigma, lam, m, s):
    """Sum over y of log sum_{k <= MAX_JUMPS} Pois(k; lam) N(y; a + k m, sigma^2 + k s^2)."""
    k = jnp.arange(MAX_JUMPS + 1, dtype=jnp.float64)
    var = sigma ** 2 + k * s ** 2
    log_pois = -lam + k * jnp.log(lam) - jax.lax.lgamma(k + 1.0)
    z = y[:, None] - (a + k * m)[None, :]
    comp = log_pois - 0.5 * (jnp.log(2 * jnp.pi * var) + z * z / var)
    return jnp.sum(jax.nn.logsumexp(comp, axis=1))


def _newton(vgh, x0, max_iter: int = 200, gtol: float = 1e-8):
    """Minimise a smooth function of a few variables: Newton steps damped Levenberg-Marquardt
    style (H + lam I must be positive definite and the step must not increase f).

    vgh(x) -> (f, gradient, Hessian). Returns (x, f, converged: max |gradient| <= gtol).
    """
    x = np.asarray(x0, dtype=np.float64)
    f, g, h = (np.asarray(a) for a in vgh(x))
    lam = 1e-4
    eye = np.eye(x.size)
    for _ in range(max_iter):
        if np.max(np.abs(g)) <= gtol:
            return x, float(f), True
        while True:
            try:
                c = np.linalg.cholesky(h + lam * eye)
                d = -np.linalg.solve(c.T, np.linalg.solve(c, g))
            except np.linalg.LinAlgError:
                lam *= 10.0
                continue
            fn, gn, hn = (np.asarray(a) for a in vgh(x + d))
            if np.isfinite(fn) and fn <= f and np.all(np.isfinite(gn)) and np.all(np.isfinite(hn)):
                x, f, g, h = x + d, fn, gn, hn
                lam = max(lam / 10.0, 1e-12)
                break
            lam *= 10.0
            if lam > 1e12:  # no descent left: at a minimum to rounding, or stuck
                return x, float(f), bool(np.max(np.abs(g)) <= 1e3 * gtol)
    return x, float(f), bool(np.max(np.abs(g)) <= gtol)


def _value_grad_hess(nll):
    return jax.jit(lambda th, y: (nll(th, y), jax.grad(nll)(th, y), jax.hessian(nll)(th, y)))


def _merton_nll(theta, y):
    return -merton_loglik(y, *_merton_unpack(theta)) / y.shape[0]


_MERTON_VGH = _value_grad_hess(_merton_nll)


def calibrate_merton(returns) -> MertonParams:
    r = _series(returns, 100)
    mean, sd = float(np.mean(r)), float(np.std(r))
    y = (r - mean) / sd
    kurt = max(float(np.mean(y ** 4)) - 3.0, 0.2)
    starts = []
    for lam in (0.02, 0.1, 0.4):
        s2 = np.sqrt(kurt / (3 * lam))  # c4 = 3 lam s^4 for a zero mean jump
        sig2 = max(1.0 - lam * s2, 0.05)
        lam_logit = np.log(lam / MAX_JUMP_RATE) - np.log1p(-lam / MAX_JUMP_RATE)
        starts.append([0.0, 0.5 * np.log(sig2), lam_logit, 0.0, 0.5 * np.log(s2)])
    yj = jnp.asarray(y)
    fits = [_newton(lambda th: _MERTON_VGH(jnp.asarray(th), yj), x0) for x0 in starts]
    fits = [f for f in fits if f[2] and np.isfinite(f[1])]
    if not fits:
        raise ValueError("calibrate_merton: the likelihood could not be maximised from any start")
    x_best = min(fits, key=lambda f: f[1])[0]
    a, sigma, lam, m, s = (float(v) for v in _merton_unpack(jnp.asarray(x_best)))
    sigma, m, s = sd * sigma, sd * m, sd * s
    a = mean + sd * a
    kappa = float(np.expm1(m + 0.5 * s * s))
    return MertonParams(mu=a + 0.5 * sigma ** 2 + lam * kappa, sigma=sigma, lam=lam,
                        jump_mean=m, jump_std=s)


# --- Student t: maximum likelihood ------------------------------------------------------------

def student_t_loglik(y, loc, scale, nu):
    """Sum of the location-scale Student t log-density over y."""
    z = (y - loc) / scale
    return jnp.sum(jax.lax.lgamma((nu + 1) / 2) - jax.lax.lgamma(nu / 2) - 0.5 * jnp.log(nu * jnp.pi)
                   - jnp.log(scale) - (nu + 1) / 2 * jnp.log1p(z * z / nu))


def _student_nll(th, y):
    return -student_t_loglik(y, th[0], jnp.exp(th[1]), 1.0 + jnp.exp(th[2])) / y.shape[0]


_STUDENT_VGH = _value_grad_hess(_student_nll)


def calibrate_student_t(returns) -> StudentTParams:
    r = _series(returns, 30)
    mean, sd = float(np.mean(r)), float(np.std(r))
    y = jnp.asarray((r - mean) / sd)
    x, f, ok = _newton(lambda th: _STUDENT_VGH(jnp.asarray(th), y), [0.0, np.log(0.7), np.log(3.0)])
    if not ok:
        raise ValueError("calibrate_student_t: the likelihood could not be maximised")
    return StudentTParams(loc=mean + sd * float(x[0]), scale=sd * float(np.exp(x[1])),
                          nu=1.0 + float(np.exp(x[2])))


# --- GARCH(1,1)-t and regimes ----------------------------------------------------------------

def calibrate_garch_t(returns, start: str = "last", **fit_kwargs) -> GarchTParams:
    """GARCH(1,1)-t by `bot4jax.models.garch.fit`; extra keywords go to it (l2, max_persistence)."""
    from bot4jax.models import garch  # imported here: the risk package must not need it to load

    if start not in ("unconditional", "last"):
        raise ValueError(f"start must be 'unconditional' or 'last', got {start!r}")
    r = _series(returns, 30)
    res = garch.fit(100.0 * r, dist="t", **fit_kwargs)
    if not res.converged:
        raise ValueError("calibrate_garch_t: the GARCH-t fit did not converge")
    p = res.params
    if p["alpha"] + p["beta"] >= 1.0:
        raise ValueError(f"calibrate_garch_t: alpha + beta = {p['alpha'] + p['beta']:.6f} >= 1, "
                         "the variance has no stationary level")
    h0 = res.unconditional_variance if start == "unconditional" else res.next_variance
    return GarchTParams(mu=p["mu"] / 100.0, omega=p["omega"] / 1e4, alpha=p["alpha"],
                        beta=p["beta"], nu=p["nu"], h0=h0 / 1e4)


def calibrate_regime(returns, start: str = "last", **fit_kwargs) -> RegimeParams:
    """Two-state regime switching from `fit_hmm` (Baum-Welch); keywords go to it."""
    if start not in ("stationary", "last"):
        raise ValueError(f"start must be 'stationary' or 'last', got {start!r}")
    res = fit_hmm(_series(returns, 30), n_states=2, **fit_kwargs)
    if not res.converged:
        raise ValueError(f"calibrate_regime: Baum-Welch did not converge in {res.n_iter} iterations")
    trans = np.asarray(res.params.trans)
    p0 = regime_stationary(trans) if start == "stationary" else np.asarray(res.last_state_prob) @ trans
    return RegimeParams(mu=np.asarray(res.params.mu), sigma=np.asarray(res.params.sigma),
                        trans=trans, p0=p0 / p0.sum())

