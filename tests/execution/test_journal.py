"""The SQLite order journal: round trips, duplicate fills, the unknown state, schema checks, a process
killed with SIGKILL mid-stream, and a second reader while one process writes."""
from __future__ import annotations

import math
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from bot4jax.execution.base import Fill, OrderRequest, OrderState
from bot4jax.execution.journal import APPLICATION_ID, SCHEMA_VERSION, JournalError, OrderJournal

REPO = Path(__file__).resolve().parents[2]


def _req(cid: str, side: int = 1, amount: float = 0.5, **kw) -> OrderRequest:
    kw.setdefault("type", "limit")
    kw.setdefault("price", 100.0)
    return OrderRequest(client_id=cid, symbol=kw.pop("symbol", "BTC/USDT"), side=side, amount=amount, **kw)


def _state(cid: str, status: str, filled: float = 0.0, **kw) -> OrderState:
    base = dict(client_id=cid, venue_id="v-" + cid, symbol="BTC/USDT", side=1, type="limit", amount=0.5,
                price=100.0, status=status, filled=filled)
    base.update(kw)
    return OrderState(**base)


def _fill(tid: str, cid: str, amount: float, price: float = 100.0, side: int = 1, ts: int = 1_000,
          symbol: str = "BTC/USDT") -> Fill:
    return Fill(trade_id=tid, client_id=cid, venue_id="v-" + cid, symbol=symbol, side=side, amount=amount,
                price=price, fee=amount * price * 1e-3, fee_currency="USDT", ts=ts, liquidity="maker")


@pytest.fixture
def journal(tmp_path):
    clock = iter(range(10_000, 10**9, 7))
    with OrderJournal(tmp_path / "j.sqlite", clock=lambda: next(clock)) as j:
        yield j


def test_fresh_journal_is_wal_with_schema_version(tmp_path):
    path = tmp_path / "j.sqlite"
    OrderJournal(path).close()
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert raw.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    raw.close()
    with OrderJournal(path) as j:      # reopening an existing journal
        assert j.unresolved() == []
        assert j._conn.execute("PRAGMA synchronous").fetchone()[0] == 2   # FULL
    with OrderJournal(path, durable=False) as j:                          # replays: NORMAL
        assert j._conn.execute("PRAGMA synchronous").fetchone()[0] == 1


def test_intent_state_round_trip(journal):
    req = _req("c1", side=-1, amount=0.25, type="stop_limit", price=99.5, stop_price=99.0, tif="GTD",
               expire_ts=123_456, post_only=False)
    journal.record_intent(req, group_id="g1")
    assert journal.request("c1") == (req, "g1")
    pending = journal.order("c1")
    assert (pending.status, pending.venue_id, pending.filled, pending.side, pending.amount) == \
        ("pending", None, 0.0, -1, 0.25)
    assert journal.unresolved() == [pending]

    ack = OrderState(client_id="c1", venue_id="V9", symbol="BTC/USDT", side=-1, type="stop_limit",
                     amount=0.25, price=99.5, status="open", ts=5_000)
    journal.record_state(ack)
    assert journal.order("c1") == ack
    done = OrderState(client_id="c1", venue_id="V9", symbol="BTC/USDT", side=-1, type="stop_limit",
                      amount=0.25, price=99.5, status="canceled", filled=0.1, avg_price=99.6, ts=6_000,
                      reason="user")
    journal.record_state(done)
    assert journal.order("c1") == done
    assert journal.unresolved() == []
    assert journal.order("nope") is None and journal.request("nope") is None
    assert [s.client_id for s in journal.group("g1")] == ["c1"]

    ev = journal.events("c1")
    assert [(e[1], e[3]) for e in ev] == [("intent", "pending"), ("state", "open"), ("state", "canceled")]
    assert [e[0] for e in ev] == sorted(e[0] for e in ev)           # sequence numbers increase
    assert ev[0][4]["group_id"] == "g1" and ev[0][4]["stop_price"] == 99.0
    assert ev[0][5] < ev[1][5] < ev[2][5]                           # times from the injected clock


def test_client_id_reuse_and_state_without_intent_are_refused(journal):
    journal.record_intent(_req("c1"))
    with pytest.raises(JournalError, match="already in the journal"):
        journal.record_intent(_req("c1"))
    with pytest.raises(JournalError, match="no intent"):
        journal.record_state(_state("ghost", "open"))
    with pytest.raises(JournalError, match="status 'bogus'"):
        journal.record_state(_state("c1", "bogus"))
    # Refused writes leave nothing behind.
    assert [e[1] for e in journal.events()] == ["intent"]


