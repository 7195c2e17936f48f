"""Circuit breakers: each condition trips and clears, several at once, the most restrictive wins,
loss-limit halts survive a restart, every transition is logged (structured) and counted."""
from __future__ import annotations

import json
import logging
import math

import pytest
from hypothesis import given, strategies as st

from bot4jax.errors import ConfigError
from bot4jax.live.breakers import BreakerConfig, Breakers, Reason, TradingState, Transition

CFG = BreakerConfig(error_limit=3, error_window_s=10.0, error_recover_successes=2, error_cooldown_s=30.0,
                    stale_after_s=5.0, model_recover_outputs=2, max_drawdown=0.10, max_daily_loss=0.05)
DAY = 86_400_000


def fresh(now: int = 0, **kw) -> Breakers:
    """Breakers that have seen market data at `now` (ACTIVE)."""
    b = Breakers(CFG, now_ms=now, **kw)
    b.on_market_data(now)
    return b


def test_starts_reduce_only_until_the_first_market_event(caplog):
    seen: list[Transition] = []
    b = Breakers(CFG, on_transition=seen.append)
    assert b.state is TradingState.REDUCING and b.reason is Reason.STALE_DATA
    assert b.allowed(1.0, 0.0) == (0.0, Reason.STALE_DATA)
    with caplog.at_level(logging.WARNING, logger="bot4jax.live.breakers"):
        b.on_market_data(1_000)
    assert b.state is TradingState.ACTIVE and b.allowed(0.7, 0.0) == (0.7, None)
    assert seen == [Transition(1_000, "clear", Reason.STALE_DATA, TradingState.REDUCING, TradingState.ACTIVE, 0.0)]
    fields = caplog.records[-1].fields
    assert fields == {"event": "breaker_clear", "reason": "stale_data", "from": "REDUCING", "to": "ACTIVE",
                      "value": 0.0, "ts": 1_000}
    assert b.counts == {("stale_data", "clear"): 1}


def test_exchange_errors_within_the_window_trip_cancel_only_and_successes_clear():
    b = fresh()
    # Errors spread wider than the window never accumulate to the limit.
    for t in (0, 6_000, 12_000, 18_000):
        b.on_exchange_error(t, "ExchangeUnavailable")
    assert b.state is TradingState.ACTIVE
    b.on_exchange_error(19_000, "RateLimited")              # 3 within (9 s, 19 s]
    assert b.state is TradingState.HALTED and b.reason is Reason.EXCHANGE_ERRORS
    assert b.active[Reason.EXCHANGE_ERRORS] == "3 errors, last RateLimited"
    assert b.allowed(1.0, 0.3) == (0.3, Reason.EXCHANGE_ERRORS)   # send nothing
    assert b.allowed(0.0, -0.2) == (-0.2, Reason.EXCHANGE_ERRORS)
    b.on_exchange_success(20_000)
    b.on_exchange_error(21_000)                              # resets the run of successes
    b.on_exchange_success(22_000)
    assert b.state is TradingState.HALTED
    b.on_exchange_success(23_000)
    assert b.state is TradingState.ACTIVE
    assert b.counts == {("stale_data", "clear"): 1, ("exchange_errors", "trip"): 1, ("exchange_errors", "clear"): 1}
    # The window starts afresh after a clear: one more error does not trip again.
    b.on_exchange_error(24_000)
    assert b.state is TradingState.ACTIVE


def test_exchange_errors_clear_after_the_cooldown():
    b = fresh()
    for t in (1_000, 2_000, 3_000):
        b.on_exchange_error(t)
    assert b.halted
    b.on_market_data(3_000 + 29_999)
    b.check(3_000 + 29_999)
    assert b.halted
    b.check(3_000 + 30_000)
    assert b.state is TradingState.ACTIVE


