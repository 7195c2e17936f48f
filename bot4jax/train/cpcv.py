"""Out-of-fold evaluation of the ensemble over combinatorial purged CV, on the development span only.

    res = evaluate_cpcv(members, inputs, dev, config, bars_per_year, progress)

`dev` holds the development samples in time order (the test span is never passed here): labels y,
label start / end t0, t1, the next bar's log return `next_ret` (what the long/flat rule earns), and
sample weights w. Steps, every number out of fold:

1. CPCV (N groups, k test groups, embargo), an early-stopping block carved from each training set;
   every member fitted on every split; the test predictions stitched into C(N-1, k-1) backtest paths
   (`bot4jax.models.stacking`).
2. Every blend mode on every path, cross-fitted over a purged K-fold of the path's rows (dynamic:
   causal, no fitting). The mode with the lowest mean out-of-fold log loss is chosen.
3. Per member and per mode, on each path: log loss, Brier, ECE, AUC, and the annualised Sharpe of the
   cost-aware long/flat rule; reported as mean and standard deviation over the paths.
4. The probability of backtest overfitting across members and modes (CSCV over the per-bar rule
   returns averaged across paths) and the deflated Sharpe ratio of the chosen mode.
5. Isotonic calibration of the chosen blend, cross-fitted over the same purged K-fold of each path:
   log loss, Brier and ECE before and after.
6. Diversity of the members and permutation feature importance aggregated over members with the
   chosen blend's weights.

It also returns what the final model needs: the blend fitted on every path's out-of-fold rows and
the isotonic calibrator fitted on the chosen blend's out-of-fold probabilities.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from bot4jax.config import TrainConfig
from bot4jax.models import stacking as S
from bot4jax.validation import scoring
from bot4jax.validation.calibration import isotonic_fit
from bot4jax.validation.overfitting import deflated_sharpe_ratio, pbo
from bot4jax.validation.purged_cv import combinatorial_purged_cv, purged_kfold
from bot4jax.validation.regime_calibration import assign_regimes, regime_edges, regime_isotonic_fit

log = logging.getLogger("bot4jax.train")


@dataclass(frozen=True)
class DevSamples:
    """The development samples, (n,) each, in time order."""

    y: np.ndarray
    t0: np.ndarray
    t1: np.ndarray
    next_ret: np.ndarray
    w: np.ndarray
    regime_var: np.ndarray | None = None  # the calibration regime variable, if regimes are used


@dataclass(frozen=True)
class CPCVResult:
    report: dict              # everything for metrics.json
    oof: S.OOF
    paths: np.ndarray         # (n_paths, M, n) member OOF probabilities
    blended: dict             # mode -> (n_paths, n) OOF blend probabilities
    calibrated: np.ndarray    # (n_paths, n) chosen blend after cross-fitted calibration
    chosen: str
    blend: S.Blend | None     # the chosen blend fitted on every path's rows (None: dynamic)
    calibrator: object        # IsotonicCalibrator or RegimeCalibrator
    regime_edges: np.ndarray | None
    importance: S.Importance | None
    importance_by_feature: dict
    diversity: dict


def evenly(idx: np.ndarray, k: int) -> np.ndarray:
    """k of the sorted indices idx, evenly spaced (all of them when k >= len(idx))."""
    m = idx.size
    return idx if k >= m else idx[(np.arange(k) * m) // k]


def equal_sizes(triples) -> list[tuple]:
    """Trim every (train, val, test) to the smallest training and validation sizes among them:
    training rows evenly thinned, the validation block keeping its latest rows. The splits of CPCV
    differ by a few percent in size; equal shapes let each member's compiled training step serve
    every split instead of compiling once per split."""
    n_tr = min(t[0].size for t in triples)
    n_va = min(t[1].size for t in triples)
    return [(evenly(tr, n_tr), va[va.size - n_va:], te) for tr, va, te in triples]


def modes_of(config: TrainConfig) -> list[str]:
    modes = [m.strip() for m in config.ensemble.modes.split(",") if m.strip()]
    bad = [m for m in modes if m not in S.MODES]
    if bad or not modes:
        from bot4jax.errors import ConfigError
        raise ConfigError(f"ensemble.modes must list blend modes among {list(S.MODES)}, got {config.ensemble.modes!r}")
    return modes


def _blend_kwargs(config: TrainConfig, mode: str, meta_splits, dev: DevSamples) -> dict:
    e = config.ensemble
    kw = {"splits": meta_splits, "C": e.stack_C, "holdout_fraction": e.holdout_fraction,
          "voting": e.voting, "temperature": e.bma_temperature}
    if mode == "dynamic":
        kw.update(t0=dev.t0, t1=dev.t1, window=e.dynamic_window, temperature=e.dynamic_temperature)
    return kw


def scores(p: np.ndarray, y: np.ndarray, next_ret: np.ndarray, config: TrainConfig,
           bars_per_year: float) -> tuple[dict, np.ndarray]:
    """(log loss, Brier, ECE, AUC, annualised Sharpe of the long/flat rule after costs), and the
    rule's per-bar log returns."""
    cost = config.eval.fee_bps + config.eval.slippage_bps
    ret, pos = scoring.long_flat_returns(p, next_ret, config.eval.min_edge, cost)
    return {"log_loss": scoring.log_loss(p, y), "brier": scoring.brier(p, y),
            "ece": scoring.expected_calibration_error(p, y), "auc": scoring.auc(p, y),
            "sharpe": scoring.sharpe(ret, bars_per_year), "time_in_market": float(pos.mean())}, ret


