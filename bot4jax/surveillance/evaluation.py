"""Precision and recall of alerts against planted episodes (the surveillance simulator's ground truth).

Matching rule: an alert is a true positive when its detector equals an episode's kind and its window
[start_ts, end_ts] overlaps that episode's [start_ts, end_ts]; recall = episodes with at least one
matching alert / episodes. Precision = true-positive alerts / alerts. Both per detector.
"""
from __future__ import annotations

from bot4jax.surveillance.alerts import DETECTORS


def _overlaps(a0: int, a1: int, b0: int, b1: int) -> bool:
    return a0 <= b1 and b0 <= a1


def match(alerts, episodes, detectors=DETECTORS) -> dict:
    """Per detector: {'alerts', 'true_alerts', 'episodes', 'found', 'precision', 'recall'}; precision is
    None without alerts, recall None without episodes. `episodes` need .kind, .start_ts, .end_ts."""
    out = {}
    for name in detectors:
        mine = [a for a in alerts if a.detector == name]
        eps = [e for e in episodes if e.kind == name]
        true_alerts = sum(any(_overlaps(a.start_ts, a.end_ts, e.start_ts, e.end_ts) for e in eps) for a in mine)
        found = sum(any(_overlaps(a.start_ts, a.end_ts, e.start_ts, e.end_ts) for a in mine) for e in eps)
        out[name] = {
            "alerts": len(mine), "true_alerts": true_alerts, "episodes": len(eps), "found": found,
            "precision": true_alerts / len(mine) if mine else None,
            "recall": found / len(eps) if eps else None,
        }
    return out
