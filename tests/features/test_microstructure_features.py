"""The 21 features on one bar grid (`all_features`), on simulated and real markets.

- the registry lists 21 features with formula, paper and units, and the public names have the
  issue's signatures;
- every column is (n_bars,), defined after its warm-up, and causal: the features of the first bars
  do not change when later bars, trades and books are added;
- columns equal the public functions fed the same per-bar inputs, and the VPIN column equals the
  streaming kernel run over the bars;
- on the simulator, where the book leans with the informed flow, the book features track it;
- on the real Binance capture (trades and L2 book) every column has finite values within its bounds,
  and the spot and perpetual books give an information share in [0, 1].
"""
import inspect
from pathlib import Path

import numpy as np
import pytest

from bot4jax.data.simulator import simulate
from bot4jax.data.simulator_book import bars_from_trades
from bot4jax.data.types import take
from bot4jax.features import microstructure as ms
from bot4jax.kernels import microstructure_nb as nb

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
W = 60
OPTIONS = dict(window=W, vpin_window=10)


# The simulated market has the size of the real capture below (347 one-second bars, ~10k trades, 10
# book levels), so both run the same compiled programs.
N_BARS = 347


@pytest.fixture(scope="module")
def market():
    m = simulate(n_bars=N_BARS, timeframe="1s", seed=3, trades_per_minute=1_500.0)
    bucket = float(m.bars.volume.sum()) / 40.5
    return m, bucket, ms.all_features(m.bars, m.trades, m.book, bucket_volume=bucket, **OPTIONS)


def test_registry_and_public_names():
    assert ms.N_FEATURES == len(ms.FEATURES) == 21
    assert len(ms.COLUMNS) == len(set(ms.COLUMNS)) == 23
    for f in ms.FEATURES.values():
        assert f.formula and f.paper and f.units and set(f.needs) <= {"bars", "trades", "book"}
    assert str(inspect.signature(ms.roll_spread)) == "(price, window=None)"
    assert str(inspect.signature(ms.kyle_lambda)) == "(price_change, signed_volume, window=None)"
    assert str(inspect.signature(ms.vpin)) == "(price, volume, bucket_volume, window=50)"


def test_every_column_is_defined_after_the_warm_up(market):
    m, _, f = market
    assert set(f) == set(ms.COLUMNS)
    for name, col in f.items():
        assert col.shape == (len(m.bars),) and col.dtype == np.float64, name
        assert np.isnan(col[:W - 1]).all() or name in ("depth_imbalance", "microprice", "quoted_spread"), name
        share = np.isfinite(col[2 * W:]).mean()
        # Roll is undefined where the autocovariance is positive, VPIN until 10 buckets are full,
        # the decomposition until 10 trades are in the window
        assert share > (0.6 if name in ("roll_spread", "vpin") else 0.85), (name, share)
    assert np.all(np.abs(f["depth_imbalance"]) <= 1) and np.all(np.abs(f["trade_flow_imbalance"][W:]) <= 1)
    v = f["vpin"][np.isfinite(f["vpin"])]
    assert np.all((v >= 0) & (v <= 1))
    total = f["spread_adverse_selection"] + f["spread_inventory"] + f["spread_order_processing"]
    np.testing.assert_allclose(total[np.isfinite(total)], 1.0, atol=1e-9)


def test_features_are_causal(market):
    m, bucket, f = market
    k = 330   # same padded shapes: no new compile
    head = ms.all_features(take(m.bars, slice(0, k)), m.trades, m.book, bucket_volume=bucket, **OPTIONS)
    for name in ms.COLUMNS:
        np.testing.assert_allclose(head[name], f[name][:k], rtol=1e-9, atol=1e-15, err_msg=name)


def test_columns_equal_the_public_functions(market):
    m, bucket, f = market
    bars, trades = m.bars, m.trades
    close = bars.close
    bi = (trades.ts - bars.ts[0]) // 1000
    signed = np.bincount(bi, trades.side * trades.amount, minlength=len(bars))
    np.testing.assert_allclose(f["roll_spread"], ms.roll_spread(np.log(close), W), rtol=1e-9)
    np.testing.assert_allclose(f["kyle_lambda"], ms.kyle_lambda(np.diff(close, prepend=np.nan), signed, W),
                               rtol=1e-9)
    np.testing.assert_allclose(f["realized_variance"], ms.realized_variance(close, W), rtol=1e-9)
    np.testing.assert_allclose(f["depth_imbalance"], ms.depth_imbalance(m.book.bid_sz, m.book.ask_sz, 5))
    vp = ms.vpin_buckets(close, bars.volume, bucket, 10)
    done = np.searchsorted(np.asarray(vp.end_index), np.arange(len(bars)), side="right")
    np.testing.assert_allclose(f["vpin"], np.where(done > 0, np.asarray(vp.vpin)[np.maximum(done - 1, 0)], np.nan))
    stream = nb.vpin_run_nb(nb.vpin_init(bucket, 10, 1000), close, bars.volume, np.empty(len(bars)))
    np.testing.assert_allclose(f["vpin"], stream, rtol=1e-9)


