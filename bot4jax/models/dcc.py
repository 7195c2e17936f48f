"""DCC-GARCH(1,1) (Engle 2002): time-varying conditional correlations of a few assets, in JAX (float64).

Two steps, as usual for DCC:
1. a univariate GARCH(1,1) per asset (`garch.fit_many`, one jitted call) gives standardised
   residuals z_t = e_t / sqrt(s_t), shape (T, k);
2. with correlation targeting Qbar = (1/T) sum_t z_t z_t',

       Q_t = (1 - a - b) Qbar + a z_{t-1} z_{t-1}' + b Q_{t-1},        Q_0 = Qbar
       R_t = diag(Q_t)^-1/2 Q_t diag(Q_t)^-1/2

   (a, b) maximise the correlation part of the Gaussian log-likelihood
       L_c = -1/2 sum_t [ log det R_t + z_t' R_t^-1 z_t - z_t' z_t ]
   subject to a, b >= 0, a + b < 1 (reparameterised: a + b = sigmoid(v0), a = (a + b) sigmoid(v1)).

R_t is the correlation of the returns at t given the past (it uses z up to t-1): the path the
correlation clamp reads. `next_correlation` is R_{T+1}, the correlation of the next, unseen returns.

Data layout: `returns` is (T, k), time by assets (rows are times, as in a DataFrame of prices'
returns with one column per asset).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

import numpy as np

from bot4jax.jaxcfg import jax, jnp
from bot4jax.models import garch
from bot4jax.models import garch_fit as _gf
from bot4jax.models import garch_lik as _lik

__all__ = ["DccResult", "fit_dcc", "correlation_path"]

MIN_WINDOW = 50


def _frozen(a) -> np.ndarray:
    a = np.array(a, dtype=np.float64)
    a.flags.writeable = False
    return a


@dataclass(frozen=True, eq=False)
class DccResult:
    """A fitted DCC-GARCH(1,1) (immutable).

    params: {"a", "b"}; loglik: the correlation part L_c at (a, b); converged: the (a, b) fit and
    every univariate fit converged; univariate: the per-asset GarchBatch (row j = asset j);
    std_resid: z (T', k); qbar: the target (k, k); correlation: R_t (T', k, k);
    next_correlation: R_{T'+1} (k, k); window: as passed (T' = window or T).
    """

    params: Mapping[str, float]
    loglik: float
    converged: bool
    univariate: garch.GarchBatch
    std_resid: np.ndarray
    qbar: np.ndarray
    correlation: np.ndarray
    next_correlation: np.ndarray
    window: int | None


def _q_path(a, b, z, qbar):
    """Q_t for t = 0..T (T+1 matrices: the last is Q_{T+1}) of z (T, k)."""

    def step(q, zt):
        q_next = (1.0 - a - b) * qbar + a * jnp.outer(zt, zt) + b * q
        return q_next, q

    q_last, qs = jax.lax.scan(step, qbar, z)
    return jnp.concatenate([qs, q_last[None]], axis=0)


def _to_corr(q):
    d = 1.0 / jnp.sqrt(jnp.diagonal(q, axis1=-2, axis2=-1))
    return q * d[..., :, None] * d[..., None, :]


def correlation_path(a: float, b: float, std_resid, qbar=None) -> np.ndarray:
    """R_t (T+1, k, k) for given (a, b) and standardised residuals (T, k); the last is R_{T+1}.
    qbar defaults to the sample second moment of std_resid."""
    z = jnp.asarray(std_resid, jnp.float64)
    qbar = z.T @ z / z.shape[0] if qbar is None else jnp.asarray(qbar, jnp.float64)
    return np.asarray(_to_corr(_q_path(a, b, z, qbar)))


def _loglik(ab, z, qbar):
    """L_c of (a, b) given z (T, k)."""
    r = _to_corr(_q_path(ab[0], ab[1], z, qbar)[:-1])
    chol = jnp.linalg.cholesky(r)
    logdet = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)
    w = jax.scipy.linalg.solve_triangular(chol, z[..., None], lower=True)[..., 0]
    return -0.5 * jnp.sum(logdet + jnp.sum(w * w, axis=-1) - jnp.sum(z * z, axis=-1))


def _ab(v):
    p = jax.nn.sigmoid(v[0])
    return jnp.stack([p * jax.nn.sigmoid(v[1]), p * jax.nn.sigmoid(-v[1])])


@functools.partial(jax.jit, static_argnames=("max_iter",))
def _fit_ab(z, max_iter: int, tol: float):
    qbar = z.T @ z / z.shape[0]
    obj = lambda v: _loglik(_ab(v), z, qbar)  # noqa: E731

    def f_hess(u):
        v = u[0]
        return obj(v)[None], jax.grad(obj)(v)[None], jax.hessian(obj)(v)[None]

    def f_grad(u):
        val, g = jax.value_and_grad(obj)(u[0])
        return val[None], g[None]

    # start: a = 0.02, b = 0.95, a common place for daily and hourly data
    p0, a0 = 0.97, 0.02
    v0 = jnp.array([[math.log(p0 / (1 - p0)), math.log(a0 / (p0 - a0))]])
    st = _gf.qn_run(f_grad, _gf.qn_init(f_hess, v0, tol), max_iter, tol)
    ab = _ab(st.u[0])
    r = _to_corr(_q_path(ab[0], ab[1], z, qbar))
    return ab, st.obj[0], st.converged[0], qbar, r


def fit_dcc(
    returns,
    window: int | None = None,
    dist: str = "normal",
    max_persistence: float = 0.999,
    max_iter: int = 200,
    tol: float = 1e-9,
) -> DccResult:
    """Fit DCC-GARCH(1,1) to `returns` of shape (T, k): rows are times, columns are assets (k >= 2).

    window: None uses all T rows. An int w uses only the last w rows as the estimation sample:
    the univariate GARCH fits, the target Qbar, (a, b) and the returned paths all come from
    returns[-w:] alone, so `fit_dcc(x, window=w)` equals `fit_dcc(x[-w:])`; the correlation path
    then has w rows aligned with returns[-w:], and next_correlation is the correlation of the row
    after the last. Refitting on a rolling window this way keeps the target local in time.
    dist, max_persistence: passed to the univariate fits.
    """
    x = np.asarray(returns, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] < 2:
        raise ValueError(f"returns must have shape (T, k) with k >= 2 assets as columns, got {x.shape}")
    if window is not None:
        window = int(window)
        if window < MIN_WINDOW or window > x.shape[0]:
            raise ValueError(f"window must be between {MIN_WINDOW} and T = {x.shape[0]}, got {window}")
        x = x[-window:]
    uni = garch.fit_many(x.T, dist=dist, max_persistence=max_persistence)
    if not np.all(np.isfinite(uni.theta())):
        bad = int(np.argmin(np.all(np.isfinite(uni.theta()), axis=1)))
        raise ValueError(f"returns: the GARCH fit of asset column {bad} failed (constant series?)")
    theta = uni.theta()
    s = np.asarray(_lik.variance_path(jnp.asarray(theta), jnp.asarray(x), jnp.asarray(uni.backcast)))
    z = (x - theta[:, 0]) / np.sqrt(s)
    ab, ll, ok, qbar, r = _fit_ab(jnp.asarray(z), max_iter=int(max_iter), tol=float(tol))
    r = np.asarray(r)
    return DccResult(
        params=MappingProxyType({"a": float(ab[0]), "b": float(ab[1])}),
        loglik=float(ll),
        converged=bool(ok) and bool(np.all(uni.converged)),
        univariate=uni,
        std_resid=_frozen(z),
        qbar=_frozen(qbar),
        correlation=_frozen(r[:-1]),
        next_correlation=_frozen(r[-1]),
        window=window,
    )
