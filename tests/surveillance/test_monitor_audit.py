"""The streaming monitor and the audit log.

- the monitor's alerts equal `detect` over the whole stream whatever the batching; ids are numbered;
- subscribers get the alerts at or above their level (a live loop degrading on HIGH), can unsubscribe,
  and one that raises does not stop surveillance;
- bad batches (invalid rows, going back in time) raise DataError naming the row and field;
- the audit log holds one JSON line per alert with its evidence, written before subscribers hear of it;
  appends from several processes at once never interleave; a torn last line is repaired on open;
  ids continue across reopenings; malformed logs are reported with file, line and field.
"""
import json
import multiprocessing
import os

import numpy as np
import pytest

from bot4jax.data.simulator_surveillance import EPISODE_KINDS, simulate_surveillance
from bot4jax.errors import DataError
from bot4jax.surveillance import (
    Alert, AlertLevel, AuditLog, SurveillanceMonitor, detect, read_audit_log, take_events,
)

from .streams import LOOSE, random_stream


@pytest.fixture(scope="module")
def sim():
    return simulate_surveillance(700, seed=5, episodes=EPISODE_KINDS, warmup_ms=150_000, gap_ms=10_000)


def key(alerts):
    return [(a.detector, a.level, a.ts, a.start_ts, a.participants, a.event_ids) for a in alerts]


def test_monitor_batches_equal_detect_and_number_alerts(sim, tmp_path):
    ev = sim.events
    whole = detect(ev)
    mon = SurveillanceMonitor(audit_log=tmp_path / "audit.jsonl")
    got = []
    for a, b in zip(range(0, len(ev), 7_919), range(7_919, len(ev) + 7_919, 7_919)):
        got += mon.on_events(take_events(ev, slice(a, b)))
    assert key(got) == key(whole) and len(got) >= 6
    assert [a.alert_id for a in got] == list(range(len(got)))
    assert {a.detector for a in got} == set(EPISODE_KINDS)
    assert mon.events_seen == len(ev) and mon.highest["spoofing"] >= AlertLevel.LOW
    mon.close()
    records = read_audit_log(tmp_path / "audit.jsonl")
    assert [r["alert_id"] for r in records] == list(range(len(got)))
    for r, a in zip(records, got):
        assert r["detector"] == a.detector and r["level"] == a.level.name.lower()
        assert r["event_ids"] == list(a.event_ids) and r["participants"] == list(a.participants)
        assert (r["ts"], r["start_ts"], r["end_ts"]) == (a.ts, a.start_ts, a.end_ts)
        assert set(r["measures"]) == set(a.measures) and r["source"] == "stream" and r["logged_at"].endswith("+00:00")


def test_subscribers_degrade_on_high_alerts(sim, tmp_path):
    mon = SurveillanceMonitor(audit_log=tmp_path / "a.jsonl")
    high, every, seen_in_log = [], [], []

    def pause(alert):  # what a live loop would do: the alert is already in the audit trail
        high.append(alert)
        seen_in_log.append(any(r["alert_id"] == alert.alert_id for r in read_audit_log(tmp_path / "a.jsonl")))

    mon.subscribe(pause)  # default: HIGH and above
    stop = mon.subscribe(every.append, min_level="low")
    mon.subscribe(lambda a: 1 / 0, min_level=AlertLevel.LOW)  # a broken subscriber is logged and skipped
    half = len(sim.events) // 2
    first = mon.on_events(take_events(sim.events, slice(0, half)))
    stop()
    second = mon.on_events(take_events(sim.events, slice(half, None)))
    assert high and all(a.level >= AlertLevel.HIGH for a in high) and all(seen_in_log)
    assert [a.alert_id for a in high] == [a.alert_id for a in first + second if a.level >= AlertLevel.HIGH]
    assert every == first  # unsubscribed at half time


