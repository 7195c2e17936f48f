"""A simulated spot venue: the async Exchange interface over the order kernel's matcher, fed with
replayed trades or bars.

    venue = SimulatedVenue("BTC/USDT", {"USDT": 10_000.0}, fee_maker_bps=2, fee_taker_bps=7.5,
                           slippage_bps=2.5, latency_ms=50, participation=0.1)
    await venue.connect()
    state = await venue.create_order(order("BTC/USDT", +1, "market", 0.01))
    fills = venue.on_bar(ts, o, h, l, c, v)        # or on_trade(ts, price, amount, side)

Simple orders only, natively: market, limit, stop, stop-limit; GTC, IOC, FOK, GTD; post-only.
Linked orders come from the OrderManager's client-side emulation, exactly as on a ccxt venue.

Matching (kernels/orders_nb.py, `_segment` has the rules): an order becomes active `latency_ms`
after its submission and only on a later event than the one the venue last saw (no look-ahead: an
order placed while bar t is processed can fill from bar t+1 on). Market orders, and limit orders
that cross on arrival, take liquidity at the next price moved by `slippage_bps` against them and pay
the taker fee; resting limit orders fill at their own price as maker when the price trades through
them; stops trigger when the price reaches them. Every event offers `participation` x its traded
volume to our orders (partial fills), shared in slot order.

Money is exact: amounts are whole lots (`amount_step`), prices whole ticks (`price_tick`), and the
quote balance is kept in whole units of lot * tick (1e-10 USDT for a 1e-8 BTC step and a 0.01 USDT
tick), so base and quote balances are integers that the fills change by exactly their notional and
fee; fees are in quote, rounded up to a unit. `balances_exact()` gives them as Decimals. Requests are
rounded like a ccxt venue does: amounts down to the step, prices to the nearest tick.

Balances: `free` is `total` less what the open orders lock: a buy locks its remaining amount at its
limit price (a market or stop buy at the last / stop price moved by the slippage) plus the taker fee,
a sell its remaining amount. A new order the free balance cannot cover is refused
(InsufficientFunds); at fill time an order takes at most what the total balance settles and the rest
is cancelled ("insufficient_funds"). Spot: no short sales unless `allow_short`.

Deterministic: no randomness; venue and trade ids count up.
"""
from __future__ import annotations

import math
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal

import numpy as np

from bot4jax.execution.base import (Balance, Fill, InsufficientFunds, OrderNotFound, OrderRejected, OrderRequest,
                                    OrderState)
from bot4jax.execution.orders import validate_request
from bot4jax.kernels import orders_nb as nb

_TYPE = {"market": nb.T_MARKET, "limit": nb.T_LIMIT, "stop": nb.T_STOP, "stop_limit": nb.T_STOP_LIMIT}
_TIF = {"GTC": nb.TIF_GTC, "IOC": nb.TIF_IOC, "FOK": nb.TIF_FOK, "GTD": nb.TIF_GTD}
_STATUS = {nb.S_PENDING: "open", nb.S_OPEN: "open", nb.S_PARTIAL: "partially_filled", nb.S_FILLED: "filled",
           nb.S_CANCELED: "canceled", nb.S_REJECTED: "rejected", nb.S_EXPIRED: "expired"}
_ENDS = (nb.EV_FILLED, nb.EV_CANCELED, nb.EV_REJECTED, nb.EV_EXPIRED)


def _dec(x: float, name: str) -> Decimal:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not 0 < x < math.inf:
        raise ValueError(f"SimulatedVenue: '{name}' must be a finite number > 0; got {x!r}")
    return Decimal(repr(float(x)))


class _Order:
    """What the venue remembers of one order besides the kernel's slot."""
    __slots__ = ("request", "slot", "venue_id", "lots", "filled", "notional_units", "ts", "final")

    def __init__(self, request, slot, venue_id, lots, ts):
        self.request, self.slot, self.venue_id, self.lots, self.ts = request, slot, venue_id, lots, ts
        self.filled, self.notional_units, self.final = 0, 0, None