def test_book_features_track_the_informed_flow(market):
    m, _, f = market
    # the simulator leans book depth with the informed signal: the depth imbalance and the micro-price
    # follow it closely (the trade-based features carry it more weakly at one-second bars)
    assert np.corrcoef(f["depth_imbalance"], m.truth.signal)[0, 1] > 0.5
    assert np.corrcoef(f["microprice"], m.truth.signal)[0, 1] > 0.3


def test_features_without_trades_or_book(market):
    m, bucket, f = market
    bars_only = ms.all_features(m.bars, bucket_volume=bucket, **OPTIONS)
    assert set(bars_only) == {name for feat in ms.FEATURES.values() if feat.needs == ("bars",)
                              for name in feat.columns}
    np.testing.assert_allclose(bars_only["vpin"], f["vpin"])


def test_bad_input_is_refused(market):
    m, bucket, _ = market
    with pytest.raises(ValueError, match="needs at least 2 bars"):
        ms.all_features(take(m.bars, slice(0, 1)))
    with pytest.raises(ValueError, match="window must be an integer >= 3"):
        ms.all_features(m.bars, window=2)
    with pytest.raises(ValueError, match="levels=20 but the book has 10 levels"):
        ms.all_features(m.bars, book=m.book, levels=20)
    with pytest.raises(ValueError, match=rf"other_price must have shape \({N_BARS},\)"):
        ms.all_features(m.bars, book=m.book, other_price=np.ones(5))
    gappy = take(m.bars, np.r_[0:10, 11:50])
    with pytest.raises(ValueError, match="regular 1000 ms grid: bar 10 opens at .* 2000 ms after"):
        ms.all_features(gappy)
    flat = take(m.bars, slice(0, 50))
    flat = type(flat)(flat.ts, flat.open, flat.high, flat.low, flat.close, np.zeros(50))
    with pytest.raises(ValueError, match="bucket_volume must be a finite number > 0"):
        ms.all_features(flat)


# ---- real data ---------------------------------------------------------------------------------

def _capture(name):
    path = DATA / name
    if not path.exists():
        pytest.skip(f"{path} not present")
    from bot4jax.data.loaders import load
    return load(path, kind="trades"), load(path, kind="book")


@pytest.fixture(scope="module")
def spot():
    return _capture("binance_spot_BTCUSDT_20240808_ws.jsonl.gz")


def _one_second_bars(trades):
    start = int(trades.ts[0] // 1000 * 1000)
    n = int((trades.ts[-1] - start) // 1000) + 1
    return bars_from_trades(trades, start, 1000, n, float(trades.price[0]))[0]


BOUNDS = {"vpin": (0, 1), "depth_imbalance": (-1, 1), "trade_flow_imbalance": (-1, 1), "information_share": (0, 1),
          "quoted_spread": (0, 0.01), "effective_spread": (-0.01, 0.01), "trade_intensity": (0, 1000)}


def test_real_capture_gives_finite_features(spot):
    trades, book = spot
    bars = _one_second_bars(trades)
    assert len(bars) == N_BARS
    f = ms.all_features(bars, trades, book, bucket_volume=float(bars.volume.sum()) / 40.5, **OPTIONS)
    for name, col in f.items():
        finite = col[np.isfinite(col)]
        assert finite.size > 0.3 * len(bars), (name, finite.size)
        lo, hi = BOUNDS.get(name, (-np.inf, np.inf))
        assert np.all((finite >= lo) & (finite <= hi)), name
    assert np.nanmedian(f["quoted_spread"]) < 1e-5     # BTCUSDT spot: a one-tick spread of 0.01 on 61,800


def test_real_spot_and_perpetual_information_share(spot):
    spot = spot[1]
    _, perp = _capture("binance_usdm_BTCUSDT_20240808_ws.jsonl.gz")
    start = max(spot.ts[0], perp.ts[0]) // 1000 * 1000 + 1000
    grid = np.arange(start, min(spot.ts[-1], perp.ts[-1]), 1000)

    def mids(book):
        row = np.searchsorted(book.ts, grid, side="right") - 1
        return 0.5 * (book.bid_px[row, 0] + book.ask_px[row, 0])

    share = ms.information_share(mids(spot), mids(perp), lags=2)
    for x in share:
        assert 0.0 <= float(x) <= 1.0
    assert float(share.lower) <= float(share.upper)
