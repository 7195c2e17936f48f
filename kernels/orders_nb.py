"""The order state machine (Numba): orders, linked groups, pre-trade risk and venue matching over
preallocated arrays.

    book = init_book(capacity=1024)                       # plain Python, allocates once
    slot = submit_nb(book, SIDE, T_LIMIT, TIF_GTC, 0, lots, price, nan, NO_EXPIRY, ts, ts, False)
    rc   = apply_fill_nb(book, slot, lots, price, ts)     # group logic runs in the same call
    for e in book.events[:book.meta[M_NEVENTS]]: ...      # what the call did (fills, cancels, ...)

State is data (vectorbt style): `OrderBook(orders, groups, events, meta)` is a named tuple of
structured NumPy arrays of fixed capacity (ORDER_DTYPE, GROUP_DTYPE, EVENT_DTYPE, int64 meta). Every
public `*_nb` function mutates the book in place, returns an int (a slot or group index >= 0, or a
result code RC_* < 0, or a count) and lists what it did in `book.events` (reset at the start of each
call, `meta[M_NEVENTS]` entries). No Python objects, no allocation per operation.

Units. Amounts are int64 *lots* (multiples of the caller's amount step, e.g. 1e-8 BTC), so filled
<= amount and "never over-filled" are exact integer facts. Prices are float64 in the quote currency;
the matching kernels also speak int64 *ticks* (multiples of the venue's price tick) and quote *units*
(lot * tick) so a simulated account balances exactly. Times are int64 ms.

Order lifecycle (status)
------------------------
    HELD ----(parent fills: bracket child, OTO secondary)----> PENDING    (event RELEASED)
    PENDING --(venue ack: activate_nb / latency elapsed)-----> OPEN       (event ACTIVATED)
    PENDING/OPEN/PARTIAL --(fill)--> PARTIAL | FILLED                     (events FILL, FILLED)
    any working --(lost answer: mark_unknown_nb)--> UNKNOWN (working: may fill, counts for risk)
    HELD/working --(cancel, reject, expiry, group logic)--> CANCELED | REJECTED | EXPIRED
"Working" is PENDING, OPEN, PARTIAL or UNKNOWN: such an order may exist at the venue and may fill.
FILLED, CANCELED, REJECTED and EXPIRED are final: nothing changes a final order (a fill on one is
refused with RC_NOT_WORKING and applies nothing).

Linked groups (link_nb over legs submitted with hold=True)
----------------------------------------------------------
OCO       n >= 2 legs of equal amount A, all working at once; they share the capacity A. After a fill
          the group's remainder is r = A - sum(filled); every other working leg is resized to
          filled_j + r (event RESIZED: "a partial fill shrinks the siblings") and cancelled when
          r = 0 (reason OCO_FILLED), in the same call. A leg cancelled, rejected or expired ends the
          whole group (GROUP_CANCELED).
BRACKET   legs [entry, exit1(, exit2)]: the exits are on the other side and form an OCO whose
          capacity is the entry's filled amount C. Each entry fill releases the held exits (event
          RELEASED, amount C) or grows them to filled_j + (C - exits filled) (RESIZED). When the exits
          have filled C the bracket is done: the other exit and the entry's unfilled rest are
          cancelled (OCO_FILLED, EXIT_DONE). The entry ending unfilled cancels the exits
          (PARENT_ENDED); ending partly filled leaves them sized to what was filled. An exit
          cancelled or rejected by anyone cancels the rest of the bracket. So exits never sell more
          than the entry bought.
OTO       legs [primary, secondary]: the secondary is held until the primary is completely filled
          (then RELEASED); the primary ending otherwise cancels it (PARENT_ENDED).
MULTILEG  n >= 2 legs submitted and cancelled together: all released at once, and any leg ending
          unfilled (cancel, reject, expiry) cancels the other working legs (GROUP_CANCELED). Fills
          do not affect the other legs.
`meta[M_DROPPED]` counts events that did not fit (never expected: the event buffer is sized at
init for the worst single call).

Pre-trade risk (risk_check_nb, risk_submit_nb): a bitmask of RISK_* denials, 0 = accepted; the
reserved exposure of the open orders counts each OCO's shared capacity once per side and ignores
held legs (their fills are covered by their parent). RISK_NAMES gives the names.

Matching for a simulated venue (match_trade_nb, match_bar_nb): see the docstring of _segment.
"""
from __future__ import annotations

import math
from collections import namedtuple

import numpy as np
from numba import njit

_NB = dict(cache=True, nogil=True)

# order types, time in force (same order as bot4jax.execution.base.ORDER_TYPES / TIME_IN_FORCE)
T_MARKET, T_LIMIT, T_STOP, T_STOP_LIMIT = 0, 1, 2, 3
TIF_GTC, TIF_IOC, TIF_FOK, TIF_GTD = 0, 1, 2, 3
NO_EXPIRY = np.iinfo(np.int64).max

# flags
F_POST_ONLY = 1     # limit order rejected instead of taking liquidity
F_TRIGGERED = 2     # stop / stop-limit whose trigger has been hit (then acts as market / limit)
F_FRESH = 4         # activated in this matching call, not yet handled (arrival: taker / IOC / FOK)

# statuses
(S_FREE, S_HELD, S_PENDING, S_OPEN, S_PARTIAL, S_UNKNOWN,
 S_FILLED, S_CANCELED, S_REJECTED, S_EXPIRED) = range(10)
STATUS_NAMES = ("free", "held", "pending", "open", "partially_filled", "unknown",
                "filled", "canceled", "rejected", "expired")

