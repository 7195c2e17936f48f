"""A Parquet store of market data keyed by exchange / symbol / kind / timeframe, with atomic writes.

Layout: `<root>/<exchange>/<symbol>/<kind>/<timeframe>.parquet`, e.g.
`data/binance/BTC-USDT/bars/1m.parquet` or `data/binance/BTC-USDT/trades/tick.parquet`; `/` and `:`
in a symbol become `-` ("BTC/USDT:USDT" -> "BTC-USDT-USDT").

File schema (what `bot4jax.data.loaders` also reads): one column per field of the data type, named as
the field, with the type's dtype (ts int64 ms UTC, prices and sizes float64, trade side int8, trade
id int64); a Book's (n, levels) arrays are fixed-size-list<float64>[levels] columns. The schema
metadata holds b"bot4jax.kind" = bars | trades | book (plus exchange, symbol and timeframe).

Every write replaces the file atomically: the table goes to a temporary file in the same folder
(".<name>.<pid>.<random>.tmp"), is flushed and fsynced, then `os.replace`d over the old file, and the
folder is fsynced. A crash at any point leaves either the old file or the new one, never a mix; a
temporary file left by a dead writer is never read and is removed by the next write of that key.
One writer per key at a time: two processes appending to the same key concurrently can lose rows.
"""
from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bot4jax.data.types import Bars, Book, MarketData, Trades, concat, take, validate
from bot4jax.errors import ConfigError, DataError

KINDS: dict[str, type] = {"bars": Bars, "trades": Trades, "book": Book}
KIND_KEY = b"bot4jax.kind"
_SUFFIX = ".parquet"
_TMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[0-9a-f]+\.tmp$")


@dataclass(frozen=True)
class StoreKey:
    """One stored series. `symbol` is the folder name (sanitised), accepted back by every method."""

    exchange: str
    symbol: str
    kind: str
    timeframe: str


def sanitise_symbol(symbol: str) -> str:
    """Folder name of a ccxt symbol: "BTC/USDT" -> "BTC-USDT", "BTC/USDT:USDT" -> "BTC-USDT-USDT"."""
    return symbol.replace("/", "-").replace(":", "-")


def _component(what: str, value: str) -> str:
    if not value or value in (".", "..") or any(c in value for c in "/\\\0"):
        raise ConfigError(f"store key: {what} {value!r} is not usable as a folder or file name")
    return value


# --- Arrow conversion (shared with the loaders) -------------------------------------------------

_ARROW_TYPES = {np.dtype(np.int64): pa.int64(), np.dtype(np.float64): pa.float64(), np.dtype(np.int8): pa.int8()}


def to_table(data: MarketData, metadata: dict[str, str] | None = None) -> pa.Table:
    """The canonical Arrow table of `data` (see the module docstring for the schema)."""
    arrays, fields = [], []
    for name in data.columns:
        a = getattr(data, name)
        if a.ndim == 2:  # Book levels: one fixed-size list per row, best level first
            levels = a.shape[1]
            arr = pa.FixedSizeListArray.from_arrays(pa.array(a.reshape(-1), pa.float64()), levels)
        else:
            arr = pa.array(a, _ARROW_TYPES[a.dtype])
        arrays.append(arr)
        fields.append(pa.field(name, arr.type, nullable=False))
    meta = {KIND_KEY: data.kind.encode()}
    meta.update({f"bot4jax.{k}".encode(): str(v).encode() for k, v in (metadata or {}).items()})
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=meta))


def table_kind(table_or_schema, source: str) -> str:
    """The kind recorded in a table's metadata; DataError if it is missing or unknown."""
    meta = table_or_schema.schema.metadata if isinstance(table_or_schema, pa.Table) else table_or_schema.metadata
    kind = (meta or {}).get(KIND_KEY, b"").decode()
    if kind not in KINDS:
        raise DataError(source, f"no bot4jax kind in the Parquet metadata (got {kind or 'none'!r}); "
                                "expected bars, trades or book")
    return kind


