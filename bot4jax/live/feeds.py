"""Bar sources for the live loop: a recorded file, the simulator, or a venue's REST API (paper trading).

A feed yields closed bars as (ts, open, high, low, close, volume, tradable). Bars with tradable False
are history fetched at start: they prime the streaming features but never lead to an order.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Iterable, Iterator

from bot4jax.config import LiveConfig
from bot4jax.data.sources import bars_from
from bot4jax.data.timeframes import infer_timeframe, timeframe_ms
from bot4jax.data.types import Bars

log = logging.getLogger("bot4jax.live")

HISTORY_BARS = 200  # > the longest feature warm-up (50 bars)


@dataclass(frozen=True)
class BarFeed:
    bars: Iterable
    description: str
    timeframe: str
    total: int | None = None


def _rows(bars: Bars) -> Iterator[tuple]:
    cols = (bars.ts.tolist(), bars.open.tolist(), bars.high.tolist(), bars.low.tolist(),
            bars.close.tolist(), bars.volume.tolist(), [True] * len(bars))
    return zip(*cols)


def poll_closed_bars(exchange, symbol: str, timeframe: str, poll_seconds: float,
                     history: int = HISTORY_BARS) -> Iterator[tuple]:
    """Closed candles from `exchange.fetch_ohlcv`: `history` recent ones, then each new one as it closes.

    A candle is closed once its end (ts + timeframe) is not after the venue's clock; the still-open
    candle is never yielded. Network errors are logged and retried at the next poll.
    """
    import ccxt

    step = timeframe_ms(timeframe)
    last_ts = None
    tradable = False
    while True:
        try:
            since = None if last_ts is None else last_ts + 1
            limit = history + 1 if last_ts is None else None
            rows = exchange.fetch_ohlcv(symbol, timeframe, since=since, limit=limit)
        except ccxt.NetworkError as e:
            log.warning("market data poll failed (%s: %s); retrying in %.1f s", type(e).__name__, e, poll_seconds)
            time.sleep(poll_seconds)
            continue
        now = exchange.milliseconds()
        for ts, o, h, l, c, v in rows:
            if (last_ts is None or ts > last_ts) and ts + step <= now:
                last_ts = ts
                yield int(ts), float(o), float(h), float(l), float(c), float(v or 0.0), tradable
        tradable = True
        time.sleep(poll_seconds)


def open_feed(config: LiveConfig) -> BarFeed:
    if config.exchange:
        from bot4jax.data.download import make_exchange

        exchange = make_exchange(config.exchange, api_url=config.api_url or None, market_types=("spot",))
        exchange.load_markets()
        bars = poll_closed_bars(exchange, config.symbol, config.timeframe, config.poll_seconds)
        return BarFeed(bars, f"{config.exchange} {config.symbol} {config.timeframe} (paper trading)",
                       config.timeframe)
    bars, source = bars_from(config.replay, config.repair, config.sim_bars, config.sim_seed, config.timeframe)
    timeframe = infer_timeframe(bars.ts) if config.replay else config.timeframe
    return BarFeed(_rows(bars), source, timeframe, total=len(bars))
