"""Load market data files into Bars, Trades or Book: `load(path)` and `load_checked(path)`.

Formats, told by the extension and checked against the contents (gzip is recognised by its magic):
- `.json[.gz]`: freqtrade candles `[[ts, open, high, low, close, volume], ...]`; freqtrade trades
  `[[ts, id, type, side, price, amount, cost], ...]`; a list of records keyed by column name (e.g.
  full ccxt trade dicts); pandas "columns" (`{"date": {"0": ts, ...}, "open": {...}}`), "index" and
  "split" layouts.
- `.csv[.gz]` (also `.tsv`, `.txt`): one header row of column names (after an optional one-field
  preamble line such as a vendor's URL), then data rows. The Binance historical depth layout
  (`symbol,timestamp,first_update_id,last_update_id,side,update_type,price,qty,pu`) loads as a Book:
  each snapshot (`snap` rows) is one row, each later diff message one more (see `binance_ws.replay`).
- `.parquet` / `.feather`: columns named as in the types or the usual names below. The ParquetStore's
  files (schema metadata `bot4jax.kind`) hold canonical columns and int64 ms timestamps taken as is;
  a Book's (n, levels) arrays are list columns.
- `.jsonl[.gz]`: Binance websocket captures (`binance_ws`): kind "trades" (default) or "book".

Column names match case-insensitively, ignoring punctuation and a bracketed unit ("Open Time",
"timestamp(ms)", "Volume BTC" -> open_time, timestamp, volume_btc):
    time    ts, timestamp, unix, time, open_time, datetime, date, ... (a numeric one beats a date string)
    bars    open, high, low, close, volume; or "volume <ccy>" columns: the base currency's one (the
            currency the symbol column starts with, else the first such column)
    trades  price; amount | qty | quantity | size; side (buy/sell, b/s, +1/-1) or a buyer-is-maker
            flag (m, is_buyer_maker: true => the seller took liquidity => -1); optional integer id
Numeric timestamps are read value by value from their magnitude |t|: < 1e11 seconds, < 1e14
milliseconds, < 1e17 microseconds, else nanoseconds (so ms epochs before 1973-03 are misread), and
become int64 ms UTC. Date strings are UTC unless they carry an offset: ISO 8601, `YYYY-MM-DD`,
CryptoDataDownload's `2020-11-20 07-AM` and the other layouts in `_DATE_FORMATS`.

Order: a file wholly in descending time order is turned ascending. For bars and books rows sharing a
timestamp keep their file order, so validation keeps the first of a duplicated pair as the file lists
it; a descending trade file is simply reversed (trades within one millisecond come out oldest first).
Any other disorder is reported by `validate`.

Errors: anything malformed raises DataError naming the file, the 1-based data row (the first line
after a CSV header is row 1, the first element of a JSON list is row 1) and the field. `repair=True`
drops the rows that fail to parse or validate and the Repair counts them per reason. Depth files are
never repaired level by level (a dropped level would corrupt every later book row): only whole book
rows that fail validation are dropped.
"""
from __future__ import annotations

import csv
import gzip
import io
import json
import logging
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bot4jax.data.binance_ws import capture_book, capture_trades, depth_rows_book
from bot4jax.data.columns import (
    is_number, lower_strings, maker_to_side, object_array, to_float, to_ids,
    to_ms, to_side,
)
from bot4jax.data.types import Bars, Book, Repair, Trades, take, validate
from bot4jax.errors import ConfigError, DataError

log = logging.getLogger("bot4jax.data")

KINDS = {"bars": Bars, "trades": Trades, "book": Book}
OPTIONS = {"levels": 10}  # option -> default; levels: book depth kept (top levels per side)

_TIME = ("ts", "timestamp", "unix", "unix_timestamp", "time", "open_time", "transact_time",
         "trade_time", "datetime", "date_time", "date")
