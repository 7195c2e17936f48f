"""The research run: bars (+ order flow) -> features -> labels -> calibrated stacking ensemble, validated
by combinatorial purged CV, then judged once on an untouched test span.

    run_dir = run_training(config)

Time order is respected throughout. The test span (the last `eval.test_fraction` of the usable
samples) is never used for any fitting or choice; development samples whose label ends at or after
its first bar are purged. On the development span:

    CPCV out-of-fold predictions of every member -> every blend mode on every backtest path ->
    the mode with the lowest out-of-fold log loss -> isotonic calibration (cross-fitted for the
    report) -> PBO and deflated Sharpe, diversity, importance -> the leakage sentinel and a feature
    look-ahead test -> every member refitted on the whole span (an early-stopping block at its end),
    the blend and the calibrator fitted on the out-of-fold rows.

The saved ensemble then predicts the whole series the way the live engine does (`predict_bars`:
the LSTM as one stream from the first bar after the warm-up) and is scored on the test span.
Everything goes to `<out>/<run-id>/`: config.toml, metrics.json, importance.json, calibration
plots before / after, importance.png, equity.png, run.log and the orbax checkpoint in model/.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import numpy as np

from bot4jax import plots
from bot4jax.config import TrainConfig
from bot4jax.data.sources import market_from
from bot4jax.data.timeframes import infer_timeframe, periods_per_year
from bot4jax.data.types import take
from bot4jax.errors import ConfigError, DataError
from bot4jax.features.labels import forward_return_labels
from bot4jax.models.stacking import validation_splits
from bot4jax.registry.checkpoints import CheckpointStore, save_model
from bot4jax.risk.inputs import fit_bar_volatility, payoff_ratio
from bot4jax.runs import make_run_dir, setup_logging, write_config, write_json
from bot4jax.train import report
from bot4jax.train.cpcv import DevSamples, evaluate_cpcv
from bot4jax.train.ensemble import Ensemble, predict_bars, to_checkpoint
from bot4jax.train.features import feature_matrix, feature_names
from bot4jax.train.leakage import features_lookahead, shuffled_outcome_sentinel
from bot4jax.train.members import build_members, first_sample, member_inputs, member_specs
from bot4jax.validation import scoring
from bot4jax.validation.purged_cv import time_decay_weights, uniqueness_weights

log = logging.getLogger("bot4jax.train")

MIN_SAMPLES = 500
# The smoke-test size (tests use it): a short simulation, fewer LSTM windows, 4 CPCV groups.
QUICK = {"data.sim_bars": 6_000, "lstm.max_train": 2_000, "ensemble.importance_rows": 400,
         "cv.n_groups": 4, "sentinel.folds": 3}


def quick_config(config: TrainConfig) -> TrainConfig:
    """Each QUICK size caps the configured one."""
    for key, cap in QUICK.items():
        section, name = key.split(".")
        sub = getattr(config, section)
        sub = dataclasses.replace(sub, **{name: min(getattr(sub, name), cap)})
        config = dataclasses.replace(config, **{section: sub})
    return config


def load_market(config: TrainConfig):
    """(bars, buy volume per bar or None, description, timeframe). The simulator's trades give the
    buy volume; candle files have none."""
    d = config.data
    bars, buy_volume, source = market_from(d.path, d.repair, d.sim_bars, d.sim_seed, d.timeframe)
    return bars, buy_volume, source, (infer_timeframe(bars.ts) if d.path else d.timeframe)


def split_rows(finite, y, t1, ts, start: int, test_fraction: float):
    """(dev_start, dev_stop, test rows): samples from `start` on with features and a known label; the
    last `test_fraction` of them are the test span; dev samples whose label reaches into it are purged."""
    usable = np.flatnonzero(finite & np.isfinite(y))
    usable = usable[usable >= start]
    n_test = int(round(usable.size * test_fraction))
    if usable.size < MIN_SAMPLES or n_test < 1:
        raise DataError("<features>", f"only {usable.size} usable bars after the warm-up of the features and "
                        f"the members' input windows and the label horizon; need at least {MIN_SAMPLES}")
    test = usable[-n_test:]
    dev = usable[:-n_test]
    dev = dev[t1[dev] < ts[test[0]]]
    if dev.size == 0 or not np.array_equal(dev, np.arange(dev[0], dev[-1] + 1)):
        raise DataError("<features>", "the development rows are not one contiguous block of bars")
    return int(dev[0]), int(dev[-1]) + 1, test


def test_report(p, y, next_ret, ts, config: TrainConfig, bars_per_year: float) -> tuple[dict, dict]:
    """Scores on the test rows, and the equity curves of the long/flat rule and of buy and hold."""
    cost = config.eval.fee_bps + config.eval.slippage_bps
    ret, pos = scoring.long_flat_returns(p, next_ret, config.eval.min_edge, cost)
    equity = np.exp(np.cumsum(ret))
    hold = np.exp(np.cumsum(next_ret))
    metrics = {
        "log_loss": scoring.log_loss(p, y),
        "log_loss_base_rate": scoring.log_loss(np.full_like(p, y.mean()), y),
        "brier": scoring.brier(p, y),
        "accuracy": scoring.accuracy(p, y),
        "auc": scoring.auc(p, y),
        "ece": scoring.expected_calibration_error(p, y),
        "base_rate_up": float(y.mean()),
        "strategy": {
            "rule": f"long when P(up) > {0.5 + config.eval.min_edge:.3f}, flat otherwise",
            "cost_bps_per_side": cost,
            "sharpe": scoring.sharpe(ret, bars_per_year),
            "total_return": float(equity[-1] - 1.0),
            "max_drawdown": scoring.max_drawdown(equity),
            "time_in_market": float(pos.mean()),
            "position_changes": int(np.abs(np.diff(np.r_[0.0, pos])).sum()),
            "buy_and_hold_return": float(hold[-1] - 1.0),
            "buy_and_hold_sharpe": scoring.sharpe(next_ret, bars_per_year),
        },
    }
    return metrics, {"ts": ts, "strategy": equity, "buy and hold": hold}


def _features_of_first(bars, flow, k: int, span: int) -> np.ndarray:
    """Feature rows 0 .. k-1 computed from bars 0 .. k-1 only: the later rows are replaced by copies
    of bar k-1 (one array length, so the batch features compile once for every cut)."""
    n = len(bars)
    keep = np.minimum(np.arange(n), k - 1)
    padded = take(bars, keep)
    f = None if flow is None else flow[keep]
    return feature_matrix(padded, f, span)[:k]


def run_training(config: TrainConfig, progress: bool = True, json_logs: bool = False) -> Path:
    """Run the whole research job; returns the run directory."""
    if config.quick:
        config = quick_config(config)
    run_dir = make_run_dir(config.out, "train", config.seed)
    setup_logging(run_dir, json_logs)
    write_config(run_dir, config)
    clock = {"start": time.perf_counter()}

    bars, buy_volume, source, timeframe = load_market(config)
    with_flow = config.features.order_flow and buy_volume is not None
    names = feature_names(with_flow)
    flow = buy_volume if with_flow else None
    x = feature_matrix(bars, flow, config.features.flow_span)
    log.info("data: %s, %d bars, timeframe %s; %d features%s", source, len(bars), timeframe, len(names),
             " (with order flow from the trades)" if with_flow else
             " (no trades in this data: no order-flow features)" if config.features.order_flow else "")

    h = config.label.horizon
    y, t1, fwd = forward_return_labels(bars.ts, bars.close, h)
    _, _, next_ret = forward_return_labels(bars.ts, bars.close, 1)
    finite = np.all(np.isfinite(x), axis=1)
    if not finite.any():
        raise DataError(source, f"no bar has every feature defined: {len(bars)} bars are fewer than the warm-up")
    specs = member_specs(config, names)
    start = first_sample(specs, int(np.argmax(finite)))
    d0, d1, test = split_rows(finite, y, t1, bars.ts, start, config.eval.test_fraction)
    rows = np.arange(d0, d1)
    log.info("samples: development %d (CPCV), test %d (untouched until the end)", rows.size, test.size)

    w = uniqueness_weights(bars.ts[rows], t1[rows]) if config.cv.uniqueness else np.ones(rows.size)
    if config.cv.time_decay != 1.0:
        w = w * time_decay_weights(w, config.cv.time_decay)
    regime_col = -1
    if config.calibration.regimes >= 2:
        if config.calibration.regime_feature not in names:
            raise ConfigError(f"calibration.regime_feature {config.calibration.regime_feature!r} is not a "
                              f"feature of this data: {list(names)}")
        regime_col = names.index(config.calibration.regime_feature)
    dev = DevSamples(y[rows], bars.ts[rows], t1[rows], next_ret[rows], w,
                     x[rows, regime_col] if regime_col >= 0 else None)
    inputs = member_inputs(specs, x, d0, d1)
    members = build_members(specs, config)
    bars_per_year = periods_per_year(timeframe)

    clock["cpcv"] = time.perf_counter()
    cv = evaluate_cpcv(members, specs, inputs, dev, config, bars_per_year, progress)
    clock["sentinel"] = time.perf_counter()
    sentinel = None
    if config.sentinel.enabled:
        log.info("leakage sentinel: refitting the members on block-shuffled outcomes (purged %d-fold)",
                 config.sentinel.folds)
        sentinel = shuffled_outcome_sentinel(members, lambda outcome: inputs, fwd[rows], dev, config, progress)
    lookahead = features_lookahead(lambda k: _features_of_first(bars, flow, k, config.features.flow_span),
                                   len(bars))

    clock["final"] = time.perf_counter()
    log.info("final fit: every member on the whole development span")
    train, val, _ = validation_splits([(np.arange(rows.size), np.zeros(0, np.int64))], dev.t0, dev.t1,
                                      config.eval.val_fraction)[0]
    params = {m.name: m.fit(inputs[m.name], dev.y, dev.w, train, val) for m in members}
    cal = cv.calibrator
    regime_maps = getattr(cal, "by_regime", {})
    ens = Ensemble(names, config.features.flow_span, tuple(specs), params, cv.chosen, cv.blend,
                   config.ensemble.dynamic_window, config.ensemble.dynamic_temperature,
                   getattr(cal, "global_cal", cal), dict(regime_maps), regime_col,
                   np.zeros(0) if cv.regime_edges is None else cv.regime_edges, config.calibration.clip, h)

    clock["test"] = time.perf_counter()
    out = predict_bars(ens, x, bars.close)
    p = out["p"][test]
    metrics, curves = test_report(p, y[test], next_ret[test], bars.ts[test], config, bars_per_year)
    metrics["uncalibrated"] = {k: f(out["blend"][test], y[test]) for k, f in
                               (("log_loss", scoring.log_loss), ("brier", scoring.brier),
                                ("ece", scoring.expected_calibration_error))}
    metrics["members_on_test"] = {s.name: {"log_loss": scoring.log_loss(out["members"][m, test], y[test]),
                                           "auc": scoring.auc(out["members"][m, test], y[test])}
                                  for m, s in enumerate(specs)}
    metrics.update({
        "model": f"calibrated {cv.chosen} ensemble of {', '.join(s.name for s in specs)}",
        "n_train": int(rows.size), "n_test": int(test.size),
        "test_start": int(bars.ts[test[0]]), "test_end": int(bars.ts[test[-1]]),
        "data_source": source, "timeframe": timeframe, "symbol": config.data.symbol,
        "features": list(names), "order_flow": bool(with_flow), "horizon": h,
        "cpcv": cv.report, "sentinel": sentinel, "lookahead": lookahead,
    })

    # The risk layer's inputs come from the development span only.
    risk = {"payoff_ratio": payoff_ratio(fwd[rows]),
            "volatility": fit_bar_volatility(np.diff(np.log(bars.close[:test[0] + 1])))}
    tree, meta = to_checkpoint(ens)
    meta.update({"risk": risk, "timeframe": timeframe, "symbol": config.data.symbol, "data_source": source,
                 "seed": config.seed, "run": run_dir.name,
                 "metrics": {k: metrics[k] for k in ("log_loss", "brier", "accuracy", "auc", "ece")}})
    save_model(run_dir / "model", tree, meta)
    stored = CheckpointStore(config.checkpoints).register(run_dir / "model", run_dir.name,
                                                          {"run_dir": str(run_dir.absolute())})
    metrics["checkpoint"] = str(stored)

    title = f"{config.data.symbol} {timeframe}"
    plots.equity_curve(run_dir / "equity.png", curves.pop("ts"), curves,
                       f"Out-of-sample equity, {title} (after costs)")
    plots.reliability_diagram(run_dir / "calibration.png", p, y[test],
                              f"Test span, calibrated ensemble (ECE {metrics['ece']:.3f})")
    n_paths = cv.paths.shape[0]
    yy = np.tile(dev.y, n_paths)
    c = cv.report["calibration"]
    plots.reliability_diagram(run_dir / "calibration_before.png", cv.blended[cv.chosen].reshape(-1), yy,
                              f"Out of fold, {cv.chosen} blend before calibration (ECE {c['before']['ece']:.3f})")
    plots.reliability_diagram(run_dir / "calibration_after.png", cv.calibrated.reshape(-1), yy,
                              f"Out of fold, after isotonic calibration (ECE {c['after']['ece']:.3f})")
    imp = cv.importance_by_feature
    report.importance_chart(run_dir / "importance.png", imp["features"], imp["aggregated"], imp["per_member"],
                            f"Permutation importance, {title}")
    write_json(run_dir / "importance.json", imp)
    now = time.perf_counter()
    metrics["seconds"] = {"total": round(now - clock["start"], 2),
                          "cpcv": round(clock["sentinel"] - clock["cpcv"], 2),
                          "sentinel": round(clock["final"] - clock["sentinel"], 2),
                          "final_fit": round(clock["test"] - clock["final"], 2),
                          "test_and_save": round(now - clock["test"], 2)}
    write_json(run_dir / "metrics.json", metrics)
    report.log_summary(metrics)
    log.info("run written to %s in %.0f s; model registered as %s", run_dir, metrics["seconds"]["total"], stored)
    return run_dir
