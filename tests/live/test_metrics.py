"""Prometheus metrics: scraped over real HTTP from 127.0.0.1 and parsed from the text format."""
from __future__ import annotations

import socket
import urllib.request

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from bot4jax.errors import ConfigError
from bot4jax.execution.base import Fill
from bot4jax.live.breakers import BreakerConfig, Breakers
from bot4jax.live.metrics import LATENCY_BUCKETS, LiveMetrics


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _scrape(port: int) -> tuple[str, dict]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return text, samples


def _fill(side: int, amount: float, fee: float) -> Fill:
    return Fill("t", "c", "v", "BTC/USDT", side, amount, 100.0, fee, "USDT", 0)


@pytest.fixture
def served():
    m = LiveMetrics(port=_free_port())
    assert m.start() == m.port
    yield m
    m.stop()


def test_scrape_reports_what_was_recorded(served):
    m = served
    for seconds in (5e-6, 1.5e-5, 1.5e-5, 3e-4, 3e-3, 0.02):
        m.observe_decision(seconds)
    for status in ("pending", "open", "filled", "pending", "unknown"):
        m.on_order(status)
    m.on_fill(_fill(1, 0.5, 0.05))
    m.on_fill(_fill(1, 0.25, 0.02))
    m.on_fill(_fill(-1, 0.1, 0.0))
    m.set_position("BTC/USDT", 0.65)
    m.set_equity(10_250.0, 10_000.0)
    m.on_exchange_error(TimeoutError("x"))
    m.on_exchange_error("RateLimited")
    m.on_exchange_error("RateLimited")
    m.set_market_data_age(1.25)

    text, s = _scrape(m.port)
    lat = "bot4jax_decision_latency_seconds"
    assert s[(lat + "_count", ())] == 6
    assert s[(lat + "_sum", ())] == pytest.approx(5e-6 + 3e-5 + 3e-4 + 3e-3 + 0.02)
    values = (5e-6, 1.5e-5, 1.5e-5, 3e-4, 3e-3, 0.02)
    buckets = {float(dict(k[1])["le"]): v for k, v in s.items() if k[0] == lat + "_bucket"}
    assert buckets == {**{le: sum(v <= le for v in values) for le in LATENCY_BUCKETS}, float("inf"): 6}
    assert LATENCY_BUCKETS[0] == 1e-5 and LATENCY_BUCKETS[-1] == 1e-2
    assert (buckets[1e-5], buckets[2e-5], buckets[5e-4], buckets[1e-2]) == (1, 3, 4, 5)

    assert s[("bot4jax_orders_total", (("status", "pending"),))] == 2
    assert s[("bot4jax_orders_total", (("status", "unknown"),))] == 1
    assert s[("bot4jax_orders_total", (("status", "expired"),))] == 0     # present from the start
    assert s[("bot4jax_fills_total", (("side", "buy"),))] == 2
    assert s[("bot4jax_fill_amount_total", (("side", "buy"),))] == pytest.approx(0.75)
    assert s[("bot4jax_fees_total", ())] == pytest.approx(0.07)
    assert s[("bot4jax_position", (("symbol", "BTC/USDT"),))] == 0.65
    assert s[("bot4jax_equity", ())] == 10_250.0 and s[("bot4jax_pnl", ())] == 250.0
    assert s[("bot4jax_exchange_errors_total", (("type", "TimeoutError"),))] == 1
    assert s[("bot4jax_exchange_errors_total", (("type", "RateLimited"),))] == 2
    assert s[("bot4jax_market_data_age_seconds", ())] == 1.25
    # The raw text format, independently of the parser.
    assert "# TYPE bot4jax_decision_latency_seconds histogram" in text
    assert 'bot4jax_orders_total{status="pending"} 2.0' in text


def test_breaker_state_and_transitions_follow_the_breakers(served):
    m = served
    b = Breakers(BreakerConfig(error_limit=2, stale_after_s=5.0))
    m.track(b)
    _, s = _scrape(m.port)
    assert s[("bot4jax_breaker_state", (("state", "REDUCING"),))] == 1          # no data yet
    assert s[("bot4jax_breaker_state", (("state", "ACTIVE"),))] == 0
    assert s[("bot4jax_breaker_condition", (("reason", "stale_data"),))] == 1
    b.on_market_data(0)
    b.on_exchange_error(1)
    b.on_exchange_error(2)
    _, s = _scrape(m.port)
    assert {dict(k[1])["state"]: v for k, v in s.items() if k[0] == "bot4jax_breaker_state"} == \
        {"ACTIVE": 0, "REDUCING": 0, "HALTED": 1}
    assert s[("bot4jax_breaker_condition", (("reason", "exchange_errors"),))] == 1
    assert s[("bot4jax_breaker_condition", (("reason", "stale_data"),))] == 0
    assert s[("bot4jax_breaker_transitions_total", (("event", "trip"), ("reason", "exchange_errors")))] == 1
    assert s[("bot4jax_breaker_transitions_total", (("event", "clear"), ("reason", "stale_data")))] == 1
    assert s[("bot4jax_breaker_transitions_total", (("event", "trip"), ("reason", "drawdown")))] == 0


def test_own_registry_two_instances_and_port_zero_is_off():
    off = LiveMetrics(port=0)
    assert off.start() is None and off._server is None
    other = LiveMetrics(port=0)              # a second set in one process does not collide
    off.observe_decision(1e-4)
    assert other.registry.get_sample_value("bot4jax_decision_latency_seconds_count") == 0
    assert off.registry.get_sample_value("bot4jax_decision_latency_seconds_count") == 1
    assert REGISTRY.get_sample_value("bot4jax_decision_latency_seconds_count") is None


def test_binds_localhost_only_and_a_taken_port_is_a_clear_error(served):
    assert served._server.server_address[0] == "127.0.0.1"
    with pytest.raises(ConfigError, match=f"cannot serve metrics on 127.0.0.1:{served.port}"):
        LiveMetrics(port=served.port).start()
    with pytest.raises(ConfigError, match="metrics port"):
        LiveMetrics(port=70_000)


def test_stop_closes_the_endpoint():
    with LiveMetrics(port=_free_port()) as m:
        port = m.port
        _scrape(port)
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)