class SimulatedVenue:
    """The simulated exchange; see the module docstring. Not thread-safe (one event loop)."""

    def __init__(self, symbol: str, balances: dict[str, float], *, fee_maker_bps: float = 2.0,
                 fee_taker_bps: float = 7.5, slippage_bps: float = 2.5, latency_ms: int = 0,
                 participation: float = 1.0, price_tick: float = 0.01, amount_step: float = 1e-8,
                 min_notional: float = 0.0, allow_short: bool = False, capacity: int = 4096,
                 name: str = "sim"):
        if symbol.count("/") != 1:
            raise ValueError(f"SimulatedVenue: symbol must look like 'BASE/QUOTE'; got {symbol!r}")
        for key, value in (("fee_maker_bps", fee_maker_bps), ("fee_taker_bps", fee_taker_bps),
                           ("slippage_bps", slippage_bps), ("min_notional", min_notional)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
                raise ValueError(f"SimulatedVenue: '{key}' must be a finite number >= 0; got {value!r}")
        if isinstance(latency_ms, bool) or not isinstance(latency_ms, int) or latency_ms < 0:
            raise ValueError(f"SimulatedVenue: 'latency_ms' must be an integer >= 0; got {latency_ms!r}")
        if not (isinstance(participation, (int, float)) and 0 < participation <= math.inf):
            raise ValueError(f"SimulatedVenue: 'participation' must be > 0; got {participation!r}")
        self.name, self.symbol = name, symbol
        self.base, self.quote = symbol.split("/")
        self.latency_ms, self.min_notional, self.allow_short = latency_ms, min_notional, allow_short
        self._tick, self._lot = _dec(price_tick, "price_tick"), _dec(amount_step, "amount_step")
        self._unit = self._tick * self._lot
        self._cfg = nb.venue_params(float(price_tick), float(amount_step), slippage_bps, fee_maker_bps,
                                    fee_taker_bps, participation, allow_short)
        self._rec = self._cfg[0]
        self._book = nb.init_book(capacity)
        self._acct = np.zeros(2, np.int64)
        self._acct[nb.A_QUOTE] = self._units(balances.get(self.quote, 0.0), self._unit, self.quote)
        self._acct[nb.A_BASE] = self._units(balances.get(self.base, 0.0), self._lot, self.base)
        self._other = {c: float(v) for c, v in balances.items() if c not in (self.base, self.quote)}
        self._orders: dict[str, _Order] = {}
        self._by_slot: dict[int, _Order] = {}
        self._fills: list[Fill] = []
        self._next_venue_id = 1
        self.now: int | None = None          # the ts of the last event fed
        self.last_price: float | None = None
        self.connected = False

    @staticmethod
    def _units(amount: float, unit: Decimal, currency: str) -> int:
        value = Decimal(repr(float(amount))) / unit
        if value != value.to_integral_value():
            raise ValueError(f"SimulatedVenue: balance {amount!r} {currency} is not a whole number of "
                             f"{unit} units")
        return int(value)

    # -- the Exchange interface

    async def connect(self) -> None:
        self.connected = True

    async def close(self) -> None:
        self.connected = False

    def _reject(self, request: OrderRequest, message: str, reason: str):
        raise OrderRejected(self.name, f"order {request.client_id}: {message}", reason)

    def _lock_ticks(self, side: int, otype: int, price: float, stop: float) -> int:
        """The price (ticks) a buy's remaining amount locks quote at."""
        if otype in (nb.T_LIMIT, nb.T_STOP_LIMIT):
            return round(price / self._rec["tick"])
        ref = stop if otype == nb.T_STOP else (self.last_price if self.last_price is not None else math.nan)
        if not ref > 0:
            return 0
        return math.ceil(ref * (1 + self._rec["slippage"]) / self._rec["tick"] - 1e-9)

    def _locked(self) -> tuple[int, int]:
        """(quote units, base lots) locked by the working orders."""
        quote = base = 0
        fee = self._rec["fee_taker"]
        o = self._book.orders
        for rec in self._by_slot.values():
            row = o[rec.slot]
            if not nb.S_PENDING <= row["status"] <= nb.S_UNKNOWN:
                continue
            rem = int(row["amount"] - row["filled"])
            if row["side"] > 0:
                notional = rem * self._lock_ticks(1, int(row["type"]), float(row["price"]), float(row["stop"]))
                quote += notional + math.ceil(notional * fee)
            else:
                base += rem
        return quote, base

    async def create_order(self, request: OrderRequest) -> OrderState:
        """Accept or refuse one order (OrderRejected with a reason: bad_symbol, duplicate_client_id,
        invalid_order, min_amount, min_notional, post_only_would_take, insufficient_funds)."""
        if request.symbol != self.symbol:
            self._reject(request, f"symbol {request.symbol!r} is not traded here ({self.symbol})", "bad_symbol")
        if request.client_id in self._orders:
            self._reject(request, "duplicate client order id", "duplicate_client_id")
        try:
            validate_request(request)
        except ValueError as exc:
            self._reject(request, str(exc), "invalid_order")
        lots = int((Decimal(repr(request.amount)) / self._lot).to_integral_value(ROUND_DOWN))
        if lots <= 0:
            self._reject(request, f"amount {request.amount} is below the step {self._lot}", "min_amount")
        price = self._round_price(request.price)
        stop = self._round_price(request.stop_price)
        otype, tif = _TYPE[request.type], _TIF[request.tif]
        ref = price if otype in (nb.T_LIMIT, nb.T_STOP_LIMIT) else (stop if otype == nb.T_STOP else self.last_price)
        if ref is not None and float(lots * self._lot) * ref < self.min_notional:
            self._reject(request, f"notional below {self.min_notional} {self.quote}", "min_notional")
        if request.post_only and self.last_price is not None and \
                (price >= self.last_price if request.side > 0 else price <= self.last_price):
            self._reject(request, f"post-only limit {price} would take at {self.last_price}", "post_only_would_take")
        locked_quote, locked_base = self._locked()
        if request.side > 0:
            ticks = self._lock_ticks(1, otype, price, stop)
            if ticks == 0:
                self._reject(request, "no trade seen yet to value a market buy", "no_market_price")
            need = lots * ticks + math.ceil(lots * ticks * self._rec["fee_taker"])
            if need > self._acct[nb.A_QUOTE] - locked_quote:
                raise InsufficientFunds(self.name, f"order {request.client_id}: buying {request.amount} "
                                                   f"{self.base} needs more {self.quote} than is free")
        elif not self.allow_short and lots > self._acct[nb.A_BASE] - locked_base:
            raise InsufficientFunds(self.name, f"order {request.client_id}: selling {request.amount} {self.base} "
                                               f"exceeds the free balance")
        now = self.now if self.now is not None else 0
        expire = request.expire_ts if request.tif == "GTD" else nb.NO_EXPIRY
        slot = nb.submit_nb(self._book, request.side, otype, tif, nb.F_POST_ONLY if request.post_only else 0, lots,
                            price if price is not None else math.nan, stop if stop is not None else math.nan,
                            expire, now, now + self.latency_ms, False)
        if slot == nb.RC_NO_SLOT:
            self._reject(request, "too many open orders", "too_many_orders")
        if slot < 0:
            self._reject(request, "invalid order parameters", "invalid_order")
        rec = _Order(request, slot, str(self._next_venue_id), lots, now)
        self._next_venue_id += 1
        self._orders[request.client_id] = rec
        self._by_slot[slot] = rec
        return self._state(rec)

    def _round_price(self, price: float | None) -> float | None:
        if price is None:
            return None
        ticks = (Decimal(repr(price)) / self._tick).to_integral_value(ROUND_HALF_EVEN)
        return float(ticks * self._tick) if ticks > 0 else float(self._tick)

    async def cancel_order(self, client_id: str, symbol: str) -> OrderState:
        rec = self._orders.get(client_id)
        if rec is None or rec.final is not None or symbol != self.symbol:
            raise OrderNotFound(self.name, f"cancel: no open order with client id {client_id!r} on {symbol}")
        nb.cancel_nb(self._book, rec.slot, self.now if self.now is not None else 0)
        self._absorb([])
        return rec.final if rec.final is not None else self._state(rec)

    async def fetch_order(self, client_id: str, symbol: str) -> OrderState | None:
        rec = self._orders.get(client_id)
        if rec is None or symbol != self.symbol:
            return None
        return rec.final if rec.final is not None else self._state(rec)

    async def fetch_open_orders(self, symbol: str) -> list[OrderState]:
        if symbol != self.symbol:
            return []
        return [self._state(rec) for rec in sorted(self._by_slot.values(), key=lambda r: int(r.venue_id))]

    async def fetch_fills(self, symbol: str, since: int | None = None) -> list[Fill]:
        if symbol != self.symbol:
            return []
        return [f for f in self._fills if since is None or f.ts >= since]

    async def fetch_balance(self) -> dict[str, Balance]:
        locked_quote, locked_base = self._locked()
        quote_total, base_total = int(self._acct[nb.A_QUOTE]), int(self._acct[nb.A_BASE])
        out = {c: Balance(c, v, v) for c, v in self._other.items()}
        out[self.quote] = Balance(self.quote, float((quote_total - locked_quote) * self._unit),
                                  float(quote_total * self._unit))
        out[self.base] = Balance(self.base, float((base_total - locked_base) * self._lot),
                                 float(base_total * self._lot))
        return out

    def balances_exact(self) -> dict[str, Decimal]:
        """Base and quote totals as exact Decimals (what the fills add up to)."""
        return {self.base: int(self._acct[nb.A_BASE]) * self._lot,
                self.quote: int(self._acct[nb.A_QUOTE]) * self._unit}

    # -- feeding market data

    def _check_ts(self, ts: int, what: str) -> None:
        if self.now is not None and ts < self.now:
            raise ValueError(f"SimulatedVenue.{what}: ts {ts} is before the venue clock {self.now} "
                             f"(events must come in time order)")

    def on_trade(self, ts: int, price: float, amount: float, side: int = 0) -> list[Fill]:
        """One public trade (price, amount in base, aggressor side +1/-1, ignored by the matcher: a
        resting order fills when the price trades through it either way). Returns our new fills."""
        self._check_ts(ts, "on_trade")
        if not (0 < price < math.inf) or not (amount >= 0):
            raise ValueError(f"SimulatedVenue.on_trade: price must be > 0 and amount >= 0; got {price!r}, {amount!r}")
        nb.match_trade_nb(self._book, self._rec, self._acct, int(ts), float(price), float(amount))
        self.now, self.last_price = int(ts), float(price)
        return self._absorb([])

    def on_bar(self, ts: int, o: float, h: float, l: float, c: float, v: float) -> list[Fill]:
        """One OHLCV bar opening at ts (path: open, then the low first on a rising bar, the high first
        on a falling one, then the close). Returns our new fills."""
        self._check_ts(ts, "on_bar")
        if not (0 < l <= min(o, c) and max(o, c) <= h < math.inf) or not v >= 0:
            raise ValueError(f"SimulatedVenue.on_bar: inconsistent bar at ts {ts}: o={o} h={h} l={l} c={c} v={v}")
        nb.match_bar_nb(self._book, self._rec, self._acct, int(ts), float(o), float(h), float(l), float(c), float(v))
        self.now, self.last_price = int(ts), float(c)
        return self._absorb([])

    # -- from kernel events to fills and states

    def _absorb(self, out: list[Fill]) -> list[Fill]:
        book = self._book
        ended = []
        for e in book.events[:book.meta[nb.M_NEVENTS]]:
            kind, slot = int(e["kind"]), int(e["slot"])
            rec = self._by_slot.get(slot)
            if rec is None:
                continue
            rec.ts = int(e["ts"])
            if kind == nb.EV_FILL:
                lots, ticks = int(e["lots"]), int(e["ticks"])
                rec.filled += lots
                rec.notional_units += lots * ticks
                fill = Fill(trade_id=f"{self.name}-{len(self._fills) + 1}", client_id=rec.request.client_id,
                            venue_id=rec.venue_id, symbol=self.symbol, side=rec.request.side,
                            amount=float(lots * self._lot), price=float(ticks * self._tick),
                            fee=float(int(e["fee"]) * self._unit), fee_currency=self.quote, ts=int(e["ts"]),
                            liquidity="maker" if e["maker"] else "taker")
                self._fills.append(fill)
                out.append(fill)
            elif kind in _ENDS:
                ended.append(rec)
        for rec in ended:   # final: keep the answer, free the slot
            rec.final = self._state(rec)
            del self._by_slot[rec.slot]
            nb.release_nb(book, rec.slot)
        return out

    def _state(self, rec: _Order) -> OrderState:
        row = self._book.orders[rec.slot]
        status = _STATUS[int(row["status"])]
        if status == "open" and rec.filled > 0:
            status = "partially_filled"
        req = rec.request
        reason = nb.REASON_NAMES[int(row["reason"])] or None
        avg = float(Decimal(rec.notional_units) * self._unit / (rec.filled * self._lot)) if rec.filled else None
        return OrderState(client_id=req.client_id, venue_id=rec.venue_id, symbol=self.symbol, side=req.side,
                          type=req.type, amount=float(int(row["amount"]) * self._lot),
                          price=float(row["price"]) if req.type in ("limit", "stop_limit") else None,
                          status=status, filled=float(rec.filled * self._lot), avg_price=avg, ts=rec.ts,
                          reason=reason)
