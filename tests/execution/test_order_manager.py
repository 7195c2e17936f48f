"""OrderManager over the simulated venue: pre-trade denials, the journal's order of writes, linked
orders emulated client-side (bracket, OCO, OTO, multi-leg) with partial fills, duplicate fills, lost
answers ("unknown", never resent), rate limits, venue-side expiries and races."""
from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
import math

import pytest

from bot4jax.errors import ConfigError
from bot4jax.execution.base import (FINAL_STATUSES, ExchangeUnavailable, OrderRejected, RateLimited)
from bot4jax.execution.order_manager import OrderManager
from bot4jax.execution.orders import (OrderLimits, bracket, from_lots, multileg, new_client_id, oco, order, oto,
                                      risk_reasons, to_lots)
from bot4jax.execution.journal import OrderJournal
from bot4jax.execution.sim_venue import SimulatedVenue

SYM = "BTC/USDT"


class ListJournal(OrderJournal):
    """The SQLite order journal (in a fresh temporary folder) that also appends every write to `log`,
    shared with the venue below so that the order of journal writes and venue calls can be checked;
    `fills` maps the trade ids it stored to their fills."""

    def __init__(self, log):
        super().__init__(Path(tempfile.mkdtemp(prefix="b4j-journal-")) / "journal.sqlite", durable=False)
        self.log, self.fills = log, {}

    def record_intent(self, request, group_id=None):
        self.log.append(("intent", request.client_id, group_id))
        super().record_intent(request, group_id)

    def record_state(self, state):
        self.log.append(("state", state.client_id, state.status))
        super().record_state(state)

    def record_fill(self, fill):
        if not super().record_fill(fill):
            return False
        self.fills[fill.trade_id] = fill
        self.log.append(("fill", fill.client_id, fill.trade_id))
        return True


class Venue(SimulatedVenue):
    """The simulated venue, logging each create / cancel call into the shared log, with faults that
    tests switch on: `lose_answer` (the venue accepts the order, the answer is lost), `down` (the
    request never arrives), `rate_limit` (the next n creates are refused with a 429)."""

    def __init__(self, log, **kw):
        balances = kw.pop("balances", {"USDT": 100_000.0, "BTC": 0.0})
        super().__init__(SYM, balances, **{"slippage_bps": 0.0, **kw})
        self.log, self.lose_answer, self.down, self.rate_limit = log, False, False, 0

    async def create_order(self, request):
        self.log.append(("create", request.client_id, request.amount))
        if self.rate_limit:
            self.rate_limit -= 1
            raise RateLimited(self.name, "429 too many requests", retry_after=1.0)
        if self.down:
            raise ExchangeUnavailable(self.name, "connection refused")
        state = await super().create_order(request)
        if self.lose_answer:
            raise ExchangeUnavailable(self.name, "timeout after the order was accepted")
        return state

    async def cancel_order(self, client_id, symbol):
        self.log.append(("cancel", client_id))
        return await super().cancel_order(client_id, symbol)


def setup(limits=None, **kw):
    log = []
    venue = Venue(log, **kw)
    journal = ListJournal(log)
    manager = OrderManager(venue, SYM, limits or OrderLimits(), journal, capacity=64)
    venue.on_trade(0, 100.0, 1.0, 1)
    manager.set_mark(100.0)
    asyncio.run(manager.refresh_balance())
    return venue, manager, journal, log


def tick(venue, manager, ts, price, amount=10.0):
    """One trade at the venue, its fills and its price to the manager (as the live loop does)."""
    fills = venue.on_trade(ts, price, amount, 1)
    asyncio.run(manager.on_fills(fills))
    asyncio.run(manager.on_price(price, ts))
    return fills


def open_at_venue(venue):
    return {s.client_id: s for s in asyncio.run(venue.fetch_open_orders(SYM))}


# ---------------------------------------------------------------------------------------------------


