"""The live decision loop, which is also the backtest when it replays recorded bars.

    bar -> venue fills (simulated venue: orders of earlier bars fill at this bar's prices)
        -> streaming features -> model -> VPIN toxicity -> quarter-Kelly through the eight risk layers
        -> circuit breakers -> market order toward the target through the order manager
           (pre-trade checks, journal intent before the venue call, answer after) -> venue

One asyncio event loop. Each decision is written to `decisions.csv`; fills to `trades.csv`; counts,
equity, breaker transitions and decision latency percentiles to `summary.json`; the equity curve to
`equity.png`. Decision latency runs from the bar's arrival (after the simulated venue's own matching)
to the order handed to the venue (the journal's intent written), model included; `cycle_us` also
counts the bookkeeping of the venue's answer. Ctrl-C stops after the current bar and still writes
every output.
"""
from __future__ import annotations

import asyncio
import csv
import logging
import math
import signal
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from bot4jax import plots
from bot4jax.config import LiveConfig
from bot4jax.data.timeframes import periods_per_year, timeframe_ms
from bot4jax.errors import ConfigError
from bot4jax.execution.base import ExchangeError, OrderRejected
from bot4jax.execution.journal import OrderJournal
from bot4jax.execution.orders import order
from bot4jax.features.microstructure import toxicity_regime
from bot4jax.kernels.microstructure_nb import vpin_init, vpin_update_nb
from bot4jax.live.breakers import Breakers, BreakerConfig
from bot4jax.live.engine import DecisionEngine
from bot4jax.live.feeds import BarFeed, open_feed
from bot4jax.live.metrics import LiveMetrics
from bot4jax.live.session import journal_path, make_venue, open_manager, reconcile_now
from bot4jax.registry.checkpoints import CheckpointStore, load_model
from bot4jax.risk.sizing import LAYER_NAMES, RiskClamps, annualised_vol
from bot4jax.runs import make_run_dir, setup_logging, write_config, write_json
from bot4jax.validation import scoring

log = logging.getLogger("bot4jax.live")

DECISION_FIELDS = ("ts", "close", "p_up", "vpin", "toxicity", "target", "binding", "breaker", "action", "position", "equity",
                   "latency_us")
TRADE_FIELDS = ("trade_id", "order_id", "ts", "side", "amount", "price", "fee", "liquidity")
VPIN_WARMUP_BARS = 50   # bars whose mean volume sets the VPIN bucket size (causal: nothing after them)


def _speed(value: str) -> float:
    if value == "max":
        return math.inf
    try:
        speed = float(value)
    except ValueError:
        speed = -1.0
    if not speed > 0:
        raise ConfigError(f"--speed must be 'max' or a positive multiple of real time, got {value!r}")
    return speed


def _binding(record) -> str:
    b = int(record["binding"])
    return LAYER_NAMES[b] if b >= 0 else ("none" if b == -1 else "invalid_input")


class Toxicity:
    """VPIN over the bars (bulk volume classification): buckets of a day's volume / `buckets`, the bucket
    size fixed from the mean volume of the first VPIN_WARMUP_BARS bars. 0 until it has a value."""

    def __init__(self, timeframe: str, buckets: int, window: int):
        self.bars_per_day = 86_400_000 / timeframe_ms(timeframe)
        self.buckets, self.window = buckets, window
        self.warmup: list[float] = []
        self.state = None
        self.value = math.nan

    def update(self, close: float, volume: float) -> float:
        if self.state is None:
            self.warmup.append(volume)
            if len(self.warmup) < VPIN_WARMUP_BARS or not sum(self.warmup) > 0:
                return 0.0
            bucket = sum(self.warmup) / len(self.warmup) * self.bars_per_day / self.buckets
            self.state = vpin_init(bucket, self.window)
        self.value = vpin_update_nb(self.state, close, volume)
        return self.value if self.value == self.value else 0.0


