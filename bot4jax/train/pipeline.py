"""The research run: bars -> features -> labels -> baseline classifier -> out-of-sample evaluation.

Time order is respected throughout: the test span is the last part of the data and is never seen in
training; training samples whose label ends at or after the start of the block after them (validation
or test) are purged, so no label straddles a boundary.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import numpy as np

from bot4jax import plots
from bot4jax.config import TrainConfig
from bot4jax.data.sources import bars_from
from bot4jax.data.timeframes import infer_timeframe, periods_per_year
from bot4jax.errors import DataError
from bot4jax.features.bars import FEATURE_NAMES, bar_features
from bot4jax.features.labels import forward_return_labels
from bot4jax.models import baseline
from bot4jax.registry.checkpoints import CheckpointStore, save_model
from bot4jax.risk.inputs import fit_bar_volatility, payoff_ratio
from bot4jax.runs import make_run_dir, setup_logging, write_config, write_json
from bot4jax.validation import scoring

log = logging.getLogger("bot4jax.train")

MIN_SAMPLES = 500
QUICK = {"data.sim_bars": 6_000, "model.epochs": 8}


def quick_config(config: TrainConfig) -> TrainConfig:
    """The smoke-test size: a short simulation and few epochs."""
    data = dataclasses.replace(config.data, sim_bars=min(config.data.sim_bars, QUICK["data.sim_bars"]))
    model = dataclasses.replace(config.model, epochs=min(config.model.epochs, QUICK["model.epochs"]))
    return dataclasses.replace(config, data=data, model=model)


def chronological_split(ts, t1, valid, test_fraction: float, val_fraction: float):
    """Indices (train, val, test) of the valid rows: test = the last part, val = the end of the rest.

    A training row is kept only if its label ends before the first timestamp of the next block, and
    likewise for validation rows before the test block.
    """
    idx = np.flatnonzero(valid)
    n_test = int(round(len(idx) * test_fraction))
    if len(idx) < MIN_SAMPLES or n_test < 1:
        raise DataError("<features>", f"only {len(idx)} usable bars after the indicator warm-up and the "
                        f"label horizon; need at least {MIN_SAMPLES}")
    test, rest = idx[-n_test:], idx[:-n_test]
    rest = rest[t1[rest] < ts[test[0]]]
    n_val = max(1, int(round(len(rest) * val_fraction)))
    val, train = rest[-n_val:], rest[:-n_val]
    train = train[t1[train] < ts[val[0]]]
    return train, val, test


def evaluate(p, y, next_ret, ts, config: TrainConfig, bars_per_year: float) -> tuple[dict, dict]:
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


def run_training(config: TrainConfig, progress: bool = True, json_logs: bool = False) -> Path:
    """Run the whole research job; returns the run directory."""
    if config.quick:
        config = quick_config(config)
    run_dir = make_run_dir(config.out, "train", config.seed)
    setup_logging(run_dir, json_logs)
    write_config(run_dir, config)
    started = time.perf_counter()

    bars, source = bars_from(config.data.path, config.data.repair, config.data.sim_bars,
                             config.data.sim_seed, config.data.timeframe)
    timeframe = infer_timeframe(bars.ts) if config.data.path else config.data.timeframe
    log.info("data: %s, %d bars, timeframe %s", source, len(bars), timeframe)

    x = bar_features(bars.close, bars.high, bars.low, bars.volume)
    y, t1, fwd = forward_return_labels(bars.ts, bars.close, config.label.horizon)
    _, _, next_ret = forward_return_labels(bars.ts, bars.close, 1)
    valid = np.all(np.isfinite(x), axis=1) & np.isfinite(y)
    train, val, test = chronological_split(bars.ts, t1, valid, config.eval.test_fraction,
                                           config.eval.val_fraction)
    log.info("samples: train %d, validation %d, test %d (purged at block boundaries)",
             len(train), len(val), len(test))

    fit = baseline.fit(x[train], y[train], x[val], y[val], config.model, config.seed, progress)
    log.info("trained %d epochs, best validation loss %.5f at epoch %d",
             len(fit.val_loss), min(fit.val_loss), fit.best_epoch + 1)
    p = np.asarray(baseline.predict_proba(fit.params, x[test]), np.float64)
    metrics, curves = evaluate(p, y[test], next_ret[test], bars.ts[test], config,
                               periods_per_year(timeframe))
    metrics.update({
        "n_train": int(len(train)), "n_val": int(len(val)), "n_test": int(len(test)),
        "test_start": int(bars.ts[test[0]]), "test_end": int(bars.ts[test[-1]]),
        "data_source": source, "timeframe": timeframe, "symbol": config.data.symbol,
        "epochs_run": len(fit.val_loss), "best_epoch": fit.best_epoch + 1,
        "train_loss": fit.train_loss, "val_loss": fit.val_loss,
        "seconds": round(time.perf_counter() - started, 2),
    })

    # The risk layer's inputs come from the same span as the model's: nothing from the test span.
    risk = {"payoff_ratio": payoff_ratio(fwd[train]),
            "volatility": fit_bar_volatility(np.diff(np.log(bars.close[:test[0] + 1])))}
    meta = {"kind": "baseline_mlp", "risk": risk, "features": list(FEATURE_NAMES), "horizon": config.label.horizon,
            "timeframe": timeframe, "symbol": config.data.symbol,
            "data_source": source, "seed": config.seed, "run": run_dir.name,
            "metrics": {k: metrics[k] for k in ("log_loss", "brier", "accuracy", "auc")}}
    save_model(run_dir / "model", fit.params, meta)
    stored = CheckpointStore(config.checkpoints).register(run_dir / "model", run_dir.name,
                                                          {"run_dir": str(run_dir.absolute())})
    metrics["checkpoint"] = str(stored)

    plots.equity_curve(run_dir / "equity.png", curves.pop("ts"), curves,
                       f"Out-of-sample equity, {config.data.symbol} {timeframe} (after costs)")
    plots.reliability_diagram(run_dir / "calibration.png", p, y[test],
                              f"Calibration on the test span (ECE {metrics['ece']:.3f})")
    write_json(run_dir / "metrics.json", metrics)
    s = metrics["strategy"]
    log.info("test: log loss %.5f (base rate %.5f), brier %.5f, accuracy %.4f, AUC %.4f; "
             "strategy Sharpe %.2f, return %.2f%% (buy and hold %.2f%%)",
             metrics["log_loss"], metrics["log_loss_base_rate"], metrics["brier"], metrics["accuracy"],
             metrics["auc"], s["sharpe"], 100 * s["total_return"], 100 * s["buy_and_hold_return"])
    log.info("run written to %s; model registered as %s", run_dir, stored)
    return run_dir