def _over_paths(P: np.ndarray, dev: DevSamples, config: TrainConfig, bars_per_year: float):
    """Scores of each path of P (n_paths, n): {metric: {"mean", "std", "paths"}}, and the per-bar rule
    returns averaged over the paths (n,)."""
    rows, rets = [], []
    for j in range(P.shape[0]):
        s, r = scores(P[j], dev.y, dev.next_ret, config, bars_per_year)
        rows.append(s)
        rets.append(r)
    out = {}
    for k in rows[0]:
        v = np.array([r[k] for r in rows])
        out[k] = {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
                  "paths": v.tolist()}
    return out, np.mean(rets, axis=0)


def _cross_fit_calibration(B: np.ndarray, dev: DevSamples, splits, config: TrainConfig, edges) -> np.ndarray:
    """Out-of-fold isotonic calibration of the blend on every path, B (n_paths, n): for each purged
    fold, one map fitted on the training rows of all the paths together (each row once per path, as
    the saved calibrator is) predicts the fold's rows on each path."""
    n_paths = B.shape[0]
    out = np.empty_like(B)
    c = config.calibration
    r = None if edges is None else assign_regimes(dev.regime_var, edges)
    for train, test in splits:
        x, y, w = B[:, train].reshape(-1), np.tile(dev.y[train], n_paths), np.tile(dev.w[train], n_paths)
        if r is None:
            cal = isotonic_fit(x, y, w)
            out[:, test] = cal.predict(B[:, test].reshape(-1)).reshape(n_paths, -1)
        else:
            cal = regime_isotonic_fit(x, y, np.tile(r[train], n_paths), w, c.min_count)
            out[:, test] = cal.predict(B[:, test].reshape(-1), np.tile(r[test], n_paths)).reshape(n_paths, -1)
    return np.clip(out, c.clip, 1.0 - c.clip)


