"""Live market data for the decision loop: closed candles and trades from a venue, through ccxt.

Websocket first: ccxt.pro's `watch_ohlcv` / `watch_trades` where `exchange.has` says the venue has
them; REST polling of `fetch_ohlcv` / `fetch_trades` every `poll_s` seconds otherwise. Both streams are
async iterators meant for one event loop:

    exchange = make_pro_exchange("binance", market_types=("spot",))
    bars = closed_bars(exchange, "BTC/USDT", "1m")
    async for ts, o, h, l, c, v, tradable in bars:
        ...            # bars.stale_ms() feeds the stale-data breaker
    await exchange.close()

Closed candles (open time t in ms UTC, length `step` ms):
- Over a websocket, candle t is closed once an update of a later candle arrives. The venue sends the
  final update of t (Binance: "x": true) before the first update of the next candle, so the values
  yielded are the last update seen for t. The candle still open is never yielded.
- Over REST, candle t is closed when a later candle is in the same answer, or when t + step <= now.
- History first: the `history` latest closed candles from REST with tradable False (they warm the
  features up and never lead to an order). Then live candles, tradable when the candle closed less
  than one step ago (now - (t + step) < step); a candle yielded later than that (catching up after a
  reconnect) comes with tradable False, since the moment to act on it has passed.
- Strictly increasing t: a candle at or before the last one yielded is dropped, so none is yielded
  twice or out of order, whatever the venue resends.
- Gaps: when a candle arrives more than one step after the last one yielded, the candles in between
  are fetched from REST (`fetch_ohlcv` since the last closed candle) and yielded first.

Trades: (ts, price, amount, side), side +1 when the buyer took liquidity and -1 when the seller did.
De-duplicated on (ts, trade id): a trade older than the last one yielded, or whose id was already
yielded in that millisecond, is dropped. On Binance the aggregate-trade stream is watched, because
REST `fetch_trades` answers aggregate trades: the ids of both sources are then the same ids.

Latency: a ccxt watch call returns at the *next* message, and what arrives while the consumer is
busy only lands in ccxt's cache (`exchange.ohlcvs`, `exchange.trades`); the streams read that cache
before each watch call, so an update never waits for a later one to be delivered. Taking an update
twice is harmless: both rules above are idempotent.

Faults: a ccxt.NetworkError from a watch (dropped connection, ping-pong timeout, failed dial) is
logged with the running count `reconnects`; the stream waits min(cap_s, base_s * 2**(k-1)) s after
the k-th failure in a row, catches up on what it missed from REST, and watches again (ccxt dials a new
connection and subscribes again). Nothing at all for `stall_s` seconds: one REST poll, then back to
watching. A failed REST call is logged and retried with the same back-off. Any other ccxt error
(unknown symbol, unsupported timeframe) is raised at once.

Health, for the circuit breakers: `last_event_ms` is when the venue was last heard from (a websocket
update or a REST answer) on the stream's clock (ms), `stale_ms()` how long ago that was, `last_ts` the
time of the newest candle or trade yielded, `mode` "watch" or "poll", `reconnects` the count so far.
"""
from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass
from typing import AsyncIterator, Callable

from bot4jax.data.download import build_exchange
from bot4jax.data.timeframes import timeframe_ms
from bot4jax.errors import ConfigError, DataError

log = logging.getLogger("bot4jax.live.streams")

HISTORY_BARS = 200   # > the longest feature warm-up (50 bars)
MAX_PAGES = 20       # REST pages per catch-up: 20 x 500 candles covers any outage worth catching up on

# Extra watch_trades params per venue. Binance: aggregate trades, whose ids match REST fetch_trades.
WATCH_TRADES_PARAMS = {"binance": {"name": "aggTrade"}}


