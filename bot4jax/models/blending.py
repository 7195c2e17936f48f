"""Blend modes of the stacking ensemble: M member probabilities per row -> one probability per row.

Inputs are P (M, n), the out-of-fold member probabilities of n rows in time order, labels y (n,) in
[0, 1] and optional sample weights w (n,). Five modes (``MODES``):

- ``stacking``: a meta logistic regression (L2, strength C, `bot4jax.models.logistic`) on the member
  logits, ``p = sigmoid(b + sum_m beta_m logit(p_m))``, fitted on all the rows it is given.
- ``blending``: the same meta model fitted only on a held-out block: the latest ``holdout_fraction``
  of the rows it is given (the classical blend: the meta learner sees only the most recent data).
- ``voting``: ``soft`` = mean of the probabilities; ``hard`` = the share of members with p_m > 0.5;
  ``optimized`` = the linear pool ``sum_m w_m p_m`` with w on the simplex minimising the weighted log
  loss (`simplex_weights`: projected accelerated gradient, the problem is convex in w).
- ``bma``: Bayesian model averaging with the out-of-fold (predictive) likelihood standing in for the
  marginal likelihood ("pseudo-BMA", Geisser & Eddy 1979; Yao et al. 2018):
  ``w_m ∝ exp(LL_m / T)``, ``LL_m = sum_i w_i [y_i log p_mi + (1 - y_i) log(1 - p_mi)]`` (natural log,
  summed over rows), uniform prior. T = 1 is the textbook posterior; since LL grows with n it puts
  nearly all weight on the best member once the log-likelihood gaps exceed a few nats, and a
  temperature T > 1 tempers that (T = n compares mean per-row log-likelihoods).
- ``dynamic``: BMA weights over a rolling window of the latest resolved outcomes, recomputed at every
  row and causal: at row t only rows i with ``t1_i <= t0_t`` (label end at or before t's start, so the
  outcome is known when t is decided) count, the latest ``window`` of them in order of t1. Batch
  (`dynamic_blend`) and streaming (`dynamic_init` / `dynamic_observe` / `dynamic_weights`) forms.

Honest evaluation: `blend_oof` cross-fits every mode that learns from outcomes over caller-given
purged splits of the rows (each row predicted by a blend fitted without it and without the rows
its label overlaps); dynamic needs no cross-fitting, it is causal by construction.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from bot4jax.jaxcfg import jax, jnp
from bot4jax.models import logistic
from bot4jax.models.proximal import fista, project_simplex

__all__ = [
    "MODES", "Blend", "DynamicState", "blend_oof", "blend_paths", "dynamic_blend", "dynamic_init",
    "dynamic_observe", "dynamic_weights", "fit_blend", "member_weights", "predict_blend",
    "simplex_weights",
]

MODES = ("stacking", "blending", "voting", "bma", "dynamic")
VOTING = ("soft", "hard", "optimized")
_CLIP = 1e-12      # probabilities inside logs
_LOGIT_CLIP = 1e-6  # member probabilities before the logit: a confident 0 or 1 must not dominate


@dataclass(frozen=True)
class Blend:
    """A fitted blend. mode in MODES except "dynamic"; weights (M,) on the simplex: the linear-pool
    weights (voting, bma), or |coef| normalised for the meta models (for reports and importance);
    coef (M,) and intercept: the meta logistic on member logits (stacking, blending), else None / 0;
    voting: "soft" | "hard" | "optimized" for mode "voting"."""

    mode: str
    weights: np.ndarray
    coef: np.ndarray | None = None
    intercept: float = 0.0
    voting: str = "soft"


def _check(P, y=None, w=None):
    P = np.asarray(P, np.float64)
    if P.ndim != 2:
        raise ValueError(f"P must be (n_members, n_rows), got shape {P.shape}")
    bad = np.argwhere(~((P >= 0) & (P <= 1)))
    if bad.size:
        raise ValueError(f"P must hold probabilities in [0, 1]: member {bad[0][0]}, row {bad[0][1]} is "
                         f"{P[bad[0][0], bad[0][1]]}")
    if y is None:
        return P
    y = np.asarray(y, np.float64)
    if y.shape != (P.shape[1],):
        raise ValueError(f"y must have shape ({P.shape[1]},), got {y.shape}")
    w = np.ones_like(y) if w is None else np.asarray(w, np.float64)
    if w.shape != y.shape or np.any(~np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"w must be {y.shape[0]} finite non-negative weights")
    return P, y, w


def _rows_mask(n: int, rows) -> np.ndarray:
    mask = np.zeros(n, bool)
    mask[np.arange(n) if rows is None else np.asarray(rows, np.int64)] = True
    return mask


def _loglik(P, y):
    """(M, n) per-row log-likelihoods y log p + (1 - y) log(1 - p)."""
    Pc = np.clip(P, _CLIP, 1 - _CLIP)
    return y * np.log(Pc) + (1 - y) * np.log1p(-Pc)


def fit_blend(mode: str, P, y, w=None, *, rows=None, C: float = 1.0, holdout_fraction: float = 0.3,
              voting: str = "soft", temperature: float = 1.0) -> Blend:
    """Fit a blend on rows ``rows`` (int indices, time order; None = all) of P (M, n), y (n,), w (n,).

    Rows outside ``rows`` may hold NaN labels. The arrays keep their full length inside (rows are
    selected by zero weights), so refits on other rows reuse the compiled solvers.
    """
    if mode == "dynamic":
        raise ValueError("the dynamic blend is not fitted once: use dynamic_blend (batch) or "
                         "dynamic_init/dynamic_observe/dynamic_weights (streaming)")
    if mode not in MODES:
        raise ValueError(f"unknown blend mode {mode!r}; choose one of {MODES}")
    P, y, w = _check(P, y, w)
    M, n = P.shape
    mask = _rows_mask(n, rows)
    if mode == "blending":
        if not (0.0 < holdout_fraction <= 1.0):
            raise ValueError(f"holdout_fraction must be in (0, 1], got {holdout_fraction}")
        idx = np.flatnonzero(mask)
        keep = idx[len(idx) - max(1, math.ceil(holdout_fraction * len(idx))):]
        mask = _rows_mask(n, keep)
    ww = np.where(mask, w, 0.0)
    yy = np.where(mask, y, 0.0)
    if not np.all(np.isfinite(yy)):
        raise ValueError(f"y is not finite at row {int(np.flatnonzero(~np.isfinite(yy))[0])}")
    if mode in ("stacking", "blending"):
        z = _logit(P).T
        res = logistic.logistic_fit(z, yy, ww, C=C)
        coef = np.asarray(res.params["coef"], np.float64)
        a = np.abs(coef)
        weights = a / a.sum() if a.sum() > 0 else np.full(M, 1.0 / M)
        return Blend(mode, weights, coef, float(res.params["intercept"]))
    if mode == "bma":
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        ll = (_loglik(P, yy) * ww).sum(axis=1) / temperature
        e = np.exp(ll - ll.max())
        return Blend(mode, e / e.sum())
    if voting not in VOTING:
        raise ValueError(f"voting must be one of {VOTING}, got {voting!r}")
    if voting == "optimized":
        return Blend(mode, simplex_weights(P, yy, ww), voting=voting)
    return Blend(mode, np.full(M, 1.0 / M), voting=voting)


def predict_blend(blend: Blend, P) -> np.ndarray:
    """The blended probability of each row of P (M, n); (n,) float64."""
    P = _check(P)
    if blend.coef is not None:
        return 1.0 / (1.0 + np.exp(-(blend.intercept + blend.coef @ _logit(P))))
    if blend.voting == "hard":
        return blend.weights @ (P > 0.5).astype(np.float64)
    return blend.weights @ P


def member_weights(blend: Blend) -> np.ndarray:
    """(M,) non-negative weights summing to 1 (for importance aggregation and reports)."""
    return np.asarray(blend.weights, np.float64)


def _logit(P):
    Pc = np.clip(P, _LOGIT_CLIP, 1 - _LOGIT_CLIP)
    return np.log(Pc) - np.log1p(-Pc)


# ---------------------------------------------------------------------------------- simplex weights


def simplex_weights(P, y, w=None, tol: float = 1e-10, max_iter: int = 20_000) -> np.ndarray:
    """Weights on the simplex minimising the weighted log loss of the linear pool ``w . p``.

        min_w  -sum_i s_i [y_i log(w . p_i) + (1 - y_i) log(1 - w . p_i)] / sum s,
        w_m >= 0, sum w = 1

    Convex in w (minus the log of a linear function), solved by FISTA with projection onto the
    simplex from equal weights; stops when the projected-gradient mapping is below tol. (M,) float64.
    """
    P, y, w = _check(P, y, w)
    if not w.sum() > 0:
        raise ValueError("weights sum to zero: no row to fit the simplex weights on")
    x, ok = _simplex(jnp.asarray(P), jnp.asarray(y), jnp.asarray(w / w.sum()), tol, max_iter)
    if not bool(ok):
        raise RuntimeError(f"simplex weights did not converge in {max_iter} iterations")
    x = np.maximum(np.asarray(x, np.float64), 0.0)
    return x / x.sum()


@jax.jit
def _simplex(P, y, sn, tol, max_iter):
    def value_and_grad(wt):
        q = jnp.clip(wt @ P, _CLIP, 1 - _CLIP)
        v = -jnp.sum(sn * (y * jnp.log(q) + (1 - y) * jnp.log1p(-q)))
        dq = -sn * (y / q - (1 - y) / (1 - q))
        return v, P @ dq

    m = P.shape[0]
    res = fista(value_and_grad, lambda v, step: project_simplex(v), jnp.full(m, 1.0 / m), 1.0, tol,
                max_iter)
    return res.x, res.converged


# ---------------------------------------------------------------------------------- dynamic weights


def dynamic_blend(P, y, t0, t1, *, window: int = 500, temperature: float = 1.0):
    """Causal rolling-BMA blend. Returns (p (n,), weights (n, M)).

    weights_t ∝ exp(LL_t / T) with LL_t (M,) the summed log-likelihood of each member over the latest
    ``window`` rows i with ``t1_i <= t0_t``, taken in order of t1 (ties by row); equal weights while
    none is known. Every label must span time (``t1 > t0``), so a row's own outcome never counts.
    Cost O(n log n + n M) through prefix sums over the rows sorted by t1.
    """
    P, y, _ = _check(P, y)
    t0, t1 = np.asarray(t0), np.asarray(t1)
    if t0.shape != y.shape or t1.shape != y.shape:
        raise ValueError(f"t0 and t1 must have shape {y.shape}")
    if np.any(t1 <= t0):
        i = int(np.flatnonzero(t1 <= t0)[0])
        raise ValueError(f"label end t1 must be after its start t0: row {i} has t0={t0[i]}, t1={t1[i]}")
    if not np.all(np.isfinite(y)):
        raise ValueError(f"y is not finite at row {int(np.flatnonzero(~np.isfinite(y))[0])}")
    _check_dyn(window, temperature)
    order = np.argsort(t1, kind="stable")
    cum = np.vstack([np.zeros((1, P.shape[0])), np.cumsum(_loglik(P, y)[:, order].T, axis=0)])
    known = np.searchsorted(t1[order], t0, side="right")  # rows resolved when row t is decided
    ll = cum[known] - cum[np.maximum(known - window, 0)]
    weights = _softmax(ll / temperature)
    return np.sum(weights * P.T, axis=1), weights


class DynamicState(NamedTuple):
    """Streaming dynamic-blend state: ``loglik`` (window, M) ring buffer of the latest resolved rows'
    per-member log-likelihoods, ``count`` rows resolved so far, ``head`` the next slot to write."""

    loglik: np.ndarray
    count: int
    head: int


def _check_dyn(window, temperature):
    if not (isinstance(window, (int, np.integer)) and window >= 1):
        raise ValueError(f"window must be an integer >= 1, got {window!r}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


def dynamic_init(n_members: int, window: int = 500) -> DynamicState:
    """An empty state: no outcome resolved, equal weights."""
    _check_dyn(window, 1.0)
    return DynamicState(np.zeros((window, n_members)), 0, 0)


def dynamic_observe(state: DynamicState, p, y: float) -> DynamicState:
    """Record one resolved outcome y of a row the members had predicted p (M,); returns a new state.
    Feed rows in the order their labels resolve (t1) to match `dynamic_blend`."""
    buf = state.loglik.copy()
    buf[state.head] = _loglik(np.asarray(p, np.float64)[:, None], float(y))[:, 0]
    return DynamicState(buf, state.count + 1, (state.head + 1) % buf.shape[0])


def dynamic_weights(state: DynamicState, temperature: float = 1.0) -> np.ndarray:
    """(M,) blend weights from the resolved outcomes in the state (equal when there are none)."""
    return _softmax(state.loglik.sum(axis=0)[None, :] / temperature)[0]


def _softmax(a):
    e = np.exp(a - a.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# ---------------------------------------------------------------------------------- honest evaluation


def blend_oof(mode: str, P, y, w=None, *, splits=None, t0=None, t1=None, voting: str = "soft",
              C: float = 1.0, holdout_fraction: float = 0.3, temperature: float = 1.0,
              window: int = 500) -> np.ndarray:
    """Out-of-sample blended probabilities of the rows of P (M, n): (n,), NaN where never tested.

    - dynamic: `dynamic_blend` (needs t0, t1; causal, no splits);
    - voting soft / hard: nothing is learned from outcomes, the rule is applied to every row;
    - stacking, blending, bma, voting optimized: for each (train, test) of ``splits`` (purged K-fold
      over these rows, e.g. ``purged_kfold(t0, t1, 5, embargo)``), fit on train and predict test.
      A row tested by several splits keeps the last prediction.
    """
    if mode == "dynamic":
        if t0 is None or t1 is None:
            raise ValueError("the dynamic blend needs t0 and t1 (label start and end per row)")
        return dynamic_blend(P, y, t0, t1, window=window, temperature=temperature)[0]
    P = _check(P)
    out = np.full(P.shape[1], np.nan)
    if mode == "voting" and voting in ("soft", "hard"):
        return predict_blend(fit_blend(mode, P, np.zeros(P.shape[1]), voting=voting), P)
    if splits is None:
        raise ValueError(f"blend mode {mode!r} learns from outcomes: give purged splits to cross-fit it")
    for split in splits:
        train, test = split[0], split[-1]
        b = fit_blend(mode, P, y, w, rows=train, C=C, holdout_fraction=holdout_fraction,
                      voting=voting, temperature=temperature)
        out[test] = predict_blend(b, P[:, test])
    return out


def blend_paths(mode: str, paths_P, y, w=None, **kwargs) -> np.ndarray:
    """`blend_oof` on every CPCV path: paths_P (n_paths, M, n) -> (n_paths, n)."""
    return np.stack([blend_oof(mode, Pj, y, w, **kwargs) for Pj in np.asarray(paths_P)])