# group kinds and leg roles
G_FREE, G_OCO, G_BRACKET, G_OTO, G_MULTILEG = 0, 1, 2, 3, 4
GROUP_NAMES = ("free", "oco", "bracket", "oto", "multileg")
MAX_LEGS = 8
ROLE_NONE, ROLE_LEG, ROLE_PARENT, ROLE_CHILD = 0, 1, 2, 3

# event kinds
EV_FILL, EV_FILLED, EV_CANCELED, EV_REJECTED, EV_EXPIRED, EV_ACTIVATED, EV_RELEASED, EV_RESIZED, \
    EV_TRIGGERED = range(1, 10)
EVENT_NAMES = ("", "fill", "filled", "canceled", "rejected", "expired", "activated", "released",
               "resized", "triggered")

# why an order ended (orders.reason, events.reason)
(RSN_NONE, RSN_REQUESTED, RSN_OCO_FILLED, RSN_GROUP_CANCELED, RSN_PARENT_ENDED, RSN_EXIT_DONE,
 RSN_IOC, RSN_FOK, RSN_POST_ONLY, RSN_INSUFFICIENT_FUNDS, RSN_EXPIRED, RSN_VENUE, RSN_NOT_FOUND,
 RSN_RISK) = range(14)
REASON_NAMES = ("", "requested", "oco_sibling_filled", "group_canceled", "parent_ended",
                "bracket_exit_done", "ioc_remainder", "fok_unfillable", "post_only_would_take",
                "insufficient_funds", "expired", "venue", "not_found_at_venue", "risk_denied")

# result codes (< 0)
RC_OK = 0
RC_NO_SLOT = -1          # the book (or the group table) is full
RC_BAD_SLOT = -2         # index out of range or a free slot
RC_NOT_WORKING = -3      # the order cannot take this operation in its status (final, held, ...)
RC_OVERFILL = -4         # fill larger than the remaining amount: the remaining amount was applied
RC_INVALID = -5          # order or group parameters are invalid
RC_RISK = -6             # risk_submit_nb: denied, the mask is in meta[M_RISK]
RC_NAMES = {0: "ok", -1: "no_slot", -2: "bad_slot", -3: "not_working", -4: "overfill",
            -5: "invalid", -6: "risk_denied"}

# risk denial bits
RISK_INVALID = 1                 # side, amount or price out of domain
RISK_NO_PRICE = 2                # market order and no finite mark price to value it
RISK_MAX_NOTIONAL = 4            # amount * price > max_notional
RISK_MAX_POSITION = 8            # |position + open same-side orders + this| > max_position
RISK_INSUFFICIENT_BALANCE = 16   # buy: open buys + this (with fee) cost more than the quote balance
RISK_SELL_EXCEEDS_POSITION = 32  # sell more than held (open sells included) in a long-only account
RISK_NAMES = {RISK_INVALID: "invalid_order", RISK_NO_PRICE: "no_price", RISK_MAX_NOTIONAL: "max_notional",
              RISK_MAX_POSITION: "max_position", RISK_INSUFFICIENT_BALANCE: "insufficient_balance",
              RISK_SELL_EXCEEDS_POSITION: "sell_exceeds_position"}

# meta indices
M_NEVENTS, M_SEQ, M_CLOCK, M_NEXT_ID, M_HI, M_GHI, M_DROPPED, M_RISK = range(8)
META_SIZE = 8

# venue account (int64 array): quote in units of lot * tick, base in lots
A_QUOTE, A_BASE = 0, 1

ORDER_DTYPE = np.dtype([
    ("status", np.int64), ("side", np.int64), ("type", np.int64), ("tif", np.int64), ("flags", np.int64),
    ("amount", np.int64), ("filled", np.int64),           # lots
    ("price", np.float64), ("stop", np.float64),           # limit price, trigger price (NaN: none)
    ("expire_ts", np.int64), ("submit_ts", np.int64), ("active_ts", np.int64),
    ("seq", np.int64),                                     # matching events seen before submission
    ("group", np.int64), ("role", np.int64),
    ("notional", np.float64),                              # sum of lots * price over fills
    ("reason", np.int64), ("oid", np.int64),              # oid: unique, increasing submission number
])
GROUP_DTYPE = np.dtype([("kind", np.int64), ("n", np.int64), ("legs", np.int64, (MAX_LEGS,)),
                        ("cap", np.int64),                 # OCO: A; bracket: entry filled
                        ("live", np.int64)])               # 1 while a leg is not final
EVENT_DTYPE = np.dtype([("kind", np.int64), ("slot", np.int64), ("group", np.int64),
                        ("lots", np.int64),                # fill size, or new amount (RELEASED, RESIZED)
                        ("ticks", np.int64), ("price", np.float64),
                        ("fee", np.int64),                 # venue fills: quote units
                        ("ts", np.int64), ("reason", np.int64), ("maker", np.int64)])
# the simulated venue's parameters: rates are fractions (7.5 bps -> 7.5e-4)
VENUE_DTYPE = np.dtype([(n, np.float64) for n in ("tick", "lot", "slippage", "fee_maker", "fee_taker",
                                                  "participation", "allow_short")])
# pre-trade limits (lot: base units per lot; fee: fraction added to a buy's cost) and account state
LIMITS_DTYPE = np.dtype([(n, np.float64) for n in ("lot", "max_position", "max_notional", "allow_short",
                                                   "fee")])
ACCOUNT_DTYPE = np.dtype([(n, np.float64) for n in ("position", "quote", "mark")])

OrderBook = namedtuple("OrderBook", ["orders", "groups", "events", "meta"])

EVENTS_PER_ORDER = 4 + 2 * MAX_LEGS   # bound on the events one order causes in one matching call


