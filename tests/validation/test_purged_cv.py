"""Purged K-fold, combinatorial purged CV, backtest paths and sample weights.

References: plain loops written from the definitions (in this file), scikit-learn's KFold and
numpy.array_split when purging and embargo are off, and hand-worked small cases.
"""
import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.model_selection import KFold

from bot4jax.validation.purged_cv import (
    backtest_paths,
    combinatorial_purged_cv,
    contiguous_groups,
    purged_kfold,
    time_decay_weights,
    uniqueness_weights,
)

SETTINGS = settings(max_examples=60, deadline=None)


def skfolio_layout(n, n_groups):
    """CPCV groups as skfolio cuts them: N - 1 groups of n // N, the remainder in the last."""
    size = n // n_groups
    return [np.arange(g * size, (g + 1) * size if g < n_groups - 1 else n) for g in range(n_groups)]


# ---------------------------------------------------------------------------------------- strategies


@st.composite
def labels(draw, min_n=2, max_n=40, strict=False, zero_length=False):
    """(t0, t1): t0 sorted (ties allowed unless strict) int64 ms, t1 = t0 + a duration >= 0."""
    n = draw(st.integers(min_n, max_n))
    gaps = draw(st.lists(st.integers(1 if strict else 0, 5), min_size=n, max_size=n))
    t0 = 1_700_000_000_000 + np.cumsum(np.asarray(gaps, dtype=np.int64)) * 60_000
    if zero_length:
        return t0, t0.copy()
    dur = draw(st.lists(st.integers(0, 12), min_size=n, max_size=n))
    return t0, t0 + np.asarray(dur, dtype=np.int64) * 60_000


# ---------------------------------------------------------------------------------------- references


def ref_train(t0, t1, test_groups, embargo):
    """Training set by the definition, one sample at a time."""
    n = len(t0)
    h = math.ceil(round(embargo * n, 9))
    in_test = {int(i) for g in test_groups for i in g}
    train = []
    for i in range(n):
        if i in in_test:
            continue
        dropped = False
        for g in test_groups:
            lo, hi = min(t0[j] for j in g), max(t1[j] for j in g)
            if t0[i] <= hi and t1[i] >= lo:  # purged: label interval overlaps the group's span
                dropped = True
            if max(g) < i <= max(g) + h:  # embargoed
                dropped = True
        if not dropped:
            train.append(i)
    return np.asarray(train, dtype=np.int64)


def ref_uniqueness(t0, t1):
    bars = sorted(set(t0.tolist()))
    conc = {b: sum(1 for a, e in zip(t0, t1) if a <= b <= e) for b in bars}
    return np.array([np.mean([1.0 / conc[b] for b in bars if a <= b <= e]) for a, e in zip(t0, t1)])


def no_leak(t0, t1, train, test):
    """No training label interval overlaps any test label interval (closed intervals)."""
    if len(train) == 0 or len(test) == 0:
        return True
    overlap = (t0[train][:, None] <= t1[test][None, :]) & (t1[train][:, None] >= t0[test][None, :])
    return not overlap.any()


def assert_index_array(a):
    assert a.dtype == np.int64 and a.ndim == 1
    assert np.all(np.diff(a) > 0)


# ---------------------------------------------------------------------------------------- K-fold


@SETTINGS
@given(labels(), st.integers(2, 6), st.floats(0.0, 0.3))
def test_kfold_purges_embargoes_and_nothing_else(data, k, embargo):
    t0, t1 = data
    n = len(t0)
    k = min(k, n)
    splits = purged_kfold(t0, t1, k, embargo)
    assert len(splits) == k
    h = math.ceil(round(embargo * n, 9))
    tested = np.zeros(n, dtype=int)
    for train, test in splits:
        assert_index_array(train)
        assert_index_array(test)
        assert np.array_equal(test, np.arange(test[0], test[-1] + 1))  # contiguous
        tested[test] += 1
        assert np.intersect1d(train, test).size == 0
        assert no_leak(t0, t1, train, test)
        assert np.intersect1d(train, np.arange(test[-1] + 1, test[-1] + 1 + h)).size == 0
        assert np.array_equal(train, ref_train(t0, t1, [test], embargo))
    assert np.all(tested == 1)
    sizes = [len(te) for _, te in splits]
    assert sizes == [len(te) for _, te in KFold(k).split(np.zeros(n))]


@SETTINGS
@given(labels(strict=True, zero_length=True), st.integers(2, 6))
def test_kfold_without_purge_or_embargo_is_sklearn_kfold(data, k):
    t0, t1 = data
    k = min(k, len(t0))
    ours = purged_kfold(t0, t1, k)
    theirs = list(KFold(n_splits=k).split(np.zeros(len(t0))))
    assert len(ours) == len(theirs)
    for (tr, te), (str_, ste) in zip(ours, theirs):
        assert np.array_equal(tr, str_) and np.array_equal(te, ste)


