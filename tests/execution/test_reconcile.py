"""Reconciliation of the journal with the simulated venue after crashes and disconnects: orders that
never reached the venue, answers that were lost, fills that happened while away, orders of ours the
journal lacks, and contradictions reported for a human."""
from __future__ import annotations

import asyncio
import math
from dataclasses import replace

import pytest

from bot4jax.execution.base import OrderRequest
from bot4jax.execution.journal import OrderJournal
from bot4jax.execution.reconcile import NEVER_REACHED_VENUE, reconcile
from bot4jax.execution.sim_venue import SimulatedVenue

SYM = "BTC/USDT"
MIN = 60_000


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def venue():
    v = SimulatedVenue(SYM, {"USDT": 100_000.0, "BTC": 5.0}, participation=0.1)
    run(v.connect())
    v.on_bar(0, 100.0, 101.0, 99.0, 100.0, 10.0)
    return v


@pytest.fixture
def journal(tmp_path, venue):
    # The journal's clock is the venue's (replay) clock, as in a backtest.
    with OrderJournal(tmp_path / "j.sqlite", clock=lambda: venue.now or 0, durable=False) as j:
        yield j


def bar(venue, i: int, low: float = 99.0, high: float = 101.0, volume: float = 10.0):
    return venue.on_bar(i * MIN, 100.0, high, low, 100.0, volume)


def submit(journal, venue, req: OrderRequest, ack: bool = True):
    """The order manager's protocol: intent on disk, then the call, then the answer."""
    journal.record_intent(req)
    state = run(venue.create_order(req))
    if ack:
        journal.record_state(state)
    return state


def base_position(venue, start: float = 5.0) -> float:
    return float(venue.balances_exact()["BTC"]) - start


def test_nothing_to_do_is_a_clean_report(journal, venue):
    report = run(reconcile(journal, venue, SYM, prefix="b4j"))
    assert report.clean and report.checked == () and report.position == 0.0 and report.fills_since is None


def test_intent_that_never_reached_the_venue_is_rejected_safely(journal, venue):
    journal.record_intent(OrderRequest("b4j-lost", SYM, 1, "market", 0.5))   # crash before the call
    journal.record_intent(OrderRequest("b4j-gone", SYM, 1, "market", 0.5))
    journal.record_state(replace(journal.order("b4j-gone"), status="unknown"))   # the call timed out
    # Too recent to call lost: the request may still be on its way.
    early = run(reconcile(journal, venue, SYM, prefix="b4j"))
    assert early.in_flight == ("b4j-lost", "b4j-gone") and len(early.changes) == 2
    assert [s.status for s in journal.unresolved()] == ["pending", "unknown"]
    bar(venue, 1, volume=0.0)                   # a minute later (the journal runs on the venue clock)
    report = run(reconcile(journal, venue, SYM, prefix="b4j"))
    assert report.checked == ("b4j-lost", "b4j-gone")
    assert [(c.kind, c.client_id, c.before, c.after) for c in report.changes] == [
        (NEVER_REACHED_VENUE, "b4j-lost", "pending", "rejected"),
        (NEVER_REACHED_VENUE, "b4j-gone", "unknown", "rejected")]
    lost = journal.order("b4j-lost")
    assert (lost.status, lost.reason) == ("rejected", NEVER_REACHED_VENUE)
    assert journal.unresolved() == [] and run(venue.fetch_open_orders(SYM)) == []
    assert run(reconcile(journal, venue, SYM, prefix="b4j")).clean


def test_lost_acknowledgement_and_fills_while_away(journal, venue):
    # The order reached the venue but the process died before writing the answer.
    submit(journal, venue, OrderRequest("b4j-a", SYM, 1, "market", 0.5), ack=False)
    submit(journal, venue, OrderRequest("b4j-b", SYM, -1, "limit", 2.5, price=100.5))
    for i in range(1, 3):                       # the venue trades on while we are away
        bar(venue, i, high=101.0)
    report = run(reconcile(journal, venue, SYM, prefix="b4j"))
    a, b = journal.order("b4j-a"), journal.order("b4j-b")
    assert (a.status, a.filled) == ("filled", 0.5)
    # Each bar offers 10% of its volume (1.0); the market buy took 0.5 of the first.
    assert b.status == "partially_filled" and b.filled == pytest.approx(2 * 0.1 * 10.0 - 0.5)
    kinds = [c.kind for c in report.changes]
    assert kinds[:2] == ["updated", "updated"] and set(kinds[2:]) == {"fill_added"}
    assert report.changes[0].before == "pending" and report.changes[0].after == "filled"
    venue_fills = run(venue.fetch_fills(SYM))
    assert [f.trade_id for f in journal.fills(SYM)] == [f.trade_id for f in venue_fills]
    assert kinds.count("fill_added") == len(venue_fills)
    assert report.position == pytest.approx(base_position(venue), abs=1e-12)

    # Reconnect: nothing new, nothing written twice.
    again = run(reconcile(journal, venue, SYM, prefix="b4j"))
    assert again.clean and again.checked == ("b4j-b",)
    # More trading, then another reconnect picks up only the news.
    bar(venue, 5, high=101.0)
    bar(venue, 6, high=101.0)
    news = run(reconcile(journal, venue, SYM, prefix="b4j"))
    assert journal.order("b4j-b").status == "filled" and journal.order("b4j-b").filled == 2.5
    assert [c.kind for c in news.changes].count("fill_added") == len(run(venue.fetch_fills(SYM))) - len(venue_fills)
    assert journal.position(SYM) == pytest.approx(base_position(venue), abs=1e-12)
    assert len({f.trade_id for f in journal.fills(SYM)}) == len(journal.fills(SYM))


