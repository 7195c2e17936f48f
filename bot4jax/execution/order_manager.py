"""The order manager: pre-trade checks, the journal, and client-side linked orders over any Exchange.

    manager = OrderManager(venue, "BTC/USDT", OrderLimits(max_position=0.5), journal=journal)
    manager.set_mark(last_price)
    await manager.submit(order("BTC/USDT", +1, "market", 0.01))
    await manager.submit_group(*bracket("BTC/USDT", +1, 0.01, take_profit=63_000.0, stop_loss=58_500.0))
    await manager.on_fills(fills)            # from the venue's fill stream / fetch_fills / replay
    await manager.on_price(price, ts)        # every market price: the mark, local stop triggers
    await manager.on_states(states)          # order updates: venue cancels, expiries, rejections

One symbol, one event loop. The order book is the kernel's (kernels/orders_nb.py): every order is a
slot, every linked order a group, amounts are whole lots of `lot` base units.

Journal (base.Journal, optional): `record_intent` before every create_order (also for exits and
replacements the emulation sends), `record_state` after every answer (ack, cancel, rejection,
"unknown" when the answer was lost, venue updates), `record_fill` for every new fill.

Lost answers: ExchangeUnavailable (or any other ExchangeError but a rejection) on create_order marks
the order "unknown": it counts for risk and may fill, and it is never sent again; `resolve_unknown()`
asks the venue (fetch_order) and settles it: found -> its state, never seen -> rejected
("not_found_at_venue"). A RateLimited answer to `submit` / `submit_group` means the venue refused the
request: the order ends "rejected" with reason "rate_limited".

Linked orders are emulated: the venue only ever sees simple orders. When the kernel's group logic
decides (a fill on an OCO leg, an entry fill of a bracket, ...), the manager sends what follows:
released exits and OTO secondaries are placed, cancelled siblings are cancelled at the venue, and a
resized working order is replaced (cancel, then a new order for the new remaining amount with the
client id `<client id>.<n>`).

The stop legs of an OCO and the stop-loss of a bracket are kept here, not at the venue: on a spot
venue every resting sell locks its amount, so a take-profit and a stop-loss for the same coins cannot
both rest there. `on_price` triggers them (buy stop: price >= stop, sell stop: price <= stop): the
resting siblings are cancelled at the venue first (releasing what they lock), then a market order (a
limit order at the stop-limit's price) goes out under the leg's client id. Feed `on_price` every
market price, after the venue's fills for it.

A venue cannot do any of this atomically, so a fill can race a cancel: such a fill still moves the
position (the venue's fills are the truth) but the kernel refuses what would over-fill the order;
`stats["race_fills"]` counts them. Venue calls of the emulation that fail with ExchangeUnavailable or
RateLimited (placements included: an exit is never given up for a rate limit) are queued and retried
by `flush()`, at the start of every call. Fills are de-duplicated by trade id (and by the journal's
record_fill when there is one).
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np

from bot4jax.execution.base import (Exchange, ExchangeError, ExchangeUnavailable, Fill, Journal,
                                    OrderNotFound, OrderRejected, OrderRequest, OrderState, RateLimited)
from bot4jax.execution.orders import (LINK_KINDS, OrderLimits, from_lots, limits_record, risk_reasons, to_lots,
                                      validate_request)
from bot4jax.kernels import orders_nb as nb

log = logging.getLogger(__name__)

_TYPE = {"market": nb.T_MARKET, "limit": nb.T_LIMIT, "stop": nb.T_STOP, "stop_limit": nb.T_STOP_LIMIT}
_TIF = {"GTC": nb.TIF_GTC, "IOC": nb.TIF_IOC, "FOK": nb.TIF_FOK, "GTD": nb.TIF_GTD}
_STATUS = {nb.S_HELD: "pending", nb.S_PENDING: "pending", nb.S_OPEN: "open", nb.S_PARTIAL: "partially_filled",
           nb.S_UNKNOWN: "unknown", nb.S_FILLED: "filled", nb.S_CANCELED: "canceled", nb.S_REJECTED: "rejected",
           nb.S_EXPIRED: "expired"}
_END_STATUS = {"canceled": nb.S_CANCELED, "rejected": nb.S_REJECTED, "expired": nb.S_EXPIRED}
_GROUP_REASONS = {nb.RSN_OCO_FILLED, nb.RSN_GROUP_CANCELED, nb.RSN_PARENT_ENDED, nb.RSN_EXIT_DONE,
                  nb.RSN_REQUESTED}


@dataclass
class _Entry:
    """One logical order (a kernel slot) and the venue orders that carried it."""
    request: OrderRequest
    slot: int
    group_id: str | None
    live_cid: str | None = None      # the venue order now carrying it (None: nothing live at the venue)
    live_lots: int = 0               # remaining amount (lots) that venue order was sent with
    live_filled: int = 0             # the slot's filled lots when it was sent
    venue_id: str | None = None
    cids: list = field(default_factory=list)
    reason: str | None = None        # the venue's reason, when it gave one
    pending_end: tuple | None = None  # (status, filled lots): ended at the venue, its fills still due
    ts: int | None = None
    final_state: OrderState | None = None   # kept after the slot is released
    local: bool = False              # a stop leg watched here, not resting at the venue
    triggered: bool = False          # a local stop whose trigger was hit (its order went to the venue)


class OrderManager:
    """Orders of one symbol on one Exchange; see the module docstring. Not thread-safe."""

    def __init__(self, exchange: Exchange, symbol: str, limits: OrderLimits | None = None,
                 journal: Journal | None = None, *, capacity: int = 1024, lot: float = 1e-8,
                 position: float = 0.0, quote: float = math.inf, mark: float = math.nan):
        if not 0 < lot < math.inf:
            raise ValueError(f"OrderManager: lot must be > 0; got {lot!r}")
        self.exchange, self.symbol, self.journal, self.lot = exchange, symbol, journal, lot
        self.limits = limits if limits is not None else OrderLimits()
        self._book = nb.init_book(capacity)
        self._limits = limits_record(self.limits, lot)
        self._acct = np.zeros(1, nb.ACCOUNT_DTYPE)
        self._lim_rec, self._acct_rec = self._limits[0], self._acct[0]
        self.position, self.quote, self.mark = float(position), float(quote), float(mark)
        self._legs = np.zeros(nb.MAX_LEGS, np.int64)
        self._slots: dict[int, _Entry] = {}
        self._by_cid: dict[str, _Entry] = {}
        self._groups: dict[str, int] = {}
        self._seen: set[str] = set()
        self._retry: list[tuple[str, _Entry]] = []
        self.last_sent_ns = 0
        self.stats = {"race_fills": 0, "duplicate_fills": 0, "foreign_fills": 0, "unknown": 0, "replaced": 0}

    # -- account

    def set_mark(self, price: float) -> None:
        """The last price: market orders are valued at it in the pre-trade check."""
        self.mark = float(price)

    async def on_price(self, price: float, ts: int | None = None) -> None:
        """A new market price: the mark, and the trigger of the stop legs kept here."""
        self.set_mark(price)
        await self.flush()
        hit = []
        for entry in self._slots.values():
            row = self._book.orders[entry.slot]
            if entry.local and not entry.triggered and row["status"] in (nb.S_OPEN, nb.S_PARTIAL):
                if (row["side"] > 0 and price >= row["stop"]) or (row["side"] < 0 and price <= row["stop"]):
                    hit.append(entry)
        for entry in hit:
            if self._book.orders[entry.slot]["status"] not in (nb.S_OPEN, nb.S_PARTIAL):
                continue   # an earlier trigger's group logic ended it
            entry.triggered, entry.ts = True, ts if ts is not None else entry.ts
            g = int(self._book.orders[entry.slot]["group"])
            for k in range(int(self._book.groups[g]["n"])):   # free what the siblings lock at the venue
                sibling = self._slots.get(int(self._book.groups[g]["legs"][k]))
                if sibling is not None and sibling is not entry and sibling.live_cid is not None:
                    await self._do("cancel", sibling)
            await self._do("send", entry)
        self._gc()

    def set_balance(self, position: float | None = None, quote: float | None = None) -> None:
        if position is not None:
            self.position = float(position)
        if quote is not None:
            self.quote = float(quote)

    async def refresh_balance(self) -> None:
        """Position and quote balance from the venue's totals (spot: the base currency held)."""
        base, quote = self.symbol.split("/")
        balances = await self.exchange.fetch_balance()
        self.set_balance(balances[base].total if base in balances else 0.0,
                         balances[quote].total if quote in balances else 0.0)

    # -- views

    def state(self, client_id: str) -> OrderState | None:
        """Our view of a logical order (by its client id or any of its venue client ids)."""
        entry = self._by_cid.get(client_id)
        return None if entry is None else self._view(entry)

    @property
    def open_orders(self) -> list[OrderState]:
        """Logical orders not final yet (held exits included, as "pending")."""
        return [self._view(e) for e in self._slots.values()
                if self._book.orders[e.slot]["status"] < nb.S_FILLED]

    def _view(self, entry: _Entry) -> OrderState:
        if entry.final_state is not None:
            return entry.final_state
        row = self._book.orders[entry.slot]
        filled = int(row["filled"])
        reason = entry.reason or nb.REASON_NAMES[int(row["reason"])] or None
        return OrderState(entry.request.client_id, entry.venue_id, self.symbol, entry.request.side,
                          entry.request.type, from_lots(row["amount"], self.lot), entry.request.price,
                          _STATUS[int(row["status"])], from_lots(filled, self.lot),
                          float(row["notional"]) / filled if filled else None, entry.ts, reason)

    # -- submitting

    def check(self, request: OrderRequest, _exclude: int = -1) -> tuple[str, ...]:
        """The pre-trade denials `request` would get now (empty: it passes)."""
        self._sync_account()
        lots = to_lots(request.amount, self.lot)
        mask = nb.risk_check_nb(self._book, self._lim_rec, self._acct_rec, request.side, _TYPE[request.type], lots,
                                _nan(request.price), _nan(request.stop_price), _exclude)
        return risk_reasons(mask)

    def _sync_account(self) -> None:
        a = self._acct_rec
        a["position"], a["quote"], a["mark"] = self.position, self.quote, self.mark

    def _validate(self, request: OrderRequest) -> int:
        validate_request(request)
        if request.symbol != self.symbol:
            raise ValueError(f"order {request.client_id!r}: symbol {request.symbol!r}, manager trades {self.symbol!r}")
        if request.client_id in self._by_cid:
            raise ValueError(f"order {request.client_id!r}: client id already used")
        lots = to_lots(request.amount, self.lot)
        if lots <= 0:
            raise ValueError(f"order {request.client_id!r}: amount {request.amount} is below the lot {self.lot}")
        return lots

    def _kernel_submit(self, request: OrderRequest, lots: int, hold: bool, checked: bool) -> int:
        """Put one order in the book (risk-checked when `checked`); raises OrderRejected on denial."""
        args = (request.side, _TYPE[request.type], _TIF[request.tif], nb.F_POST_ONLY if request.post_only else 0,
                lots, _nan(request.price), _nan(request.stop_price),
                request.expire_ts if request.expire_ts is not None else nb.NO_EXPIRY, 0, 0, hold)
        if checked:
            self._sync_account()
            slot = nb.risk_submit_nb(self._book, self._lim_rec, self._acct_rec, *args)
        else:
            slot = nb.submit_nb(self._book, *args)
        if slot == nb.RC_RISK:
            reasons = risk_reasons(int(self._book.meta[nb.M_RISK]))
            raise OrderRejected("pre-trade", f"order {request.client_id}: denied ({', '.join(reasons)})", reasons[0])
        if slot == nb.RC_NO_SLOT:
            raise OrderRejected("pre-trade", f"order {request.client_id}: the order book is full", "book_full")
        if slot < 0:
            raise OrderRejected("pre-trade", f"order {request.client_id}: invalid parameters", "invalid_order")
        return slot

    def _track(self, request: OrderRequest, slot: int, group_id: str | None) -> _Entry:
        entry = _Entry(request, slot, group_id)
        self._slots[slot] = entry
        self._by_cid[request.client_id] = entry
        return entry

    async def submit(self, request: OrderRequest) -> OrderState:
        """Check, journal and send one order. Raises OrderRejected (reason: the first pre-trade denial,
        or the venue's) when it does not exist; returns its state otherwise ("unknown" when the
        venue's answer was lost)."""
        await self.flush()
        lots = self._validate(request)
        entry = self._track(request, self._kernel_submit(request, lots, hold=False, checked=True), None)
        try:
            await self._send(entry, raise_rejection=True)
            return self._view(entry)
        finally:
            self._gc()

    async def submit_group(self, kind: str, legs: Sequence[OrderRequest], group_id: str) -> list[OrderState]:
        """A linked order (see bot4jax.execution.orders: oco, bracket, oto, multileg). Pre-trade
        checks: every OCO leg, the bracket's entry, the OTO's primary (its secondary when released),
        multi-leg legs cumulatively. Raises OrderRejected when nothing was sent, or when the venue
        refused a leg (after the group's consequences were sent); returns the legs' states."""
        await self.flush()
        if kind not in LINK_KINDS:
            raise ValueError(f"submit_group: kind must be one of {tuple(LINK_KINDS)}; got {kind!r}")
        if group_id in self._groups:
            raise ValueError(f"submit_group: group id {group_id!r} already used")
        lots = [self._validate(leg) for leg in legs]
        if len({leg.client_id for leg in legs}) != len(legs):
            raise ValueError("submit_group: the legs' client ids must differ")
        slots: list[int] = []
        try:
            if kind == "multileg":
                for leg, n in zip(legs, lots):
                    slots.append(self._kernel_submit(leg, n, hold=False, checked=True))
            else:
                checked = range(len(legs)) if kind == "oco" else (0,)
                for i in checked:
                    reasons = self.check(legs[i])
                    if reasons:
                        raise OrderRejected("pre-trade", f"order {legs[i].client_id}: denied ({', '.join(reasons)})",
                                            reasons[0])
                for leg, n in zip(legs, lots):
                    slots.append(self._kernel_submit(leg, n, hold=True, checked=False))
            self._legs[:len(slots)] = slots
            g = nb.link_nb(self._book, LINK_KINDS[kind], self._legs, len(slots), 0)
            if g < 0:
                raise ValueError(f"submit_group: the legs do not form a valid {kind} "
                                 f"({nb.RC_NAMES.get(g, g)}; see kernels/orders_nb.link_nb)")
        except (OrderRejected, ValueError):
            for s in slots:
                nb.release_nb(self._book, s)
            raise
        self._groups[group_id] = g
        entries = [self._track(leg, s, group_id) for leg, s in zip(legs, slots)]
        rejection = None
        for entry in entries:
            if self._book.orders[entry.slot]["status"] == nb.S_PENDING and entry.live_cid is None:
                try:
                    await self._send(entry, raise_rejection=True)
                except OrderRejected as exc:
                    rejection = rejection or exc
        self._gc()
        if rejection is not None:
            raise rejection
        return [self._view(e) for e in entries]

    async def _send(self, entry: _Entry, raise_rejection: bool = False) -> None:
        """Journal the intent, create the venue order for the entry's remaining amount, record the
        answer and act on what the kernel decides."""
        row = self._book.orders[entry.slot]
        if self._keeps_local(entry) and not entry.triggered:
            entry.local = True   # watched by on_price; nothing is sent
            nb.activate_nb(self._book, entry.slot, entry.ts or 0)
            return
        remaining = int(row["amount"] - row["filled"])
        request = entry.request
        if entry.triggered:   # the stop fired: it goes out as a market (stop-limit: limit) order
            request = replace(request, type="market" if request.type == "stop" else "limit", stop_price=None,
                              price=None if request.type == "stop" else request.price)
        if entry.cids:   # a replacement: a new client id, the remaining amount
            request = replace(request, client_id=f"{request.client_id}.{len(entry.cids)}",
                              amount=from_lots(remaining, self.lot))
        elif to_lots(request.amount, self.lot) != remaining:
            request = replace(request, amount=from_lots(remaining, self.lot))
        entry.cids.append(request.client_id)
        self._by_cid[request.client_id] = entry
        entry.live_cid, entry.live_lots, entry.live_filled = request.client_id, remaining, int(row["filled"])
        if self.journal is not None:
            self.journal.record_intent(request, entry.group_id)
        try:
            self.last_sent_ns = time.perf_counter_ns()   # "order out": the decision latency ends here
            state = await self.exchange.create_order(request)
        except RateLimited as exc:
            if not raise_rejection:   # a placement of the emulation: not given up, retried by flush()
                entry.live_cid = None  # the retry goes out under a new client id: each id is journaled once
                self._record(OrderState(request.client_id, None, self.symbol, request.side, request.type,
                                        request.amount, request.price, "rejected", reason="rate_limited"))
                raise
            await self._venue_refused(entry, request, "rate_limited", str(exc), raise_rejection)
            return
        except OrderRejected as exc:
            await self._venue_refused(entry, request, exc.reason, str(exc), raise_rejection)
            return
        except ExchangeError as exc:   # unavailable, or anything else: the order's fate is unknown
            nb.mark_unknown_nb(self._book, entry.slot, 0)
            self.stats["unknown"] += 1
            log.warning("order %s: no answer from the venue (%s); marked unknown", request.client_id, exc)
            self._record(OrderState(request.client_id, None, self.symbol, request.side, request.type,
                                    request.amount, request.price, "unknown", reason=type(exc).__name__))
            return
        entry.venue_id, entry.ts = state.venue_id, state.ts
        self._record(state)
        if self._book.orders[entry.slot]["status"] in (nb.S_PENDING, nb.S_UNKNOWN):
            nb.activate_nb(self._book, entry.slot, state.ts or 0)
        if state.status in _END_STATUS:
            await self._venue_state(entry, state)

    async def _venue_refused(self, entry, request, reason, message, raise_rejection):
        entry.live_cid, entry.reason = None, reason
        self._record(OrderState(request.client_id, None, self.symbol, request.side, request.type, request.amount,
                                request.price, "rejected", reason=reason))
        nb.end_nb(self._book, entry.slot, nb.S_REJECTED, nb.RSN_VENUE, 0)
        await self._act(origin=entry.slot)
        if raise_rejection:
            raise OrderRejected(self.exchange.name, message, reason)

    def _keeps_local(self, entry: _Entry) -> bool:
        if entry.request.type not in ("stop", "stop_limit") or entry.group_id is None:
            return False
        return int(self._book.groups[self._book.orders[entry.slot]["group"]]["kind"]) in (nb.G_OCO, nb.G_BRACKET)

    def _record(self, state: OrderState) -> None:
        if self.journal is not None:
            self.journal.record_state(state)

    # -- cancelling

    async def cancel(self, client_id: str) -> OrderState:
        """Cancel a logical order (its group reacts: an OCO leg takes the others, a bracket exit the
        whole bracket, ...). A held exit is cancelled without a venue call. Raises KeyError for an
        unknown client id; ExchangeUnavailable when the venue could not be asked (nothing changed)."""
        await self.flush()
        entry = self._by_cid.get(client_id)
        if entry is None:
            raise KeyError(f"cancel: no order with client id {client_id!r}")
        if entry.final_state is not None or self._book.orders[entry.slot]["status"] >= nb.S_FILLED:
            return self._view(entry)
        if entry.live_cid is not None:
            try:
                state = await self.exchange.cancel_order(entry.live_cid, self.symbol)
            except OrderNotFound:   # gone at the venue: ask what became of it
                state = await self.exchange.fetch_order(entry.live_cid, self.symbol)
                if state is not None:
                    self._record(state)
                    await self._venue_state(entry, state)
                self._gc()
                return self._view(entry)
            self._record(state)
            entry.live_cid = None   # fills still on their way arrive through on_fills
        nb.cancel_nb(self._book, entry.slot, 0)
        await self._act(origin=entry.slot)
        view = self._view(entry)
        self._gc()
        return view

    async def cancel_all(self) -> list[OrderState]:
        """Cancel every open logical order; returns their states."""
        out = []
        for entry in list(self._slots.values()):
            if self._book.orders[entry.slot]["status"] < nb.S_FILLED:
                out.append(await self.cancel(entry.request.client_id))
        return out

    # -- what the venue tells us

    async def on_fills(self, fills: Sequence[Fill]) -> list[Fill]:
        """Apply the venue's fills (duplicates by trade id ignored); returns the new ones. The
        position and quote balance move by every new fill of this symbol; the kernel's group logic
        runs for each and its consequences are sent to the venue."""
        await self.flush()
        base, quote = self.symbol.split("/")
        new, todo = [], []
        for fill in fills:
            if fill.symbol != self.symbol:
                continue
            if fill.trade_id in self._seen or (self.journal is not None and not self.journal.record_fill(fill)):
                self._seen.add(fill.trade_id)
                self.stats["duplicate_fills"] += 1
                continue
            self._seen.add(fill.trade_id)
            new.append(fill)
            self.position += fill.side * fill.amount
            self.quote -= fill.side * fill.amount * fill.price
            if fill.fee_currency == quote:
                self.quote -= fill.fee
            elif fill.fee_currency == base:
                self.position -= fill.fee
            entry = self._by_cid.get(fill.client_id)
            if entry is None or entry.final_state is not None:
                self.stats["foreign_fills" if entry is None else "race_fills"] += 1
                log.warning("fill %s for %s: no working order of ours takes it", fill.trade_id, fill.client_id)
                continue
            entry.ts = fill.ts
            rc = nb.apply_fill_nb(self._book, entry.slot, to_lots(fill.amount, self.lot), fill.price, fill.ts)
            if rc != nb.RC_OK:
                self.stats["race_fills"] += 1
                log.warning("fill %s on %s: %s (a fill raced a cancel or resize)", fill.trade_id, fill.client_id,
                            nb.RC_NAMES.get(rc, rc))
            todo += self._collect(origin=entry.slot)
            if entry.pending_end is not None:
                await self._run(todo)
                todo = []
                await self._settle_pending_end(entry)
        await self._run(todo)
        self._gc()
        return new

    async def on_states(self, states: Sequence[OrderState]) -> None:
        """Apply the venue's order updates: acks open our pending orders; cancels, expiries and
        rejections end them (with the group's consequences). Updates for replaced venue orders and
        other symbols are ignored."""
        await self.flush()
        for state in states:
            entry = self._by_cid.get(state.client_id)
            if state.symbol != self.symbol or entry is None or entry.final_state is not None:
                continue
            self._record(state)
            if state.client_id != entry.live_cid:
                continue
            await self._venue_state(entry, state)
        self._gc()

    async def _venue_state(self, entry: _Entry, state: OrderState) -> None:
        entry.venue_id = state.venue_id or entry.venue_id
        entry.ts = state.ts if state.ts is not None else entry.ts
        st = int(self._book.orders[entry.slot]["status"])
        if state.status in ("open", "partially_filled", "filled") and st in (nb.S_PENDING, nb.S_UNKNOWN):
            nb.activate_nb(self._book, entry.slot, state.ts or 0)
        elif state.status in _END_STATUS:
            entry.live_cid = None
            entry.reason = state.reason or entry.reason
            seen = int(self._book.orders[entry.slot]["filled"]) - entry.live_filled
            venue_filled = to_lots(state.filled, self.lot)
            entry.pending_end = (state.status, venue_filled)
            if venue_filled > seen:
                return   # its fills have not reached us yet: end it once they have
            await self._settle_pending_end(entry)

    async def _settle_pending_end(self, entry: _Entry) -> None:
        if entry.pending_end is None:
            return
        status, venue_filled = entry.pending_end
        if int(self._book.orders[entry.slot]["filled"]) - entry.live_filled < venue_filled:
            return
        entry.pending_end = None
        if self._book.orders[entry.slot]["status"] < nb.S_FILLED and entry.live_cid is None:
            reason = nb.RSN_EXPIRED if status == "expired" else nb.RSN_VENUE
            nb.end_nb(self._book, entry.slot, _END_STATUS[status], reason, entry.ts or 0)
            await self._act(origin=entry.slot)

    async def resolve_unknown(self) -> list[OrderState]:
        """Ask the venue about every order in the unknown state; returns their states after."""
        out = []
        for entry in list(self._slots.values()):
            if self._book.orders[entry.slot]["status"] != nb.S_UNKNOWN or entry.live_cid is None:
                continue
            try:
                state = await self.exchange.fetch_order(entry.live_cid, self.symbol)
            except ExchangeError as exc:
                log.warning("order %s: still unknown (%s)", entry.live_cid, exc)
                continue
            if state is None:   # the venue never saw it: it does not exist
                self._record(OrderState(entry.live_cid, None, self.symbol, entry.request.side, entry.request.type,
                                        from_lots(entry.live_lots, self.lot), entry.request.price, "rejected",
                                        reason="not_found_at_venue"))
                entry.live_cid, entry.reason = None, "not_found_at_venue"
                nb.end_nb(self._book, entry.slot, nb.S_REJECTED, nb.RSN_NOT_FOUND, 0)
                await self._act(origin=entry.slot)
            else:
                self._record(state)
                await self._venue_state(entry, state)
            out.append(self._view(entry))
        self._gc()
        return out

    # -- the emulation: kernel events -> venue calls

    async def _act(self, origin: int) -> None:
        """Send the venue what the last kernel call decided. `origin`: the slot whose own change the
        caller has already dealt with at the venue."""
        await self._run(self._collect(origin))

    async def _run(self, todo: list) -> None:
        """Carry out venue actions in order, each (action, order) once: every action re-reads the
        kernel's current state, so a batch's repeated resizes become one replacement."""
        done = set()
        for action, entry in todo:
            if (action, id(entry)) not in done:
                done.add((action, id(entry)))
                await self._do(action, entry)

    def _collect(self, origin: int) -> list:
        book = self._book
        todo = []
        for e in book.events[:book.meta[nb.M_NEVENTS]]:
            kind, slot, reason = int(e["kind"]), int(e["slot"]), int(e["reason"])
            entry = self._slots.get(slot)
            if entry is None:
                continue
            if kind == nb.EV_RELEASED:
                todo.append(("place", entry))
            elif kind == nb.EV_RESIZED and entry.live_cid is not None:
                todo.append(("replace", entry))
            elif kind in (nb.EV_CANCELED, nb.EV_REJECTED, nb.EV_EXPIRED):
                if slot != origin and entry.live_cid is not None and reason in _GROUP_REASONS:
                    todo.append(("cancel", entry))
        return todo

    async def _do(self, action: str, entry: _Entry) -> None:
        if entry.final_state is not None:   # finished and its slot freed (a stale retry)
            return
        try:
            if action == "place":
                if self._book.orders[entry.slot]["status"] == nb.S_PENDING and entry.live_cid is None:
                    await self._place_released(entry)
            elif action == "send":   # a triggered local stop or a replacement whose order has not gone out
                if self._book.orders[entry.slot]["status"] in (nb.S_OPEN, nb.S_PARTIAL) and entry.live_cid is None:
                    await self._send(entry)
            elif action == "cancel":
                await self._cancel_live(entry)
            elif action == "replace":
                row = self._book.orders[entry.slot]
                remaining = int(row["amount"] - row["filled"])
                sent_remaining = entry.live_lots - (int(row["filled"]) - entry.live_filled)
                if entry.live_cid is not None and remaining != sent_remaining and row["status"] < nb.S_FILLED:
                    await self._cancel_live(entry)
                    if entry.live_cid is None and self._book.orders[entry.slot]["status"] < nb.S_FILLED:
                        self.stats["replaced"] += 1
                        await self._send(entry)
        except (ExchangeUnavailable, RateLimited) as exc:
            log.warning("%s of %s failed (%s); will retry", action, entry.request.client_id, exc)
            if action == "replace" and entry.live_cid is None:
                action = "send"   # the old order is cancelled: what is left is sending the new one
            self._retry.append((action, entry))

    async def _place_released(self, entry: _Entry) -> None:
        """A released exit or OTO secondary; the OTO secondary is risk-checked first (a bracket's
        exits are covered by the entry's fill)."""
        group = self._book.groups[self._book.orders[entry.slot]["group"]]
        if group["kind"] == nb.G_OTO:
            reasons = self.check(entry.request, _exclude=entry.slot)
            if reasons:
                entry.reason = reasons[0]
                nb.end_nb(self._book, entry.slot, nb.S_REJECTED, nb.RSN_RISK, 0)
                await self._act(origin=entry.slot)
                return
        await self._send(entry)

    async def _cancel_live(self, entry: _Entry) -> None:
        cid = entry.live_cid
        try:
            state = await self.exchange.cancel_order(cid, self.symbol)
        except OrderNotFound:
            state = await self.exchange.fetch_order(cid, self.symbol)
        entry.live_cid = None
        if state is not None:
            self._record(state)

    async def flush(self) -> None:
        """Retry the emulation's venue calls that failed for want of the venue."""
        todo, self._retry = self._retry, []
        for action, entry in todo:
            await self._do(action, entry)

    # -- bookkeeping

    def _gc(self) -> None:
        """Free the kernel slots of finished orders (groups once all their legs are final); their
        last state stays readable through state()."""
        book = self._book
        done_groups = [gid for gid, g in self._groups.items() if book.groups[g]["live"] == 0]
        for gid in done_groups:
            g = self._groups.pop(gid)
            for k in range(int(book.groups[g]["n"])):
                self._freeze(book.groups[g]["legs"][k])
            nb.release_group_nb(book, g)
        for slot, entry in list(self._slots.items()):
            if entry.group_id is None and book.orders[slot]["status"] >= nb.S_FILLED and entry.pending_end is None:
                self._freeze(slot)
                nb.release_nb(book, slot)

    def _freeze(self, slot: int) -> None:
        entry = self._slots.pop(int(slot), None)
        if entry is not None:
            entry.final_state = self._view(entry)


def _nan(x: float | None) -> float:
    return math.nan if x is None else float(x)