_OPEN, _HIGH, _LOW, _CLOSE = ("open", "o"), ("high", "h"), ("low", "l"), ("close", "c")
_VOLUME = ("volume", "vol", "base_volume", "volume_base", "volumefrom", "volume_from")
_PRICE = ("price", "px", "trade_price")
_AMOUNT = ("amount", "qty", "quantity", "size", "base_amount", "base_qty")
_SIDE = ("side", "taker_side", "aggressor_side")
_MAKER = ("m", "is_buyer_maker", "isbuyermaker", "buyer_is_maker", "buyer_maker")
_ID = ("id", "trade_id", "tradeid", "tid", "agg_trade_id", "aggtradeid")
_BOOK = ("bid_px", "bid_sz", "ask_px", "ask_sz")
_DEPTH = ("first_update_id", "last_update_id", "update_type", "side", "price", "qty")
_FT_CANDLE = ("ts", "open", "high", "low", "close", "volume")
_FT_TRADE = ("ts", "id", "type", "side", "price", "amount", "cost")

_REPAIR_HINT = "; pass repair=True (--repair) to drop bad rows"


def load(path, kind: str | None = None, repair: bool = False, **options) -> Bars | Trades | Book:
    """Read a market data file (format detected) into Bars, Trades or Book, validated.

    kind: "bars" | "trades" | "book" where a file could be read as more than one (None: guessed
    from the columns; a websocket capture gives trades). options: levels (int, default 10): book
    levels kept per side. With repair=True bad rows are dropped and the drop is logged at WARNING on
    the "bot4jax.data" logger; use `load_checked` to get the Repair itself.
    """
    data, report = load_checked(path, kind, repair, **options)
    if report.dropped:
        log.warning("%s", report)
    return data


def load_checked(path, kind: str | None = None, repair: bool = False,
                 **options) -> tuple[Bars | Trades | Book, Repair]:
    """`load`, returning (data, Repair): what was dropped and why (nothing unless repair=True)."""
    if kind is not None and kind not in KINDS:
        raise ConfigError(f"kind must be one of {', '.join(KINDS)} or None; got {kind!r}")
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise TypeError(f"unknown load option(s) {unknown}; known: {sorted(OPTIONS)}")
    levels = options.get("levels", OPTIONS["levels"])
    if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)) or levels < 1:
        raise ConfigError(f"levels must be a positive integer; got {levels!r}")
    source = str(path)
    raw = _read(path, source)
    fmt = _format(Path(path), raw, source)
    if fmt == "jsonl":
        return _finish(_capture(raw, source, kind, int(levels)), source, repair)
    table = {"csv": _csv_table, "json": _json_table}.get(fmt, _arrow_table)(raw, source, fmt)
    if all(name in table.index for name in _DEPTH):
        parsed = _depth_book(table, source, kind, int(levels))
    else:
        parsed = _from_table(table, source, kind)
    return _finish(parsed, source, repair)


# ---------------------------------------------------------------------------------------------------
# Bytes and format


def _read(path, source: str) -> bytes:
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(source, f"corrupt gzip data: {e}") from None
    if not raw.strip():
        raise DataError(source, "empty file")
    return raw


def _format(path: Path, raw: bytes, source: str) -> str:
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    ext = suffixes[-1] if suffixes else ""
    by_ext = {".json": "json", ".jsonl": "jsonl", ".csv": "csv", ".tsv": "csv", ".txt": "csv",
              ".parquet": "parquet", ".pq": "parquet", ".feather": "feather", ".arrow": "feather"}
    by_magic = "parquet" if raw[:4] == b"PAR1" else "feather" if raw[:6] == b"ARROW1" else None
    fmt = by_ext.get(ext)
    if fmt in ("parquet", "feather") and by_magic != fmt:
        raise DataError(source, f"not a {fmt} file (its magic bytes are missing)")
    if fmt is None:  # unknown extension: look at the contents
        head = raw[:200].lstrip()
        fmt = by_magic or ("jsonl" if re.match(rb"\d+ \{", head) else
                           "json" if head[:1] in (b"[", b"{") else
                           "csv" if b"," in head.split(b"\n", 1)[0] else None)
    if fmt is None:
        raise DataError(source, "unknown format: expected .json, .json.gz, .csv, .csv.gz, .parquet, "
                        ".feather or a .jsonl.gz websocket capture")
    return fmt


