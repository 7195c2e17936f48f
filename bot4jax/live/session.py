"""What one run of the live loop trades through: the venue, the order journal and the order manager.

Three modes, one code path:
- replay (a file or the simulator) and paper trading (a venue's live candles): the simulated venue,
  filled by the same bars the loop decides on, with a journal inside the run directory;
- live (--live): the venue through ccxt with API keys from the environment, and a journal kept across
  runs (state/<exchange>_<BASE>-<QUOTE>.sqlite unless --journal says otherwise) that is reconciled with
  the venue at every start and after every reconnect of the market-data stream.
"""
from __future__ import annotations

import logging
from pathlib import Path

from bot4jax.config import LiveConfig
from bot4jax.execution.base import Exchange
from bot4jax.execution.journal import OrderJournal
from bot4jax.execution.order_manager import OrderManager
from bot4jax.execution.orders import OrderLimits
from bot4jax.execution.reconcile import reconcile

log = logging.getLogger("bot4jax.live")

CLIENT_ID_PREFIXES = ("b4j", "g")   # simple orders and linked-order legs (bot4jax.execution.orders)


def journal_path(config: LiveConfig, run_dir: Path) -> Path:
    if config.journal:
        return Path(config.journal)
    if config.live:
        return Path("state") / f"{config.exchange}_{config.symbol.replace('/', '-')}.sqlite"
    return run_dir / "journal.sqlite"


def make_venue(config: LiveConfig) -> Exchange:
    if config.live:
        from bot4jax.execution.ccxt_venue import CcxtVenue
        from bot4jax.execution.credentials import install_redaction, load_credentials

        credentials = load_credentials(config.exchange)
        install_redaction(credentials.secrets())
        return CcxtVenue(config.exchange, config.symbol, api_url=config.api_url or None, credentials=credentials)
    from bot4jax.execution.sim_venue import SimulatedVenue

    quote = config.symbol.split("/")[1]
    return SimulatedVenue(config.symbol, {quote: config.initial_cash}, fee_maker_bps=config.maker_fee_bps,
                          fee_taker_bps=config.fee_bps, slippage_bps=config.slippage_bps,
                          latency_ms=config.latency_ms, participation=config.participation)


async def open_manager(config: LiveConfig, venue: Exchange, journal: OrderJournal) -> OrderManager:
    """Connect, reconcile the journal with the venue (live), and an order manager that starts from
    the venue's balances."""
    await venue.connect()
    if config.live:
        await reconcile_now(journal, venue, config.symbol)
    limits = OrderLimits(max_position=config.max_position, max_notional=config.max_notional,
                         allow_short=config.risk.allow_short, fee_bps=config.fee_bps)
    manager = OrderManager(venue, config.symbol, limits, journal)
    await manager.refresh_balance()
    return manager


async def reconcile_now(journal: OrderJournal, venue: Exchange, symbol: str):
    report = await reconcile(journal, venue, symbol, prefix=CLIENT_ID_PREFIXES)
    for change in report.changes:
        log.warning("reconcile %s: %s %s -> %s (%s)", change.kind, change.client_id, change.before, change.after,
                    change.detail)
    log.info("reconciled %d orders with %s: %d changes, journal position %.8f", report.checked,
             getattr(venue, "name", "the venue"), len(report.changes), report.position)
    return report
