"""A process killed between sending an order and hearing back loses nothing and duplicates nothing.

The real ccxt client in a separate process (`tests/support/order_once.py`: the live session's start-up,
then one market order through the order manager and the durable journal) talks to the local fake
Binance venue. The venue accepts the order and holds its answer; the process is SIGKILLed while it
waits. The journal then holds the intent and nothing else. The next start reconciles: the order is
found at the venue by its client id, its state and fills land in the journal once, nothing is resent.
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bot4jax.execution.journal import OrderJournal
from tests.support.binance_rest import SpotMarket
from tests.support.binance_trading import BinanceTradingServer, Late, new_api_key

ROOT = Path(__file__).resolve().parents[2]
ORDER = "POST /api/v3/order"


def _start(server, journal, env, *flags):
    return subprocess.Popen([sys.executable, "-m", "tests.support.order_once", "--api-url", server.url,
                             "--journal", str(journal), *flags], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc) -> dict:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def test_killed_between_submit_and_acknowledgement_loses_and_duplicates_nothing(tmp_path):
    key, secret = new_api_key(), new_api_key()
    env = {**os.environ, "BOT4JAX_BINANCE_API_KEY": key, "BOT4JAX_BINANCE_API_SECRET": secret}
    journal_path = tmp_path / "journal.sqlite"
    with BinanceTradingServer([SpotMarket("BTC", "USDT")], {key: secret}, {"USDT": 10_000}) as server:
        server.set_book("BTCUSDT", [(39_990.0, 1.0)], [(40_010.0, 0.004), (40_020.0, 1.0)])
        server.inject_late(ORDER, 1, Late(hold_s=60.0))   # accepted and filled; the answer never comes
        proc = _start(server, journal_path, env)
        deadline = time.time() + 90
        while not server.calls(ORDER) and time.time() < deadline:
            assert proc.poll() is None, proc.communicate()[1]
            time.sleep(0.05)
        time.sleep(0.3)
        proc.kill()
        proc.wait()

        assert len(server.orders) == 1                     # the venue has the order ...
        (venue_order,) = server.orders.values()
        with OrderJournal(journal_path) as journal:        # ... the journal only the intent
            (pending,) = journal.unresolved()
            assert pending.status == "pending" and pending.client_id == venue_order.client_id
            assert journal.fills() == []

        seen = _finish(_start(server, journal_path, env, "--recover-only"))   # the restart reconciles
        assert seen["unresolved"] == []
        assert len(server.calls(ORDER)) == 1 and len(server.orders) == 1    # nothing sent again
        venue_trades = [t for t in server.trades if t.order_id == venue_order.order_id]
        with OrderJournal(journal_path) as journal:
            state = journal.order(venue_order.client_id)
            assert state.status == "filled" and abs(state.filled - 0.01) < 1e-12
            fills = journal.fills("BTC/USDT")
            assert sorted(f.trade_id for f in fills) == sorted(str(t.id) for t in venue_trades)
            assert len(venue_trades) == 2                  # two book levels: two fills, each once
            assert abs(journal.position("BTC/USDT") - seen["position"]) < 2e-5   # fees in BTC
            events = journal.events(venue_order.client_id)
            assert [e[1] for e in events].count("intent") == 1

        again = _finish(_start(server, journal_path, env, "--recover-only"))  # a second start: clean
        assert again["unresolved"] == [] and len(server.orders) == 1
        with OrderJournal(journal_path) as journal:
            assert len(journal.fills("BTC/USDT")) == 2
