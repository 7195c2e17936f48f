"""Each detector finds its pattern and stays quiet on lookalikes and clean flow.

- hand-built streams: the minimal pattern of each detector raises one alert whose measures, level,
  participants and evidence follow the rules by hand; changing one ingredient (too slow, too small,
  two-sided, no unwinding, no concentration, ...) silences it;
- the surveillance simulator: every planted episode is found by its detector, every alert of a
  detector overlaps an episode of its kind (fresh seeds), and a clean stream raises no alert.
"""
import numpy as np
import pytest

from bot4jax.data.simulator_surveillance import EPISODE_KINDS, simulate_surveillance
from bot4jax.surveillance import (
    ADD, CANCEL, DETECTORS, TRADE, AlertLevel, Events, SurveillanceConfig, detect, level_for_score, match,
    validate_events,
)

T0 = 1_700_000_000_000


class Tape:
    """Build a stream by hand; times in ms from T0; the mid is whatever was set last."""

    def __init__(self, mid=100.0):
        self.rows, self.mid, self.next_oid, self.orders = [], mid, 1, {}

    def add(self, t, pid, side, price, size):
        oid = self.next_oid
        self.next_oid += 1
        self.orders[oid] = (pid, side, price, size)
        self.rows.append((t, ADD, oid, pid, -1, side, price, size, self.mid))
        return oid

    def cancel(self, t, oid):
        pid, side, price, size = self.orders[oid]
        self.rows.append((t, CANCEL, oid, pid, -1, side, price, size, self.mid))

    def trade(self, t, taker, side, size, maker=999, price=None):
        """A market order of `taker` filling a resting order of `maker` posted 50 ms earlier at the touch."""
        price = price if price is not None else self.mid + side * 0.005
        oid = self.add(t - 50, maker, -side, price, size)
        self.rows.append((t, TRADE, oid, taker, maker, side, price, size, self.mid))

    def events(self) -> Events:
        rows = sorted(self.rows, key=lambda r: r[0])  # stable: causal order within a millisecond
        cols = list(zip(*rows))
        ev = Events(ts=T0 + np.asarray(cols[0], np.int64), kind=cols[1], order_id=cols[2], participant=cols[3],
                    counterparty=cols[4], side=cols[5], price=cols[6], size=cols[7], mid=cols[8])
        return validate_events(ev, "tape")

    def warmup_adds(self, n=300, pid=500):
        for k in range(n):
            oid = self.add(k, pid, 1 if k % 2 else -1, 99.9 if k % 2 else 100.1, 1.0)
            self.cancel(k + 10_000, oid)

    def background_trades(self, rng, t0, t1, rate_per_s=4.0, walk_bps=1.0):
        """Random trades of participants 100..199 on a random-walk mid (one step per second)."""
        t = t0
        while t < t1:
            t += rng.exponential(1000.0 / rate_per_s)
            if int(t) // 1000 != int(t - 1) // 1000:
                self.mid *= np.exp(rng.normal(0, walk_bps * 1e-4))
            self.trade(int(t), int(rng.integers(100, 200)), int(rng.choice([-1, 1])), float(rng.uniform(0.5, 1.5)),
                       maker=int(rng.integers(200, 210)))


def only(alerts, name):
    return [a for a in alerts if a.detector == name]


# ---- spoofing ---------------------------------------------------------------------------------------

def spoof_tape(size=20.0, life=500, price=100.05, gap=5_000, trade_other_side=False, fill=0.0):
    tape = Tape()
    tape.warmup_adds()
    for k in range(3):
        t = 20_000 + k * gap
        oid = tape.add(t, 7, -1, price, size)
        if fill:
            tape.rows.append((t + 10, TRADE, oid, 300, 7, 1, price, fill * size, tape.mid))
        tape.cancel(t + life, oid)
    if trade_other_side:
        tape.trade(20_000 + gap + 100, 7, 1, 1.0)
    return tape.events()