def test_limits_config_and_helpers():
    with pytest.raises(ConfigError, match="max_position"):
        OrderLimits(max_position=-1)
    with pytest.raises(ConfigError, match="allow_short"):
        OrderLimits(allow_short=1)
    assert risk_reasons(4 | 32) == ("max_notional", "sell_exceeds_position")
    assert from_lots(3, 0.1) == 0.3 and to_lots(0.3, 0.1) == 3
    assert len(new_client_id()) <= 36 and new_client_id() != new_client_id()
    with pytest.raises(ValueError, match="price"):
        order(SYM, 1, "limit", 1.0)
    with pytest.raises(ValueError, match="expire_ts"):
        order(SYM, 1, "limit", 1.0, price=1.0, tif="GTD")
    with pytest.raises(ValueError, match="take_profit"):
        bracket(SYM, 1, 1.0, take_profit=90.0, stop_loss=95.0)


def test_submit_journal_before_exchange_and_position_from_fills():
    venue, manager, journal, log = setup()
    req = order(SYM, 1, "market", 0.5)
    state = asyncio.run(manager.submit(req))
    assert state.status == "open"
    assert log.index(("intent", req.client_id, None)) < log.index(("create", req.client_id, 0.5)) < \
        log.index(("state", req.client_id, "open"))
    (fill,) = tick(venue, manager, 1, 101.0)
    assert manager.position == 0.5 and manager.state(req.client_id).status == "filled"
    assert manager.quote == pytest.approx(100_000 - 0.5 * 101.0 - fill.fee)
    assert ("fill", req.client_id, fill.trade_id) in log
    asyncio.run(manager.on_fills([fill]))                # the same trade id again: ignored
    assert manager.position == 0.5 and manager.stats["duplicate_fills"] == 1
    assert manager.open_orders == []


def test_pre_trade_denials_never_reach_the_venue():
    venue, manager, journal, log = setup(OrderLimits(max_position=1.0, max_notional=150.0))
    cases = [(order(SYM, 1, "market", 1.6), "max_notional"),          # and max_position: both named
             (order(SYM, -1, "market", 0.1), "sell_exceeds_position"),
             (order(SYM, 1, "limit", 1.2, price=100.0), "max_position")]
    for req, reason in cases:
        with pytest.raises(OrderRejected) as exc:
            asyncio.run(manager.submit(req))
        assert exc.value.reason == reason
    assert manager.check(order(SYM, 1, "market", 1.6)) == ("max_notional", "max_position")
    assert not [e for e in log if e[0] in ("intent", "create")]
    poor = setup(balances={"USDT": 50.0})[1]
    with pytest.raises(OrderRejected) as exc:
        asyncio.run(poor.submit(order(SYM, 1, "limit", 1.0, price=100.0)))
    assert exc.value.reason == "insufficient_balance"


def test_bracket_end_to_end_entry_then_exits_then_take_profit_cancels_stop():
    venue, manager, journal, log = setup()
    group = bracket(SYM, 1, 0.4, entry_price=None, take_profit=110.0, stop_loss=95.0)
    entry, tp, sl = (leg.client_id for leg in group.legs)
    states = asyncio.run(manager.submit_group(*group))
    assert [s.status for s in states] == ["open", "pending", "pending"]
    assert set(open_at_venue(venue)) == {entry}            # exits held client-side
    tick(venue, manager, 1, 100.0)                         # entry fills: exits go live for 0.4
    assert manager.position == pytest.approx(0.4)
    at_venue = open_at_venue(venue)
    assert set(at_venue) == {tp} and at_venue[tp].amount == 0.4   # the stop-loss is watched here
    assert ("intent", tp, group.group_id) in log
    assert manager.state(sl).status == "open" and manager.state(sl).amount == pytest.approx(0.4)
    tick(venue, manager, 2, 105.0)                         # the take-profit becomes active
    tick(venue, manager, 3, 111.0)                         # through it
    assert manager.position == pytest.approx(0.0)
    assert open_at_venue(venue) == {}
    assert manager.state(tp).status == "filled"
    assert manager.state(sl).status == "canceled" and manager.state(sl).reason == "oco_sibling_filled"
    assert not [e for e in log if e[0] == "create" and e[1] == sl]
    assert manager.open_orders == []


