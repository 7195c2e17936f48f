"""The crash-safe order journal: SQLite in WAL mode, every intent on disk before the exchange call.

The order manager writes, in this order, for every order:

    record_intent(request)    status "pending": we are about to call the venue with this client id
    (the exchange call)
    record_state(state)       the answer: "open", "filled", "rejected", ... or "unknown" when no
                              answer came back (timeout, dropped connection)
    record_fill(fill)         each execution, keyed by the venue's trade id (duplicates ignored)

Each call is one transaction committed with `synchronous=FULL`: when it returns, the record survives
a crash of the process or of the machine. After a restart `unresolved()` lists exactly the orders
whose fate may differ from what we know (pending, open, partially filled, unknown);
`bot4jax.execution.reconcile` resolves them by asking the venue, never by guessing.

Tables (schema version `SCHEMA_VERSION`, stored in `PRAGMA user_version`; `PRAGMA application_id`
marks the file as a bot4jax journal):
- `orders`: one row per client id: the request, its group, the last status, the venue id, the filled
  amount (base currency), the average fill price (quote), the venue's reason, and three times (ms
  UTC): created (intent written), updated (last state written), venue_ts (the venue's own time).
- `events`: append-only log, `seq` increasing by one per record: ("intent" | "state" | "fill" |
  "adopt", client id, status, JSON payload, time written in ms).
- `fills`: one row per (symbol, trade id). Venues number trades per symbol (Binance does), so the
  symbol is part of the key; within a symbol a trade id is stored at most once.

One connection, guarded by a lock, so a journal may be used from the event loop and from a worker
thread of the same process. A second process (a monitor, a test) may open the same file and read
while this one writes: WAL readers never block the writer.
"""
from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
from pathlib import Path
from typing import Callable

from bot4jax.errors import Bot4jaxError
from bot4jax.execution.base import FINAL_STATUSES, STATUSES, Fill, OrderRequest, OrderState

SCHEMA_VERSION = 1
# "b4jJ" as a big-endian int32: identifies the file as a bot4jax order journal.
APPLICATION_ID = 0x62346A4A
_OPEN_STATUSES = tuple(s for s in STATUSES if s not in FINAL_STATUSES)

_SCHEMA = """
CREATE TABLE orders (
    client_id   TEXT PRIMARY KEY,
    symbol      TEXT NOT NULL,
    side        INTEGER NOT NULL CHECK (side IN (-1, 1)),
    type        TEXT NOT NULL,
    amount      REAL NOT NULL,
    price       REAL,
    stop_price  REAL,
    tif         TEXT NOT NULL,
    expire_ts   INTEGER,
    post_only   INTEGER NOT NULL,
    group_id    TEXT,
    status      TEXT NOT NULL,
    venue_id    TEXT,
    filled      REAL NOT NULL DEFAULT 0,
    avg_price   REAL,
    reason      TEXT,
    created_ms  INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL,
    venue_ts    INTEGER
);
CREATE INDEX orders_status ON orders (status);
CREATE INDEX orders_group ON orders (group_id);
CREATE TABLE events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT NOT NULL CHECK (kind IN ('intent', 'state', 'fill', 'adopt')),
    client_id   TEXT,
    status      TEXT,
    payload     TEXT NOT NULL,
    written_ms  INTEGER NOT NULL
);
CREATE TABLE fills (
    symbol       TEXT NOT NULL,
    trade_id     TEXT NOT NULL,
    client_id    TEXT,
    venue_id     TEXT,
    side         INTEGER NOT NULL CHECK (side IN (-1, 1)),
    amount       REAL NOT NULL,
    price        REAL NOT NULL,
    fee          REAL NOT NULL,
    fee_currency TEXT NOT NULL,
    ts           INTEGER NOT NULL,
    liquidity    TEXT NOT NULL,
    written_ms   INTEGER NOT NULL,
    PRIMARY KEY (symbol, trade_id)
);
CREATE INDEX fills_symbol_ts ON fills (symbol, ts);
CREATE INDEX fills_client ON fills (client_id);
"""

_ORDER_COLS = ("client_id, venue_id, symbol, side, type, amount, price, status, filled, avg_price, "
               "venue_ts, reason")
_FILL_COLS = "trade_id, client_id, venue_id, symbol, side, amount, price, fee, fee_currency, ts, liquidity"


class JournalError(Bot4jaxError):
    """The journal file cannot be used (not a journal, a newer schema) or a write breaks its rules
    (a client id used twice, a state for an order never written). The message names the file."""


def _wall_ms() -> int:
    return int(time.time() * 1000)


