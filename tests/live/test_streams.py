"""Live market-data streams with the real ccxt.pro client against local Binance servers.

REST: tests.support.binance_rest (a thread); websocket: tests.support.binance_ws_server (in the test's
event loop). The streams and the REST server share a test clock, so "now" (which candle is still
open) is set by the test; the websocket pushes are the venue's events.
"""
from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import logging
from pathlib import Path

import numpy as np
import pytest

from bot4jax.data.binance_ws import capture_trades
from bot4jax.errors import ConfigError
from bot4jax.live.streams import Backoff, closed_bars, make_pro_exchange, trades
from tests.support.binance_rest import AggTrades, BinanceRestServer, Fault, SpotMarket, make_agg_trades, make_klines
from tests.support.binance_ws_server import BinanceWsServer

STEP = 60_000
T0 = 1_723_161_000_000 - 40 * STEP     # 2024-08-08, on a minute
KLINES = make_klines(T0, 60, STEP, seed=1)
SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
FAST = Backoff(base_s=0.02, cap_s=0.1)
KLINE_STREAM = "btcusdt@kline_1m"


class Clock:
    """The venue's and the stream's "now" in ms, moved by the test."""

    def __init__(self, ms: int):
        self.ms = int(ms)

    def __call__(self) -> int:
        return self.ms

    def inside(self, candle: int, offset_ms: int = 1_000) -> None:
        self.ms = T0 + candle * STEP + offset_ms


