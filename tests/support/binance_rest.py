"""A local HTTP server that speaks Binance's spot REST protocol, for end-to-end tests with real ccxt.

The market state is plain data (`SpotMarket`: candles per interval and aggregate trades as NumPy
arrays); the server answers the public endpoints ccxt's `binance` class calls, with the field names,
types and parameter semantics of Binance's documentation:

    GET /api/v3/ping, /api/v3/time, /api/v3/exchangeInfo
    GET /api/v3/klines     symbol, interval, startTime, endTime (inclusive, on open time), limit (500, max 1000)
    GET /api/v3/aggTrades  symbol, fromId | startTime+endTime (at most 1 h apart), limit (500, max 1000);
                           with a time window, the *last* `limit` trades of the window are returned
                           (Binance counts the limit from the end, binance-spot-api-docs issue #10)

Any other path answers 404 and is recorded in `unexpected`, so a test notices a call it did not plan.
Every request is recorded (`requests`: path, params, monotonic receipt time, injected fault).
Faults are injected per path and per request number: an HTTP status (429 with Retry-After, 5xx) or a
connection dropped without any response.

Point ccxt at it with `bot4jax.data.download.make_exchange("binance", api_url=server.url)`, which
rewrites the hosts of `exchange.urls['api']` and restricts market loading to spot.
"""
from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import numpy as np

INTERVAL_MS = {"1s": 1_000, "1m": 60_000, "3m": 180_000, "5m": 300_000, "15m": 900_000, "30m": 1_800_000,
               "1h": 3_600_000, "2h": 7_200_000, "4h": 14_400_000, "6h": 21_600_000, "8h": 28_800_000,
               "12h": 43_200_000, "1d": 86_400_000, "3d": 259_200_000, "1w": 604_800_000}
HOUR_MS = 3_600_000


# --- Deterministic market data -------------------------------------------------------------------

def make_klines(start_ms: int, n: int, interval_ms: int, seed: int = 0, price: float = 40_000.0) -> np.ndarray:
    """(n, 6) float64 rows [open_time, open, high, low, close, volume] of a seeded random walk.

    Prices are rounded to 0.01 and volumes to 1e-5 so that their 8-decimal strings parse back exactly.
    """
    rng = np.random.default_rng(seed)
    close = np.round(price * np.exp(np.cumsum(rng.normal(0.0, 1e-3, n))), 2)
    open_ = np.round(np.concatenate([[price], close[:-1]]), 2)
    wick = np.round(np.abs(rng.normal(0.0, 5.0, (2, n))), 2)
    high = np.round(np.maximum(open_, close) + wick[0], 2)
    low = np.round(np.maximum(np.minimum(open_, close) - wick[1], 0.01), 2)
    volume = np.round(rng.gamma(2.0, 3.0, n), 5)
    ts = start_ms + interval_ms * np.arange(n, dtype=np.int64)
    return np.column_stack([ts, open_, high, low, close, volume])


@dataclass
class AggTrades:
    """Aggregate trades in id order: ids are consecutive like Binance's (`first_id`, first_id + 1, ...)."""

    ts: np.ndarray         # int64 ms
    price: np.ndarray      # float64
    qty: np.ndarray        # float64
    buyer_maker: np.ndarray  # bool: True = the seller was the taker (a sell)
    first_id: int = 1_000

    @property
    def ids(self) -> np.ndarray:
        return self.first_id + np.arange(len(self.ts), dtype=np.int64)


def make_agg_trades(start_ms: int, n: int, seed: int = 0, mean_gap_ms: float = 250.0,
                    burst_every: int = 0, burst_size: int = 0, first_id: int = 1_000) -> AggTrades:
    """`n` seeded trades from `start_ms`; every `burst_every`-th trade starts `burst_size` trades in one ms."""
    rng = np.random.default_rng(seed)
    gaps = rng.geometric(1.0 / mean_gap_ms, n).astype(np.int64)
    gaps[0] = 0
    if burst_every and burst_size:
        for s in range(burst_every, n, burst_every):
            gaps[s + 1:s + burst_size] = 0
    ts = start_ms + np.cumsum(gaps)
    price = np.round(40_000.0 * np.exp(np.cumsum(rng.normal(0.0, 2e-4, n))), 2)
    qty = np.round(rng.gamma(1.5, 0.02, n) + 0.00001, 5)
    return AggTrades(ts, price, qty, rng.random(n) < 0.5, first_id)


@dataclass
class SpotMarket:
    """One spot symbol: exchange id (BTCUSDT), assets, candles per interval, aggregate trades."""

    base: str
    quote: str
    klines: dict[str, np.ndarray] = field(default_factory=dict)
    trades: AggTrades | None = None

    @property
    def id(self) -> str:
        return self.base + self.quote


# --- Faults and records --------------------------------------------------------------------------