def test_unknown_is_unresolved_and_final_is_never_reopened(journal):
    for cid in ("a", "b", "c"):
        journal.record_intent(_req(cid))
    journal.record_state(_state("a", "unknown", venue_id=None))
    journal.record_state(_state("b", "open"))
    journal.record_state(_state("c", "rejected", reason="min_notional"))
    assert [(s.client_id, s.status) for s in journal.unresolved()] == [("a", "unknown"), ("b", "open")]
    # A late acknowledgement after the fill does not reopen the order, and filled never shrinks.
    journal.record_state(_state("b", "filled", filled=0.5, avg_price=100.2))
    journal.record_state(_state("b", "open", filled=0.0))
    b = journal.order("b")
    assert (b.status, b.filled, b.avg_price) == ("filled", 0.5, 100.2)
    assert [e[3] for e in journal.events("b")] == ["pending", "open", "filled", "open"]   # all logged
    assert journal.order("a").venue_id is None
    journal.record_state(_state("a", "open", venue_id="V-a"))
    assert journal.order("a").venue_id == "V-a"


def test_duplicate_fills_are_ignored_and_position_counts_once(journal):
    journal.record_intent(_req("buy", amount=1.0))
    journal.record_intent(_req("sell", side=-1, amount=0.4))
    assert journal.record_fill(_fill("t1", "buy", 0.6, 100.0, ts=1_000)) is True
    assert journal.record_fill(_fill("t1", "buy", 0.6, 100.0, ts=1_000)) is False
    assert journal.record_fill(_fill("t2", "buy", 0.4, 101.0, ts=2_000)) is True
    assert journal.record_fill(_fill("t3", "sell", 0.4, 102.0, side=-1, ts=3_000)) is True
    assert journal.record_fill(_fill("t2", "buy", 0.4, 101.0, ts=2_000)) is False
    # The same trade id on another symbol is another trade (venues number trades per symbol).
    assert journal.record_fill(_fill("t1", "x", 2.0, 10.0, symbol="ETH/USDT")) is True

    fills = journal.fills("BTC/USDT")
    assert [f.trade_id for f in fills] == ["t1", "t2", "t3"]
    assert fills[0] == _fill("t1", "buy", 0.6, 100.0, ts=1_000)
    assert [f.trade_id for f in journal.fills("BTC/USDT", since=2_000)] == ["t2", "t3"]
    assert len(journal.fills()) == 4
    assert journal.position("BTC/USDT") == math.fsum([0.6, 0.4, -0.4])
    assert journal.position("ETH/USDT") == 2.0 and journal.position("XRP/USDT") == 0.0
    assert journal.last_fill_ts("BTC/USDT") == 3_000 and journal.last_fill_ts("XRP/USDT") is None
    # The order's filled amount and average price follow its fills.
    buy = journal.order("buy")
    assert buy.filled == pytest.approx(1.0) and buy.avg_price == pytest.approx((0.6 * 100 + 0.4 * 101) / 1.0)
    assert sum(e[1] == "fill" for e in journal.events()) == 4


def test_fill_gap_since_finds_orders_whose_fills_may_be_missing(journal):
    assert journal.fill_gap_since("BTC/USDT") is None
    journal.record_intent(_req("a"))                     # created at 10_000 (the fixture's clock)
    journal.record_intent(_req("b"))                     # 10_007
    assert journal.fill_gap_since("BTC/USDT") == 10_000  # both unresolved
    journal.record_state(_state("a", "canceled"))
    assert journal.fill_gap_since("BTC/USDT") == 10_007
    journal.record_state(_state("b", "filled", filled=0.5, avg_price=100.0))
    assert journal.fill_gap_since("BTC/USDT") == 10_007  # filled, but no fill recorded yet
    journal.record_fill(_fill("t1", "b", 0.2))
    assert journal.fill_gap_since("BTC/USDT") == 10_007
    journal.record_fill(_fill("t2", "b", 0.3))
    assert journal.fill_gap_since("BTC/USDT") is None    # fully explained by its fills
    journal.adopt(_state("x", "partially_filled", filled=0.1, ts=5_000))
    assert journal.fill_gap_since("BTC/USDT") == 5_000   # the venue's time of an adopted order
    assert journal.fill_gap_since("ETH/USDT") is None


def test_bad_fill_is_refused(journal):
    with pytest.raises(JournalError, match="positive and finite"):
        journal.record_fill(_fill("t", "c", float("nan")))
    with pytest.raises(JournalError, match="positive and finite"):
        journal.record_fill(_fill("t", "c", 1.0, side=0))
    assert journal.fills() == []


def test_adopt_inserts_only_once(journal):
    st = _state("bot-x", "open", filled=0.1)
    assert journal.adopt(st) is True
    assert journal.adopt(st) is False
    assert journal.order("bot-x") == st and journal.unresolved() == [st]
    assert [e[1] for e in journal.events()] == ["adopt"]


