"""Loaders on small files written in tmp_path: every format, timestamp units and date layouts, order
handling, and malformed input raising DataError with the file, row and field."""
import gzip
import json
import logging
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot4jax.data import Bars, Book, DataError, Repair, Trades, load, load_checked
from bot4jax.errors import ConfigError

T0 = 1_605_855_600_000  # 2020-11-20 07:00 UTC in ms
H = 3_600_000
CANDLES = [[T0, 10.0, 12.0, 9.0, 11.0, 5.0], [T0 + H, 11.0, 11.5, 10.5, 11.2, 0.0],
           [T0 + 2 * H, 11.2, 13.0, 11.0, 12.5, 7.25]]


def write(path: Path, content, gz: bool = False) -> Path:
    data = content.encode() if isinstance(content, str) else content
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def assert_bars(bars, rows=CANDLES):
    assert isinstance(bars, Bars)
    expect = np.array(rows, dtype=float)
    np.testing.assert_array_equal(bars.ts, expect[:, 0].astype(np.int64))
    for j, name in enumerate(Bars.columns[1:], 1):
        np.testing.assert_array_equal(getattr(bars, name), expect[:, j])


def csv_bars(time_header: str, times, rows=CANDLES) -> str:
    lines = [f"{time_header},Open,High,Low,Close,Volume"]
    lines += [f"{t},{r[1]},{r[2]},{r[3]},{r[4]},{r[5]}" for t, r in zip(times, rows)]
    return "\n".join(lines) + "\n"


def error_of(path, **kw) -> DataError:
    with pytest.raises(DataError) as info:
        load(path, **kw)
    assert info.value.source == str(path) and str(path) in str(info.value)
    return info.value


# -- JSON ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("gz", [False, True])
def test_freqtrade_candles_json(tmp_path, gz):
    path = write(tmp_path / ("c.json.gz" if gz else "c.json"), json.dumps(CANDLES), gz)
    assert_bars(load(path))


def test_pandas_json_layouts(tmp_path):
    names = ["date", "open", "high", "low", "close", "volume"]
    columns = {n: {str(i): r[j] for i, r in enumerate(CANDLES)} for j, n in enumerate(names)}
    columns = {n: dict(reversed(list(v.items()))) for n, v in columns.items()}  # index order restored
    split = {"columns": names, "index": [0, 1, 2], "data": CANDLES}
    index = {str(i): dict(zip(names, r)) for i, r in enumerate(CANDLES)}
    records = [dict(zip(names, r)) for r in CANDLES]
    for name, doc in [("columns", columns), ("split", split), ("index", index), ("records", records)]:
        assert_bars(load(write(tmp_path / f"{name}.json", json.dumps(doc))))


def test_freqtrade_trades_json(tmp_path):
    rows = [[T0, "17", None, "sell", 0.5, 2.0, 1.0], [T0, "18", None, "buy", 0.6, 1.0, 0.6],
            [T0 + 5, "19", "limit", "buy", 0.55, 3.0, 1.65]]
    trades = load(write(tmp_path / "t.json.gz", json.dumps(rows), gz=True))
    assert isinstance(trades, Trades)
    np.testing.assert_array_equal(trades.ts, [T0, T0, T0 + 5])
    np.testing.assert_array_equal(trades.side, [-1, 1, 1])
    np.testing.assert_array_equal(trades.id, [17, 18, 19])
    np.testing.assert_array_equal(trades.price, [0.5, 0.6, 0.55])
    np.testing.assert_array_equal(trades.amount, [2.0, 1.0, 3.0])
    with pytest.raises(DataError, match="missing required column 'open'"):
        load(tmp_path / "t.json.gz", kind="bars")


def test_ccxt_trade_dicts_json(tmp_path):
    trades = [{"info": {"a": 7, "m": m}, "timestamp": T0 + i, "datetime": "ignored", "symbol": "XRP/ETH",
               "id": str(7 + i), "order": None, "type": None, "side": "sell" if m else "buy",
               "price": 0.001 + i / 1e5, "amount": 10.0 + i, "cost": 0.0, "fee": None}
              for i, m in enumerate([True, False, False])]
    t = load(write(tmp_path / "ccxt.json", json.dumps(trades)))
    np.testing.assert_array_equal(t.side, [-1, 1, 1])
    np.testing.assert_array_equal(t.id, [7, 8, 9])
    np.testing.assert_array_equal(t.ts, T0 + np.arange(3))


