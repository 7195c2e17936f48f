"""Accelerated proximal gradient (FISTA) with backtracking and adaptive restart, in JAX.

Minimises F(x) = f(x) + g(x) with f smooth (value and gradient given) and g simple (its proximal
operator given). Beck & Teboulle (2009) FISTA with the backtracking rule on the step 1/L, and the
gradient-based adaptive restart of O'Donoghue & Candes (2015): when the momentum points uphill,
``(y - x_new) . (x_new - x) > 0``, the momentum is reset. One iteration, from the extrapolated point y:

    x_new = prox_{g/L}(y - grad f(y) / L)      with L doubled until
    f(x_new) <= f(y) + grad f(y) . (x_new - y) + L/2 ||x_new - y||^2

Stopping: the gradient mapping ``G = L (y - x_new)`` (zero exactly at a minimiser) has
``max |G| <= tol``, or ``max_iter`` iterations. Everything runs inside ``lax.while_loop``, so a
caller's ``jax.jit`` compiles the whole solve once per problem shape.

Used by the elastic-net logistic regression (prox = soft thresholding) and by the simplex blend
weights of the stacking ensemble (prox = Euclidean projection onto the simplex).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

from bot4jax.jaxcfg import jax, jnp

__all__ = ["FistaResult", "fista", "project_simplex", "soft_threshold"]


class FistaResult(NamedTuple):
    x: jnp.ndarray        # the solution, shape of x0
    n_iter: jnp.ndarray   # iterations run (int)
    grad_map: jnp.ndarray  # max |G| at the last iteration; <= tol when converged
    converged: jnp.ndarray  # bool


class _State(NamedTuple):
    x: jnp.ndarray
    y: jnp.ndarray
    t: jnp.ndarray
    lip: jnp.ndarray
    it: jnp.ndarray
    gmap: jnp.ndarray


def fista(value_and_grad: Callable, prox: Callable, x0, lip0, tol: float, max_iter: int) -> FistaResult:
    """Minimise f + g from x0. ``value_and_grad(x) -> (f(x), grad f(x))``; ``prox(v, step) ->
    argmin_u g(u) + ||u - v||^2 / (2 step)``; ``lip0 > 0`` a first guess of the Lipschitz constant of
    grad f (an overestimate costs speed, an underestimate a few doublings). Call inside ``jax.jit``."""
    x0 = jnp.asarray(x0)

    def backtrack(y, fy, gy, lip):
        def candidate(lip):
            xn = prox(y - gy / lip, 1.0 / lip)
            d = xn - y
            bound = fy + jnp.vdot(gy, d) + 0.5 * lip * jnp.vdot(d, d)
            return xn, value_and_grad(xn)[0] <= bound + 1e-12 * jnp.abs(fy)

        def cond(c):
            return (~c[2]) & (c[1] < 1e30)

        def body(c):
            lip = c[1] * 2.0
            xn, ok = candidate(lip)
            return xn, lip, ok

        xn, ok = candidate(lip)
        xn, lip, _ = jax.lax.while_loop(cond, body, (xn, lip, ok))
        return xn, lip

    def cond(s: _State):
        return (s.it < max_iter) & (s.gmap > tol)

    def body(s: _State):
        fy, gy = value_and_grad(s.y)
        xn, lip = backtrack(s.y, fy, gy, s.lip)
        gmap = jnp.max(jnp.abs(lip * (s.y - xn)))
        restart = jnp.vdot(s.y - xn, xn - s.x) > 0
        t = jnp.where(restart, 1.0, s.t)
        tn = 0.5 * (1.0 + jnp.sqrt(1.0 + 4.0 * t * t))
        yn = xn + ((t - 1.0) / tn) * (xn - s.x)
        return _State(xn, yn, tn, lip, s.it + 1, gmap)

    init = _State(x0, x0, jnp.asarray(1.0, x0.dtype), jnp.asarray(lip0, x0.dtype),
                  jnp.asarray(0), jnp.asarray(jnp.inf, x0.dtype))
    s = jax.lax.while_loop(cond, body, init)
    return FistaResult(s.x, s.it, s.gmap, s.gmap <= tol)


def soft_threshold(v, thresh):
    """prox of ``thresh * ||.||_1``: sign(v) max(|v| - thresh, 0), elementwise (thresh broadcasts)."""
    return jnp.sign(v) * jnp.maximum(jnp.abs(v) - thresh, 0.0)


def project_simplex(v):
    """Euclidean projection of v (m,) onto {w >= 0, sum w = 1} (Duchi et al. 2008, O(m log m)).

    With u = v sorted descending and rho the largest j with ``u_j - (sum_{i<=j} u_i - 1) / j > 0``,
    the projection is ``max(v - theta, 0)``, ``theta = (sum_{i<=rho} u_i - 1) / rho``.
    """
    u = jnp.sort(v)[::-1]
    css = jnp.cumsum(u) - 1.0
    j = jnp.arange(1, v.shape[0] + 1, dtype=v.dtype)
    rho = jnp.sum(u - css / j > 0)
    theta = css[rho - 1] / rho
    return jnp.maximum(v - theta, 0.0)
