"""End to end: the real ccxt binance client against a local server speaking Binance's REST protocol."""
from __future__ import annotations

import time

import ccxt
import numpy as np
import pytest

from bot4jax.data.download import DownloadError, RetryPolicy, download_ohlcv, download_trades, make_exchange
from bot4jax.data.store import ParquetStore
from bot4jax.errors import ConfigError
from tests.support.binance_rest import BinanceRestServer, Fault, SpotMarket, make_agg_trades, make_klines

T0 = 1_704_067_200_000  # 2024-01-01 UTC
MIN = 60_000
DAY = 86_400_000
KLINES = "/api/v3/klines"
AGG = "/api/v3/aggTrades"
FAST = RetryPolicy(attempts=4, base_s=0.05, cap_s=0.2)
KEY = ("binance", "BTC/USDT", "bars", "1m")
TKEY = ("binance", "BTC/USDT", "trades", "tick")


def btc_market(n_bars=250, n_trades=700, **trade_args) -> SpotMarket:
    trade_args = {"burst_every": 100, "burst_size": 30, **trade_args}
    return SpotMarket("BTC", "USDT", klines={"1m": make_klines(T0, n_bars, MIN, seed=1)},
                      trades=make_agg_trades(T0, n_trades, seed=2, **trade_args))


@pytest.fixture
def venue():
    with BinanceRestServer([btc_market(), SpotMarket("ETH", "BTC")]) as server:
        yield server
        assert server.unexpected == [], f"calls to paths the venue does not serve: {server.unexpected}"


def client(server, rate_limit_ms=50):
    return make_exchange("binance", api_url=server.url, rate_limit_ms=rate_limit_ms, market_types=("spot",))


def ohlcv(server, store, since=T0, until=None, rate_limit_ms=50, **kw):
    kw = {"page_limit": 60, "retry": FAST, "flush_s": 0.0, "progress": False, **kw}
    return download_ohlcv(client(server, rate_limit_ms), "BTC/USDT", "1m", since, until, store=store, **kw)


def trades(server, store, since=T0, until=None, **kw):
    kw = {"page_limit": 50, "retry": FAST, "flush_s": 0.0, "progress": False, **kw}
    return download_trades(client(server), "BTC/USDT", since, until, store=store, **kw)


def assert_bars_equal_server(bars, rows):
    np.testing.assert_array_equal(bars.ts, rows[:, 0].astype(np.int64))
    for j, name in enumerate(("open", "high", "low", "close", "volume"), start=1):
        np.testing.assert_array_equal(getattr(bars, name), rows[:, j], err_msg=name)


def assert_trades_equal_server(got, agg, mask=slice(None)):
    np.testing.assert_array_equal(got.id, agg.ids[mask])
    np.testing.assert_array_equal(got.ts, agg.ts[mask])
    np.testing.assert_array_equal(got.price, agg.price[mask])
    np.testing.assert_array_equal(got.amount, agg.qty[mask])
    # The buyer was the maker: the seller took liquidity, a sell (-1).
    np.testing.assert_array_equal(got.side, np.where(agg.buyer_maker[mask], -1, 1))


def starts(server, path=KLINES) -> list[int]:
    return [int(r.params["startTime"]) for r in server.calls(path) if r.fault is None and "startTime" in r.params]


# --- candles -------------------------------------------------------------------------------------

def test_paginated_download_equals_the_venue(venue, tmp_path):
    store = ParquetStore(tmp_path)
    r = ohlcv(venue, store)
    rows = venue.markets["BTCUSDT"].klines["1m"]
    assert_bars_equal_server(store.read(*KEY), rows)
    assert r.rows_added == 250 and r.retries == 0 and (r.first_ts, r.last_ts) == (T0, T0 + 249 * MIN)
    # Pages of 60 follow each other; a last, empty answer says the venue has no more.
    assert starts(venue) == [T0 + k * 60 * MIN for k in range(5)] + [T0 + 250 * MIN]
    assert {r.params["limit"] for r in venue.calls(KLINES)} == {"60"}
    assert [r.path for r in venue.requests].count("/api/v3/exchangeInfo") == 1  # spot markets only
    assert r.requests == 1 + 6


