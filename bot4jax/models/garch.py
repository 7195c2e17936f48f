"""GARCH(1,1) with a constant mean: maximum likelihood in JAX (float64), one series or a batch.

    r_t   = mu + e_t,          e_t = sqrt(s_t) z_t,      z_t ~ N(0, 1) or unit-variance Student t(nu)
    s_t   = omega + alpha e_{t-1}^2 + beta s_{t-1}

Units: returns in whatever unit the caller uses (arch users pass percent returns; `mu` is in that
unit, `omega` and the variances in its square). The recursion starts from arch's backcast (the
0.94-weighted mean of the first min(75, T) squared demeaned returns), so log-likelihoods and
parameters compare with `arch_model(r, mean="Constant", vol="GARCH", p=1, q=1, dist=...)` when
`max_persistence=1.0` (arch's own bound). Constraints: omega in (1e-8 v, 10 v) with v the sample
variance (arch's bounds), alpha, beta >= 0, alpha + beta < max_persistence, nu in (2.05, 500).

    res = fit(r, dist="t")                # GarchResult
    res.params["alpha"], res.std_errors["alpha"], res.forecast(10), res.simulate(1000, key)
    batch = fit_many(r2d, dist="t")       # r2d (n_series, T): one jitted call
    batch.params["beta"], batch.converged, batch.result(3)

`l2` adds the penalty l2 * T * (alpha^2 + beta^2) to the negative log-likelihood (a ridge on the
dynamics, shrinking towards constant variance); the reported `loglik` is the unpenalised one.
The likelihood and its exact derivatives live in `garch_lik`, the optimiser (BFGS from the exact
Hessian, in unconstrained coordinates, batched and chunked) in `garch_fit`; the live one-return
update is the Numba kernel `bot4jax.kernels.garch_nb` (`GarchResult.stream_state()` positions it
after the sample). DCC-GARCH is in `bot4jax.models.dcc`.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

import numpy as np

from bot4jax.jaxcfg import jax, jnp
from bot4jax.kernels.garch_nb import init_state, make_params
from bot4jax.models import garch_fit as _gf
from bot4jax.models import garch_lik as _lik

__all__ = ["GarchResult", "GarchBatch", "fit", "fit_many", "forecast_variance", "simulate"]

DISTS = ("normal", "t")
MIN_OBS = 20
MAX_ITER = 100
TOL = 1e-9  # Newton decrement relative to (1 + |loglik|): twice the gain a further step could still bring


def _frozen(a) -> np.ndarray:
    return _frozen_as(a, np.float64)


def _frozen_as(a, dtype) -> np.ndarray:
    a = np.array(a, dtype=dtype)
    a.flags.writeable = False
    return a


@dataclass(frozen=True, eq=False)
class GarchResult:
    """A fitted GARCH(1,1) (immutable).

    params / std_errors: mu, omega, alpha, beta (+ nu for t). Standard errors are the robust
    (Bollerslev-Wooldridge sandwich) ones of arch's default `cov_type="robust"`:
    cov = H^-1 S H^-1 / T with H the Hessian of the mean log-likelihood and S the sample covariance
    of the per-observation scores (exact derivatives here, numerical in arch).
    conditional_volatility: sqrt(s_t), (T,); std_resid: e_t / sqrt(s_t), (T,); resid: e_t, (T,).
    converged: the Newton decrement fell below the tolerance (False: do not trust the fit).
    """

    params: Mapping[str, float]
    std_errors: Mapping[str, float]
    loglik: float
    conditional_volatility: np.ndarray
    std_resid: np.ndarray
    resid: np.ndarray
    converged: bool
    iterations: int
    dist: str
    max_persistence: float
    l2: float
    backcast: float

    @property
    def nobs(self) -> int:
        return int(self.resid.shape[0])

    @property
    def persistence(self) -> float:
        return self.params["alpha"] + self.params["beta"]

    @property
    def unconditional_variance(self) -> float:
        """omega / (1 - alpha - beta); inf when alpha + beta >= 1."""
        p = self.persistence
        return self.params["omega"] / (1.0 - p) if p < 1.0 else float("inf")

    @property
    def next_variance(self) -> float:
        """s_{T+1} = omega + alpha e_T^2 + beta s_T: the variance of the next, unseen return."""
        p = self.params
        return p["omega"] + p["alpha"] * self.resid[-1] ** 2 + p["beta"] * self.conditional_volatility[-1] ** 2

    def forecast(self, horizon: int) -> np.ndarray:
        """Analytic variance forecasts s_{T+1..T+horizon} (horizon,), in squared return units."""
        return forecast_variance(self.params, self.next_variance, horizon)

    def stream_state(self) -> tuple[np.ndarray, np.ndarray]:
        """(params, state) arrays for `bot4jax.kernels.garch_nb.garch_variance_update_nb`, positioned
        after the last fitted return: the next streamed return is the one after the sample."""
        p = self.params
        return make_params(p["mu"], p["omega"], p["alpha"], p["beta"]), init_state(self.next_variance)

    def simulate(self, n: int, key, burn: int = 500, paths: int | None = None):
        """Simulate returns from the fitted model; see `simulate`. Returns (returns, variances)."""
        return simulate(self.params, n, key, dist=self.dist, burn=burn, paths=paths)


def forecast_variance(params: Mapping[str, float], next_variance: float, horizon: int) -> np.ndarray:
    """s_{T+h} = omega + (alpha + beta) s_{T+h-1} for h >= 2, from s_{T+1} = next_variance.

    Closed form: sbar + (alpha + beta)^(h-1) (s_{T+1} - sbar), sbar = omega / (1 - alpha - beta);
    with alpha + beta = 1 it is s_{T+1} + (h - 1) omega. Returns (horizon,).
    """
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    p = params["alpha"] + params["beta"]
    h = np.arange(horizon, dtype=np.float64)
    if p < 1.0:
        sbar = params["omega"] / (1.0 - p)
        return sbar + p**h * (next_variance - sbar)
    return next_variance + h * params["omega"]


@functools.partial(jax.jit, static_argnames=("n", "burn", "dist", "paths"))
def _simulate(theta, key, n: int, burn: int, dist: str, paths: int):
    mu, omega, alpha, beta = theta[0], theta[1], theta[2], theta[3]
    p = alpha + beta
    s0 = jnp.where(p < 1.0, omega / (1.0 - p), omega)
    if dist == "t":
        nu = theta[4]
        z = jax.random.t(key, nu, (n + burn, paths)) * jnp.sqrt((nu - 2.0) / nu)
    else:
        z = jax.random.normal(key, (n + burn, paths))

    def step(s, zt):
        e = jnp.sqrt(s) * zt
        return omega + alpha * e * e + beta * s, (mu + e, s)

    _, (r, s) = jax.lax.scan(step, jnp.full((paths,), s0), z)
    return r[burn:].T, s[burn:].T


def simulate(params: Mapping[str, float], n: int, key, dist: str = "t", burn: int = 500, paths: int | None = None):
    """Simulate n returns of GARCH(1,1) with the given params (mu, omega, alpha, beta[, nu]).

    Starts at the unconditional variance (omega when alpha + beta >= 1) and discards `burn` steps.
    Innovations are N(0, 1) or unit-variance t(nu) from the JAX key. Returns (returns, variances),
    each (n,) or (paths, n) when `paths` is given; variances[t] is the conditional variance of returns[t].
    """
    _check_dist(dist)
    names = _gf.PARAM_NAMES[dist]
    missing = [k for k in names if k not in params]
    if missing:
        raise ValueError(f"simulate(dist={dist!r}) needs params {names}; missing {missing}")
    theta = jnp.array([float(params[k]) for k in names])
    r, s = _simulate(theta, key, n=int(n), burn=int(burn), dist=dist, paths=1 if paths is None else int(paths))
    r, s = np.asarray(r), np.asarray(s)
    return (r[0], s[0]) if paths is None else (r, s)


# ---------------------------------------------------------------------------------------------------
# fitting


def _check_dist(dist: str) -> None:
    if dist not in DISTS:
        raise ValueError(f"dist must be one of {DISTS}, got {dist!r}")


def _check_options(dist, l2, max_persistence):
    _check_dist(dist)
    if not (0.0 < max_persistence <= 1.0):
        raise ValueError(f"max_persistence must be in (0, 1], got {max_persistence}")
    if not (l2 >= 0.0):
        raise ValueError(f"l2 must be >= 0, got {l2}")


def _check_finite(r: np.ndarray, what: str) -> None:
    bad = np.argwhere(~np.isfinite(r))
    if bad.size:
        where = ", ".join(str(int(i)) for i in bad[0])
        raise ValueError(f"{what}: non-finite return {r[tuple(bad[0])]} at index {where}; drop or fill it first")


def _summary(theta, r, bc, dist: str, l2):
    """Variance path (T,) and robust standard errors (P,) at theta (P,) for one series r (T,)."""
    t = r.shape[0]
    th, r_tm, b = theta[None], r[:, None], jnp.reshape(bc, (1,))
    ev = _lik.evaluate(th, r_tm, b, dist, hessian=True, scores=True)
    w = 2.0 * l2 * t
    hess = ev.hess[0].at[2, 2].add(-w).at[3, 3].add(-w) / t
    inv = jnp.linalg.inv(hess)
    sc = ev.scores[:, 0, :] - jnp.mean(ev.scores[:, 0, :], axis=0)
    score_cov = sc.T @ sc / (t - 1)
    cov = inv @ score_cov @ inv / t
    return _lik.variance_path(th, r_tm, b)[:, 0], jnp.sqrt(jnp.diag(cov))


@functools.partial(jax.jit, static_argnames=("dist", "max_iter", "tol"))
def _fit_single(r, max_persistence, l2, dist: str, max_iter: int, tol: float):
    out = _gf.fit_batch(r[:, None], max_persistence, l2, dist, max_iter, tol)
    out = jax.tree_util.tree_map(lambda x: x[0], out)
    s, se = _summary(out.theta, r, out.backcast, dist, l2)
    return out, s, se


@functools.partial(jax.jit, static_argnames=("dist",))
def _summary_jit(theta, r, bc, dist: str, l2):
    return _summary(theta, r, bc, dist, l2)


def _result(theta, loglik, converged, iterations, backcast, s, se, r, dist, max_persistence, l2) -> GarchResult:
    names = _gf.PARAM_NAMES[dist]
    theta, se, s, r = (np.asarray(x, dtype=np.float64) for x in (theta, se, s, r))
    resid = r - theta[0]
    vol = np.sqrt(s)
    return GarchResult(
        params=MappingProxyType({k: float(v) for k, v in zip(names, theta)}),
        std_errors=MappingProxyType({k: float(v) for k, v in zip(names, se)}),
        loglik=float(loglik),
        conditional_volatility=_frozen(vol),
        std_resid=_frozen(resid / vol),
        resid=_frozen(resid),
        converged=bool(converged),
        iterations=int(iterations),
        dist=dist,
        max_persistence=float(max_persistence),
        l2=float(l2),
        backcast=float(backcast),
    )


def fit(
    returns,
    dist: str = "t",
    l2: float = 0.0,
    max_persistence: float = 0.999,
    max_iter: int = MAX_ITER,
    tol: float = TOL,
) -> GarchResult:
    """Fit GARCH(1,1) with a constant mean to one return series (T,) by maximum likelihood.

    Raises ValueError for non-finite or constant input or fewer than 20 returns. A fit that does not
    converge within `max_iter` quasi-Newton iterations comes back with `converged=False`; so does one
    that runs into a corner of the parameter space it cannot settle in (e.g. alpha -> 0 with
    beta -> 1 on a series without ARCH effects).
    Compiles once per (T, dist, max_iter, tol); l2 and max_persistence do not recompile.
    """
    _check_options(dist, l2, max_persistence)
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim != 1:
        raise ValueError(f"returns must be one series of shape (T,), got shape {r.shape}; use fit_many for a batch")
    if r.shape[0] < MIN_OBS:
        raise ValueError(f"returns: need at least {MIN_OBS} observations, got {r.shape[0]}")
    _check_finite(r, "returns")
    if not np.std(r) > 0.0:
        raise ValueError("returns: the series is constant, its variance cannot be modelled")
    out, s, se = _fit_single(jnp.asarray(r), max_persistence, l2, dist=dist, max_iter=int(max_iter), tol=float(tol))
    return _result(out.theta, out.loglik, out.converged, out.iterations, out.backcast, s, se, r, dist, max_persistence, l2)


@functools.partial(jax.jit, static_argnames=("dist", "max_iter", "tol"))
def _fit_batch(r2, max_persistence, l2, dist: str, max_iter: int, tol: float):
    return _gf.fit_chunked(r2.T, max_persistence, l2, dist, max_iter, tol)


@dataclass(frozen=True, eq=False)
class GarchBatch:
    """Fits of n series of one length. params: name -> (n,); loglik, converged, iterations: (n,).

    Rows that could not be fitted (a constant series) have converged False and NaN parameters.
    `result(i)` builds the full GarchResult of series i (paths, robust standard errors).
    """

    params: Mapping[str, np.ndarray]
    loglik: np.ndarray
    converged: np.ndarray
    iterations: np.ndarray
    backcast: np.ndarray
    returns: np.ndarray
    dist: str
    max_persistence: float
    l2: float

    def __len__(self) -> int:
        return int(self.loglik.shape[0])

    def theta(self) -> np.ndarray:
        """Parameters as an (n, P) array in the order mu, omega, alpha, beta[, nu]."""
        return np.stack([self.params[k] for k in _gf.PARAM_NAMES[self.dist]], axis=1)

    def result(self, i: int) -> GarchResult:
        theta = self.theta()[i]
        r = self.returns[i]
        s, se = _summary_jit(jnp.asarray(theta), jnp.asarray(r), jnp.asarray(self.backcast[i]), dist=self.dist, l2=self.l2)
        return _result(
            theta, self.loglik[i], self.converged[i], self.iterations[i], self.backcast[i], s, se, r,
            self.dist, self.max_persistence, self.l2,
        )


def fit_many(
    returns_2d,
    dist: str = "t",
    l2: float = 0.0,
    max_persistence: float = 0.999,
    max_iter: int = MAX_ITER,
    tol: float = TOL,
) -> GarchBatch:
    """Fit GARCH(1,1) to every row of returns_2d (n_series, T) in one jitted, vmapped call.

    Each row is fitted as `fit` would fit it (same start, same iterations, same stopping rule, up to
    floating-point summation order); see `garch_fit.fit_batch` for how the batch shrinks to its
    slowest rows. Raises ValueError on non-finite values (naming row and column); a constant row is
    returned with converged False and NaN parameters.
    """
    _check_options(dist, l2, max_persistence)
    r = np.asarray(returns_2d, dtype=np.float64)
    if r.ndim != 2:
        raise ValueError(f"returns_2d must have shape (n_series, T), got {r.shape}")
    if r.shape[1] < MIN_OBS:
        raise ValueError(f"returns_2d: need at least {MIN_OBS} observations per series, got {r.shape[1]}")
    _check_finite(r, "returns_2d (row, column)")
    out = _fit_batch(jnp.asarray(r), max_persistence, l2, dist=dist, max_iter=int(max_iter), tol=float(tol))
    theta = np.asarray(out.theta)
    converged = np.asarray(out.converged, dtype=bool)
    constant = ~(np.std(r, axis=1) > 0.0)
    theta = np.where(constant[:, None], np.nan, theta)  # nothing to fit: no numbers to mistake for a fit
    names = _gf.PARAM_NAMES[dist]
    ro = r.copy()
    ro.flags.writeable = False
    return GarchBatch(
        params=MappingProxyType({k: _frozen(theta[:, j]) for j, k in enumerate(names)}),
        loglik=_frozen(out.loglik),
        converged=_frozen_as(converged, bool),
        iterations=_frozen_as(out.iterations, np.int64),
        backcast=_frozen(out.backcast),
        returns=ro,
        dist=dist,
        max_persistence=float(max_persistence),
        l2=float(l2),
    )