def test_bracket_stop_loss_triggers_client_side():
    venue, manager, journal, log = setup()
    group = bracket(SYM, 1, 0.4, entry_price=None, take_profit=110.0, stop_loss=95.0)
    entry, tp, sl = (leg.client_id for leg in group.legs)
    asyncio.run(manager.submit_group(*group))
    tick(venue, manager, 1, 100.0)
    tick(venue, manager, 2, 96.0)
    assert set(open_at_venue(venue)) == {tp}
    tick(venue, manager, 3, 94.5)                          # through the stop: TP cancelled, market sell out
    assert log.index(("cancel", tp)) < log.index(("create", sl, 0.4))
    assert set(open_at_venue(venue)) == {sl}
    (fill,) = tick(venue, manager, 4, 94.0)
    assert (fill.client_id, fill.price) == (sl, 94.0) and manager.position == pytest.approx(0.0)
    assert manager.state(sl).status == "filled" and manager.state(tp).status == "canceled"
    assert open_at_venue(venue) == {} and manager.open_orders == []


def test_bracket_partial_entry_fills_grow_the_exits():
    venue, manager, journal, log = setup(participation=0.1)
    group = bracket(SYM, 1, 1.0, entry_price=100.0, take_profit=110.0, stop_loss=90.0)
    entry, tp, sl = (leg.client_id for leg in group.legs)
    asyncio.run(manager.submit_group(*group))
    tick(venue, manager, 1, 100.5, amount=1.0)             # activates above the limit: rests
    tick(venue, manager, 2, 99.5, amount=3.0)              # 0.3 filled
    assert open_at_venue(venue)[tp].amount == 0.3 and manager.state(sl).amount == pytest.approx(0.3)
    tick(venue, manager, 3, 99.5, amount=3.0)              # 0.6: the take-profit replaced for 0.6
    at_venue = open_at_venue(venue)
    assert at_venue[f"{tp}.1"].amount == 0.6 and tp not in at_venue
    assert manager.state(sl).amount == pytest.approx(0.6) and manager.stats["replaced"] == 1
    asyncio.run(manager.cancel(entry))                     # rest of the entry cancelled: exits stay
    assert set(open_at_venue(venue)) == {f"{tp}.1"} and manager.state(sl).status == "open"
    for t, px in ((4, 95.0), (5, 89.0), (6, 88.0)):        # stop-loss hit: 0.6 sold, take-profit cancelled
        tick(venue, manager, t, px)
    assert manager.position == pytest.approx(0.0, abs=1e-12)
    assert open_at_venue(venue) == {}
    assert manager.state(sl).filled == pytest.approx(0.6) and manager.state(tp).status == "canceled"


def test_oco_partial_fill_shrinks_the_stop_leg_then_the_stop_takes_the_rest():
    venue, manager, journal, log = setup(participation=0.25, balances={"USDT": 1_000.0, "BTC": 1.0})
    group = oco(SYM, -1, 1.0, price=110.0, stop_price=90.0)
    a, b = (leg.client_id for leg in group.legs)
    asyncio.run(manager.submit_group(*group))
    tick(venue, manager, 1, 105.0, amount=1.0)             # the limit becomes active
    tick(venue, manager, 2, 111.0, amount=1.0)             # 0.25 of it fills
    assert manager.state(b).amount == pytest.approx(0.75) and set(open_at_venue(venue)) == {a}
    tick(venue, manager, 3, 89.0, amount=1.0)              # the stop: limit cancelled, 0.75 to sell
    assert ("cancel", a) in log and set(open_at_venue(venue)) == {b}
    for t in range(4, 8):
        tick(venue, manager, t, 88.0, amount=1.0)          # 0.25 a trade
    assert manager.position == pytest.approx(0.0) and open_at_venue(venue) == {}
    assert manager.state(b).filled == pytest.approx(0.75) and manager.state(a).filled == pytest.approx(0.25)


