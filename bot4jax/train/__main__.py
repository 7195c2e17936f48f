"""`python -m bot4jax.train`: parse flags into the typed config and run the research job."""
from __future__ import annotations

import argparse
import dataclasses

from bot4jax import config as cfg
from bot4jax.cli import config_from_flags, run_cli


def parser() -> argparse.ArgumentParser:
    d = cfg.TrainConfig()
    p = argparse.ArgumentParser(
        prog="python -m bot4jax.train",
        description="Train the calibrated stacking ensemble (logistic, MLP, attention LSTM) with "
                    "combinatorial purged CV, report every member and blend mode out of fold, and judge the "
                    "chosen ensemble once on a later, untouched time span. With no flags it runs offline on "
                    "the built-in simulator. Writes <out>/<run-id>/ (config.toml, metrics.json, "
                    "importance.json, equity.png, calibration*.png, importance.png, run.log, model/) and "
                    "registers the model in the checkpoint store.")
    p.add_argument("--config", metavar="TOML", help="a config file; flags override its values")
    p.add_argument("--data", dest="data.path", metavar="PATH",
                   help="market data file: freqtrade JSON (.json/.json.gz), CSV, or Parquet candles "
                        "(default: the simulator)")
    p.add_argument("--repair", dest="data.repair", action="store_const", const=True,
                   help="drop invalid rows of --data (and report how many) instead of stopping")
    p.add_argument("--symbol", dest="data.symbol", help=f"symbol label for reports (default {d.data.symbol})")
    p.add_argument("--timeframe", dest="data.timeframe",
                   help=f"bar timeframe of the simulator (default {d.data.timeframe}); files: inferred")
    p.add_argument("--sim-bars", dest="data.sim_bars", type=int,
                   help=f"simulator length in bars (default {d.data.sim_bars})")
    p.add_argument("--sim-seed", dest="data.sim_seed", type=int,
                   help=f"simulator seed (default {d.data.sim_seed})")
    p.add_argument("--horizon", dest="label.horizon", type=int,
                   help=f"label horizon in bars (default {d.label.horizon})")
    p.add_argument("--epochs", dest="model.epochs", type=int,
                   help=f"maximum epochs of the MLP member (default {d.model.epochs})")
    p.add_argument("--seed", type=int, help=f"random seed for training (default {d.seed}); same seed, same metrics")
    p.add_argument("--out", help=f"parent folder of run directories (default {d.out})")
    p.add_argument("--checkpoints", help=f"checkpoint store folder (default {d.checkpoints})")
    p.add_argument("--quick", action="store_const", const=True,
                   help="a small, fast run for smoke tests (6,000 simulated bars, 4 CPCV groups, fewer LSTM windows)")
    add_section_flags(p, d)
    p.add_argument("--log-json", action="store_true", help="log JSON lines instead of text")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return p


# Every other config field gets a flag --<section>-<field>; these say what each is for.
HELP = {
    "model": "the MLP member", "logistic": "the logistic member", "lstm": "the attention LSTM member",
    "cv": "combinatorial purged CV", "ensemble": "the stacking ensemble", "calibration": "isotonic calibration",
    "sentinel": "the leakage sentinel", "features": "the feature set", "eval": "evaluation",
    "sentinel.folds": "purged folds of the shuffled-outcome refit", "sentinel.block": "rows per shuffle block",
    "sentinel.threshold": "a clean pipeline's |shuffled Sharpe| stays below this",
    "calibration.min_count": "rows a regime needs for its own isotonic map",
    "calibration.regime_feature": "feature whose quantiles define the calibration regimes",
    "lstm.burn_in": "rows before the attention window that warm the LSTM state up",
    "lstm.window": "rows the attention reads", "ensemble.stack_C": "meta logistic inverse penalty",
    "ensemble.holdout_fraction": "blending: latest fraction of rows the meta model is fitted on",
    "features.flow_span": "EMA span (bars) of the order-flow imbalance",
    "model.features": "comma-separated feature names the MLP sees (empty: all)",
    "logistic.features": "comma-separated feature names the logistic model sees (empty: all)",
    "lstm.features": "comma-separated feature names the LSTM sees (empty: all)",
    "lstm.max_train": "training windows per LSTM fit, evenly spaced over the split's training rows",
    "cv.n_groups": "N contiguous groups", "cv.n_test_groups": "k test groups per split",
    "cv.embargo": "fraction of the samples embargoed after each test group",
    "cv.blend_folds": "purged folds that cross-fit the learned blends on each path",
    "cv.uniqueness": "weight samples by label uniqueness",
    "cv.time_decay": "weight of the oldest sample relative to the newest (1: no decay)",
    "ensemble.members": "comma-separated members among logistic, mlp, lstm",
    "ensemble.modes": "comma-separated blend modes to evaluate; the best out of fold is saved",
    "ensemble.voting": "soft, hard or optimized", "ensemble.importance_rows": "test rows per split for "
    "permutation importance (0: all)",
    "calibration.regimes": "0: one isotonic map; >= 2: one per quantile regime of --calibration-regime-feature",
    "calibration.clip": "calibrated probabilities stay in [clip, 1 - clip]",
    "features.order_flow": "add order-flow features when the data has trades (the simulator)",
    "eval.test_fraction": "the last part of the samples, used only for the final report",
    "eval.val_fraction": "early-stopping block: the end of each training set",
    "eval.min_edge": "the rule is long when P(up) > 0.5 + min_edge",
}
_HAS_FLAG = {"data", "label", "model.epochs", "seed", "out", "checkpoints", "quick"}


def add_section_flags(p: argparse.ArgumentParser, d: cfg.TrainConfig) -> None:
    """--<section>-<field> for every field of the sections below that has no hand-written flag."""
    for section in ("model", "logistic", "lstm", "cv", "ensemble", "calibration", "sentinel", "features", "eval"):
        sub = getattr(d, section)
        group = p.add_argument_group(f"{section}: {HELP[section]}")
        for f in dataclasses.fields(sub):
            key = f"{section}.{f.name}"
            if key in _HAS_FLAG:
                continue
            default = getattr(sub, f.name)
            flag = f"--{section}-{f.name.replace('_', '-')}"
            text = f"{HELP.get(key, f.name.replace('_', ' '))} (default {default!r})"
            if isinstance(default, bool):
                group.add_argument(flag, dest=key, type=_bool, metavar="true|false", help=text)
            else:
                metavar = {int: "N", float: "X", str: "TEXT"}[type(default)]
                group.add_argument(flag, dest=key, type=type(default), metavar=metavar, help=text)


def _bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def main(argv=None) -> int:
    config, json_logs, progress = config_from_flags(parser(), cfg.TrainConfig, argv)
    from bot4jax.train.pipeline import run_training  # after parsing: --help stays instant
    print(run_training(config, progress=progress, json_logs=json_logs))
    return 0

if __name__ == "__main__":
    raise SystemExit(run_cli(main))
