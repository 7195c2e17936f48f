"""Binance L2 book replay and websocket capture reading.

A capture (`*_ws.jsonl.gz`, as recorded by hftbacktest's collector) has one message per line:
`<local_receive_time_ns> <json>`. The JSON is Binance's combined-stream envelope
`{"stream": "btcusdt@trade" | "btcusdt@depth@100ms" | "btcusdt@bookTicker" | ..., "data": {...}}`,
except the REST depth snapshot line `{"lastUpdateId": ..., "bids": [[px, qty], ...], "asks": [...]}`.

- `capture_trades`: Trades from the `@trade` messages: ts = `T` (trade time, ms), price = `p`,
  amount = `q`, id = `t`, side from `m` (buyer is maker => the seller took liquidity => -1, else +1).
- `capture_book`: the top `levels` levels after every depth diff applied on top of the snapshot,
  one Book row per applied diff message, ts = `E` (event time, ms).

Book synchronisation follows Binance's rules, by update id and not by line order (a capture can hold
the diff that covers the snapshot on a line *before* the snapshot):
- spot (diffs without `pu`): drop diffs with `u <= lastUpdateId`; the first applied diff has
  `U <= lastUpdateId + 1 <= u`; each later diff has `U == previous u + 1`;
- USD-M futures (diffs carry `pu`): drop diffs with `u < lastUpdateId`; the first applied diff has
  `U <= lastUpdateId <= u` (or `pu == lastUpdateId`); each later diff has `pu == previous u`.
A break in that chain raises DataError: the book after a lost diff is unknown. A diff sets a level's
quantity absolutely (quantity 0 removes the level), so applying a diff is idempotent.

`depth_rows_book` rebuilds a Book from the rows of Binance's historical depth CSV
(`symbol,timestamp,first_update_id,last_update_id,side,update_type,price,qty,pu`, one row per level;
`loaders` parses the columns): a row for each snapshot (`snap` rows) and one per later diff message.
"""
from __future__ import annotations

import json
from bisect import bisect_left
from typing import Iterable, NamedTuple

import numpy as np

from bot4jax.data.types import Book, Trades, concat
from bot4jax.errors import DataError


class Diff(NamedTuple):
    """One depth update message. bids / asks: [(price, qty), ...]; pu is None where the venue has none."""

    row: int
    ts: int
    first_id: int  # U
    last_id: int  # u
    prev_last_id: int | None  # pu
    bids: list
    asks: list


class _Side:
    """One side of an L2 book: price -> quantity, with the prices kept sorted best first.

    Bids are keyed by -price so that both sides sort ascending from the best level; a sorted list
    with bisect makes an update O(log n + shift) and reading the top k levels O(k).
    """

    def __init__(self, is_bid: bool):
        self.sign = -1.0 if is_bid else 1.0
        self.qty: dict[float, float] = {}
        self.keys: list[float] = []

    def set(self, px: float, qty: float) -> None:
        key = self.sign * px
        if qty == 0.0:
            if key in self.qty:
                del self.qty[key]
                del self.keys[bisect_left(self.keys, key)]
        else:
            if key not in self.qty:
                self.keys.insert(bisect_left(self.keys, key), key)
            self.qty[key] = qty

    def top(self, k: int, px_out: np.ndarray, sz_out: np.ndarray) -> None:
        best = self.keys[:k]
        px_out[: len(best)] = [self.sign * key for key in best]
        sz_out[: len(best)] = [self.qty[key] for key in best]