def init_book(capacity: int = 1024, group_capacity: int | None = None,
              event_capacity: int | None = None) -> OrderBook:
    """An empty book: `capacity` order slots, `group_capacity` groups (default capacity // 2 + 1) and
    an event buffer large enough for the worst single call (default capacity * EVENTS_PER_ORDER)."""
    if isinstance(capacity, bool) or not isinstance(capacity, (int, np.integer)) or capacity < 1:
        raise ValueError(f"capacity must be an integer >= 1; got {capacity!r}")
    groups = capacity // 2 + 1 if group_capacity is None else int(group_capacity)
    events = capacity * EVENTS_PER_ORDER if event_capacity is None else int(event_capacity)
    if groups < 1 or events < 16:
        raise ValueError("group_capacity must be >= 1 and event_capacity >= 16")
    orders = np.zeros(capacity, ORDER_DTYPE)
    orders["group"] = -1
    g = np.zeros(groups, GROUP_DTYPE)
    g["legs"] = -1
    return OrderBook(orders, g, np.zeros(events, EVENT_DTYPE), np.zeros(META_SIZE, np.int64))


def venue_params(tick: float, lot: float, slippage_bps: float, fee_maker_bps: float, fee_taker_bps: float,
                 participation: float, allow_short: bool) -> np.ndarray:
    """A one-element VENUE_DTYPE array (bps converted to fractions)."""
    p = np.zeros(1, VENUE_DTYPE)
    p["tick"], p["lot"], p["slippage"] = tick, lot, slippage_bps * 1e-4
    p["fee_maker"], p["fee_taker"] = fee_maker_bps * 1e-4, fee_taker_bps * 1e-4
    p["participation"], p["allow_short"] = participation, 1.0 if allow_short else 0.0
    return p


# ---------------------------------------------------------------------------------------------------
# small helpers


@njit(**_NB)
def _working(status):
    return S_PENDING <= status <= S_UNKNOWN


@njit(**_NB)
def _emit(book, kind, slot, lots, ticks, price, fee, ts, reason, maker):
    n = book.meta[M_NEVENTS]
    if n >= book.events.shape[0]:
        book.meta[M_DROPPED] += 1
        return
    e = book.events[n]
    e.kind = kind
    e.slot = slot
    e.group = book.orders[slot].group
    e.lots = lots
    e.ticks = ticks
    e.price = price
    e.fee = fee
    e.ts = ts
    e.reason = reason
    e.maker = maker
    book.meta[M_NEVENTS] = n + 1


@njit(**_NB)
def _finish(book, slot, status, reason, ts):
    """Move one order to a final unfilled status and record it; no group logic."""
    o = book.orders[slot]
    o.status = status
    o.reason = reason
    kind = EV_CANCELED
    if status == S_REJECTED:
        kind = EV_REJECTED
    elif status == S_EXPIRED:
        kind = EV_EXPIRED
    _emit(book, kind, slot, o.amount - o.filled, 0, np.nan, 0, ts, reason, 0)


@njit(**_NB)
def _update_live(book, g):
    grp = book.groups[g]
    live = 0
    for k in range(grp.n):
        if book.orders[grp.legs[k]].status < S_FILLED:
            live = 1
    grp.live = live


@njit(**_NB)
def _resize(book, slot, new_amount, ts):
    o = book.orders[slot]
    if new_amount != o.amount:
        o.amount = new_amount
        _emit(book, EV_RESIZED, slot, new_amount, 0, np.nan, 0, ts, RSN_NONE, 0)


@njit(**_NB)
def _release(book, slot, amount, ts):
    """HELD -> PENDING with `amount` lots: the caller should now place it."""
    o = book.orders[slot]
    o.status = S_PENDING
    o.amount = amount
    o.seq = book.meta[M_SEQ]
    o.submit_ts = ts
    o.active_ts = ts
    _emit(book, EV_RELEASED, slot, amount, 0, np.nan, 0, ts, RSN_NONE, 0)


# ---------------------------------------------------------------------------------------------------
# group logic


@njit(**_NB)
def _children_filled(book, grp):
    s = 0
    for k in range(1, grp.n):
        s += book.orders[grp.legs[k]].filled
    return s


@njit(**_NB)
def _after_fill(book, slot, ts):
    """Group consequences of a fill on `slot` (its filled / status already updated)."""
    g = book.orders[slot].group
    if g < 0:
        return
    grp = book.groups[g]
    kind = grp.kind
    if kind == G_OCO:
        total = 0
        for k in range(grp.n):
            total += book.orders[grp.legs[k]].filled
        rem = grp.cap - total
        for k in range(grp.n):
            j = grp.legs[k]
            if j != slot and _working(book.orders[j].status):
                if rem <= 0:
                    _finish(book, j, S_CANCELED, RSN_OCO_FILLED, ts)
                else:
                    _resize(book, j, book.orders[j].filled + rem, ts)
    elif kind == G_BRACKET:
        entry = grp.legs[0]
        if slot == entry:
            grp.cap = book.orders[entry].filled
            rem = grp.cap - _children_filled(book, grp)
            for k in range(1, grp.n):
                j = grp.legs[k]
                st = book.orders[j].status
                if st == S_HELD:
                    _release(book, j, rem, ts)
                elif _working(st):
                    _resize(book, j, book.orders[j].filled + rem, ts)
        else:
            rem = grp.cap - _children_filled(book, grp)
            for k in range(1, grp.n):
                j = grp.legs[k]
                if j != slot and (_working(book.orders[j].status) or book.orders[j].status == S_HELD):
                    if rem <= 0:
                        _finish(book, j, S_CANCELED, RSN_OCO_FILLED, ts)
                    else:
                        _resize(book, j, book.orders[j].filled + rem, ts)
            if rem <= 0 and _working(book.orders[entry].status):
                _finish(book, entry, S_CANCELED, RSN_EXIT_DONE, ts)
    elif kind == G_OTO:
        if slot == grp.legs[0] and book.orders[slot].status == S_FILLED:
            j = grp.legs[1]
            if book.orders[j].status == S_HELD:
                _release(book, j, book.orders[j].amount, ts)
    _update_live(book, g)


