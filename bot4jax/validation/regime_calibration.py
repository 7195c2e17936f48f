"""Regime-specific isotonic calibration, falling back to the global calibrator for thin regimes.

    edges = regime_edges(vol_train, n_regimes=3)               quantile cut points of a regime variable
    r     = assign_regimes(vol, edges)                         (n,) int64 regime 0 .. n_regimes - 1
    cal   = regime_isotonic_fit(p, y, r, sample_weight=None, min_count=200)
    q     = cal.predict(p_new, r_new)                          (k,), (k,) -> (k,) float64

A model's miscalibration often depends on the market state (over-confident in calm markets, under-
confident in turbulent ones). The calibrator fits one isotonic map (`isotonic_fit`, PAVA) per regime
on the rows of that regime, and one global map on all rows. A regime with fewer than ``min_count``
rows of positive weight is not fitted on its own: its rows, and any regime never seen in the fit,
are calibrated by the global map. Regimes are non-negative integers (e.g. volatility terciles from
`regime_edges` / `assign_regimes`; the edges must come from training data only, like the fit).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bot4jax.validation.calibration import IsotonicCalibrator, isotonic_fit

__all__ = ["RegimeCalibrator", "assign_regimes", "regime_edges", "regime_isotonic_fit"]


@dataclass(frozen=True)
class RegimeCalibrator:
    """global_cal: fitted on every row; by_regime: regime id -> its own calibrator (only regimes with
    at least min_count rows); counts: regime id -> rows of positive weight in the fit."""

    global_cal: IsotonicCalibrator
    by_regime: dict
    counts: dict
    min_count: int

    def uses_global(self, regime) -> np.ndarray:
        """(k,) bool: which rows fall back to the global calibrator."""
        r = _regimes(regime)
        return ~np.isin(r, np.fromiter(self.by_regime, np.int64, len(self.by_regime)))

    def predict(self, p, regime) -> np.ndarray:
        """Calibrated probabilities of scores p (k,) in regimes ``regime`` (k,); (k,) float64."""
        p = np.asarray(p, np.float64)
        r = _regimes(regime)
        if p.shape != r.shape or p.ndim != 1:
            raise ValueError(f"p and regime must be 1-D of one length, got {p.shape} and {r.shape}")
        out = self.global_cal.predict(p)
        for g, cal in self.by_regime.items():
            sel = r == g
            if sel.any():
                out[sel] = cal.predict(p[sel])
        return out

    def state(self) -> dict:
        """A pytree of arrays (string keys) for checkpointing; `from_state` inverts it."""
        def one(c):
            return {"x": np.asarray(c.x_knots), "y": np.asarray(c.y_knots), "n_fit": np.int64(c.n_fit)}
        return {"global": one(self.global_cal), "min_count": np.int64(self.min_count),
                "regimes": {str(g): one(c) for g, c in self.by_regime.items()},
                "counts": {str(g): np.int64(v) for g, v in self.counts.items()}}

    @classmethod
    def from_state(cls, state: dict) -> RegimeCalibrator:
        def one(d):
            x, y = np.array(d["x"], np.float64), np.array(d["y"], np.float64)
            x.setflags(write=False)
            y.setflags(write=False)
            return IsotonicCalibrator(x, y, int(d["n_fit"]))
        return cls(one(state["global"]), {int(g): one(d) for g, d in state["regimes"].items()},
                   {int(g): int(v) for g, v in state["counts"].items()}, int(state["min_count"]))


def regime_isotonic_fit(p, y, regime, sample_weight=None, min_count: int = 200) -> RegimeCalibrator:
    """Fit the global and the per-regime isotonic calibrators of y (n,) on scores p (n,).

    regime: (n,) non-negative integer regime of each row. min_count: rows (of positive weight) a
    regime needs for its own calibrator, >= 1.
    """
    p = np.asarray(p, np.float64)
    y = np.asarray(y, np.float64)
    r = _regimes(regime)
    if p.ndim != 1 or p.shape != y.shape or r.shape != p.shape:
        raise ValueError(f"p, y and regime must be 1-D of one length, got {p.shape}, {y.shape}, {r.shape}")
    if not (isinstance(min_count, (int, np.integer)) and min_count >= 1):
        raise ValueError(f"min_count must be an integer >= 1, got {min_count!r}")
    w = None if sample_weight is None else np.asarray(sample_weight, np.float64)
    global_cal = isotonic_fit(p, y, w)  # also validates p, y and the weights
    positive = np.ones(p.size, bool) if w is None else w > 0
    by_regime, counts = {}, {}
    for g in np.unique(r):
        sel = r == g
        counts[int(g)] = int(np.count_nonzero(sel & positive))
        if counts[int(g)] >= min_count:
            by_regime[int(g)] = isotonic_fit(p[sel], y[sel], None if w is None else w[sel])
    return RegimeCalibrator(global_cal, by_regime, counts, int(min_count))


def regime_edges(values, n_regimes: int) -> np.ndarray:
    """Cut points (n_regimes - 1,) at the quantiles k / n_regimes of the finite training values, so
    the regimes of `assign_regimes` hold about equal shares of the training rows."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if not (isinstance(n_regimes, (int, np.integer)) and n_regimes >= 2):
        raise ValueError(f"n_regimes must be an integer >= 2, got {n_regimes!r}")
    if v.size < n_regimes:
        raise ValueError(f"{v.size} finite values cannot define {n_regimes} regimes")
    return np.quantile(v, np.arange(1, n_regimes) / n_regimes)


def assign_regimes(values, edges) -> np.ndarray:
    """Regime of each value: the number of edges <= value, in [0, len(edges)]; int64 (n,).
    Raises on a non-finite value (its regime is unknown: drop or fill it before)."""
    v = np.asarray(values, np.float64)
    bad = np.flatnonzero(~np.isfinite(v))
    if bad.size:
        raise ValueError(f"regime variable is not finite at row {bad[0]}")
    return np.searchsorted(np.asarray(edges, np.float64), v, side="right").astype(np.int64)


def _regimes(regime) -> np.ndarray:
    r = np.asarray(regime)
    if r.dtype.kind not in "iu":
        if r.dtype.kind == "f" and np.all(np.isfinite(r)) and np.all(r == np.round(r)):
            r = r.astype(np.int64)
        else:
            raise ValueError(f"regime ids must be integers, got dtype {r.dtype}")
    if np.any(r < 0):
        raise ValueError(f"regime ids must be >= 0: row {int(np.flatnonzero(r < 0)[0])} is {r[r < 0][0]}")
    return r.astype(np.int64)