def replay(source: str, snapshot_bids: Iterable, snapshot_asks: Iterable, last_update_id: int,
           diffs: list[Diff], levels: int, snapshot_row: int | None = None,
           snapshot_ts: int | None = None) -> tuple[Book, np.ndarray]:
    """Apply `diffs` (in stream order) to a snapshot; return (Book of the top `levels`, source rows).

    One row per applied diff (ts = diff.ts), preceded by a row for the snapshot itself when
    `snapshot_ts` is given. Rows sharing a timestamp are collapsed to the last one (the book at the
    end of that millisecond), since Book timestamps must increase strictly.
    """
    bids, asks = _Side(True), _Side(False)
    for px, qty in snapshot_bids:
        bids.set(px, qty)
    for px, qty in snapshot_asks:
        asks.set(px, qty)
    start = _first_applied(source, diffs, last_update_id, snapshot_row)
    applied = diffs[start:] if start is not None else []
    n = len(applied) + (snapshot_ts is not None)
    ts = np.empty(n, np.int64)
    rows = np.empty(n, np.int64)
    out = {name: np.zeros((n, levels)) for name in ("bid_px", "bid_sz", "ask_px", "ask_sz")}
    out["bid_px"].fill(np.nan)
    out["ask_px"].fill(np.nan)
    i = 0

    def emit(t: int, row: int) -> None:
        ts[i], rows[i] = t, row
        bids.top(levels, out["bid_px"][i], out["bid_sz"][i])
        asks.top(levels, out["ask_px"][i], out["ask_sz"][i])

    if snapshot_ts is not None:
        emit(snapshot_ts, snapshot_row if snapshot_row is not None else 1)
        i += 1
    prev = None
    for d in applied:
        if prev is not None:
            if d.prev_last_id is not None and d.prev_last_id != prev.last_id:
                raise DataError(source, f"gap in the depth updates: pu={d.prev_last_id} but the previous "
                                f"update (row {prev.row}) ended at u={prev.last_id}", row=d.row, field="pu")
            if d.prev_last_id is None and d.first_id != prev.last_id + 1:
                raise DataError(source, f"gap in the depth updates: U={d.first_id} but the previous update "
                                f"(row {prev.row}) ended at u={prev.last_id}", row=d.row, field="U")
        for px, qty in d.bids:
            bids.set(px, qty)
        for px, qty in d.asks:
            asks.set(px, qty)
        emit(d.ts, d.row)
        i += 1
        prev = d
    last_of_ms = np.ones(n, bool)
    last_of_ms[:-1] = ts[1:] != ts[:-1]
    book = Book(ts[last_of_ms], **{k: v[last_of_ms] for k, v in out.items()})
    return book, rows[last_of_ms]


def _first_applied(source: str, diffs: list[Diff], lid: int, snapshot_row: int | None) -> int | None:
    """Index of the first diff to apply on a snapshot at update id `lid` (None if none is newer)."""
    for j, d in enumerate(diffs):
        futures = d.prev_last_id is not None
        if d.last_id < lid or (not futures and d.last_id == lid):
            continue  # already contained in the snapshot
        if futures:
            covers = d.first_id <= lid <= d.last_id or d.prev_last_id == lid
        else:
            covers = d.first_id <= lid + 1 <= d.last_id
        if not covers:
            raise DataError(source, f"the first update after the snapshot (lastUpdateId {lid}, row "
                            f"{snapshot_row}) has U={d.first_id}, u={d.last_id}: the updates in between "
                            "are missing", row=d.row, field="U")
        return j
    return None


def _messages(lines: list[str], source: str):
    """Yield (row, local_ns, message) for every line; malformed lines raise DataError."""
    for row, line in enumerate(lines, 1):
        if not line.strip():
            continue
        stamp, _, body = line.partition(" ")
        try:
            local_ns = int(stamp)
        except ValueError:
            raise DataError(source, f"line does not start with '<receive time ns> ': {line[:60]!r}",
                            row=row) from None
        try:
            msg = json.loads(body)
        except json.JSONDecodeError as e:
            raise DataError(source, f"invalid JSON at column {len(stamp) + 1 + e.colno}: {e.msg}",
                            row=row) from None
        if not isinstance(msg, dict):
            raise DataError(source, "message is not a JSON object", row=row)
        yield row, local_ns, msg


def _field(source: str, row: int, data: dict, key: str, conv):
    try:
        return conv(data[key])
    except KeyError:
        raise DataError(source, f"message has no '{key}'", row=row, field=key) from None
    except (TypeError, ValueError):
        raise DataError(source, f"not a valid value: {data[key]!r}", row=row, field=key) from None


def _levels(source: str, row: int, data: dict, key: str) -> list[tuple[float, float]]:
    try:
        return [(float(px), float(qty)) for px, qty in data[key]]
    except KeyError:
        raise DataError(source, f"message has no '{key}'", row=row, field=key) from None
    except (TypeError, ValueError):
        raise DataError(source, "levels must be [[price, qty], ...] with numeric strings", row=row,
                        field=key) from None


def _stream(msg: dict) -> str:
    stream = msg.get("stream")
    return stream if isinstance(stream, str) else ""