def test_oco_of_two_limits_both_rest_and_a_fill_shrinks_the_other_at_the_venue():
    venue, manager, journal, log = setup(participation=0.25, balances={"USDT": 0.0, "BTC": 2.0})
    legs = [order(SYM, -1, "limit", 1.0, price=110.0, client_id="g2-a"),
            order(SYM, -1, "limit", 1.0, price=120.0, client_id="g2-b")]
    asyncio.run(manager.submit_group("oco", legs, "g2"))
    tick(venue, manager, 1, 105.0, amount=1.0)
    tick(venue, manager, 2, 111.0, amount=1.0)             # 0.25 of the first
    at_venue = open_at_venue(venue)
    assert at_venue["g2-a"].amount == 1.0 and at_venue["g2-b.1"].amount == 0.75 and "g2-b" not in at_venue
    tick(venue, manager, 3, 112.0, amount=4.0)             # the rest: the other cancelled
    assert open_at_venue(venue) == {} and manager.position == pytest.approx(1.0)


def test_oto_secondary_sent_after_primary_fills():
    venue, manager, journal, log = setup()
    group = oto(order(SYM, 1, "market", 0.2), order(SYM, -1, "limit", 0.2, price=120.0))
    p, s = (leg.client_id for leg in group.legs)
    asyncio.run(manager.submit_group(*group))
    assert set(open_at_venue(venue)) == {p}
    tick(venue, manager, 1, 100.0)
    assert set(open_at_venue(venue)) == {s}


def test_multileg_rejected_leg_cancels_the_others():
    venue, manager, journal, log = setup()
    venue.on_trade(1, 100.0, 1.0, 1)
    legs = [order(SYM, 1, "limit", 0.1, price=99.0), order(SYM, 1, "limit", 0.1, price=101.0, post_only=True)]
    group = multileg(legs)
    a, b = (leg.client_id for leg in group.legs)
    with pytest.raises(OrderRejected) as exc:
        asyncio.run(manager.submit_group(*group))
    assert exc.value.reason == "post_only_would_take"
    assert ("cancel", a) in log and open_at_venue(venue) == {}
    assert manager.state(a).status == "canceled" and manager.state(b).status == "rejected"


def test_lost_answer_is_unknown_never_resent_and_resolved_by_asking():
    venue, manager, journal, log = setup()
    venue.lose_answer = True
    req = order(SYM, 1, "limit", 0.1, price=95.0)
    state = asyncio.run(manager.submit(req))
    assert state.status == "unknown" and ("state", req.client_id, "unknown") in log
    assert [s.client_id for s in journal.unresolved()] == [req.client_id]
    venue.lose_answer = False
    assert manager.open_orders[0].status == "unknown"
    (resolved,) = asyncio.run(manager.resolve_unknown())
    assert resolved.status == "open"
    assert sum(1 for e in log if e[0] == "create") == 1     # never sent twice
    # the request never arrived: the venue has never seen it -> rejected, nothing at the venue
    venue.down = True
    lost = order(SYM, 1, "limit", 0.1, price=94.0)
    assert asyncio.run(manager.submit(lost)).status == "unknown"
    venue.down = False
    (resolved,) = asyncio.run(manager.resolve_unknown())
    assert (resolved.status, resolved.reason) == ("rejected", "not_found_at_venue")


def test_unknown_order_counts_for_risk_and_takes_fills():
    venue, manager, journal, log = setup(OrderLimits(max_position=0.15))
    venue.lose_answer = True
    req = order(SYM, 1, "market", 0.1)
    asyncio.run(manager.submit(req))
    venue.lose_answer = False
    assert manager.check(order(SYM, 1, "market", 0.1)) == ("max_position",)
    tick(venue, manager, 1, 100.0)                          # it existed after all: its fill lands
    assert manager.position == pytest.approx(0.1) and manager.state(req.client_id).status == "filled"