def test_stale_data_allows_only_reducing_orders_until_fresh_data():
    b = fresh(0)
    b.check(5_000)                                           # exactly the limit: still fresh
    assert b.state is TradingState.ACTIVE
    b.check(5_001)
    assert b.state is TradingState.REDUCING and b.active[Reason.STALE_DATA] == pytest.approx(5.001)
    assert b.allowed(2.0, 1.0) == (1.0, Reason.STALE_DATA)     # no growth
    assert b.allowed(0.4, 1.0) == (0.4, Reason.STALE_DATA)     # shrinking is fine
    assert b.allowed(-1.0, 1.0) == (0.0, Reason.STALE_DATA)    # no flip
    assert b.allowed(-2.0, -1.0) == (-1.0, Reason.STALE_DATA)
    assert b.allowed(-0.5, -1.0) == (-0.5, Reason.STALE_DATA)
    assert b.allowed(0.5, -1.0) == (0.0, Reason.STALE_DATA)
    assert b.allowed(0.5, 0.0) == (0.0, Reason.STALE_DATA)     # no new position
    b.on_market_data(6_000)
    assert b.state is TradingState.ACTIVE and b.allowed(2.0, 1.0) == (2.0, None)


@given(target=st.floats(-10, 10), position=st.floats(-10, 10))
def test_reduce_only_is_the_nearest_target_that_does_not_grow_or_flip(target, position):
    b = Breakers(CFG)                                        # no data yet: reduce only
    got, reason = b.allowed(target, position)
    lo, hi = min(0.0, position), max(0.0, position)
    assert reason is Reason.STALE_DATA
    assert got == min(max(target, lo), hi)


def test_nan_model_output_goes_flat_with_an_alert_and_recovers(caplog):
    b = fresh()
    with caplog.at_level(logging.WARNING, logger="bot4jax.live.breakers"):
        b.on_model_output(float("nan"), 1_000)
    alerts = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(alerts) == 1 and "ALERT" in alerts[0].getMessage() and alerts[0].fields["event"] == "alert"
    assert b.state is TradingState.REDUCING and b.reason is Reason.MODEL_OUTPUT
    assert b.allowed(0.8, 0.5) == (0.0, Reason.MODEL_OUTPUT)
    assert b.allowed(0.8, -0.5) == (0.0, Reason.MODEL_OUTPUT)
    b.on_model_output(0.6, 2_000)
    b.on_model_output(math.inf, 3_000)                       # a relapse restarts the count
    b.on_model_output(0.6, 4_000)
    assert b.reason is Reason.MODEL_OUTPUT
    b.on_model_output(0.55, 5_000)
    assert b.state is TradingState.ACTIVE
    b.on_model_failure(6_000, "RuntimeError('XLA')")
    assert b.active[Reason.MODEL_OUTPUT] == "RuntimeError('XLA')"
    assert b.counts[("model_output", "trip")] == 2
    # A NaN target that was never reported is still not traded.
    assert fresh().allowed(float("nan"), 0.3) == (0.0, Reason.MODEL_OUTPUT)


def test_drawdown_flattens_halts_and_survives_a_restart(tmp_path):
    halt = tmp_path / "halt.json"
    b = fresh(halt_path=halt)
    for t, eq in enumerate((100.0, 110.0, 105.0, 99.5)):     # 9.5 % below the peak of 110
        b.on_equity(eq, t)
    assert b.state is TradingState.ACTIVE and not halt.exists()
    b.on_equity(98.9, 10)                                    # 10.09 %
    assert b.state is TradingState.HALTED and b.reason is Reason.DRAWDOWN
    assert b.allowed(0.5, 0.5) == (0.0, Reason.DRAWDOWN)     # flatten
    assert b.allowed(0.5, 0.0) == (0.0, Reason.DRAWDOWN)     # and stay flat
    saved = json.loads(halt.read_text())
    assert saved["reason"] == "drawdown" and saved["value"] == pytest.approx((110 - 98.9) / 110)
    b.on_equity(200.0, 20)                                   # sticky: recovery does not clear it
    b.on_market_data(30)
    b.on_exchange_success(40)
    assert b.halted

    again = fresh(halt_path=halt)                            # a restart without the flag
    assert again.halted and again.reason is Reason.DRAWDOWN
    assert again.allowed(1.0, 0.0) == (0.0, Reason.DRAWDOWN)
    reset = fresh(halt_path=halt, reset_halt=True)           # the operator's explicit flag
    assert reset.state is TradingState.ACTIVE and not halt.exists()

    halt.write_text("{not json")
    with pytest.raises(ConfigError, match="unreadable breaker halt file"):
        Breakers(CFG, halt_path=halt)


