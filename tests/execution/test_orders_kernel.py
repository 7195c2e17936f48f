"""The order state machine kernel (kernels/orders_nb.py): a plain-Python reference (RefBook, also used
by the state-machine test and the benchmark), then every order type, time in force, linked kind with
partial fills, the risk denials, and the venue matching rules one by one, kernel against reference."""
from __future__ import annotations

import math

import numpy as np
import pytest

from bot4jax.kernels import orders_nb as k

NAN = math.nan

# ---------------------------------------------------------------------------------------------------
# Plain-Python reference: objects and lists, written from the kernel's docstrings
# ---------------------------------------------------------------------------------------------------

WORKING = {"pending", "open", "partially_filled", "unknown"}
FINAL = {"filled", "canceled", "rejected", "expired"}
STATUS_CODE = {name: i for i, name in enumerate(k.STATUS_NAMES)}


class RefOrder:
    def __init__(self, oid, side, otype, tif, post_only, lots, price, stop, expire_ts, ts, active_ts, seq,
                 held):
        self.status = "held" if held else "pending"
        self.side, self.type, self.tif, self.post_only = side, otype, tif, post_only
        self.amount, self.filled = lots, 0
        self.price, self.stop = price, stop
        self.expire_ts = expire_ts if tif == k.TIF_GTD else k.NO_EXPIRY
        self.submit_ts, self.active_ts, self.seq = ts, active_ts, seq
        self.group, self.role, self.notional, self.reason, self.oid = -1, k.ROLE_NONE, 0.0, k.RSN_NONE, oid
        self.triggered, self.fresh = False, False

    @property
    def rem(self):
        return self.amount - self.filled


class RefGroup:
    def __init__(self, kind, legs, cap):
        self.kind, self.legs, self.cap, self.live = kind, list(legs), cap, 1


def ref_valid(side, otype, tif, post_only, lots, price, stop, expire_ts, ts):
    if side not in (1, -1) or otype not in range(4) or tif not in range(4) or lots <= 0:
        return False
    if otype in (k.T_LIMIT, k.T_STOP_LIMIT) and not (0 < price < math.inf):
        return False
    if otype in (k.T_STOP, k.T_STOP_LIMIT) and not (0 < stop < math.inf):
        return False
    if post_only and (otype != k.T_LIMIT or tif in (k.TIF_IOC, k.TIF_FOK)):
        return False
    return not (tif == k.TIF_GTD and expire_ts <= ts)


