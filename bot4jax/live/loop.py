"""The live decision loop, which is also the backtest when it replays recorded bars.

    bar event -> streaming features -> model -> quarter-Kelly through the eight risk layers
              -> market order toward the target -> simulated exchange (fills at the next price,
              fees and slippage) -> equity

Each decision is written to `decisions.csv`; fills to `trades.csv`; counts, equity and decision
latency percentiles to `summary.json`; the equity curve to `equity.png`. Ctrl-C stops after the
current bar and still writes every output.
"""
from __future__ import annotations

import csv
import logging
import math
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from bot4jax import plots
from bot4jax.config import LiveConfig
from bot4jax.data.timeframes import periods_per_year
from bot4jax.errors import ConfigError
from bot4jax.execution.simulated import SimulatedExchange
from bot4jax.live.engine import DecisionEngine
from bot4jax.live.feeds import BarFeed, open_feed
from bot4jax.registry.checkpoints import CheckpointStore, load_model
from bot4jax.risk.sizing import LAYER_NAMES, RiskClamps, annualised_vol
from bot4jax.runs import make_run_dir, setup_logging, write_config, write_json
from bot4jax.validation import scoring

log = logging.getLogger("bot4jax.live")

DECISION_FIELDS = ("ts", "close", "p_up", "target", "binding", "action", "position", "equity", "latency_us")
TRADE_FIELDS = ("order_id", "ts", "side", "amount", "price", "fee")


def _speed(value: str) -> float:
    if value == "max":
        return math.inf
    try:
        speed = float(value)
    except ValueError:
        speed = -1.0
    if not speed > 0:
        raise ConfigError(f"--speed must be 'max' or a positive multiple of real time, got {value!r}")
    return speed


def _binding(record) -> str:
    b = int(record["binding"])
    return LAYER_NAMES[b] if b >= 0 else ("none" if b == -1 else "invalid_input")


def _order_toward(exchange: SimulatedExchange, ts: int, target: float, price: float, equity: float,
                  band: float) -> str:
    """Submit the market order that moves the position to `target` (fraction of equity), unless the
    move is within the rebalance band; a zero target always closes the position."""
    delta = target * equity / price - exchange.position
    if target == 0.0 and exchange.position > 0.0:
        delta = -exchange.position
    elif abs(delta) * price <= band * equity:
        return "hold"
    side = 1 if delta > 0 else -1
    ok = exchange.submit_market(ts, side, min(abs(delta), exchange.position) if side < 0 else delta)
    return ("buy" if side > 0 else "sell") if ok else "rejected"


def replay(feed: BarFeed, engine: DecisionEngine, exchange: SimulatedExchange, config: LiveConfig,
           decisions_csv, progress: bool = True) -> dict:
    """Drive every bar of `feed` through the engine, the risk layers and the exchange; returns the
    run's numbers."""
    speed = _speed(config.speed)
    clamps = RiskClamps(config.risk)
    bars_per_year = periods_per_year(feed.timeframe)
    peak = exchange.equity(1.0)
    writer = csv.writer(decisions_csv)
    writer.writerow(DECISION_FIELDS)
    latencies, equity, ts_seen = [], [], []
    decisions = 0
    prev_ts, interrupted = None, False
    bar_iter = tqdm(feed.bars, total=feed.total, desc="replay" if feed.total else "live", unit="bar",
                    disable=not progress, leave=False)
    try:
        for ts, o, h, l, c, v, tradable in bar_iter:
            if speed != math.inf and prev_ts is not None:
                time.sleep(max(0.0, (ts - prev_ts) / 1000.0 / speed))
            prev_ts = ts
            for fill in exchange.on_price(ts, o):
                log.debug("fill: order %d %s %.8f @ %.8f, fee %.6f", fill.order_id,
                         "buy" if fill.side > 0 else "sell", fill.amount, fill.price, fill.fee)
            t0 = time.perf_counter_ns()
            p_up = engine.on_bar(c, h, l, v)
            eq = exchange.equity(c)
            peak = max(peak, eq)
            action, target, binding = ("warmup" if tradable else "history"), "", ""
            if p_up == p_up and tradable:
                decisions += 1
                vol = annualised_vol(engine.bar_variance, bars_per_year)
                var_u, es_u = clamps.unit_risk(vol)
                target, record = clamps.size(p_up, engine.payoff_ratio, vol, var_u, es_u,
                                             drawdown=(peak - eq) / peak, vol_ratio=engine.vol_ratio)
                action = _order_toward(exchange, ts, target, c, eq, config.rebalance_band)
                latency = (time.perf_counter_ns() - t0) / 1000.0
                latencies.append(latency)
                binding = _binding(record)
                if action != "hold":
                    log.debug("decision ts=%d p_up=%.4f target=%.4f bound by %s -> %s",
                              ts, p_up, target, binding, action)
                target = f"{target:.6g}"
            else:
                latency = (time.perf_counter_ns() - t0) / 1000.0
            equity.append(eq)
            ts_seen.append(ts)
            writer.writerow((ts, repr(c), "" if p_up != p_up else f"{p_up:.9g}", target, binding, action,
                             repr(exchange.position), f"{eq:.6f}", f"{latency:.2f}"))
            if config.max_bars and len(equity) >= config.max_bars:
                break
    except KeyboardInterrupt:
        interrupted = True
        log.warning("interrupted: stopping after the current bar and writing the outputs")
    finally:
        bar_iter.close()
    return {"latencies": np.asarray(latencies), "equity": np.asarray(equity), "ts": np.asarray(ts_seen, np.int64),
            "decisions": decisions, "interrupted": interrupted}


