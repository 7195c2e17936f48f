"""Circuit breakers: what the live loop may do now, as an explicit state machine.

Five conditions, each tripped and cleared by the events the loop reports, each with a machine-readable
reason, an effective trading state and a rule for the target position:

    reason           trips when                              clears when                   state     target'
    exchange_errors  error_limit errors within error_window  error_recover_successes       HALTED    position
                                                             successes in a row, or                  (cancel-only)
                                                             error_cooldown_s without one
    stale_data       no market event for stale_after_s       the next market event         REDUCING  toward flat
                     (and before the first event)
    model_output     a NaN / infinite model output or a      model_recover_outputs finite  REDUCING  0 (flat)
                     failed model call (and an alert)        outputs in a row
    drawdown         (peak - equity) / peak >= max_drawdown  never: a restart with         HALTED    0 (flatten)
    daily_loss       (day open - equity) / day open          reset_halt                    HALTED    0 (flatten)
                     >= max_daily_loss (UTC days)

The trading state (NautilusTrader's ACTIVE / REDUCING / HALTED) is the most restrictive over the
active conditions. Several conditions may hold at once; the target rule comes from the first active
one in the order of the table (cancel-only beats flatten, which beats reduce-only): with the
venue failing nothing new is sent, and a loss-limit halt flattens as soon as the venue answers again.
"Toward flat" clips the target into [min(0, position), max(0, position)]: positions may shrink, never
grow or flip.

The two loss limits are sticky: the trip is written to `halt_path` (JSON, temp file + rename) and a
restart starts HALTED again unless asked to `reset_halt` (the operator's explicit flag).

Every change of a condition (trip or clear) is a `Transition` (from state, to state, reason, value),
logged as one structured line (the JSON log's fields) and counted in `counts[(reason, event)]`.

`allowed(target, position)` is what the loop calls per event: a few attribute reads and compares
(about 0.1 us in CPython). Times are ms UTC (the replay clock in a backtest). Target and
position are in the same units (base amount, or fraction of equity): the breaker only compares them.
"""
from __future__ import annotations

import enum
import json
import logging
import math
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from bot4jax.errors import ConfigError
from bot4jax.jsonio import write_json_atomic

log = logging.getLogger("bot4jax.live.breakers")

_DAY_MS = 86_400_000


class TradingState(enum.IntEnum):
    """Ordered by restrictiveness: the effective state is the max over the active conditions."""
    ACTIVE = 0       # any order
    REDUCING = 1     # orders that shrink the position only
    HALTED = 2       # no new exposure; cancel-only, or flatten after a loss limit


class Reason(enum.StrEnum):
    # Declaration order is the priority of the target rules (first active one wins).
    EXCHANGE_ERRORS = "exchange_errors"
    DRAWDOWN = "drawdown"
    DAILY_LOSS = "daily_loss"
    MODEL_OUTPUT = "model_output"
    STALE_DATA = "stale_data"


_STATE = {Reason.EXCHANGE_ERRORS: TradingState.HALTED, Reason.DRAWDOWN: TradingState.HALTED,
          Reason.DAILY_LOSS: TradingState.HALTED, Reason.MODEL_OUTPUT: TradingState.REDUCING,
          Reason.STALE_DATA: TradingState.REDUCING}
_STICKY = frozenset((Reason.DRAWDOWN, Reason.DAILY_LOSS))
# Target rules: 0 hold the position, 1 flat, 2 toward flat.
_HOLD, _FLAT, _REDUCE = 0, 1, 2
_RULE = {Reason.EXCHANGE_ERRORS: _HOLD, Reason.DRAWDOWN: _FLAT, Reason.DAILY_LOSS: _FLAT,
         Reason.MODEL_OUTPUT: _FLAT, Reason.STALE_DATA: _REDUCE}


@dataclass(frozen=True)
class BreakerConfig:
    error_limit: int = 5                 # exchange errors ...
    error_window_s: float = 60.0         # ... within this window trip cancel-only
    error_recover_successes: int = 3     # consecutive successful calls that clear it
    error_cooldown_s: float = 120.0      # or this long without an error
    stale_after_s: float = 10.0          # market data older than this: reduce only (bars: k * bar length)
    model_recover_outputs: int = 1       # finite model outputs in a row that clear a model fault
    max_drawdown: float = 0.20           # fraction of peak equity: flatten and halt
    max_daily_loss: float = 0.05         # fraction of the UTC day's first equity: flatten and halt

    def __post_init__(self):
        for name in ("error_limit", "error_recover_successes", "model_recover_outputs"):
            if not getattr(self, name) >= 1:
                raise ConfigError(f"breakers.{name} must be at least 1, got {getattr(self, name)!r}")
        for name in ("error_window_s", "error_cooldown_s", "stale_after_s"):
            v = getattr(self, name)
            if not (v > 0 and math.isfinite(v)):
                raise ConfigError(f"breakers.{name} must be a positive number of seconds, got {v!r}")
        for name in ("max_drawdown", "max_daily_loss"):
            v = getattr(self, name)
            if not 0 < v <= 1:
                raise ConfigError(f"breakers.{name} must be a fraction in (0, 1], got {v!r}")


