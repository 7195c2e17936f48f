"""A real venue through ccxt's async API, behind the `Exchange` interface of `bot4jax.execution.base`.

Markets are loaded once (`connect`). Before an order is sent its amount and prices are rounded to the
venue's precision (`amount_to_precision` truncates, `price_to_precision` rounds) and checked against
the venue's limits (amount, price, cost = amount * price; a market order is priced at the last trade,
from a ticker at most `price_max_age_ms` old); a request outside them raises OrderRejected with a
reason and is never sent.

No order is ever created twice. The request's `client_id` goes to the venue as its client order id
(ccxt's `clientOrderId` param) and every retry resends the same id:
- RateLimited (HTTP 429 / 418): the venue did not process the request; wait (its Retry-After when it
  sends one, else capped exponential back-off) and resend.
- A timeout, a dropped connection or a 5xx after the request left: the order may exist. Before
  anything else the order is looked up by client id: found -> that is the answer; the venue says it
  does not exist -> resending is safe; the lookup fails too -> ExchangeUnavailable, and the caller
  marks the order "unknown" until `fetch_order` resolves it.
- The venue answers "duplicate order" (the id is already live there): the existing order is returned.

ccxt errors become bot4jax errors: InsufficientFunds -> InsufficientFunds; InvalidOrder / BadRequest on
an order -> OrderRejected with a reason; OrderNotFound -> OrderNotFound; RateLimitExceeded /
DDoSProtection -> RateLimited (retried first); NetworkError / RequestTimeout -> ExchangeUnavailable
(reads are retried first); AuthenticationError -> ExchangeError naming the environment variables to
check. Messages never contain the key or the secret. ccxt's own throttle (`enableRateLimit`) spaces
requests by the venue's `rateLimit` times each endpoint's cost.
"""
from __future__ import annotations

import asyncio
import logging
import math
import time
from contextvars import ContextVar
from dataclasses import dataclass

import numpy as np

from bot4jax.data.download import RetryPolicy, build_exchange, retry_after_s
from bot4jax.data.types import Book
from bot4jax.errors import ConfigError
from bot4jax.execution.base import (ORDER_TYPES, TIME_IN_FORCE, Balance, ExchangeError, ExchangeUnavailable, Fill,
                                    InsufficientFunds, OrderNotFound, OrderRejected, OrderRequest, OrderState,
                                    RateLimited)
from bot4jax.execution.credentials import Credentials, env_names

log = logging.getLogger("bot4jax.execution.ccxt_venue")

# The headers of the last HTTP answer inside the current task: ccxt raises a 429 without its headers,
# and `exchange.last_response_headers` is shared by every concurrent request of the instance.
_HEADERS: ContextVar[dict | None] = ContextVar("bot4jax_ccxt_headers", default=None)

# ccxt's unified order status -> ours ("open" with a fill becomes "partially_filled").
_STATUS = {"open": "open", "closed": "filled", "canceled": "canceled", "expired": "expired",
           "rejected": "rejected", "canceling": "open"}

# Phrases of venue messages -> OrderRejected.reason (Binance's wording; other venues fall back to the
# ccxt error class).
_REASONS = (("Filter failure: NOTIONAL", "min_notional"), ("Filter failure: MIN_NOTIONAL", "min_notional"),
            ("LOT_SIZE", "lot_size"), ("PRICE_FILTER", "price_filter"), ("MAX_NUM_ORDERS", "max_open_orders"),
            ("immediately match and take", "post_only_would_take"),
            ("would trigger immediately", "stop_would_trigger"), ("Duplicate order", "duplicate_client_id"))

# ccxt's market['limits'] keys -> the word in OrderRejected.reason (min_amount, max_price, min_notional, ...)
_LIMIT_NAMES = {"amount": "amount", "price": "price", "cost": "notional"}


@dataclass(frozen=True)
class Ticker:
    symbol: str
    ts: int                 # ms UTC
    bid: float | None
    ask: float | None
    last: float | None


