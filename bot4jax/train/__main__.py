"""`python -m bot4jax.train`: parse flags into the typed config and run the research job."""
from __future__ import annotations

import argparse

from bot4jax import config as cfg
from bot4jax.cli import config_from_flags, run_cli


def parser() -> argparse.ArgumentParser:
    d = cfg.TrainConfig()
    p = argparse.ArgumentParser(
        prog="python -m bot4jax.train",
        description="Train the baseline model and evaluate it on a later, untouched time span. With no "
                    "flags it runs offline on the built-in simulator. Writes <out>/<run-id>/ (config.toml, "
                    "metrics.json, equity.png, calibration.png, run.log, model/) and registers the model "
                    "in the checkpoint store.")
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
    p.add_argument("--horizon", dest="label.horizon", type=int,
                   help=f"label horizon in bars (default {d.label.horizon})")
    p.add_argument("--epochs", dest="model.epochs", type=int, help=f"maximum epochs (default {d.model.epochs})")
    p.add_argument("--seed", type=int, help=f"random seed for training (default {d.seed}); same seed, same metrics")
    p.add_argument("--out", help=f"parent folder of run directories (default {d.out})")
    p.add_argument("--checkpoints", help=f"checkpoint store folder (default {d.checkpoints})")
    p.add_argument("--quick", action="store_const", const=True,
                   help="a small, fast run for smoke tests (short simulation, few epochs)")
    p.add_argument("--log-json", action="store_true", help="log JSON lines instead of text")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return p


def main(argv=None) -> int:
    config, json_logs, progress = config_from_flags(parser(), cfg.TrainConfig, argv)
    from bot4jax.train.pipeline import run_training  # after parsing: --help stays instant
    print(run_training(config, progress=progress, json_logs=json_logs))
    return 0

if __name__ == "__main__":
    raise SystemExit(run_cli(main))
