"""Every surveillance threshold in one frozen, validated config.

The defaults suit a liquid venue with one-tick spreads and a few hundred messages per second; the
benchmark (`experiments/bench_surveillance.py`) measures precision, recall and the false-alert rate
they give on the surveillance simulator. Times are milliseconds, distances basis points of the mid,
sizes relative to the typical order size unless a name says otherwise.

Scores and levels: each detector turns its measures into a score s >= 1 when it fires (the formula is
in the detector's docstring, `bot4jax.kernels.surveillance_nb`); the level is LOW for s >=
level_scores[0], MEDIUM for s >= level_scores[1], HIGH for s >= level_scores[2], CRITICAL for s >=
level_scores[3]. Aggravating evidence (trading on the other side while spoofing, unwinding a whole
ignition burst) multiplies s by `aggravation`.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields

from bot4jax.errors import ConfigError


@dataclass(frozen=True)
class SurveillanceConfig:
    # ---- common ----------------------------------------------------------------------------------
    level_scores: tuple = (1.0, 1.5, 2.5, 4.0)
    """Score at which an alert is LOW, MEDIUM, HIGH, CRITICAL (increasing, the first >= 1)."""
    aggravation: float = 2.0
    """Score multiplier for aggravating evidence (>= 1)."""
    cooldown_ms: int = 30_000
    """After an alert for one key (participant, group), the same detector stays quiet for that key this
    long unless the level rises."""

    # ---- spoofing: large orders away from the mid, cancelled quickly without fills ----------------
    spoof_size_mult: float = 8.0
    """An order is large when its size >= this x the typical add size (geometric EWMA)."""
    spoof_size_halflife: float = 5_000.0
    """Half-life, in adds, of the EWMA of log add size that defines the typical size."""
    spoof_min_distance_bps: float = 2.0
    """Nearest distance from the mid at which an order counts as placed away from it."""
    spoof_max_distance_bps: float = 100.0
    """Farthest: orders beyond this cannot move the price and are ignored."""
    spoof_max_lifetime_ms: int = 2_000
    """A cancel within this time of the add is quick."""
    spoof_max_fill_ratio: float = 0.1
    """Filled amount / order size at most this for the cancel to count."""
    spoof_window_ms: int = 60_000
    """Window over which one participant's spoof-like cancels on one side are counted."""
    spoof_min_orders: int = 3
    """Spoof-like cancels on one side within the window that raise an alert."""
    spoof_warmup_adds: int = 200
    """No order counts as large before this many adds have set the typical size."""

    # ---- layering: a one-sided stack of orders, pulled right after a trade on the other side -----
    layer_min_orders: int = 3
    """Live orders on the stacked side at the trade, and cancels of them after it, at least this many."""
    layer_min_cancel_share: float = 0.8
    """Cancelled orders / orders stacked at the trade, at least this."""
    layer_imbalance: float = 10.0
    """Stacked-side live volume >= this x the participant's live volume on the trade's side."""
    layer_stack_window_ms: int = 3_000
    """A stacked order was added at most this long before the trade."""
    layer_cancel_window_ms: int = 1_000
    """A cancel counts when it comes at most this long after the trade that armed the participant."""

    # ---- wash trading: trades whose asset goes round among the same or linked participants -------
    wash_window_ms: int = 60_000
    """Cycles of one group of participants are counted over this window."""
    wash_cycle_ms: int = 10_000
    """The trades of one cycle lie within this time of its last trade."""
    wash_size_tolerance: float = 0.01
    """Trades of one cycle have sizes within this relative tolerance of each other."""
    wash_max_cycle: int = 4
    """Longest cycle searched (1 = self-trades only; at most 4)."""
    wash_min_cycles: int = 3
    """Cycles of the same group within the window that raise an alert."""
    wash_max_edges: int = 512
    """Most recent trades kept for the cycle search (bounds its cost)."""
    linked_groups: tuple = ()
    """Known linked accounts, e.g. ((3, 17), (40, 41, 42)): trades inside a group are self-trades."""

    # ---- ramping: price pushed up/down by one participant's aggressive flow with a volume surge --
    ramp_bucket_ms: int = 1_000
    """Time bucket of the baseline."""
    ramp_window_buckets: int = 30
    """Window of the move, buckets."""
    ramp_halflife_buckets: float = 900.0
    """Half-life of the baseline volume and variance EWMAs, buckets."""
    ramp_warmup_buckets: int = 120
    """No alert before this many buckets of baseline."""
    ramp_min_z: float = 4.0
    """Window log return / (baseline bucket sd x sqrt(window)), at least this."""
    ramp_min_volume_ratio: float = 2.0
    """Window volume / baseline window volume, at least this."""
    ramp_min_direction: float = 0.6
    """Aggressive volume in the move's direction / all window volume, at least this."""
    ramp_min_share: float = 0.5
    """The alerting participant's share of the directional aggressive volume (when known)."""
    ramp_min_trades: int = 15
    """The participant's aggressive trades in the move's direction within the window, at least."""
    ramp_max_trades: int = 65_536
    """Trades kept for the window sums (a busier window keeps the most recent ones)."""

    # ---- quote stuffing: bursts of order messages with hardly any trades -------------------------
    qs_fast_ms: int = 1_000
    """Time constant of the fast decayed message count (about: messages in the last second)."""
    qs_slow_ms: int = 60_000
    """Time constant of the slow decayed count (the participant's own baseline rate)."""
    qs_min_messages: float = 200.0
    """Fast count at least this."""
    qs_burst_ratio: float = 10.0
    """Fast rate / slow rate at least this (a steady high-rate market maker is not a burst)."""
    qs_max_trade_ratio: float = 0.05
    """Decayed trades / decayed messages at most this."""

    # ---- momentum ignition: aggressive burst, then a reversal while the igniter unwinds ----------
    mi_max_gap_ms: int = 1_500
    """Aggressive trades of one participant in one direction at most this far apart form a burst."""
    mi_min_trades: int = 5
    """Trades in the burst, at least."""
    mi_min_move_bps: float = 10.0
    """Mid move in the burst's direction from its start to its peak, at least."""
    mi_min_share: float = 0.4
    """The burst's volume / all aggressive volume in its direction since it started, at least."""
    mi_window_ms: int = 60_000
    """Time after the burst's last trade in which the reversal and the unwinding must happen."""
    mi_min_retrace: float = 0.5
    """(peak - mid) / (peak - start) at least this."""
    mi_min_unwind: float = 0.5
    """The participant's opposite-side volume since the burst / burst volume, at least this."""
    mi_max_active: int = 64
    """Bursts watched at once (the oldest is dropped)."""

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in ("level_scores", "linked_groups"):
                continue
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
                raise ConfigError(f"surveillance {f.name} must be a finite number, got {v!r}")
            if f.type == "int" and int(v) != v:
                raise ConfigError(f"surveillance {f.name} must be an integer, got {v!r}")
        _check_levels(self.level_scores)
        _check_groups(self.linked_groups)
        positive = [f.name for f in fields(self) if f.name not in ("level_scores", "linked_groups")
                    and not f.name.endswith(("_distance_bps", "_fill_ratio", "_trade_ratio"))]
        for name in positive:
            if not getattr(self, name) > 0:
                raise ConfigError(f"surveillance {name} must be > 0, got {getattr(self, name)!r}")
        if self.aggravation < 1:
            raise ConfigError(f"surveillance aggravation must be >= 1, got {self.aggravation!r}")
        if not 0 <= self.spoof_min_distance_bps < self.spoof_max_distance_bps:
            raise ConfigError("surveillance needs 0 <= spoof_min_distance_bps < spoof_max_distance_bps, got "
                              f"{self.spoof_min_distance_bps!r} and {self.spoof_max_distance_bps!r}")
        for name in ("spoof_max_fill_ratio", "qs_max_trade_ratio", "layer_min_cancel_share", "ramp_min_direction",
                     "ramp_min_share", "mi_min_retrace", "mi_min_share"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"surveillance {name} must be in [0, 1], got {getattr(self, name)!r}")
        if not 1 <= self.wash_max_cycle <= 4:
            raise ConfigError(f"surveillance wash_max_cycle must be 1..4, got {self.wash_max_cycle!r}")
        if self.ramp_window_buckets < 2:
            raise ConfigError(f"surveillance ramp_window_buckets must be >= 2, got {self.ramp_window_buckets!r}")
        if self.wash_cycle_ms > self.wash_window_ms:
            raise ConfigError(f"surveillance wash_cycle_ms ({self.wash_cycle_ms}) must not exceed wash_window_ms "
                              f"({self.wash_window_ms})")
        if self.qs_slow_ms <= self.qs_fast_ms:
            raise ConfigError(f"surveillance qs_slow_ms ({self.qs_slow_ms}) must exceed qs_fast_ms "
                              f"({self.qs_fast_ms})")

    def replace(self, **changes) -> "SurveillanceConfig":
        """A copy with some fields changed (validated again); unknown names raise ConfigError."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ConfigError(f"unknown surveillance setting(s) {unknown}")
        return type(self)(**{**{f.name: getattr(self, f.name) for f in fields(self)}, **changes})


def _check_levels(levels) -> None:
    try:
        vals = [float(x) for x in levels]
    except (TypeError, ValueError):
        raise ConfigError(f"surveillance level_scores must be 4 numbers, got {levels!r}") from None
    if len(vals) != 4 or not all(math.isfinite(v) for v in vals) or vals[0] < 1 or \
            any(b <= a for a, b in zip(vals, vals[1:])):
        raise ConfigError("surveillance level_scores must be 4 increasing finite numbers, the first >= 1 "
                          f"(LOW, MEDIUM, HIGH, CRITICAL), got {levels!r}")


def _check_groups(groups) -> None:
    seen: dict[int, int] = {}
    try:
        items = [tuple(g) for g in groups]
    except TypeError:
        raise ConfigError(f"surveillance linked_groups must be a sequence of id sequences, got {groups!r}") from None
    for i, g in enumerate(items):
        if len(g) < 2:
            raise ConfigError(f"surveillance linked_groups[{i}] needs at least two participant ids, got {g!r}")
        for pid in g:
            if isinstance(pid, bool) or not isinstance(pid, numbers.Integral) or pid < 0:
                raise ConfigError(f"surveillance linked_groups[{i}] holds {pid!r}: ids are integers >= 0")
            if pid in seen:
                raise ConfigError(f"surveillance participant {pid} is in linked_groups[{seen[pid]}] and [{i}]; "
                                  "merge the two groups")
            seen[pid] = i
