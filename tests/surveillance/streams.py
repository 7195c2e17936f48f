"""Test streams: random event streams that reach every branch of the detectors, and a loose config
under which every detector fires often."""
from __future__ import annotations

import numpy as np

from bot4jax.surveillance import SurveillanceConfig
from bot4jax.surveillance.events import ADD, CANCEL, MODIFY, TRADE, Events

LOOSE = SurveillanceConfig(
    cooldown_ms=300, linked_groups=((1, 2), (5, 6, 7)),
    spoof_size_mult=2.0, spoof_size_halflife=50.0, spoof_warmup_adds=5, spoof_min_distance_bps=0.5,
    spoof_max_distance_bps=80.0, spoof_max_lifetime_ms=800, spoof_max_fill_ratio=0.5, spoof_window_ms=5_000,
    spoof_min_orders=2,
    layer_min_orders=2, layer_min_cancel_share=0.5, layer_imbalance=1.5, layer_stack_window_ms=3_000,
    layer_cancel_window_ms=1_500,
    wash_window_ms=8_000, wash_cycle_ms=4_000, wash_size_tolerance=0.05, wash_max_cycle=4, wash_min_cycles=1,
    wash_max_edges=64,
    ramp_bucket_ms=100, ramp_window_buckets=5, ramp_halflife_buckets=20.0, ramp_warmup_buckets=5, ramp_min_z=1.0,
    ramp_min_volume_ratio=0.5, ramp_min_direction=0.5, ramp_min_share=0.2, ramp_min_trades=2, ramp_max_trades=16,
    qs_fast_ms=100, qs_slow_ms=1_000, qs_min_messages=4.0, qs_burst_ratio=1.5, qs_max_trade_ratio=0.5,
    mi_max_gap_ms=400, mi_min_trades=2, mi_min_move_bps=1.0, mi_window_ms=3_000, mi_min_retrace=0.3,
    mi_min_unwind=0.2, mi_min_share=0.2, mi_max_active=4,
)


def random_stream(seed: int, n: int = 20_000, participants: int = 12, with_mid: float = 0.8,
                  many_ids: bool = False) -> Events:
    """Random adds, cancels, modifies and trades on a jumpy mid: reused and unknown order ids, unknown
    participants, self-trades, linked accounts, missing mids, zero-size modifies, repeated sizes."""
    rng = np.random.default_rng(seed)
    ts = np.cumsum(rng.choice([0, 0, 1, 3, 10, 40, 150], n, p=[.15, .15, .2, .2, .15, .1, .05]))
    kind = rng.choice([ADD, CANCEL, MODIFY, TRADE], n, p=[.4, .28, .07, .25])
    steps = rng.standard_normal(n) * 2e-4 + np.where(rng.random(n) < 0.01, rng.normal(0, 4e-3, n), 0.0)
    mid = 100.0 * np.exp(np.cumsum(steps))
    side = rng.choice(np.array([-1, 1], np.int8), n)
    pool = 400 if many_ids else participants
    pid = np.where(rng.random(n) < 0.05, -1, rng.integers(0, pool, n))
    cpid = np.where(rng.random(n) < 0.05, -1, rng.integers(0, pool, n))
    self_trade = rng.random(n) < 0.05
    cpid[self_trade] = pid[self_trade]
    sizes = np.round(np.exp(rng.normal(0, 0.8, n)) * np.where(rng.random(n) < 0.05, 20, 1), 3) + 0.001
    sizes = np.where(rng.random(n) < 0.3, rng.choice([1.0, 2.5, 5.0], n), sizes)  # repeated sizes: cycles
    price = np.round(mid * (1 + side * rng.choice([-1, 0, 1, 2, 5, 10, 40], n) * 1e-4), 2)
    oid = np.full(n, -1, np.int64)
    live: list[int] = []
    next_id = 1
    for i in range(n):
        if kind[i] == ADD:
            u = rng.random()
            if u < 0.03:
                oid[i] = -1
            elif u < 0.08 and live:
                oid[i] = live[rng.integers(len(live))]  # an id used again
            else:
                oid[i] = next_id
                next_id += 1
                live.append(oid[i])
        elif live and rng.random() < 0.9:
            j = rng.integers(max(0, len(live) - 50), len(live)) if rng.random() < 0.8 else rng.integers(len(live))
            oid[i] = live[j]
            if kind[i] == CANCEL and not many_ids:
                live.pop(j)
        else:
            oid[i] = rng.integers(next_id, next_id + 5)  # unknown to the detectors
    size = np.where((kind == MODIFY) & (rng.random(n) < 0.2), 0.0, sizes)
    mids = np.where(rng.random(n) < with_mid, np.round(mid, 4), np.nan)
    cpid = np.where(kind == TRADE, cpid, -1)
    return Events(ts=1_700_000_000_000 + ts, kind=kind, order_id=oid, participant=pid, counterparty=cpid,
                  side=side, price=price, size=size, mid=mids)
