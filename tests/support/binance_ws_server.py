"""A local websocket server that speaks Binance's spot market-stream protocol, for tests with ccxt.pro.

It runs in the test's own event loop (aiohttp) on 127.0.0.1 and a random free port, and is driven by
the test: push a kline or a trade event, replay raw captured payloads, drop every connection.

The protocol, as in Binance's "WebSocket Streams" documentation and as ccxt.pro's `binance` uses it:

- Endpoints: raw streams at `/ws` and `/ws/<stream>[/<stream>...]`, payloads sent bare. ccxt
  connects to `<urls['api']['ws']['spot']>/<n>` (e.g. `/ws/0`) and subscribes by message; a path
  segment that is not a stream name (such as "0") subscribes to nothing. (Binance's combined
  `/stream?streams=` endpoint and its SET_PROPERTY / GET_PROPERTY requests are not modelled: ccxt's
  binance does not use them for market streams.)
- Requests: {"method": "SUBSCRIBE" | "UNSUBSCRIBE" | "LIST_SUBSCRIPTIONS", "params": [...],
  "id": <unsigned int or string>}; replies {"result": null, "id": id} (LIST_SUBSCRIPTIONS: the stream
  names). A malformed request is answered {"error": {"code": 2|3, "msg": ...}, "id": id} like Binance
  (code 3: invalid JSON).
- Stream names are lowercase: `<symbol>@kline_<interval>`, `<symbol>@trade`, `<symbol>@aggTrade`.
  Names of any other form are answered with code 2 and recorded in `unexpected`.
- Events: kline {"e": "kline", "E", "s", "k": {"t", "T", "s", "i", "f", "L", "o", "c", "h", "l", "v",
  "n", "x", "q", "V", "Q", "B"}}, trade {"e": "trade", "E", "s", "t", "p", "q", "T", "m", "M"},
  aggTrade {"e": "aggTrade", "E", "s", "a", "p", "q", "f", "l", "T", "m", "M"}; prices and quantities
  are decimal strings, times int ms, "m" = the buyer is the maker (the seller took liquidity).
- Keepalive: the server sends a ping frame every `ping_interval_s` (Binance: 20 s) and closes a
  connection that has not answered with a pong within `pong_timeout_s` (Binance: 60 s); it answers
  the client's ping frames with a pong carrying the same payload.

Faults: `drop()` cuts every connection without a close frame (a network failure as the client sees
it); `close(code)` closes them cleanly with a close frame.
"""
from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web

KLINE_INTERVAL_MS = {"1s": 1_000, "1m": 60_000, "3m": 180_000, "5m": 300_000, "15m": 900_000,
                     "30m": 1_800_000, "1h": 3_600_000, "2h": 7_200_000, "4h": 14_400_000,
                     "6h": 21_600_000, "8h": 28_800_000, "12h": 43_200_000, "1d": 86_400_000,
                     "3d": 259_200_000, "1w": 604_800_000}
_STREAM = re.compile(r"^[a-z0-9]+@(trade|aggTrade|kline_(" + "|".join(KLINE_INTERVAL_MS) + "))$")
_METHODS = ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS")


def _num(x: float) -> str:
    return f"{x:.8f}"


@dataclass(eq=False)
class Connection:
    id: int
    path: str
    ws: web.WebSocketResponse
    transport: asyncio.Transport | None
    streams: set = field(default_factory=set)
    last_pong: float = field(default_factory=time.monotonic)