def test_fills_already_journaled_are_not_duplicated(journal, venue):
    submit(journal, venue, OrderRequest("b4j-c", SYM, 1, "limit", 3.0, price=99.5))
    got = bar(venue, 1, low=99.0) + bar(venue, 2, low=99.0)
    assert len(got) == 2
    journal.record_fill(got[0])                 # the first fill was written before the crash
    report = run(reconcile(journal, venue, SYM, prefix="b4j"))
    added = report.of_kind("fill_added")
    assert [c.detail.split(":")[0] for c in added] == [f"trade {got[1].trade_id}"]
    assert journal.order("b4j-c").filled == pytest.approx(2.0)
    assert journal.position(SYM) == pytest.approx(2.0)


def test_an_old_fill_behind_newer_ones_is_found(journal, venue):
    # Order a fills at minute 1; its state was written but its fill was not (crash in between).
    # Order b fills at minute 20 and its fill was written. The margin alone would not reach back.
    submit(journal, venue, OrderRequest("b4j-a", SYM, 1, "market", 0.3))
    [fill_a] = bar(venue, 1)
    journal.record_state(run(venue.fetch_order("b4j-a", SYM)))
    for i in range(2, 20):
        bar(venue, i, volume=0.0)
    submit(journal, venue, OrderRequest("b4j-b", SYM, 1, "market", 0.2))
    [fill_b] = bar(venue, 20)
    journal.record_state(run(venue.fetch_order("b4j-b", SYM)))
    journal.record_fill(fill_b)
    report = run(reconcile(journal, venue, SYM, prefix="b4j", margin_ms=1_000))
    assert report.fills_since <= fill_a.ts
    assert [c.detail.split(":")[0] for c in report.of_kind("fill_added")] == [f"trade {fill_a.trade_id}"]
    assert journal.position(SYM) == pytest.approx(0.5)


def test_orders_of_ours_missing_from_the_journal_are_adopted(journal, venue):
    # Another instance (or a lost journal) placed b4j orders; a human placed "man" orders.
    run(venue.create_order(OrderRequest("b4j-other", SYM, 1, "limit", 1.0, price=99.5)))
    run(venue.create_order(OrderRequest("gabc-tp", SYM, -1, "limit", 0.2, price=150.0)))
    run(venue.create_order(OrderRequest("man-1", SYM, 1, "limit", 1.0, price=99.6)))
    run(venue.create_order(OrderRequest("b4j-done", SYM, 1, "market", 0.1)))
    bar(venue, 1, low=99.0, volume=20.0)        # offers 2.0: 0.1 market, 1.0 b4j-other, 0.9 man-1
    report = run(reconcile(journal, venue, SYM, prefix=("b4j", "g")))
    adopted = {c.client_id: c.detail for c in report.of_kind("adopted")}
    assert adopted == {"gabc-tp": "open at the venue, not in the journal",
                       "b4j-done": "a fill of an order not in the journal",
                       "b4j-other": "a fill of an order not in the journal"}
    assert journal.order("man-1") is None
    assert (journal.order("b4j-done").status, journal.order("b4j-other").status) == ("filled", "filled")
    assert journal.order("gabc-tp").status == "open"
    assert [(s.client_id, s.status) for s in journal.unresolved()] == [("gabc-tp", "open")]
    all_fills = run(venue.fetch_fills(SYM))
    assert "man-1" in {f.client_id for f in all_fills}           # a foreign fill exists ...
    ours = [f for f in all_fills if not f.client_id.startswith("man")]
    assert sorted(f.trade_id for f in journal.fills(SYM)) == sorted(f.trade_id for f in ours)
    assert journal.position(SYM) == pytest.approx(math.fsum(f.side * f.amount for f in ours))
    assert {f.client_id for f in journal.fills(SYM)} == {"b4j-other", "b4j-done"}   # ... and is not ours
    # Without a prefix nothing is adopted and no foreign fill is recorded.
    assert run(reconcile(journal, venue, SYM)).clean


def test_contradictions_are_reported_not_guessed(journal, venue):
    # Journaled as acknowledged, but the venue has never heard of it.
    journal.record_intent(OrderRequest("b4j-ghost", SYM, 1, "limit", 1.0, price=90.0))
    st = run(venue.create_order(OrderRequest("b4j-real", SYM, 1, "limit", 1.0, price=90.0)))
    journal.record_state(replace(st, client_id="b4j-ghost", venue_id="999"))
    # Journaled as canceled, but open at the venue.
    submit(journal, venue, OrderRequest("b4j-zombie", SYM, 1, "limit", 1.0, price=91.0))
    journal.record_state(replace(journal.order("b4j-zombie"), status="canceled"))
    report = run(reconcile(journal, venue, SYM, prefix="xyz"))
    assert [(c.kind, c.client_id) for c in report.changes] == [("missing_at_venue", "b4j-ghost"),
                                                                ("open_but_final_in_journal", "b4j-zombie")]
    assert journal.order("b4j-ghost").status == "open"          # left as it was
    assert journal.order("b4j-zombie").status == "canceled"
    assert journal.order("b4j-real") is None                     # not our prefix here: not adopted


def test_other_symbols_are_left_alone(journal, venue):
    journal.record_intent(OrderRequest("b4j-eth", "ETH/USDT", 1, "market", 1.0))
    report = run(reconcile(journal, venue, SYM, prefix="b4j"))
    assert report.clean and journal.order("b4j-eth").status == "pending"
