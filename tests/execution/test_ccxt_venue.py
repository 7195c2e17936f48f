"""CcxtVenue end to end: the real ccxt async binance client against a local server speaking Binance's
signed spot REST API (tests/support/binance_trading.py), faults included."""
from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from bot4jax.errors import ConfigError
from bot4jax.execution.base import (ExchangeError, ExchangeUnavailable, InsufficientFunds, OrderNotFound,
                                    OrderRejected, OrderRequest, RateLimited)
from bot4jax.execution.ccxt_venue import CcxtVenue
from bot4jax.execution.credentials import Credentials
from tests.support.binance_rest import Fault, SpotMarket
from tests.support.binance_trading import BinanceTradingServer, Late, new_api_key

KEY, SECRET = new_api_key(), new_api_key()
SYM = "BTC/USDT"
ORDER = "POST /api/v3/order"
QUERY = "/api/v3/order"
BIDS = [(40_000, 0.5), (39_990, 1.0), (39_980, 2.0)]
ASKS = [(40_010, 0.2), (40_020, 1.0), (40_030, 2.0)]


@pytest.fixture
def server():
    with BinanceTradingServer([SpotMarket("BTC", "USDT")], {KEY: SECRET}, {"USDT": 100_000, "BTC": 2}) as s:
        s.set_book("BTCUSDT", BIDS, ASKS)
        yield s
        assert s.unexpected == [], f"calls the fake venue does not serve: {s.unexpected}"


def venue(server, credentials=Credentials("binance", KEY, SECRET), **kw) -> CcxtVenue:
    kw = {"timeout_ms": 300, "max_retries": 3, "backoff_s": 0.05, "rate_limit_ms": 5, **kw}
    return CcxtVenue("binance", SYM, api_url=server.url, credentials=credentials, **kw)


def run(server, session, **kw):
    """Run `session(v)` on a fresh connected venue, closing it afterwards."""
    async def main():
        async with venue(server, **kw) as v:
            return await session(v)
    return asyncio.run(main())


def limit(cid, side, amount, price, **kw) -> OrderRequest:
    return OrderRequest(cid, SYM, side, "limit", amount, price=price, **kw)


def posts(server, cid=None):
    return [r for r in server.calls(ORDER) if cid is None or r.params.get("newClientOrderId") == cid]


# --- markets and market data ---------------------------------------------------------------------

def test_markets_load_once_balance_ticker_and_book(server):
    async def session(v):
        await v.connect()
        await v.connect()
        return await v.fetch_balance(), await v.fetch_ticker(), await v.fetch_order_book(limit=2), v.exchange.markets

    balance, ticker, book, markets = run(server, session)
    assert len(server.calls("/api/v3/exchangeInfo")) == 1
    assert (markets[SYM]["precision"]["amount"], markets[SYM]["precision"]["price"]) == (1e-05, 0.01)
    assert markets[SYM]["limits"]["cost"]["min"] == 5.0
    assert {c: (b.free, b.total) for c, b in balance.items()} == {"BTC": (2.0, 2.0), "USDT": (100_000.0, 100_000.0)}
    assert (ticker.bid, ticker.ask, ticker.last) == (40_000.0, 40_010.0, 40_005.0)
    assert book.bid_px.shape == (1, 2)
    np.testing.assert_array_equal(book.bid_px[0], [40_000, 39_990])
    np.testing.assert_array_equal(book.ask_sz[0], [0.2, 1.0])


def test_unknown_symbol_is_a_config_error(server):
    async def main():
        v = CcxtVenue("binance", "DOGE/USDT", api_url=server.url, rate_limit_ms=5)
        with pytest.raises(ConfigError, match="no market 'DOGE/USDT'"):
            async with v:
                pass
    asyncio.run(main())


def test_rate_limit_is_respected(server):
    # ticker/24hr with a symbol costs 0.4 in ccxt's binance table: requests leave >= 0.4 * rateLimit apart.
    async def session(v):
        await asyncio.gather(*(v.fetch_ticker() for _ in range(4)))

    run(server, session, rate_limit_ms=100)
    t = np.array([r.t for r in server.calls("/api/v3/ticker/24hr")])
    assert len(t) == 4
    assert np.diff(t).min() >= 0.035, np.diff(t)


