"""Market manipulation surveillance over order-book event streams.

Detectors (spoofing, layering, wash trading, ramping, quote stuffing, momentum ignition) run as
Numba kernels (`bot4jax.kernels.surveillance_nb`, whose docstring states every rule); alerts carry a
level (none / low / medium / high / critical) and their evidence, and go to an append-only audit log.

    from bot4jax.surveillance import SurveillanceMonitor, SurveillanceConfig, AlertLevel
    monitor = SurveillanceMonitor(SurveillanceConfig(), audit_log="surveillance.jsonl")
    monitor.subscribe(lambda alert: loop.pause(alert), min_level=AlertLevel.HIGH)
    alerts = monitor.on_events(events)
"""
from bot4jax.surveillance.alerts import DETECTORS, MEASURES, Alert, AlertLevel, level_for_score
from bot4jax.surveillance.audit import AuditLog, read_audit_log
from bot4jax.surveillance.capture import events_from_l2, events_from_trades
from bot4jax.surveillance.config import SurveillanceConfig
from bot4jax.surveillance.detectors import DetectorState, detect, detector_init, detector_update
from bot4jax.surveillance.evaluation import match
from bot4jax.surveillance.events import (
    ADD, CANCEL, KIND_NAMES, MODIFY, TRADE, UNKNOWN, Events, concat_events, renumber, take_events, validate_events,
)
from bot4jax.surveillance.monitor import SurveillanceMonitor

__all__ = [
    "ADD", "CANCEL", "DETECTORS", "KIND_NAMES", "MEASURES", "MODIFY", "TRADE", "UNKNOWN", "Alert", "AlertLevel",
    "AuditLog", "DetectorState", "Events", "SurveillanceConfig", "SurveillanceMonitor", "concat_events", "detect",
    "detector_init", "detector_update", "events_from_l2", "events_from_trades", "level_for_score", "match",
    "read_audit_log", "renumber", "take_events", "validate_events",
]