def test_spoofing_by_hand():
    alerts = only(detect(spoof_tape()), "spoofing")
    assert len(alerts) == 1
    a = alerts[0]
    assert a.level is AlertLevel.LOW and a.participants == (7,)
    assert a.measures["orders"] == 3 and a.measures["volume"] == 60.0 and a.measures["lifetime_ms"] == 500
    # the typical size takes in the spoofer's own adds, so the later multiples are a little below 20
    assert a.measures["size_multiple"] == pytest.approx(20.0, rel=0.02)
    assert a.measures["distance_bps"] == pytest.approx(5.0)
    assert a.measures["traded_other_side"] == 0 and a.measures["side"] == -1
    assert (a.start_ts, a.ts) == (T0 + 20_000, T0 + 30_500)
    ev = spoof_tape()
    cited = {int(k) for k in np.flatnonzero(np.isin(ev.id, a.event_ids))}
    assert len(cited) == 6 and set(ev.participant[list(cited)]) == {7}  # the 3 adds and 3 cancels

    aggravated = only(detect(spoof_tape(trade_other_side=True)), "spoofing")
    assert [a.level for a in aggravated] == [AlertLevel.MEDIUM]  # score 1 x aggravation 2
    assert aggravated[0].measures["traded_other_side"] == 1


@pytest.mark.parametrize("change", [dict(life=3_000), dict(size=5.0), dict(price=100.01), dict(gap=40_000),
                                    dict(fill=0.5)])
def test_spoofing_quiet_on_lookalikes(change):
    assert only(detect(spoof_tape(**change)), "spoofing") == []


# ---- layering ---------------------------------------------------------------------------------------

def layer_tape(other_side_order=False, cancel_after=300):
    tape = Tape()
    if other_side_order:
        tape.add(500, 9, -1, 100.02, 1.0)
    bids = [tape.add(1_000 + 200 * k, 9, 1, 99.99 - 0.01 * k, 1.0) for k in range(4)]
    tape.trade(2_000, 9, -1, 1.0)
    for k, oid in enumerate(bids):
        tape.cancel(2_000 + cancel_after + 10 * k, oid)
    return tape.events()


def test_layering_by_hand():
    alerts = only(detect(layer_tape()), "layering")
    assert len(alerts) == 1
    a = alerts[0]
    # 4 stacked bids, cancels needed: max(3, 0.8 * 4) -> the 4th; score 4 / 3 -> LOW
    assert a.level is AlertLevel.LOW and a.participants == (9,)
    assert a.measures["orders"] == 4 and a.measures["stack_orders"] == 4 and a.measures["stack_share"] == 1.0
    assert a.measures["cancel_delay_ms"] == 330 and a.measures["side"] == 1
    assert a.start_ts == T0 + 1_000 and a.ts == T0 + 2_330
    assert len(a.event_ids) == 9  # the trade, then 4 (add, cancel) pairs


@pytest.mark.parametrize("change", [dict(other_side_order=True), dict(cancel_after=1_500)])
def test_layering_quiet_on_lookalikes(change):
    assert only(detect(layer_tape(**change)), "layering") == []


# ---- wash trading -----------------------------------------------------------------------------------

def wash_tape(accounts, rounds=2, sizes=None):
    tape = Tape()
    t, k = 1_000, 0
    for _ in range(rounds):
        for j, seller in enumerate(accounts):
            buyer = accounts[(j + 1) % len(accounts)]
            q = 3.0 if sizes is None else sizes[k]
            tape.trade(t, seller, -1, q, maker=buyer)
            t += 700
            k += 1
    return tape.events()


