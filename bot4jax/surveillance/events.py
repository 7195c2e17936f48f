"""The order-book event stream that surveillance reads (structure of arrays, one row per message).

Columns, all of shape (n,):

    id            int64    event id, unique within a stream (default 0..n-1); alerts cite these
    ts            int64    ms since the epoch UTC, non-decreasing
    kind          int8     ADD 0, CANCEL 1, MODIFY 2, TRADE 3
    order_id      int64    ADD/CANCEL/MODIFY: the order; TRADE: the resting (maker) order it filled;
                           -1 where the feed has none (L2 feeds)
    participant   int64    who sent the message; for a TRADE the aggressor (taker); -1 if unknown
    counterparty  int64    TRADE: the maker (owner of `order_id`); -1 if unknown or not a trade
    side          int8     +1 bid / buy, -1 ask / sell; for a TRADE the aggressor's side
    price         float64  ADD/MODIFY: the order's (new) limit price; TRADE: the fill price;
                           CANCEL: the order's price where known (informational)
    size          float64  ADD: the order size; MODIFY: the new remaining size (0 = cancel);
                           TRADE: the filled amount; CANCEL: the size removed (informational)
    mid           float64  mid price at the event where the feed knows it, else NaN

Units: prices in the quote currency, sizes in the base currency. `validate_events` checks a stream
once at the boundary; the detectors trust their input.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bot4jax.errors import DataError

ADD, CANCEL, MODIFY, TRADE = 0, 1, 2, 3
KIND_NAMES = ("add", "cancel", "modify", "trade")
UNKNOWN = -1


def _as(a, dtype) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(a), dtype=dtype)


@dataclass(frozen=True, eq=False)
class Events:
    ts: np.ndarray
    kind: np.ndarray
    order_id: np.ndarray
    participant: np.ndarray
    counterparty: np.ndarray
    side: np.ndarray
    price: np.ndarray
    size: np.ndarray
    mid: np.ndarray = None
    id: np.ndarray = None

    columns = ("ts", "kind", "order_id", "participant", "counterparty", "side", "price", "size", "mid", "id")
    _dtypes = (np.int64, np.int8, np.int64, np.int64, np.int64, np.int8, np.float64, np.float64, np.float64,
               np.int64)

    def __post_init__(self):
        n = len(np.asarray(self.ts))
        if self.mid is None:
            object.__setattr__(self, "mid", np.full(n, np.nan))
        if self.id is None:
            object.__setattr__(self, "id", np.arange(n, dtype=np.int64))
        for name, dtype in zip(self.columns, self._dtypes):
            object.__setattr__(self, name, _as(getattr(self, name), dtype).reshape(-1))
        lengths = {name: len(getattr(self, name)) for name in self.columns}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"Events columns differ in length: {lengths}")

    def __len__(self) -> int:
        return len(self.ts)


def take_events(ev: Events, index) -> Events:
    """The rows `index` (slice, mask or integer array) of a stream; ids are kept."""
    return Events(**{name: getattr(ev, name)[index] for name in Events.columns})


def concat_events(parts: list[Events]) -> Events:
    """Several streams one after the other (ids kept: make them unique, e.g. with `renumber`)."""
    return Events(**{name: np.concatenate([getattr(p, name) for p in parts]) for name in Events.columns})


def renumber(ev: Events, start: int = 0) -> Events:
    """The same stream with ids start, start + 1, ..."""
    cols = {name: getattr(ev, name) for name in Events.columns}
    cols["id"] = np.arange(start, start + len(ev), dtype=np.int64)
    return Events(**cols)


def validate_events(ev: Events, source: str = "<memory>", rows: np.ndarray | None = None) -> Events:
    """Check every row; return `ev` or raise DataError naming the source, the 1-based row and the field.

    Rules: ts >= 0 and non-decreasing; kind in 0..3; side +1 or -1; ADD and TRADE prices finite > 0;
    ADD and TRADE sizes finite > 0, CANCEL and MODIFY sizes finite >= 0 (MODIFY 0 = cancel), a MODIFY
    price finite > 0; mid NaN or finite > 0; participant, counterparty and order id >= -1; ids unique.
    `rows` maps each element to its row in the source (default 1..n).
    """
    n = len(ev)
    rows = np.arange(1, n + 1) if rows is None else np.asarray(rows)
    k = ev.kind
    priced = (k == ADD) | (k == TRADE) | (k == MODIFY)
    sized = (k == ADD) | (k == TRADE)
    with np.errstate(invalid="ignore"):
        checks = [
            ("ts", "negative timestamp", ev.ts < 0),
            ("kind", "must be 0 add, 1 cancel, 2 modify or 3 trade", (k < 0) | (k > 3)),
            ("side", "must be +1 (bid / buy) or -1 (ask / sell)", (ev.side != 1) & (ev.side != -1)),
            ("price", "must be a finite positive price", priced & ~(np.isfinite(ev.price) & (ev.price > 0))),
            ("size", "must be a finite positive size", sized & ~(np.isfinite(ev.size) & (ev.size > 0))),
            ("size", "must be a finite size >= 0", ~sized & ~(np.isfinite(ev.size) & (ev.size >= 0))),
            ("mid", "must be NaN (unknown) or a finite positive price",
             ~np.isnan(ev.mid) & ~(np.isfinite(ev.mid) & (ev.mid > 0))),
            ("participant", "must be an id >= 0 or -1 (unknown)", ev.participant < -1),
            ("counterparty", "must be an id >= 0 or -1 (unknown)", ev.counterparty < -1),
            ("order_id", "must be an id >= 0 or -1 (unknown)", ev.order_id < -1),
        ]
    back = np.zeros(n, bool)
    if n > 1:
        back[1:] = ev.ts[1:] < np.maximum.accumulate(ev.ts)[:-1]
    checks.append(("ts", "timestamp goes back in time", back))
    first = None
    for name, msg, mask in checks:
        hit = np.flatnonzero(mask)
        if hit.size and (first is None or hit[0] < first[0]):
            first = (hit[0], name, msg)
    if first is not None:
        i, name, msg = first
        value = getattr(ev, name)[i].item()
        raise DataError(source, f"{msg} (value {value!r}, event id {int(ev.id[i])})", row=int(rows[i]), field=name)
    if n > 1:
        order = np.argsort(ev.id, kind="stable")
        dup = np.flatnonzero(ev.id[order][1:] == ev.id[order][:-1])
        if dup.size:
            i = int(max(order[dup[0]], order[dup[0] + 1]))
            raise DataError(source, f"duplicate event id {int(ev.id[i])}", row=int(rows[i]), field="id")
    return ev