def capture_trades(lines: list[str], source: str) -> tuple[Trades, np.ndarray]:
    """Trades from the `@trade` messages of a capture, and the line number of each."""
    ts, price, amount, side, ids, rows = [], [], [], [], [], []
    for row, _, msg in _messages(lines, source):
        if not _stream(msg).endswith("@trade"):
            continue
        d = msg.get("data")
        if not isinstance(d, dict):
            raise DataError(source, "trade message has no 'data' object", row=row, field="data")
        ts.append(_field(source, row, d, "T", int))
        price.append(_field(source, row, d, "p", float))
        amount.append(_field(source, row, d, "q", float))
        maker = _field(source, row, d, "m", lambda v: v if isinstance(v, bool) else _not_bool(v))
        side.append(-1 if maker else 1)
        ids.append(_field(source, row, d, "t", int))
        rows.append(row)
    if not rows:
        raise DataError(source, "no '@trade' messages in this capture")
    return Trades(ts, price, amount, side, ids), np.asarray(rows, np.int64)


def _not_bool(v):
    raise TypeError(f"expected true or false, got {v!r}")


def capture_book(lines: list[str], source: str, levels: int) -> tuple[Book, np.ndarray]:
    """Top-`levels` Book after each depth diff applied on the capture's first REST snapshot."""
    snapshot = snapshot_row = None
    diffs: list[Diff] = []
    for row, _, msg in _messages(lines, source):
        if "lastUpdateId" in msg and snapshot is None:
            snapshot, snapshot_row = msg, row
            continue
        if "@depth" not in _stream(msg):
            continue
        d = msg.get("data")
        if not isinstance(d, dict):
            raise DataError(source, "depth message has no 'data' object", row=row, field="data")
        pu = _field(source, row, d, "pu", int) if "pu" in d else None
        diffs.append(Diff(row, _field(source, row, d, "E", int), _field(source, row, d, "U", int),
                          _field(source, row, d, "u", int), pu, _levels(source, row, d, "b"),
                          _levels(source, row, d, "a")))
    if snapshot is None:
        raise DataError(source, "no REST depth snapshot line ({'lastUpdateId', 'bids', 'asks'}): "
                        "a book cannot be rebuilt from diffs alone")
    if not diffs:
        raise DataError(source, "no '@depth' diff messages in this capture")
    lid = _field(source, snapshot_row, snapshot, "lastUpdateId", int)
    book, rows = replay(source, _levels(source, snapshot_row, snapshot, "bids"),
                        _levels(source, snapshot_row, snapshot, "asks"), lid, diffs, levels, snapshot_row)
    if not len(book):
        raise DataError(source, f"no depth update after the snapshot (lastUpdateId {lid})",
                        row=snapshot_row, field="lastUpdateId")
    return book, rows


def depth_rows_book(source: str, rows: np.ndarray, ts: np.ndarray, first_id: np.ndarray,
                    last_id: np.ndarray, prev_last_id: np.ndarray, is_bid: np.ndarray, is_snap: np.ndarray,
                    price: np.ndarray, qty: np.ndarray, levels: int,
                    field: str = "update_type") -> tuple[Book, np.ndarray]:
    """Book from Binance historical depth rows (one price level per row, all arrays of shape (n,)).

    Consecutive rows with the same (update type, first/last update id, ts) form one message. A
    snapshot starts a new book (and gives a Book row at its ts); each later diff message gives one
    more row. prev_last_id (`pu`) < 0 means the venue gives none. A diff before any snapshot raises.
    """
    n = len(ts)
    change = (is_snap[1:] != is_snap[:-1]) | (first_id[1:] != first_id[:-1]) | \
        (last_id[1:] != last_id[:-1]) | (ts[1:] != ts[:-1])
    starts = np.flatnonzero(np.r_[True, change])
    segments: list[tuple[tuple, list[Diff]]] = []  # ((bids, asks, lid, row, ts), diffs)
    for a, b in zip(starts.tolist(), np.r_[starts[1:], n].tolist()):
        levels_ = list(zip(price[a:b].tolist(), qty[a:b].tolist()))
        bids = [lv for lv, bid in zip(levels_, is_bid[a:b]) if bid]
        asks = [lv for lv, bid in zip(levels_, is_bid[a:b]) if not bid]
        if is_snap[a]:
            segments.append(((bids, asks, int(last_id[a]), int(rows[a]), int(ts[a])), []))
        elif not segments:
            raise DataError(source, "depth update ('set' rows) before any snapshot ('snap' rows): a book "
                            "cannot be rebuilt from diffs alone; load them together with the snapshot "
                            "they follow", row=int(rows[a]), field=field)
        else:
            pu = int(prev_last_id[a])
            segments[-1][1].append(Diff(int(rows[a]), int(ts[a]), int(first_id[a]), int(last_id[a]),
                                        pu if pu >= 0 else None, bids, asks))
    parts = [replay(source, bids, asks, lid, diffs, levels, snapshot_row=row, snapshot_ts=t0)
             for (bids, asks, lid, row, t0), diffs in segments]
    return concat([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