class Loop:
    """One run's moving parts; `run(feed)` drives every bar of the feed through them."""

    def __init__(self, config: LiveConfig, engine: DecisionEngine, venue, manager, journal: OrderJournal,
                 breakers: Breakers, metrics: LiveMetrics, timeframe: str, decisions_csv):
        self.config, self.engine, self.venue, self.manager, self.journal = config, engine, venue, manager, journal
        self.breakers, self.metrics, self.timeframe = breakers, metrics, timeframe
        self.simulated = hasattr(venue, "on_bar")
        self.clamps = RiskClamps(config.risk)
        self.toxicity = Toxicity(timeframe, config.vpin_buckets, config.vpin_window)
        self.bars_per_year = periods_per_year(timeframe)
        self.writer = csv.writer(decisions_csv)
        self.writer.writerow(DECISION_FIELDS)
        self.latencies, self.cycles, self.equity, self.ts = [], [], [], []
        self.fills: list = []
        self.orders = self.rejected = self.errors = self.decisions = 0
        self.start_equity = math.nan
        self.peak = -math.inf
        # A venue's fills from before this run are already in its balances: fetch only newer ones.
        self.fill_since: int | None = None if self.simulated else int(time.time() * 1000)
        self.warm = False
        self.paused_until = -1   # ms: a high surveillance alert pauses new exposure until then

    def on_alert(self, alert) -> None:
        """A high or critical surveillance alert: reduce only for `surveillance_pause_s`."""
        self.paused_until = max(self.paused_until, alert.ts + int(self.config.surveillance_pause_s * 1000))
        log.warning("surveillance %s alert (%s, %s): no new exposure until %d", alert.level.name.lower(),
                    alert.detector, alert.measures, self.paused_until)

    def mark_to_market(self, price: float) -> float:
        return self.manager.quote + self.manager.position * price

    async def _take_fills(self, ts: int, bar) -> None:
        if self.simulated:
            fills = self.venue.on_bar(ts, *bar)
        else:
            try:
                fills = await self.venue.fetch_fills(self.config.symbol, since=self.fill_since)
                if any(o.status == "unknown" for o in self.manager.open_orders):
                    await self.manager.resolve_unknown()   # answers lost earlier: ask the venue
                self.breakers.on_exchange_success(ts)
            except ExchangeError as e:
                self._exchange_error(ts, e)
                return
        for fill in await self.manager.on_fills(fills):
            self.fills.append(fill)
            self.metrics.on_fill(fill)
            self.fill_since = fill.ts if self.fill_since is None else max(self.fill_since, fill.ts)

    def _exchange_error(self, ts: int, error: ExchangeError) -> None:
        self.errors += 1
        self.breakers.on_exchange_error(ts, type(error).__name__)
        self.metrics.on_exchange_error(error)
        log.warning("exchange error: %s", error)

    async def _order_toward(self, ts: int, target: float, price: float, equity: float) -> str:
        """A market order moving the position to `target` (base units), unless the move is within the
        rebalance band; a zero target always closes the position."""
        position = self.manager.position
        working = self.manager.open_orders
        pending = sum(o.side * o.remaining for o in working)
        delta = target - position
        if target == 0.0 and position + pending > 0.0:
            delta = -position
        elif abs(target - position - pending) * price <= self.config.rebalance_band * equity:
            return "hold"
        if working:   # the new order replaces what is still working (e.g. a partly filled one)
            try:
                await self.manager.cancel_all()
            except ExchangeError as e:
                self._exchange_error(ts, e)
                return "error"
        side = 1 if delta > 0 else -1
        if side > 0:   # what the cash covers at the next price, with fee and slippage
            cost = price * (1 + (self.config.fee_bps + self.config.slippage_bps) * 1e-4) * 1.001
            amount = min(delta, self.manager.quote / cost)
        else:
            amount = min(-delta, position) if not self.config.risk.allow_short else -delta
        amount = math.floor(amount * 1e8) / 1e8
        if amount <= 0:
            return "hold"
        try:
            state = await self.manager.submit(order(self.config.symbol, side, "market", amount))
        except OrderRejected as e:
            self.rejected += 1
            self.metrics.on_order("rejected")
            log.info("order refused (%s): %s", e.reason, e)
            return "rejected"
        except ExchangeError as e:
            self._exchange_error(ts, e)
            return "error"
        self.orders += 1
        self.metrics.on_order(state.status)
        self.breakers.on_exchange_success(ts)
        return ("buy" if side > 0 else "sell") + ("" if state.status != "unknown" else "?")

    async def on_bar(self, ts: int, o: float, h: float, l: float, c: float, v: float, tradable: bool,
                     buy_volume: float = math.nan) -> None:
        await self._take_fills(ts, (o, h, l, c, v))
        t0 = time.perf_counter_ns()
        self.manager.set_mark(c)
        await self.manager.on_price(c, ts)   # client-side stops (held legs of linked orders)
        self.breakers.on_market_data(ts)
        self.breakers.check(ts)
        try:
            p_up = self.engine.on_bar(c, h, l, v, buy_volume)
        except Exception as e:  # a failed model must flatten, not stop the loop
            log.exception("model failed on bar %d", ts)
            self.breakers.on_model_failure(ts, repr(e))
            p_up = math.nan
        vpin = self.toxicity.update(c, v)
        eq = self.mark_to_market(c)
        if self.start_equity != self.start_equity:
            self.start_equity = eq
        self.peak = max(self.peak, eq)
        self.breakers.on_equity(eq, ts)
        action, target, binding = ("warmup" if tradable else "history"), "", ""
        # NaN before the first finite output is the features' warm-up; after it, a model fault.
        self.warm = self.warm or p_up == p_up
        if tradable and self.warm:
            self.decisions += 1
            self.breakers.on_model_output(p_up, ts)
            fraction = 0.0
            if p_up == p_up:
                vol = annualised_vol(self.engine.bar_variance, self.bars_per_year)
                var_u, es_u = self.clamps.unit_risk(vol)
                fraction, record = self.clamps.size(p_up, self.engine.payoff_ratio, vol, var_u, es_u,
                                                    drawdown=(self.peak - eq) / self.peak,
                                                    vol_ratio=self.engine.vol_ratio, toxicity=vpin)
                binding = _binding(record)
            wanted = fraction * eq / c
            allowed, reason = self.breakers.allowed(wanted, self.manager.position)
            if ts < self.paused_until:   # toward flat only: the position may shrink, never grow
                position = self.manager.position
                allowed, reason = min(max(allowed, min(0.0, position)), max(0.0, position)), "surveillance"
            sent = self.manager.last_sent_ns
            action = await self._order_toward(ts, allowed, c, eq)
            done = time.perf_counter_ns()
            # Event in -> order out (the venue call starts), or -> decision made when nothing is sent;
            # the cycle also counts the acknowledgement's bookkeeping.
            latency = ((self.manager.last_sent_ns if self.manager.last_sent_ns != sent else done) - t0) / 1000.0
            self.latencies.append(latency)
            self.cycles.append((done - t0) / 1000.0)
            self.metrics.observe_decision(latency * 1e-6)
            target = f"{allowed * c / eq:.6g}"
            if action not in ("hold",):
                log.debug("decision ts=%d p_up=%.4f vpin=%.3f target=%s bound by %s, breaker %s -> %s",
                          ts, p_up, vpin, target, binding, reason, action)
        else:
            latency = (time.perf_counter_ns() - t0) / 1000.0
        self.equity.append(eq)
        self.ts.append(ts)
        self.metrics.set_equity(eq, self.start_equity)
        self.metrics.set_position(self.config.symbol, self.manager.position)
        self.writer.writerow((ts, repr(c), "" if p_up != p_up else f"{p_up:.9g}",
                              "" if self.toxicity.value != self.toxicity.value else f"{self.toxicity.value:.6g}",
                              toxicity_regime(vpin, self.config.risk),
                              target, binding, self.breakers.state.name.lower(), action,
                              repr(self.manager.position), f"{eq:.6f}", f"{latency:.2f}"))

    async def run(self, feed: BarFeed, progress: bool) -> bool:
        """Every bar of `feed` until it ends, --max-bars, or Ctrl-C; returns True when interrupted."""
        speed = _speed(self.config.speed)
        reconnects = 0
        prev_ts = None
        bar_iter = tqdm(total=feed.total, desc="replay" if feed.total else "live", unit="bar",
                        disable=not progress, leave=False)
        try:
            async for ts, o, h, l, c, v, tradable, *flow in feed.bars:
                if speed != math.inf and prev_ts is not None:
                    await asyncio.sleep(max(0.0, (ts - prev_ts) / 1000.0 / speed))
                prev_ts = ts
                if self.config.live and feed.stream is not None and feed.stream.reconnects != reconnects:
                    reconnects = feed.stream.reconnects
                    await reconcile_now(self.journal, self.venue, self.config.symbol)
                await self.on_bar(ts, o, h, l, c, v, tradable, flow[0] if flow else math.nan)
                bar_iter.update()
                if self.config.max_bars and len(self.equity) >= self.config.max_bars:
                    break
        except asyncio.CancelledError:
            log.warning("interrupted: stopping after the current bar and writing the outputs")
            return True
        finally:
            bar_iter.close()
        return False

    def summary(self, interrupted: bool) -> dict:
        lat, eq = np.asarray(self.latencies), np.asarray(self.equity)
        pct = (lambda q: float(np.percentile(lat, q))) if lat.size else (lambda q: float("nan"))
        rets = np.diff(np.log(eq)) if eq.size > 1 else np.zeros(0)
        start = self.start_equity if self.start_equity == self.start_equity else self.config.initial_cash
        turnover = sum(f.amount * f.price for f in self.fills)
        return {
            "bars": int(eq.size),
            "decisions": self.decisions,
            "orders": self.orders,
            "fills": len(self.fills),
            "open_orders": len(self.manager.open_orders),
            "rejected_orders": self.rejected,
            "exchange_errors": self.errors,
            "initial_equity": start,
            "final_equity": float(eq[-1]) if eq.size else start,
            "total_return": float(eq[-1] / start - 1.0) if eq.size else 0.0,
            "sharpe": scoring.sharpe(rets, self.bars_per_year),
            "max_drawdown": scoring.max_drawdown(eq) if eq.size else 0.0,
            "fees": sum(f.fee for f in self.fills),
            "turnover": turnover / start,
            "final_position": self.manager.position,
            "final_vpin": None if self.toxicity.value != self.toxicity.value else self.toxicity.value,
            "breaker_state": self.breakers.state.name.lower(),
            "breaker_transitions": {f"{r}:{e}": n for (r, e), n in sorted(self.breakers.counts.items())},
            "latency_us": {"p50": pct(50), "p99": pct(99), "p999": pct(99.9),
                           "max": float(lat.max()) if lat.size else float("nan")},
            "cycle_us": {q: float(np.percentile(self.cycles, p)) if self.cycles else float("nan")
                         for q, p in (("p50", 50), ("p99", 99), ("p999", 99.9))},
            "interrupted": interrupted,
        }