def from_table(table: pa.Table, kind: str, source: str) -> MarketData:
    """Build the data object of `kind` from a canonical table; DataError names a missing or bad column."""
    cls = KINDS[kind]
    cols = {}
    for name in cls.columns:
        if name not in table.column_names:
            raise DataError(source, f"missing column '{name}' for {kind}", field=name)
        col = table.column(name).combine_chunks()
        if col.null_count:
            row = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0]) + 1
            raise DataError(source, "missing value (null)", row=row, field=name)
        try:
            if pa.types.is_fixed_size_list(col.type):
                levels = col.type.list_size
                flat = col.flatten().to_numpy(zero_copy_only=False)
                cols[name] = np.asarray(flat, np.float64).reshape(len(col), levels)
            else:
                cols[name] = col.to_numpy(zero_copy_only=False)
        except (pa.ArrowException, TypeError, ValueError) as e:
            raise DataError(source, f"column has unusable type {col.type}: {e}", field=name) from None
    try:
        return cls(**cols)
    except (TypeError, ValueError) as e:
        raise DataError(source, f"columns do not form {kind}: {e}") from None


# --- Merging -------------------------------------------------------------------------------------

def merge(old: MarketData, new: MarketData) -> MarketData:
    """`old` and `new` rows in time order without duplicates; on a clash the row from `new` wins.

    Bars and books: one row per timestamp. Trades: one row per venue id; rows without an id (-1) are
    matched on the whole row, counting multiplicity (two identical trades in `new` against one in
    `old` keep two), so re-downloading an overlapping span never doubles a trade.
    """
    if not len(old):
        return new
    if not len(new):
        return old
    both = concat([old, new])
    n_old = len(old)
    if isinstance(new, Trades):
        keep = _trade_keep(both, n_old)
        both = take(both, keep)
        # Time order; a venue's ids break ties inside a millisecond (lexsort is stable).
        order = np.lexsort((both.id, both.ts))
        return take(both, order)
    order = np.argsort(both.ts, kind="stable")  # within one ts the new row sorts after the old
    ts = both.ts[order]
    last_of_run = np.ones(len(ts), bool)
    last_of_run[:-1] = ts[1:] != ts[:-1]
    return take(both, order[last_of_run])


def _trade_keep(both: Trades, n_old: int) -> np.ndarray:
    n = len(both)
    keep = np.ones(n, bool)
    is_new = np.arange(n) >= n_old
    has_id = both.id >= 0
    # Rows with an id: the last occurrence of each id wins (new rows come after old ones).
    idx = np.flatnonzero(has_id)
    if idx.size:
        _, first_rev = np.unique(both.id[idx][::-1], return_index=True)
        winners = idx[::-1][first_rev]
        keep[idx] = False
        keep[winners] = True
    # Rows without an id: drop a new row if the k-th copy of it already exists in old (k counted in new).
    idx = np.flatnonzero(~has_id)
    if idx.size and (is_new[idx].any() and (~is_new[idx]).any()):
        rec = np.rec.fromarrays([both.ts[idx], both.price[idx], both.amount[idx], both.side[idx]])
        _, group = np.unique(rec, return_inverse=True)
        group = group.reshape(-1)
        old_count = np.bincount(group[~is_new[idx]], minlength=group.max() + 1)
        new_pos = np.flatnonzero(is_new[idx])
        g_new = group[new_pos]
        order = np.argsort(g_new, kind="stable")
        g_sorted = g_new[order]
        start = np.searchsorted(g_sorted, g_sorted, side="left")
        rank = np.empty(len(order), np.int64)
        rank[order] = np.arange(len(order)) - start
        dup = rank < old_count[g_new]
        keep[idx[new_pos[dup]]] = False
    return keep


# --- The store -----------------------------------------------------------------------------------

