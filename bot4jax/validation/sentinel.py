"""Leakage sentinels: a shuffled-outcome refit, and a truncation test for look-ahead in features.

**Shuffled-outcome sentinel** (`leakage_sentinel`). The caller's pipeline is refitted on a world where
the outcome has been shuffled by blocks of consecutive samples:

    r~ = r[pi]            pi shuffles the rows inside each block of ``block`` rows and (by default)
                          the order of the blocks too; seeded
    p  = pipeline(r~)     the pipeline builds its labels (y = r~ > 0, weights, anything derived from
                          the outcome) from r~ alone, refits through its purged CV, and returns
                          out-of-fold P(up) (n,), NaN where a row has no out-of-fold prediction
    s  = sign(p - 1/2) (r~ - mean r~)   the long/short strategy on the demeaned shuffled outcome,
                          per row (flat at p = 1/2); the mean is over the rows with a prediction
    SR = mean(s) / std(s) over those rows (per row, ddof 1, not annualised)

The pipeline passes when |SR| < threshold (default 0.1) for every shuffle.

What is compared, and why it catches the leak it is meant to catch: the strategy is scored against
the *same* shuffled outcome the pipeline was trained on. Features computed honestly from the past
(prices up to t) are untouched by the shuffle, and the outcome now at row t belongs to another time,
so a clean pipeline earns SR ~ 0 (standard error about 1/sqrt(n)). The outcome is demeaned so that
a model that learns only the base rate (always long in a rising market) scores 0 rather than the
market's drift (`SentinelResult.drift_sharpe`, reported for reference). A pipeline
that leaks the outcome into its features (the future return itself used as a feature, a target
encoding, a scaler fitted on labels, a label-aware feature selection over all rows) carries the
shuffle along into the leaked feature, keeps predicting r~ out of fold, and scores a large SR:
caught. Scoring against the *unshuffled* r instead would be meaningless: the leaked feature would
then stop predicting the labels the model is trained on, the model would ignore it, and the leak
would pass unseen.

Why the blocks move too (``move_blocks=True``): with a shuffle only inside blocks, the outcome placed
at row t is often that of an earlier row of its block whose label has already resolved by t, so
honest features that look back over recent prices partly know it, and a clean model learns that and
earns a spurious SR (measured on 5-minute BTC/USDT bars, 3-bar labels, the bar features and a
logistic model: 0.096 to 0.106 with 24-row blocks, above the threshold, 0.05 to 0.07 with 48 rows,
within +-0.03 at 288 rows). Moving the blocks sends each outcome far from its own time, which
removes this (|SR| <= 0.015 at every one of those block sizes) without touching the test's power
(the leaked future return still scores 0.7). With ``move_blocks=False`` the blocks should be many times longer than the features'
lookback plus the label horizon.

Costs are not charged (they would push a clean pipeline's SR below zero) and the rule is long/short
(a long/flat rule earns a share of the drift without any skill). n should be large enough that
1/sqrt(n) is well below the threshold (n >= 2,000 for 0.1: 4.5 standard errors).

What it cannot see: a feature that reads *prices* after t (e.g. close[t + 1] / close[t]) is not
derived from the outcome array, does not follow the shuffle, and so stops predicting; that kind of
look-ahead is what `lookahead_check` finds: features computed from the first k rows of the raw data
must equal the first k rows of the features computed from all of it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = ["LookaheadResult", "SentinelResult", "block_permutation", "leakage_sentinel",
           "lookahead_check", "long_short_sharpe"]


def block_permutation(n: int, block: int, rng: np.random.Generator, move_blocks: bool = True) -> np.ndarray:
    """A permutation of range(n) that shuffles rows inside consecutive blocks of ``block`` rows (the
    last block may be shorter) and, with ``move_blocks``, also shuffles the order of the blocks.
    int64 (n,): row t of the shuffled series takes row ``perm[t]`` of the original."""
    if not (isinstance(block, (int, np.integer)) and block >= 2):
        raise ValueError(f"block must be an integer >= 2 rows, got {block!r}")
    starts = np.arange(0, n, block)
    order = rng.permutation(starts.size) if move_blocks else np.arange(starts.size)
    pieces = []
    for b in order:
        seg = np.arange(starts[b], min(n, starts[b] + block), dtype=np.int64)
        pieces.append(seg[rng.permutation(seg.size)])
    return np.concatenate(pieces) if pieces else np.zeros(0, np.int64)


def long_short_sharpe(p, outcome, demean: bool = False) -> tuple[float, int]:
    """(per-row Sharpe of sign(p - 1/2) * outcome over rows where p is finite, rows used); with
    ``demean`` the outcome's mean over those rows is removed first. 0 when the strategy's returns
    have no spread (e.g. never in the market)."""
    p = np.asarray(p, np.float64)
    outcome = np.asarray(outcome, np.float64)
    ok = np.isfinite(p) & np.isfinite(outcome)
    o = outcome[ok] - (outcome[ok].mean() if demean and ok.any() else 0.0)
    s = np.sign(p[ok] - 0.5) * o
    if s.size < 2:
        raise ValueError(f"only {s.size} rows with a prediction: the Sharpe ratio needs at least 2")
    sd = s.std(ddof=1)
    return (float(s.mean() / sd) if sd > 0 else 0.0), int(s.size)


@dataclass(frozen=True)
class SentinelResult:
    """sharpes: per-row Sharpe of each shuffled refit; z: sharpe * sqrt(n_used) (about N(0, 1) for a
    clean pipeline without drift); passed: every |sharpe| < threshold; seeds: the generator seed of
    each shuffle; drift_sharpe: mean / std of the outcome, the SR of always being long, which the
    demeaning keeps out of ``sharpes``."""

    passed: bool
    sharpes: tuple
    z: tuple
    threshold: float
    block: int
    move_blocks: bool
    seeds: tuple
    n_used: int
    drift_sharpe: float

    @property
    def worst(self) -> float:
        """The shuffled Sharpe largest in absolute value."""
        return max(self.sharpes, key=abs)


def leakage_sentinel(pipeline: Callable[[np.ndarray], np.ndarray], outcome, *, block: int,
                     seed: int = 0, n_shuffles: int = 1, threshold: float = 0.1,
                     move_blocks: bool = True) -> SentinelResult:
    """Refit ``pipeline`` on outcomes shuffled within blocks and score it on them (module docstring).

    Args:
      pipeline: ``pipeline(outcome (n,)) -> p (n,)`` out-of-fold P(outcome > 0), NaN where none.
      outcome: (n,) each sample's forward return (what its label is made from), in time order; NaN
        where unknown (those rows are not scored).
      block: rows per shuffle block; seed: shuffle s uses ``numpy.random.default_rng(seed + s)``.
      move_blocks: shuffle the order of the blocks as well (see the module docstring).
    """
    outcome = np.asarray(outcome, np.float64)
    if outcome.ndim != 1:
        raise ValueError(f"outcome must be 1-D (n_samples,), got shape {outcome.shape}")
    if not threshold > 0:
        raise ValueError(f"threshold must be > 0, got {threshold}")
    sharpes, zs, seeds, used = [], [], [], 0
    for s in range(n_shuffles):
        perm = block_permutation(outcome.size, block, np.random.default_rng(seed + s), move_blocks)
        shuffled = outcome[perm]
        p = np.asarray(pipeline(shuffled.copy()), np.float64)
        if p.shape != outcome.shape:
            raise ValueError(f"the pipeline returned shape {p.shape}, expected {outcome.shape}")
        sr, used = long_short_sharpe(p, shuffled, demean=True)
        sharpes.append(sr)
        zs.append(sr * np.sqrt(used))
        seeds.append(seed + s)
    fin = outcome[np.isfinite(outcome)]
    drift = float(fin.mean() / fin.std(ddof=1)) if fin.size > 1 and fin.std() > 0 else 0.0
    return SentinelResult(all(abs(v) < threshold for v in sharpes), tuple(sharpes), tuple(zs),
                          float(threshold), int(block), bool(move_blocks), tuple(seeds), used, drift)


@dataclass(frozen=True)
class LookaheadResult:
    """passed: no feature changed; else the first (cut, row, column) where the features computed
    from the first ``cut`` rows differ from those computed from all rows, and the largest difference."""

    passed: bool
    cut: int | None
    row: int | None
    column: int | None
    max_abs_diff: float


def lookahead_check(compute: Callable[[int], np.ndarray], n: int, cuts, atol: float = 1e-12,
                    rtol: float = 1e-9) -> LookaheadResult:
    """Truncation test for look-ahead: ``compute(k)`` returns the features (k, F) built from the first
    k raw rows only; for every k in ``cuts`` they must equal rows [0, k) of ``compute(n)`` (NaN equal
    to NaN, within atol + rtol |value|). A feature at row t that reads data after t changes when the
    data are cut just after t, so cuts spread over the sample find it."""
    full = np.asarray(compute(n), np.float64)
    worst, first = 0.0, None
    for k in sorted(int(c) for c in cuts):
        if not (1 <= k <= n):
            raise ValueError(f"cut {k} is outside [1, {n}]")
        part = np.asarray(compute(k), np.float64)
        ref = full[:k]
        if part.shape != ref.shape:
            raise ValueError(f"compute({k}) returned shape {part.shape}, expected {ref.shape}")
        same_nan = np.isnan(part) == np.isnan(ref)
        diff = np.where(np.isnan(part) | np.isnan(ref), 0.0, np.abs(part - ref))
        bad = ~same_nan | (diff > atol + rtol * np.abs(np.nan_to_num(ref)))
        worst = max(worst, float(diff.max(initial=0.0)) if same_nan.all() else float("inf"))
        if first is None and bad.any():
            r, c = np.argwhere(bad.reshape(k, -1))[0]
            first = (k, int(r), int(c))
    if first is None:
        return LookaheadResult(True, None, None, None, worst)
    return LookaheadResult(False, *first, worst)