class RefBook:
    """The same operations as the kernel, on Python objects. Events are tuples
    (kind, slot, group, lots, ticks, price, fee, ts, reason, maker) as the kernel records them."""

    def __init__(self, capacity, group_capacity=None):
        self.orders: list[RefOrder | None] = [None] * capacity
        self.groups: list[RefGroup | None] = [None] * (capacity // 2 + 1 if group_capacity is None
                                                      else group_capacity)
        self.seq = self.clock = self.next_id = 0
        self.events: list[tuple] = []
        self.risk = 0

    # -- events and endings
    def emit(self, kind, slot, lots, ts, ticks=0, price=NAN, fee=0, reason=k.RSN_NONE, maker=0):
        self.events.append((kind, slot, self.orders[slot].group, lots, ticks, price, fee, ts, reason, maker))

    def finish(self, slot, status, reason, ts):
        o = self.orders[slot]
        o.status, o.reason = status, reason
        kind = {"canceled": k.EV_CANCELED, "rejected": k.EV_REJECTED, "expired": k.EV_EXPIRED}[status]
        self.emit(kind, slot, o.rem, ts, reason=reason)

    def live_legs(self, g, include_held=True):
        return [j for j in self.groups[g].legs
                if self.orders[j].status in WORKING or (include_held and self.orders[j].status == "held")]

    def refresh_live(self, g):
        self.groups[g].live = int(any(self.orders[j].status not in FINAL for j in self.groups[g].legs))

    def end(self, slot, status, reason, ts):
        self.finish(slot, status, reason, ts)
        g = self.orders[slot].group
        if g < 0:
            return
        grp = self.groups[g]
        if grp.kind in (k.G_OCO, k.G_MULTILEG):
            for j in self.live_legs(g):
                if j != slot:
                    self.finish(j, "canceled", k.RSN_GROUP_CANCELED, ts)
        elif grp.kind == k.G_BRACKET:
            entry = grp.legs[0]
            if slot == entry:
                if self.orders[entry].filled == 0:
                    for j in grp.legs[1:]:
                        if j in self.live_legs(g):
                            self.finish(j, "canceled", k.RSN_PARENT_ENDED, ts)
            else:
                for j in self.live_legs(g):
                    if j != slot:
                        self.finish(j, "canceled", k.RSN_GROUP_CANCELED, ts)
        elif grp.kind == k.G_OTO and slot == grp.legs[0] and self.orders[grp.legs[1]].status == "held":
            self.finish(grp.legs[1], "canceled", k.RSN_PARENT_ENDED, ts)
        self.refresh_live(g)

    def resize(self, slot, amount, ts):
        if self.orders[slot].amount != amount:
            self.orders[slot].amount = amount
            self.emit(k.EV_RESIZED, slot, amount, ts)

    def release_child(self, slot, amount, ts):
        o = self.orders[slot]
        o.status, o.amount, o.seq, o.submit_ts, o.active_ts = "pending", amount, self.seq, ts, ts
        self.emit(k.EV_RELEASED, slot, amount, ts)

    def fill(self, slot, lots, price, ts, ticks=0, fee=0, maker=0):
        o = self.orders[slot]
        o.filled += lots
        o.notional += lots * price
        self.emit(k.EV_FILL, slot, lots, ts, ticks=ticks, price=price, fee=fee, maker=maker)
        if o.filled == o.amount:
            o.status = "filled"
            self.emit(k.EV_FILLED, slot, o.filled, ts)
        else:
            o.status = "partially_filled"
        g = o.group
        if g < 0:
            return
        grp = self.groups[g]
        if grp.kind == k.G_OCO:
            rest = grp.cap - sum(self.orders[j].filled for j in grp.legs)
            for j in grp.legs:
                if j != slot and self.orders[j].status in WORKING:
                    if rest == 0:
                        self.finish(j, "canceled", k.RSN_OCO_FILLED, ts)
                    else:
                        self.resize(j, self.orders[j].filled + rest, ts)
        elif grp.kind == k.G_BRACKET:
            entry, exits = grp.legs[0], grp.legs[1:]
            if slot == entry:
                grp.cap = o.filled
            rest = grp.cap - sum(self.orders[j].filled for j in exits)
            for j in exits:
                st = self.orders[j].status
                if slot == entry and st == "held":
                    self.release_child(j, rest, ts)
                elif j != slot and (st in WORKING or (st == "held" and slot != entry)):
                    if rest == 0 and slot != entry:
                        self.finish(j, "canceled", k.RSN_OCO_FILLED, ts)
                    else:
                        self.resize(j, self.orders[j].filled + rest, ts)
            if slot != entry and rest == 0 and self.orders[entry].status in WORKING:
                self.finish(entry, "canceled", k.RSN_EXIT_DONE, ts)
        elif grp.kind == k.G_OTO:
            second = self.orders[grp.legs[1]]
            if slot == grp.legs[0] and o.status == "filled" and second.status == "held":
                self.release_child(grp.legs[1], second.amount, ts)
        self.refresh_live(g)

    # -- public operations (same names and results as the kernel without the _nb)
    def submit(self, side, otype, tif, flags, lots, price, stop, expire_ts, ts, active_ts, hold):
        self.events = []
        post_only = bool(flags & k.F_POST_ONLY)
        if not ref_valid(side, otype, tif, post_only, lots, price, stop, expire_ts, ts):
            return k.RC_INVALID
        free = [i for i, o in enumerate(self.orders) if o is None]
        if not free:
            return k.RC_NO_SLOT
        self.orders[free[0]] = RefOrder(self.next_id, side, otype, tif, post_only, lots, price, stop, expire_ts,
                                        ts, active_ts, self.seq, hold)
        self.next_id += 1
        return free[0]

    def link(self, kind, legs, ts):
        self.events = []
        n = len(legs)
        if not 2 <= n <= k.MAX_LEGS or (kind == k.G_BRACKET and n > 3) or (kind == k.G_OTO and n != 2):
            return k.RC_INVALID
        if kind not in (k.G_OCO, k.G_BRACKET, k.G_OTO, k.G_MULTILEG) or len(set(legs)) != n:
            return k.RC_INVALID
        if any(not 0 <= s < len(self.orders) or self.orders[s] is None for s in legs):
            return k.RC_INVALID
        os_ = [self.orders[s] for s in legs]
        if any(o.status not in ("held", "pending") or o.group >= 0 or o.filled for o in os_):
            return k.RC_INVALID
        if kind in (k.G_OCO, k.G_BRACKET) and any(o.amount != os_[0].amount for o in os_):
            return k.RC_INVALID
        if kind == k.G_BRACKET and any(o.side != -os_[0].side for o in os_[1:]):
            return k.RC_INVALID
        free = [i for i, g in enumerate(self.groups) if g is None]
        if not free:
            return k.RC_NO_SLOT
        g = free[0]
        self.groups[g] = RefGroup(kind, legs, os_[0].amount if kind == k.G_OCO else 0)
        for i, o in enumerate(os_):
            o.group = g
            child = i > 0 and kind in (k.G_BRACKET, k.G_OTO)
            o.role = k.ROLE_LEG if kind in (k.G_OCO, k.G_MULTILEG) else (k.ROLE_CHILD if child else k.ROLE_PARENT)
            o.status = "held" if child else "pending"
            o.seq = self.seq
        return g

    def valid_slot(self, slot):
        return 0 <= slot < len(self.orders) and self.orders[slot] is not None

    def activate(self, slot, ts):
        self.events = []
        if not self.valid_slot(slot):
            return k.RC_BAD_SLOT
        o = self.orders[slot]
        if o.status in ("open", "partially_filled"):
            return k.RC_OK
        if o.status not in ("pending", "unknown"):
            return k.RC_NOT_WORKING
        o.status = "partially_filled" if o.filled else "open"
        self.emit(k.EV_ACTIVATED, slot, o.amount, ts)
        return k.RC_OK

    def mark_unknown(self, slot, ts):
        self.events = []
        if not self.valid_slot(slot):
            return k.RC_BAD_SLOT
        o = self.orders[slot]
        if o.status not in WORKING:
            return k.RC_NOT_WORKING
        if o.status == "pending":
            o.status = "unknown"
        return k.RC_OK

    def end_order(self, slot, status, reason, ts):
        self.events = []
        if not self.valid_slot(slot):
            return k.RC_BAD_SLOT
        if status not in ("canceled", "rejected", "expired"):
            return k.RC_INVALID
        if self.orders[slot].status not in WORKING | {"held"}:
            return k.RC_NOT_WORKING
        self.end(slot, status, reason, ts)
        return k.RC_OK

    def cancel(self, slot, ts):
        return self.end_order(slot, "canceled", k.RSN_REQUESTED, ts)

    def cancel_group(self, g, ts):
        self.events = []
        if not 0 <= g < len(self.groups) or self.groups[g] is None:
            return k.RC_BAD_SLOT
        legs = self.live_legs(g)
        for j in legs:
            self.finish(j, "canceled", k.RSN_REQUESTED, ts)
        self.refresh_live(g)
        return len(legs)

    def apply_fill(self, slot, lots, price, ts):
        self.events = []
        if not self.valid_slot(slot):
            return k.RC_BAD_SLOT
        if lots <= 0:
            return k.RC_INVALID
        o = self.orders[slot]
        if o.status not in WORKING:
            return k.RC_NOT_WORKING
        rem = o.rem
        self.fill(slot, min(lots, rem), price, ts)
        return k.RC_OVERFILL if lots > rem else k.RC_OK

    def _expire(self, ts):
        count = 0
        for i, o in enumerate(self.orders):
            if o is not None and o.tif == k.TIF_GTD and o.expire_ts <= ts and o.status in WORKING | {"held"}:
                self.end(i, "expired", k.RSN_EXPIRED, ts)
                count += 1
        return count

    def expire(self, ts):
        self.events = []
        return self._expire(ts)

    def release(self, slot):
        self.orders[slot] = None

    def release_group(self, g):
        for j in self.groups[g].legs:
            self.orders[j] = None
        self.groups[g] = None

    # -- pre-trade risk
    def exposure(self, mark, exclude=-1):
        buy = sell = 0
        notional = 0.0
        counted = set()   # (group, side) of shared-capacity legs already counted
        for i, o in enumerate(self.orders):
            if o is None or o.status not in WORKING or i == exclude:
                continue
            if o.group >= 0:
                grp = self.groups[o.group]
                if grp.kind == k.G_OCO or (grp.kind == k.G_BRACKET and o.role == k.ROLE_CHILD):
                    if (o.group, o.side) in counted:
                        continue
                    counted.add((o.group, o.side))
            px = o.price if o.type in (k.T_LIMIT, k.T_STOP_LIMIT) else (o.stop if o.type == k.T_STOP else mark)
            if o.side > 0:
                buy += o.rem
                notional += o.rem * px
            else:
                sell += o.rem
        return buy, sell, notional

    def risk_check(self, limits, acct, side, otype, lots, price, stop, exclude=-1):
        if side not in (1, -1) or lots <= 0 or otype not in range(4):
            return k.RISK_INVALID
        p = price if otype in (k.T_LIMIT, k.T_STOP_LIMIT) else (stop if otype == k.T_STOP else acct["mark"])
        if not (0 < p < math.inf):
            return k.RISK_NO_PRICE if otype == k.T_MARKET else k.RISK_INVALID
        lot = limits["lot"]
        mask = k.RISK_MAX_NOTIONAL if lots * lot * p > limits["max_notional"] else 0
        buy, sell, notional = self.exposure(acct["mark"], exclude)
        if side > 0:
            if acct["position"] + (buy + lots) * lot > limits["max_position"]:
                mask |= k.RISK_MAX_POSITION
            if (notional * lot + lots * lot * p) * (1 + limits["fee"]) > acct["quote"]:
                mask |= k.RISK_INSUFFICIENT_BALANCE
        elif limits["allow_short"]:
            if acct["position"] - (sell + lots) * lot < -limits["max_position"]:
                mask |= k.RISK_MAX_POSITION
        elif (sell + lots) * lot > acct["position"]:
            mask |= k.RISK_SELL_EXCEEDS_POSITION
        return mask

    def risk_submit(self, limits, acct, side, otype, tif, flags, lots, price, stop, expire_ts, ts, active_ts,
                    hold):
        self.events = []
        self.risk = self.risk_check(limits, acct, side, otype, lots, price, stop)
        if self.risk:
            return k.RC_RISK
        return self.submit(side, otype, tif, flags, lots, price, stop, expire_ts, ts, active_ts, hold)

    # -- venue matching
    @staticmethod
    def fee(notional, rate):
        return math.ceil(notional * rate)

    @staticmethod
    def taker_ticks(cfg, side, p, limit_ticks):
        if side > 0:
            t = math.ceil(p * (1 + cfg["slippage"]) / cfg["tick"] - 1e-9)
            t = min(t, limit_ticks) if limit_ticks > 0 else t
        else:
            t = math.floor(p * (1 - cfg["slippage"]) / cfg["tick"] + 1e-9)
            t = max(t, limit_ticks) if limit_ticks > 0 else t
        return max(t, 1)

    def affordable(self, cfg, acct, side, ticks, lots, maker):
        if side < 0:
            return lots if cfg["allow_short"] else max(0, min(lots, int(acct[k.A_BASE])))
        rate = cfg["fee_maker"] if maker else cfg["fee_taker"]
        best = 0
        for q in range(lots, -1, -1) if lots < 50 else ():  # brute force when small
            if q * ticks + self.fee(q * ticks, rate) <= acct[k.A_QUOTE]:
                return q
        # large amounts: bisection on the monotone cost
        lo, hi = 0, lots
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if mid * ticks + self.fee(mid * ticks, rate) <= acct[k.A_QUOTE]:
                lo = mid
            else:
                hi = mid - 1
        return max(best, lo)

    def venue_fill(self, cfg, acct, slot, lots, ticks, maker, ts):
        o = self.orders[slot]
        q = self.affordable(cfg, acct, o.side, ticks, lots, maker)
        if q > 0:
            notional = q * ticks
            fee = self.fee(notional, cfg["fee_maker"] if maker else cfg["fee_taker"])
            acct[k.A_QUOTE] += -(notional + fee) if o.side > 0 else notional - fee
            acct[k.A_BASE] += o.side * q
            self.fill(slot, q, ticks * cfg["tick"], ts, ticks=ticks, fee=fee, maker=int(maker))
        if q < lots and o.status in WORKING:
            self.end(slot, "canceled", k.RSN_INSUFFICIENT_FUNDS, ts)
        return q

    @staticmethod
    def limit_ticks(cfg, o):
        return round(o.price / cfg["tick"]) if o.type in (k.T_LIMIT, k.T_STOP_LIMIT) else 0

    def arrive(self, cfg, acct, slot, p, liq, ts):
        o = self.orders[slot]
        lt = self.limit_ticks(cfg, o)
        marketable = lt == 0 or (o.price >= p if o.side > 0 else o.price <= p)
        if marketable and o.post_only:
            self.end(slot, "rejected", k.RSN_POST_ONLY, ts)
            return liq
        if not marketable:
            if o.tif in (k.TIF_IOC, k.TIF_FOK):
                self.end(slot, "canceled", k.RSN_IOC if o.tif == k.TIF_IOC else k.RSN_FOK, ts)
            return liq
        ticks = self.taker_ticks(cfg, o.side, p, lt)
        q = min(o.rem, liq)
        if o.tif == k.TIF_FOK and (q < o.rem or self.affordable(cfg, acct, o.side, ticks, o.rem, False) < o.rem):
            self.end(slot, "canceled", k.RSN_FOK, ts)
            return liq
        if q > 0:
            liq -= self.venue_fill(cfg, acct, slot, q, ticks, False, ts)
        if o.tif == k.TIF_IOC and o.status in WORKING:
            self.end(slot, "canceled", k.RSN_IOC, ts)
        return liq

    def segment(self, cfg, acct, ts, a, b, liq):
        lo, hi = min(a, b), max(a, b)
        for i, o in enumerate(self.orders):
            if o is None or o.status not in ("open", "partially_filled"):
                continue
            fresh, o.fresh = o.fresh, False
            if o.type in (k.T_STOP, k.T_STOP_LIMIT) and not o.triggered:
                if o.side > 0 and hi >= o.stop:
                    tp = max(o.stop, a)
                elif o.side < 0 and lo <= o.stop:
                    tp = min(o.stop, a)
                else:
                    continue
                o.triggered = True
                self.emit(k.EV_TRIGGERED, i, o.rem, ts, price=tp)
                liq = self.arrive(cfg, acct, i, tp, liq, ts)
            elif o.type in (k.T_MARKET, k.T_STOP):
                if fresh:
                    liq = self.arrive(cfg, acct, i, a, liq, ts)
                elif liq > 0:
                    liq -= self.venue_fill(cfg, acct, i, min(o.rem, liq), self.taker_ticks(cfg, o.side, a, 0),
                                           False, ts)
            elif fresh and o.type == k.T_LIMIT:
                liq = self.arrive(cfg, acct, i, a, liq, ts)
            elif (lo < o.price if o.side > 0 else hi > o.price) and liq > 0:
                liq -= self.venue_fill(cfg, acct, i, min(o.rem, liq), self.limit_ticks(cfg, o), True, ts)
        return liq

    def begin_event(self, ts):
        self.events = []
        self.seq += 1
        self.clock = ts
        self._expire(ts)
        for i, o in enumerate(self.orders):
            if o is not None and o.status == "pending" and o.seq < self.seq and o.active_ts <= ts:
                o.status, o.fresh = "open", True
                self.emit(k.EV_ACTIVATED, i, o.amount, ts)

    @staticmethod
    def liquidity(cfg, volume):
        if not volume > 0:
            return 0
        return min(int(4e18), math.floor(cfg["participation"] * volume / cfg["lot"] + 1e-9))

    def n_fills(self):
        return sum(e[0] == k.EV_FILL for e in self.events)

    def match_trade(self, cfg, acct, ts, price, volume):
        self.begin_event(ts)
        self.segment(cfg, acct, ts, price, price, self.liquidity(cfg, volume))
        return self.n_fills()

    def match_bar(self, cfg, acct, ts, o, h, l, c, volume):
        self.begin_event(ts)
        liq = self.liquidity(cfg, volume)
        path = [o, o, l, h, c] if c >= o else [o, o, h, l, c]
        for a, b in zip(path[:-1], path[1:]):
            liq = self.segment(cfg, acct, ts, a, b, liq)
        return self.n_fills()


