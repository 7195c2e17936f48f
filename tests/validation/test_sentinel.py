"""Leakage sentinel: a clean pipeline passes, a pipeline that feeds the future return to its model is
caught, and the truncation test finds a feature that reads prices after its own row.

The pipelines are real: the logistic member of the ensemble refitted through purged K-fold, with a
genuine signal in the data (so a pass is not the pass of a dead model: unshuffled, it earns a
Sharpe ratio well above the threshold).
"""
import numpy as np
import pytest

from bot4jax.models.members import logistic_member
from bot4jax.models.stacking import oof_predictions
from bot4jax.validation.purged_cv import purged_kfold
from bot4jax.validation.sentinel import (
    block_permutation,
    leakage_sentinel,
    long_short_sharpe,
    lookahead_check,
)

N = 3000


@pytest.fixture(scope="module")
def world():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(N, 3))
    fwd = 0.004 * x[:, 0] - 0.002 * x[:, 1] + 0.01 * rng.standard_t(5, size=N)  # forward returns
    t0 = np.arange(N, dtype=np.int64)
    splits = purged_kfold(t0, t0 + 1, 5)
    member = logistic_member(C=1.0)

    def pipeline(features):
        def run(outcome):
            y = (outcome > 0).astype(float)
            xs = features(outcome)
            oof = oof_predictions([member], xs, y, None, splits)
            p = np.full(N, np.nan)
            for (_, _, test), pt in zip(oof.splits, oof.test_p):
                p[test] = pt[0]
            return p
        return run

    clean = pipeline(lambda outcome: x)
    leaky = pipeline(lambda outcome: np.c_[x, outcome])  # the future return itself as a feature
    return fwd, clean, leaky


def test_block_permutation_stays_inside_blocks_and_is_seeded():
    inside = block_permutation(103, 10, np.random.default_rng(0), move_blocks=False)
    assert sorted(inside) == list(range(103))
    np.testing.assert_array_equal(inside // 10, np.arange(103) // 10)
    assert not np.array_equal(inside, np.arange(103))
    np.testing.assert_array_equal(inside, block_permutation(103, 10, np.random.default_rng(0), False))
    moved = block_permutation(103, 10, np.random.default_rng(0))
    assert sorted(moved) == list(range(103))
    runs = np.split(moved // 10, np.flatnonzero(np.diff(moved // 10)) + 1)
    assert len(runs) == 11 and sorted(r[0] for r in runs) == list(range(11))  # whole blocks, moved
    assert [r[0] for r in runs] != list(range(11))


def test_clean_pipeline_passes_but_has_real_signal_unshuffled(world):
    fwd, clean, _ = world
    real, _ = long_short_sharpe(clean(fwd), fwd, demean=True)
    assert real > 0.2  # the model does predict the true outcome
    res = leakage_sentinel(clean, fwd, block=20, seed=0, n_shuffles=2)
    assert res.passed, res
    assert all(abs(s) < 0.1 for s in res.sharpes) and res.n_used == N
    assert res.seeds == (0, 1) and res.move_blocks


def test_leaked_future_return_is_caught(world):
    fwd, _, leaky = world
    res = leakage_sentinel(leaky, fwd, block=20, seed=0)
    assert not res.passed
    assert res.worst > 0.5 and res.z[0] > 20


def test_sharpe_on_unshuffled_outcome_would_miss_the_leak(world):
    """Why the sentinel scores against the shuffled outcome: against the real one the leaky
    pipeline trained on shuffled labels looks clean."""
    fwd, _, leaky = world
    shuffled = fwd[block_permutation(N, 20, np.random.default_rng(0))]
    wrong, _ = long_short_sharpe(leaky(shuffled), fwd, demean=True)
    assert abs(wrong) < 0.1


def test_moving_blocks_removes_the_false_alarm_of_a_within_block_shuffle():
    """A clean pipeline with lookback features and overlapping 3-bar labels: shuffled only inside
    short blocks, the outcome put at row t is often an earlier, already resolved one that the
    trailing-return features partly know, so the clean model scores a spurious Sharpe ratio."""
    rng = np.random.default_rng(6)
    h = 3
    logc = np.cumsum(rng.standard_t(5, size=N + 20) * 0.01)
    t = np.arange(10, N + 10)
    fwd = logc[t + h] - logc[t]
    x = np.c_[logc[t] - logc[t - 1], logc[t] - logc[t - 3], logc[t] - logc[t - 8]]
    splits = purged_kfold(np.arange(N), np.arange(N) + h, 5)
    member = logistic_member(C=1.0)

    def clean(outcome):
        oof = oof_predictions([member], x, (outcome > 0).astype(float), None, splits)
        p = np.full(N, np.nan)
        for (_, _, test), pt in zip(oof.splits, oof.test_p):
            p[test] = pt[0]
        return p

    within = leakage_sentinel(clean, fwd, block=8, n_shuffles=2, move_blocks=False)
    assert not within.passed and min(within.sharpes) > 0.1
    moved = leakage_sentinel(clean, fwd, block=8, n_shuffles=2)
    assert moved.passed


def _features(close):
    """Trailing 5-bar mean return and trailing 10-bar range: causal by construction."""
    r = np.r_[np.nan, np.diff(np.log(close))]
    mean5 = np.array([np.mean(r[max(1, t - 4):t + 1]) if t >= 5 else np.nan for t in range(close.size)])
    rng10 = np.array([np.ptp(close[max(0, t - 9):t + 1]) for t in range(close.size)])
    return np.c_[mean5, rng10]


def test_lookahead_check_passes_causal_features_and_finds_the_peek():
    close = 100 * np.exp(np.cumsum(np.random.default_rng(5).normal(0, 0.01, 300)))
    ok = lookahead_check(lambda k: _features(close[:k]), close.size, cuts=[20, 150, 299])
    assert ok.passed and ok.max_abs_diff == 0.0

    def peeking(k):
        c = close[:k]
        nxt = np.r_[np.log(c[1:] / c[:-1]), np.nan]  # the next bar's return: look-ahead
        return np.c_[_features(c), nxt]

    bad = lookahead_check(peeking, close.size, cuts=[20, 150, 299])
    assert not bad.passed
    assert (bad.cut, bad.row, bad.column) == (20, 19, 2)  # the last row before the cut, 3rd column
