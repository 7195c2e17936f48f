"""Stacking ensemble: out-of-fold member predictions, backtest paths, diversity, feature importance.

    splits = validation_splits(cv_splits, t0, t1, val_fraction)     (train, test) -> (train, val, test)
    oof    = oof_predictions(members, x, y, w, splits)               every member on every split
    P      = assemble_paths(oof, n_groups, n_test_groups)           (n_paths, M, n) OOF per CPCV path
    div    = diversity(P[j], y)                                      disagreement, error correlation
    imp    = permutation_importance(members, x, y, oof, weights)     (M, F) and weighted (F,)

The splits come from the caller (`bot4jax.validation.purged_cv`: purged K-fold or combinatorial
purged CV), so every member prediction used downstream is out of fold. The blend modes that turn the
(M, n) matrix of one path into one probability are in `bot4jax.models.blending` (re-exported here).
Samples are in time order along the first axis of x and y.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from tqdm.auto import tqdm

from bot4jax.models.blending import (  # noqa: F401  (re-exported: the ensemble's public API)
    MODES,
    Blend,
    DynamicState,
    blend_oof,
    blend_paths,
    dynamic_blend,
    dynamic_init,
    dynamic_observe,
    dynamic_weights,
    fit_blend,
    member_weights,
    predict_blend,
    simplex_weights,
)
from bot4jax.models.members import Member, logistic_member, mlp_member  # noqa: F401
from bot4jax.validation.purged_cv import backtest_paths, cpcv_groups

__all__ = [
    "MODES", "Blend", "Diversity", "DynamicState", "Importance", "Member", "OOF", "assemble_paths",
    "blend_oof", "blend_paths", "diversity", "dynamic_blend", "dynamic_init", "dynamic_observe",
    "dynamic_weights", "fit_blend", "logistic_member", "member_weights", "mlp_member",
    "oof_predictions", "permutation_importance", "predict_blend", "simplex_weights",
    "validation_splits",
]

_EMPTY = np.zeros(0, np.int64)


@dataclass(frozen=True)
class OOF:
    """Out-of-fold predictions of M members over S splits of n samples.

    names: (M,) member names; splits: S triples (train, val, test) of int64 indices;
    test_p: S arrays (M, len(test_s)), P(y = 1) of each member on split s's test rows, in the
    order of test_s; params: S tuples of M fitted parameter sets; n: the number of samples.
    """

    names: tuple
    splits: tuple
    test_p: tuple
    params: tuple
    n: int


def validation_splits(splits, t0, t1, val_fraction: float = 0.15) -> list[tuple]:
    """Carve an early-stopping block out of each training set: (train, test) -> (train', val, test).

    val = the latest ``ceil(val_fraction * len(train))`` training samples (in time order); train'
    keeps the earlier training samples whose label ends before val starts (``t1 < t0[val[0]]``), so no
    training label overlaps the validation block. Shapes: t0, t1 (n,); indices int64.
    """
    if not (0.0 < val_fraction < 1.0):
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    t0, t1 = np.asarray(t0), np.asarray(t1)
    out = []
    for s, split in enumerate(splits):
        train, test = np.asarray(split[0], np.int64), np.asarray(split[-1], np.int64)
        n_val = math.ceil(val_fraction * train.size)
        if n_val < 1 or n_val >= train.size:
            raise ValueError(f"split {s}: {train.size} training samples cannot give a validation block "
                             f"of fraction {val_fraction}")
        val, rest = train[-n_val:], train[:-n_val]
        rest = rest[t1[rest] < t0[val[0]]]
        if rest.size == 0:
            raise ValueError(f"split {s}: no training sample left before the validation block")
        out.append((rest, val, test))
    return out


def _member_x(x, name: str):
    if isinstance(x, Mapping):
        if name not in x:
            raise KeyError(f"no input for member {name!r}: x has {sorted(x)}")
        return x[name]
    return x


def oof_predictions(members: Sequence[Member], x, y, w, splits, progress: bool = False) -> OOF:
    """Fit every member on every split's training rows and predict its test rows.

    Args:
      members: M members with distinct names.
      x: the inputs, first axis = the n samples: one array shared by all members, or a mapping
        member name -> array (e.g. rows (n, F) for the logistic model, windows (n, T, F) for the LSTM).
      y: (n,) labels in [0, 1] (NaN allowed outside every training set). w: (n,) weights or None.
      splits: (train, test) pairs or (train, val, test) triples of int64 indices.

    Returns an `OOF`. Predictions are float64 and checked finite and in [0, 1].
    """
    names = tuple(m.name for m in members)
    if len(set(names)) != len(names):
        raise ValueError(f"member names must be unique, got {names}")
    y = np.asarray(y, np.float64)
    n = y.shape[0]
    triples = []
    for split in splits:
        if len(split) == 2:
            triples.append((np.asarray(split[0], np.int64), _EMPTY, np.asarray(split[1], np.int64)))
        elif len(split) == 3:
            triples.append(tuple(np.asarray(a, np.int64) for a in split))
        else:
            raise ValueError(f"a split is (train, test) or (train, val, test), got {len(split)} arrays")
    test_p, params = [], []
    bar = tqdm(total=len(triples) * len(members), desc="out-of-fold", unit="fit", disable=not progress,
               leave=False)
    for s, (train, val, test) in enumerate(triples):
        ps, prm = np.empty((len(members), test.size)), []
        for m, member in enumerate(members):
            xm = _member_x(x, member.name)
            theta = member.fit(xm, y, w, train, val)
            p = np.asarray(member.predict(theta, xm[test]), np.float64).reshape(-1)
            if p.shape != (test.size,) or not np.all((p >= 0) & (p <= 1)):
                raise ValueError(f"member {member.name!r} on split {s}: predictions must be {test.size} "
                                 "probabilities in [0, 1]")
            ps[m] = p
            prm.append(theta)
            bar.update()
        test_p.append(ps)
        params.append(tuple(prm))
    bar.close()
    return OOF(names, tuple(triples), tuple(test_p), tuple(params), n)


def assemble_paths(oof: OOF, n_groups: int, n_test_groups: int) -> np.ndarray:
    """Stitch the split predictions into the C(N-1, k-1) CPCV backtest paths (AFML 12.4).

    ``oof`` must come from ``combinatorial_purged_cv(.., n_groups, n_test_groups)`` (in its order;
    k = 1 is purged K-fold, one path). Path j takes group g's predictions from split
    ``backtest_paths(N, k)[j, g]``. Returns (n_paths, M, n) float64, every entry filled.
    """
    groups = cpcv_groups(oof.n, n_groups)
    paths = backtest_paths(n_groups, n_test_groups)
    if len(oof.splits) != math.comb(n_groups, n_test_groups):
        raise ValueError(f"{len(oof.splits)} splits, but C({n_groups}, {n_test_groups}) = "
                         f"{math.comb(n_groups, n_test_groups)} expected")
    out = np.empty((paths.shape[0], len(oof.names), oof.n))
    for j in range(paths.shape[0]):
        for g, idx in enumerate(groups):
            s = paths[j, g]
            test = oof.splits[s][2]
            pos = np.searchsorted(test, idx)
            if np.any(pos >= test.size) or not np.array_equal(test[np.minimum(pos, test.size - 1)], idx):
                raise ValueError(f"split {s} does not test group {g}: were the splits made by "
                                 f"combinatorial_purged_cv(.., {n_groups}, {n_test_groups})?")
            out[j, :, idx] = oof.test_p[s][:, pos].T
    return out


@dataclass(frozen=True)
class Diversity:
    """disagreement[a, b]: fraction of rows where members a and b fall on different sides of 0.5;
    error_corr[a, b]: Pearson correlation of the errors y - p_a and y - p_b; the means are over the
    pairs a < b (NaN for a single member). Matrices (M, M)."""

    disagreement: np.ndarray
    error_corr: np.ndarray
    mean_disagreement: float
    mean_error_corr: float


def diversity(P, y) -> Diversity:
    """Diversity of M members' probabilities P (M, n) on labels y (n,). Low error correlation and high
    disagreement mean the members err on different rows: what a blend can exploit."""
    P = np.asarray(P, np.float64)
    y = np.asarray(y, np.float64)
    up = P > 0.5
    dis = (up[:, None, :] != up[None, :, :]).mean(axis=2)
    err = y[None, :] - P
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.corrcoef(err) if P.shape[0] > 1 else np.ones((1, 1))
    iu = np.triu_indices(P.shape[0], 1)
    mean = (lambda a: float(a[iu].mean()) if iu[0].size else float("nan"))
    return Diversity(dis, np.atleast_2d(corr), mean(dis), mean(np.atleast_2d(corr)))


@dataclass(frozen=True)
class Importance:
    """per_member (M, F): mean increase of the member's test log loss when feature f is permuted
    across the test rows (larger = more important); weights (M,): the member weights used, summing
    to 1; aggregated (F,) = weights @ per_member."""

    names: tuple
    per_member: np.ndarray
    weights: np.ndarray
    aggregated: np.ndarray


def permutation_importance(members: Sequence[Member], x, y, oof: OOF, weights=None,
                           n_repeats: int = 1, seed: int = 0) -> Importance:
    """Permutation importance on the out-of-fold predictions, aggregated across members.

    For every split s, member m and feature f (the last axis of the member's x), the test rows'
    feature f is permuted across rows (a whole window column for sequence inputs), the member
    re-predicts with the parameters fitted on split s, and the increase of the log loss over the
    unpermuted test rows is recorded; per_member averages it over splits (weighted by the number of
    test rows) and repeats. weights: (M,) member weights (e.g. `member_weights(blend)`), normalised
    to sum 1; None = equal. Seeded with ``numpy.random.default_rng(seed)``.
    """
    from bot4jax.validation.scoring import log_loss

    if [m.name for m in members] != list(oof.names):
        raise ValueError(f"members {[m.name for m in members]} do not match the OOF's {list(oof.names)}")
    y = np.asarray(y, np.float64)
    n_feat = {np.shape(_member_x(x, m.name))[-1] for m in members}
    if len(n_feat) != 1:
        raise ValueError(f"members see different feature counts {sorted(n_feat)}: importance cannot be "
                         "aggregated across them")
    F = n_feat.pop()
    rng = np.random.default_rng(seed)
    imp = np.zeros((len(members), F))
    total = 0
    for s, (_, _, test) in enumerate(oof.splits):
        yt = y[test]
        for m, member in enumerate(members):
            xt = np.asarray(_member_x(x, member.name))[test]
            base = log_loss(oof.test_p[s][m], yt)
            for f in range(F):
                for _ in range(n_repeats):
                    xp = xt.copy()
                    xp[..., f] = xt[rng.permutation(test.size)][..., f]
                    p = np.asarray(member.predict(oof.params[s][m], xp), np.float64)
                    imp[m, f] += test.size * (log_loss(p, yt) - base) / n_repeats
        total += test.size
    imp /= total
    wt = np.full(len(members), 1.0 / len(members)) if weights is None else np.asarray(weights, np.float64)
    if wt.shape != (len(members),) or np.any(wt < 0) or not wt.sum() > 0:
        raise ValueError(f"weights must be {len(members)} non-negative numbers with a positive sum")
    wt = wt / wt.sum()
    return Importance(tuple(oof.names), imp, wt, wt @ imp)
