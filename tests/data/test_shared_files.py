"""Every file in ../shared/data loads, and what it holds agrees with that folder's README.

Expected numbers come from the README; where a check needs the raw file (duplicate rows, the
websocket bookTicker stream) the test reads it independently with the README's own one-liners.
Skipped when the folder is missing (a user's machine has no shared data).
"""
import csv
import gzip
import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from bot4jax.data import Bars, Book, DataError, Trades, load, load_checked

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
FILES = sorted(p.name for p in DATA.glob("*") if p.name != "README.md") if DATA.is_dir() else []
pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f"no shared data folder at {DATA}")

MIN, HOUR, DAY = 60_000, 3_600_000, 86_400_000


def ms(text: str) -> int:
    return int(np.datetime64(text, "ms").astype(np.int64))


@lru_cache(maxsize=None)
def loaded(name: str, kind: str | None = None, repair: bool = False, levels: int = 10):
    return load_checked(DATA / name, kind=kind, repair=repair, levels=levels)


@lru_cache(maxsize=None)
def capture_messages(name: str):
    """The README's loader: [(local_ns, message), ...]."""
    with gzip.open(DATA / name, "rt") as f:
        return [(int(t), json.loads(j)) for t, j in (line.split(" ", 1) for line in f)]


def check_span(data, n: int, first: str, last: str):
    assert len(data) == n
    assert (data.ts[0], data.ts[-1]) == (ms(first), ms(last))


def flat(b: Bars) -> np.ndarray:
    return (b.open == b.high) & (b.high == b.low) & (b.low == b.close)


def gaps(b: Bars, step: int) -> tuple[int, int]:
    """(number of gaps, number of missing bars) on a grid of `step` ms."""
    d = np.diff(b.ts) // step
    return int((d > 1).sum()), int((d[d > 1] - 1).sum())


def first_occurrence_close(name: str) -> tuple[dict[int, float], list]:
    """Hour/day ms -> close of the first row with that time in the file (independent CSV parse)."""
    opener = gzip.open if name.endswith(".gz") else open
    with opener(DATA / name, "rt") as f:
        rows = list(csv.reader(f))[1:]
    out: dict[int, float] = {}
    for r in rows:
        t = float(r[0])
        out.setdefault(int(round(t * 1000 if t < 1e11 else t)), float(r[6]))
    return out, rows


def check_duplicated_csv(name: str, n_rows: int, n_distinct: int, first: str, last: str, step: int):
    """Strict load names the second row of the oldest duplicated pair; repair keeps the first."""
    by_time, rows = first_occurrence_close(name)
    assert len(rows) == n_rows and len(by_time) == n_distinct
    seen, second = {}, {}
    for i, r in enumerate(rows, 1):
        t = float(r[0])
        key = int(round(t * 1000 if t < 1e11 else t))
        if key in seen:
            second[key] = i
        seen.setdefault(key, i)
    oldest = min(second)
    with pytest.raises(DataError) as info:
        load(DATA / name)
    assert (info.value.row, info.value.field) == (second[oldest], "ts")
    assert "duplicate timestamp" in str(info.value) and name in str(info.value)
    bars, rep = loaded(name, repair=True)
    assert (rep.rows_in, rep.dropped) == (n_rows, n_rows - n_distinct)
    assert rep.reasons == {"ts duplicate timestamp": n_rows - n_distinct}
    check_span(bars, n_distinct, first, last)
    assert np.all(np.diff(bars.ts) % step == 0)
    np.testing.assert_array_equal(bars.close, [by_time[int(t)] for t in bars.ts])
    return bars


# -- one check per file ---------------------------------------------------------------------------

def btc_usdt_5m_2023(name):
    bars, rep = loaded(name)
    check_span(bars, 10_999, "2023-01-02T16:45", "2023-02-09T21:15")
    assert np.all(np.diff(bars.ts) == 5 * MIN) and not (bars.volume == 0).any()
    assert (bars.low.min(), bars.high.max()) == (16_600.3, 24_281.4)


def xrp_eth_1m(name):
    bars, _ = loaded(name)
    check_span(bars, 3_560, "2019-10-11T00:00", "2019-10-13T11:19")
    assert np.all(np.diff(bars.ts) == MIN)
    zero = bars.volume == 0
    assert zero.sum() == 1_091
    prev_close = np.r_[np.nan, bars.close[:-1]]
    for c in ("open", "high", "low", "close"):  # minutes without a trade repeat the previous close
        np.testing.assert_array_equal(getattr(bars, c)[zero], prev_close[zero])


def xrp_eth_5m(name):
    bars, _ = loaded(name)
    check_span(bars, 712, "2019-10-11T00:00", "2019-10-13T11:15")
    assert np.all(np.diff(bars.ts) == 5 * MIN) and (bars.volume == 0).sum() == 6