async def _surveil(exchange, symbol: str, run_dir: Path, on_alert, batch: int = 200) -> None:
    """The venue's public trades through the surveillance detectors, in batches; alerts go to
    `run_dir/surveillance.jsonl` and the high ones to `on_alert`."""
    from bot4jax.data.types import Trades
    from bot4jax.live.streams import trades
    from bot4jax.surveillance import SurveillanceMonitor, events_from_trades

    monitor = SurveillanceMonitor(audit_log=str(run_dir / "surveillance.jsonl"), source=f"{symbol} trades")
    monitor.subscribe(on_alert)
    stream = trades(exchange, symbol)
    rows: list[tuple] = []
    try:
        async for row in stream:
            rows.append(row)
            if len(rows) >= batch:
                ts, price, amount, side = (np.asarray(c) for c in zip(*rows))
                events = events_from_trades(Trades(ts.astype(np.int64), price, amount, side.astype(np.int8)))
                monitor.on_events(events)
                rows.clear()
    finally:
        await stream.aclose()


def _write_trades(path: Path, fills) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(TRADE_FIELDS)
        for fill in fills:
            w.writerow((fill.trade_id, fill.client_id, fill.ts, "buy" if fill.side > 0 else "sell", repr(fill.amount),
                        repr(fill.price), repr(fill.fee), fill.liquidity))