class ParquetStore:
    """Market data files under `root`, one per (exchange, symbol, kind, timeframe)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def path(self, exchange: str, symbol: str, kind: str, timeframe: str) -> Path:
        if kind not in KINDS:
            raise ConfigError(f"store key: kind {kind!r} is not one of {sorted(KINDS)}")
        return (self.root / _component("exchange", exchange) / _component("symbol", sanitise_symbol(symbol))
                / kind / (_component("timeframe", timeframe) + _SUFFIX))

    def write(self, exchange: str, symbol: str, kind: str, timeframe: str, data: MarketData) -> Path:
        """Validate `data` and replace the stored series with it atomically; returns the file path."""
        path = self.path(exchange, symbol, kind, timeframe)
        _check_kind(data, kind, path)
        validate(data, f"{path} (data to write)")
        meta = {"exchange": exchange, "symbol": symbol, "timeframe": timeframe}
        _atomic_write(to_table(data, meta), path)
        return path

    def append(self, exchange: str, symbol: str, kind: str, timeframe: str, data: MarketData) -> int:
        """Merge `data` into the stored series (see `merge`); returns how many rows the file gained."""
        path = self.path(exchange, symbol, kind, timeframe)
        _check_kind(data, kind, path)
        validate(data, f"{path} (data to append)")
        old = self.read(exchange, symbol, kind, timeframe) if path.exists() else None
        if old is None:
            self.write(exchange, symbol, kind, timeframe, data)
            return len(data)
        merged = merge(old, data)
        if merged is old:
            return 0
        self.write(exchange, symbol, kind, timeframe, merged)
        return len(merged) - len(old)

    def read(self, exchange: str, symbol: str, kind: str, timeframe: str) -> MarketData:
        """The stored series; FileNotFoundError if there is none, DataError if the file is damaged."""
        path = self.path(exchange, symbol, kind, timeframe)
        return read_file(path, kind)

    def exists(self, exchange: str, symbol: str, kind: str, timeframe: str) -> bool:
        return self.path(exchange, symbol, kind, timeframe).exists()

    def last_ts(self, exchange: str, symbol: str, kind: str, timeframe: str) -> int | None:
        """Timestamp (ms) of the last stored row, None when nothing is stored."""
        last = self.last_row(exchange, symbol, kind, timeframe)
        return None if last is None else int(last["ts"])

    def first_ts(self, exchange: str, symbol: str, kind: str, timeframe: str) -> int | None:
        """Timestamp (ms) of the first stored row, None when nothing is stored."""
        path = self.path(exchange, symbol, kind, timeframe)
        if not path.exists():
            return None
        f = pq.ParquetFile(path)
        for i in range(f.num_row_groups):
            ts = f.read_row_group(i, columns=["ts"]).column("ts")
            if len(ts):
                return int(ts[0].as_py())
        return None

    def last_row(self, exchange: str, symbol: str, kind: str, timeframe: str) -> dict | None:
        """The last stored row as {column: scalar} (book levels omitted), None when nothing is stored.

        Reads only the file's last non-empty row group, so resuming a long download stays cheap.
        """
        path = self.path(exchange, symbol, kind, timeframe)
        if not path.exists():
            return None
        f = pq.ParquetFile(path)
        columns = [c for c in KINDS[kind].columns if c in ("ts", "id")]
        for i in reversed(range(f.num_row_groups)):
            t = f.read_row_group(i, columns=columns)
            if t.num_rows:
                return {c: t.column(c)[-1].as_py() for c in columns}
        return None

    def list(self) -> list[StoreKey]:
        """Every stored series, sorted; temporary files of unfinished writes are not listed."""
        keys = []
        if not self.root.is_dir():
            return keys
        for path in self.root.glob(f"*/*/*/*{_SUFFIX}"):
            kind = path.parent.name
            if kind in KINDS and not path.name.startswith(".") and path.is_file():
                keys.append(StoreKey(path.parents[2].name, path.parents[1].name, kind, path.name[:-len(_SUFFIX)]))
        return sorted(keys, key=lambda k: (k.exchange, k.symbol, k.kind, k.timeframe))


def read_file(path: Path, kind: str | None = None) -> MarketData:
    """Read and validate one store file (any canonical bot4jax Parquet file)."""
    source = str(path)
    try:
        table = pq.read_table(path)
    except FileNotFoundError:
        raise
    except (pa.ArrowException, OSError) as e:
        raise DataError(source, f"not a readable Parquet file: {e}") from None
    stored = table_kind(table, source)
    if kind is not None and stored != kind:
        raise DataError(source, f"holds {stored}, not {kind}")
    data = from_table(table, stored, source)
    validate(data, source)
    return data


def _check_kind(data, kind: str, path: Path) -> None:
    if not isinstance(data, KINDS[kind]):
        raise DataError(str(path), f"cannot store {type(data).__name__} under kind '{kind}'")


def _atomic_write(table: pa.Table, path: Path) -> None:
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(folder, path.name)
    tmp = folder / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        with open(tmp, "wb") as f:
            pq.write_table(table, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    # The rename is durable only once the folder entry is on disk.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # platforms that cannot open a folder (Windows): rename is as durable as it gets
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove_stale_temps(folder: Path, name: str) -> None:
    """Delete temporary files of `name` left by writers that no longer run."""
    for p in folder.iterdir():
        m = _TMP.match(p.name)
        if m and m["name"] == name and not _alive(int(m["pid"])):
            p.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # our own leftovers (an earlier write that raised) are stale too
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