def make_async_exchange(exchange_id: str, *, api_url: str | None = None, credentials: Credentials | None = None,
                        timeout_ms: int | None = None, rate_limit_ms: float | None = None,
                        market_types: tuple[str, ...] | None = None):
    """An async ccxt exchange `ccxt.async_support.<exchange_id>` with rate limiting on.

    Like `bot4jax.data.download.make_exchange` (api_url rewrites the hosts of `urls['api']`;
    market_types restricts market loading where ccxt lets us choose), plus credentials for signed calls.
    """
    import ccxt.async_support as accxt

    exchange = build_exchange(accxt, exchange_id, api_url=api_url, rate_limit_ms=rate_limit_ms,
                              timeout_ms=timeout_ms, market_types=market_types,
                              config=credentials.ccxt_config() if credentials is not None else None)
    original = exchange.on_rest_response

    def on_rest_response(code, reason, url, method, headers, body, *rest):
        box = _HEADERS.get()
        if box is not None:
            box.clear()
            box.update(headers or {})
        return original(code, reason, url, method, headers, body, *rest)

    exchange.on_rest_response = on_rest_response
    return exchange


def _text(e: BaseException, n: int = 300) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= n else text[:n] + "..."


class CcxtVenue:
    """One ccxt venue, trading `symbol` (unified, e.g. "BTC/USDT") and any other symbol it lists.

    credentials: from `bot4jax.execution.credentials.load_credentials`; None allows public calls only.
    timeout_ms: per HTTP request. max_retries: resends after the first try (rate limits, lost answers);
    the k-th waits min(max_backoff_s, backoff_s * 2**(k-1)) s unless the venue says Retry-After (up to
    max_retry_after_s; a longer ban raises RateLimited at once). rate_limit_ms overrides the venue's
    `rateLimit` (ms per request of cost 1).
    """

    def __init__(self, exchange_id: str, symbol: str, *, api_url: str | None = None,
                 credentials: Credentials | None = None, timeout_ms: int = 10_000, max_retries: int = 5,
                 backoff_s: float = 0.5, max_backoff_s: float = 30.0, max_retry_after_s: float = 60.0,
                 rate_limit_ms: float | None = None, market_type: str = "spot", price_max_age_ms: int = 10_000):
        if credentials is not None and credentials.exchange_id != exchange_id:
            raise ConfigError(f"credentials for {credentials.exchange_id} given to the {exchange_id} venue")
        self.name, self.symbol, self.api_url = exchange_id, symbol, api_url
        self.credentials, self.timeout_ms, self.rate_limit_ms = credentials, timeout_ms, rate_limit_ms
        self.market_type, self.price_max_age_ms = market_type, price_max_age_ms
        self.policy = RetryPolicy(attempts=max_retries + 1, base_s=backoff_s, cap_s=max_backoff_s,
                                  max_retry_after_s=max_retry_after_s)
        self.exchange = None
        self._connect_lock = asyncio.Lock()
        self._client_ids: dict[str, str] = {}             # venue order id -> client id
        self._marks: dict[str, tuple[float, float]] = {}  # symbol -> (monotonic s, last price)

    def __repr__(self) -> str:
        keys = "set" if self.credentials is not None else "none"
        where = f", api_url={self.api_url!r}" if self.api_url else ""
        return f"CcxtVenue({self.name!r}, {self.symbol!r}{where}, credentials={keys})"

    # --- lifecycle -----------------------------------------------------------------------------

    async def connect(self) -> None:
        if self.exchange is not None and self.exchange.markets:
            return
        async with self._connect_lock:
            if self.exchange is None:
                self.exchange = make_async_exchange(self.name, api_url=self.api_url, credentials=self.credentials,
                                                    timeout_ms=self.timeout_ms, rate_limit_ms=self.rate_limit_ms,
                                                    market_types=(self.market_type,))
            if not self.exchange.markets:
                await self._call("load markets", self.exchange.load_markets)
            if self.symbol not in self.exchange.markets:
                raise ConfigError(f"{self.name} has no market {self.symbol!r} (unified symbols look like BTC/USDT)")

    async def close(self) -> None:
        if self.exchange is not None:
            exchange, self.exchange = self.exchange, None
            await exchange.close()

    async def __aenter__(self) -> "CcxtVenue":
        try:
            await self.connect()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    # --- orders --------------------------------------------------------------------------------

    def order_args(self, request: OrderRequest, mark_price: float | None = None) -> dict:
        """The ccxt `create_order` arguments for `request`: rounded to the venue's precision and checked
        against its limits (a market order's cost is checked at `mark_price` when given).

        Raises OrderRejected (nothing is sent) with reasons: invalid_request, unsupported_tif,
        amount_below_precision, min_amount, max_amount, min_price, max_price, min_notional, max_notional."""
        import ccxt

        r, ex = request, self.exchange
        market = self._check_request(r)
        limit_priced, stop_priced = r.type in ("limit", "stop_limit"), r.type in ("stop", "stop_limit")
        try:
            amount = float(ex.amount_to_precision(r.symbol, r.amount))
            price = float(ex.price_to_precision(r.symbol, r.price)) if limit_priced else None
            stop = float(ex.price_to_precision(r.symbol, r.stop_price)) if stop_priced else None
        except ccxt.BaseError as e:   # ccxt refuses an amount that truncates to zero
            raise self._reject(r, f"cannot round to the venue's precision ({_text(e)})",
                               "amount_below_precision") from e
        if amount <= 0:
            raise self._reject(r, f"amount {r.amount} rounds to 0 at the venue's precision", "amount_below_precision")
        reference = price if price is not None else (stop if stop is not None else mark_price)
        limits = market.get("limits") or {}
        for kind, value, what in (("amount", amount, "amount"), ("price", price, "price"),
                                  ("price", stop, "stop price"),
                                  ("cost", None if reference is None else amount * reference, "notional")):
            lo, hi = (limits.get(kind) or {}).get("min"), (limits.get(kind) or {}).get("max")
            if value is not None and lo is not None and value < lo:
                raise self._reject(r, f"{what} {value:g} is below the venue's minimum {lo:g}",
                                   f"min_{_LIMIT_NAMES[kind]}")
            if value is not None and hi is not None and value > hi:
                raise self._reject(r, f"{what} {value:g} is above the venue's maximum {hi:g}",
                                   f"max_{_LIMIT_NAMES[kind]}")

        params: dict = {"clientOrderId": r.client_id}
        if stop is not None:
            params["triggerPrice"] = stop
        if r.post_only:
            params["postOnly"] = True
        elif limit_priced:
            params["timeInForce"] = r.tif
        return {"symbol": r.symbol, "type": "limit" if limit_priced else "market",
                "side": "buy" if r.side > 0 else "sell", "amount": amount, "price": price, "params": params}

    def _reject(self, r: OrderRequest, message: str, reason: str) -> OrderRejected:
        return OrderRejected(self.name, f"order {r.client_id} {r.symbol}: {message}", reason)

    def _check_request(self, r: OrderRequest) -> dict:
        """The request's market, after checking what the request asks is well formed and sendable."""
        market = self.exchange.markets.get(r.symbol)
        if market is None:
            raise self._reject(r, f"no market {r.symbol!r} on {self.name}", "invalid_request")
        if r.type not in ORDER_TYPES or r.side not in (1, -1) or r.tif not in TIME_IN_FORCE:
            raise self._reject(r, f"type {r.type!r}, side {r.side!r}, tif {r.tif!r}: expected one of "
                                  f"{ORDER_TYPES}, +1/-1, one of {TIME_IN_FORCE}", "invalid_request")
        limit_priced, stop_priced = r.type in ("limit", "stop_limit"), r.type in ("stop", "stop_limit")
        for name, value, wanted in (("amount", r.amount, True), ("price", r.price, limit_priced),
                                    ("stop_price", r.stop_price, stop_priced)):
            if wanted and (value is None or not math.isfinite(value) or value <= 0):
                raise self._reject(r, f"{r.type} order needs a finite positive {name}, got {value!r}",
                                   "invalid_request")
        if r.post_only and (r.type != "limit" or r.tif != "GTC"):
            raise self._reject(r, "post-only is for GTC limit orders", "invalid_request")
        if r.tif == "GTD":
            # ccxt has no unified expiry parameter: the order manager cancels at expire_ts itself.
            raise self._reject(r, "GTD is not sent to ccxt venues; emulate it client-side", "unsupported_tif")
        features = ((self.exchange.features or {}).get(market["type"]) or {}).get("createOrder") or {}
        tifs = features.get("timeInForce") or {}
        if limit_priced and r.tif != "GTC" and tifs and not tifs.get(r.tif):
            raise self._reject(r, f"{self.name} does not support time in force {r.tif}", "unsupported_tif")
        return market

    async def create_order(self, request: OrderRequest) -> OrderState:
        await self.connect()
        mark = await self._mark_price(request.symbol) if request.type == "market" else None
        args = self.order_args(request, mark)
        cid, symbol = request.client_id, request.symbol
        for attempt in range(1, self.policy.attempts + 1):
            try:
                order = await self._once(self.exchange.create_order, order=True, **args)
                return self._state(order, cid)
            except RateLimited as err:
                if attempt == self.policy.attempts:
                    raise
                await self._pause(f"create_order {cid}", err, attempt)
            except ExchangeUnavailable as err:
                # The request left and no answer came back: did the venue take it? Ask before resending.
                found = await self._lookup(cid, symbol, err)
                if found is not None:
                    log.info("%s: order %s was accepted although its answer was lost (%s)", self.name, cid, err)
                    return found
                if attempt == self.policy.attempts:
                    raise ExchangeUnavailable(self.name, f"order {cid} not accepted after {attempt} attempts: "
                                                         f"{err}") from err
                await self._pause(f"create_order {cid} (the venue does not have it)", err, attempt)
            except OrderRejected as err:
                if err.reason != "duplicate_client_id":
                    raise
                found = await self._lookup(cid, symbol, err)
                if found is None:
                    raise
                return found
        raise AssertionError("unreachable")

    async def cancel_order(self, client_id: str, symbol: str) -> OrderState:
        """Cancel by client id. An order that already ended (filled, expired) is returned as it is; one
        the venue never saw raises OrderNotFound."""
        await self.connect()
        try:
            order = await self._call(f"cancel_order {client_id}", self.exchange.cancel_order, None, symbol,
                                     {"clientOrderId": client_id})
        except OrderNotFound:
            # Also the answer to a retried cancel whose first try went through, or to a filled order.
            state = await self.fetch_order(client_id, symbol)
            if state is None or state.status in ("open", "partially_filled"):
                raise
            return state
        # A cancel answer may carry the cancel request's own client id (Binance): keep ours.
        return self._state(order, client_id)

    async def fetch_order(self, client_id: str, symbol: str) -> OrderState | None:
        await self.connect()
        try:
            order = await self._call(f"fetch_order {client_id}", self.exchange.fetch_order, None, symbol,
                                     {"clientOrderId": client_id})
        except OrderNotFound:
            return None
        return self._state(order, client_id)

    async def fetch_open_orders(self, symbol: str) -> list[OrderState]:
        await self.connect()
        orders = await self._call("fetch_open_orders", self.exchange.fetch_open_orders, symbol)
        return [self._state(o) for o in orders]

    async def fetch_fills(self, symbol: str, since: int | None = None, limit: int = 1000) -> list[Fill]:
        """Our fills on `symbol` at or after `since` (ms), oldest first, de-duplicated by trade id.
        Pages follow by time while pages come back full; since=None gives the venue's latest page."""
        await self.connect()
        trades, seen, cursor = [], set(), since
        while True:
            page = await self._call("fetch_my_trades", self.exchange.fetch_my_trades, symbol, cursor, limit)
            new = [t for t in page if t["id"] not in seen]
            seen.update(t["id"] for t in new)
            trades += new
            if cursor is None or len(page) < limit or not new:
                break
            cursor = max(t["timestamp"] for t in page)
        trades.sort(key=lambda t: (t["timestamp"], str(t["id"])))
        return [await self._fill(t, symbol) for t in trades]

    async def fetch_balance(self) -> dict[str, Balance]:
        await self.connect()
        raw = await self._call("fetch_balance", self.exchange.fetch_balance)
        free, total = raw.get("free") or {}, raw.get("total") or {}
        return {code: Balance(code, float(free.get(code) or 0.0), float(total[code] or 0.0)) for code in total}

    # --- market data ---------------------------------------------------------------------------

    async def fetch_ticker(self, symbol: str | None = None) -> Ticker:
        await self.connect()
        symbol = symbol or self.symbol
        t = await self._call("fetch_ticker", self.exchange.fetch_ticker, symbol)
        ticker = Ticker(symbol, int(t.get("timestamp") or time.time() * 1000), t.get("bid"), t.get("ask"),
                        t.get("last"))
        if ticker.last:
            self._marks[symbol] = (time.monotonic(), float(ticker.last))
        return ticker

    async def fetch_order_book(self, symbol: str | None = None, limit: int | None = None) -> Book:
        """One snapshot as a Book of shape (1, levels), levels = the deeper side; the shorter side is
        padded with NaN prices and zero sizes."""
        await self.connect()
        symbol = symbol or self.symbol
        ob = await self._call("fetch_order_book", self.exchange.fetch_order_book, symbol, limit)
        bids, asks = ob.get("bids") or [], ob.get("asks") or []
        levels = max(len(bids), len(asks), 1)
        side = np.full((2, 2, levels), np.nan)
        side[:, 1] = 0.0
        for k, rows in enumerate((bids, asks)):
            for i, row in enumerate(rows):
                side[k, 0, i], side[k, 1, i] = row[0], row[1]
        ts = int(ob.get("timestamp") or time.time() * 1000)
        return Book(np.array([ts]), side[0, 0][None], side[0, 1][None], side[1, 0][None], side[1, 1][None])

    async def _mark_price(self, symbol: str) -> float | None:
        seen = self._marks.get(symbol)
        if seen is None or (time.monotonic() - seen[0]) * 1000 > self.price_max_age_ms:
            await self.fetch_ticker(symbol)
            seen = self._marks.get(symbol)
        return None if seen is None else seen[1]

    # --- requests, retries and errors ----------------------------------------------------------

    async def _once(self, fn, *args, order: bool = False, **kwargs):
        """One ccxt call; its error mapped to ours (`order`: InvalidOrder / BadRequest -> OrderRejected)."""
        import ccxt

        box: dict = {}
        token = _HEADERS.set(box)
        try:
            return await fn(*args, **kwargs)
        except ccxt.BaseError as e:
            raise self._error(e, box, order) from e
        finally:
            _HEADERS.reset(token)

    async def _call(self, what: str, fn, *args, **kwargs):
        """A call that is safe to repeat: retried on RateLimited and ExchangeUnavailable."""
        for attempt in range(1, self.policy.attempts + 1):
            try:
                return await self._once(fn, *args, **kwargs)
            except (RateLimited, ExchangeUnavailable) as err:
                if attempt == self.policy.attempts:
                    raise
                await self._pause(what, err, attempt)
        raise AssertionError("unreachable")

    async def _pause(self, what: str, err: ExchangeError, attempt: int) -> None:
        wait = self.policy.backoff(attempt)
        retry_after = getattr(err, "retry_after", None)
        if retry_after is not None:
            if retry_after > self.policy.max_retry_after_s:
                raise err
            wait = retry_after
        log.warning("%s %s: %s; retry %d of %d in %.2f s", self.name, what, err, attempt,
                    self.policy.attempts - 1, wait)
        await asyncio.sleep(wait)

    async def _lookup(self, client_id: str, symbol: str, cause: ExchangeError) -> OrderState | None:
        try:
            return await self.fetch_order(client_id, symbol)
        except (RateLimited, ExchangeUnavailable) as err:
            raise ExchangeUnavailable(self.name, f"order {client_id}: the answer was lost ({cause}) and the "
                                                 f"lookup failed too ({err}); its fate is unknown") from err

    def _error(self, e, headers: dict, order: bool) -> ExchangeError:
        import ccxt

        msg = _text(e)
        if isinstance(e, (ccxt.RateLimitExceeded, ccxt.DDoSProtection)):
            return RateLimited(self.name, msg, retry_after_s(headers))
        if isinstance(e, ccxt.InvalidNonce):
            text = f"the venue refused the request's timestamp, is the local clock off? ({msg})"
            return OrderRejected(self.name, text, "clock_skew") if order else ExchangeError(self.name, text)
        if isinstance(e, ccxt.OperationFailed):   # timeouts, dropped connections, 5xx, garbled answers
            return ExchangeUnavailable(self.name, f"{type(e).__name__}: {msg}")
        if isinstance(e, ccxt.AuthenticationError):
            key_var, secret_var, _ = env_names(self.name)
            if self.credentials is None:
                return ExchangeError(self.name, f"this call needs API credentials: set {key_var} and {secret_var} "
                                                f"({msg})")
            return ExchangeError(self.name, f"authentication failed: the venue refused the API key or the "
                                            f"signature; check {key_var}, {secret_var} and the key's permissions "
                                            f"({msg})")
        if isinstance(e, ccxt.InsufficientFunds):
            return InsufficientFunds(self.name, msg)
        if isinstance(e, ccxt.OrderNotFound):
            return OrderNotFound(self.name, msg)
        if order and isinstance(e, (ccxt.InvalidOrder, ccxt.BadRequest)):
            reason = next((r for phrase, r in _REASONS if phrase in str(e)), None)
            if reason is None:
                reason = "duplicate_client_id" if isinstance(e, ccxt.DuplicateOrderId) else (
                    "post_only_would_take" if isinstance(e, ccxt.OrderImmediatelyFillable) else
                    "invalid_order" if isinstance(e, ccxt.InvalidOrder) else "bad_request")
            return OrderRejected(self.name, msg, reason)
        return ExchangeError(self.name, f"{type(e).__name__}: {msg}")

    # --- conversions ---------------------------------------------------------------------------

    def _state(self, o: dict, client_id: str | None = None) -> OrderState:
        """ccxt order dict -> OrderState."""
        filled = float(o.get("filled") or 0.0)
        status = _STATUS.get(o.get("status"), "unknown")
        if status == "open" and filled > 0:
            status = "partially_filled"
        trigger = o.get("triggerPrice") or o.get("stopPrice")
        kind = o.get("type") or "market"
        if trigger:
            kind = "stop_limit" if kind == "limit" else "stop"
        price = o.get("price") if kind in ("limit", "stop_limit") else None
        venue_id = None if o.get("id") is None else str(o["id"])
        client_id = client_id or o.get("clientOrderId")
        if venue_id is not None and client_id:
            self._client_ids[venue_id] = client_id
        return OrderState(client_id=client_id, venue_id=venue_id, symbol=o.get("symbol"),
                          side=1 if o.get("side") == "buy" else -1, type=kind, amount=float(o.get("amount") or 0.0),
                          price=None if price is None else float(price), status=status, filled=filled,
                          avg_price=float(o["average"]) if filled > 0 and o.get("average") else None,
                          ts=o.get("lastUpdateTimestamp") or o.get("timestamp"),
                          reason=None if status != "rejected" else "venue")

    async def _fill(self, t: dict, symbol: str) -> Fill:
        venue_id = None if t.get("order") is None else str(t["order"])
        client_id = self._client_ids.get(venue_id) if venue_id else None
        if client_id is None and venue_id is not None:
            # Trade lists carry the venue's order id only: learn the client id once per order.
            order = await self._call(f"fetch_order {venue_id}", self.exchange.fetch_order, venue_id, symbol)
            client_id = self._state(order).client_id
        fee = t.get("fee") or {}
        return Fill(trade_id=str(t["id"]), client_id=client_id or "", venue_id=venue_id, symbol=t["symbol"],
                    side=1 if t["side"] == "buy" else -1, amount=float(t["amount"]), price=float(t["price"]),
                    fee=float(fee.get("cost") or 0.0), fee_currency=fee.get("currency") or "",
                    ts=int(t["timestamp"]), liquidity=t.get("takerOrMaker") or "taker")