def test_until_is_exclusive_and_stops_without_extra_requests(venue, tmp_path):
    store = ParquetStore(tmp_path)
    ohlcv(venue, store, until=T0 + 150 * MIN)
    assert_bars_equal_server(store.read(*KEY), venue.markets["BTCUSDT"].klines["1m"][:150])
    assert starts(venue) == [T0, T0 + 60 * MIN, T0 + 120 * MIN]


def test_429_drop_and_5xx_are_retried_and_the_result_is_complete(venue, tmp_path):
    venue.inject(KLINES, 2, Fault.too_many_requests(retry_after=1))
    venue.inject(KLINES, 3, Fault.drop())
    venue.inject(KLINES, 4, Fault.server_error(503))
    store = ParquetStore(tmp_path)
    r = ohlcv(venue, store)
    got = store.read(*KEY)
    assert_bars_equal_server(got, venue.markets["BTCUSDT"].klines["1m"])
    assert np.all(np.diff(got.ts) == MIN)  # no duplicates, no holes
    assert r.retries == 3
    calls = venue.calls(KLINES)
    assert [c.fault.status if c.fault else None for c in calls[:5]] == [None, 429, 0, 503, None]
    assert len({c.params["startTime"] for c in calls[1:5]}) == 1  # the same page, asked again
    gaps = np.diff([c.t for c in calls[1:5]])
    assert gaps[0] >= 1.0                      # Retry-After: 1 honoured
    assert gaps[1] >= FAST.backoff(2) and gaps[2] >= FAST.backoff(3)  # exponential back-off otherwise
    assert gaps[1] < 1.0


def test_retries_exhausted_is_a_clear_error_and_keeps_what_was_fetched(venue, tmp_path):
    for n in range(3, 3 + FAST.attempts):
        venue.inject(KLINES, n, Fault.drop())
    store = ParquetStore(tmp_path)
    with pytest.raises(DownloadError, match=r"binance fetch_ohlcv BTC/USDT 1m since 2024-01-01T02:00:00.000Z: "
                                            r"still failing after 4 attempts \(NetworkError"):
        ohlcv(venue, store, flush_s=3600.0)  # nothing flushed by time: the pages are written on the way out
    assert_bars_equal_server(store.read(*KEY), venue.markets["BTCUSDT"].klines["1m"][:120])


def test_a_fatal_error_fails_at_once_and_the_next_run_fetches_only_the_rest(venue, tmp_path):
    venue.inject(KLINES, 3, Fault.error(400, -1121, "Invalid symbol."))
    store = ParquetStore(tmp_path)
    with pytest.raises(DownloadError, match=r"BadSymbol: binance \{\"code\": -1121, \"msg\": \"Invalid symbol.\"\}"):
        ohlcv(venue, store)
    assert len(venue.calls(KLINES)) == 3  # not retried
    assert store.last_ts(*KEY) == T0 + 119 * MIN

    n_before = len(venue.calls(KLINES))
    r = ohlcv(venue, store)
    assert r.rows_added == 130
    assert starts(venue)[2:] == [T0 + 120 * MIN, T0 + 180 * MIN, T0 + 240 * MIN, T0 + 250 * MIN]
    assert len(venue.calls(KLINES)) - n_before == 4
    assert_bars_equal_server(store.read(*KEY), venue.markets["BTCUSDT"].klines["1m"])

    before = len(venue.calls(KLINES))
    assert ohlcv(venue, store).rows_added == 0  # up to date: one request that finds nothing new
    assert starts(venue)[-1] == T0 + 250 * MIN and len(venue.calls(KLINES)) == before + 1


def test_an_earlier_since_fills_the_span_before_the_stored_rows(venue, tmp_path):
    store = ParquetStore(tmp_path)
    ohlcv(venue, store, since=T0 + 100 * MIN, until=T0 + 150 * MIN)
    first = len(starts(venue))
    ohlcv(venue, store, since=T0)
    later = starts(venue)[first:]
    assert later[:2] == [T0, T0 + 60 * MIN] and T0 + 150 * MIN in later
    assert not any(T0 + 100 * MIN <= s < T0 + 150 * MIN for s in later)
    assert_bars_equal_server(store.read(*KEY), venue.markets["BTCUSDT"].klines["1m"])