# ---------------------------------------------------------------------------------------------------
# Comparing the two
# ---------------------------------------------------------------------------------------------------


def kernel_events(book):
    return [tuple(e.item()) for e in book.events[:book.meta[k.M_NEVENTS]]]


def same_events(kernel, ref):
    """Events equal field by field (NaN prices equal NaN)."""
    if len(kernel) != len(ref):
        return False
    for a, b in zip(kernel, ref):
        for x, y in zip(a, b):
            if isinstance(y, float) and math.isnan(y):
                if not (isinstance(x, float) and math.isnan(x)):
                    return False
            elif x != y:
                return False
    return True


def assert_same(book, ref: RefBook):
    assert same_events(kernel_events(book), ref.events), (kernel_events(book), ref.events)
    for i, o in enumerate(ref.orders):
        row = book.orders[i]
        if o is None:
            assert row["status"] == k.S_FREE, i
            continue
        assert k.STATUS_NAMES[row["status"]] == o.status, (i, k.STATUS_NAMES[row["status"]], o.status)
        assert (row["amount"], row["filled"], row["group"], row["role"], row["reason"], row["oid"]) == \
            (o.amount, o.filled, o.group, o.role, o.reason, o.oid), i
        assert bool(row["flags"] & k.F_TRIGGERED) == o.triggered, i
        assert row["notional"] == pytest.approx(o.notional, rel=1e-12, abs=1e-9)
    for g, grp in enumerate(ref.groups):
        row = book.groups[g]
        if grp is None:
            assert row["kind"] == k.G_FREE
            continue
        assert (row["kind"], row["n"], row["cap"], row["live"]) == (grp.kind, len(grp.legs), grp.cap, grp.live)
        assert list(row["legs"][:row["n"]]) == grp.legs