@njit(**_NB)
def _after_end(book, slot, ts):
    """Group consequences of `slot` ending unfilled (cancel, reject, expiry by anyone)."""
    g = book.orders[slot].group
    if g < 0:
        return
    grp = book.groups[g]
    kind = grp.kind
    if kind == G_OCO or kind == G_MULTILEG:
        for k in range(grp.n):
            j = grp.legs[k]
            st = book.orders[j].status
            if j != slot and (_working(st) or st == S_HELD):
                _finish(book, j, S_CANCELED, RSN_GROUP_CANCELED, ts)
    elif kind == G_BRACKET:
        entry = grp.legs[0]
        if slot == entry:
            if book.orders[entry].filled == 0:
                for k in range(1, grp.n):
                    j = grp.legs[k]
                    st = book.orders[j].status
                    if _working(st) or st == S_HELD:
                        _finish(book, j, S_CANCELED, RSN_PARENT_ENDED, ts)
        else:
            for k in range(grp.n):
                j = grp.legs[k]
                st = book.orders[j].status
                if j != slot and (_working(st) or st == S_HELD):
                    _finish(book, j, S_CANCELED, RSN_GROUP_CANCELED, ts)
    elif kind == G_OTO:
        if slot == grp.legs[0]:
            j = grp.legs[1]
            if book.orders[j].status == S_HELD:
                _finish(book, j, S_CANCELED, RSN_PARENT_ENDED, ts)
    _update_live(book, g)


@njit(**_NB)
def _end(book, slot, status, reason, ts):
    _finish(book, slot, status, reason, ts)
    _after_end(book, slot, ts)


@njit(**_NB)
def _fill(book, slot, lots, ticks, price, fee, ts, maker):
    """Apply a fill of `lots` (<= remaining) at `price`; status, events and group logic."""
    o = book.orders[slot]
    o.filled += lots
    o.notional += lots * price
    _emit(book, EV_FILL, slot, lots, ticks, price, fee, ts, RSN_NONE, maker)
    if o.filled >= o.amount:
        o.status = S_FILLED
        _emit(book, EV_FILLED, slot, o.filled, 0, np.nan, 0, ts, RSN_NONE, 0)
    else:
        o.status = S_PARTIAL
    _after_fill(book, slot, ts)


# ---------------------------------------------------------------------------------------------------
# public operations


@njit(**_NB)
def valid_order_nb(side, otype, tif, flags, lots, price, stop, expire_ts, ts):
    """True when the parameters describe an order this book accepts."""
    if side != 1 and side != -1:
        return False
    if otype < T_MARKET or otype > T_STOP_LIMIT or tif < TIF_GTC or tif > TIF_GTD or lots <= 0:
        return False
    if otype == T_LIMIT or otype == T_STOP_LIMIT:
        if not (0.0 < price < np.inf):
            return False
    if otype == T_STOP or otype == T_STOP_LIMIT:
        if not (0.0 < stop < np.inf):
            return False
    if flags & F_POST_ONLY:
        if otype != T_LIMIT or tif == TIF_IOC or tif == TIF_FOK:
            return False
    if tif == TIF_GTD and expire_ts <= ts:
        return False
    return True


@njit(**_NB)
def submit_nb(book, side, otype, tif, flags, lots, price, stop, expire_ts, ts, active_ts, hold):
    """Put a new order in the lowest free slot; returns the slot or RC_NO_SLOT / RC_INVALID.

    hold=False: PENDING (sent, waiting for the venue's ack or, in a simulated venue, for
    `active_ts`, the submission time plus latency). hold=True: HELD, a leg staged for link_nb.
    `flags` may carry F_POST_ONLY; `expire_ts` is read for GTD only.
    """
    book.meta[M_NEVENTS] = 0
    if not valid_order_nb(side, otype, tif, flags, lots, price, stop, expire_ts, ts):
        return RC_INVALID
    orders = book.orders
    hi = book.meta[M_HI]
    slot = -1
    for i in range(hi):
        if orders[i].status == S_FREE:
            slot = i
            break
    if slot < 0:
        if hi >= orders.shape[0]:
            return RC_NO_SLOT
        slot = hi
        book.meta[M_HI] = hi + 1
    o = orders[slot]
    o.status = S_HELD if hold else S_PENDING
    o.side = side
    o.type = otype
    o.tif = tif
    o.flags = flags & F_POST_ONLY
    o.amount = lots
    o.filled = 0
    o.price = price
    o.stop = stop
    o.expire_ts = expire_ts if tif == TIF_GTD else NO_EXPIRY
    o.submit_ts = ts
    o.active_ts = active_ts
    o.seq = book.meta[M_SEQ]
    o.group = -1
    o.role = ROLE_NONE
    o.notional = 0.0
    o.reason = RSN_NONE
    o.oid = book.meta[M_NEXT_ID]
    book.meta[M_NEXT_ID] += 1
    return slot


