"""Probability of backtest overfitting (CSCV) and the deflated Sharpe ratio.

References: the worked example of Bailey & Lopez de Prado (2014), scipy.stats (normal distribution,
skewness, kurtosis, ranks), a brute-force CSCV loop and a hand-computed 2-block case in this file.
"""
import itertools
import math

import numpy as np
import pytest
from scipy import stats

from bot4jax.validation.overfitting import (
    EULER_GAMMA,
    deflated_sharpe_ratio,
    expected_max_sharpe,
    pbo,
    probabilistic_sharpe_ratio,
    psr_from_moments,
    sharpe_moments,
)

# ------------------------------------------------------------------------------------------ PBO


def _pbo_reference(perf, S, metric):
    """CSCV from the paper, one combination at a time, ranks by scipy."""
    blocks = np.array_split(np.arange(perf.shape[0]), S)
    N = perf.shape[1]
    logits = []
    for combo in itertools.combinations(range(S), S // 2):
        inside = np.concatenate([blocks[b] for b in combo])
        outside = np.concatenate([blocks[b] for b in range(S) if b not in combo])
        best = int(np.argmax(metric(perf[inside])))
        omega = stats.rankdata(metric(perf[outside]))[best] / (N + 1)
        logits.append(math.log(omega / (1 - omega)))
    logits = np.array(logits)
    return float(np.mean(logits <= 0)), logits


def _sharpe(rows):
    return rows.mean(axis=0) / rows.std(axis=0, ddof=1)


@pytest.mark.parametrize("metric", ["sharpe", "mean", "callable"])
def test_pbo_equals_brute_force_cscv(metric):
    rng = np.random.default_rng(0)
    perf = rng.normal(size=(203, 7)) * 0.01 + rng.normal(size=7) * 0.002  # T not a multiple of S
    ref_metric = {"sharpe": _sharpe, "mean": lambda r: r.mean(axis=0), "callable": _sharpe}[metric]
    ours = pbo(perf, n_blocks=8, metric=_sharpe if metric == "callable" else metric)
    ref_pbo, ref_logits = _pbo_reference(perf, 8, ref_metric)
    assert ours.n_combinations == math.comb(8, 4)
    np.testing.assert_allclose(ours.logits, ref_logits, rtol=0, atol=1e-12)
    assert ours.pbo == ref_pbo


def test_pbo_two_blocks_by_hand():
    # config 0 wins block 0, config 1 wins block 1: each IS winner is the OOS loser
    perf = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 2.0], [0.0, 2.0]])
    res = pbo(perf, n_blocks=2, metric="mean")
    np.testing.assert_array_equal(res.best_is, [0, 1])
    np.testing.assert_array_equal(res.rank_oos, [1.0, 1.0])
    np.testing.assert_allclose(res.logits, [math.log(0.5)] * 2)  # omega = 1/3
    assert res.pbo == 1.0 and res.prob_oos_loss == 0.0
    # three configurations; each IS winner lands exactly on the OOS median: logit 0 counts as overfit
    perf = np.array([[3.0, 1.0, 2.0], [3.0, 1.0, 2.0], [2.0, 1.0, 3.0], [2.0, 1.0, 3.0]])
    res = pbo(perf, n_blocks=2, metric="mean")
    np.testing.assert_array_equal(res.best_is, [0, 2])
    np.testing.assert_array_equal(res.logits, [0.0, 0.0])
    assert res.pbo == 1.0


def test_pbo_is_low_for_real_skill_and_near_half_for_none():
    rng = np.random.default_rng(1)
    noise = rng.normal(size=(2000, 20)) * 0.01
    assert 0.3 < pbo(noise).pbo < 0.7
    skilled = noise.copy()
    skilled[:, 4] += 0.004
    res = pbo(skilled)
    assert res.pbo == 0.0 and np.all(res.best_is == 4)


def test_pbo_rejects_bad_input():
    with pytest.raises(ValueError, match="even"):
        pbo(np.zeros((100, 3)), n_blocks=5)
    bad = np.zeros((100, 3))
    bad[17, 2] = np.nan
    with pytest.raises(ValueError, match="period 17, configuration 2"):
        pbo(bad, n_blocks=4)


# ------------------------------------------------------------------------------------------ DSR


def test_deflated_sharpe_reproduces_the_papers_example():
    """Bailey & Lopez de Prado (2014), section 5: annual SR 2.5 over 1250 days, 100 trials whose
    annualised Sharpe ratios have variance 0.5, skewness -3, kurtosis 10: SR0 = 0.1132 daily,
    DSR = 0.9004."""
    sr0 = expected_max_sharpe(0.5 / 250, 100)
    assert sr0 == pytest.approx(0.1132, abs=5e-5)
    assert psr_from_moments(2.5 / math.sqrt(250), sr0, -3.0, 10.0, 1250) == pytest.approx(0.9004, abs=5e-5)


def test_expected_max_sharpe_formula_and_monte_carlo():
    V, n = 0.04, 50
    z = (1 - EULER_GAMMA) * stats.norm.ppf(1 - 1 / n) + EULER_GAMMA * stats.norm.ppf(1 - 1 / (n * math.e))
    assert expected_max_sharpe(V, n) == pytest.approx(math.sqrt(V) * z, rel=1e-12)
    draws = np.random.default_rng(2).normal(scale=math.sqrt(V), size=(20_000, n)).max(axis=1)
    assert expected_max_sharpe(V, n) == pytest.approx(draws.mean(), rel=0.02)  # an approximation
    assert expected_max_sharpe(V, 1) == 0.0


def test_psr_and_dsr_against_scipy_moments():
    rng = np.random.default_rng(3)
    r = rng.standard_t(4, size=900) * 0.01 + 0.001
    sr = r.mean() / r.std(ddof=1)
    g3, g4 = stats.skew(r), stats.kurtosis(r, fisher=True) + 3.0
    assert sharpe_moments(r) == pytest.approx((sr, g3, g4, 900), rel=1e-12)

    def psr(star):
        return stats.norm.cdf((sr - star) * math.sqrt(899) / math.sqrt(1 - g3 * sr + (g4 - 1) / 4 * sr**2))

    assert probabilistic_sharpe_ratio(r, 0.02) == pytest.approx(psr(0.02), rel=1e-12)
    trials = rng.normal(0.0, 0.03, size=40)
    res = deflated_sharpe_ratio(r, trials)
    star = expected_max_sharpe(float(trials.var(ddof=1)), 40)
    assert res.sr_benchmark == pytest.approx(star, rel=1e-12)
    assert res.dsr == pytest.approx(psr(star), rel=1e-12)
    assert res.psr_zero == pytest.approx(psr(0.0), rel=1e-12)
    assert res.dsr < res.psr_zero  # selection among 40 trials deflates the evidence
    same = deflated_sharpe_ratio(r, n_trials=40, sr_variance=float(trials.var(ddof=1)))
    assert same.dsr == res.dsr
    with pytest.raises(ValueError, match="trial_sharpes"):
        deflated_sharpe_ratio(r)
