"""Bar sources for the live loop: a recorded file, the simulator, or a venue's live candles.

A feed is an async iterator of closed bars (ts, open, high, low, close, volume, tradable[, buy_volume]):
buy volume (the buyer-initiated part, the order flow the models read) comes with the simulator's bars;
without it the engine reads the flow as "no information". Bars with
tradable False are history (fetched at start, or caught up late after a reconnect): they prime the
streaming features but never lead to an order. A venue's candles come over its websocket when ccxt
has one for it, else by REST polling (`bot4jax.live.streams`); with --api-url and no --ws-url the
feed polls, since a REST-only test server or proxy has no websocket beside it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import AsyncIterator

from bot4jax.config import LiveConfig
from bot4jax.data.sources import market_from
from bot4jax.data.timeframes import infer_timeframe
from bot4jax.data.types import Bars


@dataclass
class BarFeed:
    bars: AsyncIterator
    description: str
    timeframe: str
    total: int | None = None
    exchange: object = None       # the ccxt exchange behind a venue feed (closed with the feed)
    stream: object = None         # its BarStream: health (stale_ms, reconnects) for the breakers

    async def close(self) -> None:
        if self.stream is not None:
            await self.stream.aclose()
        if self.exchange is not None:
            await self.exchange.close()


async def _rows(bars: Bars, buy_volume) -> AsyncIterator[tuple]:
    flow = buy_volume.tolist() if buy_volume is not None else [float("nan")] * len(bars)
    cols = (bars.ts.tolist(), bars.open.tolist(), bars.high.tolist(), bars.low.tolist(),
            bars.close.tolist(), bars.volume.tolist(), [True] * len(bars), flow)
    for row in zip(*cols):
        yield row


def open_feed(config: LiveConfig) -> BarFeed:
    if config.exchange:
        from bot4jax.live.streams import closed_bars, make_pro_exchange

        websocket = config.websocket and not (config.api_url and not config.ws_url)
        exchange = make_pro_exchange(config.exchange, api_url=config.api_url or None, ws_url=config.ws_url or None,
                                     websocket=websocket, market_types=("spot",))
        stream = closed_bars(exchange, config.symbol, config.timeframe, poll_s=config.poll_seconds)
        how = "websocket" if websocket and exchange.has.get("watchOHLCV") else "REST polling"
        return BarFeed(stream, f"{config.exchange} {config.symbol} {config.timeframe} ({how})", config.timeframe,
                       exchange=exchange, stream=stream)
    bars, buy_volume, source = market_from(config.replay, config.repair, config.sim_bars, config.sim_seed,
                                           config.timeframe)
    timeframe = infer_timeframe(bars.ts) if config.replay else config.timeframe
    return BarFeed(_rows(bars, buy_volume), source, timeframe, total=len(bars))