def test_rate_limited_exit_placement_is_retried():
    venue, manager, journal, log = setup()
    group = bracket(SYM, 1, 0.1, take_profit=110.0, stop_loss=90.0)
    entry, tp, sl = (leg.client_id for leg in group.legs)
    asyncio.run(manager.submit_group(*group))
    venue.rate_limit = 2                                    # the take-profit's placement gets 429s
    tick(venue, manager, 1, 100.0)                          # (placed from on_fills, retried in on_price)
    assert open_at_venue(venue) == {} and manager.state(tp).status == "pending"
    assert manager.state(sl).status == "open"               # the stop-loss protects meanwhile
    tick(venue, manager, 2, 100.0)                          # next call: retried
    # each try under its own client id (a journaled id is never reused), the last one resting
    assert set(open_at_venue(venue)) == {f"{tp}.2"}
    assert [e[1] for e in log if e[0] == "create" and e[1].startswith(tp)] == [tp, f"{tp}.1", f"{tp}.2"]
    assert manager.state(f"{tp}.2").client_id == tp


def test_rate_limited_submit_is_a_rejection():
    venue, manager, journal, log = setup()
    venue.rate_limit = 1
    req = order(SYM, 1, "market", 0.1)
    with pytest.raises(OrderRejected) as exc:
        asyncio.run(manager.submit(req))
    assert exc.value.reason == "rate_limited" and manager.state(req.client_id).status == "rejected"


def test_venue_expiry_of_an_oco_leg_cancels_the_other_at_the_venue():
    venue, manager, journal, log = setup(balances={"USDT": 0.0, "BTC": 1.0})
    expiry = 1_000
    legs = [order(SYM, -1, "limit", 0.5, price=120.0, tif="GTD", expire_ts=expiry, client_id="g1-0"),
            order(SYM, -1, "limit", 0.5, price=130.0, client_id="g1-1")]
    asyncio.run(manager.submit_group("oco", legs, "g1"))
    tick(venue, manager, 500, 100.0)
    tick(venue, manager, expiry, 100.0)                    # the venue expires the limit leg
    state = asyncio.run(venue.fetch_order(legs[0].client_id, SYM))
    assert state.status == "expired"
    asyncio.run(manager.on_states([state]))
    assert manager.state(legs[0].client_id).status == "expired"
    assert ("cancel", legs[1].client_id) in log and open_at_venue(venue) == {}


def test_cancel_bracket_exit_cancels_the_rest_and_cancel_all():
    venue, manager, journal, log = setup()
    group = bracket(SYM, 1, 0.3, entry_price=None, take_profit=110.0, stop_loss=90.0)
    entry, tp, sl = (leg.client_id for leg in group.legs)
    asyncio.run(manager.submit_group(*group))
    tick(venue, manager, 1, 100.0)
    asyncio.run(manager.cancel(tp))
    assert open_at_venue(venue) == {} and manager.state(sl).status == "canceled"
    with pytest.raises(KeyError):
        asyncio.run(manager.cancel("nope"))
    for px in (95.0, 96.0):
        asyncio.run(manager.submit(order(SYM, 1, "limit", 0.01, price=px)))
    assert len(asyncio.run(manager.cancel_all())) == 2 and open_at_venue(venue) == {}


