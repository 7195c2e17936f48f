"""The simulated venue: fills, fees, slippage, latency, partial fills, no look-ahead, TIF and post-only,
funds, exact balances, the Exchange interface's errors, and replays of real trades and bars."""
from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import pytest

from bot4jax.data.loaders import load
from bot4jax.execution.base import InsufficientFunds, OrderNotFound, OrderRejected
from bot4jax.execution.orders import order
from bot4jax.execution.sim_venue import SimulatedVenue

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
SYM = "BTC/USDT"


def run(coro):
    return asyncio.run(coro)


def venue(**kw):
    args = dict(fee_maker_bps=2.0, fee_taker_bps=7.5, slippage_bps=0.0, latency_ms=0)
    args.update(kw)
    balances = args.pop("balances", {"USDT": 10_000.0, "BTC": 1.0})
    return SimulatedVenue(SYM, balances, **args)


def place(v, *args, **kw):
    return run(v.create_order(order(SYM, *args, **kw)))


def D(x):
    return Decimal(repr(x))


def test_market_order_taker_fill_with_slippage_fee_and_exact_balances():
    v = venue(slippage_bps=10.0)
    v.on_trade(0, 100.0, 1.0, 1)
    s = place(v, 1, "market", 0.5)
    assert s.status == "open"
    (f,) = v.on_trade(1, 100.0, 2.0, 1)
    assert (f.price, f.amount, f.liquidity, f.fee_currency, f.client_id) == (100.1, 0.5, "taker", "USDT", s.client_id)
    exact_fee = D(0.5) * D(100.1) * Decimal("7.5e-4")
    assert D(f.fee) == exact_fee.quantize(Decimal("1e-10"))   # rounded up to the 1e-10 USDT unit (exact here)
    bal = v.balances_exact()
    assert bal["BTC"] == Decimal("1.5")
    assert bal["USDT"] == Decimal(10_000) - D(0.5) * D(100.1) - D(f.fee)
    done = run(v.fetch_order(s.client_id, SYM))
    assert (done.status, done.filled, done.avg_price) == ("filled", 0.5, 100.1)


def test_sell_pays_fee_from_proceeds():
    v = venue()
    v.on_trade(0, 200.0, 1.0, -1)
    place(v, -1, "market", 0.25)
    (f,) = v.on_trade(1, 200.0, 1.0, -1)
    assert v.balances_exact() == {"BTC": Decimal("0.75"), "USDT": Decimal(10_000) + D(50.0) - D(f.fee)}


def test_latency_delays_activation():
    v = venue(latency_ms=100)
    v.on_trade(1_000, 100.0, 1.0, 1)
    place(v, 1, "market", 0.1)                   # submitted at the venue clock, 1000
    assert v.on_trade(1_050, 100.0, 1.0, 1) == []
    assert v.on_trade(1_099, 100.0, 1.0, 1) == []
    (f,) = v.on_trade(1_100, 101.0, 1.0, 1)
    assert f.price == 101.0 and f.ts == 1_100


def test_no_look_ahead_on_bars():
    """An order placed while bar t is processed fills from bar t+1 on, at its open, never at bar t's
    prices even if they would have been better."""
    v = venue()
    v.on_bar(0, 100.0, 110.0, 90.0, 105.0, 50.0)
    place(v, 1, "market", 0.1)
    place(v, 1, "limit", 0.1, price=95.0)        # bar 0 traded at 90: no fill from it
    (f,) = v.on_bar(60_000, 106.0, 107.0, 104.0, 106.5, 50.0)
    assert f.price == 106.0
    assert v.on_bar(120_000, 106.5, 108.0, 96.0, 107.0, 50.0) == []      # low 96: not through 95
    (g,) = v.on_bar(180_000, 100.0, 101.0, 94.0, 95.5, 50.0)
    assert (g.price, g.liquidity) == (95.0, "maker")


def test_resting_limit_partial_fills_by_participation_maker_fee():
    v = venue(participation=0.1)
    v.on_trade(0, 101.0, 1.0, 1)
    s = place(v, 1, "limit", 1.0, price=100.0)
    assert v.on_trade(1, 100.5, 1.0, 1) == []    # lands above its price: rests
    fills = []
    for t in range(2, 6):
        fills += v.on_trade(t, 99.5, 3.0, -1)    # 3 BTC through our price: 0.3 for us each time
        st = run(v.fetch_order(s.client_id, SYM))
        if t == 1:
            assert st.status == "partially_filled" and st.filled == 0.3
    assert [f.amount for f in fills] == [0.3, 0.3, 0.3, 0.1]
    assert all(f.liquidity == "maker" and f.price == 100.0 for f in fills)
    assert sum(D(f.fee) for f in fills) == Decimal("100") * Decimal("2e-4")
    assert run(v.fetch_order(s.client_id, SYM)).status == "filled"