def test_wash_trading_pair_triangle_and_linked_accounts():
    pair = only(detect(wash_tape((20, 21))), "wash_trading")  # 4 trades: cycles close at trades 2, 3, 4
    assert len(pair) == 1 and pair[0].measures["cycles"] == 3 and pair[0].measures["length"] == 2
    assert set(pair[0].participants) == {20, 21} and pair[0].level is AlertLevel.LOW

    tri = only(detect(wash_tape((40, 41, 42), rounds=2)), "wash_trading")  # 6 trades: cycles at 3..6
    assert len(tri) == 1 and tri[0].measures["length"] == 3 and set(tri[0].participants) == {40, 41, 42}
    assert tri[0].measures["cycles"] == 3

    linked = SurveillanceConfig(linked_groups=((30, 31),))
    selfish = wash_tape((30, 31), rounds=2)
    found = only(detect(selfish, linked), "wash_trading")  # every trade inside the group is a self-trade
    assert len(found) == 1 and found[0].measures["length"] == 1 and found[0].measures["cycles"] == 3

    escalate = only(detect(wash_tape((20, 21), rounds=8)), "wash_trading")  # 15 cycles: scores 3/3 .. 12/3
    assert [a.level for a in escalate] == [AlertLevel.LOW, AlertLevel.MEDIUM, AlertLevel.HIGH, AlertLevel.CRITICAL]
    assert [a.measures["cycles"] for a in escalate] == [3, 5, 8, 12]


def test_wash_trading_quiet_on_lookalikes():
    assert only(detect(wash_tape((20, 21), sizes=[3.0, 3.5, 4.0, 4.5])), "wash_trading") == []  # sizes differ
    assert only(detect(wash_tape((20, 21), rounds=1)), "wash_trading") == []  # one cycle only
    slow = Tape()
    for k in range(4):  # back and forth, but 20 s apart: not one cycle
        slow.trade(1_000 + 20_000 * k, (20, 21)[k % 2], -1, 3.0, maker=(21, 20)[k % 2])
    assert only(detect(slow.events()), "wash_trading") == []


# ---- quote stuffing ---------------------------------------------------------------------------------