def _decode(raw: bytes, source: str) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(source, f"not UTF-8 text (byte {e.start}, line {line} of the file)") from None


def _norm(name) -> str:
    s = re.sub(r"\(.*?\)|\[.*?\]", " ", str(name).lower())
    return re.sub(r"[^0-9a-z]+", "_", s).strip("_")


# ---------------------------------------------------------------------------------------------------
# Tables: a file's columns before conversion


@dataclass
class _Problem:
    """Rows that failed to parse: field (as the file names it), reason, source rows, what was there."""

    field: str | None
    reason: str
    rows: np.ndarray
    shown: list
    key: str | None = None  # reason key in the Repair; default "<field> <reason>"


def _width_problems(bad: list[tuple[int, int]], names, width: int) -> list[_Problem]:
    """One problem per row (row, fields found) whose field count differs from the header's."""
    return [_Problem(names[found] if 0 <= found < width else None, "wrong number of fields",
                     np.array([row]), [f"{found} fields, expected {width}" if found >= 0 else "not a list"],
                     key="row wrong number of fields")
            for row, found in bad]


class _Table:
    """Named columns of n rows, fetched on demand; `rows` are the source row numbers (1-based)."""

    def __init__(self, names, getter, n: int, rows=None, problems=(), kind=None, exact_ms=False):
        self.names = [str(x) for x in names]
        self.index: dict[str, int] = {}
        for j, name in enumerate(self.names):
            self.index.setdefault(_norm(name), j)
        self._get, self.n = getter, n
        self.rows = np.arange(1, n + 1) if rows is None else np.asarray(rows, np.int64)
        self.problems, self.kind, self.exact_ms = list(problems), kind, exact_ms
        self._cache: dict[int, np.ndarray] = {}

    def find(self, aliases) -> int | None:
        return next((self.index[a] for a in aliases if a in self.index), None)

    def get(self, j: int) -> np.ndarray:
        if j not in self._cache:
            self._cache[j] = self._get(j)
        return self._cache[j]


def _csv_table(raw: bytes, source: str, _fmt) -> _Table:
    text = _decode(raw, source)
    head = text.split("\n", 20)[:20]
    start = next((i for i, line in enumerate(head) if any(c in line for c in ",;\t|")), None)
    if start is None:
        raise DataError(source, "no CSV header found (a line of comma-separated column names)")
    delim = max(",;\t|", key=head[start].count)
    reader = csv.reader(io.StringIO(text), delimiter=delim)
    for _ in range(start):
        next(reader)
    names = [h.strip() for h in next(reader)]
    header_line = reader.line_num
    if all(is_number(h) for h in names if h):
        raise DataError(source, "the first line holds numbers, not column names: a CSV needs a header "
                        "such as ts,open,high,low,close,volume", row=1)
    body = list(reader)
    lines_after_header = text.count("\n") + (not text.endswith("\n")) - header_line
    if len(body) == lines_after_header:  # one line per record: row i is line i after the header
        nums = np.arange(1, len(body) + 1)
    else:  # quoted line breaks or bare \r line ends: read again, asking the reader for line numbers
        reader = csv.reader(io.StringIO(text), delimiter=delim)
        for _ in range(start + 1):
            next(reader)
        nums = np.array([reader.line_num - header_line for _ in reader], np.int64)
    width = len(names)
    widths = np.fromiter(map(len, body), np.int64, len(body))
    odd = np.flatnonzero(widths != width)
    blank = [i for i in odd if widths[i] == 0 or widths[i] == 1 and not body[i][0].strip()]
    bad = [(int(nums[i]), int(widths[i])) for i in np.setdiff1d(odd, blank)]
    rows = body
    if len(odd):
        keep = np.ones(len(body), bool)
        keep[odd] = False
        rows, nums = [r for r, k in zip(body, keep) if k], nums[keep]
    if not rows and not bad:
        raise DataError(source, "no data rows after the header")
    return _Table(names, lambda j: object_array([r[j] for r in rows]), len(rows), nums,
                  _width_problems(bad, names, width))