class BinanceWsServer:
    """Binance spot market streams on ws://127.0.0.1:<port>. Use `async with`, or `start()` / `stop()`.

    `url` is the base for ccxt's `urls['api']['ws']` rehosting: "ws://127.0.0.1:<port>".
    Records: `connects` (connections accepted so far), `requests` (every client request, parsed),
    `pongs` (pong frames received), `unexpected` (bad requests or unknown stream names).
    """

    def __init__(self, ping_interval_s: float = 20.0, pong_timeout_s: float = 60.0):
        self.ping_interval_s, self.pong_timeout_s = ping_interval_s, pong_timeout_s
        self.connections: list[Connection] = []
        self.connects = 0
        self.requests: list[dict] = []
        self.pongs = 0
        self.unexpected: list[str] = []
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task] = set()

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> "BinanceWsServer":
        app = web.Application()
        app.router.add_get("/ws", self._handle)
        app.router.add_get("/ws/{streams:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        return self

    async def stop(self) -> None:
        self.drop()
        for task in list(self._tasks):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> "BinanceWsServer":
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        host, port = self._runner.addresses[0][:2]
        return f"ws://{host}:{port}"

    # --- driving it from a test --------------------------------------------------------------
    def subscribers(self, stream: str) -> int:
        return sum(stream in c.streams for c in self.connections)

    async def wait_subscribed(self, stream: str, n: int = 1, timeout: float = 5.0) -> None:
        """Wait until `n` open connections are subscribed to `stream`."""
        async def until():
            while self.subscribers(stream) < n:
                self._changed.clear()
                await self._changed.wait()
        await asyncio.wait_for(until(), timeout)

    async def push(self, stream: str, payload: dict) -> int:
        """Send `payload` on `stream` to every connection subscribed to it; returns how many got it."""
        sent = 0
        for c in list(self.connections):
            if stream in c.streams and not c.ws.closed:
                try:
                    await c.ws.send_str(json.dumps(payload, separators=(",", ":")))
                    sent += 1
                except ConnectionError:
                    pass
        return sent

    async def push_kline(self, symbol: str, interval: str, row, closed: bool, event_ms: int | None = None,
                         first_trade_id: int = 100, trades: int = 10) -> int:
        """One kline event for `symbol` (exchange id, e.g. "BTCUSDT"): row = (open time ms, open, high,
        low, close, volume) of the candle so far; `closed` is Binance's "x" (this is its final update)."""
        t, o, h, low, c, v = row
        t = int(t)
        step = KLINE_INTERVAL_MS[interval]
        payload = {"e": "kline", "E": int(event_ms if event_ms is not None else t + step - 1), "s": symbol,
                   "k": {"t": t, "T": t + step - 1, "s": symbol, "i": interval, "f": first_trade_id,
                         "L": first_trade_id + trades - 1, "o": _num(o), "c": _num(c), "h": _num(h),
                         "l": _num(low), "v": _num(v), "n": trades, "x": bool(closed), "q": _num(v * c),
                         "V": _num(v / 2), "Q": _num(v * c / 2), "B": "0"}}
        return await self.push(f"{symbol.lower()}@kline_{interval}", payload)

    async def push_trade(self, symbol: str, trade_id: int, price: float, qty: float, ts: int,
                         buyer_maker: bool, event_ms: int | None = None) -> int:
        payload = {"e": "trade", "E": int(event_ms if event_ms is not None else ts + 1), "s": symbol,
                   "t": int(trade_id), "p": _num(price), "q": _num(qty), "T": int(ts), "m": bool(buyer_maker),
                   "M": True}
        return await self.push(f"{symbol.lower()}@trade", payload)

    async def push_agg_trade(self, symbol: str, agg_id: int, price: float, qty: float, ts: int,
                             buyer_maker: bool, first_id: int | None = None, last_id: int | None = None,
                             event_ms: int | None = None) -> int:
        """An aggregate trade; first/last trade ids default to the ones the REST fake reports (3a, 3a+2)."""
        payload = {"e": "aggTrade", "E": int(event_ms if event_ms is not None else ts + 1), "s": symbol,
                   "a": int(agg_id), "p": _num(price), "q": _num(qty),
                   "f": int(first_id if first_id is not None else agg_id * 3),
                   "l": int(last_id if last_id is not None else agg_id * 3 + 2), "T": int(ts),
                   "m": bool(buyer_maker), "M": True}
        return await self.push(f"{symbol.lower()}@aggTrade", payload)

    def drop(self) -> None:
        """Cut every connection without a close frame, as a network failure would."""
        for c in list(self.connections):
            if c.transport is not None:
                c.transport.abort()
        self.connections.clear()
        self._changed.set()

    async def close(self, code: int = 1000, message: bytes = b"") -> None:
        """Close every connection cleanly (a close frame with `code`)."""
        for c in list(self.connections):
            await c.ws.close(code=code, message=message)

    # --- the protocol --------------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=False)
        await ws.prepare(request)
        self.connects += 1
        names = request.match_info.get("streams", "")
        conn = Connection(self.connects, request.path, ws, request.transport,
                          {s for s in names.split("/") if _STREAM.match(s)})
        self.connections.append(conn)
        self._changed.set()
        pinger = asyncio.create_task(self._keepalive(conn))
        self._tasks.add(pinger)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    reply = self._request(conn, msg.data)
                    if reply is not None:
                        await ws.send_str(json.dumps(reply, separators=(",", ":")))
                elif msg.type == WSMsgType.PING:
                    await ws.pong(msg.data)
                elif msg.type == WSMsgType.PONG:
                    conn.last_pong = time.monotonic()
                    self.pongs += 1
        finally:
            pinger.cancel()
            self._tasks.discard(pinger)
            if conn in self.connections:
                self.connections.remove(conn)
            self._changed.set()
        return ws

    async def _keepalive(self, conn: Connection) -> None:
        while not conn.ws.closed:
            await asyncio.sleep(self.ping_interval_s)
            if time.monotonic() - conn.last_pong > self.pong_timeout_s:
                await conn.ws.close(code=1008, message=b"pong timeout")
                return
            try:
                await conn.ws.ping(str(int(time.time() * 1000)).encode())
            except ConnectionError:
                return

    def _request(self, conn: Connection, text: str) -> dict | None:
        try:
            req = json.loads(text)
        except json.JSONDecodeError as e:
            self.unexpected.append(text)
            return {"error": {"code": 3, "msg": f"Invalid JSON: {e.msg} at line {e.lineno} column {e.colno}"}}
        if not isinstance(req, dict):
            self.unexpected.append(text)
            return {"error": {"code": 2, "msg": "Invalid request: expected an object"}}
        self.requests.append(req)
        rid = req.get("id")
        if rid is not None and not (isinstance(rid, str) or (isinstance(rid, int) and rid >= 0)):
            self.unexpected.append(text)
            return {"error": {"code": 2, "msg": "Invalid request: request ID must be an unsigned integer"},
                    "id": None}
        method = req.get("method")
        if method not in _METHODS:
            self.unexpected.append(text)
            return {"error": {"code": 2, "msg": f"Invalid request: unknown variant {method!r}, expected one of "
                                                + ", ".join(_METHODS)}, "id": rid}
        params = req.get("params", [])
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if not isinstance(params, list) or not all(isinstance(s, str) and _STREAM.match(s) for s in params):
                self.unexpected.append(text)
                return {"error": {"code": 2, "msg": "Invalid request: invalid stream"}, "id": rid}
            if method == "SUBSCRIBE":
                conn.streams.update(params)
            else:
                conn.streams.difference_update(params)
            self._changed.set()
            return {"result": None, "id": rid}
        return {"result": sorted(conn.streams), "id": rid}