@dataclass(frozen=True)
class Transition:
    ts: int                     # ms UTC
    event: str                  # "trip" or "clear"
    reason: Reason
    from_state: TradingState
    to_state: TradingState
    value: float | str | None   # what crossed the limit: error count, data age (s), drawdown, ...


class Breakers:
    """The breaker state machine for one trading loop.

    Report events with on_exchange_error / on_exchange_success, on_market_data / check_stale,
    on_model_output / on_model_failure, on_equity; ask `allowed(target, position)` before each order.
    `on_transition(t)` (optional) is called for every transition, e.g. to update metrics.
    """

    def __init__(self, config: BreakerConfig = BreakerConfig(), now_ms: int = 0, halt_path: str | Path | None = None,
                 reset_halt: bool = False, on_transition: Callable[[Transition], None] | None = None):
        self.config = config
        self.halt_path = Path(halt_path) if halt_path is not None else None
        self.on_transition = on_transition
        self.active: dict[Reason, float | str | None] = {}   # reason -> the value that tripped it
        self.counts: dict[tuple[str, str], int] = {}
        self.state = TradingState.ACTIVE
        self.reason: Reason | None = None
        self._rule: int | None = None
        self._errors: deque[int] = deque()
        self._last_error = -1
        self._successes = 0
        self._last_data: int | None = None
        self._model_ok = 0
        self._peak = -math.inf
        self._day = None
        self._day_open = math.nan
        self._window_ms = config.error_window_s * 1000.0
        self._cooldown_ms = config.error_cooldown_s * 1000.0
        self._stale_ms = config.stale_after_s * 1000.0
        # No market data yet: reduce only until the first event (no transition: the initial state).
        self.active[Reason.STALE_DATA] = "no data yet"
        if self.halt_path is not None and self.halt_path.exists():
            if reset_halt:
                log.warning("breaker halt cleared by reset_halt (was: %s)", self.halt_path.read_text().strip(),
                            extra={"fields": {"event": "reset_halt", "halt_path": str(self.halt_path)}})
                self.halt_path.unlink()
            else:
                try:
                    saved = json.loads(self.halt_path.read_text())
                    reason = Reason(saved["reason"])
                except (ValueError, KeyError, TypeError) as e:
                    raise ConfigError(f"{self.halt_path}: unreadable breaker halt file ({e}); inspect it, then "
                                      "restart with the reset-halt flag") from None
                self.active[reason] = saved.get("value")
                log.warning("breaker starts HALTED by %s (from %s); restart with the reset-halt flag to trade",
                            reason, self.halt_path,
                            extra={"fields": {"event": "halted_at_start", "reason": str(reason),
                                              "value": saved.get("value")}})
        self._recompute()

    # -- the per-event question ----------------------------------------------------------------

    def allowed(self, target: float, position: float) -> tuple[float, Reason | None]:
        """The target the loop may move to now and the reason limiting it (None when ACTIVE).

        Cancel-only returns `position` (send nothing); flat returns 0.0; reduce-only clips the target
        into [min(0, position), max(0, position)]. A NaN target is treated as a model fault: flat
        (or hold when cancel-only), reason model_output."""
        rule = self._rule
        if rule is None:
            if target == target:
                return target, None
            return 0.0, Reason.MODEL_OUTPUT
        if rule == _HOLD:
            return position, self.reason
        if rule == _FLAT or target != target:
            return 0.0, self.reason if rule == _FLAT else Reason.MODEL_OUTPUT
        if position >= 0.0:
            return (0.0 if target < 0.0 else (position if target > position else target)), self.reason
        return (0.0 if target > 0.0 else (position if target < position else target)), self.reason

    @property
    def halted(self) -> bool:
        return self.state == TradingState.HALTED

    # -- events --------------------------------------------------------------------------------

    def on_exchange_error(self, now_ms: int, kind: str = "error") -> None:
        """A failed exchange call (`kind`: the error type, for the log)."""
        errors = self._errors
        errors.append(now_ms)
        while errors and errors[0] <= now_ms - self._window_ms:
            errors.popleft()
        self._last_error = now_ms
        self._successes = 0
        if Reason.EXCHANGE_ERRORS not in self.active and len(errors) >= self.config.error_limit:
            self._trip(now_ms, Reason.EXCHANGE_ERRORS, f"{len(errors)} errors, last {kind}")

    def on_exchange_success(self, now_ms: int) -> None:
        """A successful exchange call (any: order, cancel, fetch)."""
        if Reason.EXCHANGE_ERRORS in self.active:
            self._successes += 1
            if self._successes >= self.config.error_recover_successes:
                self._clear(now_ms, Reason.EXCHANGE_ERRORS, f"{self._successes} successes")
        self._check_cooldown(now_ms)

    def on_market_data(self, now_ms: int) -> None:
        """A market event (trade, book update, bar) with its time."""
        self._last_data = now_ms
        if Reason.STALE_DATA in self.active:
            self._clear(now_ms, Reason.STALE_DATA, 0.0)

    def check(self, now_ms: int) -> None:
        """Time-driven conditions: stale market data and the exchange-error cooldown. Call on every
        event and on a timer (stale data shows as the absence of events)."""
        last = self._last_data
        if last is not None and now_ms - last > self._stale_ms and Reason.STALE_DATA not in self.active:
            self._trip(now_ms, Reason.STALE_DATA, (now_ms - last) / 1000.0)
        self._check_cooldown(now_ms)

    def on_model_output(self, value: float, now_ms: int) -> None:
        if value == value and value not in (math.inf, -math.inf):
            if Reason.MODEL_OUTPUT in self.active:
                self._model_ok += 1
                if self._model_ok >= self.config.model_recover_outputs:
                    self._clear(now_ms, Reason.MODEL_OUTPUT, value)
        else:
            self.on_model_failure(now_ms, repr(value))

    def on_model_failure(self, now_ms: int, error: str) -> None:
        """The model raised or returned a non-finite value: flat, and an alert."""
        self._model_ok = 0
        if Reason.MODEL_OUTPUT not in self.active:
            log.error("ALERT model output failed: %s; target flat until it recovers", error,
                      extra={"fields": {"event": "alert", "reason": "model_output", "value": error}})
            self._trip(now_ms, Reason.MODEL_OUTPUT, error)

    def on_equity(self, equity: float, now_ms: int) -> None:
        """Mark-to-market equity (quote currency): drawdown from the peak and the UTC day's loss."""
        if not equity == equity:
            return
        if equity > self._peak:
            self._peak = equity
        day = now_ms // _DAY_MS
        if day != self._day:
            self._day, self._day_open = day, equity
        if self._peak > 0.0:
            dd = (self._peak - equity) / self._peak
            if dd >= self.config.max_drawdown and Reason.DRAWDOWN not in self.active:
                self._trip(now_ms, Reason.DRAWDOWN, dd)
        if self._day_open > 0.0:
            loss = (self._day_open - equity) / self._day_open
            if loss >= self.config.max_daily_loss and Reason.DAILY_LOSS not in self.active:
                self._trip(now_ms, Reason.DAILY_LOSS, loss)

    # -- the machine ---------------------------------------------------------------------------

    def _check_cooldown(self, now_ms: int) -> None:
        if Reason.EXCHANGE_ERRORS in self.active and now_ms - self._last_error >= self._cooldown_ms:
            self._clear(now_ms, Reason.EXCHANGE_ERRORS, f"{(now_ms - self._last_error) / 1000.0:g} s without error")

    def _trip(self, now_ms: int, reason: Reason, value) -> None:
        self.active[reason] = value
        if reason in _STICKY and self.halt_path is not None:
            write_json_atomic(self.halt_path, {"reason": str(reason), "value": value, "ts": now_ms})
        self._transition(now_ms, "trip", reason, value)

    def _clear(self, now_ms: int, reason: Reason, value) -> None:
        del self.active[reason]
        if reason is Reason.EXCHANGE_ERRORS:
            self._errors.clear()
            self._successes = 0
        elif reason is Reason.MODEL_OUTPUT:
            self._model_ok = 0
        self._transition(now_ms, "clear", reason, value)

    def _transition(self, now_ms: int, event: str, reason: Reason, value) -> None:
        before = self.state
        self._recompute()
        t = Transition(now_ms, event, reason, before, self.state, value)
        key = (str(reason), event)
        self.counts[key] = self.counts.get(key, 0) + 1
        log.warning("breaker %s %s: %s -> %s (value %s)", event, reason, before.name, self.state.name, value,
                    extra={"fields": {"event": f"breaker_{event}", "reason": str(reason), "from": before.name,
                                      "to": self.state.name, "value": value, "ts": now_ms}})
        if self.on_transition is not None:
            self.on_transition(t)

    def _recompute(self) -> None:
        active = self.active
        self.state = max((_STATE[r] for r in active), default=TradingState.ACTIVE)
        first = next((r for r in Reason if r in active), None)
        self.reason = first
        self._rule = None if first is None else _RULE[first]