def bittrex_5m(n, last, n_flat, n_missing):
    def check(name):
        bars, _ = loaded(name)
        check_span(bars, n, "2018-01-10T04:55", last)
        assert flat(bars).sum() == n_flat
        assert gaps(bars, 5 * MIN)[1] == n_missing
    return check


def binance_1h(name):
    bars = check_duplicated_csv(name, 36_062, 33_413, "2017-08-17T04:00", "2021-06-10T00:00", HOUR)
    assert gaps(bars, HOUR) == (8, 16)
    zero = bars.volume == 0
    assert zero.sum() == 117 and flat(bars)[zero].all()
    assert bars.volume[-1] == 798.276499  # the newest hour is partial
    assert bars.close[bars.ts == ms("2020-11-20T07:00")][0] == 18_212.0  # the ms-style row is kept


def binance_1d(name):
    bars = check_duplicated_csv(name, 1_396, 1_395, "2017-08-17", "2021-06-11", DAY)
    assert gaps(bars, DAY) == (0, 0)
    assert bars.volume[-1] == 772.654705  # the newest day is partial


def bittrex_1d(name):
    bars, _ = loaded(name)
    check_span(bars, 874, "2015-12-12", "2018-06-18")
    assert gaps(bars, DAY) == (34, 46)
    assert flat(bars).sum() == 48 and bars.close[0] == 420.0


def xrp_eth_trades(name):
    t, _ = loaded(name)
    assert isinstance(t, Trades)
    assert len(t) == 12_477 and ((t.side == 1).sum(), (t.side == -1).sum()) == (6_524, 5_953)
    assert (t.id[0], t.id[-1]) == (13_519_807, 13_532_283) and np.all(np.diff(t.id) == 1)
    assert (np.diff(t.ts) == 0).sum() == 2_490 and np.diff(t.ts).max() // 1000 == 494
    assert (t.ts[0] // 1000 * 1000, t.ts[-1] // 1000 * 1000) == (ms("2019-10-11T00:00:11"),
                                                                   ms("2019-10-13T11:19:28"))
    np.testing.assert_allclose(t.price * t.amount, [r[6] for r in json.load(gzip.open(DATA / name))],
                               rtol=1e-6)


def xrp_eth_trades_ccxt(name):
    t, _ = loaded(name)
    same, _ = loaded("binance_XRP_ETH-trades-2019.json.gz")
    for c in Trades.columns:
        np.testing.assert_array_equal(getattr(t, c), getattr(same, c))
    maker = np.array([d["info"]["m"] for d in json.load(gzip.open(DATA / name))])
    np.testing.assert_array_equal(t.side, np.where(maker, -1, 1))


def ws_capture(n_trades, n_sell, lo, hi):
    def check(name):
        msgs = capture_messages(name)
        t, _ = loaded(name)
        assert isinstance(t, Trades) and len(t) == n_trades
        assert ((t.side == -1).sum(), (t.side == 1).sum()) == (n_sell, n_trades - n_sell)
        assert np.all(np.diff(t.id) == 1) and (t.price.min(), t.price.max()) == (lo, hi)
        # the README's span is the collector's clock, which ran up to 1.274 s behind the exchange
        assert ms("2024-08-08T23:54:13") <= t.ts[0] and t.ts[-1] <= ms("2024-08-09T00:00:00") + 1_274

        book, _ = loaded(name, "book")
        assert isinstance(book, Book) and book.levels == 10
        snap = next(m for _, m in msgs if "lastUpdateId" in m)
        diffs = [m["data"] for _, m in msgs if "@depth" in m.get("stream", "")]
        futures = "pu" in diffs[0]
        applied = [d for d in diffs if (d["u"] >= snap["lastUpdateId"] if futures else
                                        d["u"] > snap["lastUpdateId"])]
        assert len(book) == len(applied) and list(book.ts) == [d["E"] for d in applied]
        best_bid, best_ask = book.bid_px[:, 0], book.ask_px[:, 0]
        assert np.isfinite(book.bid_px).all() and np.isfinite(book.ask_px).all()
        assert np.all(best_bid < best_ask)
        assert lo <= best_bid.min() and best_ask.max() <= hi
        assert np.all(np.diff(book.bid_px, axis=1) < 0) and np.all(np.diff(book.ask_px, axis=1) > 0)
        # The rebuilt top of book equals every bookTicker quoted at exactly a diff's last update id.
        ticker = {m["data"]["u"]: m["data"] for _, m in msgs if m.get("stream", "").endswith("@bookTicker")}
        matched = 0
        for i, d in enumerate(applied):
            q = ticker.get(d["u"])
            if q is not None:
                matched += 1
                assert (book.bid_px[i, 0], book.bid_sz[i, 0], book.ask_px[i, 0], book.ask_sz[i, 0]) == \
                    (float(q["b"]), float(q["B"]), float(q["a"]), float(q["A"]))
        assert matched > 500
    return check


