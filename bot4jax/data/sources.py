"""Where the CLIs get their bars: a market data file, or the built-in simulator by default."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from bot4jax.data.types import Bars
from bot4jax.errors import DataError

log = logging.getLogger("bot4jax.data")


def bars_from(path: str, repair: bool, sim_bars: int, sim_seed: int, timeframe: str = "1m") -> tuple[Bars, str]:
    """(bars, description). An empty path means the seeded simulator (offline default)."""
    if not path:
        from bot4jax.data.simulator import simulate
        market = simulate(n_bars=sim_bars, timeframe=timeframe, seed=sim_seed)
        return market.bars, f"simulator(seed={sim_seed}, bars={sim_bars}, timeframe={timeframe})"
    from bot4jax.data.loaders import load_checked
    data, report = load_checked(Path(path), kind="bars", repair=repair)
    if report.dropped:
        log.warning("%s", report)
    if not isinstance(data, Bars):
        raise DataError(str(path), f"holds {data.kind}, but this needs bars (OHLCV candles)")
    return data, str(path)


def buy_volume_per_bar(bar_ts: np.ndarray, trades) -> np.ndarray:
    """Sum of the buyer-initiated trade amounts of each bar (n,); bar i spans [ts_i, ts_{i+1}).
    Trades before the first bar are ignored."""
    bar_ts = np.asarray(bar_ts, np.int64)
    i = np.searchsorted(bar_ts, np.asarray(trades.ts, np.int64), side="right") - 1
    keep = (i >= 0) & (np.asarray(trades.side) > 0)
    return np.bincount(i[keep], np.asarray(trades.amount, np.float64)[keep], minlength=bar_ts.size)


def market_from(path: str, repair: bool, sim_bars: int, sim_seed: int,
                timeframe: str = "1m") -> tuple[Bars, np.ndarray | None, str]:
    """(bars, buy volume per bar or None, description): like `bars_from`, plus the order flow the
    simulator's trades give; candle files carry none."""
    if not path:
        from bot4jax.data.simulator import simulate
        market = simulate(n_bars=sim_bars, timeframe=timeframe, seed=sim_seed)
        return (market.bars, buy_volume_per_bar(market.bars.ts, market.trades),
                f"simulator(seed={sim_seed}, bars={sim_bars}, timeframe={timeframe})")
    bars, source = bars_from(path, repair, sim_bars, sim_seed, timeframe)
    return bars, None, source
