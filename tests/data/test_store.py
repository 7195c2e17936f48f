"""ParquetStore: canonical schema, merge semantics against a plain reference, atomic writes under SIGKILL."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot4jax.data.store import ParquetStore, StoreKey, merge
from bot4jax.data.types import Bars, Book, Trades
from bot4jax.errors import ConfigError, DataError

T0 = 1_704_067_200_000  # 2024-01-01 UTC
MIN = 60_000


def bars(ts, base=100.0):
    ts = np.asarray(ts, np.int64)
    c = base + np.arange(len(ts), dtype=float)
    return Bars(ts, c, c + 1.0, c - 1.0, c + 0.5, np.full(len(ts), 2.0))


def trades(ts, ids=None, price=None):
    n = len(ts)
    price = np.full(n, 10.0) if price is None else np.asarray(price, float)
    side = np.where(np.arange(n) % 2 == 0, 1, -1)
    return Trades(np.asarray(ts, np.int64), price, np.full(n, 0.5), side, ids)


def book(ts, levels=3):
    n = len(ts)
    lv = np.arange(levels, dtype=float)
    bid = 100.0 - lv[None, :] - np.arange(n)[:, None] * 0.01
    ask = bid + 0.5 + 2 * lv[None, :]
    return Book(np.asarray(ts, np.int64), bid, np.ones((n, levels)), ask, np.full((n, levels), 2.0))


def assert_same(a, b):
    assert type(a) is type(b)
    for name in a.columns:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape, name
        np.testing.assert_array_equal(x, y, err_msg=name)


# --- layout and schema ---------------------------------------------------------------------------

def test_roundtrip_layout_and_canonical_schema(tmp_path):
    store = ParquetStore(tmp_path)
    b, k = bars(T0 + MIN * np.arange(5)), book(T0 + np.arange(4))
    t = trades(T0 + np.array([0, 0, 3, 7]), ids=[5, 6, 7, 8])
    pb = store.write("binance", "BTC/USDT", "bars", "1m", b)
    pt = store.write("binance", "BTC/USDT", "trades", "tick", t)
    pk = store.write("binance", "BTC/USDT:USDT", "book", "L3", k)
    assert pb == tmp_path / "binance" / "BTC-USDT" / "bars" / "1m.parquet"
    assert pt == tmp_path / "binance" / "BTC-USDT" / "trades" / "tick.parquet"
    assert pk == tmp_path / "binance" / "BTC-USDT-USDT" / "book" / "L3.parquet"
    assert_same(store.read("binance", "BTC/USDT", "bars", "1m"), b)
    assert_same(store.read("binance", "BTC-USDT", "trades", "tick"), t)  # the folder name works too
    assert_same(store.read("binance", "BTC/USDT:USDT", "book", "L3"), k)

    schema = pq.read_schema(pb)
    assert schema.names == ["ts", "open", "high", "low", "close", "volume"]
    assert schema.field("ts").type == pa.int64() and schema.field("close").type == pa.float64()
    assert schema.metadata[b"bot4jax.kind"] == b"bars"
    schema = pq.read_schema(pt)
    assert schema.names == ["ts", "price", "amount", "side", "id"]
    assert schema.field("side").type == pa.int8() and schema.field("id").type == pa.int64()
    assert schema.metadata[b"bot4jax.kind"] == b"trades"
    schema = pq.read_schema(pk)
    assert schema.names == ["ts", "bid_px", "bid_sz", "ask_px", "ask_sz"]
    assert schema.field("ask_px").type == pa.list_(pa.float64(), 3)  # fixed-size list of the levels
    assert schema.metadata[b"bot4jax.kind"] == b"book"
    # Plain pyarrow sees the same numbers (the format is not private to the store).
    np.testing.assert_array_equal(np.stack(pq.read_table(pk).column("bid_px").to_pylist()), k.bid_px)

    assert store.list() == [StoreKey("binance", "BTC-USDT", "bars", "1m"),
                            StoreKey("binance", "BTC-USDT", "trades", "tick"),
                            StoreKey("binance", "BTC-USDT-USDT", "book", "L3")]
    assert store.last_ts("binance", "BTC/USDT", "bars", "1m") == T0 + 4 * MIN
    assert store.first_ts("binance", "BTC/USDT", "bars", "1m") == T0
    assert store.last_row("binance", "BTC/USDT", "trades", "tick") == {"ts": T0 + 7, "id": 8}


def test_store_files_load_with_the_generic_loader(tmp_path):
    from bot4jax.data.loaders import load_checked

    store = ParquetStore(tmp_path)
    for kind, timeframe, data in (("bars", "1m", bars(T0 + MIN * np.arange(5))),
                                  ("trades", "tick", trades(T0 + np.arange(4), ids=[1, 2, 3, 4])),
                                  ("book", "L3", book(T0 + np.arange(4)))):
        got, report = load_checked(store.write("binance", "BTC/USDT", kind, timeframe, data))
        assert_same(got, data)
        assert report.dropped == 0


def test_missing_series_and_bad_keys(tmp_path):
    store = ParquetStore(tmp_path / "nothing")
    assert store.list() == []
    assert store.last_ts("binance", "BTC/USDT", "bars", "1m") is None
    assert store.first_ts("binance", "BTC/USDT", "bars", "1m") is None
    with pytest.raises(FileNotFoundError):
        store.read("binance", "BTC/USDT", "bars", "1m")
    with pytest.raises(ConfigError, match="kind"):
        store.path("binance", "BTC/USDT", "candles", "1m")
    with pytest.raises(ConfigError, match="exchange"):
        store.path("..", "BTC/USDT", "bars", "1m")
    with pytest.raises(DataError, match="cannot store Trades under kind 'bars'"):
        store.write("binance", "BTC/USDT", "bars", "1m", trades([T0]))


def test_bad_rows_are_never_stored(tmp_path):
    store = ParquetStore(tmp_path)
    good = bars(T0 + MIN * np.arange(3))
    store.write("binance", "BTC/USDT", "bars", "1m", good)
    bad = bars(T0 + MIN * np.arange(3, 6))
    high = bad.high.copy()
    high[1] = bad.low[1] - 1.0
    bad = Bars(bad.ts, bad.open, high, bad.low, bad.close, bad.volume)
    with pytest.raises(DataError) as e:
        store.append("binance", "BTC/USDT", "bars", "1m", bad)
    assert e.value.row == 2 and e.value.field == "high" and "1m.parquet" in e.value.source
    with pytest.raises(DataError, match="duplicate timestamp"):
        store.write("binance", "BTC/USDT", "bars", "1m", bars([T0, T0]))
    assert_same(store.read("binance", "BTC/USDT", "bars", "1m"), good)


def test_damaged_file_is_a_data_error(tmp_path):
    store = ParquetStore(tmp_path)
    path = store.write("binance", "BTC/USDT", "bars", "1m", bars(T0 + MIN * np.arange(3)))
    path.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(DataError, match="not a readable Parquet file"):
        store.read("binance", "BTC/USDT", "bars", "1m")
    table = pa.table({"ts": pa.array([T0], pa.int64()), "open": [1.0]},
                     metadata={b"bot4jax.kind": b"bars"})
    pq.write_table(table, path)
    with pytest.raises(DataError, match="missing column 'high'"):
        store.read("binance", "BTC/USDT", "bars", "1m")


# --- append / merge ------------------------------------------------------------------------------

def test_append_bars_overlap_new_row_wins(tmp_path):
    store = ParquetStore(tmp_path)
    key = ("binance", "BTC/USDT", "bars", "1m")
    assert store.append(*key, bars(T0 + MIN * np.arange(5), base=100)) == 5
    # Overlaps rows 3..4 with new values, adds 5..7, and one row before the start.
    later = bars(T0 + MIN * np.arange(3, 8), base=500)
    assert store.append(*key, later) == 3
    assert store.append(*key, bars([T0 - MIN], base=50)) == 1
    got = store.read(*key)
    np.testing.assert_array_equal(got.ts, T0 + MIN * np.arange(-1, 8))
    np.testing.assert_array_equal(got.open, [50, 100, 101, 102, 500, 501, 502, 503, 504])
    assert store.append(*key, later) == 0  # idempotent


def test_append_trades_dedupes_on_id_then_on_whole_row(tmp_path):
    store = ParquetStore(tmp_path)
    key = ("binance", "BTC/USDT", "trades", "tick")
    store.append(*key, trades(T0 + np.array([0, 1, 1, 2]), ids=[10, 11, 12, 13]))
    assert store.append(*key, trades(T0 + np.array([1, 2, 3]), ids=[12, 13, 14], price=[9, 9, 9])) == 1
    got = store.read(*key)
    np.testing.assert_array_equal(got.id, [10, 11, 12, 13, 14])
    np.testing.assert_array_equal(got.price, [10, 10, 9, 9, 9])  # the newer row wins

    key = ("csvvenue", "BTC/USDT", "trades", "tick")
    old = trades(T0 + np.array([0, 5, 5]))  # ids -1: the same trade twice in one ms is two trades
    store.append(*key, old)
    new = Trades(T0 + np.array([5, 5, 5, 9]), np.full(4, 10.0), np.full(4, 0.5), [-1, 1, -1, 1])
    # old holds (5, sell) once and (5, buy) once; new holds (5, sell) twice: one is new.
    assert store.append(*key, new) == 2
    got = store.read(*key)
    np.testing.assert_array_equal(got.ts - T0, [0, 5, 5, 5, 9])
    assert sorted(got.side[got.ts == T0 + 5].tolist()) == [-1, -1, 1]


def _ref_merge_bars(old: Bars, new: Bars):
    rows = {}
    for src in (old, new):
        for i in range(len(src)):
            rows[int(src.ts[i])] = tuple(float(getattr(src, c)[i]) for c in src.columns[1:])
    return sorted(rows.items())


def _ref_merge_trades(old: Trades, new: Trades):
    by_id, no_id = {}, []
    for i in range(len(old)):
        row = (int(old.ts[i]), float(old.price[i]), float(old.amount[i]), int(old.side[i]))
        if old.id[i] >= 0:
            by_id[int(old.id[i])] = row
        else:
            no_id.append(row)
    unmatched = list(no_id)
    for i in range(len(new)):
        row = (int(new.ts[i]), float(new.price[i]), float(new.amount[i]), int(new.side[i]))
        if new.id[i] >= 0:
            by_id[int(new.id[i])] = row
        elif row in unmatched:
            unmatched.remove(row)  # already stored: each stored copy absorbs one new copy
        else:
            no_id.append(row)
    return sorted([(r[0], i) + r[1:] for i, r in by_id.items()] + [(r[0], -1) + r[1:] for r in no_id])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 30), max_size=15, unique=True), st.lists(st.integers(0, 30), max_size=15, unique=True),
       st.integers(0, 10_000))
def test_merge_bars_matches_reference(a, b, seed):
    rng = np.random.default_rng(seed)
    old, new = bars(sorted(a), base=100), bars(sorted(b), base=float(rng.integers(200, 300)))
    got = merge(old, new)
    want = _ref_merge_bars(old, new)
    assert [int(t) for t in got.ts] == [t for t, _ in want]
    assert [tuple(float(getattr(got, c)[i]) for c in got.columns[1:]) for i in range(len(got))] == [r for _, r in want]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(-1, 6), st.sampled_from([1, -1])), max_size=12),
       st.lists(st.tuples(st.integers(0, 5), st.integers(-1, 6), st.sampled_from([1, -1])), max_size=12))
def test_merge_trades_matches_reference(a, b):
    def make(rows):
        seen, out = set(), []
        for ts, i, side in sorted(rows):
            if i >= 0 and i in seen:
                continue  # one row per id within a batch, like a venue page
            seen.add(i)
            out.append((ts, i, side))
        return Trades(np.array([r[0] for r in out], np.int64), np.full(len(out), 10.0), np.full(len(out), 0.5),
                      np.array([r[2] for r in out], np.int8), np.array([r[1] for r in out], np.int64))

    old, new = make(a), make(b)
    got = merge(old, new)
    rows = sorted(zip(got.ts.tolist(), got.id.tolist(), got.price.tolist(), got.amount.tolist(), got.side.tolist()))
    assert rows == _ref_merge_trades(old, new)
    assert np.all(np.diff(got.ts) >= 0)


# --- atomic writes -------------------------------------------------------------------------------

_WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    from bot4jax.data.store import ParquetStore
    from bot4jax.data.types import Bars
    n = int(sys.argv[2])
    rng = np.random.default_rng(0)
    ts = 1_704_067_200_000 + 60_000 * np.arange(10, 10 + n, dtype=np.int64)
    c = 100.0 + rng.random(n)
    bars = Bars(ts, c, c + 1.0, c - 1.0, c, rng.random(n))
    print("ready", flush=True)
    ParquetStore(sys.argv[1]).append("binance", "BTC/USDT", "bars", "1m", bars)
    print("done", flush=True)
""")