class Pair:
    """A kernel book and a reference book driven together; every call checks they agree."""

    def __init__(self, capacity=16, venue=None, quote=10**15, base=0):
        self.book, self.ref = k.init_book(capacity), RefBook(capacity)
        self.cfg = venue if venue is not None else k.venue_params(0.01, 1e-8, 0.0, 2.0, 7.5, 1.0, False)
        self.cfg_dict = {n: float(self.cfg[0][n]) for n in k.VENUE_DTYPE.names}
        self.acct = np.array([quote, base], np.int64)
        self.ref_acct = [quote, base]
        self.legs = np.zeros(k.MAX_LEGS, np.int64)

    def check(self, a, b):
        assert a == b, (a, b)
        assert_same(self.book, self.ref)
        assert list(self.acct) == self.ref_acct
        return a

    def submit(self, side, otype, lots, price=NAN, stop=NAN, tif=k.TIF_GTC, flags=0, expire_ts=k.NO_EXPIRY,
               ts=0, active_ts=0, hold=False):
        args = (side, otype, tif, flags, lots, price, stop, expire_ts, ts, active_ts, hold)
        return self.check(k.submit_nb(self.book, *args), self.ref.submit(*args))

    def link(self, kind, legs, ts=0):
        self.legs[:len(legs)] = legs
        return self.check(k.link_nb(self.book, kind, self.legs, len(legs), ts), self.ref.link(kind, list(legs), ts))

    def fill(self, slot, lots, price, ts=0):
        return self.check(k.apply_fill_nb(self.book, slot, lots, price, ts), self.ref.apply_fill(slot, lots, price, ts))

    def cancel(self, slot, ts=0):
        return self.check(k.cancel_nb(self.book, slot, ts), self.ref.cancel(slot, ts))

    def end(self, slot, status, reason, ts=0):
        return self.check(k.end_nb(self.book, slot, STATUS_CODE[status], reason, ts),
                          self.ref.end_order(slot, status, reason, ts))

    def cancel_group(self, g, ts=0):
        return self.check(k.cancel_group_nb(self.book, g, ts), self.ref.cancel_group(g, ts))

    def activate(self, slot, ts=0):
        return self.check(k.activate_nb(self.book, slot, ts), self.ref.activate(slot, ts))

    def unknown(self, slot, ts=0):
        return self.check(k.mark_unknown_nb(self.book, slot, ts), self.ref.mark_unknown(slot, ts))

    def expire(self, ts):
        return self.check(k.expire_nb(self.book, ts), self.ref.expire(ts))

    def trade(self, ts, price, volume):
        return self.check(k.match_trade_nb(self.book, self.cfg[0], self.acct, ts, price, volume),
                          self.ref.match_trade(self.cfg_dict, self.ref_acct, ts, price, volume))

    def bar(self, ts, o, h, l, c, volume):
        return self.check(k.match_bar_nb(self.book, self.cfg[0], self.acct, ts, o, h, l, c, volume),
                          self.ref.match_bar(self.cfg_dict, self.ref_acct, ts, o, h, l, c, volume))

    def status(self, slot):
        return k.STATUS_NAMES[self.book.orders[slot]["status"]]

    def events(self, kind=None):
        ev = kernel_events(self.book)
        return [e for e in ev if kind is None or e[0] == kind]


# ---------------------------------------------------------------------------------------------------
# Lifecycle and validation
# ---------------------------------------------------------------------------------------------------


def test_submit_activate_fill_lifecycle():
    p = Pair()
    s = p.submit(1, k.T_LIMIT, 100, price=10.0)
    assert p.status(s) == "pending"
    p.activate(s)
    assert p.status(s) == "open"
    assert p.fill(s, 30, 10.0) == k.RC_OK
    assert p.status(s) == "partially_filled"
    assert p.fill(s, 90, 9.5) == k.RC_OVERFILL          # 70 applied, the rest refused
    assert p.status(s) == "filled" and p.book.orders[s]["filled"] == 100
    assert p.book.orders[s]["notional"] == pytest.approx(30 * 10.0 + 70 * 9.5)
    assert p.fill(s, 1, 10.0) == k.RC_NOT_WORKING        # final orders never change
    assert p.cancel(s) == k.RC_NOT_WORKING
    assert p.activate(s) == k.RC_NOT_WORKING


def test_fill_before_ack_and_unknown_state():
    p = Pair()
    s = p.submit(-1, k.T_MARKET, 50)
    p.unknown(s)
    assert p.status(s) == "unknown"
    p.fill(s, 20, 10.0)                                 # a fill proves the order exists
    assert p.status(s) == "partially_filled"
    p.activate(s)
    assert p.status(s) == "partially_filled"