def test_kfold_hand_case():
    # 6 samples, 3 folds; sample 1's label runs into fold 1 (sample 2) and is purged from fold 1's
    # training; sample 4 starts where sample 3 (fold 1) ends: touching counts as overlap
    t0 = np.array([0, 10, 20, 30, 40, 50])
    t1 = np.array([5, 20, 25, 40, 45, 55])
    (tr0, te0), (tr1, te1), (tr2, te2) = purged_kfold(t0, t1, 3)
    assert te0.tolist() == [0, 1] and tr0.tolist() == [3, 4, 5]  # sample 2 starts at 20 = t1 of sample 1
    assert te1.tolist() == [2, 3] and tr1.tolist() == [0, 5]
    assert te2.tolist() == [4, 5] and tr2.tolist() == [0, 1, 2]
    # embargo 1/3 -> the two samples after each fold leave training as well
    (tr0, _), (tr1, _), (tr2, _) = purged_kfold(t0, t1, 3, embargo=1 / 3)
    assert tr0.tolist() == [4, 5]  # sample 2 purged, sample 3 embargoed
    assert tr1.tolist() == [0]  # sample 4 purged, sample 5 embargoed
    assert tr2.tolist() == [0, 1, 2]  # nothing after the last fold


def test_embargo_rounds_up_but_not_from_float_noise():
    t0 = np.arange(30, dtype=np.int64)
    (tr, te), *_ = purged_kfold(t0, t0, 3, embargo=0.1)  # 0.1 * 30 = 3.0000000000000004 -> 3
    assert te.tolist() == list(range(10)) and tr[0] == 13
    (tr, te), *_ = purged_kfold(t0, t0, 3, embargo=0.05)  # 1.5 -> 2
    assert tr[0] == 12


# ---------------------------------------------------------------------------------------- CPCV


@SETTINGS
@given(labels(min_n=3), st.integers(2, 6), st.integers(1, 5), st.floats(0.0, 0.2))
def test_cpcv_purges_embargoes_and_tests_each_sample_c_times(data, n_groups, k, embargo):
    t0, t1 = data
    n = len(t0)
    n_groups = min(n_groups, n)
    k = min(k, n_groups - 1)
    splits = combinatorial_purged_cv(t0, t1, n_groups, k, embargo)
    assert len(splits) == math.comb(n_groups, k)
    groups = skfolio_layout(n, n_groups)
    h = math.ceil(round(embargo * n, 9))
    tested = np.zeros(n, dtype=int)
    for (train, test), combo in zip(splits, itertools.combinations(range(n_groups), k)):
        assert_index_array(train)
        assert_index_array(test)
        assert np.array_equal(test, np.concatenate([groups[g] for g in combo]))
        tested[test] += 1
        assert no_leak(t0, t1, train, test)
        for g in combo:
            after = np.arange(groups[g][-1] + 1, groups[g][-1] + 1 + h)
            assert np.intersect1d(train, after).size == 0
        assert np.array_equal(train, ref_train(t0, t1, [groups[g] for g in combo], embargo))
    assert np.all(tested == math.comb(n_groups - 1, k - 1))


@SETTINGS
@given(labels(min_n=3, strict=True, zero_length=True), st.integers(2, 6), st.integers(1, 5))
def test_cpcv_without_purge_or_embargo_trains_on_the_complement(data, n_groups, k):
    t0, t1 = data
    n = len(t0)
    n_groups = min(n_groups, n)
    k = min(k, n_groups - 1)
    for g, ours in zip(np.array_split(np.arange(n), n_groups), contiguous_groups(n, n_groups)):
        assert np.array_equal(g, ours)
    groups = skfolio_layout(n, n_groups)
    for (train, test), combo in zip(combinatorial_purged_cv(t0, t1, n_groups, k),
                                    itertools.combinations(range(n_groups), k)):
        assert np.array_equal(test, np.concatenate([groups[g] for g in combo]))
        assert np.array_equal(train, np.setdiff1d(np.arange(n), test))


def test_cpcv_with_one_test_group_is_purged_kfold():
    rng = np.random.default_rng(0)
    t0 = np.sort(rng.integers(0, 1000, 50))
    t1 = t0 + rng.integers(0, 40, 50)
    for a, b in zip(combinatorial_purged_cv(t0, t1, 5, 1, 0.04), purged_kfold(t0, t1, 5, 0.04)):
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


# ---------------------------------------------------------------------------------------- paths


def test_backtest_paths_hand_case():
    # combinations of 2 out of 4: 0:(0,1) 1:(0,2) 2:(0,3) 3:(1,2) 4:(1,3) 5:(2,3)
    assert backtest_paths(4, 2).tolist() == [[0, 0, 1, 2], [1, 3, 3, 4], [2, 4, 5, 5]]
    assert backtest_paths(5, 1).tolist() == [[0, 1, 2, 3, 4]]


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 9), st.integers(1, 8))
def test_backtest_paths_cover_every_group_once_and_use_every_test_group_once(n_groups, k):
    k = min(k, n_groups - 1)
    paths = backtest_paths(n_groups, k)
    combos = list(itertools.combinations(range(n_groups), k))
    assert paths.shape == (math.comb(n_groups - 1, k - 1), n_groups) and paths.dtype == np.int64
    used = set()
    for path in paths:
        for g, s in enumerate(path):  # column g of a path is group g: each group exactly once
            assert g in combos[s]  # the split really tests group g
            used.add((int(s), g))
    assert len(used) == paths.size == len(combos) * k  # every (split, test group) used exactly once
    for g in range(n_groups):  # the j-th split testing g, in order
        assert paths[:, g].tolist() == [s for s, c in enumerate(combos) if g in c]


