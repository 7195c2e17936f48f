"""Leakage checks run by every training job: the shuffled-outcome sentinel and a look-ahead test of
the features (`bot4jax.validation.sentinel`).

    res = shuffled_outcome_sentinel(members, inputs, fwd, dev, config)
    res = features_lookahead(bars, buy_volume, span)

The sentinel refits the members, exactly as the ensemble is fitted (same inputs, same weights, an
early-stopping block per split), through a purged K-fold on outcomes shuffled by blocks; labels are
rebuilt from the shuffled forward returns. Its pipeline output is the soft vote of the members'
out-of-fold probabilities (the blend needs nothing more to show a leak: a leaked feature makes every
member that reads it predict the shuffled outcome). Each member's own shuffled Sharpe is reported too.
"""
from __future__ import annotations

import numpy as np

from bot4jax.config import TrainConfig
from bot4jax.models import stacking as S
from bot4jax.train.cpcv import DevSamples, equal_sizes
from bot4jax.validation.purged_cv import combinatorial_purged_cv
from bot4jax.validation.sentinel import leakage_sentinel, long_short_sharpe, lookahead_check


def shuffled_outcome_sentinel(members, inputs_of, fwd: np.ndarray, dev: DevSamples,
                              config: TrainConfig, progress: bool = False) -> dict:
    """Run `leakage_sentinel` on the members; fwd (n,) each dev sample's forward return.

    inputs_of(outcome (n,)) -> {member name: inputs}: the members' inputs built in a world whose
    forward returns are `outcome`. Honest features never read it (the train job passes a function
    that ignores it); anything derived from the outcome (a target encoding, the future return itself)
    must be rebuilt from it, which is what lets the sentinel see it.
    """
    s = config.sentinel
    # k = 1: purged K-fold, with the group layout that assemble_paths expects
    folds = combinatorial_purged_cv(dev.t0, dev.t1, s.folds, 1, config.cv.embargo)
    triples = equal_sizes(S.validation_splits(folds, dev.t0, dev.t1, config.eval.val_fraction))
    member_p: list = []

    def pipeline(outcome):
        y = (outcome > 0).astype(np.float64)
        oof = S.oof_predictions(members, inputs_of(outcome), y, dev.w, triples, progress=progress)
        P = S.assemble_paths(oof, s.folds, 1)[0]
        member_p.append((P, outcome))
        return P.mean(axis=0)

    res = leakage_sentinel(pipeline, fwd, block=s.block, seed=config.seed, n_shuffles=s.n_shuffles,
                           threshold=s.threshold)
    per_member = {}
    for m, member in enumerate(members):
        per_member[member.name] = [long_short_sharpe(P[m], o, demean=True)[0] for P, o in member_p]
    return {"passed": res.passed, "sharpes": list(res.sharpes), "z": list(res.z), "threshold": res.threshold,
            "block": res.block, "folds": s.folds, "n_used": res.n_used, "drift_sharpe": res.drift_sharpe,
            "per_member_sharpes": per_member,
            "what": "per-row Sharpe of sign(p - 1/2) x demeaned outcome, after refitting every member "
                    "through a purged K-fold on outcomes shuffled by blocks (soft vote of the members)"}


def features_lookahead(build, n: int, n_cuts: int = 3) -> dict:
    """Truncation test: `build(k)` -> the feature rows computed from the first k bars only."""
    cuts = np.unique(np.linspace(max(60, n // 10), n - 1, n_cuts).astype(int))
    res = lookahead_check(build, n, cuts)
    return {"passed": res.passed, "cuts": cuts.tolist(), "first_difference": None if res.passed else
            {"cut": res.cut, "row": res.row, "column": res.column}, "max_abs_diff": res.max_abs_diff}