def test_a_fill_racing_a_cancel_moves_the_position_but_never_over_fills():
    venue, manager, journal, log = setup(balances={"USDT": 0.0, "BTC": 2.0})
    legs = [order(SYM, -1, "limit", 1.0, price=110.0, client_id="g3-a"),
            order(SYM, -1, "limit", 1.0, price=105.0, client_id="g3-b")]
    asyncio.run(manager.submit_group("oco", legs, "g3"))
    tick(venue, manager, 1, 100.0)
    # both legs fill at the venue before we hear of either (a fast market), then we learn both
    fills = venue.on_bar(2, 100.0, 111.0, 99.0, 100.0, 100.0)
    assert {f.client_id for f in fills} == {"g3-a", "g3-b"}
    asyncio.run(manager.on_fills(fills))
    assert manager.position == pytest.approx(0.0)          # 2.0 held, 2.0 sold: the venue's truth
    assert manager.stats["race_fills"] == 1
    filled = [manager.state(c).filled for c in ("g3-a", "g3-b")]
    assert sum(filled) == pytest.approx(1.0)                # the group itself never over-fills
    assert not math.isnan(manager.quote)


def test_brackets_over_real_trades_keep_manager_venue_and_journal_in_agreement():
    """Replay real XRP/ETH trades; whenever flat, open a bracket (market entry, take-profit and
    stop-loss 0.3 % away). The manager's position equals the venue's balance, every venue fill was
    journaled once, and no bracket's exits ever exceed its entry's fill."""
    from pathlib import Path

    from bot4jax.data.loaders import load
    path = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "binance_XRP_ETH-trades-2019.json.gz"
    if not path.exists():
        pytest.skip("shared market data not available")
    trades = load(path)
    log = []
    venue = SimulatedVenue("XRP/ETH", {"ETH": 5.0}, price_tick=1e-8, amount_step=1.0, latency_ms=200,
                           participation=0.3, slippage_bps=1.0)
    journal = ListJournal(log)
    manager = OrderManager(venue, "XRP/ETH", OrderLimits(max_position=2_000.0), journal, lot=1.0)
    groups = []

    async def replay():
        await venue.connect()
        for i in range(4_000):
            ts, px = int(trades.ts[i]), float(trades.price[i])
            fills = venue.on_trade(ts, px, float(trades.amount[i]), int(trades.side[i]))
            await manager.on_fills(fills)
            await manager.on_price(px, ts)
            if i % 100 == 0 and not manager.open_orders and abs(manager.position) < 1e-9:
                g = bracket("XRP/ETH", 1, 500.0, take_profit=round(px * 1.003, 8), stop_loss=round(px * 0.997, 8))
                await manager.submit_group(*g)
                groups.append(g)

    asyncio.run(replay())
    venue_fills = asyncio.run(venue.fetch_fills("XRP/ETH"))
    assert len(groups) >= 3 and venue_fills
    assert manager.position == pytest.approx(float(venue.balances_exact()["XRP"]), abs=1e-9)
    assert len(journal.fills) == len(venue_fills)
    for g in groups:
        entry, *exits = (manager.state(leg.client_id) for leg in g.legs)
        assert sum(x.filled for x in exits) <= entry.filled + 1e-9
    closed = [g for g in groups if manager.state(g.legs[0].client_id).status == "filled"
              and all(manager.state(x.client_id).status in FINAL_STATUSES for x in g.legs[1:])]
    assert closed   # at least one bracket ran its whole course


def test_invalid_groups_are_refused_without_leaking_slots():
    venue, manager, journal, log = setup()
    same_side = [order(SYM, 1, "limit", 0.1, price=99.0, client_id="g4-e"),
                 order(SYM, 1, "limit", 0.1, price=101.0, client_id="g4-tp")]
    with pytest.raises(ValueError, match="valid bracket"):
        asyncio.run(manager.submit_group("bracket", same_side, "g4"))
    with pytest.raises(ValueError, match="kind"):
        asyncio.run(manager.submit_group("ladder", same_side, "g5"))
    with pytest.raises(ValueError, match="symbol"):
        asyncio.run(manager.submit(order("ETH/USDT", 1, "market", 0.1)))
    assert manager.open_orders == [] and not [e for e in log if e[0] == "create"]
    assert manager._book.orders["status"].max() == 0         # every staged leg was released