def depth_snapshot(name):
    book, _ = loaded(name, levels=100)
    assert len(book) == 1 and book.ts[0] == 1_667_346_579_146
    raw = np.genfromtxt(DATA / name, delimiter=",", names=True, dtype=None, encoding=None)
    np.testing.assert_array_equal(book.bid_px[0], np.sort(raw["price"])[::-1])
    assert (book.bid_px[0, 0], book.bid_sz[0, 0]) == (20_377.0, 1.77)
    assert np.isnan(book.ask_px).all() and (book.ask_sz == 0).all()
    top, _ = loaded(name)
    np.testing.assert_array_equal(top.bid_px[0], book.bid_px[0, :10])


def depth_update(name):
    with pytest.raises(DataError) as info:  # one diff message without its snapshot: no book
        load(DATA / name)
    assert (info.value.row, info.value.field) == (1, "update_type")


CHECKS = {
    "BTC_USDT-5m-2023.json.gz": btc_usdt_5m_2023,
    "Binance_BTCUSDT_1h.csv.gz": binance_1h,
    "Binance_BTCUSDT_d.csv": binance_1d,
    "binance_XRP_ETH-1m-2019.json.gz": xrp_eth_1m,
    "binance_XRP_ETH-5m-2019.json.gz": xrp_eth_5m,
    "binance_XRP_ETH-trades-2019-ccxt-full.json.gz": xrp_eth_trades_ccxt,
    "binance_XRP_ETH-trades-2019.json.gz": xrp_eth_trades,
    "binance_spot_BTCUSDT_20240808_ws.jsonl.gz": ws_capture(9_757, 5_654, 61_583.22, 61_860.80),
    "binance_usdm_BTCUSDT_20240808_ws.jsonl.gz": ws_capture(21_313, 11_697, 61_590.3, 61_839.9),
    "binance_usdm_BTCUSDT_depth_snap_20221102.csv": depth_snapshot,
    "binance_usdm_BTCUSDT_depth_update_20221102.csv": depth_update,
    "bittrex_BTC_USDT-1d.csv": bittrex_1d,
    "bittrex_DASH_BTC-5m-2018.json.gz": bittrex_5m(5_758, "2018-01-30T04:50", 40, 2),
    "bittrex_ETC_BTC-5m-2018.json.gz": bittrex_5m(5_759, "2018-01-30T04:45", 4, 0),
    "bittrex_ETH_BTC-5m-2018.json.gz": bittrex_5m(5_760, "2018-01-30T04:50", 0, 0),
    "bittrex_LTC_BTC-5m-2018.json.gz": bittrex_5m(5_760, "2018-01-30T04:50", 0, 0),
}


@pytest.mark.parametrize("name", FILES)
def test_every_shared_file_loads_as_its_readme_says(name):
    assert name in CHECKS, f"{name} is new in the shared data: add what its README says to CHECKS"
    CHECKS[name](name)


@pytest.mark.parametrize("bars_file,step", [("binance_XRP_ETH-1m-2019.json.gz", MIN),
                                            ("binance_XRP_ETH-5m-2019.json.gz", 5 * MIN)])
def test_xrp_eth_bars_agree_with_the_trades(bars_file, step):
    """Every XRP/ETH bar with volume is the OHLCV of the trades in its interval, and a bar without
    volume has no trades (the data show exact agreement, so exact agreement is asserted)."""
    bars, _ = loaded(bars_file)
    t, _ = loaded("binance_XRP_ETH-trades-2019.json.gz")
    start = t.ts // step * step
    keys, first, count = np.unique(start, return_index=True, return_counts=True)
    idx = np.searchsorted(bars.ts, keys)
    assert np.array_equal(bars.ts[idx], keys)  # every trade falls in a bar
    has_trades = np.zeros(len(bars), bool)
    has_trades[idx] = True
    np.testing.assert_array_equal(has_trades, bars.volume > 0)
    np.testing.assert_array_equal(bars.open[idx], t.price[first])
    np.testing.assert_array_equal(bars.close[idx], t.price[first + count - 1])
    np.testing.assert_array_equal(bars.high[idx], np.maximum.reduceat(t.price, first))
    np.testing.assert_array_equal(bars.low[idx], np.minimum.reduceat(t.price, first))
    np.testing.assert_allclose(bars.volume[idx], np.add.reduceat(t.amount, first), rtol=1e-12)


def test_shared_folder_is_complete():
    assert set(FILES) == set(CHECKS), "a file named in CHECKS is missing from the shared data"