def test_monitor_rejects_bad_batches():
    ev = random_stream(1, n=2_000)
    mon = SurveillanceMonitor(LOOSE)
    mon.on_events(take_events(ev, slice(1_000, 2_000)))
    with pytest.raises(DataError, match="before the previous batch") as e:
        mon.on_events(take_events(ev, slice(0, 1_000)))
    assert (e.value.row, e.value.field) == (1, "ts")
    bad = take_events(ev, slice(1_999, 2_000))
    bad.side[0] = 5
    m = SurveillanceMonitor(LOOSE)
    m.on_events(take_events(ev, slice(0, 1_000)))
    with pytest.raises(DataError, match=r"events 1001\.\.1001") as e:
        m.on_events(bad)
    assert (e.value.row, e.value.field) == (1, "side")
    with pytest.raises(ValueError, match="unknown detector"):
        SurveillanceMonitor(detectors=("spoofing", "frontrunning"))


def _alert(i):
    return Alert("wash_trading", AlertLevel.MEDIUM, 1_000 + i, 900 + i, 1_000 + i, (3, 4), tuple(range(i, i + 5)),
                 {"cycles": 3.0, "length": 2.0, "volume": 7.5, "span_ms": 100.0, "size": 2.5}, i, i)


def _append_many(path, worker, n):
    log = AuditLog(path, fsync=False, source=f"worker{worker}")
    for i in range(n):
        log.append(_alert(i))
    log.close()


def test_audit_appends_from_processes_never_interleave(tmp_path):
    path = tmp_path / "shared.jsonl"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(path, w, 300)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    records = read_audit_log(path)  # every line parses
    assert len(records) == 1_200
    for w in range(4):
        mine = [r["alert_id"] for r in records if r["source"] == f"worker{w}"]
        assert mine == list(range(300))  # each writer's lines are whole and in its order


def test_audit_log_repairs_a_torn_tail_and_continues_ids(tmp_path):
    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as log:
        assert log.next_id == 0 and log.repaired_bytes == 0
        for i in range(3):
            log.append(_alert(i))
    with open(path, "ab") as f:
        f.write(b'{"alert_id": 3, "detector": "spoo')  # a crash in the middle of a write
    with pytest.raises(DataError, match="partial last record") as e:
        read_audit_log(path)
    assert e.value.row == 4
    with AuditLog(path) as log:
        assert log.repaired_bytes == len(b'{"alert_id": 3, "detector": "spoo') and log.next_id == 3
        mon = SurveillanceMonitor(LOOSE, audit_log=log)
        alerts = mon.on_events(random_stream(1, n=3_000))
    assert alerts and alerts[0].alert_id == 3
    assert [r["alert_id"] for r in read_audit_log(path)] == list(range(3 + len(alerts)))


@pytest.mark.parametrize("line, field, message", [
    (b"not json\n", None, "not valid JSON"),
    (b"[1, 2]\n", None, "JSON object"),
    (b'{"alert_id": 1}\n', "detector", "missing field"),
])
def test_read_audit_log_names_line_and_field(tmp_path, line, field, message):
    path = tmp_path / "bad.jsonl"
    good = (json.dumps(_alert(0).to_record()) + "\n").encode()
    path.write_bytes(good + line)
    with pytest.raises(DataError, match=message) as e:
        read_audit_log(path)
    assert (e.value.source, e.value.row, e.value.field) == (str(path), 2, field)
    rec = _alert(0).to_record()
    rec["ts"] = "soon"
    path.write_bytes((json.dumps(rec) + "\n").encode())
    with pytest.raises(DataError, match="expected int") as e:
        read_audit_log(path)
    assert (e.value.row, e.value.field) == (1, "ts")


def test_audit_log_lines_are_strict_json(tmp_path):
    path = tmp_path / "nan.jsonl"
    with AuditLog(path) as log:
        log.append(Alert("ramping", AlertLevel.LOW, 1, 0, 1, (), (1,), {"participant_share": float("nan")}))
    text = path.read_text()
    assert "NaN" not in text and json.loads(text)["measures"]["participant_share"] is None
    assert os.stat(path).st_size == len(text.encode())
    assert np.isnan(Alert.from_record(json.loads(text)).measures["participant_share"])