def _state_row(r) -> OrderState:
    return OrderState(client_id=r[0], venue_id=r[1], symbol=r[2], side=int(r[3]), type=r[4],
                      amount=r[5], price=r[6], status=r[7], filled=r[8], avg_price=r[9], ts=r[10],
                      reason=r[11])


def _fill_row(r) -> Fill:
    return Fill(trade_id=r[0], client_id=r[1], venue_id=r[2], symbol=r[3], side=int(r[4]), amount=r[5],
                price=r[6], fee=r[7], fee_currency=r[8], ts=r[9], liquidity=r[10])


class OrderJournal:
    """`OrderJournal(path)` opens (or creates) the journal at `path`; implements base.Journal.

    `clock()` returns the time written into `created_ms` / `updated_ms` / `written_ms` (ms UTC; the
    wall clock by default, the replay clock in a backtest). `durable=True` (live trading) fsyncs every
    commit (`synchronous=FULL`, about 0.5 ms on an SSD): a returned write survives power loss.
    `durable=False` (replays, paper trading) uses `synchronous=NORMAL`: a write still survives the
    process being killed, not the machine losing power. Use as a context manager or call close().
    """

    def __init__(self, path: str | Path, clock: Callable[[], int] | None = None, durable: bool = True):
        self.path = Path(path)
        self.durable = durable
        self._clock = clock or _wall_ms
        self._lock = threading.Lock()
        self._conn = self._open()

    # -- opening -------------------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        try:
            # isolation_level=None: no implicit transactions; each write is an explicit BEGIN/COMMIT.
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as e:
            raise JournalError(f"{self.path}: cannot open the order journal: {e}") from None
        try:
            conn.execute("PRAGMA busy_timeout = 5000")
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            n_tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        except sqlite3.DatabaseError as e:
            conn.close()
            raise JournalError(f"{self.path}: not an order journal (not an SQLite database: {e})") from None
        try:
            if app_id == 0 and n_tables == 0:
                self._create(conn)
            elif app_id != APPLICATION_ID:
                raise JournalError(f"{self.path}: not an order journal (an SQLite database of another "
                                   f"application, id {app_id:#x}); choose another journal path")
            elif version > SCHEMA_VERSION:
                raise JournalError(f"{self.path}: journal schema version {version} was written by a newer "
                                   f"bot4jax; this version reads up to {SCHEMA_VERSION}: upgrade bot4jax")
            elif version < 1:
                raise JournalError(f"{self.path}: journal has no schema version; the file is damaged")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise JournalError(f"{self.path}: cannot switch the journal to WAL mode (got {mode!r}); "
                                   "is it on a network file system?")
            # FULL: the WAL is fsynced at every commit, so a returned record_* survives power loss.
            # NORMAL: the commit is in the OS page cache (survives a killed process) and the WAL is
            # fsynced only at checkpoints.
            conn.execute(f"PRAGMA synchronous = {'FULL' if self.durable else 'NORMAL'}")
            conn.execute("PRAGMA foreign_keys = ON")
        except BaseException:
            conn.close()
            raise
        return conn

    def _create(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have created it between our check and the lock.
            if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0:
                for stmt in _SCHEMA.split(";"):
                    if stmt.strip():
                        conn.execute(stmt)
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> OrderJournal:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- writing -------------------------------------------------------------------------------

    def _write(self, fn):
        """Run fn(conn, now_ms) inside one immediate transaction and commit it (durably)."""
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn, int(self._clock()))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return result

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise JournalError(f"{self.path}: the journal is closed")
        return self._conn

    @staticmethod
    def _event(conn, kind: str, client_id: str | None, status: str | None, payload: dict, now: int) -> None:
        # payload: vars() of a flat frozen dataclass (its fields), serialised at once, never mutated
        conn.execute("INSERT INTO events (kind, client_id, status, payload, written_ms) VALUES (?,?,?,?,?)",
                     (kind, client_id, status, json.dumps(payload, sort_keys=True), now))

    def record_intent(self, request: OrderRequest, group_id: str | None = None) -> None:
        """Write the order as "pending" before the exchange is called. A client id already in the
        journal raises JournalError: sending it again could create a second order."""
        def write(conn, now):
            try:
                conn.execute(
                    "INSERT INTO orders (client_id, symbol, side, type, amount, price, stop_price, tif, "
                    "expire_ts, post_only, group_id, status, created_ms, updated_ms) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?,'pending',?,?)",
                    (request.client_id, request.symbol, request.side, request.type, request.amount,
                     request.price, request.stop_price, request.tif, request.expire_ts,
                     int(request.post_only), group_id, now, now))
            except sqlite3.IntegrityError as e:
                if "UNIQUE" in str(e):
                    raise JournalError(f"{self.path}: client id {request.client_id!r} is already in the "
                                       "journal; a client id is used for one order only") from None
                raise JournalError(f"{self.path}: order {request.client_id!r}: {e}") from None
            self._event(conn, "intent", request.client_id, "pending",
                        {**vars(request), "group_id": group_id}, now)
        self._write(write)

    def record_state(self, state: OrderState) -> None:
        """Write the venue's answer (or "unknown"). The journal keeps the last status, except that a
        final status (filled, canceled, rejected, expired) is never replaced by a non-final one: a
        late acknowledgement arriving after the cancel confirmation does not reopen the order. The
        filled amount never decreases. Every call is logged in `events` whatever it changes."""
        if state.status not in STATUSES:
            raise JournalError(f"{self.path}: order {state.client_id!r}: status {state.status!r} is not "
                               f"one of {STATUSES}")

        def write(conn, now):
            row = conn.execute("SELECT status, filled FROM orders WHERE client_id = ?",
                               (state.client_id,)).fetchone()
            if row is None:
                raise JournalError(f"{self.path}: state {state.status!r} for order {state.client_id!r}, "
                                   "which has no intent in the journal (use adopt() for venue orders)")
            old_status, old_filled = row
            status = old_status if (old_status in FINAL_STATUSES and state.status not in FINAL_STATUSES) \
                else state.status
            conn.execute(
                "UPDATE orders SET status = ?, venue_id = COALESCE(?, venue_id), filled = ?, "
                "avg_price = COALESCE(?, avg_price), reason = COALESCE(?, reason), "
                "venue_ts = COALESCE(?, venue_ts), updated_ms = ? WHERE client_id = ?",
                (status, state.venue_id, max(old_filled, state.filled), state.avg_price, state.reason,
                 state.ts, now, state.client_id))
            self._event(conn, "state", state.client_id, state.status, vars(state), now)
        self._write(write)

    def adopt(self, state: OrderState, group_id: str | None = None) -> bool:
        """Insert an order found at the venue that the journal lacks (reconciliation); False when
        the client id is already in the journal (nothing written)."""
        if state.status not in STATUSES:
            raise JournalError(f"{self.path}: order {state.client_id!r}: status {state.status!r} is not "
                               f"one of {STATUSES}")

        def write(conn, now):
            cur = conn.execute(
                "INSERT OR IGNORE INTO orders (client_id, symbol, side, type, amount, price, tif, post_only, "
                "group_id, status, venue_id, filled, avg_price, reason, created_ms, updated_ms, venue_ts) "
                "VALUES (?,?,?,?,?,?,'GTC',0,?,?,?,?,?,?,?,?,?)",
                (state.client_id, state.symbol, state.side, state.type, state.amount, state.price, group_id,
                 state.status, state.venue_id, state.filled, state.avg_price, state.reason, now, now,
                 state.ts))
            if cur.rowcount == 0:
                return False
            self._event(conn, "adopt", state.client_id, state.status, vars(state), now)
            return True
        return self._write(write)

    def record_fill(self, fill: Fill) -> bool:
        """Store a fill; False (and nothing written) when (symbol, trade id) is already stored. A
        fill of a journaled order raises that order's filled amount to the sum of its fills when the
        sum is larger, with the average price of those fills; its status is left to record_state."""
        if fill.side not in (-1, 1) or not (fill.amount > 0) or not (fill.price > 0) \
                or not math.isfinite(fill.amount) or not math.isfinite(fill.price):
            raise JournalError(f"{self.path}: fill {fill.trade_id!r} of {fill.symbol}: side must be +1/-1 and "
                               f"amount, price positive and finite (got {fill.side}, {fill.amount}, {fill.price})")

        def write(conn, now):
            cur = conn.execute(
                f"INSERT OR IGNORE INTO fills ({_FILL_COLS}, written_ms) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (fill.trade_id, fill.client_id, fill.venue_id, fill.symbol, fill.side, fill.amount, fill.price,
                 fill.fee, fill.fee_currency, fill.ts, fill.liquidity, now))
            if cur.rowcount == 0:
                return False
            qty, notional = conn.execute("SELECT total(amount), total(amount * price) FROM fills "
                                         "WHERE client_id = ?", (fill.client_id,)).fetchone()
            conn.execute("UPDATE orders SET filled = ?, avg_price = ?, updated_ms = ? "
                         "WHERE client_id = ? AND filled < ?",
                         (qty, notional / qty, now, fill.client_id, qty))
            self._event(conn, "fill", fill.client_id, None, vars(fill), now)
            return True
        return self._write(write)

    # -- reading -------------------------------------------------------------------------------

    def _read(self, sql: str, args=()) -> list:
        with self._lock:
            return self._connection().execute(sql, args).fetchall()

    def unresolved(self) -> list[OrderState]:
        """Orders whose last status is not final (pending, open, partially_filled, unknown), oldest
        intent first."""
        marks = ",".join("?" * len(_OPEN_STATUSES))
        return [_state_row(r) for r in self._read(
            f"SELECT {_ORDER_COLS} FROM orders WHERE status IN ({marks}) ORDER BY created_ms, rowid",
            _OPEN_STATUSES)]

    def order(self, client_id: str) -> OrderState | None:
        """The journal's view of one order, or None when the client id was never written."""
        rows = self._read(f"SELECT {_ORDER_COLS} FROM orders WHERE client_id = ?", (client_id,))
        return _state_row(rows[0]) if rows else None

    def created_ms(self, client_id: str) -> int | None:
        """When the order's intent (or adoption) was written, journal clock, ms."""
        rows = self._read("SELECT created_ms FROM orders WHERE client_id = ?", (client_id,))
        return rows[0][0] if rows else None

    def now(self) -> int:
        """The journal's clock now (ms)."""
        return int(self._clock())

    def request(self, client_id: str) -> tuple[OrderRequest, str | None] | None:
        """The request as written with its intent, and its group id (None for an adopted order's
        unknown fields: type, amount and price come from the venue, tif "GTC")."""
        rows = self._read("SELECT client_id, symbol, side, type, amount, price, stop_price, tif, expire_ts, "
                          "post_only, group_id FROM orders WHERE client_id = ?", (client_id,))
        if not rows:
            return None
        r = rows[0]
        return OrderRequest(client_id=r[0], symbol=r[1], side=int(r[2]), type=r[3], amount=r[4], price=r[5],
                            stop_price=r[6], tif=r[7], expire_ts=r[8], post_only=bool(r[9])), r[10]

    def group(self, group_id: str) -> list[OrderState]:
        """Every order of a linked group (OCO, bracket, multi-leg), in intent order."""
        return [_state_row(r) for r in self._read(
            f"SELECT {_ORDER_COLS} FROM orders WHERE group_id = ? ORDER BY created_ms, rowid", (group_id,))]

    def fills(self, symbol: str | None = None, since: int | None = None) -> list[Fill]:
        """Fills (all symbols when `symbol` is None) with ts >= since (ms), oldest first."""
        sql, args = f"SELECT {_FILL_COLS} FROM fills WHERE ts >= ?", [since if since is not None else -2**63]
        if symbol is not None:
            sql += " AND symbol = ?"
            args.append(symbol)
        return [_fill_row(r) for r in self._read(sql + " ORDER BY ts, rowid", args)]

    def position(self, symbol: str) -> float:
        """Net position in base currency from the fills: sum(side * amount), summed exactly (fsum)."""
        return math.fsum(s * a for s, a in self._read("SELECT side, amount FROM fills WHERE symbol = ?",
                                                      (symbol,)))

    def fill_gap_since(self, symbol: str) -> int | None:
        """The earliest time (ms) a fill the journal lacks may carry: the earliest intent (or venue
        time, for an adopted order) of an order on `symbol` that is unresolved or whose filled amount
        exceeds the sum of its recorded fills. None when every order is final and fully explained."""
        marks = ",".join("?" * len(_OPEN_STATUSES))
        return self._read(
            "SELECT min(COALESCE(min(created_ms, venue_ts), created_ms)) FROM orders o WHERE symbol = ? AND "
            f"(status IN ({marks}) OR filled > 1e-9 * amount + "
            "(SELECT total(f.amount) FROM fills f WHERE f.client_id = o.client_id))",
            (symbol, *_OPEN_STATUSES))[0][0]

    def last_fill_ts(self, symbol: str) -> int | None:
        """Time (ms) of the newest fill on `symbol`, None when there is none."""
        return self._read("SELECT max(ts) FROM fills WHERE symbol = ?", (symbol,))[0][0]

    def events(self, client_id: str | None = None, after_seq: int = 0) -> list[tuple[int, str, str | None,
                                                                                     str | None, dict, int]]:
        """The append-only log: (seq, kind, client_id, status, payload, written_ms), seq > after_seq."""
        sql, args = "SELECT seq, kind, client_id, status, payload, written_ms FROM events WHERE seq > ?", [after_seq]
        if client_id is not None:
            sql += " AND client_id = ?"
            args.append(client_id)
        return [(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5]) for r in self._read(sql + " ORDER BY seq", args)]
