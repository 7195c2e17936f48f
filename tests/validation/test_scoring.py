import numpy as np
import pytest
from sklearn import metrics as skm

from bot4jax.validation import scoring


@pytest.fixture(scope="module")
def preds():
    rng = np.random.default_rng(0)
    p = rng.uniform(0.01, 0.99, 2000)
    y = (rng.uniform(size=2000) < p).astype(float)
    p[:50] = 0.5  # ties for the AUC
    return p, y


def test_against_scikit_learn(preds):
    p, y = preds
    assert scoring.log_loss(p, y) == pytest.approx(skm.log_loss(y, p), rel=1e-12)
    assert scoring.brier(p, y) == pytest.approx(skm.brier_score_loss(y, p), rel=1e-12)
    assert scoring.auc(p, y) == pytest.approx(skm.roc_auc_score(y, p), rel=1e-12)
    assert scoring.accuracy(p, y) == pytest.approx(skm.accuracy_score(y, p > 0.5))


def test_ece_of_perfectly_calibrated_bins_is_zero():
    p = np.repeat([0.15, 0.55, 0.85], 20)
    y = np.concatenate([np.r_[np.ones(3), np.zeros(17)], np.r_[np.ones(11), np.zeros(9)],
                        np.r_[np.ones(17), np.zeros(3)]])
    assert scoring.expected_calibration_error(p, y) == pytest.approx(0.0, abs=1e-12)
    assert scoring.expected_calibration_error(np.full(60, 0.9), y) > 0.3


def test_long_flat_costs_and_positions():
    p = np.array([0.6, 0.6, 0.4, 0.7])
    r = np.array([0.01, -0.02, 0.03, 0.005])
    ret, pos = scoring.long_flat_returns(p, r, min_edge=0.05, cost_bps=10)
    assert pos.tolist() == [1, 1, 0, 1]
    c = np.log1p(-1e-3)
    np.testing.assert_allclose(ret, [0.01 + c, -0.02, c, 0.005 + c])


def test_sharpe_and_drawdown():
    r = np.array([0.01, -0.005, 0.02, 0.0])
    assert scoring.sharpe(r, 365) == pytest.approx(r.mean() / r.std(ddof=1) * np.sqrt(365))
    assert scoring.sharpe(np.zeros(5), 365) == 0.0
    assert scoring.max_drawdown(np.array([1.0, 1.2, 0.9, 1.3, 1.0])) == pytest.approx(0.25)