def test_paths_stitch_full_out_of_sample_backtests():
    n, n_groups, k = 23, 6, 2
    t0 = np.arange(n, dtype=np.int64)
    splits = combinatorial_purged_cv(t0, t0 + 2, n_groups, k, 0.05)
    groups = skfolio_layout(n, n_groups)
    for path in backtest_paths(n_groups, k):
        stitched = np.concatenate([np.intersect1d(splits[s][1], groups[g]) for g, s in enumerate(path)])
        assert np.array_equal(stitched, np.arange(n))


# ---------------------------------------------------------------------------------------- weights


@SETTINGS
@given(labels(min_n=1, max_n=30))
def test_uniqueness_equals_loop_reference(data):
    t0, t1 = data
    u = uniqueness_weights(t0, t1)
    assert u.dtype == np.float64 and u.shape == t0.shape
    np.testing.assert_allclose(u, ref_uniqueness(t0, t1), rtol=1e-12, atol=0)
    assert np.all((u > 0) & (u <= 1))


@SETTINGS
@given(st.lists(st.integers(1, 10), min_size=1, max_size=30), st.data())
def test_uniqueness_is_one_for_non_overlapping_labels(gaps, data):
    t0 = np.cumsum(np.asarray(gaps, dtype=np.int64))
    room = np.r_[np.diff(t0) - 1, 10]  # a label may end anywhere before the next one starts
    t1 = t0 + np.array([data.draw(st.integers(0, int(r))) for r in room], dtype=np.int64)
    assert np.array_equal(uniqueness_weights(t0, t1), np.ones(len(t0)))


def test_uniqueness_hand_case():
    # bars 0, 1, 2; concurrency 1, 2, 2
    u = uniqueness_weights(np.array([0, 1, 2]), np.array([1, 2, 3]))
    np.testing.assert_allclose(u, [0.75, 0.5, 0.5], rtol=1e-15)
    # two labels on the same bar share it
    np.testing.assert_allclose(uniqueness_weights(np.array([5, 5]), np.array([5, 5])), [0.5, 0.5])


def test_time_decay_formula():
    u = np.array([0.5, 1.0, 0.25, 0.25])  # cumulative 0.5, 1.5, 1.75, 2.0
    x = np.cumsum(u)
    np.testing.assert_allclose(time_decay_weights(u, 1.0), np.ones(4))
    np.testing.assert_allclose(time_decay_weights(u, 0.0), x / 2.0)
    np.testing.assert_allclose(time_decay_weights(u, 0.5), 0.5 + 0.5 * x / 2.0)
    # c = -0.5: zero until half of the cumulative uniqueness, then linear up to 1: slope 1 / (0.5 * 2)
    np.testing.assert_allclose(time_decay_weights(u, -0.5), np.maximum(0.0, 1.0 + (x - 2.0)))
    assert time_decay_weights(u, -0.5).tolist()[:2] == [0.0, 0.5]


@SETTINGS
@given(st.lists(st.floats(0.01, 1.0), min_size=1, max_size=40), st.floats(-0.99, 1.0))
def test_time_decay_is_monotone_and_ends_at_one(u, c):
    w = time_decay_weights(np.array(u), c)
    assert np.all(np.diff(w) >= -1e-12) and np.all(w >= 0)
    assert w[-1] == pytest.approx(1.0, abs=1e-12)
    if c >= 0:
        assert w[0] == pytest.approx(c + (1 - c) * u[0] / sum(u), abs=1e-12)


# ---------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: purged_kfold([0, 2, 1], [0, 2, 1], 2), "sorted by t0: sample 2"),
        (lambda: purged_kfold([0, 1, 2], [0, 0, 2], 2), "sample 1 has t0=1, t1=0"),
        (lambda: purged_kfold([0, 1], [0, 1], 3), "cannot split 2 samples into 3"),
        (lambda: purged_kfold([0, 1], [0, 1], 1), ">= 2"),
        (lambda: purged_kfold([0, 1], [0, 1], 2, embargo=1.0), "embargo"),
        (lambda: purged_kfold([0.0, np.nan], [0.0, 1.0], 2), "finite: sample 1"),
        (lambda: purged_kfold([0, 1], [0, 1, 2], 2), "one length"),
        (lambda: combinatorial_purged_cv([0, 1, 2], [0, 1, 2], 3, 3), "n_test_groups"),
        (lambda: backtest_paths(4, 0), "n_test_groups"),
        (lambda: time_decay_weights([1.0, 0.0]), "sample 1"),
        (lambda: time_decay_weights([1.0], last_weight=-1.0), "last_weight"),
    ],
)
def test_bad_input_is_refused_clearly(call, match):
    with pytest.raises(ValueError, match=match):
        call()