def test_reads_retry_rate_limits_and_outages_then_give_up(server):
    account = "/api/v3/account"
    server.inject(account, 1, Fault.too_many_requests(retry_after=None))   # exponential back-off then
    server.inject(account, 2, Fault.server_error(502))

    async def session(v):
        balance = await v.fetch_balance()
        for n in range(3, 13):
            server.inject(account, n, Fault.server_error(503))
        with pytest.raises(ExchangeUnavailable) as e:
            await v.fetch_balance()
        return balance, e.value

    balance, err = run(server, session)
    calls = server.calls(account)
    assert balance["USDT"].free == 100_000.0 and calls[2].fault is None
    assert calls[1].t - calls[0].t >= 0.05 and calls[2].t - calls[1].t >= 0.1   # 0.05 s, then 0.1 s
    assert len(calls) == 3 + 4 and "503" in str(err)   # then 4 tries (max_retries=3), all refused


# --- orders --------------------------------------------------------------------------------------

def test_market_order_takes_the_book_and_reports_fills_with_fees(server):
    async def session(v):
        state = await v.create_order(OrderRequest("mkt-1", SYM, +1, "market", 0.3))
        return state, await v.fetch_fills(SYM), await v.fetch_balance()

    state, fills, balance = run(server, session)
    assert (state.status, state.filled, state.venue_id, state.client_id) == ("filled", 0.3, "1", "mkt-1")
    assert state.avg_price == pytest.approx((0.2 * 40_010 + 0.1 * 40_020) / 0.3)
    assert posts(server, "mkt-1") and len(posts(server)) == 1   # our client id was the venue's
    assert [(f.trade_id, f.amount, f.price, f.liquidity) for f in fills] == [
        ("1", 0.2, 40_010.0, "taker"), ("2", 0.1, 40_020.0, "taker")]
    assert all(f.client_id == "mkt-1" and f.fee_currency == "BTC" for f in fills)
    assert [f.fee for f in fills] == pytest.approx([0.0002, 0.0001])
    assert balance["BTC"].total == pytest.approx(2 + 0.3 - 0.0003)
    assert balance["USDT"].total == pytest.approx(100_000 - 0.2 * 40_010 - 0.1 * 40_020)


def test_amount_and_price_are_rounded_to_the_venue_precision(server):
    async def session(v):
        return await v.create_order(limit("round-1", +1, 0.123456789, 39_000.126))

    state = run(server, session)
    sent = posts(server, "round-1")[0].params
    assert (sent["quantity"], sent["price"], sent["timeInForce"]) == ("0.12345", "39000.13", "GTC")
    assert (state.amount, state.price, state.status) == (0.12345, 39_000.13, "open")
    assert server.order("round-1").qty == server.order("round-1").qty.quantize(server.filters["BTCUSDT"].step)


@pytest.mark.parametrize("request_, reason", [
    (limit("small-1", +1, 0.0001, 40_000), "min_notional"),                       # 4 USDT < 5
    (OrderRequest("small-2", SYM, -1, "market", 0.0001), "min_notional"),         # at the ticker's last
    (limit("small-3", +1, 0.000001, 40_000), "amount_below_precision"),
    (limit("small-4", +1, 0.01, 2_000_000), "max_price"),
    (limit("gtd-1", +1, 0.01, 39_000, tif="GTD", expire_ts=1), "unsupported_tif"),
    (OrderRequest("bad-1", SYM, +1, "stop_limit", 0.01, price=41_000), "invalid_request"),
])
def test_orders_outside_the_venue_limits_are_rejected_before_sending(server, request_, reason):
    async def session(v):
        with pytest.raises(OrderRejected) as e:
            await v.create_order(request_)
        return e.value

    err = run(server, session)
    assert err.reason == reason and request_.client_id in str(err)
    assert posts(server) == [] and server.orders == {}