# -- CSV -------------------------------------------------------------------------------------------

SECONDS = [T0 // 1000 + k * 3600 for k in range(3)]


@pytest.mark.parametrize("header,times", [
    ("timestamp", [T0 + k * H for k in range(3)]),
    ("Open Time", [T0 + k * H for k in range(3)]),
    ("timestamp(ms)", [T0 + k * H for k in range(3)]),
    ("unix", SECONDS),
    ("Unix Timestamp", [f"{s}.0" for s in SECONDS]),
    ("time", [s * 1_000_000 for s in SECONDS]),  # microseconds
    ("ts", [s * 1_000_000_000 for s in SECONDS]),  # nanoseconds
    ("date", ["2020-11-20 07:00:00", "2020-11-20 08:00:00", "2020-11-20 09:00:00"]),
    ("Date", ["2020-11-20T07:00:00Z", "2020-11-20T08:00:00.000Z", "2020-11-20T09:00:00Z"]),
    ("datetime", ["2020-11-20T09:00:00+02:00", "2020-11-20T10:00:00+02:00", "2020-11-20T11:00:00+02:00"]),
    ("date", ["2020-11-20 07-AM", "2020-11-20 08-AM", "2020-11-20 09-AM"]),
    ("date", ["2020/11/20 07:00", "2020/11/20 08:00", "2020/11/20 09:00"]),
])
def test_csv_time_columns(tmp_path, header, times):
    assert_bars(load(write(tmp_path / "b.csv", csv_bars(header, times))))


def test_csv_date_only_and_am_pm_hours(tmp_path):
    days = load(write(tmp_path / "d.csv", csv_bars("date", ["2020-11-20", "2020-11-21", "2020-11-22"])))
    midnight = T0 - 7 * H
    np.testing.assert_array_equal(days.ts, midnight + 24 * H * np.arange(3))
    hours = load(write(tmp_path / "h.csv", csv_bars("date", ["2020-11-20 12-AM", "2020-11-20 12-PM",
                                                             "2020-11-20 01-PM"])))
    np.testing.assert_array_equal(hours.ts, [midnight, midnight + 12 * H, midnight + 13 * H])


def test_mixed_units_in_one_column_are_read_per_value(tmp_path):
    times = [f"{SECONDS[0]}.0", str(T0 + H), str(SECONDS[2])]
    assert_bars(load(write(tmp_path / "mixed.csv", csv_bars("unix", times))))


def test_numeric_time_column_beats_date_string_column(tmp_path):
    text = "date,unix,symbol,open,high,low,close,Volume USDT,Volume BTC\n" + "".join(
        f"2001-01-01 0{k}-AM,{T0 + k * H},BTC/USDT,{r[1]},{r[2]},{r[3]},{r[4]},{r[5] * 100},{r[5]}\n"
        for k, r in enumerate(CANDLES))
    assert_bars(load(write(tmp_path / "both.csv", text)))  # also picks the base currency volume


def test_volume_per_currency_without_symbol_takes_the_first(tmp_path):
    text = "unix,open,high,low,close,Volume ETH,Volume BTC\n" + "".join(
        f"{T0 + k * H},{r[1]},{r[2]},{r[3]},{r[4]},{r[5]},{r[5] * 3}\n" for k, r in enumerate(CANDLES))
    assert_bars(load(write(tmp_path / "v.csv", text)))


@pytest.mark.parametrize("gz,delim", [(True, ","), (False, ";"), (False, "\t")])
def test_csv_gzip_and_delimiters(tmp_path, gz, delim):
    text = csv_bars("ts", [r[0] for r in CANDLES]).replace(",", delim)
    assert_bars(load(write(tmp_path / ("b.csv.gz" if gz else "b.csv"), text, gz)))


def test_csv_preamble_line_and_bom(tmp_path):
    text = "\ufeffhttps://www.CryptoDataDownload.com\n" + csv_bars("unix", SECONDS)
    assert_bars(load(write(tmp_path / "cdd.csv", text)))


def test_descending_csv_is_reversed(tmp_path):
    text = csv_bars("unix", SECONDS[::-1], CANDLES[::-1])
    data, rep = load_checked(write(tmp_path / "desc.csv", text))
    assert_bars(data)
    assert rep == Repair(str(tmp_path / "desc.csv"), 3)


def test_descending_csv_with_ties_keeps_the_first_row_in_the_file(tmp_path):
    newer = [T0 + 2 * H, 11.2, 13.0, 11.0, 12.5, 7.25]  # listed first, as CryptoDataDownload does
    older = [T0 + 2 * H, 11.2, 13.0, 11.0, 12.4, 6.0]
    rows = [newer, older, CANDLES[1], CANDLES[0]]
    path = write(tmp_path / "ties.csv", csv_bars("ts", [r[0] for r in rows], rows))
    e = error_of(path)
    assert (e.row, e.field) == (2, "ts") and "duplicate timestamp" in str(e)
    data, rep = load_checked(path, repair=True)
    assert_bars(data)  # the newer row (first in the file) is kept
    assert rep.dropped == 1 and rep.reasons == {"ts duplicate timestamp": 1}


def test_descending_trades_are_reversed_whole(tmp_path):
    text = "time,price,qty,side,id\n" + "".join(
        f"{t},{p},1,{s},{i}\n" for t, p, s, i in [(T0 + 5, 3, "buy", 13), (T0 + 5, 2, "sell", 12),
                                                   (T0, 1, "buy", 11)])
    t = load(write(tmp_path / "t.csv", text))
    np.testing.assert_array_equal(t.id, [11, 12, 13])
    np.testing.assert_array_equal(t.ts, [T0, T0 + 5, T0 + 5])


def test_misordered_csv_raises_with_the_file_row(tmp_path):
    times = [T0, T0 + 2 * H, T0 + H]
    e = error_of(write(tmp_path / "mis.csv", csv_bars("ts", times)))
    assert (e.row, e.field) == (3, "ts") and "goes back in time" in str(e)
    # mostly descending but not wholly: not reversed; the first row not after the one before it
    e = error_of(write(tmp_path / "mis2.csv", csv_bars("ts", [T0 + 2 * H, T0, T0 + H])))
    assert (e.row, e.field) == (2, "ts")


def test_errors_in_a_reversed_file_point_at_the_file_row(tmp_path):
    rows = [list(r) for r in CANDLES[::-1]]
    rows[1][5] = -1.0  # file row 2
    e = error_of(write(tmp_path / "desc.csv", csv_bars("ts", [r[0] for r in rows], rows)))
    assert (e.row, e.field) == (2, "volume") and "negative volume" in str(e)


@pytest.mark.parametrize("header,values,expect", [
    ("side", ["buy", "sell", "BUY"], [1, -1, 1]),
    ("Side", ["Buy", "Sell", "s"], [1, -1, -1]),
    ("side", ["b", "s", "B"], [1, -1, 1]),
    ("side", ["+1", "-1", "1"], [1, -1, 1]),
    ("m", ["true", "false", "True"], [-1, 1, -1]),
    ("is_buyer_maker", ["True", "False", "False"], [-1, 1, 1]),
    ("isBuyerMaker", ["1", "0", "0"], [-1, 1, 1]),
])
def test_csv_trade_sides(tmp_path, header, values, expect):
    text = f"time,price,quantity,{header}\n" + "".join(f"{T0 + i},1.5,2,{v}\n" for i, v in enumerate(values))
    t = load(write(tmp_path / "t.csv", text))
    np.testing.assert_array_equal(t.side, expect)
    np.testing.assert_array_equal(t.id, [-1, -1, -1])


@pytest.mark.parametrize("amount", ["amount", "qty", "size", "Quantity"])
def test_csv_trade_amount_names(tmp_path, amount):
    text = f"timestamp,price,{amount},side,trade_id\n{T0},2.5,0.25,sell,9\n"
    t = load(write(tmp_path / "t.csv", text))
    assert (t.ts[0], t.price[0], t.amount[0], t.side[0], t.id[0]) == (T0, 2.5, 0.25, -1, 9)


def test_kind_picks_the_reading(tmp_path):
    text = "time,price,amount,side,open,high,low,close,volume\n" + "".join(
        f"{r[0]},{r[4]},1,buy,{r[1]},{r[2]},{r[3]},{r[4]},{r[5]}\n" for r in CANDLES)
    path = write(tmp_path / "both.csv", text)
    assert_bars(load(path))
    t = load(path, kind="trades")
    np.testing.assert_array_equal(t.price, [r[4] for r in CANDLES])


# -- Parquet and Feather -----------------------------------------------------------------------------

def test_parquet_store_layout_bars_trades_book(tmp_path):
    bars = pa.table({"ts": pa.array([0, 60_000, 120_000], pa.int64()),  # exact ms, even near 0
                     **{c: [r[j] for r in CANDLES] for j, c in enumerate(Bars.columns[1:], 1)}})
    pq.write_table(bars.replace_schema_metadata({b"bot4jax.kind": b"bars"}), tmp_path / "b.parquet")
    b = load(tmp_path / "b.parquet")
    np.testing.assert_array_equal(b.ts, [0, 60_000, 120_000])
    np.testing.assert_array_equal(b.close, [r[4] for r in CANDLES])

    trades = pa.table({"ts": pa.array([T0, T0, T0 + 1], pa.int64()), "price": [1.0, 1.1, 1.2],
                       "amount": [1.0, 2.0, 3.0], "side": pa.array([1, -1, 1], pa.int8()),
                       "id": pa.array([5, 6, 7], pa.int64())})
    pq.write_table(trades.replace_schema_metadata({b"bot4jax.kind": b"trades"}), tmp_path / "t.parquet")
    t = load(tmp_path / "t.parquet")
    np.testing.assert_array_equal(t.side, [1, -1, 1])
    np.testing.assert_array_equal(t.id, [5, 6, 7])
    with pytest.raises(DataError, match="holds trades, not bars"):
        load(tmp_path / "t.parquet", kind="bars")

    n, k = 4, 3
    rng = np.random.default_rng(1)
    mid = 100 + rng.normal(0, 1, (n, 1))
    arrays = {"bid_px": mid - 0.1 - np.arange(k) * 0.1, "bid_sz": rng.uniform(1, 2, (n, k)),
              "ask_px": mid + 0.1 + np.arange(k) * 0.1, "ask_sz": rng.uniform(1, 2, (n, k))}
    arrays["ask_px"][2, 2], arrays["ask_sz"][2, 2] = np.nan, 0.0  # a missing level
    cols = {"ts": pa.array(T0 + 100 * np.arange(n), pa.int64())}
    cols.update({name: pa.FixedSizeListArray.from_arrays(pa.array(a.ravel()), k)
                 for name, a in arrays.items()})
    pq.write_table(pa.table(cols).replace_schema_metadata({b"bot4jax.kind": b"book"}), tmp_path / "k.parquet")
    book = load(tmp_path / "k.parquet")
    assert isinstance(book, Book) and book.levels == k
    for name, a in arrays.items():
        np.testing.assert_array_equal(getattr(book, name), a)


def test_reads_what_the_parquet_store_writes(tmp_path):
    from bot4jax.data.store import ParquetStore

    store = ParquetStore(tmp_path)
    rng = np.random.default_rng(3)
    n, k = 5, 4
    mid = 100 + rng.normal(0, 1, (n, 1))
    samples = [
        ("bars", "1h", Bars(*np.array(CANDLES).T)),
        ("trades", "tick", Trades(T0 + np.array([0, 0, 3, 9, 9]), rng.uniform(1, 2, n),
                                  rng.uniform(0.1, 1, n), [1, -1, -1, 1, 1], [10, 11, 12, 13, 14])),
        ("book", "tick", Book(T0 + 100 * np.arange(n), mid - 0.1 * np.arange(1, k + 1),
                              rng.uniform(1, 2, (n, k)), mid + 0.1 * np.arange(1, k + 1),
                              rng.uniform(1, 2, (n, k)))),
    ]
    for kind, timeframe, data in samples:
        path = store.write("binance", "BTC/USDT", kind, timeframe, data)
        back = load(path)
        assert type(back) is type(data)
        for c in data.columns:
            np.testing.assert_array_equal(getattr(back, c), getattr(data, c))


def test_parquet_usual_names_and_arrow_timestamps(tmp_path):
    stamps = pa.array(np.array([r[0] for r in CANDLES]) * 1_000_000, pa.timestamp("ns", tz="UTC"))
    table = pa.table({"date": stamps, **{c.capitalize(): [r[j] for r in CANDLES]
                                         for j, c in enumerate(Bars.columns[1:], 1)}})
    pq.write_table(table, tmp_path / "p.parquet")
    assert_bars(load(tmp_path / "p.parquet"))
    feather.write_feather(table, tmp_path / "p.feather")
    assert_bars(load(tmp_path / "p.feather"))
    secs = table.set_column(0, "date", pa.array([r[0] // 1000 for r in CANDLES], pa.timestamp("s")))
    pq.write_table(secs, tmp_path / "s.parquet")
    assert_bars(load(tmp_path / "s.parquet"))


def test_parquet_null_value_is_a_bad_row(tmp_path):
    table = pa.table({"ts": [r[0] for r in CANDLES], "open": [r[1] for r in CANDLES],
                      "high": [r[2] for r in CANDLES], "low": [r[3] for r in CANDLES],
                      "close": [CANDLES[0][4], None, CANDLES[2][4]], "volume": [r[5] for r in CANDLES]})
    pq.write_table(table, tmp_path / "n.parquet")
    e = error_of(tmp_path / "n.parquet")
    assert (e.row, e.field) == (2, "close")
    data, rep = load_checked(tmp_path / "n.parquet", repair=True)
    assert len(data) == 2 and rep.dropped == 1


# -- Binance websocket captures and depth CSV -------------------------------------------------------

def ws_line(ns, msg) -> str:
    return f"{ns} {json.dumps(msg, separators=(',', ':'))}"


def depth(E, U, u, b, a, pu=None):
    data = {"e": "depthUpdate", "E": E, "s": "BTCUSDT", "U": U, "u": u, "b": b, "a": a}
    if pu is not None:
        data["pu"] = pu
    return {"stream": "btcusdt@depth@100ms", "data": data}


def trade(T, t, p, q, m):
    return {"stream": "btcusdt@trade", "data": {"e": "trade", "E": T + 1, "s": "BTCUSDT", "t": t, "p": p,
                                                 "q": q, "T": T, "m": m, "M": True}}


def capture(futures=False, gap=False) -> str:
    pu = (lambda v: v) if futures else (lambda v: None)
    snap = {"lastUpdateId": 100, "bids": [["10.0", "1"], ["9.9", "3"], ["9.8", "4"]],
            "asks": [["10.1", "2"], ["10.2", "1"]]}
    msgs = [depth(T0 + 100, 95, 99, [["10.0", "1"]], [], pu(90)),  # older than the snapshot: skipped
            depth(T0 + 200, 100, 103, [["10.0", "2"], ["9.9", "0.000"]], [["10.2", "5"]], pu(99)),
            trade(T0 + 210, 501, "10.1", "0.5", True),
            snap,  # the snapshot arrives after the diff that covers it
            {"stream": "btcusdt@bookTicker",
             "data": {"u": 103, "b": "10.0", "B": "2", "a": "10.1", "A": "2"}},
            depth(T0 + 300, 105 if gap else 104, 110, [["10.05", "7"]], [["10.1", "0"]],
                  pu(102 if gap else 103)),
            trade(T0 + 310, 502, "10.2", "1.5", False)]
    return "\n".join(ws_line(1_700_000_000_000_000_000 + i, m) for i, m in enumerate(msgs)) + "\n"


@pytest.mark.parametrize("futures", [False, True])
def test_ws_capture_trades_and_book(tmp_path, futures):
    path = write(tmp_path / "cap_ws.jsonl.gz", capture(futures), gz=True)
    t = load(path)
    np.testing.assert_array_equal(t.ts, [T0 + 210, T0 + 310])
    np.testing.assert_array_equal(t.side, [-1, 1])  # m=true: buyer is maker, the seller hit the bid
    np.testing.assert_array_equal(t.id, [501, 502])
    np.testing.assert_array_equal(t.price, [10.1, 10.2])
    book, rep = load_checked(path, kind="book", levels=2)
    assert rep.rows_in == 2
    np.testing.assert_array_equal(book.ts, [T0 + 200, T0 + 300])
    np.testing.assert_array_equal(book.bid_px, [[10.0, 9.8], [10.05, 10.0]])
    np.testing.assert_array_equal(book.bid_sz, [[2, 4], [7, 2]])
    np.testing.assert_array_equal(book.ask_px, [[10.1, 10.2], [10.2, np.nan]])
    np.testing.assert_array_equal(book.ask_sz, [[2, 5], [5, 0]])


@pytest.mark.parametrize("futures,field", [(False, "U"), (True, "pu")])
def test_ws_capture_gap_raises(tmp_path, futures, field):
    e = error_of(write(tmp_path / "gap_ws.jsonl.gz", capture(futures, gap=True), gz=True), kind="book")
    assert (e.row, e.field) == (6, field) and "gap in the depth updates" in str(e)
    load(tmp_path / "gap_ws.jsonl.gz")  # trades do not depend on the depth sequence


def test_ws_capture_snapshot_problems(tmp_path):
    lines = capture().splitlines()
    no_snap = write(tmp_path / "a_ws.jsonl", "\n".join(lines[:3] + lines[4:]))
    assert "no REST depth snapshot" in str(error_of(no_snap, kind="book"))
    late = write(tmp_path / "b_ws.jsonl", "\n".join(lines[:1] + lines[2:]))  # lost the covering diff
    e = error_of(late, kind="book")
    assert (e.row, e.field) == (5, "U") and "missing" in str(e)
    with pytest.raises(DataError, match="not bars"):
        load(no_snap, kind="bars")


@pytest.mark.parametrize("line,row,field,text", [
    ("1700000000000000009 {\"stream\": \"x@trade\", \"data\": {", 8, None, "invalid JSON"),
    ("garbage line", 8, None, "does not start with"),
    (ws_line(1, {"stream": "x@trade", "data": {"t": 1, "q": "1", "T": T0 + 400, "m": True}}), 8, "p",
     "no 'p'"),
    (ws_line(1, {"stream": "x@trade", "data": {"t": 1, "p": "x", "q": "1", "T": T0 + 400, "m": True}}), 8,
     "p", "not a valid value"),
])
def test_ws_capture_malformed_lines(tmp_path, line, row, field, text):
    e = error_of(write(tmp_path / "m_ws.jsonl.gz", capture() + line + "\n", gz=True))
    assert (e.row, e.field) == (row, field) and text in str(e)


DEPTH_HEADER = "symbol,timestamp,first_update_id,last_update_id,side,update_type,price,qty,pu\n"
DEPTH_ROWS = [f"BTCUSDT,{T0},50,50,b,snap,100.0,1.0,-1", f"BTCUSDT,{T0},50,50,b,snap,99.5,2.0,-1",
              f"BTCUSDT,{T0},50,50,a,snap,100.5,3.0,-1", f"BTCUSDT,{T0 + 10},48,55,a,set,100.5,0.000,40",
              f"BTCUSDT,{T0 + 10},48,55,a,set,101.0,1.5,40", f"BTCUSDT,{T0 + 10},48,55,b,set,100.2,0.5,40",
              f"BTCUSDT,{T0 + 20},56,60,b,set,100.0,0,55"]


def test_binance_depth_csv_is_a_book(tmp_path):
    path = write(tmp_path / "depth.csv", DEPTH_HEADER + "\n".join(DEPTH_ROWS) + "\n")
    book = load(path, levels=2)
    np.testing.assert_array_equal(book.ts, [T0, T0 + 10, T0 + 20])
    np.testing.assert_array_equal(book.bid_px, [[100.0, 99.5], [100.2, 100.0], [100.2, 99.5]])
    np.testing.assert_array_equal(book.bid_sz, [[1, 2], [0.5, 1], [0.5, 2]])
    np.testing.assert_array_equal(book.ask_px, [[100.5, np.nan], [101.0, np.nan], [101.0, np.nan]])
    np.testing.assert_array_equal(book.ask_sz, [[3, 0], [1.5, 0], [1.5, 0]])
    with pytest.raises(DataError, match="not trades"):
        load(path, kind="trades")


def test_binance_depth_csv_errors(tmp_path):
    only_updates = write(tmp_path / "u.csv", DEPTH_HEADER + "\n".join(DEPTH_ROWS[3:]) + "\n")
    e = error_of(only_updates)
    assert (e.row, e.field) == (1, "update_type") and "before any snapshot" in str(e)
    gap = DEPTH_ROWS[:6] + [DEPTH_ROWS[6][:-2] + "54"]  # pu 54, but the previous update ended at 55
    e = error_of(write(tmp_path / "g.csv", DEPTH_HEADER + "\n".join(gap) + "\n"))
    assert (e.row, e.field) == (7, "pu")
    bad_side = DEPTH_ROWS[:4] + [DEPTH_ROWS[4].replace(",a,", ",x,")] + DEPTH_ROWS[5:]
    e = error_of(write(tmp_path / "s.csv", DEPTH_HEADER + "\n".join(bad_side) + "\n"), repair=True)
    assert (e.row, e.field) == (5, "side")  # level rows are never dropped: the book would be wrong


# -- malformed input ---------------------------------------------------------------------------------

GOOD = csv_bars("ts", [r[0] for r in CANDLES])


@pytest.mark.parametrize("name,content,row,field,text", [
    ("bad.json", "[[1605855600000, 10, 12, 9, 11, 5],\n [1605859200000, 11, 11.5, 10.5, 11.2, 0],\n"
                 " [1605862800000, 11.2, 13 11, 12.5, 7.25]]", 3, None, "invalid JSON"),
    ("short.json", json.dumps([CANDLES[0], CANDLES[1][:5], CANDLES[2]]), 2, "volume",
     "wrong number of fields"),
    ("word.json", json.dumps([CANDLES[0], CANDLES[1][:4] + ["x", 1.0], CANDLES[2]]), 2, "close",
     "not a number"),
    ("null.json", json.dumps([CANDLES[0], CANDLES[1], CANDLES[2][:2] + [None] + CANDLES[2][3:]]), 3, "high",
     "not a number"),
    ("notrow.json", json.dumps([CANDLES[0], 5, CANDLES[2]]), 2, None, "not a list"),
    ("width.json", json.dumps([[1, 2, 3, 4, 5]]), 1, None, "unknown row layout"),
    ("long.csv", GOOD.replace("11.2,0.0\n", "11.2,0.0,7\n"), 2, None, "wrong number of fields"),
    ("short.csv", GOOD.replace(",11.2,0.0\n", ",11.2\n"), 2, "Volume", "wrong number of fields"),
    ("word.csv", GOOD.replace(",11.2,0.0\n", ",abc,0.0\n"), 2, "Close", "not a number ('abc')"),
    ("empty_field.csv", GOOD.replace(",12.5,7.25\n", ",12.5,\n"), 3, "Volume", "not a number"),
    ("ts.csv", GOOD.replace(str(T0 + H), "16058592x0000"), 2, "ts", "not a number"),
    ("date.csv", csv_bars("date", ["2020-11-20 07:00", "2020-13-45 08:00", "2020-11-20 09:00"]), 2, "date",
     "not a date ('2020-13-45 08:00')"),
    ("nocol.csv", "ts,open,high,low,volume\n1605855600000,1,2,0.5,3\n", None, "close",
     "missing required column"),
    ("notime.csv", "open,high,low,close,volume\n1,2,0.5,1.5,3\n", None, "ts", "missing a time column"),
    ("what.csv", "a,b\n1,2\n", None, None, "cannot tell what this file holds"),
    ("empty.csv", "", None, None, "empty file"),
    ("blank.json", "  \n", None, None, "empty file"),
    ("header.csv", "ts,open,high,low,close,volume\n", None, None, "no data rows"),
    ("numbers.csv", "1605855600000,1,2,0.5,1.5,3\n", 1, None, "holds numbers, not column names"),
    ("x.bin", b"\x00\x01\x02binary", None, None, "unknown format"),
    ("bad.json.gz", b"\x1f\x8b\x08\x00garbage", None, None, "corrupt gzip"),
    ("fake.parquet", GOOD, None, None, "not a parquet file"),
    ("odd.json", '{"a": 1}', None, None, "unknown JSON layout"),
    ("nothing.json", "[]", None, None, "no rows"),
    ("latin.csv", GOOD.encode() + "9,caf\u00e9\n".encode("latin-1"), None, None, "not UTF-8"),
])
def test_malformed_files_raise_dataerror(tmp_path, name, content, row, field, text):
    e = error_of(write(tmp_path / name, content))
    assert (e.row, e.field) == (row, field)
    assert text in str(e)


def test_empty_gzip_file(tmp_path):
    assert "empty file" in str(error_of(write(tmp_path / "e.csv.gz", "", gz=True)))


def test_repair_drops_rows_that_fail_to_parse_and_reports_why(tmp_path, caplog):
    rows = GOOD.splitlines()
    more = [f"{T0 + k * H},10,12,9,11,1" for k in range(3, 7)]
    more[0] = more[0].replace(",12,", ",nope,")  # unparseable high: row 4
    more[1] = more[1] + ",9"  # too many fields: row 5
    more[2] = more[2][:-2] + ",-1"  # negative volume: row 6 (validation)
    path = write(tmp_path / "r.csv", "\n".join(rows + more) + "\n")
    e = error_of(path)
    assert (e.row, e.field) == (4, "High")
    with caplog.at_level(logging.WARNING, logger="bot4jax.data"):
        data = load(path, repair=True)
    assert len(data) == 4 and list(data.ts) == [T0, T0 + H, T0 + 2 * H, T0 + 6 * H]
    assert any("dropped 3 of 7 rows" in r.getMessage() and r.levelno == logging.WARNING
               for r in caplog.records)
    _, rep = load_checked(path, repair=True)
    assert rep == Repair(str(path), 7, 3, {"High not a number": 1, "row wrong number of fields": 1,
                                           "volume negative volume": 1})
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="bot4jax.data"):
        load(write(tmp_path / "ok.csv", GOOD), repair=True)
    assert not caplog.records  # nothing dropped, nothing logged


def test_options_are_checked(tmp_path):
    path = write(tmp_path / "b.csv", GOOD)
    with pytest.raises(ConfigError):
        load(path, kind="candles")
    with pytest.raises(TypeError, match="unknown load option"):
        load(path, depth=3)
    with pytest.raises(ConfigError):
        load(path, levels=0)
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "missing.csv")


def test_importing_bot4jax_data_does_not_import_jax():
    code = "import sys, bot4jax.data; assert 'jax' not in sys.modules, 'jax imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# -- property: CSV repair drops exactly the corrupted rows -------------------------------------------

CSV_CORRUPTIONS = ("word", "empty", "short", "long", "nan", "negative_volume", "high_below_low", "bad_ts")


def corrupt_line(fields: list[str], kind: str, pick: int) -> str:
    f = list(fields)
    col = 1 + pick % 5
    if kind == "word":
        f[col] = "n/a"
    elif kind == "empty":
        f[col] = ""
    elif kind == "short":
        f = f[: 1 + pick % 5]
    elif kind == "long":
        f.append("1")
    elif kind == "nan":
        f[col] = "nan"
    elif kind == "negative_volume":
        f[5] = "-" + f[5].lstrip("-")
    elif kind == "high_below_low":
        f[2], f[3] = f[3], f[2]
    else:
        f[0] = "2020-99-99"
    return ",".join(f)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(2, 30), seed=st.integers(0, 1000), descending=st.booleans(),
       plan=st.dictionaries(st.integers(0, 29),
                            st.tuples(st.sampled_from(CSV_CORRUPTIONS), st.integers(0, 99))))
def test_csv_repair_drops_exactly_the_corrupted_rows(n, seed, descending, plan):
    plan = {i: v for i, v in plan.items() if i < n}
    rng = np.random.default_rng(seed)
    close = 100 + np.cumsum(rng.normal(0, 1, n))
    open_ = np.r_[100.0, close[:-1]]
    high = np.maximum(open_, close) + rng.uniform(0.1, 1, n)
    low = np.minimum(open_, close) - rng.uniform(0.1, 1, n)
    vol = rng.uniform(0.5, 5, n)
    ts = T0 + 60_000 * np.arange(n)
    order = np.arange(n)[::-1] if descending else np.arange(n)
    lines = ["timestamp,open,high,low,close,volume"]
    for i in order:
        fields = [str(ts[i]), *(repr(float(v[i])) for v in (open_, high, low, close, vol))]
        lines.append(corrupt_line(fields, *plan[i]) if i in plan else ",".join(fields))
    with tempfile.TemporaryDirectory() as tmp:
        path = write(Path(tmp) / "p.csv", "\n".join(lines) + "\n")
        clean = np.array([i for i in range(n) if i not in plan], dtype=int)
        if len(clean) == 0:
            return
        data, rep = load_checked(path, repair=True)
        assert rep.rows_in == n and rep.dropped == len(plan)
        np.testing.assert_array_equal(data.ts, ts[clean])
        np.testing.assert_array_equal(data.close, close[clean])
        if plan:
            with pytest.raises(DataError) as info:
                load(path)
            file_rows = [int(np.flatnonzero(order == i)[0]) + 1 for i in plan]
            parse = [r for r, i in zip(file_rows, plan) if plan[i][0] in ("word", "empty", "short", "long",
                                                                             "bad_ts")]
            # parse errors come first; validation reports the earliest bad row in time
            assert info.value.row == (min(parse) if parse else max(file_rows) if descending
                                      else min(file_rows))