def make_pro_exchange(exchange_id: str, api_url: str | None = None, ws_url: str | None = None, *,
                      websocket: bool = True, market_types: tuple[str, ...] | None = None,
                      rate_limit_ms: float | None = None, timeout_ms: int | None = None):
    """An async ccxt exchange for live market data, rate limited, without API keys.

    `ccxt.pro.<id>` (REST and websockets) when ccxt.pro has the venue and `websocket` is True,
    else `ccxt.async_support.<id>` (REST only: the streams then poll).
    api_url: "http[s]://host[:port]" replacing scheme and host of every REST endpoint in
             `urls['api']` (paths kept): a testnet, a proxy or a local test server.
    ws_url:  "ws[s]://host[:port]" replacing scheme and host of every websocket endpoint in
             `urls['api']['ws']` (ccxt's binance builds its stream URLs as `<urls['api']['ws'][type]>/<n>`,
             e.g. wss://stream.binance.com:9443/ws/0, so the paths must be kept). ccxt's binance tells
             spot from futures streams by "/stream" in the URL (the host stream.binance.com has it), so
             against a local server load only one market type (market_types=("spot",)).
    market_types: the market types to load where ccxt lets us choose (Binance's
             `options['fetchMarkets']['types']`), e.g. ("spot",) to skip the futures endpoints.
    Close it with `await exchange.close()`.
    """
    import ccxt.async_support
    import ccxt.pro

    if exchange_id not in ccxt.async_support.exchanges:
        raise ConfigError(f"unknown exchange {exchange_id!r}: ccxt knows {len(ccxt.async_support.exchanges)} "
                          "venues, e.g. binance, bybit, okx, kraken, coinbase (see ccxt.exchanges)")
    pro = websocket and exchange_id in ccxt.pro.exchanges
    return build_exchange(ccxt.pro if pro else ccxt.async_support, exchange_id, api_url=api_url,
                          ws_url=ws_url if pro else None, rate_limit_ms=rate_limit_ms, timeout_ms=timeout_ms,
                          market_types=market_types)


@dataclass(frozen=True)
class Backoff:
    """Wait before the k-th retry in a row: min(cap_s, base_s * 2**(k-1)) seconds."""

    base_s: float = 0.5
    cap_s: float = 30.0

    def delay(self, failures: int) -> float:
        return min(self.cap_s, self.base_s * 2.0 ** (max(failures, 1) - 1))