def test_requests_are_spaced_by_the_rate_limit(venue, tmp_path):
    # ccxt waits rateLimit * cost before a request; Binance spot's klines cost 0.4 (weight 2 of 6000/min).
    cost = client(venue).api["public"]["get"]["klines"]["cost"]
    rate_limit_ms = 250
    ohlcv(venue, ParquetStore(tmp_path), rate_limit_ms=rate_limit_ms, page_limit=40)
    assert [r.path for r in venue.requests] == ["/api/v3/exchangeInfo"] + [KLINES] * 8
    spacing = rate_limit_ms * cost / 1000
    t = np.array([r.t for r in venue.requests])
    # ccxt spaces the moments it sends; the server sees them after a delay that varies a little (more
    # for the first request, which opens the connection), so one gap can look short by that much.
    # Over the whole run those delays do not add up.
    assert np.diff(t).min() >= 0.75 * spacing, np.diff(t)
    assert t[-1] - t[1] >= 7 * spacing - 0.010, np.diff(t)


def test_the_candle_still_open_is_never_stored(tmp_path):
    before = int(time.time() * 1000)
    today = before // DAY * DAY
    rows = make_klines(today - 9 * DAY, 10, DAY, seed=3)  # the last candle opened today
    with BinanceRestServer([SpotMarket("BTC", "USDT", klines={"1d": rows})]) as server:
        store = ParquetStore(tmp_path)
        download_ohlcv(client(server), "BTC/USDT", "1d", today - 9 * DAY, store=store, progress=False, flush_s=0)
        after = int(time.time() * 1000)
        assert server.unexpected == []
    got = store.read("binance", "BTC/USDT", "bars", "1d")
    # Everything closed when the download began is stored; nothing still open when it ended is.
    closed_before, closed_after = rows[rows[:, 0] + DAY <= before], rows[rows[:, 0] + DAY <= after]
    assert len(closed_before) == 9
    assert len(closed_before) <= len(got) <= len(closed_after)
    assert_bars_equal_server(got, closed_after[:len(got)])


def test_unknown_symbol_or_timeframe_fails_before_any_data_request(venue, tmp_path):
    store = ParquetStore(tmp_path)
    with pytest.raises(DownloadError, match=r"binance has no market 'DOGE/USDT' \(loaded market types: spot\)"):
        download_ohlcv(client(venue), "DOGE/USDT", "1m", T0, store=store, progress=False)
    with pytest.raises(DownloadError, match="binance has no '7m' candles"):
        download_ohlcv(client(venue), "BTC/USDT", "7m", T0, store=store, progress=False)
    with pytest.raises(ConfigError, match="not of the form"):
        download_ohlcv(client(venue), "BTC/USDT", "1 minute", T0, store=store, progress=False)
    assert venue.calls(KLINES) == [] and store.list() == []


def test_make_exchange_rehosts_every_rest_endpoint():
    ex = make_exchange("binance", api_url="http://127.0.0.1:9", market_types=("spot",))
    assert ex.urls["api"]["public"] == "http://127.0.0.1:9/api/v3"
    assert ex.urls["api"]["fapiPublic"] == "http://127.0.0.1:9/fapi/v1"
    assert all(u.startswith("http://127.0.0.1:9/") for u in ex.urls["api"].values())
    assert ex.enableRateLimit and ex.options["fetchMarkets"]["types"] == ["spot"]
    assert not ex.apiKey
    with pytest.raises(ConfigError, match="unknown exchange 'nosuchvenue'"):
        make_exchange("nosuchvenue")
    with pytest.raises(ConfigError, match="must look like"):
        make_exchange("binance", api_url="127.0.0.1:9")


# --- trades --------------------------------------------------------------------------------------