@pytest.mark.parametrize("args", [
    (0, k.T_MARKET, k.TIF_GTC, 0, 10, NAN, NAN, k.NO_EXPIRY),        # side
    (1, 7, k.TIF_GTC, 0, 10, NAN, NAN, k.NO_EXPIRY),                 # type
    (1, k.T_MARKET, 9, 0, 10, NAN, NAN, k.NO_EXPIRY),                # tif
    (1, k.T_MARKET, k.TIF_GTC, 0, 0, NAN, NAN, k.NO_EXPIRY),         # amount
    (1, k.T_LIMIT, k.TIF_GTC, 0, 10, NAN, NAN, k.NO_EXPIRY),         # limit without price
    (1, k.T_STOP, k.TIF_GTC, 0, 10, NAN, -1.0, k.NO_EXPIRY),         # stop <= 0
    (1, k.T_STOP_LIMIT, k.TIF_GTC, 0, 10, 10.0, NAN, k.NO_EXPIRY),   # stop-limit without stop
    (1, k.T_MARKET, k.TIF_GTC, k.F_POST_ONLY, 10, NAN, NAN, k.NO_EXPIRY),   # post-only market
    (1, k.T_LIMIT, k.TIF_IOC, k.F_POST_ONLY, 10, 10.0, NAN, k.NO_EXPIRY),   # post-only IOC
    (1, k.T_LIMIT, k.TIF_GTD, 0, 10, 10.0, NAN, 0),                   # GTD already expired
])
def test_invalid_orders_are_refused(args):
    p = Pair()
    assert p.submit(*args[:2], args[4], price=args[5], stop=args[6], tif=args[2], flags=args[3],
                    expire_ts=args[7]) == k.RC_INVALID


def test_book_full_and_slot_reuse():
    p = Pair(capacity=3)
    slots = [p.submit(1, k.T_MARKET, 1) for _ in range(3)]
    assert slots == [0, 1, 2]
    assert p.submit(1, k.T_MARKET, 1) == k.RC_NO_SLOT
    p.cancel(1)
    k.release_nb(p.book, 1)
    p.ref.release(1)
    assert p.submit(1, k.T_MARKET, 1) == 1              # the lowest free slot


def test_gtd_expiry():
    p = Pair()
    s = p.submit(1, k.T_LIMIT, 10, price=5.0, tif=k.TIF_GTD, expire_ts=1000)
    g = p.submit(1, k.T_LIMIT, 10, price=5.0)
    assert p.expire(999) == 0
    assert p.expire(1000) == 1
    assert p.status(s) == "expired" and p.status(g) == "pending"
    assert p.book.orders[s]["reason"] == k.RSN_EXPIRED


# ---------------------------------------------------------------------------------------------------
# Linked orders
# ---------------------------------------------------------------------------------------------------


def test_oco_partial_fill_shrinks_then_fill_cancels():
    p = Pair()
    tp = p.submit(-1, k.T_LIMIT, 100, price=12.0, hold=True)
    sl = p.submit(-1, k.T_STOP, 100, stop=9.0, hold=True)
    g = p.link(k.G_OCO, [tp, sl])
    assert p.status(tp) == p.status(sl) == "pending"
    p.fill(tp, 40, 12.0)
    assert p.book.orders[sl]["amount"] == 60 and p.status(sl) == "pending"
    assert [(e[1], e[2], e[3]) for e in p.events(k.EV_RESIZED)] == [(sl, g, 60)]
    p.fill(sl, 20, 9.0)                                  # the other leg takes part of the rest
    assert p.book.orders[tp]["amount"] == 80             # 40 filled + 40 left to the group
    p.fill(tp, 100, 12.0)                                # over-fill: only the group's 40 applied
    assert p.book.orders[tp]["filled"] == 80
    assert p.status(tp) == "filled" and p.status(sl) == "canceled"
    assert p.book.orders[sl]["reason"] == k.RSN_OCO_FILLED
    total = p.book.orders[tp]["filled"] + p.book.orders[sl]["filled"]
    assert total == 100 and p.book.groups[g]["live"] == 0


def test_oco_cancel_one_leg_cancels_group():
    p = Pair()
    a = p.submit(1, k.T_STOP, 10, stop=11.0, hold=True)   # breakout: buy stop above, sell limit above too
    b = p.submit(-1, k.T_LIMIT, 10, price=12.0, hold=True)
    p.link(k.G_OCO, [a, b])
    p.cancel(a)
    assert p.status(b) == "canceled" and p.book.orders[b]["reason"] == k.RSN_GROUP_CANCELED


def test_oco_needs_equal_amounts():
    p = Pair()
    a = p.submit(-1, k.T_LIMIT, 10, price=12.0, hold=True)
    b = p.submit(-1, k.T_STOP, 11, stop=9.0, hold=True)
    assert p.link(k.G_OCO, [a, b]) == k.RC_INVALID
    assert p.link(k.G_OCO, [a, a]) == k.RC_INVALID


def bracket(p, lots=100, entry_type=k.T_LIMIT):
    e = p.submit(1, entry_type, lots, price=10.0 if entry_type == k.T_LIMIT else NAN, hold=True)
    tp = p.submit(-1, k.T_LIMIT, lots, price=12.0, hold=True)
    sl = p.submit(-1, k.T_STOP, lots, stop=9.0, hold=True)
    g = p.link(k.G_BRACKET, [e, tp, sl])
    return g, e, tp, sl


def test_bracket_children_follow_entry_partial_fills():
    p = Pair()
    g, e, tp, sl = bracket(p)
    assert (p.status(e), p.status(tp), p.status(sl)) == ("pending", "held", "held")
    assert p.fill(tp, 1, 12.0) == k.RC_NOT_WORKING       # a held exit cannot fill
    p.fill(e, 30, 10.0)
    assert [ev[1] for ev in p.events(k.EV_RELEASED)] == [tp, sl]
    assert p.book.orders[tp]["amount"] == p.book.orders[sl]["amount"] == 30
    p.fill(tp, 10, 12.0)                                 # exit partly: the stop shrinks
    assert p.book.orders[sl]["amount"] == 20
    p.fill(e, 50, 10.0)                                  # entry 80: exits grow to cover 70 more
    assert p.book.orders[tp]["amount"] == 80 and p.book.orders[sl]["amount"] == 70
    p.fill(sl, 500, 9.0)                                 # stop hit: 70 sold, not 500
    assert p.book.orders[sl]["filled"] == 70
    assert p.status(tp) == "canceled" and p.book.orders[tp]["reason"] == k.RSN_OCO_FILLED
    assert p.status(e) == "canceled" and p.book.orders[e]["reason"] == k.RSN_EXIT_DONE
    exits = p.book.orders[tp]["filled"] + p.book.orders[sl]["filled"]
    assert exits == p.book.orders[e]["filled"] == 80 and p.book.groups[g]["live"] == 0


def test_bracket_entry_cancel_unfilled_cancels_exits_filled_keeps_them():
    p = Pair()
    _, e, tp, sl = bracket(p)
    p.cancel(e)
    assert p.status(tp) == p.status(sl) == "canceled"
    assert p.book.orders[tp]["reason"] == k.RSN_PARENT_ENDED
    p2 = Pair()
    _, e, tp, sl = bracket(p2)
    p2.fill(e, 40, 10.0)
    p2.cancel(e)
    assert p2.status(tp) == p2.status(sl) == "pending" and p2.book.orders[tp]["amount"] == 40
    p2.cancel(tp)                                        # an exit cancelled ends the bracket
    assert p2.status(sl) == "canceled" and p2.book.orders[sl]["reason"] == k.RSN_GROUP_CANCELED


