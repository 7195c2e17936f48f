"""Prometheus metrics of the live loop, on their own registry, served over HTTP on 127.0.0.1.

    bot4jax_decision_latency_seconds        histogram: market event in -> order decision out, seconds;
                                            buckets 10 us ... 10 ms (1-2-5 steps)
    bot4jax_orders_total{status}            counter: order states reported (pending ... unknown)
    bot4jax_fills_total{side}               counter: fills (side "buy" / "sell")
    bot4jax_fill_amount_total{side}         counter: filled amount, base currency
    bot4jax_fees_total                      counter: fees paid, quote currency
    bot4jax_position{symbol}                gauge: net position, base currency
    bot4jax_equity                          gauge: mark-to-market equity, quote currency
    bot4jax_pnl                             gauge: equity minus the starting equity, quote currency
    bot4jax_breaker_state{state}            gauge: 1 for the current trading state, 0 for the others
    bot4jax_breaker_condition{reason}       gauge: 1 while that breaker condition is active
    bot4jax_breaker_transitions_total{reason,event}   counter: breaker trips and clears
    bot4jax_exchange_errors_total{type}     counter: failed exchange calls by error class
    bot4jax_market_data_age_seconds         gauge: time since the last market event

A private `CollectorRegistry` (not prometheus_client's global one) keeps two loops in one process, or
a test beside a running loop, from colliding. `port=0` serves nothing (the metrics are still
recorded and readable through `registry`); the default address is 127.0.0.1, so exposing them on
the network is an explicit choice (`host="0.0.0.0"`).
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from bot4jax.errors import ConfigError
from bot4jax.execution.base import STATUSES, Fill
from bot4jax.live.breakers import Breakers, Reason, TradingState, Transition

LATENCY_BUCKETS = (1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2)


class LiveMetrics:
    """The live loop's metrics. `start()` serves them on `port` (0: off) at `host`; `stop()` ends it."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1"):
        if not (isinstance(port, int) and 0 <= port <= 65535):
            raise ConfigError(f"metrics port must be an integer in 0..65535 (0: off), got {port!r}")
        self.port, self.host = port, host
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.decision_latency = Histogram("bot4jax_decision_latency_seconds",
                                          "Market event in to order decision out", buckets=LATENCY_BUCKETS,
                                          registry=r)
        self.orders = Counter("bot4jax_orders", "Order states reported, by status", ["status"], registry=r)
        self.fills = Counter("bot4jax_fills", "Fills, by side", ["side"], registry=r)
        self.fill_amount = Counter("bot4jax_fill_amount", "Filled amount in base currency, by side", ["side"],
                                   registry=r)
        self.fees = Counter("bot4jax_fees", "Fees paid, quote currency", registry=r)
        self.position = Gauge("bot4jax_position", "Net position, base currency", ["symbol"], registry=r)
        self.equity = Gauge("bot4jax_equity", "Mark-to-market equity, quote currency", registry=r)
        self.pnl = Gauge("bot4jax_pnl", "Equity minus starting equity, quote currency", registry=r)
        self.breaker_state = Gauge("bot4jax_breaker_state", "1 for the current trading state", ["state"], registry=r)
        self.breaker_condition = Gauge("bot4jax_breaker_condition", "1 while a breaker condition is active",
                                       ["reason"], registry=r)
        self.breaker_transitions = Counter("bot4jax_breaker_transitions", "Breaker trips and clears",
                                           ["reason", "event"], registry=r)
        self.exchange_errors = Counter("bot4jax_exchange_errors", "Failed exchange calls, by error type", ["type"],
                                       registry=r)
        self.market_data_age = Gauge("bot4jax_market_data_age_seconds", "Time since the last market event",
                                     registry=r)
        # Every label value exists from the start, so a dashboard sees zeros rather than gaps.
        for s in STATUSES:
            self.orders.labels(status=s)
        for side in ("buy", "sell"):
            self.fills.labels(side=side)
            self.fill_amount.labels(side=side)
        for reason in Reason:
            self.breaker_condition.labels(reason=str(reason))
            for event in ("trip", "clear"):
                self.breaker_transitions.labels(reason=str(reason), event=event)
        self.set_breaker_state(TradingState.ACTIVE)
        self._server = None
        self._thread = None
        # Children resolved once: the hot path skips the label lookup.
        self._observe_latency = self.decision_latency.observe

    def start(self) -> int | None:
        """Serve /metrics; returns the port, or None when the port is 0 (off)."""
        if self.port == 0 or self._server is not None:
            return self.port or None
        try:
            self._server, self._thread = start_http_server(self.port, addr=self.host, registry=self.registry)
        except OSError as e:
            raise ConfigError(f"cannot serve metrics on {self.host}:{self.port}: {e.strerror or e}; "
                              "choose another metrics port (0 turns them off)") from None
        return self.port

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = self._thread = None

    def __enter__(self) -> LiveMetrics:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- recording -----------------------------------------------------------------------------

    def observe_decision(self, seconds: float) -> None:
        self._observe_latency(seconds)

    def on_order(self, status: str) -> None:
        self.orders.labels(status=status).inc()

    def on_fill(self, fill: Fill) -> None:
        side = "buy" if fill.side > 0 else "sell"
        self.fills.labels(side=side).inc()
        self.fill_amount.labels(side=side).inc(fill.amount)
        if fill.fee > 0:
            self.fees.inc(fill.fee)

    def set_position(self, symbol: str, amount: float) -> None:
        self.position.labels(symbol=symbol).set(amount)

    def set_equity(self, equity: float, start_equity: float) -> None:
        self.equity.set(equity)
        self.pnl.set(equity - start_equity)

    def set_breaker_state(self, state: TradingState, active=()) -> None:
        for s in TradingState:
            self.breaker_state.labels(state=s.name).set(1.0 if s == state else 0.0)
        active = {str(r) for r in active}
        for reason in Reason:
            self.breaker_condition.labels(reason=str(reason)).set(1.0 if str(reason) in active else 0.0)

    def on_breaker_transition(self, t: Transition, active=()) -> None:
        """Count a transition and show the new state and the `active` conditions."""
        self.breaker_transitions.labels(reason=str(t.reason), event=t.event).inc()
        self.set_breaker_state(t.to_state, active)

    def track(self, breakers: Breakers) -> None:
        """Show `breakers`' state now and after every transition (chains any on_transition hook)."""
        previous = breakers.on_transition

        def hook(t: Transition) -> None:
            self.on_breaker_transition(t, breakers.active)
            if previous is not None:
                previous(t)
        breakers.on_transition = hook
        self.set_breaker_state(breakers.state, breakers.active)

    def on_exchange_error(self, error: BaseException | str) -> None:
        self.exchange_errors.labels(type=error if isinstance(error, str) else type(error).__name__).inc()

    def set_market_data_age(self, seconds: float) -> None:
        self.market_data_age.set(seconds)