@njit(**_NB)
def link_nb(book, kind, legs, n, ts):
    """Bind legs[:n] (unlinked, HELD or PENDING, never sent) into a group of `kind`; returns the
    group index, or RC_INVALID / RC_NO_SLOT with the legs left as they were (the caller releases
    them). Leg statuses after linking: OCO, MULTILEG all PENDING; BRACKET entry PENDING, exits HELD;
    OTO primary PENDING, secondary HELD. Requirements: OCO n >= 2 legs of equal amount; BRACKET
    n in {2, 3}, exits on the other side with the entry's amount; OTO n == 2; MULTILEG n >= 2.
    """
    book.meta[M_NEVENTS] = 0
    if n < 2 or n > MAX_LEGS or n > legs.shape[0]:
        return RC_INVALID
    if kind == G_BRACKET and n > 3:
        return RC_INVALID
    if kind == G_OTO and n != 2:
        return RC_INVALID
    if kind < G_OCO or kind > G_MULTILEG:
        return RC_INVALID
    orders = book.orders
    for k in range(n):
        s = legs[k]
        if s < 0 or s >= orders.shape[0]:
            return RC_INVALID
        o = orders[s]
        if (o.status != S_HELD and o.status != S_PENDING) or o.group >= 0 or o.filled != 0:
            return RC_INVALID
        for m in range(k):
            if legs[m] == s:
                return RC_INVALID
    first = orders[legs[0]]
    if kind == G_OCO or kind == G_BRACKET:
        for k in range(1, n):
            if orders[legs[k]].amount != first.amount:
                return RC_INVALID
    if kind == G_BRACKET:
        for k in range(1, n):
            if orders[legs[k]].side != -first.side:
                return RC_INVALID
    ghi = book.meta[M_GHI]
    g = -1
    for i in range(ghi):
        if book.groups[i].kind == G_FREE:
            g = i
            break
    if g < 0:
        if ghi >= book.groups.shape[0]:
            return RC_NO_SLOT
        g = ghi
        book.meta[M_GHI] = ghi + 1
    grp = book.groups[g]
    grp.kind = kind
    grp.n = n
    for k in range(MAX_LEGS):
        grp.legs[k] = legs[k] if k < n else -1
    grp.cap = first.amount if kind == G_OCO else 0
    grp.live = 1
    for k in range(n):
        o = orders[legs[k]]
        o.group = g
        child = k > 0 and (kind == G_BRACKET or kind == G_OTO)
        if kind == G_OCO or kind == G_MULTILEG:
            o.role = ROLE_LEG
        elif child:
            o.role = ROLE_CHILD
        else:
            o.role = ROLE_PARENT
        o.status = S_HELD if child else S_PENDING
        o.seq = book.meta[M_SEQ]
    return g


@njit(**_NB)
def _check_slot(book, slot):
    if slot < 0 or slot >= book.orders.shape[0] or book.orders[slot].status == S_FREE:
        return RC_BAD_SLOT
    return RC_OK


@njit(**_NB)
def activate_nb(book, slot, ts):
    """The venue acknowledged the order (or its latency elapsed): PENDING / UNKNOWN -> OPEN
    (PARTIAL when fills came first). OPEN / PARTIAL: no change, RC_OK."""
    book.meta[M_NEVENTS] = 0
    rc = _check_slot(book, slot)
    if rc != RC_OK:
        return rc
    o = book.orders[slot]
    if o.status == S_OPEN or o.status == S_PARTIAL:
        return RC_OK
    if o.status != S_PENDING and o.status != S_UNKNOWN:
        return RC_NOT_WORKING
    o.status = S_PARTIAL if o.filled > 0 else S_OPEN
    _emit(book, EV_ACTIVATED, slot, o.amount, 0, np.nan, 0, ts, RSN_NONE, 0)
    return RC_OK


@njit(**_NB)
def mark_unknown_nb(book, slot, ts):
    """The request left us and no answer came back: PENDING -> UNKNOWN (still working)."""
    book.meta[M_NEVENTS] = 0
    rc = _check_slot(book, slot)
    if rc != RC_OK:
        return rc
    o = book.orders[slot]
    if not _working(o.status):
        return RC_NOT_WORKING
    if o.status == S_PENDING:
        o.status = S_UNKNOWN
    return RC_OK


@njit(**_NB)
def end_nb(book, slot, status, reason, ts):
    """End a working or held order as CANCELED, REJECTED or EXPIRED with `reason`, and apply its
    group's consequences in the same call. RC_NOT_WORKING when it is already final."""
    book.meta[M_NEVENTS] = 0
    rc = _check_slot(book, slot)
    if rc != RC_OK:
        return rc
    if status != S_CANCELED and status != S_REJECTED and status != S_EXPIRED:
        return RC_INVALID
    st = book.orders[slot].status
    if not (_working(st) or st == S_HELD):
        return RC_NOT_WORKING
    _end(book, slot, status, reason, ts)
    return RC_OK


@njit(**_NB)
def cancel_nb(book, slot, ts):
    """Cancel one order on request (reason REQUESTED), with its group's consequences."""
    return end_nb(book, slot, S_CANCELED, RSN_REQUESTED, ts)


@njit(**_NB)
def cancel_group_nb(book, g, ts):
    """Cancel every working or held leg of group `g` (reason REQUESTED); returns how many."""
    book.meta[M_NEVENTS] = 0
    if g < 0 or g >= book.groups.shape[0] or book.groups[g].kind == G_FREE:
        return RC_BAD_SLOT
    grp = book.groups[g]
    count = 0
    for k in range(grp.n):
        j = grp.legs[k]
        st = book.orders[j].status
        if _working(st) or st == S_HELD:
            _finish(book, j, S_CANCELED, RSN_REQUESTED, ts)
            count += 1
    _update_live(book, g)
    return count


@njit(**_NB)
def apply_fill_nb(book, slot, lots, price, ts):
    """A fill of `lots` at `price` on a working order, with its group's consequences in the same call
    (OCO siblings shrunk or cancelled, bracket exits released or grown, OTO secondary released).

    More than the remaining amount: the remaining amount is applied and RC_OVERFILL returned, so no
    order or group ever ends over-filled. Held or final orders: RC_NOT_WORKING, nothing applied.
    """
    book.meta[M_NEVENTS] = 0
    rc = _check_slot(book, slot)
    if rc != RC_OK:
        return rc
    if lots <= 0:
        return RC_INVALID
    o = book.orders[slot]
    if not _working(o.status):
        return RC_NOT_WORKING
    rem = o.amount - o.filled
    q = lots if lots < rem else rem
    _fill(book, slot, q, 0, price, 0, ts, 0)
    return RC_OVERFILL if lots > rem else RC_OK


