"""`python -m bot4jax.live`: parse flags into the typed config and run the decision loop."""
from __future__ import annotations

import argparse

from bot4jax import config as cfg
from bot4jax.cli import config_from_flags, run_cli


def parser() -> argparse.ArgumentParser:
    d = cfg.LiveConfig()
    p = argparse.ArgumentParser(
        prog="python -m bot4jax.live",
        description="Run the live decision loop: streaming features -> model -> quarter-Kelly sizing "
                    "through the eight risk layers and the circuit breakers -> market orders through the "
                    "order journal to a simulated venue (fees, slippage, latency, partial fills) or, with "
                    "--live, to a real one. With no flags it replays "
                    "simulator data through the newest model in the checkpoint store (a backtest). "
                    "Writes <out>/<run-id>/ with decisions.csv, trades.csv, summary.json, equity.png and "
                    "run.log. Ctrl-C stops cleanly and still writes them. Never sends a real order "
                    "unless --live is given.")
    p.add_argument("--config", metavar="TOML", help="a config file; flags override its values")
    p.add_argument("--replay", metavar="PATH",
                   help="replay candles from a file (freqtrade JSON, CSV, Parquet); default: the simulator")
    p.add_argument("--repair", action="store_const", const=True,
                   help="drop invalid rows of --replay (and report how many) instead of stopping")
    p.add_argument("--model", metavar="DIR",
                   help="a train run directory or a checkpoint (default: newest in the checkpoint store)")
    p.add_argument("--checkpoints", help=f"checkpoint store folder (default {d.checkpoints})")
    p.add_argument("--out", help=f"parent folder of run directories (default {d.out})")
    p.add_argument("--speed", help="'max' to replay as fast as possible (default), or a multiple of real "
                                   "time, e.g. 60 plays one minute per second")
    p.add_argument("--exchange", metavar="NAME",
                   help="a ccxt exchange id (e.g. binance): trade on its live candles (websocket, or REST polling)")
    p.add_argument("--symbol", help=f"market symbol with --exchange (default {d.symbol})")
    p.add_argument("--timeframe", help=f"candle timeframe with --exchange or the simulator (default {d.timeframe})")
    p.add_argument("--api-url", dest="api_url", metavar="URL",
                   help="base URL of the venue's REST API (a testnet or a local server)")
    p.add_argument("--poll-seconds", dest="poll_seconds", type=float,
                   help=f"REST polling interval with --exchange (default {d.poll_seconds})")
    p.add_argument("--max-bars", dest="max_bars", type=int,
                   help="stop after this many bars (default: when the data ends, or Ctrl-C)")
    p.add_argument("--sim-bars", dest="sim_bars", type=int,
                   help=f"simulator length in bars (default {d.sim_bars})")
    p.add_argument("--sim-seed", dest="sim_seed", type=int,
                   help=f"simulator seed (default {d.sim_seed}, unlike training's, so the replay is unseen data)")
    p.add_argument("--cash", dest="initial_cash", type=float, help=f"starting cash (default {d.initial_cash})")
    p.add_argument("--max-leverage", dest="risk.max_leverage", type=float,
                   help=f"gross exposure cap as a fraction of equity (default {d.risk.max_leverage})")
    p.add_argument("--safety-factor", dest="risk.safety_factor", type=float,
                   help=f"fraction of full Kelly (default {d.risk.safety_factor}); every other limit: "
                        "the [risk] section of --config")
    p.add_argument("--rebalance-band", dest="rebalance_band", type=float,
                   help=f"trade only when the target moves this far, as a fraction of equity "
                        f"(default {d.rebalance_band})")
    p.add_argument("--fee-bps", dest="fee_bps", type=float, help=f"taker fee per side in bps (default {d.fee_bps})")
    p.add_argument("--slippage-bps", dest="slippage_bps", type=float,
                   help=f"slippage per side in bps (default {d.slippage_bps})")
    p.add_argument("--ws-url", dest="ws_url", metavar="URL",
                   help="base URL of the venue's websocket API (a testnet or a local server)")
    p.add_argument("--no-websocket", dest="websocket", action="store_const", const=False,
                   help="poll candles over REST even where the venue has a websocket "
                        "(automatic with --api-url and no --ws-url)")
    p.add_argument("--live", action="store_const", const=True,
                   help="send real orders to --exchange, with API keys from BOT4JAX_<EXCHANGE>_API_KEY and "
                        "BOT4JAX_<EXCHANGE>_API_SECRET (never logged); without it orders go to the simulated venue")
    p.add_argument("--journal", metavar="PATH",
                   help="the SQLite order journal (default with --live: state/<exchange>_<BASE>-<QUOTE>.sqlite, "
                        "kept across runs and reconciled with the venue at every start; else inside the run dir)")
    p.add_argument("--reset-halt", dest="reset_halt", action="store_const", const=True,
                   help="clear a drawdown / daily-loss halt left by an earlier --live run and trade again")
    p.add_argument("--metrics-port", dest="metrics_port", type=int,
                   help="serve Prometheus metrics on 127.0.0.1:PORT (default 0: off)")
    p.add_argument("--surveillance", action="store_const", const=True,
                   help="with --exchange: run the manipulation detectors over the venue's public trades, write "
                        "surveillance.jsonl, and take no new exposure for --surveillance-pause-s after a high alert")
    p.add_argument("--surveillance-pause-s", dest="surveillance_pause_s", type=float,
                   help=f"pause after a high surveillance alert, seconds (default {d.surveillance_pause_s})")
    p.add_argument("--maker-fee-bps", dest="maker_fee_bps", type=float,
                   help=f"simulated venue: maker fee in bps (default {d.maker_fee_bps})")
    p.add_argument("--latency-ms", dest="latency_ms", type=int,
                   help=f"simulated venue: order latency in ms (default {d.latency_ms})")
    p.add_argument("--participation", type=float,
                   help=f"simulated venue: largest share of a bar's volume our orders fill (default {d.participation})")
    p.add_argument("--max-position", dest="max_position", type=float,
                   help="pre-trade check: largest position in base currency (default: no limit)")
    p.add_argument("--max-notional", dest="max_notional", type=float,
                   help="pre-trade check: largest order value in quote currency (default: no limit)")
    p.add_argument("--max-drawdown", dest="breakers.max_drawdown", type=float, metavar="FRACTION",
                   help=f"circuit breaker: flatten and halt at this drawdown from the equity peak "
                        f"(default {d.breakers.max_drawdown}); other breaker settings: the [breakers] section")
    p.add_argument("--max-daily-loss", dest="breakers.max_daily_loss", type=float, metavar="FRACTION",
                   help=f"circuit breaker: flatten and halt at this loss since the UTC day's start "
                        f"(default {d.breakers.max_daily_loss})")
    p.add_argument("--log-json", action="store_true", help="log JSON lines instead of text")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return p


def main(argv=None) -> int:
    config, json_logs, progress = config_from_flags(parser(), cfg.LiveConfig, argv)
    from bot4jax.live.loop import run_live  # after parsing: --help stays instant
    print(run_live(config, progress=progress, json_logs=json_logs))
    return 0

if __name__ == "__main__":
    raise SystemExit(run_cli(main))