@dataclass(frozen=True)
class Fault:
    """What to answer instead of the real response: an HTTP status or a dropped connection."""

    status: int = 0               # 0 = drop the connection without sending anything
    retry_after: str | None = None  # Retry-After header value (seconds), for 429 / 503
    body: str | None = None

    @staticmethod
    def drop() -> "Fault":
        return Fault(0)

    @staticmethod
    def too_many_requests(retry_after: int | None = 1) -> "Fault":
        body = json.dumps({"code": -1003, "msg": "Too many requests; current limit of IP(127.0.0.1) is 6000 "
                                                  "requests per minute. Please use the websocket for live "
                                                  "updates to avoid polling the API."})
        return Fault(429, None if retry_after is None else str(retry_after), body)

    @staticmethod
    def error(status: int, code: int, msg: str) -> "Fault":
        """A Binance error answer, e.g. error(400, -1121, "Invalid symbol.")."""
        return Fault(status, None, json.dumps({"code": code, "msg": msg}))

    @staticmethod
    def server_error(status: int = 502, retry_after: int | None = None) -> "Fault":
        return Fault(status, None if retry_after is None else str(retry_after),
                     f"<html><body><h1>{status} {HTTPStatus(status).phrase}</h1></body></html>")


@dataclass(frozen=True)
class Request:
    path: str
    params: dict
    t: float                 # time.monotonic() when the request line was parsed
    fault: Fault | None = None


class ApiError(Exception):
    """A Binance error answer: HTTP status plus {"code": ..., "msg": ...}."""

    def __init__(self, status: int, code: int, msg: str):
        super().__init__(msg)
        self.status, self.code, self.msg = status, code, msg


def _num(x: float) -> str:
    return f"{x:.8f}"