def test_quote_stuffing_burst_and_steady_rate():
    tape = Tape()
    for k in range(250):  # 500 messages in 500 ms
        oid = tape.add(10_000 + 2 * k, 50, 1, 99.5, 1.0)
        tape.cancel(10_000 + 2 * k + 1, oid)
    alerts = only(detect(tape.events()), "quote_stuffing")
    assert alerts and alerts[0].participants == (50,) and alerts[0].start_ts == T0 + 10_000
    assert alerts[0].measures["messages"] >= 200 and alerts[0].measures["trade_ratio"] == 0
    assert max(a.level for a in alerts) is AlertLevel.MEDIUM  # ~393 decayed messages at the end: score ~2
    assert len(alerts[0].event_ids) == 32

    steady = Tape()  # 300 messages a second for 3 minutes: after the first minute it is its normal rate
    for k in range(54_000):
        oid = steady.add(k * 10 // 3, 51, 1, 99.5, 1.0) if k % 2 == 0 else oid
        if k % 2:
            steady.cancel(k * 10 // 3, oid)
    late = [a for a in only(detect(steady.events()), "quote_stuffing") if a.ts > T0 + 60_000]
    assert late == []


def test_quote_stuffing_market_wide_for_unknown_participants():
    tape = Tape()
    for k in range(400):
        tape.rows.append((5_000 + k, ADD, -1, -1, -1, 1, 99.5, 1.0, tape.mid))
    alerts = only(detect(tape.events()), "quote_stuffing")
    assert alerts and alerts[0].participants == ()


# ---- ramping ----------------------------------------------------------------------------------------

def ramp_tape(concentrated=True, unknown=False):
    rng = np.random.default_rng(3)
    tape = Tape()
    tape.background_trades(rng, 0, 300_000)
    for k in range(45):  # 45 aggressive buys in 30 s while the mid climbs 45 bps
        tape.mid *= np.exp(1e-4)
        who = 60 if concentrated else 600 + k
        tape.trade(300_000 + 667 * k, who, 1, 8.0)
    tape.background_trades(rng, 330_000, 360_000)
    ev = tape.events()
    if unknown:
        ev = Events(**{**{c: getattr(ev, c) for c in Events.columns}, "participant": np.full(len(ev), -1),
                       "counterparty": np.full(len(ev), -1)})
    return ev


def test_ramping_by_hand():
    alerts = only(detect(ramp_tape()), "ramping")
    assert alerts and all(a.participants == (60,) for a in alerts)
    a = alerts[0]
    assert a.measures["return_bps"] > 0 and a.measures["z"] >= 4 and a.measures["participant_trades"] >= 15
    assert a.measures["participant_share"] >= 0.5 and T0 + 300_000 <= a.ts <= T0 + 330_000
    assert only(detect(ramp_tape(concentrated=False)), "ramping") == []  # 45 different buyers: a market move
    market = only(detect(ramp_tape(unknown=True)), "ramping")  # no ids: judged market-wide
    assert market and market[0].participants == ()


# ---- momentum ignition ------------------------------------------------------------------------------

def ignition_tape(unwind=1.0, revert=True):
    rng = np.random.default_rng(4)
    tape = Tape()
    tape.background_trades(rng, 0, 60_000)
    for k in range(6):  # 6 aggressive buys in 3 s: +24 bps
        tape.mid *= np.exp(4e-4)
        tape.trade(60_000 + 500 * k, 70, 1, 5.0)
    for k in range(10):  # the mid falls back over 10 s while 70 sells
        if revert:
            tape.mid *= np.exp(-2.4e-4)
        if unwind:
            tape.trade(64_000 + 1_000 * k, 70, -1, 3.0 * unwind)
        else:
            tape.trade(64_000 + 1_000 * k, 150, -1, 3.0)
    return tape.events()


def test_momentum_ignition_by_hand():
    alerts = only(detect(ignition_tape()), "momentum_ignition")
    assert len(alerts) == 1
    a = alerts[0]
    assert a.participants == (70,) and a.measures["burst_trades"] == 6 and a.measures["side"] == 1
    # the run starts from the mid of its first trade (its maker's order already carried the first step)
    assert a.measures["move_bps"] == pytest.approx(20.0, abs=0.05) and a.measures["retrace"] >= 0.5
    assert 0.5 <= a.measures["unwind_ratio"] < 1 and a.start_ts == T0 + 60_000
    assert a.level is level_for_score(a.measures["move_bps"] / 10.0, SurveillanceConfig().level_scores)
    assert only(detect(ignition_tape(unwind=0)), "momentum_ignition") == []  # others sell: no unwinding
    assert only(detect(ignition_tape(revert=False)), "momentum_ignition") == []  # no reversal


# ---- the simulator's planted episodes -----------------------------------------------------------------

@pytest.fixture(scope="module")
def planted_runs():
    runs = []
    for seed in (11, 12):
        sim = simulate_surveillance(1_100, seed=seed, episodes=EPISODE_KINDS)
        runs.append((sim, detect(sim.events)))
    return runs


@pytest.mark.parametrize("name", DETECTORS)
def test_every_planted_episode_is_found_and_every_alert_is_true(name, planted_runs):
    for sim, alerts in planted_runs:
        m = match(alerts, sim.episodes)[name]
        assert m["episodes"] == 1 and m["found"] == 1, (sim.seed, m)
        assert m["alerts"] == m["true_alerts"], (sim.seed, m)
        episode = next(e for e in sim.episodes if e.kind == name)
        assert all(set(a.participants) & set(episode.participants) for a in only(alerts, name))


def test_alerts_cite_events_of_the_episode(planted_runs):
    sim, alerts = planted_runs[0]
    ev = sim.events
    for a in alerts:
        episode = next(e for e in sim.episodes if e.kind == a.detector)
        idx = np.flatnonzero(np.isin(ev.id, a.event_ids))
        assert len(idx) == len(a.event_ids) > 0
        who = set(ev.participant[idx]) | set(ev.counterparty[idx])
        assert who & set(episode.participants)
        assert (ev.ts[idx] >= a.start_ts).all() and (ev.ts[idx] <= a.end_ts).all()


def test_clean_stream_raises_no_alert():
    sim = simulate_surveillance(1_200, seed=21, episodes=())
    assert sim.episodes == () and len(sim.events) > 80_000
    assert detect(sim.events) == []