class _Stream:
    """Health, retries and the watch / poll loops shared by the candle and trade streams.

    Subclasses give `_run()` (the whole stream, ending in `_loop()`), `_watch()` (one ccxt watch call),
    `_take(batch)` (what a websocket batch yields) and `_catch_up()` (what one REST poll yields).
    """

    feature = ""   # the `exchange.has` key of the watch method
    what = ""      # in log lines

    def __init__(self, exchange, symbol: str, label: str, use_watch: bool | None, poll_s: float,
                 stall_s: float, backoff: Backoff, now_ms: Callable[[], int] | None):
        has = bool(exchange.has.get(self.feature))
        if use_watch and not has:
            raise ConfigError(f"{exchange.id} has no {self.feature} in this ccxt client (build it with "
                              "make_pro_exchange); poll REST instead with use_watch=False")
        if not (poll_s > 0 and stall_s > 0):
            raise ConfigError(f"poll_s and stall_s must be positive seconds, got {poll_s} and {stall_s}")
        self.exchange, self.symbol, self.label = exchange, symbol, label
        self.mode = "watch" if (has if use_watch is None else use_watch) else "poll"
        self.poll_s, self.stall_s, self.backoff = poll_s, stall_s, backoff
        self.now_ms = now_ms or exchange.milliseconds
        self.last_event_ms: int | None = None
        self.last_ts: int | None = None
        self.reconnects = 0
        self._ws_failures = 0
        self._rest_failures = 0
        self._gen = None

    # --- async iterator ----------------------------------------------------------------------
    def __aiter__(self):
        return self

    async def __anext__(self):
        if self._gen is None:
            self._gen = self._run()
        return await self._gen.__anext__()

    async def aclose(self) -> None:
        if self._gen is not None:
            await self._gen.aclose()

    def stale_ms(self, now_ms: int | None = None) -> int | None:
        """ms since the venue was last heard from (None before the first answer)."""
        if self.last_event_ms is None:
            return None
        return (self.now_ms() if now_ms is None else now_ms) - self.last_event_ms

    # --- the loops -----------------------------------------------------------------------------
    def _run(self) -> AsyncIterator[tuple]:
        raise NotImplementedError

    def _loop(self) -> AsyncIterator[tuple]:
        return self._poll_loop() if self.mode == "poll" else self._watch_loop()

    async def _poll_loop(self) -> AsyncIterator[tuple]:
        while True:
            async for item in self._catch_up():
                yield item
            await asyncio.sleep(self.poll_s)

    async def _watch_loop(self) -> AsyncIterator[tuple]:
        import ccxt

        while True:
            # A watch call returns at the next message; what arrived while we were busy is only in
            # ccxt's cache, so take that first, or it would wait for one more message.
            backlog = self._unseen()
            if backlog:
                self.last_event_ms = self.now_ms()
                async for item in self._take(backlog):
                    yield item
                continue
            try:
                batch = await asyncio.wait_for(self._watch(), self.stall_s)
            except TimeoutError:
                log.warning("%s: no %s for %.1f s; polling REST once", self.label, self.what, self.stall_s)
                async for item in self._catch_up():
                    yield item
                continue
            except ccxt.NetworkError as e:
                self.reconnects += 1
                self._ws_failures += 1
                delay = self.backoff.delay(self._ws_failures)
                log.warning("%s: websocket lost (%s: %s); reconnect %d in %.2f s, catching up from REST first",
                            self.label, type(e).__name__, _short(e), self.reconnects, delay)
                await asyncio.sleep(delay)
                async for item in self._catch_up():
                    yield item
                continue
            if self._ws_failures:
                log.info("%s: websocket back after %d failed attempt(s)", self.label, self._ws_failures)
            self._ws_failures = 0
            self.last_event_ms = self.now_ms()
            async for item in self._take(batch):
                yield item

    async def _rest(self, name: str, fn, *args, **kwargs):
        """One REST call: its answer, or None after a NetworkError (logged, then a back-off wait)."""
        import ccxt

        try:
            out = await fn(*args, **kwargs)
        except ccxt.NetworkError as e:
            self._rest_failures += 1
            delay = self.backoff.delay(self._rest_failures)
            log.warning("%s: %s failed (%s: %s); retry %d in %.2f s", self.label, name, type(e).__name__,
                        _short(e), self._rest_failures, delay)
            await asyncio.sleep(delay)
            return None
        self._rest_failures = 0
        self.last_event_ms = self.now_ms()
        return out

    async def _watch(self):
        raise NotImplementedError

    async def _take(self, batch) -> AsyncIterator[tuple]:
        raise NotImplementedError
        yield

    def _unseen(self) -> list:
        """Updates in ccxt's cache that `_take` has not seen yet (ccxt.pro keeps the latest candles in
        `exchange.ohlcvs[symbol][timeframe]` and trades in `exchange.trades[symbol]`)."""
        raise NotImplementedError

    async def _catch_up(self) -> AsyncIterator[tuple]:
        raise NotImplementedError
        yield


