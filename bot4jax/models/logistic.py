"""Regularised binary logistic regression in JAX (float64), with sample weights.

    fit    = logistic_fit(x, y, sample_weight=None, *, C=1.0, l1_ratio=0.0, fit_intercept=True)
    p      = predict_proba(fit.params, x)        (n, f) -> (n,) float64 P(y = 1)

The coefficients beta (f,) and intercept b minimise scikit-learn's objective (``LogisticRegression``
with the same ``C`` and ``l1_ratio``, so the two agree):

    C * sum_i s_i [log(1 + exp(z_i)) - y_i z_i]  +  (1 - rho)/2 ||beta||^2  +  rho ||beta||_1,
    z_i = x_i . beta + b,   rho = l1_ratio in [0, 1],   s_i = sample weights (default 1).

The intercept is not penalised; ``C = inf`` means no penalty. Internally the objective is divided by
``C * sum s`` (a mean loss plus ``lam = 1 / (C sum s)`` times the penalty: same minimiser, tolerances
that do not grow with n). Solvers, both compiled once per input shape:

- ``l1_ratio == 0`` (L2): Newton's method with an Armijo backtracking line search; the Hessian is
  ``X^T diag(s p (1 - p)) X / sum s + lam I`` (bordered for the intercept), solved by Cholesky. It
  stops when a step changes no parameter by more than ``tol (1 + max |theta|)``.
- ``l1_ratio > 0`` (elastic net / L1): FISTA (`bot4jax.models.proximal`) on the smooth part
  (loss + L2) with soft thresholding for the L1 part; stops when the gradient mapping is below
  ``tol`` in max norm.

Labels y may be any values in [0, 1] (fractional labels are allowed by the loss). Rows with zero
weight take no part in the fit, which lets callers fit on a subset of a fixed-size array (one
compile for every fold).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bot4jax.jaxcfg import jax, jnp
from bot4jax.models.proximal import fista, soft_threshold

__all__ = ["LogisticResult", "decision_function", "logistic_fit", "predict_proba"]


@dataclass(frozen=True)
class LogisticResult:
    """params: {"coef": (f,), "intercept": ()} float64 jax arrays; n_iter: iterations run;
    converged: whether the stopping rule was met within max_iter."""

    params: dict
    n_iter: int
    converged: bool


@jax.jit
def decision_function(params: dict, x) -> jnp.ndarray:
    """z = x . coef + intercept for rows x (n, f); returns (n,) float64."""
    return jnp.asarray(x, jnp.float64) @ params["coef"] + params["intercept"]


@jax.jit
def predict_proba(params: dict, x) -> jnp.ndarray:
    """P(y = 1) = sigmoid(x . coef + intercept) for rows x (n, f); returns (n,) float64."""
    return jax.nn.sigmoid(decision_function(params, x))


def logistic_fit(x, y, sample_weight=None, *, C: float = 1.0, l1_ratio: float = 0.0,
                 fit_intercept: bool = True, tol: float | None = None,
                 max_iter: int | None = None) -> LogisticResult:
    """Fit the penalised logistic regression above on x (n, f), y (n,) in [0, 1], weights (n,) >= 0.

    ``tol`` defaults to 1e-12 (Newton, relative step) or 1e-11 (FISTA, gradient mapping of the
    mean-scaled objective); ``max_iter`` to 100 (Newton) or 50_000 (FISTA).
    Raises ValueError naming the offending argument, row or column.
    """
    x, y, s = _check(x, y, sample_weight)
    if not (C > 0):
        raise ValueError(f"C must be > 0 (np.inf for no penalty), got {C}")
    if not (0.0 <= l1_ratio <= 1.0):
        raise ValueError(f"l1_ratio must be in [0, 1], got {l1_ratio}")
    lam = 0.0 if np.isinf(C) else float(1.0 / (C * s.sum()))
    n, f = x.shape
    xa = np.concatenate([x, np.full((n, 1), 1.0 if fit_intercept else 0.0)], axis=1)
    sn = s / s.sum()
    # without an intercept its column is zero; penalising it then pins it at 0 and keeps H definite
    icpt_pen = 0.0 if fit_intercept else 1.0
    if l1_ratio == 0.0:
        theta, it, ok = _newton(jnp.asarray(xa), jnp.asarray(y), jnp.asarray(sn), lam, icpt_pen,
                                1e-12 if tol is None else tol, 100 if max_iter is None else max_iter)
    else:
        theta, it, ok = _enet(jnp.asarray(xa), jnp.asarray(y), jnp.asarray(sn), lam, l1_ratio,
                              1e-11 if tol is None else tol, 50_000 if max_iter is None else max_iter)
    params = {"coef": theta[:f], "intercept": theta[f] if fit_intercept else jnp.zeros((), jnp.float64)}
    return LogisticResult(params=params, n_iter=int(it), converged=bool(ok))


def _mean_loss(theta, xa, y, sn):
    z = xa @ theta
    return jnp.sum(sn * (jax.nn.softplus(z) - y * z))


@jax.jit
def _newton(xa, y, sn, lam, icpt_pen, tol, max_iter):
    m = xa.shape[1]
    pen = jnp.full(m, lam).at[-1].set(icpt_pen)

    def objective(theta):
        return _mean_loss(theta, xa, y, sn) + 0.5 * jnp.sum(pen * theta * theta)

    def cond(c):
        _, it, moved = c
        return (it < max_iter) & moved

    def body(c):
        theta, it, _ = c
        z = xa @ theta
        p = jax.nn.sigmoid(z)
        grad = xa.T @ (sn * (p - y)) + pen * theta
        hess = (xa * (sn * p * (1 - p))[:, None]).T @ xa + jnp.diag(pen)
        step = jax.scipy.linalg.solve(hess, grad, assume_a="pos")
        f0, slope = objective(theta), jnp.vdot(grad, step)

        # Armijo backtracking: halve until the decrease is at least 1e-4 of the predicted one
        def ls_cond(a):
            return (objective(theta - a * step) > f0 - 1e-4 * a * slope) & (a > 1e-10)

        alpha = jax.lax.while_loop(ls_cond, lambda a: 0.5 * a, 1.0)
        delta = alpha * step
        moved = jnp.max(jnp.abs(delta)) > tol * (1.0 + jnp.max(jnp.abs(theta)))
        return theta - delta, it + 1, moved

    theta, it, moved = jax.lax.while_loop(cond, body, (jnp.zeros(m), 0, True))
    return theta, it, ~moved


@jax.jit
def _enet(xa, y, sn, lam, l1_ratio, tol, max_iter):
    m = xa.shape[1]
    l2 = jnp.full(m, lam * (1.0 - l1_ratio)).at[-1].set(0.0)
    l1 = jnp.full(m, lam * l1_ratio).at[-1].set(0.0)

    def value_and_grad(theta):
        z = xa @ theta
        v = jnp.sum(sn * (jax.nn.softplus(z) - y * z)) + 0.5 * jnp.sum(l2 * theta * theta)
        g = xa.T @ (sn * (jax.nn.sigmoid(z) - y)) + l2 * theta
        return v, g

    def prox(v, step):
        return soft_threshold(v, step * l1)

    # p (1 - p) <= 1/4 bounds the curvature; start below it and let backtracking find the scale
    lip_bound = 0.25 * jnp.linalg.eigvalsh((xa * sn[:, None]).T @ xa)[-1] + jnp.max(l2)
    res = fista(value_and_grad, prox, jnp.zeros(m), lip_bound / 8.0, tol, max_iter)
    return res.x, res.n_iter, res.converged


def _check(x, y, sample_weight):
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"x must be 2-D (n_samples, n_features), got shape {x.shape}")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"y must be 1-D with one label per row of x ({x.shape[0]}), got shape {y.shape}")
    s = np.ones(x.shape[0]) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    if s.shape != y.shape:
        raise ValueError(f"sample_weight must have shape {y.shape}, got {s.shape}")
    bad = np.argwhere(~np.isfinite(x))
    if bad.size:
        raise ValueError(f"x is not finite at row {bad[0][0]}, column {bad[0][1]}")
    for name, a in (("y", y), ("sample_weight", s)):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} is not finite at row {int(np.flatnonzero(~np.isfinite(a))[0])}")
    if np.any((y < 0) | (y > 1)):
        raise ValueError(f"y must lie in [0, 1]: row {int(np.flatnonzero((y < 0) | (y > 1))[0])} is out")
    if np.any(s < 0):
        raise ValueError(f"sample_weight must be >= 0: row {int(np.flatnonzero(s < 0)[0])} is negative")
    if not s.sum() > 0:
        raise ValueError("sample_weight sums to zero: no row to fit on")
    return x, y, s
