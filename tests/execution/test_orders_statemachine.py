"""Random sequences of submits (simple and linked), fills, cancels, rejections, expiries, price moves
(trades and bars through the matcher) and risk checks, driven by Hypothesis against the kernel and
its plain-Python reference together; the invariants are checked after every step."""
from __future__ import annotations

import math

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from bot4jax.kernels import orders_nb as k
from tests.execution.test_orders_kernel import FINAL, WORKING, Pair

CAPACITY = 12
PRICES = st.integers(180, 220).map(lambda t: t * 0.5)        # 90.0 .. 110.0 on the 0.5 tick
LOTS = st.integers(1, 60)
SIDES = st.sampled_from([1, -1])
TYPES = st.sampled_from([k.T_MARKET, k.T_LIMIT, k.T_STOP, k.T_STOP_LIMIT])
TIFS = st.sampled_from([k.TIF_GTC, k.TIF_GTC, k.TIF_IOC, k.TIF_FOK, k.TIF_GTD])


@st.composite
def orders(draw, side=None, otype=None, lots=None):
    side = draw(SIDES) if side is None else side
    otype = draw(TYPES) if otype is None else otype
    tif = draw(TIFS)
    price = draw(PRICES) if otype in (k.T_LIMIT, k.T_STOP_LIMIT) else math.nan
    stop = draw(PRICES) if otype in (k.T_STOP, k.T_STOP_LIMIT) else math.nan
    flags = k.F_POST_ONLY if otype == k.T_LIMIT and tif in (k.TIF_GTC, k.TIF_GTD) and draw(st.booleans()) else 0
    return dict(side=side, otype=otype, lots=draw(LOTS) if lots is None else lots, price=price, stop=stop,
                tif=tif, flags=flags, expire_offset=draw(st.integers(1, 5)), latency=draw(st.integers(0, 2)))