def test_daily_loss_uses_the_utc_days_first_equity():
    b = fresh()
    b.on_equity(100.0, DAY - 10)
    b.on_equity(96.0, DAY - 5)                               # -4 % on day 0
    b.on_equity(96.0, DAY)                                   # day 1 opens at 96
    b.on_equity(91.5, DAY + 1)                               # -4.7 % on day 1, -8.5 % overall
    assert b.state is TradingState.ACTIVE
    b.on_equity(91.1, DAY + 2)                               # -5.1 % on day 1
    assert b.reason is Reason.DAILY_LOSS and b.active[Reason.DAILY_LOSS] == pytest.approx(4.9 / 96)
    b.on_equity(float("nan"), DAY + 3)                       # ignored
    assert b.halted


def test_several_conditions_the_most_restrictive_wins():
    b = fresh()
    b.check(10_000)                                          # stale
    b.on_model_output(float("nan"), 10_000)                  # and the model failed
    assert b.state is TradingState.REDUCING and b.allowed(0.5, 0.3) == (0.0, Reason.MODEL_OUTPUT)
    for t in (10_001, 10_002, 10_003):
        b.on_exchange_error(t)
    assert b.state is TradingState.HALTED and b.allowed(0.5, 0.3) == (0.3, Reason.EXCHANGE_ERRORS)
    b.on_equity(100.0, 10_004)
    b.on_equity(80.0, 10_005)                                # drawdown and daily loss while cancel-only
    assert b.allowed(0.5, 0.3) == (0.3, Reason.EXCHANGE_ERRORS)  # nothing sent while the venue fails
    b.on_exchange_success(10_006)
    b.on_exchange_success(10_007)
    assert b.allowed(0.5, 0.3) == (0.0, Reason.DRAWDOWN)     # then flatten
    assert set(b.active) == {Reason.STALE_DATA, Reason.MODEL_OUTPUT, Reason.DRAWDOWN, Reason.DAILY_LOSS}
    b.on_market_data(10_008)
    b.on_model_output(0.5, 10_009)
    b.on_model_output(0.5, 10_010)
    assert set(b.active) == {Reason.DRAWDOWN, Reason.DAILY_LOSS} and b.halted
    assert b.counts == {("stale_data", "clear"): 2, ("stale_data", "trip"): 1, ("model_output", "trip"): 1,
                        ("model_output", "clear"): 1, ("exchange_errors", "trip"): 1,
                        ("exchange_errors", "clear"): 1, ("drawdown", "trip"): 1, ("daily_loss", "trip"): 1}


def test_transitions_record_from_and_to_states():
    seen: list[Transition] = []
    b = fresh(on_transition=seen.append)
    b.check(6_000)
    for t in (6_001, 6_002, 6_003):
        b.on_exchange_error(t)
    b.on_market_data(6_004)
    assert [(t.event, t.reason, t.from_state, t.to_state) for t in seen] == [
        ("clear", Reason.STALE_DATA, TradingState.REDUCING, TradingState.ACTIVE),
        ("trip", Reason.STALE_DATA, TradingState.ACTIVE, TradingState.REDUCING),
        ("trip", Reason.EXCHANGE_ERRORS, TradingState.REDUCING, TradingState.HALTED),
        ("clear", Reason.STALE_DATA, TradingState.HALTED, TradingState.HALTED),
    ]


@pytest.mark.parametrize("field,value", [("error_limit", 0), ("error_window_s", 0.0), ("stale_after_s", math.nan),
                                         ("max_drawdown", 0.0), ("max_daily_loss", 1.5),
                                         ("model_recover_outputs", 0)])
def test_bad_config_is_refused(field, value):
    with pytest.raises(ConfigError, match=f"breakers.{field}"):
        BreakerConfig(**{field: value})