@njit(**_NB)
def _expire(book, ts):
    count = 0
    orders = book.orders
    for i in range(book.meta[M_HI]):
        o = orders[i]
        if o.tif == TIF_GTD and o.expire_ts <= ts and (_working(o.status) or o.status == S_HELD):
            _end(book, i, S_EXPIRED, RSN_EXPIRED, ts)
            count += 1
    return count


@njit(**_NB)
def expire_nb(book, ts):
    """Expire every GTD order with expire_ts <= ts (with group consequences); returns how many."""
    book.meta[M_NEVENTS] = 0
    return _expire(book, ts)


@njit(**_NB)
def release_nb(book, slot):
    """Free a slot for reuse (the caller has read what it needs; an order never sent, or final)."""
    if slot < 0 or slot >= book.orders.shape[0]:
        return RC_BAD_SLOT
    o = book.orders[slot]
    o.status = S_FREE
    o.group = -1
    return RC_OK


@njit(**_NB)
def release_group_nb(book, g):
    """Free group `g` and all its legs."""
    if g < 0 or g >= book.groups.shape[0]:
        return RC_BAD_SLOT
    grp = book.groups[g]
    for k in range(grp.n):
        release_nb(book, grp.legs[k])
        grp.legs[k] = -1
    grp.kind = G_FREE
    grp.n = 0
    grp.live = 0
    return RC_OK


# ---------------------------------------------------------------------------------------------------
# pre-trade risk


@njit(**_NB)
def _order_price(o, mark):
    if o.type == T_LIMIT or o.type == T_STOP_LIMIT:
        return o.price
    if o.type == T_STOP:
        return o.stop
    return mark


@njit(**_NB)
def _first_working_of_side(book, grp, slot, side):
    """True when `slot` is the first working leg of `side` in its OCO-like set (shared capacity)."""
    start = 1 if grp.kind == G_BRACKET else 0
    for k in range(start, grp.n):
        j = grp.legs[k]
        o = book.orders[j]
        if o.side == side and _working(o.status):
            return j == slot
    return False


@njit(**_NB)
def open_exposure_nb(book, mark, out):
    """Reserved exposure of the working orders: out[0] buy lots, out[1] sell lots, out[2] buy
    notional (lots * price: limit price, stop price, or `mark` for market orders). An OCO's legs
    (and a bracket's exits) of one side share their capacity and count once; held legs not at all."""
    buy = 0
    sell = 0
    notional = 0.0
    orders = book.orders
    for i in range(book.meta[M_HI]):
        o = orders[i]
        if not _working(o.status):
            continue
        g = o.group
        if g >= 0:
            grp = book.groups[g]
            shared = grp.kind == G_OCO or (grp.kind == G_BRACKET and o.role == ROLE_CHILD)
            if shared and not _first_working_of_side(book, grp, i, o.side):
                continue
        rem = o.amount - o.filled
        if o.side > 0:
            buy += rem
            notional += rem * _order_price(o, mark)
        else:
            sell += rem
    out[0] = buy
    out[1] = sell
    out[2] = notional


@njit(**_NB)
def risk_check_nb(book, limits, acct, side, otype, lots, price, stop, exclude):
    """Pre-trade check of a new order against the limits, the account and the open orders; returns
    a bitmask of RISK_* denials (0: accepted). Never raises. `exclude`: a slot left out of the open
    orders (the order being checked, when it is already in the book), -1 for none.

    limits: LIMITS_DTYPE record (lot in base units per lot, max_position in base units, max_notional
    in quote, allow_short 1.0/0.0, fee as a fraction). acct: ACCOUNT_DTYPE record (position in base
    units, signed; quote balance; mark price for market orders). The order is valued at its limit
    price, else its stop price, else the mark. With B, S the reserved buy / sell lots and N the
    reserved buy notional of the open orders (open_exposure_nb), q = lots * lot and P the price:
        max_notional:          q * P > max_notional
        max_position:          buy: position + (B + lots) * lot > max_position
                               sell: position - (S + lots) * lot < -max_position (short allowed),
        sell_exceeds_position: sell, short not allowed: (S + lots) * lot > position
        insufficient_balance:  buy: (N * lot + q * P) * (1 + fee) > quote
    """
    mask = 0
    if (side != 1 and side != -1) or lots <= 0 or otype < T_MARKET or otype > T_STOP_LIMIT:
        return RISK_INVALID
    p = acct.mark
    if otype == T_LIMIT or otype == T_STOP_LIMIT:
        p = price
    elif otype == T_STOP:
        p = stop
    if not (0.0 < p < np.inf):
        return RISK_NO_PRICE if otype == T_MARKET else RISK_INVALID
    lot = limits.lot
    q = lots * lot
    if q * p > limits.max_notional:
        mask |= RISK_MAX_NOTIONAL
    # reserved exposure, inlined (an output array here would be an allocation per call)
    buy = 0
    sell = 0
    notional = 0.0
    orders = book.orders
    for i in range(book.meta[M_HI]):
        o = orders[i]
        if not _working(o.status) or i == exclude:
            continue
        g = o.group
        if g >= 0:
            grp = book.groups[g]
            shared = grp.kind == G_OCO or (grp.kind == G_BRACKET and o.role == ROLE_CHILD)
            if shared and not _first_working_of_side(book, grp, i, o.side):
                continue
        rem = o.amount - o.filled
        if o.side > 0:
            buy += rem
            notional += rem * _order_price(o, acct.mark)
        else:
            sell += rem
    pos = acct.position
    if side > 0:
        if pos + (buy + lots) * lot > limits.max_position:
            mask |= RISK_MAX_POSITION
        if (notional * lot + q * p) * (1.0 + limits.fee) > acct.quote:
            mask |= RISK_INSUFFICIENT_BALANCE
    else:
        if limits.allow_short != 0.0:
            if pos - (sell + lots) * lot < -limits.max_position:
                mask |= RISK_MAX_POSITION
        elif (sell + lots) * lot > pos:
            mask |= RISK_SELL_EXCEEDS_POSITION
    return mask


