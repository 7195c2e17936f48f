"""Reconciliation: make the journal agree with the venue, at every start and every reconnect.

After a crash or a dropped connection the journal may lag the venue: an order written as "pending"
may or may not have reached it, an "open" order may have filled, fills may have happened while we
were away. `reconcile` asks the venue and writes what it says, in four steps:

1. Every unresolved journal order on the symbol (pending, open, partially filled, unknown) is looked
   up by client id. One the venue has never seen, journaled as "pending" or "unknown", becomes
   "rejected" with reason "never_reached_venue": the request never arrived, and since its client id
   is now spent it can never arrive later as a second order. One the venue knows takes the venue's
   state. An "open" or "partially_filled" order the venue does not know is reported
   (`missing_at_venue`) and left as it is: that is not ours to guess. A pending or unknown order
   younger than `grace_ms` is left unresolved (`in_flight`): its request may still be on its way (a
   venue accepts a signed request within its receive window, 5-10 s on Binance), so the caller
   reconciles again later. After a restart every order is older than that.
2. Open orders at the venue whose client id starts with our `prefix` but which the journal lacks are
   adopted into the journal (another instance, or a lost journal file) and reported. An open order
   that the journal has as final is reported (`open_but_final_in_journal`): the journal never
   reopens a final order, so a human must look.
3. Fills since the earlier of the journal's last fill on the symbol and the intent of the earliest
   order whose fills may be missing (unresolved, or filled beyond its recorded fills), minus
   `margin_ms`, are fetched and recorded; duplicates are dropped by trade id. Only fills of our
   orders (client id in the journal or with our prefix) are recorded: the journal's position is the
   bot's position, not the account's. A fill of an order of ours the journal lacks adopts that
   order first.

Every change is in the returned `ReconcileReport` and logged as one structured line. Each journal
write is its own transaction, so a reconcile interrupted half way is resumed by the next one.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from bot4jax.execution.base import FINAL_STATUSES, Exchange, OrderNotFound, OrderState
from bot4jax.execution.journal import OrderJournal

log = logging.getLogger("bot4jax.execution.reconcile")

NEVER_REACHED_VENUE = "never_reached_venue"


@dataclass(frozen=True)
class Change:
    """One thing reconciliation changed or found.

    kind: "never_reached_venue" (pending/unknown -> rejected), "updated" (the venue's state written),
    "adopted" (a venue order of ours added to the journal), "fill_added"; reported with nothing
    written: "in_flight" (reconcile again later), "missing_at_venue", "open_but_final_in_journal"."""
    kind: str
    client_id: str
    before: str | None        # journal status before (None: not in the journal)
    after: str | None         # journal status after
    detail: str = ""


@dataclass(frozen=True)
class ReconcileReport:
    symbol: str
    checked: tuple[str, ...]          # client ids of the unresolved orders asked about
    changes: tuple[Change, ...]
    fills_since: int | None           # ms: the `since` passed to fetch_fills
    position: float                   # the journal's position after reconciliation, base currency

    @property
    def clean(self) -> bool:
        """True when the journal already agreed with the venue."""
        return not self.changes

    @property
    def in_flight(self) -> tuple[str, ...]:
        """Client ids still unresolved because they are too recent to call lost: reconcile again."""
        return tuple(c.client_id for c in self.changes if c.kind == "in_flight")

    def of_kind(self, kind: str) -> list[Change]:
        return [c for c in self.changes if c.kind == kind]


def _differs(journal_state: OrderState, venue: OrderState) -> bool:
    tol = 1e-12 * max(1.0, abs(journal_state.amount))
    return (venue.status != journal_state.status or abs(venue.filled - journal_state.filled) > tol
            or (venue.venue_id is not None and venue.venue_id != journal_state.venue_id))


async def _fetch_order(exchange: Exchange, client_id: str, symbol: str) -> OrderState | None:
    try:
        return await exchange.fetch_order(client_id, symbol)
    except OrderNotFound:      # adapters answer "never seen" either way
        return None


async def reconcile(journal: OrderJournal, exchange: Exchange, symbol: str,
                    prefix: str | tuple[str, ...] | None = None, margin_ms: int = 60_000,
                    grace_ms: int = 15_000) -> ReconcileReport:
    """Bring `journal` in line with `exchange` for `symbol` (see the module docstring); returns every
    change. `prefix`: the start(s) of our client ids (None: adopt nothing, record only fills of
    journaled orders). `margin_ms`: how far before the journal's last fill to ask for fills.
    `grace_ms`: how old (journal clock) a pending / unknown order must be before "never seen by the
    venue" may be read as "never reached it". Exchange errors propagate: the caller retries on the
    next reconnect."""
    changes: list[Change] = []

    def note(change: Change) -> None:
        changes.append(change)
        log.warning("reconcile %s: %s %s -> %s %s", change.kind, change.client_id, change.before, change.after,
                    change.detail, extra={"fields": {"event": "reconcile", "symbol": symbol, "kind": change.kind,
                                                     "client_id": change.client_id, "before": change.before,
                                                     "after": change.after, "detail": change.detail}})

    def ours(client_id: str | None) -> bool:
        return bool(client_id) and prefix is not None and client_id.startswith(prefix)

    # 1. Unresolved orders.
    unresolved = [o for o in journal.unresolved() if o.symbol == symbol]
    now = journal.now()
    created = {o.client_id: journal.created_ms(o.client_id) for o in unresolved}
    for mine in unresolved:
        venue = await _fetch_order(exchange, mine.client_id, symbol)
        if venue is None:
            if mine.status in ("pending", "unknown") and now - created[mine.client_id] < grace_ms:
                note(Change("in_flight", mine.client_id, mine.status, mine.status,
                            f"not at the venue yet, written {now - created[mine.client_id]} ms ago; "
                            "reconcile again after the grace period"))
            elif mine.status in ("pending", "unknown"):
                journal.record_state(replace(mine, status="rejected", reason=NEVER_REACHED_VENUE))
                note(Change(NEVER_REACHED_VENUE, mine.client_id, mine.status, "rejected",
                            "the venue has never seen this client id"))
            else:
                note(Change("missing_at_venue", mine.client_id, mine.status, mine.status,
                            "journaled as acknowledged but unknown to the venue; left for a human"))
        elif _differs(mine, venue):
            journal.record_state(venue)
            after = journal.order(mine.client_id)
            note(Change("updated", mine.client_id, mine.status, after.status,
                        f"filled {mine.filled:g} -> {after.filled:g}"))

    # 2. Open orders of ours the journal lacks; open orders the journal thinks are over.
    for venue in await exchange.fetch_open_orders(symbol):
        mine = journal.order(venue.client_id)
        if mine is None:
            if ours(venue.client_id) and journal.adopt(venue):
                note(Change("adopted", venue.client_id, None, venue.status, "open at the venue, not in the journal"))
        elif mine.status in FINAL_STATUSES:
            note(Change("open_but_final_in_journal", venue.client_id, mine.status, mine.status,
                        f"the venue says {venue.status}"))

    # 3. Fills the journal lacks.
    starts = [t for t in (journal.last_fill_ts(symbol), journal.fill_gap_since(symbol)) if t is not None]
    since = max(0, min(starts) - margin_ms) if starts else None
    for fill in await exchange.fetch_fills(symbol, since):
        known = journal.order(fill.client_id) if fill.client_id else None
        if known is None:
            if not ours(fill.client_id):
                continue
            venue = await _fetch_order(exchange, fill.client_id, symbol)
            if venue is not None and journal.adopt(venue):
                note(Change("adopted", fill.client_id, None, venue.status, "a fill of an order not in the journal"))
        if journal.record_fill(fill):
            note(Change("fill_added", fill.client_id, None, None,
                        f"trade {fill.trade_id}: {'buy' if fill.side > 0 else 'sell'} "
                        f"{fill.amount:g} @ {fill.price:g}"))

    report = ReconcileReport(symbol=symbol, checked=tuple(o.client_id for o in unresolved), changes=tuple(changes),
                             fills_since=since, position=journal.position(symbol))
    log.info("reconciled %s: %d unresolved checked, %d changes", symbol, len(report.checked), len(changes),
             extra={"fields": {"event": "reconciled", "symbol": symbol, "checked": len(report.checked),
                               "changes": len(changes)}})
    return report