def _json_table(raw: bytes, source: str, _fmt) -> _Table:
    text = _decode(raw, source)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(source, f"invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}",
                        row=_json_row_at(text, e.pos)) from None
    if isinstance(doc, dict) and "columns" in doc and "data" in doc:  # pandas orient="split"
        return _rows_table(doc["data"], source, doc["columns"])
    if isinstance(doc, dict) and doc and all(isinstance(v, dict) for v in doc.values()):
        if any(_norm(k) in _TIME + _PRICE + _OPEN for k in doc):  # pandas orient="columns"
            return _columns_table(doc, source)
        return _records_table(list(doc.values()), source)  # pandas orient="index"
    if isinstance(doc, list) and doc and isinstance(doc[0], list):
        return _rows_table(doc, source, None)
    if isinstance(doc, list) and doc and isinstance(doc[0], dict):
        return _records_table(doc, source)
    if isinstance(doc, list) and not doc:
        raise DataError(source, "no rows (an empty JSON list)")
    raise DataError(source, "unknown JSON layout: expected a list of rows or records, or a pandas "
                    "'columns' / 'split' / 'index' object")


def _json_row_at(text: str, pos: int) -> int | None:
    """1-based element of the top-level JSON list in which character `pos` lies (error path only)."""
    if not text.lstrip().startswith("["):
        return None
    depth, commas = 0, 0
    for m in re.finditer(r'"(?:[^"\\]|\\.)*"|[\[\]{},]', text[:pos]):
        tok = m.group()
        if tok in "[{":
            depth += 1
        elif tok in "]}":
            depth -= 1
        elif tok == "," and depth == 1:
            commas += 1
    return commas + 1 if depth >= 1 else None




def _rows_table(doc, source: str, names) -> _Table:
    if not isinstance(doc, list) or not doc:
        raise DataError(source, "no rows")
    if names is None:  # freqtrade: candles or trades, told apart by the row's width and side field
        first = doc[0]
        if len(first) == 6:
            names = _FT_CANDLE
        elif len(first) == 7 and isinstance(first[3], str):
            names = _FT_TRADE
        else:
            raise DataError(source, f"unknown row layout ({len(first)} fields): expected freqtrade "
                            "candles [ts, open, high, low, close, volume] or trades "
                            "[ts, id, type, side, price, amount, cost]", row=1)
    width = len(names)
    bad = [i for i, r in enumerate(doc) if type(r) is not list or len(r) != width]
    problems, rows, nums = [], doc, None
    if bad:
        problems = _width_problems([(i + 1, len(doc[i]) if isinstance(doc[i], list) else -1) for i in bad],
                                   names, width)
        keep = np.ones(len(doc), bool)
        keep[bad] = False
        rows = [r for r, k in zip(doc, keep) if k]
        nums = np.flatnonzero(keep) + 1
    columns = list(zip(*rows)) if rows else [()] * width
    return _Table(names, lambda j: object_array(columns[j]), len(rows), nums, problems)


def _records_table(doc: list, source: str) -> _Table:
    names = list(doc[0].keys())
    bad = [i for i, r in enumerate(doc) if type(r) is not dict]
    rows, nums, problems = doc, None, []
    if bad:
        problems.append(_Problem(None, "not a JSON object", np.array(bad) + 1,
                                 [f"{doc[i]!r:.40}" for i in bad]))
        rows = [r for r in doc if type(r) is dict]
        nums = np.array([i + 1 for i, r in enumerate(doc) if type(r) is dict])
    return _Table(names, lambda j: object_array([r.get(names[j]) for r in rows]), len(rows), nums,
                  problems)


