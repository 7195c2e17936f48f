"""The streaming surveillance monitor: events in, alerts out, audit log written, subscribers told.

    monitor = SurveillanceMonitor(config, audit_log="experiments/runs/<run>/surveillance.jsonl")
    unsubscribe = monitor.subscribe(on_alert, min_level=AlertLevel.HIGH)   # e.g. pause or widen limits
    alerts = monitor.on_events(batch)                                      # every batch, in time order

`on_events` checks the batch (validate_events, and that it does not go back before the previous
batch), runs every detector over it, numbers the alerts, appends each to the audit log before any
subscriber sees it, then calls the subscribers whose `min_level` the alert reaches. A subscriber
that raises is logged and skipped: surveillance keeps running. Feeding a stream in batches gives the
same alerts as feeding it at once.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Callable

from bot4jax.errors import DataError
from bot4jax.surveillance.alerts import DETECTORS, Alert, AlertLevel
from bot4jax.surveillance.audit import AuditLog
from bot4jax.surveillance.config import SurveillanceConfig
from bot4jax.surveillance.detectors import detector_init, detector_update, event_arrays
from bot4jax.surveillance.events import Events, validate_events

log = logging.getLogger(__name__)


class SurveillanceMonitor:
    def __init__(self, config: SurveillanceConfig | None = None, audit_log: AuditLog | str | None = None,
                 detectors=DETECTORS, validate: bool = True, source: str = "stream"):
        self.config = config or SurveillanceConfig()
        unknown = [d for d in detectors if d not in DETECTORS]
        if unknown:
            raise ValueError(f"unknown detector(s) {unknown}; choose from {list(DETECTORS)}")
        self._states = [detector_init(name, self.config) for name in detectors]
        self.audit = AuditLog(audit_log, source=source) if isinstance(audit_log, (str, bytes)) or \
            hasattr(audit_log, "__fspath__") else audit_log
        self.validate = validate
        self.source = source
        self.events_seen = 0
        self.last_ts: int | None = None
        self.next_id = self.audit.next_id if self.audit is not None else 0
        self._subscribers: list[tuple[Callable[[Alert], None], AlertLevel]] = []
        self.highest: dict[str, AlertLevel] = {}  # per detector, the highest level so far

    @property
    def detectors(self) -> tuple:
        return tuple(s.name for s in self._states)

    def subscribe(self, callback: Callable[[Alert], None], min_level=AlertLevel.HIGH) -> Callable[[], None]:
        """Call `callback(alert)` for every alert at or above `min_level`; returns an unsubscribe function."""
        entry = (callback, AlertLevel.parse(min_level))
        self._subscribers.append(entry)

        def unsubscribe() -> None:
            if entry in self._subscribers:
                self._subscribers.remove(entry)
        return unsubscribe

    def on_events(self, events: Events) -> list[Alert]:
        """Process the next batch of the stream; return its alerts (ordered by time, then detector)."""
        if not len(events):
            return []
        source = f"{self.source} (events {self.events_seen + 1}..{self.events_seen + len(events)})"
        if self.validate:
            validate_events(events, source)
        if self.last_ts is not None and events.ts[0] < self.last_ts:
            raise DataError(source, f"batch starts at ts {int(events.ts[0])}, before the previous batch's last event "
                            f"({self.last_ts}): batches must come in time order", row=1, field="ts")
        ev = event_arrays(events)
        found: list[Alert] = []
        for k, state in enumerate(self._states):
            self._states[k], alerts = detector_update(state, ev)
            found.extend(alerts)
        found.sort(key=lambda a: a.ts)  # stable: detector order within a millisecond
        out = []
        for a in found:
            a = dataclasses.replace(a, alert_id=self.next_id)
            self.next_id += 1
            if self.audit is not None:
                self.audit.append(a)
            self.highest[a.detector] = max(self.highest.get(a.detector, AlertLevel.NONE), a.level)
            for callback, min_level in list(self._subscribers):
                if a.level >= min_level:
                    try:
                        callback(a)
                    except Exception:
                        log.exception("surveillance subscriber %r failed on alert %d", callback, a.alert_id)
            out.append(a)
        self.events_seen += len(events)
        self.last_ts = int(events.ts[-1])
        return out

    def close(self) -> None:
        if self.audit is not None:
            self.audit.close()
