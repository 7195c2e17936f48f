"""Purged K-fold and combinatorial purged cross-validation, with label-uniqueness and time-decay weights.

Financial labels span time: the label of sample i is decided by prices over ``[t0_i, t1_i]`` (its
start and its label end, e.g. a triple-barrier exit). A plain K-fold would train on samples whose
label interval overlaps the test period and so leak test outcomes into training. Following Lopez de
Prado, *Advances in Financial Machine Learning* (AFML, 2018), ch. 4 and 7 and 12:

- **purging**: a training sample i is dropped when its closed label interval overlaps the span of a
  test group, ``t0_i <= max(t1 in group)`` and ``t1_i >= min(t0 in group)``; touching end points count
  as overlap (a shared time stamp is shared information);
- **embargo**: the ``h = ceil(embargo * n)`` samples right after a test group's last sample are dropped
  from training too (serially correlated features leak backwards from them into the test group);
- nothing else is removed: every other sample trains.

Inputs: ``t0``, ``t1`` of shape (n,), any ordered numbers (int64 ms UTC in bot4jax), sorted by ``t0``
(ties allowed), with ``t1 >= t0``. Outputs are sorted int64 index arrays into those samples. Pure
NumPy: these are index computations, not numerics worth compiling.
"""
from __future__ import annotations

import itertools
import math

import numpy as np

__all__ = [
    "backtest_paths",
    "combinatorial_purged_cv",
    "contiguous_groups",
    "cpcv_groups",
    "purged_kfold",
    "time_decay_weights",
    "uniqueness_weights",
]

Split = tuple[np.ndarray, np.ndarray]


def _check_times(t0, t1) -> tuple[np.ndarray, np.ndarray]:
    t0, t1 = np.asarray(t0), np.asarray(t1)
    if t0.ndim != 1 or t1.ndim != 1 or t0.shape != t1.shape:
        raise ValueError(
            f"t0 and t1 must be 1-D arrays of one length, got shapes {t0.shape} and {t1.shape}"
        )
    if t0.dtype.kind not in "iuf" or t1.dtype.kind not in "iuf":
        raise ValueError(f"t0 and t1 must be numeric (e.g. int64 ms), got {t0.dtype} and {t1.dtype}")
    if t0.dtype.kind == "f" or t1.dtype.kind == "f":
        bad = np.flatnonzero(~(np.isfinite(t0) & np.isfinite(t1)))
        if bad.size:
            i = bad[0]
            raise ValueError(f"t0/t1 must be finite: sample {i} is t0={t0[i]}, t1={t1[i]}")
    back = np.flatnonzero(t0[1:] < t0[:-1])
    if back.size:
        i = back[0] + 1
        raise ValueError(
            f"samples must be sorted by t0: sample {i} starts at {t0[i]}, "
            f"before sample {i - 1} at {t0[i - 1]}"
        )
    neg = np.flatnonzero(t1 < t0)
    if neg.size:
        i = neg[0]
        raise ValueError(f"label end t1 must be >= start t0: sample {i} has t0={t0[i]}, t1={t1[i]}")
    return t0, t1


def _embargo_size(embargo: float, n: int) -> int:
    if not (0.0 <= embargo < 1.0):
        raise ValueError(f"embargo is a fraction of the sample count in [0, 1), got {embargo}")
    # round first so that 0.1 * 30 = 3.0000000000000004 embargoes 3 samples, not 4
    return int(math.ceil(round(embargo * n, 9)))


def contiguous_groups(n: int, n_groups: int) -> list[np.ndarray]:
    """Split ``range(n)`` into ``n_groups`` contiguous blocks, the first ``n % n_groups`` one larger.

    The same blocks as ``numpy.array_split(np.arange(n), n_groups)`` and as scikit-learn's unshuffled
    ``KFold`` test folds. Returns a list of sorted int64 arrays.
    """
    if not isinstance(n_groups, (int, np.integer)) or n_groups < 2:
        raise ValueError(f"the number of groups/splits must be an integer >= 2, got {n_groups!r}")
    if n_groups > n:
        raise ValueError(
            f"cannot split {n} samples into {n_groups} groups: need at least one sample per group"
        )
    base, extra = divmod(n, n_groups)
    sizes = np.full(n_groups, base, dtype=np.int64)
    sizes[:extra] += 1
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    return [np.arange(bounds[g], bounds[g + 1], dtype=np.int64) for g in range(n_groups)]


