"""Probability calibration: isotonic regression (PAVA) and the scores that judge a calibration.

    cal = isotonic_fit(x, y, sample_weight=None)    x, y, weights (n,) -> IsotonicCalibrator
    p   = cal.predict(x_new)                         (k,) -> (k,) float64

The fit is the non-decreasing function f minimising

    sum_i w_i (y_i - f(x_i))^2,

found by the pool-adjacent-violators algorithm (Ayer et al. 1955; Best & Chakravarti 1990):
points with zero weight are dropped, points with equal x are pooled first (y becomes their
w-weighted mean, w their sum), PAVA runs over the sorted unique x (`bot4jax.kernels.isotonic_nb`),
and predictions interpolate linearly between the fitted points, clipped to the first / last fitted
value outside [min x, max x]. This reproduces scikit-learn's
`IsotonicRegression(out_of_bounds="clip")`, except that scikit-learn also pools x values closer than
1e-15 (an absolute tolerance); here only exactly equal x are pooled.

Typical use: x is a model's raw score or probability on out-of-fold data, y the 0/1 outcome; the
calibrator maps new scores to probabilities in [min y, max y].

`brier_score` and `expected_calibration_error` are the ones of `bot4jax.validation.scoring`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bot4jax.kernels.isotonic_nb import pava_nb, pool_ties_nb
from bot4jax.validation.scoring import brier as brier_score
from bot4jax.validation.scoring import expected_calibration_error

__all__ = ["IsotonicCalibrator", "isotonic_fit", "brier_score", "expected_calibration_error"]


@dataclass(frozen=True)
class IsotonicCalibrator:
    """A fitted isotonic map: the knots (x_knots, y_knots), both (m,) read-only float64, x strictly
    increasing, y non-decreasing; interior knots on a flat stretch are dropped (they change nothing
    in the interpolation). n_fit is the number of points with positive weight it was fitted on."""

    x_knots: np.ndarray
    y_knots: np.ndarray
    n_fit: int

    def predict(self, x) -> np.ndarray:
        """f(x) by linear interpolation between the knots, constant beyond the end knots; (k,)."""
        x = _as_1d_float(x, "x")
        if not np.all(np.isfinite(x)):
            raise ValueError(f"x has a non-finite value at index {_first_bad(x)}")
        return np.interp(x, self.x_knots, self.y_knots)


def isotonic_fit(x, y, sample_weight=None) -> IsotonicCalibrator:
    """Fit a non-decreasing isotonic calibrator of y on x (both (n,)), weights (n,) >= 0 or None.

    Raises ValueError naming the problem for empty or non-1-D input, mismatched lengths, non-finite
    x, y or weights, negative weights, or weights that are all zero.
    """
    x = _as_1d_float(x, "x")
    y = _as_1d_float(y, "y")
    if x.size == 0:
        raise ValueError("x is empty: isotonic_fit needs at least one point")
    if y.size != x.size:
        raise ValueError(f"length mismatch: x has {x.size} points, y has {y.size}")
    for name, a in (("x", x), ("y", y)):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} has a non-finite value at index {_first_bad(a)}")
    if sample_weight is None:
        w = np.ones_like(x)
    else:
        w = _as_1d_float(sample_weight, "sample_weight")
        if w.size != x.size:
            raise ValueError(f"length mismatch: x has {x.size} points, sample_weight has {w.size}")
        if not np.all(np.isfinite(w)):
            raise ValueError(f"sample_weight has a non-finite value at index {_first_bad(w)}")
        if np.any(w < 0):
            raise ValueError(
                f"sample_weight is negative at index {int(np.flatnonzero(w < 0)[0])}: weights must be >= 0")
        keep = w > 0
        if not keep.any():
            raise ValueError("sample_weight is zero everywhere: nothing to fit")
        if not keep.all():  # a zero-weight point carries no information, not even its x
            x, y, w = x[keep], y[keep], w[keep]

    order = np.argsort(x)
    ux, uy, uw = pool_ties_nb(x, y, w, order)
    fitted = pava_nb(uy, uw)
    # drop interior knots whose value equals both neighbours': the interpolation is the same
    keep = np.ones(fitted.size, dtype=bool)
    keep[1:-1] = (fitted[1:-1] != fitted[:-2]) | (fitted[1:-1] != fitted[2:])
    xk, yk = ux[keep], fitted[keep]
    xk.setflags(write=False)
    yk.setflags(write=False)
    return IsotonicCalibrator(x_knots=xk, y_knots=yk, n_fit=int(x.size))


def _as_1d_float(a, name: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D (or (n, 1)), got shape {a.shape}")
    return np.ascontiguousarray(a)


def _first_bad(a: np.ndarray) -> int:
    return int(np.flatnonzero(~np.isfinite(a))[0])