def _columns_table(doc: dict, source: str) -> _Table:
    keys = list(next(iter(doc.values())).keys())
    if all(k.isdigit() for k in keys):
        keys.sort(key=int)
    names = list(doc.keys())
    return _Table(names, lambda j: object_array([doc[names[j]].get(k) for k in keys]), len(keys))


def _arrow_table(raw: bytes, source: str, fmt: str) -> _Table:
    import pyarrow as pa  # imported here: `import bot4jax.data` stays light
    import pyarrow.feather as feather
    import pyarrow.parquet as pq

    try:
        buf = pa.BufferReader(raw)
        table = pq.read_table(buf) if fmt == "parquet" else feather.read_table(buf)
    except (pa.ArrowException, OSError) as e:
        raise DataError(source, f"not a readable {fmt} file: {e}") from None
    meta = table.schema.metadata or {}
    kind = meta.get(b"bot4jax.kind", b"").decode() or None
    if kind is not None and kind not in KINDS:
        raise DataError(source, f"unknown bot4jax.kind {kind!r} in the file's metadata")
    return _Table(table.column_names, lambda j: _arrow_column(table.column(j), source, table.column_names[j]),
                  table.num_rows, kind=kind, exact_ms=kind is not None)


def _arrow_column(col, source: str, name: str) -> np.ndarray:
    """NumPy view of one Arrow column: numbers (nulls as NaN), datetime64, objects, or (n, k) lists."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = col.type
    if pa.types.is_dictionary(t):
        col, t = col.cast(t.value_type), t.value_type
    if not (pa.types.is_fixed_size_list(t) or pa.types.is_list(t) or pa.types.is_large_list(t)):
        return np.asarray(col.to_numpy())
    arr = col.combine_chunks()
    if arr.null_count:
        row = int(np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))[0]) + 1
        raise DataError(source, "missing list value", row=row, field=name)
    lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
    if len(lengths) and (lengths != lengths[0]).any():
        row = int(np.flatnonzero(lengths != lengths[0])[0]) + 1
        raise DataError(source, f"list of {lengths[row - 1]} values; row 1 has {lengths[0]}", row=row,
                        field=name)
    flat = pc.list_flatten(arr).to_numpy(zero_copy_only=False)
    return np.asarray(flat, np.float64).reshape(len(arr), int(lengths[0]) if len(lengths) else 0)


# ---------------------------------------------------------------------------------------------------
# Tables to data


@dataclass
class _Parsed:
    """Data of every row that has values (placeholders where a field failed to parse)."""

    data: Bars | Trades | Book
    rows: np.ndarray  # source row number of each element of data
    problems: list  # _Problem, including rows not in data (e.g. a wrong number of fields)
    bad: np.ndarray  # rows of data that failed to parse
    rows_in: int


class _Converter:
    """Converts table columns, collecting the rows that fail as _Problems."""

    def __init__(self, table: _Table, source: str):
        self.t, self.source = table, source
        self.problems = list(table.problems)
        self.bad = np.zeros(table.n, bool)

    def need(self, aliases, field: str, what: str) -> int:
        j = self.t.find(aliases)
        if j is None:
            raise DataError(self.source, f"missing required column '{field}' ({what}); the file has "
                            f"columns {self.t.names}", field=field)
        return j

    def __call__(self, j: int, convert, *args) -> np.ndarray:
        values = self.t.get(j)
        out, bad, reason = convert(values, *args)
        if bad is not None and bad.any():
            self.problems.append(_Problem(self.t.names[j], reason, self.t.rows[bad],
                                          values[bad].tolist()))
            self.bad |= bad
        return out

    def time(self) -> np.ndarray:
        candidates = [self.t.index[a] for a in _TIME if a in self.t.index]
        if not candidates:
            raise DataError(self.source, "missing a time column (ts, timestamp, unix, time, open_time, "
                            f"datetime or date); the file has columns {self.t.names}", field="ts")
        j = next((j for j in candidates if _looks_numeric(self.t.get(j))), candidates[0])
        return self(j, to_ms, self.t.exact_ms)

    def parsed(self, data) -> _Parsed:
        return _Parsed(data, self.t.rows, self.problems, self.bad,
                       self.t.n + sum(len(p.rows) for p in self.t.problems))


def _looks_numeric(values: np.ndarray) -> bool:
    """Mostly numbers (or datetimes): a time column of epoch numbers, not of date strings."""
    if values.dtype.kind in "iufM":
        return True
    _, bad, _ = to_float(values)
    return bad is None or 2 * bad.sum() <= len(values)


def _guess_kind(t: _Table, source: str) -> str:
    if t.kind:
        return t.kind
    # Decided on part of the columns, so that a missing one is then named in the error.
    if sum(t.find(a) is not None for a in (_OPEN, _HIGH, _LOW, _CLOSE)) >= 2:
        return "bars"
    if t.find(_PRICE) is not None:
        return "trades"
    if any(name in t.index for name in _BOOK):
        return "book"
    raise DataError(source, "cannot tell what this file holds: bars need columns time, open, high, "
                    "low, close, volume; trades need time, price, amount and side; the file has "
                    f"columns {t.names}")


def _volume(c: _Converter) -> int:
    j = c.t.find(_VOLUME)
    if j is not None:
        return j
    per_ccy = [(c.t.index[n], n[len("volume_"):]) for n in c.t.index if n.startswith("volume_")]
    if not per_ccy:
        return c.need(_VOLUME, "volume", "base-currency volume")
    sym = c.t.find(("symbol", "pair", "market", "instrument"))
    if sym is not None and c.t.n:
        symbol = re.sub(r"[^a-z0-9]", "", str(c.t.get(sym)[0]).lower())
        for j, ccy in per_ccy:
            if symbol.startswith(ccy.replace("_", "")):
                return j
    return per_ccy[0][0]  # CryptoDataDownload lists the base currency's volume first


def _from_table(t: _Table, source: str, kind: str | None) -> _Parsed:
    guessed = _guess_kind(t, source)
    if t.kind and kind and kind != t.kind:
        raise DataError(source, f"this file holds {t.kind}, not {kind}")
    kind = kind or guessed
    c = _Converter(t, source)
    ts = c.time()
    if kind == "bars":
        cols = [c(c.need(a, f, "bars"), to_float) for a, f in
                ((_OPEN, "open"), (_HIGH, "high"), (_LOW, "low"), (_CLOSE, "close"))]
        data = Bars(ts, *cols, c(_volume(c), to_float))
    elif kind == "trades":
        price = c(c.need(_PRICE, "price", "trade price"), to_float)
        amount = c(c.need(_AMOUNT, "amount", "trade size in the base currency"), to_float)
        j = c.t.find(_SIDE)
        if j is not None:
            side = c(j, to_side)
        else:
            side = c(c.need(_MAKER, "side", "buy/sell, or a buyer-is-maker flag m"), maker_to_side)
        j = c.t.find(_ID)
        ids = to_ids(t.get(j)) if j is not None else None
        if j is not None and ids is None:
            log.info("%s: trade ids in column '%s' are not integers; Trades.id is -1", source, t.names[j])
        data = Trades(ts, price, amount, side, ids)
    else:
        cols = [c(c.need((f,), f, "book levels"), to_float) for f in _BOOK]
        data = Book(ts, *cols)
    return c.parsed(data)


def _depth_book(t: _Table, source: str, kind: str | None, levels: int) -> _Parsed:
    """Binance historical depth CSV -> Book: a row per snapshot and per later diff message."""
    if kind not in (None, "book"):
        raise DataError(source, f"this is a Binance depth file (order book updates), not {kind}")
    c = _Converter(t, source)
    ts = c.time()
    fu, lu = c(t.index["first_update_id"], _to_int), c(t.index["last_update_id"], _to_int)
    pu = c(t.index["pu"], _to_int) if "pu" in t.index else np.full(t.n, -1, np.int64)
    price, qty = c(t.index["price"], to_float), c(t.index["qty"], to_float)
    side, utype = lower_strings(t.get(t.index["side"])), lower_strings(t.get(t.index["update_type"]))
    for name, values, allowed in (("side", side, ("a", "b")), ("update_type", utype, ("snap", "set"))):
        bad = ~np.isin(values, allowed)
        if bad.any():
            c.problems.append(_Problem(t.names[t.index[name]], f"not one of {allowed}", t.rows[bad],
                                       values[bad].tolist()))
    if c.problems:  # never repaired: a dropped level would corrupt every later book row
        raise _first_problem(c.problems, source, hint="")
    book, rows = depth_rows_book(source, t.rows, ts, fu, lu, pu, side == "b", utype == "snap", price, qty,
                                 levels, field=t.names[t.index["update_type"]])
    return _Parsed(book, rows, [], np.zeros(len(book), bool), len(book))


def _to_int(values: np.ndarray):
    if values.dtype.kind in "iu":
        return values.astype(np.int64), None, ""
    try:
        return np.char.strip(values.astype(str)).astype(np.int64), None, ""
    except (ValueError, OverflowError):
        pass
    out, bad = np.full(len(values), -1, np.int64), np.zeros(len(values), bool)
    for i, v in enumerate(values.tolist()):
        try:
            out[i] = int(v)
        except (TypeError, ValueError, OverflowError):
            bad[i] = True
    return out, bad, "not an integer"


def _capture(raw: bytes, source: str, kind: str | None, levels: int) -> _Parsed:
    lines = _decode(raw, source).splitlines()
    if kind in (None, "trades"):
        data, rows = capture_trades(lines, source)
    elif kind == "book":
        data, rows = capture_book(lines, source, levels)
    else:
        raise DataError(source, "a websocket capture holds trades and book updates, not bars: load it "
                        "with kind='trades' and aggregate")
    return _Parsed(data, rows, [], np.zeros(len(data), bool), len(data))


# ---------------------------------------------------------------------------------------------------
# Order, validation and the repair report


def _first_problem(problems: list, source: str, hint: str = _REPAIR_HINT) -> DataError:
    p = min(problems, key=lambda q: q.rows[0])
    return DataError(source, f"{p.reason} ({p.shown[0]!r}){hint}", row=int(p.rows[0]), field=p.field)


def _ascending(data, rows: np.ndarray):
    """Turn a wholly descending series ascending (see the module docstring for ties)."""
    d = np.diff(data.ts)
    if not (len(d) and (d <= 0).all() and (d < 0).any()):
        return data, rows
    order = np.arange(len(rows))[::-1] if isinstance(data, Trades) else np.argsort(data.ts, kind="stable")
    return take(data, order), rows[order]


def _finish(p: _Parsed, source: str, repair: bool):
    data, rows, reasons, dropped = p.data, p.rows, {}, 0
    if p.problems:
        if not repair:
            raise _first_problem(p.problems, source)
        for q in p.problems:
            key = q.key or f"{q.field or 'row'} {q.reason}"
            reasons[key] = reasons.get(key, 0) + len(q.rows)
        dropped = len(np.unique(np.concatenate([q.rows for q in p.problems])))
        data, rows = take(data, ~p.bad), rows[~p.bad]
    data, rows = _ascending(data, rows)
    data, report = validate(data, source, repair, rows)
    for key, count in report.reasons.items():
        reasons[key] = reasons.get(key, 0) + count
    return data, Repair(source, p.rows_in, dropped + report.dropped, reasons)