def test_venue_rejections_carry_a_reason(server):
    async def session(v):
        errors = []
        for req in (limit("pm-1", +1, 0.01, 40_010.0, post_only=True),            # would take the ask
                    OrderRequest("st-1", SYM, -1, "stop_limit", 0.01, price=40_100.0, stop_price=40_100.0),
                    limit("inj-1", +1, 0.01, 39_000)):
            with pytest.raises(OrderRejected) as e:
                await v.create_order(req)
            errors.append(e.value)
        return errors

    server.inject(ORDER, 3, Fault.error(400, -1013, "Filter failure: NOTIONAL"))
    errors = run(server, session)
    assert [e.reason for e in errors] == ["post_only_would_take", "stop_would_trigger", "min_notional"]
    assert posts(server, "pm-1")[0].params["type"] == "LIMIT_MAKER"
    assert posts(server, "st-1")[0].params["type"] == "STOP_LOSS_LIMIT"
    assert "Order would immediately match and take." in str(errors[0])
    assert server.orders == {}


def test_insufficient_funds(server):
    async def session(v):
        with pytest.raises(InsufficientFunds) as e:
            await v.create_order(limit("big-1", +1, 10.0, 39_000))   # 390,000 USDT > 100,000
        return e.value

    err = run(server, session)
    assert err.reason == "insufficient_funds" and "insufficient balance" in str(err)
    assert server.orders == {} and server.balance("USDT") == (100_000.0, 0.0)


def test_time_in_force_and_stop_orders(server):
    async def session(v):
        ioc = await v.create_order(limit("ioc-1", +1, 0.5, 40_010, tif="IOC"))     # 0.2 at the ask, rest expires
        fok = await v.create_order(limit("fok-1", +1, 2.0, 40_020, tif="FOK"))     # 1.0 available: expires whole
        stop = await v.create_order(OrderRequest("stp-1", SYM, -1, "stop_limit", 0.1, price=39_900, stop_price=39_950))
        stop_mkt = await v.create_order(OrderRequest("stp-2", SYM, -1, "stop", 0.2, stop_price=39_945))
        server.set_book("BTCUSDT", [(39_940, 0.15), (39_930, 1.0)], [(39_960, 1.0)], last=39_940)  # both trigger
        return ioc, fok, stop, stop_mkt, await v.fetch_order("stp-1", SYM), await v.fetch_order("stp-2", SYM)

    ioc, fok, stop, stop_mkt, limit_done, market_done = run(server, session)
    assert (ioc.status, ioc.filled) == ("expired", 0.2)
    assert (fok.status, fok.filled) == ("expired", 0.0)
    assert (stop.type, stop.status, stop.price) == ("stop_limit", "open", 39_900.0)
    assert (stop_mkt.type, stop_mkt.status, stop_mkt.price) == ("stop", "open", None)
    assert [r.params["type"] for r in posts(server)][-2:] == ["STOP_LOSS_LIMIT", "STOP_LOSS"]
    assert (limit_done.status, limit_done.filled, limit_done.avg_price) == ("filled", 0.1, 39_940.0)
    # the stop-market order came second: 0.05 left at 39,940, then 0.15 at 39,930
    assert (market_done.status, market_done.filled) == ("filled", 0.2)
    assert market_done.avg_price == pytest.approx((0.05 * 39_940 + 0.15 * 39_930) / 0.2)


# --- retries that never duplicate an order --------------------------------------------------------

def test_429_then_success_creates_exactly_one_order(server):
    server.inject(ORDER, 1, Fault.too_many_requests(retry_after=1))

    state = run(server, lambda v: v.create_order(limit("rl-1", +1, 0.01, 39_000)))
    sent = posts(server, "rl-1")
    assert len(sent) == 2 and state.status == "open" and state.client_id == "rl-1"
    assert sent[1].t - sent[0].t >= 0.95   # the venue's Retry-After, not the 0.05 s back-off
    assert [o.client_id for o in server.orders.values()] == ["rl-1"]