def test_trades_download_pages_by_id_and_equals_the_venue(venue, tmp_path):
    store = ParquetStore(tmp_path)
    agg = venue.markets["BTCUSDT"].trades
    r = trades(venue, store)
    assert_trades_equal_server(store.read(*TKEY), agg)
    assert r.rows_added == len(agg.ts) == 700
    calls = venue.calls(AGG)
    windows = [c for c in calls if "startTime" in c.params]
    pages = [int(c.params["fromId"]) for c in calls if "fromId" in c.params]
    # The first window narrows until it holds less than a page; then the ids follow one another.
    assert windows[0].params["startTime"] == str(T0) and int(windows[0].params["endTime"]) == T0 + 3_600_000
    assert all(int(c.params["endTime"]) - int(c.params["startTime"]) <= 3_600_000 for c in windows)
    assert pages == [agg.first_id + 50 * k for k in range(15)]  # 14 full pages, then an empty one


def test_trades_until_and_resume_continue_from_the_next_id(venue, tmp_path):
    store = ParquetStore(tmp_path)
    agg = venue.markets["BTCUSDT"].trades
    until = int(agg.ts[400])
    trades(venue, store, until=until)
    assert_trades_equal_server(store.read(*TKEY), agg, agg.ts < until)
    n = len(venue.calls(AGG))
    last_id = int(store.read(*TKEY).id[-1])
    trades(venue, store)
    second = venue.calls(AGG)[n:]
    assert "startTime" not in second[0].params and int(second[0].params["fromId"]) == last_id + 1
    assert all("fromId" in c.params for c in second)
    assert_trades_equal_server(store.read(*TKEY), agg)


def test_trades_since_long_before_the_first_trade_jumps_to_it(venue, tmp_path):
    store = ParquetStore(tmp_path)
    trades(venue, store, since=T0 - 30 * DAY, page_limit=1000)
    assert_trades_equal_server(store.read(*TKEY), venue.markets["BTCUSDT"].trades)
    assert len(venue.calls(AGG)) <= 4  # an empty hour, the first trade, a window, one page


def test_trades_retry_429_and_drop_mid_download(venue, tmp_path):
    venue.inject(AGG, 12, Fault.too_many_requests(retry_after=None))
    venue.inject(AGG, 14, Fault.drop())
    store = ParquetStore(tmp_path)
    r = trades(venue, store)
    assert r.retries == 2
    got = store.read(*TKEY)
    assert_trades_equal_server(got, venue.markets["BTCUSDT"].trades)
    assert len(np.unique(got.id)) == len(got)


def test_trades_time_pagination_never_splits_a_millisecond(tmp_path):
    # Sparse trades (every ~20 s, bursts of 5 in one ms): each one-hour window fits a page, so
    # Binance's aggTrades answers `since` queries from the start and paging by time is exact.
    agg = make_agg_trades(T0, 1200, seed=5, mean_gap_ms=15_000, burst_every=10, burst_size=3)
    assert agg.ts[-1] - T0 > 3 * 3_600_000
    with BinanceRestServer([SpotMarket("BTC", "USDT", trades=agg)]) as server:
        store = ParquetStore(tmp_path)
        trades(server, store, pagination="time", page_limit=1000)
        assert server.unexpected == []
        windows = [(int(c.params["startTime"]), int(c.params["endTime"])) for c in server.calls(AGG)]
    assert_trades_equal_server(store.read(*TKEY), agg)
    # A page stops before its last millisecond, which the next page starts from (a page that is all
    # one millisecond is kept whole, and the next starts after it).
    for (s0, e0), (s1, _) in zip(windows, windows[1:]):
        got = agg.ts[(agg.ts >= s0) & (agg.ts <= e0)]
        assert s1 == (got.max() if got.min() < got.max() else got.max() + 1)
    assert len(windows) >= 5


def test_id_pagination_needs_binance():
    with pytest.raises(ConfigError, match="pages by id are supported for Binance only"):
        download_trades(ccxt.kraken(), "BTC/USD", T0, store=ParquetStore("/nonexistent"), pagination="id")
