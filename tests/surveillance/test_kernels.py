"""The surveillance kernels against their plain-Python references, and their mechanics.

- the open-addressing hash table (insert, find, backward-shift delete, grow) equals a dict;
- each of the six kernels gives exactly the reference's alerts (level, times, participants, evidence
  ids; measures to 1e-9) on random streams built to reach every branch (reused and unknown ids,
  unknown participants, self-trades, linked accounts, streams without a mid, tables that must grow,
  more alerts than the output buffer holds) under a loose config, and on a simulated stream with the
  default config;
- a stream fed in random batches (down to one event) gives the same alerts as fed at once;
- a kernel allocates nothing per event.
"""
import math

import numpy as np
import pytest
from numba.core.runtime import _nrt_python, rtsys

from bot4jax.data.simulator_surveillance import EPISODE_KINDS, simulate_surveillance
from bot4jax.kernels import surveillance_nb as nb
from bot4jax.surveillance import DETECTORS, detector_init, detector_update, take_events
from bot4jax.surveillance.detectors import event_arrays

from .reference import run_reference
from .streams import LOOSE, random_stream

STREAMS = {"mixed": dict(seed=1), "no_mid": dict(seed=2, with_mid=0.0), "many_ids": dict(seed=3, many_ids=True)}


@pytest.fixture(scope="module")
def fuzz():
    return {k: random_stream(**v) for k, v in STREAMS.items()}


@pytest.fixture(scope="module")
def planted():
    return simulate_surveillance(700, seed=5, episodes=EPISODE_KINDS, warmup_ms=150_000, gap_ms=10_000).events


def as_dicts(alerts):
    return [dict(detector=a.detector, level=int(a.level), ts=a.ts, start_ts=a.start_ts, end_ts=a.end_ts,
                 participants=a.participants, event_ids=a.event_ids, measures=list(a.measures.values()),
                 trigger_id=a.trigger_id) for a in alerts]


def assert_same(got, want):
    key = lambda a: (a["ts"], a["trigger_id"], a["start_ts"], a["participants"])  # noqa: E731
    got, want = sorted(got, key=key), sorted(want, key=key)
    assert len(got) == len(want)
    for a, b in zip(got, want):
        for f in ("detector", "level", "ts", "start_ts", "end_ts", "participants", "event_ids", "trigger_id"):
            assert a[f] == b[f], (f, a, b)
        assert len(a["measures"]) == len(b["measures"])
        for x, y in zip(a["measures"], b["measures"]):
            assert (math.isnan(x) and math.isnan(y)) or x == pytest.approx(y, rel=1e-9, abs=1e-12), (a, b)


# ---- hash table -------------------------------------------------------------------------------------

def test_hash_table_matches_a_dict():
    rng = np.random.default_rng(0)
    t = nb.table_new(2, np.array([7.0, -1.0]), capacity=16)
    ref = {}
    for step in range(20_000):
        key = int(rng.integers(-40, 400)) * (1 if rng.random() < 0.9 else 1_000_003)
        op = rng.random()
        if op < 0.5:
            if nb._full(t):
                t = nb.grow(t)
            s = nb._get(t, key)
            if key not in ref:
                assert list(t.vals[s]) == [7.0, -1.0]  # a new key starts from the default row
                ref[key] = 7.0
            t.vals[s, 0] = ref[key] = float(step)
        elif op < 0.8:
            s = nb._find(t, key)
            assert (s >= 0) == (key in ref)
            if s >= 0:
                assert t.vals[s, 0] == ref[key]
        else:
            s = nb._find(t, key)
            if s >= 0:
                nb._delete(t, s)
                del ref[key]
        assert t.count[0] == len(ref)
    assert t.keys.size > 16  # it grew
    live = {int(k): t.vals[i, 0] for i, k in enumerate(t.keys) if k != nb.EMPTY}
    assert live == ref


# ---- kernels against references ---------------------------------------------------------------------

@pytest.mark.parametrize("name", DETECTORS)
def test_kernel_equals_reference_on_random_streams(name, fuzz):
    total = 0
    for stream in fuzz.values():
        _, alerts = detector_update(detector_init(name, LOOSE), stream)
        want = run_reference(name, stream, LOOSE)
        assert_same(as_dicts(alerts), want)
        total += len(want)
    assert total >= 5  # the streams do reach the alert paths


@pytest.mark.parametrize("name", DETECTORS)
def test_kernel_equals_reference_on_a_planted_stream(name, planted):
    _, alerts = detector_update(detector_init(name), planted)
    want = run_reference(name, planted)
    assert want, "the planted episode should raise an alert"
    assert_same(as_dicts(alerts), want)


def test_tables_grow_and_the_alert_buffer_drains(fuzz):
    ev = fuzz["many_ids"]
    state, _ = detector_update(detector_init("layering", LOOSE), ev)
    assert state.kernel_state.orders.keys.size > 1024 and state.kernel_state.parts.keys.size > 256
    state, alerts = detector_update(detector_init("wash_trading", LOOSE), fuzz["mixed"])
    assert len(alerts) > state.out.info.shape[0]


@pytest.mark.parametrize("name", DETECTORS)
def test_batches_give_the_same_alerts(name, fuzz):
    ev = fuzz["mixed"]
    _, whole = detector_update(detector_init(name, LOOSE), ev)
    rng = np.random.default_rng(DETECTORS.index(name))
    cuts = np.unique(np.r_[0, rng.integers(0, len(ev), 40), np.arange(100, 140), len(ev)])  # some 1-event batches
    state, parts = detector_init(name, LOOSE), []
    for a, b in zip(cuts[:-1], cuts[1:]):
        state, found = detector_update(state, take_events(ev, slice(a, b)))
        parts.extend(found)
    assert [(a.ts, a.trigger_id) for a in parts] == [(a.ts, a.trigger_id) for a in whole]  # same order too
    assert_same(as_dicts(parts), as_dicts(whole))


def test_kernels_allocate_nothing_per_event(planted):
    def allocations(name, n):
        state = detector_init(name)
        ev = event_arrays(take_events(planted, slice(0, n)))
        _nrt_python.memsys_enable_stats()
        try:
            before = rtsys.get_allocation_stats().alloc
            nb.__dict__[f"{name}_nb"](ev, 0, state.cfg, state.kernel_state, state.out)
            return rtsys.get_allocation_stats().alloc - before
        finally:
            _nrt_python.memsys_disable_stats()

    for name in DETECTORS:
        allocations(name, 10)  # compiled / loaded
        assert allocations(name, 100) == allocations(name, 5_000), name
