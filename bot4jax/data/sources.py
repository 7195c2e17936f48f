"""Where the CLIs get their bars: a market data file, or the built-in simulator by default."""
from __future__ import annotations

import logging
from pathlib import Path

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
