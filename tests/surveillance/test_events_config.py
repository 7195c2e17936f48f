"""The event stream type, its validation, the config's validation and the alert levels."""
import numpy as np
import pytest

from bot4jax.errors import ConfigError, DataError
from bot4jax.surveillance import (
    ADD, CANCEL, MODIFY, TRADE, Alert, AlertLevel, Events, SurveillanceConfig, concat_events, level_for_score,
    renumber, take_events, validate_events,
)


def small(**changes) -> Events:
    cols = dict(ts=[10, 10, 12, 15], kind=[ADD, MODIFY, CANCEL, TRADE], order_id=[1, 1, 1, -1],
                participant=[4, 4, 4, 5], counterparty=[-1, -1, -1, 6], side=[1, 1, 1, -1],
                price=[99.5, 99.6, 99.6, 99.7], size=[2.0, 1.0, 0.0, 0.5], mid=[99.75, np.nan, 99.75, 99.75])
    cols.update(changes)
    return Events(**cols)


def test_events_defaults_and_dtypes():
    ev = small()
    assert len(ev) == 4
    assert ev.id.tolist() == [0, 1, 2, 3] and ev.id.dtype == np.int64
    assert ev.kind.dtype == np.int8 and ev.side.dtype == np.int8 and ev.price.dtype == np.float64
    no_mid = Events(ts=[1], kind=[ADD], order_id=[1], participant=[1], counterparty=[-1], side=[1], price=[1.0],
                    size=[1.0])
    assert np.isnan(no_mid.mid[0])
    assert validate_events(ev) is ev
    with pytest.raises(ValueError, match="differ in length"):
        Events(ts=[1, 2], kind=[ADD], order_id=[1], participant=[1], counterparty=[-1], side=[1], price=[1.0],
               size=[1.0])


def test_take_concat_renumber():
    ev = small()
    both = renumber(concat_events([ev, take_events(ev, slice(2, 4))]))
    assert len(both) == 6 and both.id.tolist() == list(range(6))
    assert both.ts.tolist() == [10, 10, 12, 15, 12, 15]
    assert take_events(ev, ev.kind == TRADE).participant.tolist() == [5]


@pytest.mark.parametrize("field, values, row, message", [
    ("ts", [10, 10, 9, 15], 3, "back in time"),
    ("ts", [-1, 10, 12, 15], 1, "negative"),
    ("kind", [0, 2, 7, 3], 3, "0 add"),
    ("side", [1, 0, 1, -1], 2, r"\+1 \(bid"),
    ("price", [99.5, 99.6, 99.6, np.nan], 4, "finite positive price"),
    ("price", [-1.0, 99.6, 99.6, 99.7], 1, "finite positive price"),
    ("size", [0.0, 1.0, 0.0, 0.5], 1, "finite positive size"),
    ("size", [2.0, -1.0, 0.0, 0.5], 2, "size >= 0"),
    ("mid", [99.75, np.inf, 99.75, 99.75], 2, "NaN"),
    ("participant", [4, -2, 4, 5], 2, "-1"),
    ("counterparty", [-1, -1, -1, -5], 4, "-1"),
    ("order_id", [1, 1, -3, -1], 3, "-1"),
])
def test_validation_names_row_and_field(field, values, row, message):
    with pytest.raises(DataError, match=message) as e:
        validate_events(small(**{field: values}), "feed.jsonl")
    assert (e.value.source, e.value.row, e.value.field) == ("feed.jsonl", row, field)
    assert "feed.jsonl, row" in str(e.value)


def test_validation_rows_map_and_duplicate_ids():
    with pytest.raises(DataError) as e:
        validate_events(small(side=[1, 1, 3, 1]), "f", rows=np.array([7, 8, 9, 10]))
    assert e.value.row == 9
    with pytest.raises(DataError, match="duplicate event id 3") as e:
        validate_events(small(id=[3, 4, 3, 5]), "f")
    assert (e.value.row, e.value.field) == (3, "id")


def test_config_defaults_valid_and_replace():
    c = SurveillanceConfig()
    assert c.level_scores == (1.0, 1.5, 2.5, 4.0)
    d = c.replace(spoof_min_orders=5)
    assert d.spoof_min_orders == 5 and c.spoof_min_orders == 3
    with pytest.raises(ConfigError, match="unknown surveillance setting"):
        c.replace(spoof_min_order=5)


@pytest.mark.parametrize("changes, name", [
    (dict(spoof_size_mult=0.0), "spoof_size_mult"),
    (dict(cooldown_ms=-5), "cooldown_ms"),
    (dict(qs_min_messages=float("nan")), "qs_min_messages"),
    (dict(spoof_min_orders=2.5), "spoof_min_orders"),
    (dict(layer_imbalance="3"), "layer_imbalance"),
    (dict(ramp_min_share=1.5), "ramp_min_share"),
    (dict(spoof_min_distance_bps=50.0, spoof_max_distance_bps=10.0), "spoof_min_distance_bps"),
    (dict(wash_max_cycle=5), "wash_max_cycle"),
    (dict(wash_cycle_ms=120_000), "wash_cycle_ms"),
    (dict(qs_fast_ms=60_000), "qs_slow_ms"),
    (dict(ramp_window_buckets=1), "ramp_window_buckets"),
    (dict(aggravation=0.5), "aggravation"),
    (dict(level_scores=(1.0, 2.0, 2.0, 3.0)), "level_scores"),
    (dict(level_scores=(0.5, 2.0, 3.0, 4.0)), "level_scores"),
    (dict(level_scores=(1.0, 2.0)), "level_scores"),
    (dict(linked_groups=((1,),)), "linked_groups"),
    (dict(linked_groups=((1, 2), (2, 3))), "linked_groups"),
    (dict(linked_groups=((1, -4),)), "linked_groups"),
])
def test_config_rejects_bad_values(changes, name):
    with pytest.raises(ConfigError, match=name):
        SurveillanceConfig(**changes)


def test_levels_from_scores():
    scores = (1.0, 1.5, 2.5, 4.0)
    assert level_for_score(0.99, scores) is AlertLevel.NONE
    assert level_for_score(1.0, scores) is AlertLevel.LOW
    assert level_for_score(1.49, scores) is AlertLevel.LOW
    assert level_for_score(1.5, scores) is AlertLevel.MEDIUM
    assert level_for_score(3.0, scores) is AlertLevel.HIGH
    assert level_for_score(100.0, scores) is AlertLevel.CRITICAL
    assert AlertLevel.parse("High") is AlertLevel.HIGH and AlertLevel.parse(4) is AlertLevel.CRITICAL
    assert AlertLevel.NONE < AlertLevel.LOW < AlertLevel.MEDIUM < AlertLevel.HIGH < AlertLevel.CRITICAL
    with pytest.raises(ValueError, match="unknown alert level"):
        AlertLevel.parse("severe")


def test_alert_record_round_trip():
    a = Alert("ramping", AlertLevel.HIGH, 5, 1, 5, (3,), (10, 11), {"z": 7.5, "participant_share": float("nan")},
              trigger_id=11, alert_id=9)
    rec = a.to_record()
    assert rec["level"] == "high" and rec["measures"]["participant_share"] is None
    back = Alert.from_record(rec)
    assert (back.detector, back.level, back.participants, back.event_ids, back.alert_id) == \
        ("ramping", AlertLevel.HIGH, (3,), (10, 11), 9)
    assert np.isnan(back.measures["participant_share"]) and back.measures["z"] == 7.5
