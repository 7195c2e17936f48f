"""The surveillance mode of the simulator: seeded, valid, realistic background, truthful ground truth."""
import numpy as np
import pytest

from bot4jax.data.simulator_surveillance import (
    EPISODE_KINDS, PLANT_ID, SurveillanceSimParams, simulate_surveillance,
)
from bot4jax.errors import ConfigError
from bot4jax.surveillance import ADD, CANCEL, MODIFY, TRADE, validate_events


@pytest.fixture(scope="module")
def sim():
    return simulate_surveillance(1_000, seed=3, episodes=EPISODE_KINDS)


def test_seeded_and_valid(sim):
    again = simulate_surveillance(1_000, seed=3, episodes=EPISODE_KINDS)
    other = simulate_surveillance(1_000, seed=4, episodes=EPISODE_KINDS)
    for col in ("ts", "kind", "order_id", "participant", "counterparty", "side", "price", "size", "mid"):
        np.testing.assert_array_equal(getattr(sim.events, col), getattr(again.events, col))
    assert sim.episodes == again.episodes and sim.episodes != other.episodes
    validate_events(sim.events)
    assert (sim.events.id == np.arange(len(sim.events))).all()


def test_ground_truth(sim):
    p = sim.params
    assert [e.kind for e in sim.episodes] == list(EPISODE_KINDS)
    start, end = p.start_ms + p.warmup_ms, p.start_ms + sim.duration_ms
    spans = [(e.start_ts, e.end_ts) for e in sim.episodes]
    assert all(start <= a <= b <= end for a, b in spans)
    assert all(b1 + p.gap_ms <= a2 for (_, b1), (a2, _) in zip(spans, spans[1:]))  # apart by the gap
    ev = sim.events
    for e in sim.episodes:
        assert all(pid >= PLANT_ID for pid in e.participants)
        mine = np.isin(ev.participant, e.participants) | np.isin(ev.counterparty, e.participants)
        assert ev.ts[mine].min() >= e.start_ts - 3_000 and ev.ts[mine].max() <= e.end_ts + 3_000
    outside = ~np.isin(ev.participant, [p for e in sim.episodes for p in e.participants])
    assert (ev.participant[outside] < p.n_participants).all()
    wash = [e for e in sim.episodes if e.kind == "wash_trading"][0]
    assert len(wash.participants) == 1  # the first wash episode is a self-trade
    variants = simulate_surveillance(1_300, seed=1, episodes=("wash_trading",) * 3, gap_ms=20_000).episodes
    assert [len(e.participants) for e in variants] == [1, 2, 3]  # self, pair, triangle


def test_background_flow_is_market_like():
    sim = simulate_surveillance(900, seed=8, episodes=())
    ev, p = sim.events, sim.params
    counts = np.bincount(ev.kind, minlength=4)
    seconds = sim.duration_ms / 1000
    assert counts[TRADE] == pytest.approx(p.trade_rate * seconds * 1.1, rel=0.15)  # + news bursts
    assert counts[ADD] / seconds > p.add_rate  # resting orders, ladders, makers of trades
    assert counts[CANCEL] / counts[ADD] > 0.85  # most orders are cancelled, not filled
    assert counts[MODIFY] > 0
    active = np.unique(ev.participant)
    assert active.size > 150
    # a few participants are very active (Zipf), most are occasional
    per = np.bincount(ev.participant[ev.participant >= 0])
    assert per.max() > 20 * np.median(per[per > 0])
    # trades happen at the touch: the bid or the ask around the event's mid
    tr = ev.kind == TRADE
    half = np.abs(ev.price[tr] - ev.mid[tr])
    assert np.allclose(half, p.tick / 2)
    assert np.all((ev.side[tr] > 0) == (ev.price[tr] > ev.mid[tr]))
    # the mid moves like a 3 % daily-vol walk: 15 minutes of it stay within a few percent
    assert 0.95 < ev.mid.min() / p.price0 and ev.mid.max() / p.price0 < 1.05
    assert len(np.unique(ev.mid)) > 20


def test_bad_arguments():
    with pytest.raises(ConfigError, match="need at least"):
        simulate_surveillance(400, episodes=EPISODE_KINDS)
    with pytest.raises(ConfigError, match="unknown episode kind"):
        simulate_surveillance(1_000, episodes=("spoofing", "front_running"))
    with pytest.raises(ConfigError, match="unknown surveillance simulator parameter"):
        simulate_surveillance(100, episodes=(), trade_rates=3)
    with pytest.raises(ConfigError, match="mm_share"):
        SurveillanceSimParams(mm_share=1.5)
    with pytest.raises(ConfigError, match="n_participants"):
        SurveillanceSimParams(n_participants=15)
    with pytest.raises(ConfigError, match="duration_s"):
        simulate_surveillance(0, episodes=())