def test_sigkill_mid_write_leaves_old_file_intact(tmp_path):
    store = ParquetStore(tmp_path)
    key = ("binance", "BTC/USDT", "bars", "1m")
    old = bars(T0 + MIN * np.arange(10))
    path = store.write(*key, old)
    before = path.read_bytes()
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path), "1500000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        deadline = time.monotonic() + 60
        temps = []
        while not temps and proc.poll() is None and time.monotonic() < deadline:
            temps = [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
            if not temps:
                time.sleep(0.0005)
        assert temps, "the writer finished or stalled before its temporary file appeared"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    # Killed mid-write: the temp file is still there, the data file is the old one, byte for byte.
    assert [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    assert path.read_bytes() == before
    assert_same(store.read(*key), old)
    assert store.list() == [StoreKey("binance", "BTC-USDT", "bars", "1m")]
    assert store.last_ts(*key) == T0 + 9 * MIN
    # The next write removes the dead writer's temp file and works as usual.
    assert store.append(*key, bars([T0 + 10 * MIN])) == 1
    assert [p.name for p in path.parent.iterdir()] == ["1m.parquet"]
    assert len(store.read(*key)) == 11


def test_write_that_fails_after_the_temp_file_removes_it(tmp_path):
    store = ParquetStore(tmp_path)
    path = store.path("binance", "BTC/USDT", "bars", "1m")
    (path / "occupied").mkdir(parents=True)  # os.replace cannot put a file over a non-empty folder
    with pytest.raises(OSError):
        store.write("binance", "BTC/USDT", "bars", "1m", bars([T0]))
    assert sorted(p.name for p in path.parent.iterdir()) == ["1m.parquet"]
    assert path.is_dir()