def cpcv_groups(n: int, n_groups: int) -> list[np.ndarray]:
    """The groups of combinatorial purged CV: N-1 groups of ``n // N`` samples, the last one taking the
    remainder. This is skfolio's ``CombinatorialPurgedCV`` layout (the reference the splits are tested
    against); it differs from ``contiguous_groups`` only when N does not divide n.
    """
    contiguous_groups(n, n_groups)  # the same argument checks
    size = n // n_groups
    bounds = [g * size for g in range(n_groups)] + [n]
    return [np.arange(bounds[g], bounds[g + 1], dtype=np.int64) for g in range(n_groups)]


def _purged_train(t0, t1, test_groups: list[np.ndarray], h: int) -> np.ndarray:
    """Indices neither in a test group, nor overlapping one's span, nor in the h samples after one."""
    n = t0.shape[0]
    keep = np.ones(n, dtype=bool)
    for idx in test_groups:
        lo, hi = t0[idx[0]], t1[idx].max()  # t0 is sorted, so the first sample starts the span
        keep &= ~((t0 <= hi) & (t1 >= lo))  # closed-interval overlap; also removes the group itself
        last = int(idx[-1])
        keep[last + 1:min(n, last + 1 + h)] = False
    return np.flatnonzero(keep).astype(np.int64)


def purged_kfold(t0, t1, n_splits: int, embargo: float = 0.0) -> list[Split]:
    """Purged K-fold with embargo (AFML 7.4): ``n_splits`` contiguous test folds in time order.

    Args:
      t0, t1: (n,) label start and end times, sorted by t0, ``t1 >= t0``.
      n_splits: number of folds K, ``2 <= K <= n``; fold sizes as ``KFold(K)`` (the first ``n % K``
        one larger).
      embargo: fraction of n; ``ceil(embargo * n)`` samples after each test fold leave training.

    Returns:
      K pairs ``(train, test)`` of sorted int64 index arrays. ``train`` excludes the test fold, every
      sample whose ``[t0_i, t1_i]`` overlaps ``[min t0, max t1]`` of the fold, and the embargo.
    """
    t0, t1 = _check_times(t0, t1)
    h = _embargo_size(embargo, t0.shape[0])
    folds = contiguous_groups(t0.shape[0], n_splits)
    return [(_purged_train(t0, t1, [test], h), test) for test in folds]


def combinatorial_purged_cv(
    t0, t1, n_groups: int, n_test_groups: int, embargo: float = 0.0
) -> list[Split]:
    """Combinatorial purged CV (AFML 12.4): every choice of k test groups out of N contiguous groups.

    The samples are cut into ``N = n_groups`` contiguous groups (``cpcv_groups``); split s
    tests on the s-th combination of ``itertools.combinations(range(N), k)`` and trains on the rest,
    purged and embargoed around each of its k test groups separately (as ``purged_kfold``).
    There are C(N, k) splits; each sample is tested in C(N-1, k-1) of them. Use ``backtest_paths``
    to stitch the test predictions into C(N-1, k-1) full backtest paths.

    Returns:
      C(N, k) pairs ``(train, test)`` of sorted int64 index arrays.
    """
    t0, t1 = _check_times(t0, t1)
    _check_k(n_groups, n_test_groups)
    h = _embargo_size(embargo, t0.shape[0])
    groups = cpcv_groups(t0.shape[0], n_groups)
    splits = []
    for combo in itertools.combinations(range(n_groups), n_test_groups):
        test_groups = [groups[g] for g in combo]
        splits.append((_purged_train(t0, t1, test_groups, h), np.concatenate(test_groups)))
    return splits


def _check_k(n_groups, n_test_groups) -> None:
    if not isinstance(n_groups, (int, np.integer)) or n_groups < 2:
        raise ValueError(f"n_groups must be an integer >= 2, got {n_groups!r}")
    if not isinstance(n_test_groups, (int, np.integer)) or not (1 <= n_test_groups < n_groups):
        raise ValueError(
            f"n_test_groups must be an integer in [1, n_groups - 1] = [1, {n_groups - 1}], "
            f"got {n_test_groups!r}"
        )