def test_bracket_exits_must_be_opposite_side():
    p = Pair()
    e = p.submit(1, k.T_LIMIT, 10, price=10.0, hold=True)
    tp = p.submit(1, k.T_LIMIT, 10, price=12.0, hold=True)
    assert p.link(k.G_BRACKET, [e, tp]) == k.RC_INVALID


def test_oto_secondary_on_full_fill_only():
    p = Pair()
    a = p.submit(1, k.T_LIMIT, 100, price=10.0, hold=True)
    b = p.submit(-1, k.T_LIMIT, 60, price=11.0, hold=True)
    p.link(k.G_OTO, [a, b])
    p.fill(a, 99, 10.0)
    assert p.status(b) == "held"
    p.fill(a, 1, 10.0)
    assert p.status(b) == "pending" and p.book.orders[b]["amount"] == 60
    q = Pair()
    a = q.submit(1, k.T_LIMIT, 100, price=10.0, hold=True)
    b = q.submit(-1, k.T_LIMIT, 60, price=11.0, hold=True)
    q.link(k.G_OTO, [a, b])
    q.fill(a, 50, 10.0)
    q.end(a, "expired", k.RSN_EXPIRED)
    assert q.status(b) == "canceled" and q.book.orders[b]["reason"] == k.RSN_PARENT_ENDED


def test_multileg_submitted_and_cancelled_together():
    p = Pair()
    legs = [p.submit(1, k.T_LIMIT, 10, price=10.0, hold=True), p.submit(-1, k.T_LIMIT, 20, price=11.0, hold=True),
            p.submit(1, k.T_MARKET, 5, hold=True)]
    g = p.link(k.G_MULTILEG, legs)
    assert all(p.status(s) == "pending" for s in legs)
    p.fill(legs[0], 10, 10.0)                            # fills do not touch the other legs
    p.fill(legs[1], 5, 11.0)
    assert p.status(legs[2]) == "pending" and p.book.orders[legs[1]]["amount"] == 20
    p.end(legs[2], "rejected", k.RSN_VENUE)              # one leg refused: the others go
    assert p.status(legs[1]) == "canceled" and p.status(legs[0]) == "filled"
    assert p.book.groups[g]["live"] == 0
    q = Pair()
    legs = [q.submit(1, k.T_LIMIT, 10, price=10.0, hold=True), q.submit(-1, k.T_LIMIT, 20, price=11.0, hold=True)]
    g = q.link(k.G_MULTILEG, legs)
    assert q.cancel_group(g) == 2


# ---------------------------------------------------------------------------------------------------
# Pre-trade risk
# ---------------------------------------------------------------------------------------------------


def limits(max_position=1.0, max_notional=1e6, allow_short=False, fee=0.001):
    out = np.zeros(1, k.LIMITS_DTYPE)
    out["lot"], out["max_position"], out["max_notional"] = 1e-8, max_position, max_notional
    out["allow_short"], out["fee"] = float(allow_short), fee
    return out


def account(position=0.0, quote=1e5, mark=100.0):
    out = np.zeros(1, k.ACCOUNT_DTYPE)
    out["position"], out["quote"], out["mark"] = position, quote, mark
    return out


RISK_CASES = [
    # (limits kwargs, account kwargs, side, type, lots, price, expected mask)
    ({}, {}, 1, k.T_MARKET, 10**8, NAN, 0),
    ({}, {}, 1, k.T_MARKET, 2 * 10**8, NAN, k.RISK_MAX_POSITION),
    ({"max_notional": 50.0}, {}, 1, k.T_LIMIT, 10**8, 99.0, k.RISK_MAX_NOTIONAL),
    ({}, {"quote": 50.0}, 1, k.T_LIMIT, 10**8, 99.0, k.RISK_INSUFFICIENT_BALANCE),
    ({}, {"mark": NAN}, 1, k.T_MARKET, 10**8, NAN, k.RISK_NO_PRICE),
    ({}, {"position": 0.5}, -1, k.T_MARKET, 10**8, NAN, k.RISK_SELL_EXCEEDS_POSITION),
    ({}, {"position": 1.0}, -1, k.T_MARKET, 10**8, NAN, 0),
    ({"allow_short": True}, {"position": 0.0}, -1, k.T_MARKET, 10**8, NAN, 0),
    ({"allow_short": True}, {"position": 0.0}, -1, k.T_MARKET, 2 * 10**8, NAN, k.RISK_MAX_POSITION),
    ({}, {}, 0, k.T_MARKET, 10**8, NAN, k.RISK_INVALID),
    ({}, {}, 1, k.T_LIMIT, 10**8, -1.0, k.RISK_INVALID),
    ({"max_notional": 50.0}, {"quote": 10.0}, 1, k.T_MARKET, 2 * 10**8, NAN,
     k.RISK_MAX_NOTIONAL | k.RISK_MAX_POSITION | k.RISK_INSUFFICIENT_BALANCE),
]


@pytest.mark.parametrize("lim,acc,side,otype,lots,price,expected", RISK_CASES)
def test_risk_denials_with_reasons(lim, acc, side, otype, lots, price, expected):
    book, ref = k.init_book(8), RefBook(8)
    L, A = limits(**lim), account(**acc)
    got = k.risk_check_nb(book, L[0], A[0], side, otype, lots, price, NAN, -1)
    assert got == expected == ref.risk_check(L[0], A[0], side, otype, lots, price, NAN)
    names = [name for bit, name in k.RISK_NAMES.items() if got & bit]
    assert len(names) == bin(expected).count("1")


def test_risk_counts_open_orders_and_oco_capacity_once():
    p = Pair()
    L, A = limits(max_position=1.0), account(position=1.0)
    tp = p.submit(-1, k.T_LIMIT, 10**8, price=120.0, hold=True)
    sl = p.submit(-1, k.T_STOP, 10**8, stop=90.0, hold=True)
    p.link(k.G_OCO, [tp, sl])
    # the OCO reserves the 1.0 held once: nothing more may be sold
    assert k.risk_check_nb(p.book, L[0], A[0], -1, k.T_MARKET, 1, NAN, NAN, -1) == k.RISK_SELL_EXCEEDS_POSITION
    p.fill(tp, 5 * 10**7, 120.0)
    A2 = account(position=0.5)
    assert k.risk_check_nb(p.book, L[0], A2[0], -1, k.T_MARKET, 1, NAN, NAN, -1) == k.RISK_SELL_EXCEEDS_POSITION
    buy = p.submit(1, k.T_LIMIT, 6 * 10**7, price=100.0)
    out = np.zeros(3)
    k.open_exposure_nb(p.book, 100.0, out)
    assert tuple(out) == p.ref.exposure(100.0) == (6 * 10**7, 5 * 10**7, 6 * 10**7 * 100.0)
    # position 0.5 + open buy 0.6 + 0.1 > 1.0 (and the reference agrees)
    got = k.risk_check_nb(p.book, L[0], A2[0], 1, k.T_LIMIT, 10**7 + 1, 100.0, NAN, -1)
    assert got == k.RISK_MAX_POSITION == p.ref.risk_check(L[0], A2[0], 1, k.T_LIMIT, 10**7 + 1, 100.0, NAN)
    # a slot left out of the open orders (an order checked while already in the book)
    assert k.risk_check_nb(p.book, L[0], A2[0], 1, k.T_LIMIT, 4 * 10**7, 100.0, NAN, -1) == k.RISK_MAX_POSITION
    assert k.risk_check_nb(p.book, L[0], A2[0], 1, k.T_LIMIT, 4 * 10**7, 100.0, NAN, buy) == 0
    assert p.ref.risk_check(L[0], A2[0], 1, k.T_LIMIT, 4 * 10**7, 100.0, NAN, buy) == 0