@njit(**_NB)
def risk_submit_nb(book, limits, acct, side, otype, tif, flags, lots, price, stop, expire_ts, ts,
                   active_ts, hold):
    """risk_check_nb, then submit_nb when accepted. Returns the slot, RC_RISK (mask in
    meta[M_RISK]), RC_INVALID or RC_NO_SLOT."""
    book.meta[M_NEVENTS] = 0
    mask = risk_check_nb(book, limits, acct, side, otype, lots, price, stop, -1)
    book.meta[M_RISK] = mask
    if mask != 0:
        return RC_RISK
    return submit_nb(book, side, otype, tif, flags, lots, price, stop, expire_ts, ts, active_ts, hold)


# ---------------------------------------------------------------------------------------------------
# matching (simulated venue)


@njit(**_NB)
def _fee(notional, rate):
    """Fee in quote units: notional * rate rounded up to a whole unit."""
    x = notional * rate
    f = np.int64(math.floor(x))
    if f < x:
        f += 1
    return f


@njit(**_NB)
def _taker_ticks(cfg, side, p, limit_ticks):
    """Taker fill price in ticks: p moved against the order by the slippage, rounded against it
    (buy up, sell down), never beyond the limit (limit_ticks <= 0: none)."""
    if side > 0:
        t = np.int64(math.ceil(p * (1.0 + cfg.slippage) / cfg.tick - 1e-9))
        if limit_ticks > 0 and t > limit_ticks:
            t = limit_ticks
    else:
        t = np.int64(math.floor(p * (1.0 - cfg.slippage) / cfg.tick + 1e-9))
        if limit_ticks > 0 and t < limit_ticks:
            t = limit_ticks
    if t < 1:
        t = 1
    return t


@njit(**_NB)
def _affordable(cfg, acct, side, ticks, lots, maker):
    """The largest q <= lots the account can settle at `ticks`: a buy pays q*ticks plus the fee from
    the quote balance; a sell delivers q lots of base (any amount when shorting is allowed)."""
    if side < 0:
        if cfg.allow_short != 0.0:
            return lots
        base = acct[A_BASE]
        return lots if lots < base else (base if base > 0 else 0)
    rate = cfg.fee_maker if maker else cfg.fee_taker
    quote = acct[A_QUOTE]
    if lots * ticks + _fee(lots * ticks, rate) <= quote:
        return lots
    q = np.int64(math.floor(quote / (ticks * (1.0 + rate))))
    if q > lots:
        q = lots
    while q > 0 and q * ticks + _fee(q * ticks, rate) > quote:
        q -= 1
    return q


@njit(**_NB)
def _venue_fill(book, cfg, acct, slot, lots, ticks, maker, ts):
    """Settle a fill of up to `lots` at `ticks` against the account; returns the lots filled. What
    the account cannot settle is cancelled (INSUFFICIENT_FUNDS)."""
    o = book.orders[slot]
    q = _affordable(cfg, acct, o.side, ticks, lots, maker)
    if q > 0:
        notional = q * ticks
        fee = _fee(notional, cfg.fee_maker if maker else cfg.fee_taker)
        if o.side > 0:
            acct[A_QUOTE] -= notional + fee
            acct[A_BASE] += q
        else:
            acct[A_QUOTE] += notional - fee
            acct[A_BASE] -= q
        _fill(book, slot, q, ticks, ticks * cfg.tick, fee, ts, 1 if maker else 0)
    if q < lots and _working(book.orders[slot].status):
        _end(book, slot, S_CANCELED, RSN_INSUFFICIENT_FUNDS, ts)
    return q


@njit(**_NB)
def _limit_ticks(cfg, o):
    if o.type == T_LIMIT or o.type == T_STOP_LIMIT:
        return np.int64(round(o.price / cfg.tick))
    return np.int64(0)


@njit(**_NB)
def _arrive(book, cfg, acct, slot, p, liq, ts):
    """An order meets the market at price p (activation, or its stop's trigger): takes liquidity if
    marketable, applies post-only, IOC and FOK; returns the liquidity left."""
    o = book.orders[slot]
    lt = _limit_ticks(cfg, o)
    is_limit = lt > 0
    marketable = True
    if is_limit:
        marketable = o.price >= p if o.side > 0 else o.price <= p
    if marketable and (o.flags & F_POST_ONLY):
        _end(book, slot, S_REJECTED, RSN_POST_ONLY, ts)
        return liq
    if not marketable:
        if o.tif == TIF_IOC:
            _end(book, slot, S_CANCELED, RSN_IOC, ts)
        elif o.tif == TIF_FOK:
            _end(book, slot, S_CANCELED, RSN_FOK, ts)
        return liq
    ticks = _taker_ticks(cfg, o.side, p, lt)
    rem = o.amount - o.filled
    q = rem if rem < liq else liq
    if o.tif == TIF_FOK:
        if q < rem or _affordable(cfg, acct, o.side, ticks, rem, False) < rem:
            _end(book, slot, S_CANCELED, RSN_FOK, ts)
            return liq
    if q > 0:
        liq -= _venue_fill(book, cfg, acct, slot, q, ticks, False, ts)
    if o.tif == TIF_IOC and _working(book.orders[slot].status):
        _end(book, slot, S_CANCELED, RSN_IOC, ts)
    return liq


