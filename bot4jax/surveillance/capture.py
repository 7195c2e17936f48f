"""Event streams from level-2 market data (books of the top levels and trades without participant ids).

An L2 feed shows quantities per price level, not orders: the change of a level between two book rows
becomes one ADD (the level grew by the difference) or one CANCEL (it shrank, trades included), with
order, participant and counterparty -1 (unknown). Levels that enter or leave the top `levels` window
look like adds and cancels too. Trades become TRADE events with their aggressor side. Every event
carries the book's mid (best bid + best ask) / 2 at or before it. So on such data the detectors that
need orders or participants stay quiet, while quote stuffing (message bursts, key "unknown") and
ramping (market-wide) still see the whole market.
"""
from __future__ import annotations

import numpy as np

from bot4jax.data.types import Book, Trades
from bot4jax.surveillance.events import ADD, CANCEL, TRADE, Events


def _level_changes(px_prev, sz_prev, px, sz):
    """(price, signed size change) of every level that differs between two rows of one side."""
    before = {p: s for p, s in zip(px_prev.tolist(), sz_prev.tolist()) if s > 0}
    after = {p: s for p, s in zip(px.tolist(), sz.tolist()) if s > 0}
    out = []
    for p in sorted(set(before) | set(after)):
        d = after.get(p, 0.0) - before.get(p, 0.0)
        if d != 0.0:
            out.append((p, d))
    return out


def events_from_l2(book: Book, trades: Trades | None = None) -> Events:
    """The event stream of a book (n, levels) and optional trades, ordered by time (book changes of a
    millisecond before its trades); ids 0..m-1 in that order."""
    ts, kind, side, price, size, mid = [], [], [], [], [], []
    empty = np.zeros(0)
    bid_mid = np.where((book.bid_sz[:, 0] > 0) & (book.ask_sz[:, 0] > 0),
                       0.5 * (book.bid_px[:, 0] + book.ask_px[:, 0]), np.nan)
    for i in range(len(book)):
        for s, px, sz in ((1, book.bid_px, book.bid_sz), (-1, book.ask_px, book.ask_sz)):
            prev_px, prev_sz = (px[i - 1], sz[i - 1]) if i else (empty, empty)
            for p, d in _level_changes(prev_px, prev_sz, px[i], sz[i]):
                ts.append(book.ts[i])
                kind.append(ADD if d > 0 else CANCEL)
                side.append(s)
                price.append(p)
                size.append(abs(d))
                mid.append(bid_mid[i])
    ts_a = np.asarray(ts, np.int64)
    cols = dict(ts=ts_a, kind=np.asarray(kind, np.int8), side=np.asarray(side, np.int8),
                price=np.asarray(price, np.float64), size=np.asarray(size, np.float64),
                mid=np.asarray(mid, np.float64))
    if trades is not None and len(trades):
        row = np.searchsorted(book.ts, trades.ts, side="right") - 1  # the last book at or before the trade
        tmid = np.where(row >= 0, bid_mid[np.maximum(row, 0)], np.nan)
        cols = {k: np.concatenate([v, extra]) for (k, v), extra in zip(cols.items(), (
            trades.ts, np.full(len(trades), TRADE, np.int8), trades.side, trades.price, trades.amount, tmid))}
    order = np.lexsort((cols["kind"] == TRADE, cols["ts"]))
    m = len(order)
    unknown = np.full(m, -1, np.int64)
    return Events(ts=cols["ts"][order], kind=cols["kind"][order], order_id=unknown, participant=unknown,
                  counterparty=unknown, side=cols["side"][order], price=cols["price"][order],
                  size=cols["size"][order], mid=cols["mid"][order], id=np.arange(m, dtype=np.int64))


def events_from_trades(trades: Trades) -> Events:
    """A trades-only stream (no book: mid unknown, participants unknown); ids 0..n-1."""
    n = len(trades)
    unknown = np.full(n, -1, np.int64)
    return Events(ts=trades.ts, kind=np.full(n, TRADE, np.int8), order_id=unknown, participant=unknown,
                  counterparty=unknown, side=trades.side, price=trades.price, size=trades.amount,
                  mid=np.full(n, np.nan), id=np.arange(n, dtype=np.int64))