def backtest_paths(n_groups: int, n_test_groups: int) -> np.ndarray:
    """Which CPCV split supplies the test predictions of each group on each backtest path (AFML 12.4).

    Group g is tested by C(N-1, k-1) splits (in ``combinations`` order); path j takes group g's
    predictions from the j-th of them. So every path covers each group exactly once, and every
    (split, test group) pair is used by exactly one path.

    Returns:
      int64 array of shape (C(N-1, k-1), N): ``paths[j, g]`` is the split index (into the list of
      ``combinatorial_purged_cv``) whose test predictions path j uses for group g.
    """
    _check_k(n_groups, n_test_groups)
    n_paths = math.comb(n_groups - 1, n_test_groups - 1)
    paths = np.empty((n_paths, n_groups), dtype=np.int64)
    used = np.zeros(n_groups, dtype=np.int64)  # how many paths group g has been given to so far
    for s, combo in enumerate(itertools.combinations(range(n_groups), n_test_groups)):
        for g in combo:
            paths[used[g], g] = s
            used[g] += 1
    return paths


def uniqueness_weights(t0, t1) -> np.ndarray:
    """Average uniqueness of each label over its lifespan (AFML 4.4).

    The bar grid is the distinct sorted ``t0`` values b. Label i is alive at bar b when
    ``t0_i <= b <= t1_i``; the concurrency ``c_b`` is the number of labels alive at b (>= 1, since b is
    some label's start). Then ``u_i = mean over the bars b alive for i of 1 / c_b``, in (0, 1]; it is 1
    for a label that overlaps no other. Shapes: (n,), (n,) -> (n,) float64.

    O(n log n) through a difference array for c and a prefix sum of 1/c (float64 prefix sums: the
    absolute error of a mean is at most about n * 1e-16).
    """
    t0, t1 = _check_times(t0, t1)
    bars = np.unique(t0)
    first = np.searchsorted(bars, t0, side="left")  # first bar alive
    stop = np.searchsorted(bars, t1, side="right")  # one past the last bar alive
    delta = np.zeros(bars.shape[0] + 1, dtype=np.int64)
    np.add.at(delta, first, 1)
    np.add.at(delta, stop, -1)
    concurrency = np.cumsum(delta[:-1])
    prefix = np.concatenate([[0.0], np.cumsum(1.0 / concurrency)])
    # a mean of values <= 1 is <= 1; the clip only removes prefix-sum rounding (1 + 2e-16)
    return np.minimum((prefix[stop] - prefix[first]) / (stop - first), 1.0)


def time_decay_weights(uniqueness, last_weight: float = 1.0) -> np.ndarray:
    """Linear time decay over cumulative uniqueness (AFML 4.5, snippet 4.11).

    With ``x_i = sum_{j<=i} u_j`` (samples in time order) and ``c = last_weight`` in (-1, 1], the weight
    is ``d_i = max(0, a + b x_i)`` with ``d = 1`` for the newest sample (``x_n``) and

    - ``c >= 0``: ``b = (1 - c) / x_n``, ``a = 1 - b x_n = c``: weights fall linearly towards c for the
      oldest information (c = 1: no decay, c = 0: down to 0);
    - ``c < 0``: ``b = 1 / ((c + 1) x_n)``, ``a = 1 - b x_n``: the oldest fraction -c of cumulative
      uniqueness gets weight 0.

    The result multiplies the uniqueness (or return-attribution) weights; it is not normalised.
    Shapes: (n,) -> (n,) float64.
    """
    u = np.asarray(uniqueness, dtype=np.float64)
    if u.ndim != 1 or u.shape[0] == 0:
        raise ValueError(f"uniqueness must be a non-empty 1-D array, got shape {u.shape}")
    bad = np.flatnonzero(~(np.isfinite(u) & (u > 0)))
    if bad.size:
        raise ValueError(f"uniqueness must be finite and > 0: sample {bad[0]} is {u[bad[0]]}")
    c = float(last_weight)
    if not (-1.0 < c <= 1.0):
        raise ValueError(f"last_weight must be in (-1, 1], got {last_weight}")
    x = np.cumsum(u)
    slope = (1.0 - c) / x[-1] if c >= 0 else 1.0 / ((c + 1.0) * x[-1])
    const = 1.0 - slope * x[-1]
    return np.maximum(0.0, const + slope * x)