def _int_param(params: dict, name: str, default=None):
    if name not in params:
        return default
    try:
        return int(params[name])
    except ValueError:
        raise ApiError(400, -1100, f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'.")


def _limit(params: dict) -> int:
    limit = _int_param(params, "limit", 500)
    if limit <= 0 or limit > 1000:
        raise ApiError(400, -1130, "Invalid data sent for a parameter.")
    return limit


# --- The server ----------------------------------------------------------------------------------

class BinanceRestServer:
    """Serves `markets` on 127.0.0.1 (random free port) from a background thread.

    Use as a context manager, or call `start()` / `stop()`. `url` is "http://127.0.0.1:<port>".
    """

    def __init__(self, markets: list[SpotMarket], now_ms=None):
        self.markets = {m.id: m for m in markets}
        self.now_ms = now_ms or (lambda: int(time.time() * 1000))
        self.requests: list[Request] = []
        self.unexpected: list[str] = []
        self._faults: dict[tuple[str, int], Fault] = {}
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.routes = {
            "/api/v3/ping": self.ping,
            "/api/v3/time": self.time,
            "/api/v3/exchangeInfo": self.exchange_info,
            "/api/v3/klines": self.klines,
            "/api/v3/aggTrades": self.agg_trades,
        }

    # lifecycle
    def start(self) -> "BinanceRestServer":
        handler = type("Handler", (_Handler,), {"venue": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                        name="fake-binance", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(5)
            self._httpd = None

    def __enter__(self) -> "BinanceRestServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    # faults and records
    def inject(self, path: str, nth: int, fault: Fault) -> None:
        """Answer the `nth` request (1-based, counted since start) to `path` with `fault`."""
        with self._lock:
            self._faults[(path, nth)] = fault

    def calls(self, path: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def _record(self, path: str, params: dict) -> Fault | None:
        with self._lock:
            n = self._counts[path] = self._counts.get(path, 0) + 1
            fault = self._faults.pop((path, n), None)
            self.requests.append(Request(path, params, time.monotonic(), fault))
            if path not in self.routes:
                self.unexpected.append(path)
            return fault

    # endpoints: each returns a JSON-serialisable object or raises ApiError
    def ping(self, params: dict):
        return {}

    def time(self, params: dict):
        return {"serverTime": self.now_ms()}

    def exchange_info(self, params: dict):
        return {
            "timezone": "UTC",
            "serverTime": self.now_ms(),
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
                {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
                {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
            ],
            "exchangeFilters": [],
            "symbols": [self._symbol_info(m) for m in self.markets.values()],
        }

    @staticmethod
    def _symbol_info(m: SpotMarket) -> dict:
        return {
            "symbol": m.id, "status": "TRADING",
            "baseAsset": m.base, "baseAssetPrecision": 8,
            "quoteAsset": m.quote, "quotePrecision": 8, "quoteAssetPrecision": 8,
            "baseCommissionPrecision": 8, "quoteCommissionPrecision": 8,
            "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT",
                           "TAKE_PROFIT_LIMIT"],
            "icebergAllowed": True, "ocoAllowed": True, "otoAllowed": True,
            "quoteOrderQtyMarketAllowed": True, "allowTrailingStop": True, "cancelReplaceAllowed": True,
            "isSpotTradingAllowed": True, "isMarginTradingAllowed": False,
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": "0.01000000", "maxPrice": "1000000.00000000",
                 "tickSize": "0.01000000"},
                {"filterType": "LOT_SIZE", "minQty": "0.00001000", "maxQty": "9000.00000000",
                 "stepSize": "0.00001000"},
                {"filterType": "NOTIONAL", "minNotional": "5.00000000", "applyMinToMarket": True,
                 "maxNotional": "9000000.00000000", "applyMaxToMarket": False, "avgPriceMins": 5},
                {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
            ],
            "permissions": [], "permissionSets": [["SPOT"]],
            "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
            "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
        }

    def _market(self, params: dict) -> SpotMarket:
        if "symbol" not in params:
            raise ApiError(400, -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
        m = self.markets.get(params["symbol"])
        if m is None:
            raise ApiError(400, -1121, "Invalid symbol.")
        return m

    def klines(self, params: dict):
        m = self._market(params)
        interval = params.get("interval")
        if interval not in INTERVAL_MS:
            raise ApiError(400, -1120, "Invalid interval.")
        limit = _limit(params)
        rows = m.klines.get(interval, np.empty((0, 6)))
        ts = rows[:, 0].astype(np.int64)
        start, end = _int_param(params, "startTime"), _int_param(params, "endTime")
        lo = 0 if start is None else int(np.searchsorted(ts, start, "left"))
        hi = len(ts) if end is None else int(np.searchsorted(ts, end, "right"))
        # With a start the first `limit` candles from it; otherwise the latest `limit` up to the end.
        sel = rows[lo:min(hi, lo + limit)] if start is not None else rows[max(lo, hi - limit):hi]
        step = INTERVAL_MS[interval]
        out = []
        for t, o, h, low, c, v in sel:
            t = int(t)
            taker = v * 0.5
            out.append([t, _num(o), _num(h), _num(low), _num(c), _num(v), t + step - 1, _num(v * c), 10,
                        _num(taker), _num(taker * c), "0"])
        return out

    def agg_trades(self, params: dict):
        m = self._market(params)
        limit = _limit(params)
        tr = m.trades
        if tr is None:
            return []
        from_id = _int_param(params, "fromId")
        start, end = _int_param(params, "startTime"), _int_param(params, "endTime")
        ids = tr.ids
        if from_id is not None:
            if start is not None or end is not None:
                raise ApiError(400, -1128, "Combination of optional parameters invalid.")
            lo = int(np.searchsorted(ids, from_id, "left"))
            idx = np.arange(lo, min(lo + limit, len(ids)))
        elif start is not None or end is not None:
            if start is None or end is None:
                # Binance's behaviour with only one bound is not modelled: fail loudly.
                raise ApiError(400, -1128, "Combination of optional parameters invalid.")
            if end - start > HOUR_MS:
                raise ApiError(400, -1127, "More than 1 hours between startTime and endTime.")
            lo = int(np.searchsorted(tr.ts, start, "left"))
            hi = int(np.searchsorted(tr.ts, end, "right"))
            idx = np.arange(max(lo, hi - limit), hi)
        else:
            idx = np.arange(max(0, len(ids) - limit), len(ids))
        return [{"a": int(ids[i]), "p": _num(tr.price[i]), "q": _num(tr.qty[i]), "f": int(ids[i]) * 3,
                 "l": int(ids[i]) * 3 + 2, "T": int(tr.ts[i]), "m": bool(tr.buyer_maker[i]), "M": True}
                for i in idx]


class _Handler(BaseHTTPRequestHandler):
    venue: BinanceRestServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # keep test output clean
        pass

    def do_GET(self):
        url = urlsplit(self.path)
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        fault = self.venue._record(url.path, params)
        if fault is not None:
            if fault.status == 0:
                # Close the socket without a status line: the client sees the connection dropped.
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            ctype = "application/json" if (fault.body or "").startswith("{") else "text/html"
            self._send(fault.status, fault.body or "", ctype, headers)
            return
        route = self.venue.routes.get(url.path)
        if route is None:
            self._send(404, json.dumps({"code": -1, "msg": f"fake binance: unknown path {url.path}"}))
            return
        try:
            body = route(params)
        except ApiError as e:
            self._send(e.status, json.dumps({"code": e.code, "msg": e.msg}))
            return
        self._send(200, json.dumps(body), headers={"x-mbx-used-weight": "1", "x-mbx-used-weight-1m": "1"})

    def _send(self, status: int, body: str, ctype: str = "application/json;charset=UTF-8", headers=None):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
