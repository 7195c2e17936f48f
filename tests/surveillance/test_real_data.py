"""Surveillance over real market data: level-2 books and trades from ../shared/data (skipped when absent).

The captures have no order or participant ids, so the stream is built from level changes
(`events_from_l2`): the detectors must run over it without error and give finite, well-formed alerts
(quote stuffing and ramping judge the whole market there). The level-change conversion itself is
checked by hand on a small book.
"""
import gzip
import json
import math
from pathlib import Path

import numpy as np
import pytest

from bot4jax.data.binance_ws import capture_book, capture_trades
from bot4jax.data.types import Book, Trades
from bot4jax.surveillance import (
    ADD, CANCEL, DETECTORS, MEASURES, TRADE, AlertLevel, SurveillanceMonitor, events_from_l2, events_from_trades,
    take_events, validate_events,
)

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
CAPTURES = ["binance_spot_BTCUSDT_20240808_ws.jsonl.gz", "binance_usdm_BTCUSDT_20240808_ws.jsonl.gz"]


def need(name):
    path = DATA / name
    if not path.exists():
        pytest.skip(f"{path} not present (shared market data)")
    return path


def test_level_changes_by_hand():
    nan = np.nan
    book = Book(ts=[10, 20, 30],
                bid_px=[[99.0, 98.0], [99.0, 98.0], [99.5, 99.0]], bid_sz=[[1.0, 2.0], [1.5, 2.0], [0.5, 1.5]],
                ask_px=[[101.0, nan], [101.0, 102.0], [101.0, 102.0]], ask_sz=[[3.0, 0.0], [2.0, 1.0], [2.0, 1.0]])
    trades = Trades(ts=[20, 25], price=[101.0, 99.0], amount=[1.0, 0.5], side=[1, -1])
    ev = events_from_l2(book, trades)
    validate_events(ev)
    rows = list(zip(ev.ts.tolist(), ev.kind.tolist(), ev.side.tolist(), ev.price.tolist(), ev.size.tolist()))
    assert rows == [
        (10, ADD, 1, 98.0, 2.0), (10, ADD, 1, 99.0, 1.0), (10, ADD, -1, 101.0, 3.0),
        (20, ADD, 1, 99.0, 0.5), (20, CANCEL, -1, 101.0, 1.0), (20, ADD, -1, 102.0, 1.0),
        (20, TRADE, 1, 101.0, 1.0), (25, TRADE, -1, 99.0, 0.5),
        (30, CANCEL, 1, 98.0, 2.0), (30, ADD, 1, 99.5, 0.5),  # 99.0 kept its 1.5: no event
    ]
    assert ev.mid.tolist() == [100.0] * 8 + [100.25] * 2 and (ev.participant == -1).all()
    assert (ev.order_id == -1).all() and ev.id.tolist() == list(range(10))


def well_formed(alerts):
    for a in alerts:
        assert a.detector in DETECTORS and AlertLevel.LOW <= a.level <= AlertLevel.CRITICAL
        assert a.start_ts <= a.ts == a.end_ts and len(a.event_ids) <= 32
        assert list(a.measures) == list(MEASURES[a.detector])
        assert all(math.isfinite(v) or a.detector == "ramping" for v in a.measures.values())
        json.dumps(a.to_record(), allow_nan=False)


@pytest.mark.parametrize("name", CAPTURES)
def test_detectors_run_on_binance_captures(name):
    path = need(name)
    lines = gzip.open(path, "rt").read().splitlines()
    book, _ = capture_book(lines, name, levels=20)
    trades, _ = capture_trades(lines, name)
    ev = validate_events(events_from_l2(book, trades), name)
    assert (ev.kind == TRADE).sum() == len(trades) and len(ev) > 2 * len(trades)
    assert np.isfinite(ev.mid[ev.ts >= book.ts[0]]).all()
    monitor = SurveillanceMonitor(source=name)
    alerts = []
    for a in range(0, len(ev), 10_000):
        alerts += monitor.on_events(take_events(ev, slice(a, a + 10_000)))
    assert monitor.events_seen == len(ev)
    well_formed(alerts)


def test_detectors_run_on_trades_only():
    name = "binance_XRP_ETH-trades-2019.json.gz"
    rows = json.load(gzip.open(need(name)))
    trades = Trades(ts=[r[0] for r in rows], price=[r[4] for r in rows], amount=[r[5] for r in rows],
                    side=[1 if r[3] == "buy" else -1 for r in rows])
    ev = validate_events(events_from_trades(trades), name)
    monitor = SurveillanceMonitor(source=name)
    well_formed(monitor.on_events(ev))
    assert monitor.events_seen == len(rows) == 12_477