class BarStream(_Stream):
    """Closed candles (ts, open, high, low, close, volume, tradable); see the module docstring."""

    feature, what = "watchOHLCV", "candles"

    def __init__(self, exchange, symbol: str, timeframe: str, history: int = HISTORY_BARS, *,
                 use_watch: bool | None = None, poll_s: float = 5.0, stall_s: float = 60.0,
                 backoff: Backoff = Backoff(), page_limit: int | None = None,
                 now_ms: Callable[[], int] | None = None):
        super().__init__(exchange, symbol, f"{exchange.id} {symbol} {timeframe}", use_watch, poll_s, stall_s,
                         backoff, now_ms)
        try:
            self.step = timeframe_ms(timeframe)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        if history < 0:
            raise ConfigError(f"history must be >= 0 candles, got {history}")
        self.timeframe, self.history, self.page_limit = timeframe, history, page_limit
        self.gaps_unfilled = 0
        self._pending: dict[int, tuple] = {}   # websocket candles after last_ts, not known closed yet
        self._live = False

    async def _run(self):
        if self.history:
            start = self.now_ms() - (self.history + 1) * self.step
            rows = None
            while rows is None:
                rows = await self._rest_rows(start)
            for bar in self._closed(rows)[-self.history:]:
                yield self._emit(bar)
        self._live = True
        async for item in self._loop():
            yield item

    def _emit(self, bar: tuple) -> tuple:
        t = bar[0]
        self.last_ts = t
        tradable = self._live and self.now_ms() - (t + self.step) < self.step
        return (*bar, tradable)

    def _bar(self, row) -> tuple:
        try:
            bar = (int(row[0]), *(float(x) for x in row[1:5]), float(row[5] or 0.0))
        except (TypeError, ValueError, IndexError):
            raise DataError(self.label, f"candle {row!r} is not [ts, open, high, low, close, volume] of numbers",
                            field="ohlcv") from None
        if not all(math.isfinite(x) for x in bar[1:]):
            raise DataError(self.label, f"candle {row!r} has a value that is not finite", field="ohlcv")
        return bar

    def _closed(self, rows) -> list[tuple]:
        """The closed candles of a REST answer after `last_ts`, oldest first."""
        by_ts = {int(r[0]): r for r in rows}
        if not by_ts:
            return []
        newest, now = max(by_ts), self.now_ms()
        return [self._bar(by_ts[t]) for t in sorted(by_ts)
                if (self.last_ts is None or t > self.last_ts) and (t < newest or t + self.step <= now)]

    async def _rest_rows(self, since: int, until: int | None = None) -> list | None:
        """REST candles from `since` (inclusive) up to the open one (or to `until`, exclusive), page by
        page; None when a request failed."""
        rows: list = []
        for _ in range(MAX_PAGES):
            page = await self._rest("fetch_ohlcv", self.exchange.fetch_ohlcv, self.symbol, self.timeframe,
                                    since=since, limit=self.page_limit)
            if page is None:
                return None
            page = [r for r in page if r[0] >= since and (until is None or r[0] < until)]
            if not page:
                break
            rows.extend(page)
            last = int(page[-1][0])
            if (until is not None and last + self.step >= until) or last + self.step > self.now_ms():
                break
            since = last + 1
        return rows

    async def _watch(self):
        return await self.exchange.watch_ohlcv(self.symbol, self.timeframe, params={})

    def _unseen(self) -> list:
        cache = (getattr(self.exchange, "ohlcvs", None) or {}).get(self.symbol, {}).get(self.timeframe)
        out = []
        for row in reversed(cache or ()):
            t = int(row[0])
            if self.last_ts is not None and t <= self.last_ts:
                break
            if self._pending.get(t) != self._bar(row):
                out.append(row)
        return out[::-1]

    async def _take(self, batch):
        for row in batch:
            t = int(row[0])
            if self.last_ts is None or t > self.last_ts:
                self._pending[t] = self._bar(row)
        if not self._pending:
            return
        newest = max(self._pending)
        for t in sorted(self._pending):
            if t >= newest:
                break
            bar = self._pending.pop(t)
            if self.last_ts is not None and t <= self.last_ts:
                continue
            async for filled in self._fill_gap(t):
                yield filled
            yield self._emit(bar)
        async for filled in self._fill_gap(newest):
            yield filled
        self._prune()

    async def _fill_gap(self, until: int):
        """The candles strictly between the last one yielded and `until` (whose candle has started,
        so all of them are closed), from REST."""
        if self.last_ts is None or until <= self.last_ts + self.step:
            return
        since = self.last_ts + 1
        rows = None
        for _ in range(3):
            rows = await self._rest_rows(since, until)
            if rows is not None:
                break
        if rows is None:
            self.gaps_unfilled += 1
            log.error("%s: could not fetch the candles between %d and %d from REST; going on with a gap",
                      self.label, self.last_ts, until)
            return
        bars = [self._bar(r) for r in sorted({int(r[0]): r for r in rows}.values(), key=lambda r: r[0])
                if r[0] > self.last_ts]
        expected = (until - self.last_ts) // self.step - 1
        log.info("%s: filled %d of %d missing candles from REST (%d to %d)", self.label, len(bars), expected,
                 since, until)
        for bar in bars:
            yield self._emit(bar)

    async def _catch_up(self):
        since = self.last_ts + 1 if self.last_ts is not None else self.now_ms() - 2 * self.step
        rows = await self._rest_rows(since)
        if rows is None:
            return
        for bar in self._closed(rows):
            if self.last_ts is None or bar[0] > self.last_ts:
                yield self._emit(bar)
        self._prune()

    def _prune(self) -> None:
        if self.last_ts is not None:
            for t in [t for t in self._pending if t <= self.last_ts]:
                del self._pending[t]