def test_a_ban_longer_than_allowed_is_raised_without_waiting(server):
    server.inject(ORDER, 1, Fault.too_many_requests(retry_after=120))

    async def session(v):
        with pytest.raises(RateLimited) as e:
            await v.create_order(limit("rl-2", +1, 0.01, 39_000))
        return e.value

    t0 = time.monotonic()
    err = run(server, session, max_retry_after_s=5)
    assert err.retry_after == 120 and time.monotonic() - t0 < 5
    assert len(posts(server)) == 1 and server.orders == {}


def test_timeout_after_the_order_was_accepted_finds_it_by_client_id(server):
    server.inject_late(ORDER, 1, Late(hold_s=1.0))   # accepted, answer held past the 300 ms timeout

    state = run(server, lambda v: v.create_order(limit("to-1", +1, 0.01, 39_000)))
    assert (state.client_id, state.status, state.venue_id) == ("to-1", "open", "1")
    assert len(posts(server)) == 1 and len(server.orders) == 1
    assert server.calls(QUERY)[0].params["origClientOrderId"] == "to-1"


def test_connection_dropped_after_accept_finds_the_order(server):
    server.inject_late(ORDER, 1, Late(drop=True))

    state = run(server, lambda v: v.create_order(OrderRequest("dr-1", SYM, -1, "market", 0.1)))
    assert (state.status, state.filled) == ("filled", 0.1)
    assert len(posts(server)) == 1 and len(server.orders) == 1


def test_connection_dropped_before_processing_resends_the_same_client_id(server):
    server.inject(ORDER, 1, Fault.drop())

    state = run(server, lambda v: v.create_order(limit("dr-2", +1, 0.01, 39_000)))
    assert state.status == "open"
    assert [r.params["newClientOrderId"] for r in posts(server)] == ["dr-2", "dr-2"]
    assert len(server.calls(QUERY)) == 1   # looked up (not there) before resending
    assert [o.client_id for o in server.orders.values()] == ["dr-2"]


def test_lost_answer_and_failed_lookup_leave_the_order_unknown(server):
    server.inject_late(ORDER, 1, Late(drop=True))
    # Every lookup loses its connection: 4 tries (max_retries=3), and aiohttp silently resends an
    # idempotent GET once when a reused keep-alive connection drops.
    for n in range(1, 9):
        server.inject(QUERY, n, Fault.drop())

    async def session(v):
        with pytest.raises(ExchangeUnavailable) as e:
            await v.create_order(limit("lost-1", +1, 0.01, 39_000))
        server.clear_faults()
        return e.value, await v.fetch_order("lost-1", SYM)   # later, the lookup resolves it

    err, resolved = run(server, session)
    assert "fate is unknown" in str(err) and "lost-1" in str(err)
    assert len(posts(server)) == 1 and resolved.status == "open" and len(server.orders) == 1


def test_duplicate_client_id_returns_the_live_order(server):
    async def session(v):
        first = await v.create_order(limit("dup-1", +1, 0.01, 39_000))
        again = await v.create_order(limit("dup-1", +1, 0.01, 39_000))
        return first, again

    first, again = run(server, session)
    assert len(posts(server)) == 2 and len(server.orders) == 1
    assert again.venue_id == first.venue_id and again.status == "open"


# --- fills, open orders, cancels -----------------------------------------------------------------

def test_partial_fills_are_reported_as_fills_with_trade_ids(server):
    run(server, lambda v: v.create_order(limit("pf-1", +1, 0.1, 39_500)))
    t1 = server.fill("pf-1", 0.04)
    time.sleep(0.005)
    t2 = server.fill("pf-1", 0.03, price=39_400)

    async def session(v):   # a fresh venue: it learns the client id from the venue's order id
        return await v.fetch_order("pf-1", SYM), await v.fetch_fills(SYM), await v.fetch_fills(SYM, since=t2.time)

    state, fills, later = run(server, session)
    assert (state.status, state.filled) == ("partially_filled", pytest.approx(0.07))
    assert state.avg_price == pytest.approx((0.04 * 39_500 + 0.03 * 39_400) / 0.07)
    assert [(f.trade_id, f.client_id, f.amount, f.price, f.liquidity) for f in fills] == [
        (str(t1.id), "pf-1", 0.04, 39_500.0, "maker"), (str(t2.id), "pf-1", 0.03, 39_400.0, "maker")]
    assert [f.trade_id for f in later] == [str(t2.id)]


