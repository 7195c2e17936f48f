"""One start of the live trading session against a venue, then one market order, as a separate process.

    python -m tests.support.order_once --api-url URL --journal PATH [--amount 0.01] [--recover-only]

It runs the library's own start-up (`bot4jax.live.session`: connect, reconcile the journal with the
venue, balances) and sends the order through the order manager with the durable SQLite journal, as
`python -m bot4jax.live --live` does. API keys come from BOT4JAX_BINANCE_API_KEY / _API_SECRET.
Tests kill it mid-order and start it again; it prints one JSON line of what it saw.
"""
from __future__ import annotations

import argparse
import asyncio
import json

from bot4jax.config import LiveConfig
from bot4jax.execution.journal import OrderJournal
from bot4jax.execution.orders import order
from bot4jax.live.session import make_venue, open_manager


async def main(args) -> dict:
    config = LiveConfig(live=True, exchange="binance", symbol="BTC/USDT", api_url=args.api_url, journal=args.journal)
    journal = OrderJournal(args.journal, durable=True)
    venue = make_venue(config)
    try:
        manager = await open_manager(config, venue, journal)
        out = {"position": manager.position, "unresolved": [s.client_id for s in journal.unresolved()]}
        if not args.recover_only:
            manager.set_mark((await venue.fetch_ticker()).last)   # the loop marks with each bar's close
            state = await manager.submit(order(config.symbol, 1, "market", args.amount))
            out.update(client_id=state.client_id, status=state.status)
        return out
    finally:
        await venue.close()
        journal.close()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--api-url", required=True)
    p.add_argument("--journal", required=True)
    p.add_argument("--amount", type=float, default=0.01)
    p.add_argument("--recover-only", action="store_true")
    print(json.dumps(asyncio.run(main(p.parse_args()))), flush=True)