@njit(**_NB)
def _segment(book, cfg, acct, ts, a, b, liq):
    """Match every active order against a price path from a to b, in slot order; returns the
    liquidity (lots) left.

    The path is continuous from a to b, so a price between them traded; a itself may be a jump
    (the open, a trade print), so an order first meeting the market at a takes a, not its own price.
      market            taker at a moved by the slippage
      limit, arrival    marketable (buy: price >= a) -> taker at min(a slipped, price); post-only
                        rejected instead; not marketable -> rests (IOC / FOK: cancelled)
      limit, resting    maker at its own price when the path trades *through* it (buy: min(a, b) <
                        price; sell: max(a, b) > price); a touch is not a fill
      stop              triggers when the path reaches it (buy: max(a, b) >= stop); arrives at
                        max(stop, a) for a buy, min(stop, a) for a sell (a gap fills at a):
                        stop -> market, stop-limit -> limit (arrival rules above)
      IOC / FOK         apply at arrival: IOC cancels what did not fill, FOK fills all or nothing
    Every fill takes at most the liquidity left (participation * traded volume, shared in slot
    order) and what the account can settle (_venue_fill).
    """
    lo = a if a < b else b
    hi = b if a < b else a
    orders = book.orders
    for i in range(book.meta[M_HI]):
        o = orders[i]
        if o.status != S_OPEN and o.status != S_PARTIAL:
            continue
        fresh = (o.flags & F_FRESH) != 0
        o.flags &= ~F_FRESH
        t = o.type
        if (t == T_STOP or t == T_STOP_LIMIT) and (o.flags & F_TRIGGERED) == 0:
            if o.side > 0 and hi >= o.stop:
                tp = o.stop if o.stop > a else a
            elif o.side < 0 and lo <= o.stop:
                tp = o.stop if o.stop < a else a
            else:
                continue
            o.flags |= F_TRIGGERED
            _emit(book, EV_TRIGGERED, i, o.amount - o.filled, 0, tp, 0, ts, RSN_NONE, 0)
            liq = _arrive(book, cfg, acct, i, tp, liq, ts)
            continue
        if t == T_MARKET or t == T_STOP:
            if fresh:
                liq = _arrive(book, cfg, acct, i, a, liq, ts)
            elif liq > 0:
                rem = o.amount - o.filled
                q = rem if rem < liq else liq
                liq -= _venue_fill(book, cfg, acct, i, q, _taker_ticks(cfg, o.side, a, 0), False, ts)
            continue
        if fresh and t == T_LIMIT:
            liq = _arrive(book, cfg, acct, i, a, liq, ts)
            continue
        through = lo < o.price if o.side > 0 else hi > o.price
        if through and liq > 0:
            rem = o.amount - o.filled
            q = rem if rem < liq else liq
            liq -= _venue_fill(book, cfg, acct, i, q, _limit_ticks(cfg, o), True, ts)
    return liq


@njit(**_NB)
def _begin_event(book, ts):
    """Expire, then activate the orders due at ts that were submitted before this event."""
    book.meta[M_NEVENTS] = 0
    book.meta[M_SEQ] += 1
    seq = book.meta[M_SEQ]
    book.meta[M_CLOCK] = ts
    _expire(book, ts)
    orders = book.orders
    for i in range(book.meta[M_HI]):
        o = orders[i]
        if o.status == S_PENDING and o.seq < seq and o.active_ts <= ts:
            o.status = S_OPEN
            o.flags |= F_FRESH
            _emit(book, EV_ACTIVATED, i, o.amount, 0, np.nan, 0, ts, RSN_NONE, 0)


@njit(**_NB)
def _liquidity(cfg, volume):
    if not (volume > 0.0):
        return np.int64(0)
    x = cfg.participation * volume / cfg.lot
    if x >= 4e18:
        return np.int64(4e18)
    return np.int64(math.floor(x + 1e-9))


@njit(**_NB)
def _n_fills(book):
    n = 0
    for k in range(book.meta[M_NEVENTS]):
        if book.events[k].kind == EV_FILL:
            n += 1
    return n


@njit(**_NB)
def match_trade_nb(book, cfg, acct, ts, price, volume):
    """One trade print at `price` of `volume` base units at time ts: expire, activate what is due,
    then match (_segment from price to price) with participation * volume of liquidity. cfg: one
    VENUE_DTYPE record; acct: int64 [quote units, base lots], updated. Returns the number of fills.

    No look-ahead: an order submitted after the previous matching call can only be matched from this
    call on, and only once ts >= its active_ts."""
    _begin_event(book, ts)
    _segment(book, cfg, acct, ts, price, price, _liquidity(cfg, volume))
    return _n_fills(book)


@njit(**_NB)
def match_bar_nb(book, cfg, acct, ts, o, h, l, c, volume):
    """One OHLCV bar opening at ts: expire and activate as match_trade_nb, then match along the path
    open -> low -> high -> close when close >= open, else open -> high -> low -> close (the dip or
    the spike first), as the segments (o, o), (o, x1), (x1, x2), (x2, c), sharing the bar's
    participation * volume of liquidity. Returns the number of fills."""
    _begin_event(book, ts)
    liq = _liquidity(cfg, volume)
    x1 = l if c >= o else h
    x2 = h if c >= o else l
    liq = _segment(book, cfg, acct, ts, o, o, liq)
    liq = _segment(book, cfg, acct, ts, o, x1, liq)
    liq = _segment(book, cfg, acct, ts, x1, x2, liq)
    _segment(book, cfg, acct, ts, x2, c, liq)
    return _n_fills(book)