def test_a_crossing_book_fills_a_resting_order(server):
    run(server, lambda v: v.create_order(limit("rest-1", -1, 0.2, 40_050)))
    server.set_book("BTCUSDT", [(40_060, 1.0)], [(40_070, 1.0)])
    state = run(server, lambda v: v.fetch_order("rest-1", SYM))
    assert (state.status, state.filled, state.avg_price) == ("filled", 0.2, 40_050.0)
    assert server.trades[-1].is_maker


def test_open_orders_and_cancels(server):
    async def session(v):
        await v.create_order(limit("oo-1", +1, 0.01, 39_000))
        await v.create_order(limit("oo-2", -1, 0.02, 41_000))
        before = await v.fetch_open_orders(SYM)
        canceled = await v.cancel_order("oo-1", SYM)
        again = await v.cancel_order("oo-1", SYM)          # a repeated cancel answers the final state
        after = await v.fetch_open_orders(SYM)
        with pytest.raises(OrderNotFound):
            await v.cancel_order("never-sent", SYM)
        filled = await v.create_order(OrderRequest("oo-3", SYM, +1, "market", 0.01))
        return before, canceled, again, after, await v.fetch_order("never-sent", SYM), \
            await v.cancel_order("oo-3", SYM), filled

    before, canceled, again, after, missing, cancel_filled, filled = run(server, session)
    assert sorted((o.client_id, o.side, o.amount) for o in before) == [("oo-1", 1, 0.01), ("oo-2", -1, 0.02)]
    assert (canceled.client_id, canceled.status) == ("oo-1", "canceled")
    assert (again.client_id, again.status) == ("oo-1", "canceled")
    assert [o.client_id for o in after] == ["oo-2"]
    assert missing is None
    assert filled.status == "filled" and cancel_filled.status == "filled"
    assert server.balance("USDT")[1] == 0.0 and server.balance("BTC")[1] == pytest.approx(0.02)   # locks released


# --- authentication ------------------------------------------------------------------------------

def test_wrong_secret_fails_with_a_clear_message_without_the_secret(server):
    wrong = new_api_key()

    async def main():
        with pytest.raises(ExchangeError) as e:
            async with venue(server, Credentials("binance", KEY, wrong)):
                pass
        return e.value

    err = asyncio.run(main())
    assert "authentication failed" in str(err) and "BOT4JAX_BINANCE_API_SECRET" in str(err)
    assert "Signature for this request is not valid." in str(err)
    assert wrong not in str(err) and KEY not in str(err) and SECRET not in str(err)


def test_unknown_key_and_missing_credentials(server):
    async def main():
        errors = []
        with pytest.raises(ExchangeError) as e:
            async with venue(server, Credentials("binance", new_api_key(), SECRET)):
                pass
        errors.append(e.value)
        async with venue(server, credentials=None) as v:   # public calls work, private ones explain
            await v.fetch_ticker()
            with pytest.raises(ExchangeError) as e:
                await v.fetch_balance()
        errors.append(e.value)
        return errors

    unknown, missing = asyncio.run(main())
    assert "authentication failed" in str(unknown) and "Invalid API-key" in str(unknown)
    assert "needs API credentials: set BOT4JAX_BINANCE_API_KEY and BOT4JAX_BINANCE_API_SECRET" in str(missing)


def test_clock_outside_recv_window_is_named(server):
    server.now_ms = lambda: int(time.time() * 1000) + 60_000   # the venue's clock is a minute ahead

    async def main():
        with pytest.raises(ExchangeError, match="clock") as e:
            async with venue(server):
                pass
        return e.value

    assert "recvWindow" in str(asyncio.run(main()))