class OrdersMachine(RuleBasedStateMachine):

    @initialize(quote=st.sampled_from([10**3, 10**5, 10**7]), base=st.integers(0, 300),
                participation=st.sampled_from([0.25, 1.0]), short=st.booleans(),
                slippage=st.sampled_from([0.0, 25.0]))
    def setup(self, quote, base, participation, short, slippage):
        venue = k.venue_params(0.5, 1.0, slippage, 2.0, 7.5, participation, short)
        self.p = Pair(CAPACITY, venue=venue, quote=quote, base=base)
        self.ts = 0
        self.final: dict[int, tuple] = {}   # slot -> (status, filled, oid) once final

    # -- helpers
    def used(self):
        return [i for i, o in enumerate(self.p.ref.orders) if o is not None]

    def submit_one(self, o, hold):
        return self.p.submit(o["side"], o["otype"], o["lots"], price=o["price"], stop=o["stop"], tif=o["tif"],
                             flags=o["flags"], expire_ts=self.ts + o["expire_offset"], ts=self.ts,
                             active_ts=self.ts + o["latency"], hold=hold)

    # -- rules
    @rule(o=orders())
    def submit(self, o):
        self.submit_one(o, hold=False)

    @rule(kind=st.sampled_from([k.G_OCO, k.G_BRACKET, k.G_OTO, k.G_MULTILEG]), data=st.data())
    def submit_group(self, kind, data):
        self.group(kind, data)

    @rule(kind=st.sampled_from([k.G_OCO, k.G_BRACKET]), data=st.data())
    def submit_exit_group(self, kind, data):
        self.group(kind, data)

    def group(self, kind, data):
        lots = data.draw(LOTS)
        if kind == k.G_OCO:
            side = data.draw(SIDES)
            specs = [data.draw(orders(side=side, lots=lots)) for _ in range(data.draw(st.integers(2, 3)))]
        elif kind == k.G_BRACKET:
            side = data.draw(SIDES)
            entry = data.draw(orders(side=side, lots=lots, otype=data.draw(st.sampled_from([k.T_MARKET, k.T_LIMIT]))))
            exits = [data.draw(orders(side=-side, lots=lots, otype=t))
                     for t in data.draw(st.sampled_from([[k.T_LIMIT, k.T_STOP], [k.T_STOP], [k.T_LIMIT, k.T_STOP_LIMIT]]))]
            specs = [entry] + exits
        elif kind == k.G_OTO:
            specs = [data.draw(orders()), data.draw(orders())]
        else:
            specs = [data.draw(orders()) for _ in range(data.draw(st.integers(2, 4)))]
        slots = []
        for spec in specs:
            s = self.submit_one(spec, hold=True)
            if s < 0:
                break
            slots.append(s)
        g = self.p.link(kind, slots) if len(slots) == len(specs) else k.RC_INVALID
        if g < 0:   # the caller releases legs that could not be linked
            for s in slots:
                k.release_nb(self.p.book, s)
                self.p.ref.release(s)

    def working(self, grouped=False):
        return [i for i, o in enumerate(self.p.ref.orders)
                if o is not None and o.status in WORKING and (o.group >= 0 or not grouped)]

    @precondition(lambda self: self.used())
    @rule(data=st.data(), lots=st.integers(1, 80), price=PRICES)
    def fill_any(self, data, lots, price):
        """Any slot, final and held ones included (those must be refused)."""
        self.p.fill(data.draw(st.sampled_from(self.used())), lots, price, self.ts)

    @precondition(lambda self: self.working())
    @rule(data=st.data(), lots=st.integers(1, 40), price=PRICES)
    def fill_working(self, data, lots, price):
        self.p.fill(data.draw(st.sampled_from(self.working())), lots, price, self.ts)

    @precondition(lambda self: self.working(grouped=True))
    @rule(data=st.data(), lots=st.integers(1, 40), price=PRICES)
    def fill_group_leg(self, data, lots, price):
        self.p.fill(data.draw(st.sampled_from(self.working(grouped=True))), lots, price, self.ts)

    @precondition(lambda self: self.used())
    @rule(data=st.data())
    def cancel(self, data):
        self.p.cancel(data.draw(st.sampled_from(self.used())), self.ts)

    @precondition(lambda self: self.used())
    @rule(data=st.data(), status=st.sampled_from(["rejected", "expired", "canceled"]))
    def venue_ends(self, data, status):
        self.p.end(data.draw(st.sampled_from(self.used())), status, k.RSN_VENUE, self.ts)

    @precondition(lambda self: any(g is not None for g in self.p.ref.groups))
    @rule(data=st.data())
    def cancel_group(self, data):
        self.p.cancel_group(data.draw(st.sampled_from([i for i, g in enumerate(self.p.ref.groups) if g])), self.ts)

    @precondition(lambda self: self.used())
    @rule(data=st.data(), unknown=st.booleans())
    def ack(self, data, unknown):
        slot = data.draw(st.sampled_from(self.used()))
        if unknown:
            self.p.unknown(slot, self.ts)
        else:
            self.p.activate(slot, self.ts)

    @rule(dt=st.integers(0, 3))
    def expire(self, dt):
        self.ts += dt
        self.p.expire(self.ts)

    @rule(dt=st.integers(0, 2), price=PRICES, volume=st.sampled_from([0.0, 5.0, 40.0, 400.0]))
    def trade(self, dt, price, volume):
        self.ts += dt
        self.p.trade(self.ts, price, volume)

    @rule(dt=st.integers(1, 3), o=PRICES, a=PRICES, b=PRICES, c=PRICES, volume=st.sampled_from([0.0, 20.0, 400.0]))
    def bar(self, dt, o, a, b, c, volume):
        self.ts += dt
        h, l = max(o, a, b, c), min(o, a, b, c)
        self.p.bar(self.ts, o, h, l, c, volume)

    @rule(side=SIDES, otype=TYPES, lots=st.integers(1, 400), price=PRICES, position=st.integers(-100, 300),
          quote=st.sampled_from([50.0, 5e3, 1e5]), max_position=st.sampled_from([50.0, 500.0]),
          short=st.booleans(), exclude=st.integers(-1, CAPACITY - 1))
    def risk(self, side, otype, lots, price, position, quote, max_position, short, exclude):
        limits = np.zeros(1, k.LIMITS_DTYPE)
        limits["lot"], limits["max_position"], limits["max_notional"] = 1.0, max_position, 2e4
        limits["allow_short"], limits["fee"] = float(short), 7.5e-4
        acct = np.zeros(1, k.ACCOUNT_DTYPE)
        acct["position"], acct["quote"], acct["mark"] = float(position), quote, 100.0
        stop = price if otype in (k.T_STOP, k.T_STOP_LIMIT) else math.nan
        got = k.risk_check_nb(self.p.book, limits[0], acct[0], side, otype, lots, price, stop, exclude)
        assert got == self.p.ref.risk_check(limits[0], acct[0], side, otype, lots, price, stop, exclude)

    @rule()
    def release_done(self):
        """Free final simple orders and finished groups, as the order manager does."""
        for g, grp in enumerate(self.p.ref.groups):
            if grp is not None and not grp.live:
                for s in grp.legs:
                    self.final.pop(s, None)
                k.release_group_nb(self.p.book, g)
                self.p.ref.release_group(g)
        for s, o in enumerate(self.p.ref.orders):
            if o is not None and o.group < 0 and o.status in FINAL:
                self.final.pop(s, None)
                k.release_nb(self.p.book, s)
                self.p.ref.release(s)

    # -- invariants (the kernel == reference comparison runs inside every Pair call)
    @invariant()
    def never_over_filled(self):
        if not hasattr(self, "p"):
            return
        o = self.p.book.orders
        used = o["status"] != k.S_FREE
        assert (o["filled"][used] <= o["amount"][used]).all()
        assert (o["filled"][used] >= 0).all()
        assert self.p.book.meta[k.M_DROPPED] == 0

    @invariant()
    def final_states_stay_final(self):
        if not hasattr(self, "p"):
            return
        for s, o in enumerate(self.p.ref.orders):
            if o is None:
                continue
            if s in self.final:
                assert self.final[s] == (o.status, o.filled, o.oid), (s, self.final[s], o.status)
            elif o.status in FINAL:
                self.final[s] = (o.status, o.filled, o.oid)

    @invariant()
    def groups_never_over_filled(self):
        if not hasattr(self, "p"):
            return
        orders = self.p.ref.orders
        for grp in self.p.ref.groups:
            if grp is None:
                continue
            legs = [orders[j] for j in grp.legs]
            if grp.kind == k.G_OCO:
                total = sum(o.filled for o in legs)
                assert total <= grp.cap
                if total == grp.cap:   # a completed OCO has no working leg
                    assert all(o.status in FINAL for o in legs)
            elif grp.kind == k.G_BRACKET:
                exits = sum(o.filled for o in legs[1:])
                assert grp.cap == legs[0].filled and exits <= legs[0].filled
                for o in legs[1:]:
                    if o.status in WORKING:   # a released exit is sized to the entry's fill
                        assert o.amount <= legs[0].filled
                if legs[0].filled == 0:
                    assert all(o.filled == 0 for o in legs[1:])
            elif grp.kind == k.G_OTO and legs[1].status != "held" and legs[1].filled:
                assert legs[0].status == "filled"

    @invariant()
    def account_settles(self):
        if not hasattr(self, "p"):
            return
        assert self.p.acct[k.A_QUOTE] >= 0
        if self.p.cfg[0]["allow_short"] == 0.0:
            assert self.p.acct[k.A_BASE] >= 0


OrdersMachine.TestCase.settings = settings(max_examples=80, stateful_step_count=50, deadline=None,
                                           suppress_health_check=[HealthCheck.too_slow])
TestOrders = OrdersMachine.TestCase