def test_not_a_journal_and_newer_schema_are_clear_errors(tmp_path):
    garbage = tmp_path / "notes.txt"
    garbage.write_bytes(b"this is not a database at all, just some text\n" * 100)
    with pytest.raises(JournalError, match=r"notes\.txt: not an order journal \(not an SQLite"):
        OrderJournal(garbage)

    other = tmp_path / "other.db"
    raw = sqlite3.connect(other)
    raw.execute("CREATE TABLE t (x)")
    raw.commit()
    raw.close()
    with pytest.raises(JournalError, match=r"other\.db: not an order journal \(an SQLite database of another"):
        OrderJournal(other)

    newer = tmp_path / "newer.sqlite"
    OrderJournal(newer).close()
    raw = sqlite3.connect(newer)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.close()
    with pytest.raises(JournalError, match=rf"newer\.sqlite: journal schema version {SCHEMA_VERSION + 1} "
                                           "was written by a newer bot4jax"):
        OrderJournal(newer)

    with pytest.raises(JournalError, match="cannot open"):
        OrderJournal(tmp_path / "missing-dir" / "j.sqlite")
    empty = tmp_path / "empty.sqlite"
    empty.touch()                       # an empty file becomes a new journal
    OrderJournal(empty).close()


def test_closed_journal_raises(tmp_path):
    j = OrderJournal(tmp_path / "j.sqlite")
    j.close()
    with pytest.raises(JournalError, match="closed"):
        j.unresolved()


# The child writes a stream of orders (intent, ack, fill, filled) and prints each index once all four
# records of that order are committed; the parent kills it with SIGKILL mid-stream.
_WRITER = """
import sys
from bot4jax.execution.base import Fill, OrderRequest, OrderState
from bot4jax.execution.journal import OrderJournal
j = OrderJournal(sys.argv[1])
for i in range(10**6):
    cid = f"c{i}"
    j.record_intent(OrderRequest(cid, "BTC/USDT", 1 if i % 2 else -1, "market", 0.001 * (1 + i % 7)))
    st = dict(client_id=cid, venue_id=f"V{i}", symbol="BTC/USDT", side=1 if i % 2 else -1, type="market",
              amount=0.001 * (1 + i % 7), price=None)
    j.record_state(OrderState(status="open", **st))
    j.record_fill(Fill(f"t{i}", cid, f"V{i}", "BTC/USDT", st["side"], st["amount"], 100.0 + i, 0.01, "USDT", i))
    j.record_state(OrderState(status="filled", filled=st["amount"], avg_price=100.0 + i, **st))
    print(i, flush=True)
"""


def _kill_mid_stream(path: Path, after: int) -> int:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, env=env,
                            text=True)
    last = -1
    try:
        for line in proc.stdout:
            last = int(line)
            if last >= after:
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the writer must die by SIGKILL, not finish"
    return last


@pytest.mark.parametrize("after", [40, 137])
def test_sigkill_mid_stream_keeps_every_committed_record(tmp_path, after):
    path = tmp_path / "j.sqlite"
    last = _kill_mid_stream(path, after)
    assert last >= after
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    raw.close()
    with OrderJournal(path) as j:
        # Everything the child reported committed is there, complete.
        for i in range(last + 1):
            o = j.order(f"c{i}")
            assert o is not None and o.status == "filled" and o.venue_id == f"V{i}", i
        fills = j.fills("BTC/USDT")
        n_orders = j._conn.execute("SELECT count(*) FROM orders").fetchone()[0]
        # At most the one order in flight at the kill is beyond the last report, in some prefix state.
        assert n_orders in (last + 1, last + 2)
        assert len(fills) in (last + 1, last + 2)
        in_flight = j.order(f"c{last + 1}")
        expected = [] if in_flight is None or in_flight.status == "filled" else [in_flight]
        assert j.unresolved() == expected            # the interrupted order, if not finished
        events = j.events()
        assert [e[0] for e in events] == list(range(1, len(events) + 1))   # no holes in the log
        assert 4 * (last + 1) <= len(events) <= 4 * (last + 1) + 3
        assert j.position("BTC/USDT") == math.fsum(f.side * f.amount for f in fills)
        # The journal is writable again after the crash.
        j.record_intent(_req("after-crash"))
        assert j.order("after-crash").status == "pending"


def test_reader_in_another_connection_while_writing(tmp_path):
    path = tmp_path / "j.sqlite"
    writer = OrderJournal(path)
    reader = OrderJournal(path)
    n = 150
    errors: list[BaseException] = []

    def write():
        try:
            for i in range(n):
                writer.record_intent(_req(f"c{i}"))
                writer.record_fill(_fill(f"t{i}", f"c{i}", 0.5, ts=i))
        except BaseException as e:   # reported to the main thread
            errors.append(e)

    t = threading.Thread(target=write)
    t.start()
    seen = []
    while t.is_alive():
        seen.append((len(reader.fills()), len(reader.unresolved())))
    t.join()
    assert not errors
    counts = [s[0] for s in seen]
    assert counts == sorted(counts)                 # a reader never goes back in time
    assert len(reader.fills()) == n and len(reader.unresolved()) == n

    # A write transaction held open elsewhere does not block readers, who see only committed data.
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("BEGIN IMMEDIATE")
    raw.execute("UPDATE orders SET status = 'canceled'")
    assert len(reader.unresolved()) == n
    raw.execute("ROLLBACK")
    raw.close()
    writer.close()
    reader.close()
