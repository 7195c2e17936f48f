"""Combinatorial purged CV against skfolio's CombinatorialPurgedCV (purging and embargo off).

skfolio purges by a count of observations, not by label end times, so only unpurged splits are
comparable: here every label ends where it starts (t1 = t0, nothing overlaps another group) and the
embargo is 0. Both cut n samples into N - 1 groups of n // N and a last group with the remainder
(`cpcv_groups`), so groups, splits and path assembly are equal for any n.
"""
import itertools

import numpy as np
import pytest

from bot4jax.validation.purged_cv import backtest_paths, combinatorial_purged_cv, cpcv_groups

skfolio_ms = pytest.importorskip("skfolio.model_selection")

CASES = [(3, 2), (4, 2), (5, 2), (6, 2), (6, 3), (7, 4), (8, 2), (8, 5)]


def _ours(n, N, k):
    t0 = 1_700_000_000_000 + np.arange(n, dtype=np.int64) * 60_000
    return combinatorial_purged_cv(t0, t0.copy(), N, k, embargo=0.0)


def _theirs(n, N, k):
    cv = skfolio_ms.CombinatorialPurgedCV(n_folds=N, n_test_folds=k, purged_size=0, embargo_size=0)
    return cv, list(cv.split(np.zeros((n, 1))))


@pytest.mark.parametrize("N, k", CASES)
def test_splits_equal_skfolio_when_groups_divide_evenly(N, k):
    n = N * 13
    ours = _ours(n, N, k)
    cv, theirs = _theirs(n, N, k)
    assert len(ours) == len(theirs) == cv.n_splits
    for (train, test), (s_train, s_tests) in zip(ours, theirs):
        np.testing.assert_array_equal(train, s_train)
        np.testing.assert_array_equal(test, np.concatenate(s_tests))
    # and the groups themselves
    for g, idx in enumerate(cpcv_groups(n, N)):
        np.testing.assert_array_equal(idx, np.arange(g * 13, (g + 1) * 13))


@pytest.mark.parametrize("N, k", CASES)
def test_same_combinations_in_the_same_order_for_any_length(N, k):
    n = N * 11 + N - 1  # the largest remainder
    ours = _ours(n, N, k)
    cv, theirs = _theirs(n, N, k)
    ours_groups = cpcv_groups(n, N)
    sizes = [n // N] * (N - 1) + [n - (N - 1) * (n // N)]  # skfolio's folds
    bounds = np.r_[0, np.cumsum(sizes)]
    np.testing.assert_array_equal(cv.test_set_index, list(itertools.combinations(range(N), k)))
    for s, ((train, test), (s_train, s_tests)) in enumerate(zip(ours, theirs)):
        combo = cv.test_set_index[s]
        # skfolio tests folds `combo`, laid out by its sizes; ours tests the same group ids
        for fold, idx in zip(combo, s_tests):
            np.testing.assert_array_equal(idx, np.arange(bounds[fold], bounds[fold + 1]))
        np.testing.assert_array_equal(test, np.concatenate([ours_groups[g] for g in combo]))
        np.testing.assert_array_equal(train, np.setdiff1d(np.arange(n), test))
        np.testing.assert_array_equal(s_train, np.setdiff1d(np.arange(n), np.concatenate(s_tests)))


def test_splits_equal_skfolio_when_n_is_not_a_multiple():
    n, N, k = 6 * 11 + 5, 6, 2
    for (train, test), (s_train, s_tests) in zip(_ours(n, N, k), _theirs(n, N, k)[1]):
        np.testing.assert_array_equal(test, np.concatenate(s_tests))
        np.testing.assert_array_equal(train, s_train)


@pytest.mark.parametrize("N, k", CASES)
def test_backtest_paths_equal_skfolio_recombined_paths(N, k):
    cv = skfolio_ms.CombinatorialPurgedCV(n_folds=N, n_test_folds=k)
    paths = backtest_paths(N, k)
    assert paths.shape == (cv.n_test_paths, N)
    # skfolio: recombined_paths[fold, path] = split index; ours: paths[path, group]
    np.testing.assert_array_equal(paths.T, cv.recombined_paths)
    # and skfolio's path id of each (split, test fold) points back at the same split
    path_ids = cv.get_path_ids()
    for s, combo in enumerate(cv.test_set_index):
        for j, fold in enumerate(combo):
            assert paths[path_ids[s, j], fold] == s