class Collector:
    """Consumes a stream in a task; `take(n)` returns the next n items or raises what the stream raised."""

    def __init__(self, stream):
        self.stream = stream
        self.queue: asyncio.Queue = asyncio.Queue()
        self.task = asyncio.create_task(self._consume())

    async def _consume(self):
        async for item in self.stream:
            await self.queue.put(item)

    async def take(self, n: int, timeout: float = 5.0) -> list[tuple]:
        out = []
        for _ in range(n):
            get = asyncio.ensure_future(self.queue.get())
            done, _ = await asyncio.wait({get, self.task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if get not in done:
                get.cancel()
                if self.task in done:
                    self.task.result()
                raise AssertionError(f"stream gave {len(out)} of {n} items within {timeout} s: {out}")
            out.append(get.result())
        return out

    async def nothing_for(self, seconds: float = 0.25) -> None:
        await asyncio.sleep(seconds)
        assert self.queue.empty(), f"unexpected items: {[self.queue.get_nowait() for _ in range(self.queue.qsize())]}"

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        await self.stream.aclose()


def run(coro, timeout: float = 30.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


@contextlib.asynccontextmanager
async def venue(clock: Clock, websocket: bool = True, ping_interval_s: float = 20.0):
    """(REST server, websocket server, exchange) for BTC/USDT spot, the exchange pointed at both."""
    market = SpotMarket("BTC", "USDT")
    rest = BinanceRestServer([market], now_ms=clock).start()
    ws = await BinanceWsServer(ping_interval_s=ping_interval_s).start()
    exchange = make_pro_exchange("binance", api_url=rest.url, ws_url=ws.url, websocket=websocket,
                                 market_types=("spot",), timeout_ms=3_000)
    try:
        yield market, rest, ws, exchange
    finally:
        await exchange.close()
        await ws.stop()
        rest.stop()


def bar(i: int, tradable: bool) -> tuple:
    t, o, h, low, c, v = KLINES[i]
    return int(t), o, h, low, c, v, tradable


def partial(i: int) -> tuple:
    """Candle i part way through: same open, a different close, less volume."""
    t, o, h, low, c, v = KLINES[i]
    mid = round((o + c) / 2, 2)
    return t, o, max(o, mid), min(o, mid), mid, round(v / 3, 5)


async def push(ws: BinanceWsServer, i: int, closed: bool = False, row=None) -> None:
    assert await ws.push_kline("BTCUSDT", "1m", KLINES[i] if row is None else row, closed) == 1


def test_make_pro_exchange_points_rest_and_websocket_at_local_servers():
    ex = make_pro_exchange("binance", api_url="http://127.0.0.1:9", ws_url="ws://127.0.0.1:8",
                           market_types=("spot",))
    assert ex.has["watchOHLCV"] and ex.has["watchTrades"]
    assert ex.urls["api"]["public"] == "http://127.0.0.1:9/api/v3"
    assert ex.urls["api"]["sapi"] == "http://127.0.0.1:9/sapi/v1"
    assert ex.urls["api"]["ws"]["spot"] == "ws://127.0.0.1:8/ws"      # ccxt appends "/<n>" per stream
    assert ex.urls["api"]["ws"]["ws-api"]["spot"] == "ws://127.0.0.1:8/ws-api/v3"
    assert ex.options["fetchMarkets"]["types"] == ["spot"]
    rest_only = make_pro_exchange("binance", api_url="http://127.0.0.1:9", websocket=False)
    assert not rest_only.has.get("watchOHLCV") and rest_only.urls["api"]["public"] == "http://127.0.0.1:9/api/v3"
    with pytest.raises(ConfigError, match="--ws-url"):
        make_pro_exchange("binance", ws_url="http://127.0.0.1:8")
    with pytest.raises(ConfigError, match="--api-url"):
        make_pro_exchange("binance", api_url="127.0.0.1:9")
    with pytest.raises(ConfigError, match="unknown exchange"):
        make_pro_exchange("no-such-venue")
    with pytest.raises(ConfigError, match="watchOHLCV"):
        closed_bars(rest_only, "BTC/USDT", "1m", use_watch=True)


def test_history_first_then_closed_candles_in_order_and_the_open_one_never():
    async def scenario():
        clock = Clock(0)
        clock.inside(30, 10_000)                # candle 30 is open
        async with venue(clock) as (market, rest, ws, exchange):
            market.klines["1m"] = KLINES[:31]
            stream = closed_bars(exchange, "BTC/USDT", "1m", history=20, stall_s=10.0, backoff=FAST, now_ms=clock)
            got = Collector(stream)
            assert await got.take(20) == [bar(i, False) for i in range(10, 30)]
            assert stream.mode == "watch"
            await ws.wait_subscribed(KLINE_STREAM)
            # Candle 30 updates, its final update ("x": true): still nothing, no later candle yet.
            await push(ws, 30, row=partial(30))
            await push(ws, 30, closed=True)
            await got.nothing_for()
            clock.inside(31, 500)
            await push(ws, 31, row=partial(31))
            assert await got.take(1) == [bar(30, True)]
            # Updates of the open candle 31 never come out, however many.
            for _ in range(5):
                await push(ws, 31, row=partial(31))
            await got.nothing_for()
            # Staleness: the last event was at the clock of the last push.
            await asyncio.sleep(0.05)
            seen = clock.ms
            assert stream.last_event_ms == seen
            clock.ms += 45_000
            assert stream.stale_ms() == 45_000
            assert stream.last_ts == T0 + 30 * STEP and stream.reconnects == 0
            assert len(rest.calls("/api/v3/klines")) == 1 and not rest.unexpected and not ws.unexpected
            assert ws.requests[0]["method"] == "SUBSCRIBE" and ws.requests[0]["params"] == [KLINE_STREAM]
            # A burst: updates that arrive while the consumer is busy are not held back until the
            # next message (ccxt resolves a watch only on a message that finds it waiting).
            for i in range(31, 45):
                await push(ws, i, closed=True)
            clock.inside(45)
            await push(ws, 45, row=partial(45))
            assert await got.take(14, timeout=2.0) == [bar(i, i == 44) for i in range(31, 45)]
            await got.stop()

    run(scenario())


def test_dropped_connection_reconnects_and_missed_candles_come_from_rest(caplog):
    async def scenario():
        clock = Clock(0)
        clock.inside(30)
        async with venue(clock) as (market, rest, ws, exchange):
            market.klines["1m"] = KLINES[:31]
            stream = closed_bars(exchange, "BTC/USDT", "1m", history=5, stall_s=10.0, backoff=FAST, now_ms=clock)
            got = Collector(stream)
            assert await got.take(5) == [bar(i, False) for i in range(25, 30)]
            await ws.wait_subscribed(KLINE_STREAM)
            await push(ws, 30, closed=True)
            clock.inside(31)
            await push(ws, 31, row=partial(31))
            assert await got.take(1) == [bar(30, True)]
            # The network drops; meanwhile candles 31..35 close at the venue and 36 opens.
            market.klines["1m"] = KLINES[:37]
            clock.inside(36, 5_000)
            ws.drop()
            # 31..35 from REST with their final values (not 31's partial websocket update); only the
            # latest closed is still tradable.
            assert await got.take(5) == [bar(i, i == 35) for i in range(31, 36)]
            await ws.wait_subscribed(KLINE_STREAM)
            assert ws.connects == 2 and stream.reconnects == 1
            await push(ws, 36, closed=True)
            clock.inside(37)
            await push(ws, 37, row=partial(37))
            assert await got.take(1) == [bar(36, True)]
            # The stream skips candles 38 and 39 without a disconnect: filled from REST before 40.
            market.klines["1m"] = KLINES[:41]
            await push(ws, 37, closed=True)
            clock.inside(40)
            calls = len(rest.calls("/api/v3/klines"))
            await push(ws, 40, row=partial(40))
            assert await got.take(3) == [bar(37, False), bar(38, False), bar(39, True)]
            assert len(rest.calls("/api/v3/klines")) == calls + 1
            # Resent old candles are dropped, never yielded twice.
            await push(ws, 36, closed=True)
            await push(ws, 40, row=partial(40))
            await got.nothing_for()
            await got.stop()

    with caplog.at_level(logging.INFO, logger="bot4jax.live.streams"):
        run(scenario())
    lost = [r.getMessage() for r in caplog.records if "websocket lost" in r.getMessage()]
    assert len(lost) == 1 and "reconnect 1" in lost[0], lost
    assert any("filled 2 of 2 missing candles" in r.getMessage() for r in caplog.records)


def test_silent_websocket_falls_back_to_rest_polling(caplog):
    async def scenario():
        clock = Clock(0)
        clock.inside(30)
        async with venue(clock) as (market, rest, ws, exchange):
            market.klines["1m"] = KLINES[:31]
            stream = closed_bars(exchange, "BTC/USDT", "1m", history=3, stall_s=0.3, backoff=FAST, now_ms=clock)
            got = Collector(stream)
            assert await got.take(3) == [bar(i, False) for i in range(27, 30)]
            await ws.wait_subscribed(KLINE_STREAM)
            market.klines["1m"] = KLINES[:33]
            clock.inside(32)
            assert await got.take(2) == [bar(30, False), bar(31, True)]     # no websocket event at all
            assert stream.mode == "watch" and stream.reconnects == 0
            assert stream.last_event_ms == clock.ms                       # REST answers count as news
            await push(ws, 32, closed=True)
            clock.inside(33)
            await push(ws, 33, row=partial(33))
            assert await got.take(1) == [bar(32, True)]
            await got.stop()

    with caplog.at_level(logging.WARNING, logger="bot4jax.live.streams"):
        run(scenario())
    assert any("no candles for 0.3 s" in r.getMessage() for r in caplog.records)


def test_rest_polling_when_the_client_has_no_websocket(caplog):
    async def scenario():
        clock = Clock(0)
        clock.inside(30)
        async with venue(clock, websocket=False) as (market, rest, ws, exchange):
            market.klines["1m"] = KLINES[:31]
            stream = closed_bars(exchange, "BTC/USDT", "1m", history=10, poll_s=0.02, backoff=FAST, now_ms=clock)
            assert stream.mode == "poll"
            got = Collector(stream)
            assert await got.take(10) == [bar(i, False) for i in range(20, 30)]
            await got.nothing_for(0.1)                                    # candle 30 is open
            # aiohttp retries a request whose reused connection drops, so fail it with a 502 instead.
            rest.inject("/api/v3/klines", len(rest.calls("/api/v3/klines")) + 1, Fault.server_error(502))
            market.klines["1m"] = KLINES[:34]
            clock.inside(33)
            assert await got.take(3) == [bar(30, False), bar(31, False), bar(32, True)]
            await got.nothing_for(0.1)
            assert ws.connects == 0
            await got.stop()

    with caplog.at_level(logging.WARNING, logger="bot4jax.live.streams"):
        run(scenario())
    assert any("fetch_ohlcv failed" in r.getMessage() for r in caplog.records)


def _agg(tr: AggTrades, lo: int, hi: int) -> AggTrades:
    return AggTrades(tr.ts[lo:hi], tr.price[lo:hi], tr.qty[lo:hi], tr.buyer_maker[lo:hi], tr.first_id + lo)


def _expected(tr: AggTrades, lo: int, hi: int) -> list[tuple]:
    return [(int(tr.ts[i]), float(tr.price[i]), float(tr.qty[i]), -1 if tr.buyer_maker[i] else 1)
            for i in range(lo, hi)]


def test_trades_stream_deduplicates_and_catches_up_after_a_drop():
    tr = make_agg_trades(T0, 40, seed=2)

    async def scenario():
        clock = Clock(T0)
        async with venue(clock) as (market, rest, ws, exchange):
            market.trades = _agg(tr, 0, 10)
            stream = trades(exchange, "BTC/USDT", stall_s=10.0, backoff=FAST, now_ms=clock)
            got = Collector(stream)
            await ws.wait_subscribed("btcusdt@aggTrade")

            async def send(i: int):
                assert await ws.push_agg_trade("BTCUSDT", int(tr.ids[i]), tr.price[i], tr.qty[i], int(tr.ts[i]),
                                               bool(tr.buyer_maker[i])) == 1

            for i in range(10, 20):
                await send(i)
            await send(15)                                                   # resent: dropped
            assert await got.take(10) == _expected(tr, 10, 20)
            await got.nothing_for(0.1)
            market.trades = _agg(tr, 0, 30)
            ws.drop()
            assert await got.take(10) == _expected(tr, 20, 30)              # from REST aggTrades
            await ws.wait_subscribed("btcusdt@aggTrade")
            for i in range(28, 40):                                          # 28, 29 again: dropped
                await send(i)
            assert await got.take(10) == _expected(tr, 30, 40)
            await got.nothing_for(0.1)
            assert stream.reconnects == 1 and stream.last_ts == int(tr.ts[39])
            agg = rest.calls("/api/v3/aggTrades")
            assert len(agg) == 1 and int(agg[0].params["startTime"]) == int(tr.ts[19])
            # A clean close ("going away", as Binance does after 24 h): reconnect, nothing new, no repeats.
            await ws.close(1001)
            await ws.wait_subscribed("btcusdt@aggTrade")
            await got.nothing_for(0.1)
            assert stream.reconnects == 2 and ws.connects == 3
            await send(39)
            await got.nothing_for(0.1)
            await got.stop()

    run(scenario())


def test_trades_polling_without_websocket():
    tr = make_agg_trades(T0 + 1, 30, seed=3)

    async def scenario():
        clock = Clock(T0)
        async with venue(clock, websocket=False) as (market, rest, ws, exchange):
            market.trades = _agg(tr, 0, 12)
            stream = trades(exchange, "BTC/USDT", poll_s=0.02, backoff=FAST, now_ms=clock)
            assert stream.mode == "poll"
            got = Collector(stream)
            assert await got.take(12) == _expected(tr, 0, 12)
            market.trades = _agg(tr, 0, 30)
            assert await got.take(18) == _expected(tr, 12, 30)
            await got.nothing_for(0.1)
            await got.stop()

    run(scenario())


def test_real_binance_trade_messages_through_the_trade_stream():
    path = SHARED / "binance_spot_BTCUSDT_20240808_ws.jsonl.gz"
    if not path.exists():
        pytest.skip(f"{path} not found (real market data lives outside the repository)")
    lines = []
    with gzip.open(path, "rt") as f:
        for line in f:
            if '"btcusdt@trade"' in line:
                lines.append(line)
                if len(lines) == 300:
                    break
    want, _ = capture_trades(lines, path.name)

    async def scenario():
        async with venue(Clock(int(want.ts[0]))) as (market, rest, ws, exchange):
            stream = trades(exchange, "BTC/USDT", params={"name": "trade"}, stall_s=10.0, backoff=FAST)
            got = Collector(stream)
            await ws.wait_subscribed("btcusdt@trade")
            for line in lines:
                assert await ws.push("btcusdt@trade", json.loads(line.split(" ", 1)[1])["data"]) == 1
            items = await got.take(len(lines))
            await got.stop()
            return items

    items = run(scenario())
    ts, price, amount, side = (np.array(col) for col in zip(*items))
    np.testing.assert_array_equal(ts, want.ts)
    np.testing.assert_array_equal(price, want.price)
    np.testing.assert_array_equal(amount, want.amount)
    np.testing.assert_array_equal(side, want.side)


def test_server_pings_are_answered_and_the_connection_stays_up():
    async def scenario():
        clock = Clock(0)
        clock.inside(30)
        async with venue(clock, ping_interval_s=0.05) as (market, rest, ws, exchange):
            market.klines["1m"] = KLINES[:31]
            stream = closed_bars(exchange, "BTC/USDT", "1m", history=0, stall_s=10.0, backoff=FAST, now_ms=clock)
            got = Collector(stream)
            await ws.wait_subscribed(KLINE_STREAM)
            for _ in range(100):
                if ws.pongs >= 3:
                    break
                await asyncio.sleep(0.02)
            assert ws.pongs >= 3 and ws.connects == 1 and stream.reconnects == 0
            await push(ws, 30, closed=True)
            clock.inside(31)
            await push(ws, 31, row=partial(31))
            assert await got.take(1) == [bar(30, True)]
            await got.stop()

    run(scenario())


def test_ws_server_protocol_with_a_plain_websocket_client():
    """The fake's own protocol (what ccxt does not exercise): replies, errors, path streams, pong timeout."""
    import aiohttp

    async def reply(c) -> dict:
        while True:                                      # answer the server's pings meanwhile
            msg = await asyncio.wait_for(c.receive(), 2.0)
            if msg.type == aiohttp.WSMsgType.PING:
                await c.pong(msg.data)
            else:
                return json.loads(msg.data)

    async def scenario():
        async with BinanceWsServer(ping_interval_s=0.05, pong_timeout_s=0.3) as ws, aiohttp.ClientSession() as s:
            async with s.ws_connect(ws.url + "/ws/btcusdt@trade", autoping=False) as c:
                await ws.wait_subscribed("btcusdt@trade")
                await c.send_str('{"method": "SUBSCRIBE", "params": ["btcusdt@kline_1m"], "id": 7}')
                assert await reply(c) == {"result": None, "id": 7}
                await c.send_str('{"method": "LIST_SUBSCRIPTIONS", "id": 8}')
                assert await reply(c) == {"result": ["btcusdt@kline_1m", "btcusdt@trade"], "id": 8}
                await c.send_str('{"method": "SUBSCRIBE", "params": ["BTCUSDT@trade"], "id": 9}')
                assert await reply(c) == {"error": {"code": 2, "msg": "Invalid request: invalid stream"}, "id": 9}
                await c.send_str('{"method": "SUBSCRIBE", "params": [')
                assert (await reply(c))["error"]["code"] == 3
                await ws.push_trade("BTCUSDT", 5, 61_000.5, 0.25, 1_723_161_255_342, True)
                assert await reply(c) == {"e": "trade", "E": 1_723_161_255_343, "s": "BTCUSDT", "t": 5,
                                          "p": "61000.50000000", "q": "0.25000000", "T": 1_723_161_255_342,
                                          "m": True, "M": True}
                for _ in range(100):                     # keep answering until a pong has been counted
                    if ws.pongs:
                        break
                    msg = await asyncio.wait_for(c.receive(), 2.0)
                    if msg.type == aiohttp.WSMsgType.PING:
                        await c.pong(msg.data)
                assert ws.pongs >= 1
                # Stop answering the pings: the server closes the connection after pong_timeout_s.
                while True:
                    msg = await asyncio.wait_for(c.receive(), 2.0)
                    if msg.type != aiohttp.WSMsgType.PING:
                        break
                assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1008
            assert len(ws.unexpected) == 2

    run(scenario())
