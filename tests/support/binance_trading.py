"""A local HTTP server that speaks Binance's signed spot trading API, for end-to-end tests with real ccxt.

Extends `BinanceRestServer` (public market data, fault injection, request records) with the endpoints
ccxt's `binance` class calls to trade spot, with Binance's field names, HTTP statuses and error codes:

    GET    /api/v3/ticker/24hr, /api/v3/ticker/price, /api/v3/ticker/bookTicker, /api/v3/depth   (public)
    GET    /api/v3/account                     balances (omitZeroBalances), commission rates
    POST   /api/v3/order                       MARKET, LIMIT, LIMIT_MAKER, STOP_LOSS, STOP_LOSS_LIMIT;
                                               timeInForce GTC / IOC / FOK; newClientOrderId; newOrderRespType
    DELETE /api/v3/order                       by orderId or origClientOrderId; -2011 "Unknown order sent."
    GET    /api/v3/order                       by orderId or origClientOrderId; -2013 "Order does not exist."
    GET    /api/v3/openOrders, /api/v3/myTrades
    GET    /sapi/v1/capital/config/getall      currencies    } ccxt loads these with the markets
    GET    /sapi/v1/margin/allPairs, /sapi/v1/margin/isolated/allPairs  } when API keys are set

Signed endpoints check like Binance: the X-MBX-APIKEY header (absent or malformed: 401 -2014, unknown:
401 -2015), `timestamp` inside `recvWindow` (400 -1021), and the HMAC-SHA256 hex `signature` of the
query string concatenated with the body, the signature itself left out (400 -1022).

Orders are validated in Binance's order: parameters (-1102 missing, -1100 illegal characters, -1106
sent when not required, -1115 / -1116 / -1117 bad enums), PRICE_FILTER, LOT_SIZE and NOTIONAL
(-1013 "Filter failure: ..."), duplicate client id (-2010 "Duplicate order sent."; like Binance, a
client id must be unique among *open* orders only), a LIMIT_MAKER that would take (-2010 "Order would
immediately match and take."), a stop that would trigger at once (-2010 "Stop price would trigger
immediately."), and the balance (-2010 "Account has insufficient balance for requested action.").

Matching: the book (`set_book`) is other traders' liquidity. Market orders and crossing limit orders
take it level by level (taker fills, one trade per level, the levels shrink); what a market or IOC
order cannot fill expires, a FOK order that cannot fill completely expires untouched. Resting limit
orders fill as maker: completely, at their own price, when a later `set_book` crosses them, or by any
amount the test scripts with `fill()` (partial fills). Stops trigger on `last` (a sell stop when last
<= stopPrice, a buy stop when last >= stopPrice). Commission is charged in the asset received. Funds of
resting orders are locked and released when the order ends. Binance's request-weight limits are not
modelled: inject a 429 instead.

Faults: everything `BinanceRestServer.inject` offers, counted per key, where a key is the path for GET
and "METHOD path" otherwise (e.g. "POST /api/v3/order"); such a fault answers *before* the request is
processed. `inject_late(key, nth, Late(...))` processes the request (the order is accepted and
recorded) and then holds the answer for `hold_s` seconds (past the client's timeout) and/or drops the
connection instead of answering.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from http.server import ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from tests.support.binance_rest import (ApiError, BinanceRestServer, Fault, Request, SpotMarket, _Handler,
                                        _int_param)

D = Decimal
ZERO = D(0)
E8 = D("0.00000001")
API_KEY_RE = re.compile(r"[A-Za-z0-9]{64}")
CLIENT_ID_RE = re.compile(r"[.A-Z:/a-z0-9_-]{1,36}")
OPEN = ("NEW", "PARTIALLY_FILLED")
STOPS = ("STOP_LOSS", "STOP_LOSS_LIMIT")
MODELLED_TYPES = ("MARKET", "LIMIT", "LIMIT_MAKER", "STOP_LOSS", "STOP_LOSS_LIMIT")
INSUFFICIENT = "Account has insufficient balance for requested action."
DAY_MS = 86_400_000


def new_api_key() -> str:
    """64 alphanumeric characters, the shape of a Binance HMAC API key (or secret)."""
    return secrets.token_hex(32)


def _s(x: Decimal) -> str:
    return f"{x:.8f}"


def _mandatory(name: str) -> ApiError:
    return ApiError(400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


def _dec(params: dict, name: str, required: bool = False) -> Decimal | None:
    if name not in params or params[name] == "":
        if required:
            raise _mandatory(name)
        return None
    try:
        value = D(params[name])
    except InvalidOperation:
        value = None
    if value is None or not value.is_finite() or value < 0:
        raise ApiError(400, -1100, f"Illegal characters found in parameter '{name}'; legal range is "
                                   "'^([0-9]{1,20})(\\.[0-9]{1,20})?$'.")
    return value


@dataclass(frozen=True)
class Late:
    """Process the request, then hold the answer `hold_s` seconds and send it, or drop the connection."""

    hold_s: float = 0.0
    drop: bool = False


@dataclass
class Filters:
    tick: Decimal
    min_price: Decimal
    max_price: Decimal
    step: Decimal
    min_qty: Decimal
    max_qty: Decimal
    min_notional: Decimal
    apply_min_to_market: bool
    max_orders: int

    @staticmethod
    def of(symbol_info: dict) -> "Filters":
        f = {x["filterType"]: x for x in symbol_info["filters"]}
        p, lot, n = f["PRICE_FILTER"], f["LOT_SIZE"], f["NOTIONAL"]
        return Filters(D(p["tickSize"]), D(p["minPrice"]), D(p["maxPrice"]), D(lot["stepSize"]), D(lot["minQty"]),
                       D(lot["maxQty"]), D(n["minNotional"]), bool(n["applyMinToMarket"]),
                       int(f["MAX_NUM_ORDERS"]["maxNumOrders"]))


@dataclass
class VenueOrder:
    order_id: int
    client_id: str
    symbol: str
    side: str                    # BUY / SELL
    type: str                    # one of MODELLED_TYPES
    tif: str | None
    qty: Decimal
    price: Decimal               # 0 for MARKET / STOP_LOSS, like Binance
    stop_price: Decimal
    time: int
    status: str = "NEW"
    executed: Decimal = ZERO
    cum_quote: Decimal = ZERO
    update_time: int = 0
    working: bool = True         # False while a stop waits for its trigger
    locked: Decimal = ZERO       # funds this order still holds (quote for a buy, base for a sell)

    @property
    def remaining(self) -> Decimal:
        return self.qty - self.executed

    @property
    def is_open(self) -> bool:
        return self.status in OPEN


@dataclass
class VenueTrade:
    id: int
    order_id: int
    symbol: str
    price: Decimal
    qty: Decimal
    quote_qty: Decimal
    commission: Decimal
    commission_asset: str
    time: int
    is_buyer: bool
    is_maker: bool


@dataclass
class Account:
    free: dict[str, Decimal] = field(default_factory=dict)
    locked: dict[str, Decimal] = field(default_factory=dict)

    def lock(self, asset: str, amount: Decimal) -> None:
        if self.free.get(asset, ZERO) < amount:
            raise ApiError(400, -2010, INSUFFICIENT)
        self.free[asset] = self.free.get(asset, ZERO) - amount
        self.locked[asset] = self.locked.get(asset, ZERO) + amount

    def add(self, asset: str, amount: Decimal) -> None:
        self.free[asset] = self.free.get(asset, ZERO) + amount


class BinanceTradingServer(BinanceRestServer):
    """The fake venue with one account. `keys` maps API key -> secret; `balances` the free funds per asset.

    Test helpers: `set_book`, `fill`, `orders` (by order id), `trades`, `order(client_id)`, `balance(asset)`.
    """

    def __init__(self, markets: list[SpotMarket], keys: dict[str, str], balances: dict[str, float],
                 maker_fee: str = "0.001", taker_fee: str = "0.001", now_ms=None):
        super().__init__(markets, now_ms)
        self.keys = dict(keys)
        self.account = Account({k: D(str(v)) for k, v in balances.items()})
        self.maker_fee, self.taker_fee = D(maker_fee), D(taker_fee)
        self.filters = {m.id: Filters.of(self._symbol_info(m)) for m in markets}
        self.books: dict[str, dict] = {m.id: {"bids": [], "asks": [], "last": None} for m in markets}
        self.orders: dict[int, VenueOrder] = {}
        self.trades: list[VenueTrade] = []
        self._late: dict[tuple[str, int], Late] = {}
        self._state = threading.RLock()   # the matching engine: one request at a time
        self.routes.update({
            "/api/v3/ticker/24hr": self.ticker_24hr,
            "/api/v3/ticker/price": self.ticker_price,
            "/api/v3/ticker/bookTicker": self.book_ticker,
            "/api/v3/depth": self.depth,
            "/api/v3/account": self.get_account,
            "POST /api/v3/order": self.new_order,
            "DELETE /api/v3/order": self.cancel_order,
            "/api/v3/order": self.query_order,
            "/api/v3/openOrders": self.open_orders,
            "/api/v3/myTrades": self.my_trades,
            "/sapi/v1/capital/config/getall": self.coins,
            "/sapi/v1/margin/allPairs": self.margin_pairs,
            "/sapi/v1/margin/isolated/allPairs": self.margin_pairs,
        })
        self.signed = {"/api/v3/account", "POST /api/v3/order", "DELETE /api/v3/order", "/api/v3/order",
                       "/api/v3/openOrders", "/api/v3/myTrades", "/sapi/v1/capital/config/getall",
                       "/sapi/v1/margin/allPairs", "/sapi/v1/margin/isolated/allPairs"}

    def start(self) -> "BinanceTradingServer":
        handler = type("Handler", (_TradingHandler,), {"venue": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                        name="fake-binance-trading", daemon=True)
        self._thread.start()
        return self

    # --- faults and records --------------------------------------------------------------------

    def inject_late(self, key: str, nth: int, late: Late) -> None:
        """Process the `nth` request to `key` normally, then answer it late or not at all."""
        with self._lock:
            self._late[(key, nth)] = late

    def clear_faults(self) -> None:
        """Forget every fault not yet used."""
        with self._lock:
            self._faults.clear()
            self._late.clear()

    def _arrive(self, key: str, params: dict) -> tuple[Fault | None, Late | None]:
        with self._lock:
            n = self._counts[key] = self._counts.get(key, 0) + 1
            fault = self._faults.pop((key, n), None)
            late = self._late.pop((key, n), None)
            self.requests.append(Request(key, params, time.monotonic(), fault))
            if key not in self.routes:
                self.unexpected.append(key)
            return fault, late

    # --- test helpers --------------------------------------------------------------------------

    def set_book(self, symbol: str, bids, asks, last=None) -> None:
        """Replace the book of `symbol` ([(price, qty), ...], best first); `last` defaults to the mid.
        Then stops whose trigger `last` reached fire, and resting limit orders the book crosses fill."""
        with self._state:
            book = self.books[symbol]
            book["bids"] = sorted(([D(str(p)), D(str(q))] for p, q in bids), key=lambda x: -x[0])
            book["asks"] = sorted(([D(str(p)), D(str(q))] for p, q in asks), key=lambda x: x[0])
            if last is not None:
                book["last"] = D(str(last))
            elif book["bids"] and book["asks"]:
                book["last"] = ((book["bids"][0][0] + book["asks"][0][0]) / 2).quantize(self.filters[symbol].tick)
            self._match_resting(symbol)

    def fill(self, ref: str | int, qty: float, price: float | None = None) -> VenueTrade:
        """A scripted maker fill of `qty` of the resting order `ref` (client id or order id) at `price`
        (default: its limit price)."""
        with self._state:
            o = self.orders[ref] if isinstance(ref, int) else self.order(ref)
            if o is None or not o.is_open or not o.working:
                raise ValueError(f"order {ref!r} is not resting at the venue")
            q = D(str(qty))
            if q <= 0 or q > o.remaining:
                raise ValueError(f"fill of {qty} outside (0, {o.remaining}]")
            return self._execute(o, o.price if price is None else D(str(price)), q, maker=True)

    def order(self, client_id: str) -> VenueOrder | None:
        """The latest order with this client id."""
        with self._state:
            found = [o for o in self.orders.values() if o.client_id == client_id]
            return found[-1] if found else None

    def balance(self, asset: str) -> tuple[float, float]:
        with self._state:
            return float(self.account.free.get(asset, ZERO)), float(self.account.locked.get(asset, ZERO))

    # --- auth ----------------------------------------------------------------------------------

    def authenticate(self, api_key: str | None, raw_query: str, raw_body: str, params: dict) -> None:
        if not api_key or not API_KEY_RE.fullmatch(api_key):
            raise ApiError(401, -2014, "API-key format invalid.")
        secret = self.keys.get(api_key)
        if secret is None:
            raise ApiError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        for name in ("timestamp", "signature"):
            if not params.get(name):
                raise _mandatory(name)
        recv_window = _int_param(params, "recvWindow", 5000)
        if recv_window > 60_000:
            raise ApiError(400, -1131, "recvWindow must be less than 60000")
        ts, now = _int_param(params, "timestamp"), self.now_ms()
        if ts >= now + 1000:
            raise ApiError(400, -1021, "Timestamp for this request was 1000ms ahead of the server's time.")
        if now - ts > recv_window:
            raise ApiError(400, -1021, "Timestamp for this request is outside of the recvWindow.")

        def unsigned(raw: str) -> str:
            return "&".join(p for p in raw.split("&") if p and not p.startswith("signature="))

        payload = unsigned(raw_query) + unsigned(raw_body)   # Binance's totalParams: query then body
        expected = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, params["signature"]):
            raise ApiError(400, -1022, "Signature for this request is not valid.")

    # --- public endpoints ----------------------------------------------------------------------

    def _book(self, params: dict) -> tuple[SpotMarket, dict]:
        m = self._market(params)
        return m, self.books[m.id]

    def ticker_24hr(self, params: dict):
        m, book = self._book(params)
        with self._state:
            bid = book["bids"][0] if book["bids"] else [ZERO, ZERO]
            ask = book["asks"][0] if book["asks"] else [ZERO, ZERO]
            last = book["last"] or ZERO
            trades = [t for t in self.trades if t.symbol == m.id and t.time >= self.now_ms() - DAY_MS]
            vol = sum((t.qty for t in trades), ZERO)
            qvol = sum((t.quote_qty for t in trades), ZERO)
            now = self.now_ms()
            return {"symbol": m.id, "priceChange": _s(ZERO), "priceChangePercent": "0.000",
                    "weightedAvgPrice": _s(qvol / vol if vol else last), "prevClosePrice": _s(last),
                    "lastPrice": _s(last), "lastQty": _s(trades[-1].qty if trades else ZERO),
                    "bidPrice": _s(bid[0]), "bidQty": _s(bid[1]), "askPrice": _s(ask[0]), "askQty": _s(ask[1]),
                    "openPrice": _s(last), "highPrice": _s(last), "lowPrice": _s(last), "volume": _s(vol),
                    "quoteVolume": _s(qvol), "openTime": now - DAY_MS, "closeTime": now,
                    "firstId": trades[0].id if trades else -1, "lastId": trades[-1].id if trades else -1,
                    "count": len(trades)}

    def ticker_price(self, params: dict):
        m, book = self._book(params)
        return {"symbol": m.id, "price": _s(book["last"] or ZERO)}

    def book_ticker(self, params: dict):
        m, book = self._book(params)
        with self._state:
            bid = book["bids"][0] if book["bids"] else [ZERO, ZERO]
            ask = book["asks"][0] if book["asks"] else [ZERO, ZERO]
            return {"symbol": m.id, "bidPrice": _s(bid[0]), "bidQty": _s(bid[1]), "askPrice": _s(ask[0]),
                    "askQty": _s(ask[1])}

    def depth(self, params: dict):
        m, book = self._book(params)
        limit = _int_param(params, "limit", 100)
        if not 1 <= limit <= 5000:
            raise ApiError(400, -1130, "Invalid data sent for a parameter.")
        with self._state:
            return {"lastUpdateId": len(self.trades) + 1,
                    "bids": [[_s(p), _s(q)] for p, q in book["bids"][:limit]],
                    "asks": [[_s(p), _s(q)] for p, q in book["asks"][:limit]]}

    # --- account -------------------------------------------------------------------------------

    def get_account(self, params: dict):
        omit_zero = params.get("omitZeroBalances", "false") == "true"
        with self._state:
            assets = sorted(set(self.account.free) | set(self.account.locked))
            balances = [{"asset": a, "free": _s(self.account.free.get(a, ZERO)),
                         "locked": _s(self.account.locked.get(a, ZERO))} for a in assets]
        if omit_zero:
            balances = [b for b in balances if D(b["free"]) or D(b["locked"])]
        rates = {"maker": _s(self.maker_fee), "taker": _s(self.taker_fee), "buyer": _s(ZERO), "seller": _s(ZERO)}
        return {"makerCommission": int(self.maker_fee * 10_000), "takerCommission": int(self.taker_fee * 10_000),
                "buyerCommission": 0, "sellerCommission": 0, "commissionRates": rates, "canTrade": True,
                "canWithdraw": True, "canDeposit": True, "brokered": False, "requireSelfTradePrevention": False,
                "preventSor": False, "updateTime": self.now_ms(), "accountType": "SPOT", "balances": balances,
                "permissions": ["SPOT"], "uid": 354937868}

    def coins(self, params: dict):
        assets = sorted({a for m in self.markets.values() for a in (m.base, m.quote)} | set(self.account.free))
        with self._state:
            return [{"coin": a, "name": a, "free": _s(self.account.free.get(a, ZERO)),
                     "locked": _s(self.account.locked.get(a, ZERO)), "freeze": "0", "withdrawing": "0",
                     "ipoing": "0", "ipoable": "0", "storage": "0", "isLegalMoney": False, "trading": True,
                     "depositAllEnable": True, "withdrawAllEnable": True,
                     "networkList": [{"network": a, "coin": a, "withdrawIntegerMultiple": "0.00000001",
                                      "isDefault": True, "depositEnable": True, "withdrawEnable": True,
                                      "withdrawFee": "0.0001", "withdrawMin": "0.001",
                                      "withdrawMax": "9999999999.99999999", "name": a}]}
                    for a in assets]

    def margin_pairs(self, params: dict):
        """Cross and isolated margin pairs: every market (margin trading itself is not modelled)."""
        return [{"symbol": m.id, "base": m.base, "quote": m.quote, "isMarginTrade": True, "isBuyAllowed": True,
                 "isSellAllowed": True} for m in self.markets.values()]

    # --- orders --------------------------------------------------------------------------------

    def new_order(self, params: dict):
        m = self._market(params)
        f = self.filters[m.id]
        side = params.get("side")
        if side is None:
            raise _mandatory("side")
        if side not in ("BUY", "SELL"):
            raise ApiError(400, -1117, "Invalid side.")
        type_ = params.get("type")
        if type_ is None:
            raise _mandatory("type")
        if type_ not in MODELLED_TYPES:
            self.unexpected.append(f"order type {type_}")
            raise ApiError(400, -1116, "Invalid orderType.")
        qty = _dec(params, "quantity", required=True)
        priced = type_ in ("LIMIT", "LIMIT_MAKER", "STOP_LOSS_LIMIT")
        price = _dec(params, "price", required=priced)
        if price is not None and not priced:
            raise ApiError(400, -1106, "Parameter 'price' sent when not required.")
        stop = _dec(params, "stopPrice", required=type_ in STOPS)
        if stop is not None and type_ not in STOPS:
            raise ApiError(400, -1106, "Parameter 'stopPrice' sent when not required.")
        tif = params.get("timeInForce")
        if type_ in ("LIMIT", "STOP_LOSS_LIMIT"):
            if tif is None:
                raise _mandatory("timeInForce")
            if tif not in ("GTC", "IOC", "FOK"):
                raise ApiError(400, -1115, "Invalid timeInForce.")
        elif tif is not None:
            raise ApiError(400, -1106, "Parameter 'timeInForce' sent when not required.")
        client_id = params.get("newClientOrderId") or "x-" + secrets.token_hex(8)
        if not CLIENT_ID_RE.fullmatch(client_id):
            raise ApiError(400, -1100, "Illegal characters found in parameter 'newClientOrderId'; legal range is "
                                       "'^[\\.A-Z\\:/a-z0-9_-]{1,36}$'.")
        resp_type = params.get("newOrderRespType", "FULL" if type_ in ("MARKET", "LIMIT") else "ACK")
        if resp_type not in ("ACK", "RESULT", "FULL"):
            raise ApiError(400, -1100, "Illegal characters found in parameter 'newOrderRespType'.")

        with self._state:
            book = self.books[m.id]
            for p in (price, stop):
                if p is not None and (p < f.min_price or p > f.max_price or (p - f.min_price) % f.tick):
                    raise ApiError(400, -1013, "Filter failure: PRICE_FILTER")
            if qty < f.min_qty or qty > f.max_qty or (qty - f.min_qty) % f.step:
                raise ApiError(400, -1013, "Filter failure: LOT_SIZE")
            ref_price = price if price is not None else (stop if stop is not None else book["last"])
            if (priced or f.apply_min_to_market) and ref_price is not None and qty * ref_price < f.min_notional:
                raise ApiError(400, -1013, "Filter failure: NOTIONAL")
            open_orders = [o for o in self.orders.values() if o.symbol == m.id and o.is_open]
            if any(o.client_id == client_id for o in open_orders):
                raise ApiError(400, -2010, "Duplicate order sent.")
            if len(open_orders) >= f.max_orders:
                raise ApiError(400, -1013, "Filter failure: MAX_NUM_ORDERS")
            if type_ == "LIMIT_MAKER" and self._crosses(m.id, side, price):
                raise ApiError(400, -2010, "Order would immediately match and take.")
            if type_ in STOPS and self._triggered(book["last"], side, stop):
                raise ApiError(400, -2010, "Stop price would trigger immediately.")
            now = self.now_ms()
            o = VenueOrder(max(self.orders, default=0) + 1, client_id, m.id, side, type_, tif, qty,
                           price if price is not None else ZERO, stop if stop is not None else ZERO, now,
                           update_time=now, working=type_ not in STOPS)
            self._reserve(m, o, book)
            self.orders[o.order_id] = o
            first_trade = len(self.trades)
            if o.working:
                self._work(m.id, o)
            return self._order_json(o, resp_type, self.trades[first_trade:])

    def _reserve(self, m: SpotMarket, o: VenueOrder, book: dict) -> None:
        """Lock what a resting order may spend; check what a market order will spend."""
        if o.side == "SELL":
            o.locked = o.qty
            self.account.lock(m.base, o.qty)
        elif o.type == "MARKET":
            if self.account.free.get(m.quote, ZERO) < self._cost_to_take(m.id, o.side, o.qty):
                raise ApiError(400, -2010, INSUFFICIENT)
        else:
            o.locked = (o.qty * (o.price or o.stop_price)).quantize(E8)
            self.account.lock(m.quote, o.locked)

    def cancel_order(self, params: dict):
        m = self._market(params)
        with self._state:
            o = self._find(m.id, params)
            if o is None or not o.is_open:
                raise ApiError(400, -2011, "Unknown order sent.")
            self._finish(o, "CANCELED")
            out = self._order_json(o, "RESULT", [])
            out["origClientOrderId"] = o.client_id
            out["clientOrderId"] = params.get("newClientOrderId") or "x-" + secrets.token_hex(8)
            return out

    def query_order(self, params: dict):
        m = self._market(params)
        with self._state:
            o = self._find(m.id, params)
            if o is None:
                raise ApiError(400, -2013, "Order does not exist.")
            return self._order_json(o, "QUERY", [])

    def open_orders(self, params: dict):
        symbol = self._market(params).id if "symbol" in params else None
        with self._state:
            return [self._order_json(o, "QUERY", []) for o in self.orders.values()
                    if o.is_open and symbol in (None, o.symbol)]

    def my_trades(self, params: dict):
        m = self._market(params)
        limit = _int_param(params, "limit", 500)
        if not 1 <= limit <= 1000:
            raise ApiError(400, -1130, "Invalid data sent for a parameter.")
        order_id, from_id = _int_param(params, "orderId"), _int_param(params, "fromId")
        start, end = _int_param(params, "startTime"), _int_param(params, "endTime")
        if start is not None and end is not None and end - start > DAY_MS:
            raise ApiError(400, -1127, "More than 24 hours between startTime and endTime.")
        with self._state:
            rows = [t for t in self.trades if t.symbol == m.id and order_id in (None, t.order_id)]
        if from_id is not None:
            rows = [t for t in rows if t.id >= from_id][:limit]
        elif start is not None or end is not None:
            # One bound only: Binance answers the 24 h window that starts (or ends) there.
            start = end - DAY_MS if start is None else start
            end = start + DAY_MS if end is None else end
            rows = [t for t in rows if start <= t.time <= end][:limit]
        else:
            rows = rows[-limit:]   # the most recent trades
        return [{"symbol": t.symbol, "id": t.id, "orderId": t.order_id, "orderListId": -1, "price": _s(t.price),
                 "qty": _s(t.qty), "quoteQty": _s(t.quote_qty), "commission": _s(t.commission),
                 "commissionAsset": t.commission_asset, "time": t.time, "isBuyer": t.is_buyer,
                 "isMaker": t.is_maker, "isBestMatch": True} for t in rows]

    def _find(self, symbol: str, params: dict) -> VenueOrder | None:
        order_id = _int_param(params, "orderId")
        client_id = params.get("origClientOrderId")
        if order_id is None and not client_id:
            raise ApiError(400, -1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!")
        found = [o for o in self.orders.values() if o.symbol == symbol
                 and (order_id is None or o.order_id == order_id) and (not client_id or o.client_id == client_id)]
        return found[-1] if found else None

    def _order_json(self, o: VenueOrder, kind: str, fills: list[VenueTrade]) -> dict:
        out = {"symbol": o.symbol, "orderId": o.order_id, "orderListId": -1, "clientOrderId": o.client_id}
        if kind in ("ACK", "RESULT", "FULL"):
            out["transactTime"] = o.update_time
        if kind == "ACK":
            return out
        out.update({"price": _s(o.price), "origQty": _s(o.qty), "executedQty": _s(o.executed),
                    "origQuoteOrderQty": _s(ZERO), "cummulativeQuoteQty": _s(o.cum_quote), "status": o.status,
                    "timeInForce": o.tif or "GTC", "type": o.type, "side": o.side})
        if o.type in STOPS:
            out["stopPrice"] = _s(o.stop_price)
        if kind == "QUERY":
            out.update({"icebergQty": _s(ZERO), "time": o.time, "updateTime": o.update_time,
                        "isWorking": o.working})
        out.update({"workingTime": o.time if o.working else -1, "selfTradePreventionMode": "EXPIRE_MAKER"})
        if kind == "FULL":
            out["fills"] = [{"price": _s(t.price), "qty": _s(t.qty), "commission": _s(t.commission),
                             "commissionAsset": t.commission_asset, "tradeId": t.id} for t in fills]
        return out

    # --- matching ------------------------------------------------------------------------------

    @staticmethod
    def _triggered(last: Decimal | None, side: str, stop: Decimal) -> bool:
        return last is not None and (last <= stop if side == "SELL" else last >= stop)

    def _crosses(self, symbol: str, side: str, price: Decimal) -> bool:
        book = self.books[symbol]
        if side == "BUY":
            return bool(book["asks"]) and book["asks"][0][0] <= price
        return bool(book["bids"]) and book["bids"][0][0] >= price

    def _levels(self, symbol: str, side: str, limit: Decimal | None):
        """The opposite side's levels a `side` taker may trade with, best first."""
        levels = self.books[symbol]["asks" if side == "BUY" else "bids"]
        for level in levels:
            if limit is not None and (level[0] > limit if side == "BUY" else level[0] < limit):
                break
            yield level

    def _available(self, symbol: str, side: str, limit: Decimal | None) -> Decimal:
        return sum((q for _, q in self._levels(symbol, side, limit)), ZERO)

    def _cost_to_take(self, symbol: str, side: str, qty: Decimal) -> Decimal:
        cost, left = ZERO, qty
        for p, q in self._levels(symbol, side, None):
            take = min(q, left)
            cost, left = cost + p * take, left - take
            if not left:
                break
        return cost

    def _work(self, symbol: str, o: VenueOrder) -> None:
        """A working order meets the book: take what it may, then rest, expire or finish."""
        limit = None if o.type in ("MARKET", "STOP_LOSS") else o.price
        if o.tif == "FOK" and self._available(symbol, o.side, limit) < o.remaining:
            self._finish(o, "EXPIRED")
            return
        if o.type != "LIMIT_MAKER":
            levels = self.books[symbol]["asks" if o.side == "BUY" else "bids"]
            for level in list(self._levels(symbol, o.side, limit)):
                take = min(level[1], o.remaining)
                level[1] -= take
                if not level[1]:
                    levels.remove(level)
                self._execute(o, level[0], take, maker=False)
                if not o.remaining:
                    return
        if limit is None or o.tif in ("IOC", "FOK"):
            self._finish(o, "EXPIRED")   # what a market or IOC order could not fill

    def _match_resting(self, symbol: str) -> None:
        book = self.books[symbol]
        for o in sorted(self.orders.values(), key=lambda x: x.order_id):
            if o.symbol != symbol or not o.is_open:
                continue
            if not o.working:
                if self._triggered(book["last"], o.side, o.stop_price):
                    o.working, o.update_time = True, self.now_ms()
                    self._work(symbol, o)
            elif o.price and self._crosses(symbol, o.side, o.price):
                self._execute(o, o.price, o.remaining, maker=True)

    def _execute(self, o: VenueOrder, price: Decimal, qty: Decimal, maker: bool) -> VenueTrade:
        m = self.markets[o.symbol]
        quote = (price * qty).quantize(E8)
        rate = self.maker_fee if maker else self.taker_fee
        buy = o.side == "BUY"
        commission = ((qty if buy else quote) * rate).quantize(E8, ROUND_DOWN)
        pay_asset, pay = (m.quote, quote) if buy else (m.base, qty)
        from_lock = min(o.locked, pay)
        o.locked -= from_lock
        self.account.locked[pay_asset] = self.account.locked.get(pay_asset, ZERO) - from_lock
        self.account.add(pay_asset, from_lock - pay)
        if buy:
            self.account.add(m.base, qty - commission)
        else:
            self.account.add(m.quote, quote - commission)
        now = self.now_ms()
        o.executed += qty
        o.cum_quote += quote
        o.update_time = now
        t = VenueTrade(len(self.trades) + 1, o.order_id, o.symbol, price, qty, quote, commission,
                       m.base if buy else m.quote, now, buy, maker)
        self.trades.append(t)
        self.books[o.symbol]["last"] = price
        if o.remaining:
            o.status = "PARTIALLY_FILLED"
        else:
            self._finish(o, "FILLED")
        return t

    def _finish(self, o: VenueOrder, status: str) -> None:
        m = self.markets[o.symbol]
        asset = m.quote if o.side == "BUY" else m.base
        if o.locked:
            self.account.locked[asset] -= o.locked
            self.account.add(asset, o.locked)
            o.locked = ZERO
        o.status, o.update_time = status, self.now_ms()