class TradeStream(_Stream):
    """Public trades (ts, price, amount, side) as they happen; see the module docstring."""

    feature, what = "watchTrades", "trades"

    def __init__(self, exchange, symbol: str, *, params: dict | None = None, use_watch: bool | None = None,
                 poll_s: float = 1.0, stall_s: float = 60.0, backoff: Backoff = Backoff(),
                 page_limit: int = 1000, now_ms: Callable[[], int] | None = None):
        super().__init__(exchange, symbol, f"{exchange.id} {symbol} trades", use_watch, poll_s, stall_s,
                         backoff, now_ms)
        self.params = dict(WATCH_TRADES_PARAMS.get(exchange.id, {}) if params is None else params)
        self.page_limit = page_limit
        self._ids: set = set()    # keys of the trades yielded in millisecond `last_ts`
        self._start_ms: int | None = None

    async def _run(self):
        self._start_ms = self.now_ms()
        async for item in self._loop():
            yield item

    def _unseen(self) -> list:
        cache = (getattr(self.exchange, "trades", None) or {}).get(self.symbol)
        out = []
        for trade in reversed(cache or ()):
            ts = trade.get("timestamp")
            if self.last_ts is not None and ts is not None and ts < self.last_ts:
                break
            if not self._seen(trade):
                out.append(trade)
        return out[::-1]

    def _seen(self, trade: dict) -> bool:
        ts = trade.get("timestamp")
        return self.last_ts is not None and ts is not None and (
            ts < self.last_ts or (ts == self.last_ts and self._key(trade) in self._ids))

    @staticmethod
    def _key(trade: dict):
        key = trade.get("id")
        return key if key is not None else (trade.get("price"), trade.get("amount"), trade.get("side"))

    def _accept(self, trade: dict) -> tuple | None:
        ts, price, amount = trade.get("timestamp"), trade.get("price"), trade.get("amount")
        side = {"buy": 1, "sell": -1}.get(trade.get("side"))
        if ts is None or price is None or amount is None:
            raise DataError(self.label, f"trade {trade.get('id')!r} lacks a timestamp, price or amount",
                            field="timestamp" if ts is None else ("price" if price is None else "amount"))
        if side is None:
            raise DataError(self.label, f"trade {trade.get('id')!r} has no aggressor side "
                            f"({trade.get('side')!r}); this venue's trades cannot be signed", field="side")
        if self._seen(trade):
            return None
        ts, key = int(ts), self._key(trade)
        if ts != self.last_ts:
            self._ids = set()
        self._ids.add(key)
        self.last_ts = ts
        return ts, float(price), float(amount), side

    async def _watch(self):
        return await self.exchange.watch_trades(self.symbol, params=dict(self.params))

    async def _take(self, batch):
        for trade in batch:
            item = self._accept(trade)
            if item is not None:
                yield item

    async def _catch_up(self):
        since = self.last_ts if self.last_ts is not None else self._start_ms
        got = await self._rest("fetch_trades", self.exchange.fetch_trades, self.symbol, since=since,
                               limit=self.page_limit)
        if got is None:
            return
        if len(got) >= self.page_limit:
            log.warning("%s: REST answered a full page of %d trades from %d; trades before %s may be missing",
                        self.label, len(got), since, got[0].get("timestamp"))
        for trade in got:
            item = self._accept(trade)
            if item is not None:
                yield item


def closed_bars(exchange, symbol: str, timeframe: str, history: int = HISTORY_BARS, **options) -> BarStream:
    """Closed candles of `symbol` as an async iterator of (ts, open, high, low, close, volume, tradable):
    `history` closed ones from REST first (tradable False), then each one as it closes, over the
    venue's websocket when ccxt has `watchOHLCV` for it, else by REST polling. Options: use_watch,
    poll_s, stall_s, backoff, page_limit, now_ms (see BarStream)."""
    return BarStream(exchange, symbol, timeframe, history, **options)


def trades(exchange, symbol: str, **options) -> TradeStream:
    """Public trades of `symbol` from now on as an async iterator of (ts, price, amount, side), over
    the venue's websocket when ccxt has `watchTrades` for it, else by REST polling. Options: params,
    use_watch, poll_s, stall_s, backoff, page_limit, now_ms (see TradeStream)."""
    return TradeStream(exchange, symbol, **options)


def _short(e: BaseException, n: int = 200) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= n else text[:n] + "..."