def summarize(result: dict, exchange: SimulatedExchange, config: LiveConfig, timeframe: str) -> dict:
    lat, eq = result["latencies"], result["equity"]
    pct = (lambda q: float(np.percentile(lat, q))) if lat.size else (lambda q: float("nan"))
    rets = np.diff(np.log(eq)) if eq.size > 1 else np.zeros(0)
    return {
        "bars": int(eq.size),
        "decisions": result["decisions"],
        "orders": len(exchange.orders),
        "fills": len(exchange.fills),
        "open_orders": len(exchange.pending),  # submitted on the last bar, no later price to fill at
        "rejected_orders": exchange.rejected,
        "initial_equity": config.initial_cash,
        "final_equity": float(eq[-1]) if eq.size else config.initial_cash,
        "total_return": float(eq[-1] / config.initial_cash - 1.0) if eq.size else 0.0,
        "sharpe": scoring.sharpe(rets, periods_per_year(timeframe)),
        "max_drawdown": scoring.max_drawdown(eq),
        "fees": exchange.fees_paid,
        "turnover": exchange.traded_notional / config.initial_cash,
        "final_position": exchange.position,
        "latency_us": {"p50": pct(50), "p99": pct(99), "p999": pct(99.9),
                       "max": float(lat.max()) if lat.size else float("nan")},
        "interrupted": result["interrupted"],
    }


def run_live(config: LiveConfig, progress: bool = True, json_logs: bool = False) -> Path:
    """Paper trading or replay, per the config; returns the run directory."""
    if config.live:
        raise ConfigError("--live (real orders) is not available in this version: real order routing "
                          "with the crash-safe order journal comes with the execution work; use paper mode")
    run_dir = make_run_dir(config.out, "live")
    setup_logging(run_dir, json_logs)
    write_config(run_dir, config)
    model_path = Path(config.model) if config.model else CheckpointStore(config.checkpoints).latest()
    checkpoint = load_model(model_path)
    engine = DecisionEngine(checkpoint)
    log.info("model: %s (trained on %s)", checkpoint.path, checkpoint.meta.get("data_source"))
    feed = open_feed(config)
    log.info("market data: %s", feed.description)
    exchange = SimulatedExchange(config.initial_cash, config.fee_bps, config.slippage_bps)
    with open(run_dir / "decisions.csv", "w", newline="") as f:
        result = replay(feed, engine, exchange, config, f, progress)
    with open(run_dir / "trades.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(TRADE_FIELDS)
        for fill in exchange.fills:
            w.writerow((fill.order_id, fill.ts, "buy" if fill.side > 0 else "sell", repr(fill.amount),
                        repr(fill.price), repr(fill.fee)))
    summary = summarize(result, exchange, config, feed.timeframe)
    summary.update({"model": str(checkpoint.path), "data_source": feed.description, "timeframe": feed.timeframe})
    write_json(run_dir / "summary.json", summary)
    if result["equity"].size > 1:
        plots.equity_curve(run_dir / "equity.png", result["ts"], {"equity": result["equity"]},
                           f"Replay equity, {feed.description}")
    log.info("%d bars, %d decisions, %d orders, %d fills; final equity %.2f (%+.2f%%); "
             "decision latency p50 %.1f us, p99 %.1f us", summary["bars"], summary["decisions"],
             summary["orders"], summary["fills"], summary["final_equity"], 100 * summary["total_return"],
             summary["latency_us"]["p50"], summary["latency_us"]["p99"])
    log.info("run written to %s", run_dir)
    return run_dir