def test_risk_submit_denies_without_submitting():
    p = Pair()
    L, A = limits(), account(quote=10.0)
    args = (1, k.T_LIMIT, k.TIF_GTC, 0, 10**8, 100.0, NAN, k.NO_EXPIRY, 0, 0, False)
    got = k.risk_submit_nb(p.book, L[0], A[0], *args)
    assert got == k.RC_RISK == p.ref.risk_submit(L[0], A[0], *args)
    assert p.book.meta[k.M_RISK] == k.RISK_INSUFFICIENT_BALANCE and p.book.meta[k.M_HI] == 0


# ---------------------------------------------------------------------------------------------------
# Venue matching: order types, TIF, post-only, latency, liquidity, fees, no look-ahead
# ---------------------------------------------------------------------------------------------------

BTC = 10**8   # lots per BTC at a 1e-8 lot


def test_market_order_fills_at_next_trade_with_slippage_and_taker_fee():
    p = Pair(venue=k.venue_params(0.01, 1e-8, 10.0, 2.0, 7.5, 1.0, False), quote=10**15)
    s = p.submit(1, k.T_MARKET, BTC)
    assert p.trade(1, 100.0, 5.0) == 1
    fill = p.events(k.EV_FILL)[0]
    assert fill[4] == 10010                              # 100 * (1 + 10 bps) in 0.01 ticks
    assert fill[6] == math.ceil(BTC * 10010 * 7.5e-4) and fill[9] == 0
    assert p.status(s) == "filled"
    assert p.acct[k.A_BASE] == BTC and p.acct[k.A_QUOTE] == 10**15 - BTC * 10010 - fill[6]


def test_latency_and_no_look_ahead():
    p = Pair()
    s = p.submit(1, k.T_MARKET, BTC, ts=1000, active_ts=1050)
    assert p.trade(1040, 100.0, 5.0) == 0                # not active yet
    assert p.trade(1050, 101.0, 5.0) == 1                # first trade at or after ts + latency
    assert p.events(k.EV_FILL)[0][4] == 10100
    # an order submitted after an event cannot fill on that event: only on the next
    q = Pair()
    q.trade(0, 100.0, 5.0)
    s = q.submit(1, k.T_MARKET, BTC, ts=0, active_ts=0)
    assert q.status(s) == "pending"
    q.bar(60_000, 105.0, 106.0, 104.0, 105.5, 10.0)
    assert q.events(k.EV_FILL)[0][4] == 10500            # the next bar's open


def test_limit_rests_and_fills_as_maker_only_when_traded_through():
    p = Pair()
    s = p.submit(1, k.T_LIMIT, BTC, price=99.0)
    p.trade(1, 100.0, 1.0)
    assert p.status(s) == "open"
    p.trade(2, 99.0, 1.0)                                # a touch is not a fill
    assert p.status(s) == "open"
    p.trade(3, 98.5, 1.0)
    fill = p.events(k.EV_FILL)[0]
    assert fill[4] == 9900 and fill[9] == 1 and fill[6] == math.ceil(BTC * 9900 * 2e-4)


def test_marketable_limit_takes_at_most_its_price():
    p = Pair(venue=k.venue_params(0.01, 1e-8, 50.0, 2.0, 7.5, 1.0, False))
    p.submit(1, k.T_LIMIT, BTC, price=100.2)
    p.trade(1, 100.0, 5.0)                               # slipped price 100.5 capped at 100.2
    fill = p.events(k.EV_FILL)[0]
    assert fill[4] == 10020 and fill[9] == 0


def test_post_only_rejected_when_it_would_take_rests_otherwise():
    p = Pair()
    a = p.submit(1, k.T_LIMIT, BTC, price=101.0, flags=k.F_POST_ONLY)
    b = p.submit(1, k.T_LIMIT, BTC, price=99.0, flags=k.F_POST_ONLY)
    p.trade(1, 100.0, 5.0)
    assert p.status(a) == "rejected" and p.book.orders[a]["reason"] == k.RSN_POST_ONLY
    assert p.status(b) == "open"


def test_ioc_fok_with_limited_liquidity():
    p = Pair(venue=k.venue_params(0.01, 1e-8, 0.0, 2.0, 7.5, 0.5, False))   # 50 % participation
    ioc = p.submit(1, k.T_LIMIT, BTC, price=101.0, tif=k.TIF_IOC)
    p.trade(1, 100.0, 1.0)                               # 0.5 available: half, rest cancelled
    assert p.book.orders[ioc]["filled"] == BTC // 2 and p.status(ioc) == "canceled"
    assert p.book.orders[ioc]["reason"] == k.RSN_IOC
    fok = p.submit(1, k.T_LIMIT, BTC, price=101.0, tif=k.TIF_FOK)
    p.trade(2, 100.0, 1.0)
    assert p.book.orders[fok]["filled"] == 0 and p.book.orders[fok]["reason"] == k.RSN_FOK
    fok2 = p.submit(1, k.T_LIMIT, BTC, price=101.0, tif=k.TIF_FOK)
    p.trade(3, 100.0, 2.0)
    assert p.status(fok2) == "filled"
    away = p.submit(1, k.T_LIMIT, BTC, price=90.0, tif=k.TIF_IOC)   # not marketable: nothing to take
    p.trade(4, 100.0, 2.0)
    assert p.status(away) == "canceled"


def test_gtc_partial_fills_by_participation():
    p = Pair(venue=k.venue_params(0.01, 1e-8, 0.0, 2.0, 7.5, 0.1, False))
    s = p.submit(-1, k.T_LIMIT, BTC, price=100.0)
    p.acct[k.A_BASE] = p.ref_acct[k.A_BASE] = BTC
    fills = []
    for t in range(1, 20):
        p.trade(t, 100.5, 3.0)                           # 3 BTC traded through, 0.3 for us
        fills += p.events(k.EV_FILL)
        if p.status(s) == "filled":
            break
    assert [f[3] for f in fills] == [3 * 10**7] * 3 + [10**7]