def test_post_only_rejected_now_or_at_activation():
    v = venue(latency_ms=10)
    v.on_trade(0, 100.0, 1.0, 1)
    with pytest.raises(OrderRejected) as exc:
        place(v, 1, "limit", 0.1, price=100.0, post_only=True)
    assert exc.value.reason == "post_only_would_take"
    s = place(v, 1, "limit", 0.1, price=99.0, post_only=True)   # fine now; the price falls before it lands
    v.on_trade(5, 98.0, 1.0, -1)
    v.on_trade(10, 98.5, 1.0, -1)
    st = run(v.fetch_order(s.client_id, SYM))
    assert (st.status, st.reason) == ("rejected", "post_only_would_take")


def test_ioc_and_fok():
    v = venue(participation=0.5)
    v.on_trade(0, 100.0, 1.0, 1)
    ioc = place(v, 1, "limit", 1.0, price=100.5, tif="IOC")
    fok = place(v, 1, "limit", 1.0, price=100.5, tif="FOK")
    fills = v.on_trade(1, 100.0, 1.0, 1)         # 0.5 available: IOC takes it, FOK cannot fill
    assert [f.client_id for f in fills] == [ioc.client_id]
    a, b = (run(v.fetch_order(s.client_id, SYM)) for s in (ioc, fok))
    assert (a.status, a.filled, a.reason) == ("canceled", 0.5, "ioc_remainder")
    assert (b.status, b.filled, b.reason) == ("canceled", 0.0, "fok_unfillable")


def test_stop_and_stop_limit_trigger_on_bars():
    v = venue()
    v.on_trade(0, 100.0, 1.0, 1)
    stop = place(v, -1, "stop", 0.2, stop_price=95.0)
    stop_buy = place(v, 1, "stop", 0.2, stop_price=104.0)
    sl = place(v, -1, "stop_limit", 0.2, stop_price=97.0, price=96.0)
    fills = {f.client_id: f for f in v.on_bar(60_000, 99.0, 105.0, 94.0, 96.0, 100.0)}
    assert fills[stop.client_id].price == 95.0
    assert fills[stop_buy.client_id].price == 104.0
    assert fills[sl.client_id].price == 97.0


def test_gtd_expires():
    v = venue()
    v.on_trade(0, 100.0, 1.0, 1)
    s = place(v, 1, "limit", 0.1, price=90.0, tif="GTD", expire_ts=5_000)
    v.on_trade(4_999, 100.0, 1.0, 1)
    assert run(v.fetch_order(s.client_id, SYM)).status == "open"
    v.on_trade(5_000, 80.0, 1.0, 1)              # expired before it could fill
    st = run(v.fetch_order(s.client_id, SYM))
    assert (st.status, st.filled) == ("expired", 0.0)


def test_funds_locks_and_refusals():
    v = venue(balances={"USDT": 1_000.0, "BTC": 0.5})
    v.on_trade(0, 100.0, 1.0, 1)
    place(v, 1, "limit", 5.0, price=100.0)        # locks 500 + taker fee
    bal = run(v.fetch_balance())
    assert bal["USDT"].total == 1_000.0 and bal["USDT"].free == pytest.approx(1_000 - 500 * 1.00075)
    with pytest.raises(InsufficientFunds):
        place(v, 1, "limit", 5.0, price=100.0)
    place(v, -1, "limit", 0.4, price=120.0)
    with pytest.raises(InsufficientFunds):
        place(v, -1, "market", 0.2)               # 0.5 held, 0.4 locked
    assert run(v.fetch_balance())["BTC"].free == pytest.approx(0.1)


def test_rounding_min_notional_and_refusals():
    v = venue(price_tick=0.5, amount_step=0.001, min_notional=1.0)
    v.on_trade(0, 100.0, 1.0, 1)
    s = place(v, 1, "limit", 0.0129, price=99.74)
    assert (s.amount, s.price) == (0.012, 99.5)
    with pytest.raises(OrderRejected) as exc:
        place(v, 1, "limit", 0.0009, price=99.0)
    assert exc.value.reason == "min_amount"
    with pytest.raises(OrderRejected) as exc:
        place(v, 1, "limit", 0.005, price=99.0)
    assert exc.value.reason == "min_notional"
    with pytest.raises(OrderRejected) as exc:
        run(v.create_order(order("ETH/USDT", 1, "market", 1.0)))
    assert exc.value.reason == "bad_symbol"
    with pytest.raises(OrderRejected) as exc:
        run(v.create_order(order(SYM, 1, "limit", 0.1, price=99.0, client_id=s.client_id)))
    assert exc.value.reason == "duplicate_client_id"


