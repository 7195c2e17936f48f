"""Alerts: what a detector found, how serious it is, and the evidence behind it."""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

DETECTORS = ("spoofing", "layering", "wash_trading", "ramping", "quote_stuffing", "momentum_ignition")
"""Detector names; the index of a name is its code in the kernels."""

MEASURES = {
    "spoofing": ("orders", "volume", "size_multiple", "lifetime_ms", "distance_bps", "traded_other_side", "side"),
    "layering": ("orders", "stack_orders", "stack_volume", "stack_share", "cancelled_volume", "cancel_delay_ms",
                 "side"),
    "wash_trading": ("cycles", "length", "volume", "span_ms", "size"),
    "ramping": ("return_bps", "z", "volume_ratio", "direction_share", "participant_share", "participant_trades",
                "window_volume"),
    "quote_stuffing": ("messages", "rate_ratio", "trade_ratio", "burst_ms", "slow_messages"),
    "momentum_ignition": ("burst_trades", "move_bps", "retrace", "unwind_ratio", "burst_volume", "burst_ms",
                          "side", "burst_share"),
}
"""Names of each detector's measures, in the order the kernels write them (see surveillance_nb)."""


class AlertLevel(enum.IntEnum):
    NONE = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @classmethod
    def parse(cls, value) -> "AlertLevel":
        """A level from its name ('high', any case) or number (3)."""
        if isinstance(value, str):
            try:
                return cls[value.strip().upper()]
            except KeyError:
                raise ValueError(f"unknown alert level {value!r}; use one of "
                                 f"{[m.name.lower() for m in cls]}") from None
        return cls(int(value))


def level_for_score(score: float, level_scores) -> AlertLevel:
    """LOW..CRITICAL for the highest of the 4 thresholds `level_scores` that `score` reaches, else NONE."""
    level = AlertLevel.NONE
    for k, threshold in enumerate(level_scores):
        if score >= threshold:
            level = AlertLevel(k + 1)
    return level


@dataclass(frozen=True)
class Alert:
    """One alert. Times are ms UTC; `ts` is the event that completed the pattern, [start_ts, end_ts]
    the span of the evidence; `event_ids` (at most 32) the events that make up the pattern (the
    ids of the stream, `Events.id`); `measures` the detector's figures (names in MEASURES)."""

    detector: str
    level: AlertLevel
    ts: int
    start_ts: int
    end_ts: int
    participants: tuple
    event_ids: tuple
    measures: dict = field(hash=False, compare=True)
    trigger_id: int = -1
    alert_id: int = -1

    def to_record(self) -> dict:
        """A JSON-ready dict (non-finite measures become None)."""
        return {
            "alert_id": self.alert_id,
            "detector": self.detector,
            "level": self.level.name.lower(),
            "ts": self.ts,
            "start_ts": self.start_ts,
            "end_ts": self.end_ts,
            "participants": list(self.participants),
            "trigger_id": self.trigger_id,
            "event_ids": list(self.event_ids),
            "measures": {k: (v if math.isfinite(v) else None) for k, v in self.measures.items()},
        }

    @classmethod
    def from_record(cls, rec: dict) -> "Alert":
        return cls(detector=rec["detector"], level=AlertLevel.parse(rec["level"]), ts=int(rec["ts"]),
                   start_ts=int(rec["start_ts"]), end_ts=int(rec["end_ts"]),
                   participants=tuple(int(p) for p in rec["participants"]),
                   event_ids=tuple(int(e) for e in rec["event_ids"]),
                   measures={k: (float("nan") if v is None else float(v)) for k, v in rec["measures"].items()},
                   trigger_id=int(rec.get("trigger_id", -1)), alert_id=int(rec.get("alert_id", -1)))
