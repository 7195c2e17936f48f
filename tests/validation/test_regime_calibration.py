"""Regime-specific isotonic calibration with a global fallback.

Reference: scikit-learn's IsotonicRegression(out_of_bounds="clip") fitted per regime by hand.
"""
import numpy as np
import pytest
from sklearn.isotonic import IsotonicRegression

from bot4jax.validation.regime_calibration import (
    RegimeCalibrator,
    assign_regimes,
    regime_edges,
    regime_isotonic_fit,
)
from bot4jax.validation.scoring import log_loss


def _world(seed, n):
    """A score that is over-confident in the high-volatility regime and under-confident in the calm
    one: the true probability is sigmoid(k * logit(score)) with k depending on the regime."""
    rng = np.random.default_rng(seed)
    vol = rng.lognormal(0.0, 0.5, n)
    score = rng.uniform(0.05, 0.95, n)
    k = np.where(vol > np.median(vol), 0.3, 2.5)
    logit = np.log(score / (1 - score))
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-k * logit))).astype(float)
    return score, y, vol


def _sk(x, y, w=None):
    return IsotonicRegression(out_of_bounds="clip").fit(x, y, sample_weight=w)


def test_each_regime_equals_sklearn_and_thin_regimes_fall_back():
    rng = np.random.default_rng(0)
    n = 1000
    p = rng.uniform(size=n)
    y = (rng.uniform(size=n) < p).astype(float)
    regime = np.where(np.arange(n) < 30, 2, rng.integers(0, 2, n))  # regime 2 has only 30 rows
    w = rng.uniform(0.5, 2.0, n)
    cal = regime_isotonic_fit(p, y, regime, w, min_count=50)
    assert set(cal.by_regime) == {0, 1} and cal.counts[2] == 30
    q = rng.uniform(-0.1, 1.1, 400)
    for g in (0, 1):
        ref = _sk(p[regime == g], y[regime == g], w[regime == g]).predict(q)
        np.testing.assert_allclose(cal.predict(q, np.full(400, g)), ref, rtol=0, atol=1e-12)
    glob = _sk(p, y, w).predict(q)
    for g in (2, 7):  # thin, and never seen
        np.testing.assert_allclose(cal.predict(q, np.full(400, g)), glob, rtol=0, atol=1e-12)
    mixed = np.array([0, 2, 1, 7])
    np.testing.assert_array_equal(cal.uses_global(mixed), [False, True, False, True])


def test_min_count_counts_rows_of_positive_weight():
    rng = np.random.default_rng(1)
    p, y = rng.uniform(size=200), (rng.uniform(size=200) < 0.5).astype(float)
    regime = np.repeat([0, 1], 100)
    w = np.where((regime == 1) & (np.arange(200) % 2 == 0), 0.0, 1.0)  # regime 1: 50 weighted rows
    cal = regime_isotonic_fit(p, y, regime, w, min_count=60)
    assert cal.counts == {0: 100, 1: 50} and set(cal.by_regime) == {0}


def test_regime_calibration_beats_global_out_of_sample():
    p_tr, y_tr, v_tr = _world(2, 6000)
    p_te, y_te, v_te = _world(3, 6000)
    edges = regime_edges(v_tr, 2)
    cal = regime_isotonic_fit(p_tr, y_tr, assign_regimes(v_tr, edges), min_count=200)
    by_regime = log_loss(np.clip(cal.predict(p_te, assign_regimes(v_te, edges)), 1e-3, 1 - 1e-3), y_te)
    glob = log_loss(np.clip(cal.global_cal.predict(p_te), 1e-3, 1 - 1e-3), y_te)
    assert by_regime < glob - 0.01


def test_edges_assign_and_state_round_trip():
    v = np.arange(1.0, 101.0)
    edges = regime_edges(v, 4)
    np.testing.assert_allclose(edges, np.quantile(v, [0.25, 0.5, 0.75]))
    r = assign_regimes(v, edges)
    assert np.bincount(r).tolist() == [25, 25, 25, 25]
    assert assign_regimes([edges[0]], edges)[0] == 1  # a value on an edge belongs to the upper regime
    with pytest.raises(ValueError, match="row 1"):
        assign_regimes([1.0, np.nan], edges)

    p, y, vol = _world(4, 800)
    cal = regime_isotonic_fit(p, y, assign_regimes(vol, regime_edges(vol, 3)), min_count=100)
    back = RegimeCalibrator.from_state(cal.state())
    q, g = np.linspace(0, 1, 50), np.arange(50) % 4
    np.testing.assert_array_equal(back.predict(q, g), cal.predict(q, g))
    assert back.counts == cal.counts and back.min_count == 100


def test_bad_input_is_named():
    p, y = np.array([0.2, 0.4, 0.6]), np.array([0.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="row 1"):
        regime_isotonic_fit(p, y, np.array([0, -1, 0]))
    with pytest.raises(ValueError, match="integers"):
        regime_isotonic_fit(p, y, np.array([0.0, 0.5, 1.0]))
    with pytest.raises(ValueError, match="min_count"):
        regime_isotonic_fit(p, y, np.array([0, 0, 0]), min_count=0)