class _TradingHandler(_Handler):
    venue: BinanceTradingServer

    def do_GET(self):
        self._serve("GET")

    def do_POST(self):
        self._serve("POST")

    def do_DELETE(self):
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        params = dict(parse_qsl(body, keep_blank_values=True))
        params.update(parse_qsl(url.query, keep_blank_values=True))   # Binance: the query string wins
        key = url.path if method == "GET" else f"{method} {url.path}"
        fault, late = self.venue._arrive(key, params)
        if fault is not None:
            if fault.status == 0:
                self._drop()
            else:
                headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                ctype = "application/json" if (fault.body or "").startswith("{") else "text/html"
                self._send(fault.status, fault.body or "", ctype, headers)
            return
        route = self.venue.routes.get(key)
        if route is None:
            status, text = 404, json.dumps({"code": -1, "msg": f"fake binance: unknown path {key}"})
        else:
            try:
                if key in self.venue.signed:
                    self.venue.authenticate(self.headers.get("X-MBX-APIKEY"), url.query, body, params)
                status, text = 200, json.dumps(route(params))
            except ApiError as e:
                status, text = e.status, json.dumps({"code": e.code, "msg": e.msg})
        if late is not None:
            time.sleep(late.hold_s)
            if late.drop:
                self._drop()
                return
        try:
            self._send(status, text, headers={"x-mbx-used-weight": "1", "x-mbx-used-weight-1m": "1"})
        except OSError:
            pass   # the client gave up waiting (a Late answer)

    def _drop(self) -> None:
        """Close the socket without a status line: the client sees the connection dropped."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