def test_stop_and_stop_limit_on_bars():
    p = Pair()
    p.acct[k.A_BASE] = p.ref_acct[k.A_BASE] = 3 * BTC
    stop = p.submit(-1, k.T_STOP, BTC, stop=95.0)
    stop_gap = p.submit(-1, k.T_STOP, BTC, stop=99.5)
    sl = p.submit(-1, k.T_STOP_LIMIT, BTC, price=96.0, stop=97.0)
    p.trade(0, 100.0, 1.0)                               # activates; nothing triggers
    p.bar(60_000, 99.0, 100.0, 94.0, 95.5, 100.0)        # opens below 99.5: that stop fills at the open
    by_slot = {e[1]: e for e in p.events(k.EV_FILL)}
    assert by_slot[stop_gap][4] == 9900
    assert by_slot[stop][4] == 9500                      # crossed continuously: at the stop
    assert by_slot[sl][4] == 9700                        # triggered at 97, limit 96 marketable
    assert all(p.status(s) == "filled" for s in (stop, stop_gap, sl))


def test_stop_limit_that_gaps_past_its_limit_rests():
    p = Pair()
    p.acct[k.A_BASE] = p.ref_acct[k.A_BASE] = BTC
    s = p.submit(-1, k.T_STOP_LIMIT, BTC, price=96.0, stop=97.0)
    p.trade(0, 100.0, 1.0)
    p.trade(1, 95.0, 1.0)                                # triggers at the print 95 < limit 96: rests
    assert p.status(s) == "open" and p.events(k.EV_TRIGGERED)
    p.trade(2, 96.5, 1.0)                                # trades through 96 upward: maker fill
    assert p.status(s) == "filled" and p.events(k.EV_FILL)[0][9] == 1


def test_bar_path_dip_first_when_bar_rises():
    """Bullish bar O->L->H->C: a buy limit below and a sell limit above both fill; bearish bar:
    O->H->L->C."""
    p = Pair()
    p.acct[k.A_BASE] = p.ref_acct[k.A_BASE] = BTC
    buy = p.submit(1, k.T_LIMIT, BTC, price=98.0)
    sell = p.submit(-1, k.T_LIMIT, BTC, price=102.0)
    p.trade(0, 100.0, 1.0)
    p.bar(60_000, 100.0, 103.0, 97.0, 102.5, 100.0)
    assert p.status(buy) == p.status(sell) == "filled"


def test_insufficient_funds_at_fill_cancels_the_rest():
    p = Pair(quote=50 * 10**8)                           # 50 USDT in 1e-10 units... 0.5 USDT
    s = p.submit(1, k.T_MARKET, BTC)
    p.trade(1, 100.0, 5.0)
    o = p.book.orders[s]
    assert 0 < o["filled"] < BTC and p.status(s) == "canceled"
    assert o["reason"] == k.RSN_INSUFFICIENT_FUNDS and p.acct[k.A_QUOTE] >= 0
    q = Pair()
    s = q.submit(-1, k.T_MARKET, BTC)                    # nothing held, spot: nothing sold
    q.trade(1, 100.0, 5.0)
    assert q.status(s) == "canceled" and q.acct[k.A_BASE] == 0


def test_venue_bracket_through_matching():
    """The kernel's group logic also runs under matching: entry fills, exits activate, TP fills, SL
    cancelled."""
    p = Pair()
    g, e, tp, sl = bracket(p, lots=BTC)
    p.trade(0, 100.0, 5.0)                               # entry limit 10 rests (price 100)
    p.trade(1, 9.5, 5.0)                                 # through 10: entry fills, exits released
    assert p.status(e) == "filled" and p.status(tp) == p.status(sl) == "pending"
    p.trade(2, 11.0, 5.0)                                # exits activate
    p.trade(3, 12.5, 5.0)                                # TP through 12
    assert p.status(tp) == "filled" and p.status(sl) == "canceled"
    assert p.acct[k.A_BASE] == 0


# ---------------------------------------------------------------------------------------------------
# No allocation per operation
# ---------------------------------------------------------------------------------------------------

NO_ALLOC_SCRIPT = """
import os
os.environ["NUMBA_NRT_STATS"] = "1"
import math, numpy as np
from numba import njit
from numba.core.runtime import rtsys
from bot4jax.kernels import orders_nb as k

@njit
def loop(book, limits, acct, cfg, vacct, legs, n):
    nan = math.nan
    for i in range(n):
        s = k.risk_submit_nb(book, limits, acct, 1, k.T_LIMIT, k.TIF_GTC, 0, 100, 99.0, nan, k.NO_EXPIRY, i, i, False)
        k.activate_nb(book, s, i)
        k.apply_fill_nb(book, s, 40, 99.0, i)
        k.match_trade_nb(book, cfg, vacct, i, 98.0, 1.0)
        k.cancel_nb(book, s, i)
        k.release_nb(book, s)
        e = k.submit_nb(book, 1, k.T_MARKET, k.TIF_GTC, 0, 10, nan, nan, k.NO_EXPIRY, i, i, True)
        x = k.submit_nb(book, -1, k.T_STOP, k.TIF_GTC, 0, 10, nan, 90.0, k.NO_EXPIRY, i, i, True)
        legs[0] = e
        legs[1] = x
        g = k.link_nb(book, k.G_BRACKET, legs, 2, i)
        k.apply_fill_nb(book, e, 10, 99.0, i)
        k.expire_nb(book, i)
        k.cancel_group_nb(book, g, i)
        k.release_group_nb(book, g)
    return book.meta[k.M_NEXT_ID]

book = k.init_book(64)
limits = np.zeros(1, k.LIMITS_DTYPE); limits["lot"] = 1e-8; limits["max_position"] = 1e9
limits["max_notional"] = 1e12
acct = np.zeros(1, k.ACCOUNT_DTYPE); acct["quote"] = 1e12; acct["mark"] = 99.0; acct["position"] = 1e9
cfg = k.venue_params(0.01, 1e-8, 2.5, 2.0, 7.5, 1.0, True)
vacct = np.array([10**15, 10**12], np.int64)
legs = np.zeros(8, np.int64)
args = (book, limits[0], acct[0], cfg[0], vacct, legs)
loop(*args, 1)
a0 = rtsys.get_allocation_stats().alloc
loop(*args, 10)
a1 = rtsys.get_allocation_stats().alloc
loop(*args, 20000)
a2 = rtsys.get_allocation_stats().alloc
print(a1 - a0, a2 - a1)
"""


def test_kernels_allocate_nothing_per_operation():
    """Numba runtime allocations of a compiled loop over every operation do not depend on how many
    times it runs (NRT statistics must be switched on before numba is imported: a subprocess)."""
    import subprocess
    import sys
    root = __import__("pathlib").Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", NO_ALLOC_SCRIPT], capture_output=True, text=True, cwd=root,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    short, long = map(int, out.stdout.split()[-2:])
    assert short == long, (short, long)