async def _session(config: LiveConfig, run_dir: Path, progress: bool) -> dict:
    model_path = Path(config.model) if config.model else CheckpointStore(config.checkpoints).latest()
    checkpoint = load_model(model_path)
    engine = DecisionEngine(checkpoint)
    log.info("model: %s (trained on %s)", checkpoint.path, checkpoint.meta.get("data_source"))
    feed = open_feed(config)
    log.info("market data: %s", feed.description)
    path = journal_path(config, run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    journal = OrderJournal(path, durable=config.live)
    venue = make_venue(config)
    metrics = LiveMetrics(config.metrics_port)
    # Bars arrive once per timeframe: data is stale only when a bar is clearly overdue.
    stale_s = max(config.breakers.stale_after_s, 2.5 * timeframe_ms(feed.timeframe) / 1000.0)
    breakers = Breakers(BreakerConfig(**{**config.breakers.__dict__, "stale_after_s": stale_s}),
                        halt_path=path.with_suffix(".halt.json") if config.live else None,
                        reset_halt=config.reset_halt)
    metrics.track(breakers)
    port = metrics.start()
    if port:
        log.info("Prometheus metrics on http://127.0.0.1:%d/metrics", port)
    watch = None
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, task.cancel)
    try:
        manager = await open_manager(config, venue, journal)
        with open(run_dir / "decisions.csv", "w", newline="") as f:
            runner = Loop(config, engine, venue, manager, journal, breakers, metrics, feed.timeframe, f)
            if config.surveillance and feed.exchange is not None:
                watch = asyncio.create_task(_surveil(feed.exchange, config.symbol, run_dir, runner.on_alert))
            interrupted = await runner.run(feed, progress)
    finally:
        if watch is not None:
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)
        loop.remove_signal_handler(signal.SIGINT)
        await feed.close()
        await venue.close()
        metrics.stop()
        journal.close()
    _write_trades(run_dir / "trades.csv", runner.fills)
    summary = runner.summary(interrupted)
    summary.update({"model": str(checkpoint.path), "data_source": feed.description, "timeframe": feed.timeframe,
                    "journal": str(path), "mode": "live" if config.live else ("paper" if config.exchange else "replay")})
    if len(runner.equity) > 1:
        plots.equity_curve(run_dir / "equity.png", np.asarray(runner.ts, np.int64),
                           {"equity": np.asarray(runner.equity)}, f"Equity, {feed.description}")
    return summary


def run_live(config: LiveConfig, progress: bool = True, json_logs: bool = False) -> Path:
    """Replay, paper trading or live trading, per the config; returns the run directory."""
    if config.live:
        if not config.exchange:
            raise ConfigError("--live needs --exchange (the venue to send real orders to)")
        from bot4jax.execution.credentials import load_credentials

        load_credentials(config.exchange)   # missing keys: one clear error before anything runs
    run_dir = make_run_dir(config.out, "live")
    setup_logging(run_dir, json_logs)
    write_config(run_dir, config)
    summary = asyncio.run(_session(config, run_dir, progress))
    write_json(run_dir / "summary.json", summary)
    log.info("%d bars, %d decisions, %d orders, %d fills; final equity %.2f (%+.2f%%); "
             "decision latency p50 %.1f us, p99 %.1f us", summary["bars"], summary["decisions"],
             summary["orders"], summary["fills"], summary["final_equity"], 100 * summary["total_return"],
             summary["latency_us"]["p50"], summary["latency_us"]["p99"])
    log.info("run written to %s", run_dir)
    return run_dir