def test_exchange_interface_lookups_and_errors():
    v = venue()
    run(v.connect())
    v.on_trade(0, 100.0, 1.0, 1)
    a = place(v, 1, "limit", 0.1, price=90.0)
    b = place(v, 1, "market", 0.1)
    assert [s.client_id for s in run(v.fetch_open_orders(SYM))] == [a.client_id, b.client_id]
    v.on_trade(10, 100.0, 1.0, 1)
    assert [s.client_id for s in run(v.fetch_open_orders(SYM))] == [a.client_id]
    c = run(v.cancel_order(a.client_id, SYM))
    assert c.status == "canceled" and c.reason == "requested"
    with pytest.raises(OrderNotFound):
        run(v.cancel_order(a.client_id, SYM))     # already final
    with pytest.raises(OrderNotFound):
        run(v.cancel_order("nope", SYM))
    assert run(v.fetch_order("nope", SYM)) is None
    assert len(run(v.fetch_fills(SYM))) == 1 and run(v.fetch_fills(SYM, since=11)) == []
    with pytest.raises(ValueError, match="before the venue clock"):
        v.on_trade(5, 100.0, 1.0, 1)
    with pytest.raises(ValueError, match="inconsistent bar"):
        v.on_bar(20, 100.0, 99.0, 98.0, 100.0, 1.0)
    run(v.close())


def test_insufficient_balance_at_fill_time_cancels_the_rest():
    v = venue(balances={"USDT": 100.0})
    v.on_trade(0, 100.0, 1.0, 1)
    s = place(v, 1, "market", 0.99)               # affordable at 100, not after a jump to 150
    (f,) = v.on_trade(1, 150.0, 10.0, 1)
    st = run(v.fetch_order(s.client_id, SYM))
    assert st.status == "canceled" and st.reason == "insufficient_funds" and 0 < st.filled < 0.99
    assert v.balances_exact()["USDT"] >= 0


def replay_trades(trades, n):
    v = SimulatedVenue("XRP/ETH", {"ETH": 10.0}, price_tick=1e-8, amount_step=1.0, fee_maker_bps=1.0,
                       fee_taker_bps=10.0, slippage_bps=2.0, latency_ms=250, participation=0.2)
    fills, side = [], 1
    for i in range(n):
        if i % 500 == 0 and i:   # alternate: buy 500 XRP at market, then sell them with a limit above
            if side > 0:
                run(v.create_order(order("XRP/ETH", 1, "market", 500.0, client_id=f"m{i}")))
            else:
                px = round(float(trades.price[i]) * 1.001, 8)
                run(v.create_order(order("XRP/ETH", -1, "limit", 500.0, price=px, client_id=f"l{i}")))
            side = -side
        fills += v.on_trade(int(trades.ts[i]), float(trades.price[i]), float(trades.amount[i]), int(trades.side[i]))
    return v, fills


def test_replay_real_trades_is_deterministic_and_balances_add_up():
    path = DATA / "binance_XRP_ETH-trades-2019.json.gz"
    if not path.exists():
        pytest.skip("shared market data not available")
    trades = load(path)
    v, fills = replay_trades(trades, 6_000)
    v2, fills2 = replay_trades(trades, 6_000)
    assert fills and fills == fills2
    assert {f.liquidity for f in fills} == {"maker", "taker"}
    base = sum(f.side * D(f.amount) for f in fills)
    quote = sum(-f.side * D(f.amount) * D(f.price) - D(f.fee) for f in fills)
    assert v.balances_exact() == {"XRP": base, "ETH": Decimal(10) + quote}
    for f in fills:   # participation: never more than 20 % of the print that filled it
        assert f.amount <= 0.2 * float(trades.amount[trades.ts == f.ts].max()) + 1e-9 or f.liquidity == "taker"


def test_replay_real_bars_fills_only_from_the_next_bar():
    path = DATA / "BTC_USDT-5m-2023.json.gz"
    if not path.exists():
        pytest.skip("shared market data not available")
    bars = load(path)
    v = SimulatedVenue(SYM, {"USDT": 100_000.0}, slippage_bps=2.5, participation=0.01)
    placed_at = {}
    for i in range(600):
        ts = int(bars.ts[i])
        fills = v.on_bar(ts, float(bars.open[i]), float(bars.high[i]), float(bars.low[i]), float(bars.close[i]),
                         float(bars.volume[i]))
        for f in fills:
            j = placed_at[f.client_id]
            assert f.ts > int(bars.ts[j])                      # never the bar it was placed on
            assert f.price == pytest.approx(bars.open[i] * (1 + f.side * 2.5e-4), abs=0.01)   # the open, slipped
        if i % 50 == 0:
            s = run(v.create_order(order(SYM, 1 if (i // 50) % 2 == 0 else -1, "market", 0.05, client_id=f"b{i}")))
            placed_at[s.client_id] = i
    assert len(run(v.fetch_fills(SYM))) == len(placed_at)