def _pbo_and_dsr(returns: dict, chosen: str, n_rows: int) -> dict:
    """PBO over the configurations' per-bar returns, and the chosen one's deflated Sharpe."""
    names = list(returns)
    R = np.stack([returns[k] for k in names], axis=1)
    out = {"configurations": names}
    blocks = 16 if n_rows >= 64 else 2 * max(1, n_rows // 8)
    try:
        res = pbo(R, n_blocks=blocks)
        out["pbo"] = {"pbo": res.pbo, "n_blocks": res.n_blocks, "n_combinations": res.n_combinations,
                      "prob_oos_loss": res.prob_oos_loss, "degradation_slope": res.degradation_slope,
                      "metric": "per-bar Sharpe of the long/flat rule after costs, returns averaged over the CPCV paths"}
    except ValueError as e:
        out["pbo"] = {"pbo": None, "reason": str(e)}
    sharpes = []
    for k in names:
        r = returns[k]
        sd = r.std(ddof=1)
        sharpes.append(float(r.mean() / sd) if sd > 0 else 0.0)
    try:
        d = deflated_sharpe_ratio(returns[chosen], np.array(sharpes))
        out["deflated_sharpe"] = {"configuration": chosen, "dsr": d.dsr, "psr_zero": d.psr_zero,
                                  "sharpe_per_bar": d.sr, "expected_max_sharpe_per_bar": d.sr_benchmark,
                                  "n_trials": d.n_trials, "skew": d.skew, "kurtosis": d.kurtosis,
                                  "n_periods": d.n_periods}
    except ValueError as e:  # e.g. a rule that never trades has constant returns
        out["deflated_sharpe"] = {"configuration": chosen, "dsr": None, "reason": str(e)}
    return out


def _importance(members, inputs, dev: DevSamples, oof: S.OOF, weights: np.ndarray, rows: int,
                seed: int, specs) -> tuple[S.Importance, dict]:
    """Permutation importance of each member over its own columns, on up to `rows` evenly spaced
    test rows of every split; aggregated by feature name with the member weights."""
    per_member, by_name = [], {}
    wt = np.asarray(weights, np.float64) / np.sum(weights)
    for m, (member, spec) in enumerate(zip(members, specs)):
        splits, test_p = [], []
        for s, (train, val, test) in enumerate(oof.splits):
            keep = np.arange(test.size)
            if rows and test.size > rows:
                keep = np.round(np.linspace(0, test.size - 1, rows)).astype(np.int64)
            splits.append((train, val, test[keep]))
            test_p.append(oof.test_p[s][m:m + 1, keep])
        sub = S.OOF((member.name,), tuple(splits), tuple(test_p), tuple((p[m],) for p in oof.params), oof.n)
        imp = S.permutation_importance([member], {member.name: inputs[member.name]}, dev.y, sub, seed=seed)
        per_member.append(dict(zip(spec.features, imp.per_member[0].tolist())))
        for f, v in zip(spec.features, imp.per_member[0]):
            by_name[f] = by_name.get(f, 0.0) + wt[m] * float(v)
    names = sorted({f for d in per_member for f in d}, key=lambda f: -by_name[f])
    mat = np.array([[d.get(f, 0.0) for f in names] for d in per_member])
    agg = np.array([by_name[f] for f in names])
    return S.Importance(tuple(m.name for m in members), mat, wt, agg), {"features": names,
                                                                           "aggregated": agg.tolist(),
                                                                           "per_member": {m.name: d for m, d in zip(members, per_member)},
                                                                           "weights": dict(zip([m.name for m in members], wt.tolist()))}


def evaluate_cpcv(members, specs, inputs: dict, dev: DevSamples, config: TrainConfig, bars_per_year: float,
                  progress: bool = True) -> CPCVResult:
    cv = config.cv
    n = dev.y.size
    splits = combinatorial_purged_cv(dev.t0, dev.t1, cv.n_groups, cv.n_test_groups, cv.embargo)
    triples = equal_sizes(S.validation_splits(splits, dev.t0, dev.t1, config.eval.val_fraction))
    n_paths = math.comb(cv.n_groups - 1, cv.n_test_groups - 1)
    log.info("CPCV: %d groups, %d test groups: %d splits, %d backtest paths, %d members",
             cv.n_groups, cv.n_test_groups, len(splits), n_paths, len(members))
    oof = S.oof_predictions(members, inputs, dev.y, dev.w, triples, progress=progress)
    P = S.assemble_paths(oof, cv.n_groups, cv.n_test_groups)

    report = {"cv": {"n_groups": cv.n_groups, "n_test_groups": cv.n_test_groups, "n_splits": len(splits),
                     "n_paths": n_paths, "embargo": cv.embargo, "n_samples": int(n),
                     "train_sizes": [int(t[0].size) for t in triples]},
              "members": {}, "blends": {}}
    returns = {}
    for m, name in enumerate(oof.names):
        report["members"][name], returns[name] = _over_paths(P[:, m], dev, config, bars_per_year)

    meta_splits = purged_kfold(dev.t0, dev.t1, cv.blend_folds, cv.embargo)
    blended = {}
    for mode in modes_of(config):
        blended[mode] = S.blend_paths(mode, P, dev.y, dev.w, **_blend_kwargs(config, mode, meta_splits, dev))
        report["blends"][mode], returns[f"blend:{mode}"] = _over_paths(blended[mode], dev, config, bars_per_year)
    chosen = min(blended, key=lambda k: report["blends"][k]["log_loss"]["mean"])
    best_member = min(oof.names, key=lambda k: report["members"][k]["log_loss"]["mean"])
    ll_chosen = report["blends"][chosen]["log_loss"]["mean"]
    report["chosen"] = {
        "mode": chosen, "rule": "lowest mean out-of-fold log loss over the CPCV paths",
        "log_loss": ll_chosen, "best_member": best_member,
        "best_member_log_loss": report["members"][best_member]["log_loss"]["mean"],
        "beats_every_member": bool(all(ll_chosen < report["members"][k]["log_loss"]["mean"] for k in oof.names)),
        "beats_every_member_on_every_path": bool(all(
            np.all(np.array(report["blends"][chosen]["log_loss"]["paths"])
                   < np.array(report["members"][k]["log_loss"]["paths"])) for k in oof.names)),
    }
    report["overfitting"] = _pbo_and_dsr(returns, f"blend:{chosen}", n)

    # the final blend: fitted on every path's out-of-fold rows (each row once per path)
    blend = None
    e = config.ensemble
    if chosen != "dynamic":
        flat = P.transpose(1, 0, 2).reshape(P.shape[1], -1)
        order = np.tile(np.arange(n), n_paths)
        rows = np.argsort(order, kind="stable")  # keep time order (ties: path order) for "blending"
        blend = S.fit_blend(chosen, flat[:, rows], np.tile(dev.y, n_paths)[rows],
                            np.tile(dev.w, n_paths)[rows] / n_paths, C=e.stack_C,
                            holdout_fraction=e.holdout_fraction, voting=e.voting, temperature=e.bma_temperature)
        weights = S.member_weights(blend)
        report["chosen"]["weights"] = dict(zip(oof.names, weights.tolist()))
        if blend.coef is not None:
            report["chosen"]["meta_coef"] = dict(zip(oof.names, blend.coef.tolist()))
            report["chosen"]["meta_intercept"] = blend.intercept
    else:  # weights change every row: report (and weight the importance by) their mean
        weights = np.mean([S.dynamic_blend(P[j], dev.y, dev.t0, dev.t1, window=e.dynamic_window,
                                           temperature=e.dynamic_temperature)[1].mean(axis=0)
                           for j in range(n_paths)], axis=0)
        report["chosen"]["weights"] = dict(zip(oof.names, weights.tolist()))
        report["chosen"]["weights_are"] = "the dynamic weights' mean over every row of every path"

    # calibration of the chosen blend, cross-fitted, then fitted on every path's rows for the model
    c = config.calibration
    edges = None
    if c.regimes >= 2:
        edges = regime_edges(dev.regime_var, c.regimes)
    b = blended[chosen]
    calibrated = _cross_fit_calibration(b, dev, meta_splits, config, edges)
    before, _ = _over_paths(b, dev, config, bars_per_year)
    after, _ = _over_paths(calibrated, dev, config, bars_per_year)
    yy, ww = np.tile(dev.y, n_paths), np.tile(dev.w, n_paths)
    if edges is None:
        calibrator = isotonic_fit(b.reshape(-1), yy, ww)
    else:
        rr = np.tile(assign_regimes(dev.regime_var, edges), n_paths)
        calibrator = regime_isotonic_fit(b.reshape(-1), yy, rr, ww, c.min_count)
    report["calibration"] = {
        "method": "isotonic (PAVA), cross-fitted over a purged K-fold (one map per fold on the paths' "
                  "training rows together)" +
                  (f", {c.regimes} regimes of {c.regime_feature}" if edges is not None else ""),
        "before": {k: before[k]["mean"] for k in ("log_loss", "brier", "ece")},
        "after": {k: after[k]["mean"] for k in ("log_loss", "brier", "ece")},
        "clip": c.clip,
    }
    if edges is not None:
        report["calibration"]["regime_edges"] = edges.tolist()
        report["calibration"]["regime_counts"] = {str(k): v for k, v in calibrator.counts.items()}
        report["calibration"]["regimes_on_global_map"] = sorted(
            set(calibrator.counts) - set(calibrator.by_regime))

    divs = [S.diversity(P[j], dev.y) for j in range(n_paths)]
    div = {"members": list(oof.names),
           "disagreement": np.mean([d.disagreement for d in divs], axis=0).tolist(),
           "error_correlation": np.mean([d.error_corr for d in divs], axis=0).tolist(),
           "mean_disagreement": float(np.mean([d.mean_disagreement for d in divs])),
           "mean_error_correlation": float(np.mean([d.mean_error_corr for d in divs]))}
    report["diversity"] = div
    imp, imp_json = _importance(members, inputs, dev, oof, weights, e.importance_rows, config.seed, specs)
    report["importance"] = {"method": "permutation (log-loss increase on out-of-fold rows), aggregated "
                                      "with the chosen blend's member weights", **imp_json}
    return CPCVResult(report, oof, P, blended, calibrated, chosen, blend, calibrator, edges, imp, imp_json, div)
