"""The seeded market simulator: determinism, the data contract, and each stylized fact, checked statistically."""
import dataclasses
import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.diagnostic import acorr_ljungbox

from bot4jax.data.simulator import SimulatedMarket, SimulatorParams, season_weight, simulate
from bot4jax.data.simulator_book import bars_from_trades
from bot4jax.data.types import validate
from bot4jax.errors import ConfigError

N_BARS = 20_000  # ~14 days of 1m bars, ~0.4 M trades: tight enough statistics, well under a second
SEED = 11


@pytest.fixture(scope="module")
def market() -> SimulatedMarket:
    return simulate(n_bars=N_BARS, timeframe="1m", seed=SEED)


@pytest.fixture(scope="module")
def returns(market) -> np.ndarray:
    """Close-to-close log returns r_t = log(close_t / close_{t-1}), t = 1..n-1."""
    return np.diff(np.log(market.bars.close))


def acf(x: np.ndarray, lags: int) -> np.ndarray:
    """Sample autocorrelations ρ_1..ρ_lags: Σ (x_t - x̄)(x_{t-k} - x̄) / Σ (x_t - x̄)²."""
    d = x - x.mean()
    den = d @ d
    return np.array([d[k:] @ d[:-k] / den for k in range(1, lags + 1)])


def ljung_box(x: np.ndarray, lags: int) -> float:
    """Q = n (n + 2) Σ_k ρ_k² / (n - k)."""
    n = len(x)
    rho = acf(x, lags)
    return n * (n + 2) * np.sum(rho ** 2 / (n - np.arange(1, lags + 1)))


def _arrays(m: SimulatedMarket) -> dict:
    out = {}
    for part in ("bars", "trades", "book"):
        data = getattr(m, part)
        out.update({f"{part}.{c}": getattr(data, c) for c in data.columns})
    out.update({f"truth.{f.name}": getattr(m.truth, f.name) for f in dataclasses.fields(m.truth)})
    return out


# --- determinism and the data contract -------------------------------------------------------------------


def test_same_seed_identical_different_seed_differs():
    a, b, c = simulate(n_bars=600, seed=3), simulate(n_bars=600, seed=3), simulate(n_bars=600, seed=4)
    arrays_a, arrays_b = _arrays(a), _arrays(b)
    for name, arr in arrays_a.items():
        np.testing.assert_array_equal(arr, arrays_b[name], err_msg=name)
    assert not np.array_equal(a.bars.close, c.bars.close)
    assert not np.array_equal(a.truth.signal, c.truth.signal)
    assert len(a.trades) != len(c.trades) or not np.array_equal(a.trades.price, c.trades.price)


def test_book_parameters_leave_the_price_path_alone():
    a = simulate(n_bars=300, seed=5)
    b = simulate(n_bars=300, seed=5, depth_size=2.0, levels=4)
    np.testing.assert_array_equal(a.bars.close, b.bars.close)
    np.testing.assert_array_equal(a.trades.amount, b.trades.amount)
    assert b.book.levels == 4


def test_outputs_validate_without_repair(market):
    for data in (market.bars, market.trades, market.book):
        checked, report = validate(data, "sim", repair=True)
        assert report.dropped == 0, str(report)
        assert len(checked) == len(data)
        validate(data, "sim")  # and the strict form raises nothing
    assert len(market.bars) == N_BARS and len(market.book) == N_BARS
    assert market.bars.ts[0] == 1_704_067_200_000  # 2024-01-01 00:00 UTC
    assert np.all(np.diff(market.bars.ts) == 60_000)
    np.testing.assert_array_equal(market.book.ts, market.bars.ts + 59_999)
    assert market.book.levels == 10
    for f in dataclasses.fields(market.truth):
        if f.name != "jump_ts":
            assert len(getattr(market.truth, f.name)) == N_BARS, f.name


def test_trade_tape_shape(market):
    t = market.trades
    per_bar = len(t) / N_BARS
    assert 10 <= per_bar <= 40
    np.testing.assert_array_equal(t.id, np.arange(1, len(t) + 1))
    assert np.all(np.diff(t.ts) >= 0)
    assert np.sum(np.diff(t.ts) == 0) > 0.05 * len(t)  # several trades share a millisecond
    assert set(np.unique(t.side)) == {-1, 1}
    tick = market.params.tick_size
    np.testing.assert_allclose(t.price / tick, np.round(t.price / tick), atol=1e-6)
    lot = market.params.lot_size
    np.testing.assert_allclose(t.amount / lot, np.round(t.amount / lot), atol=1e-6)


def test_trade_sizes_heavy_tailed(market):
    """Hill estimator of the Pareto tail index on the top 2 % of amounts: near size_tail (1.8)."""
    a = np.sort(market.trades.amount)[::-1]
    k = len(a) // 50
    hill = 1.0 / np.mean(np.log(a[:k] / a[k]))
    assert 1.4 < hill < 2.3, hill
    assert stats.kurtosis(a) > 20


def test_bid_ask_bounce(market):
    """Buys print at the ask and sells at the bid: consecutive trade price changes are negatively
    autocorrelated (Roll 1984), and within a bar buys print above sells on average."""
    t = market.trades
    dp = np.diff(t.price)
    rho1 = acf(dp, 1)[0]
    assert rho1 < -0.05, rho1
    bar = (t.ts - market.bars.ts[0]) // 60_000
    rel = t.price / market.bars.close[bar] - 1.0
    assert rel[t.side == 1].mean() > rel[t.side == -1].mean()


def _reference_bars(trades, start, dt, n, first_open):
    """Plain loop: OHLCV per bar from the trades inside it; an empty bar is flat at the previous close."""
    rows, imbalance = [], []
    i, prev_close = 0, first_open
    for b in range(n):
        end = start + (b + 1) * dt
        o = h = lo = c = prev_close
        vol = signed = 0.0
        first = True
        while i < len(trades.ts) and trades.ts[i] < end:
            px, amt = float(trades.price[i]), float(trades.amount[i])
            if first:
                o = h = lo = px
                first = False
            h, lo, c = max(h, px), min(lo, px), px
            vol += amt
            signed += int(trades.side[i]) * amt
            i += 1
        prev_close = c
        rows.append((start + b * dt, o, h, lo, c, vol))
        imbalance.append(signed / vol if vol > 0 else 0.0)
    return np.array(rows), np.array(imbalance)


@pytest.mark.parametrize("rate", [20.0, 0.8])  # dense bars, and sparse ones where many bars are empty
def test_bars_are_the_aggregation_of_trades(market, rate):
    m = market if rate == 20.0 else simulate(n_bars=500, seed=2, trades_per_minute=rate)
    n = 400
    trades = m.trades
    start = int(m.bars.ts[0])
    first_open = round(m.params.price0 / m.params.tick_size) * m.params.tick_size
    ref, ref_imb = _reference_bars(trades, start, 60_000, n, first_open)
    if rate != 20.0:
        assert (ref[:, 5] == 0).sum() > 50  # the empty-bar path is exercised
    bars = m.bars
    np.testing.assert_array_equal(bars.ts[:n], ref[:, 0].astype(np.int64))
    for j, name in enumerate(("open", "high", "low", "close"), start=1):
        np.testing.assert_array_equal(getattr(bars, name)[:n], ref[:, j], err_msg=name)
    np.testing.assert_allclose(bars.volume[:n], ref[:, 5], rtol=1e-12, atol=0)
    np.testing.assert_allclose(m.truth.imbalance[:n], ref_imb, rtol=1e-12, atol=1e-15)
    # The public aggregation function agrees with the bars simulate returned, over all bars.
    again, imb = bars_from_trades(trades, start, 60_000, len(bars), first_open)
    for name in bars.columns:
        np.testing.assert_array_equal(getattr(again, name), getattr(bars, name), err_msg=name)
    np.testing.assert_array_equal(imb, m.truth.imbalance)


def test_bars_from_trades_rejects_trades_outside_the_bars(market):
    with pytest.raises(ValueError, match="outside"):
        bars_from_trades(market.trades, int(market.bars.ts[0]), 60_000, 10, 1.0)


# --- stylized facts of returns ---------------------------------------------------------------------------


def test_fat_tails(returns):
    excess = stats.kurtosis(returns)  # Fisher: 0 for a normal
    assert excess > 3.0, excess
    # and not just a handful of outliers: the Jarque-Bera statistic rejects normality overwhelmingly
    assert stats.jarque_bera(returns).pvalue < 1e-12


def test_volatility_clustering(returns):
    """Squared returns: autocorrelations positive over many lags, Ljung-Box Q(20) far beyond χ²(20)."""
    sq = returns ** 2
    rho = acf(sq, 50)
    assert np.all(rho[:20] > 0), rho[:20]
    assert rho[:50].mean() > 0.03, rho[:50].mean()
    q = ljung_box(sq, 20)
    ref = acorr_ljungbox(sq, lags=[20])
    np.testing.assert_allclose(q, float(ref["lb_stat"].iloc[0]), rtol=1e-8)
    assert stats.chi2.sf(q, 20) < 1e-10
    # 2 standard errors of a white-noise autocorrelation: many lags are individually significant
    assert np.sum(rho > 2 / math.sqrt(len(sq))) >= 40


def test_raw_returns_nearly_uncorrelated_with_small_momentum(returns):
    rho = acf(returns, 10)
    assert np.all(np.abs(rho) < 0.1), rho
    assert ljung_box(returns, 20) < 0.2 * ljung_box(returns ** 2, 20)
    # The persistent informed signal leaves a weak positive lag-1 autocorrelation (a few percent).
    se = 1 / math.sqrt(len(returns))
    assert 2 * se < rho[0] < 0.08, (rho[0], se)


def test_conditional_variance_explains_squared_returns(market, returns):
    var = market.truth.variance[1:]
    assert stats.spearmanr(var, returns ** 2).statistic > 0.2


# --- informed order flow ---------------------------------------------------------------------------------


def test_order_flow_imbalance_leads_the_next_return(market, returns):
    imb = market.truth.imbalance[1:-1]  # imbalance of bar t
    nxt = returns[1:]  # r_{t+1}
    rho = np.corrcoef(imb, nxt)[0, 1]
    z = rho * math.sqrt(len(nxt))
    assert 0.08 < rho < 0.25 and z > 5, (rho, z)
    hit = np.mean(np.sign(imb) == np.sign(nxt))
    assert 0.525 < hit < 0.60, hit
    # The flow is driven by the latent signal.
    assert np.corrcoef(market.truth.signal, market.truth.imbalance)[0, 1] > 0.5
    # Bars where flow and price disagree are not ruled out: the signal is real but weak.
    assert np.mean(np.sign(imb) != np.sign(nxt)) > 0.4


def test_trivial_flow_rule_does_not_beat_the_spread_by_much(market, returns):
    """Following the sign of the last bar's imbalance earns a little more than the spread it pays, and
    loses after a taker fee of 4 bps a side: realistic, not a money machine."""
    pos = np.sign(market.truth.imbalance[1:-1])
    gross = pos * returns[1:]
    turnover = np.abs(np.diff(np.concatenate([[0.0], pos])))
    spread_cost = turnover * market.truth.half_spread[1:-1]
    fee_cost = turnover * 4e-4
    assert gross.mean() > 0
    assert (gross - spread_cost - fee_cost).mean() < 0


# --- intraday pattern, jumps, regimes --------------------------------------------------------------------


def test_intraday_volume_pattern(market):
    hour = (market.bars.ts // 3_600_000) % 24
    peak = np.isin(hour, [13, 14, 15, 16])
    trough = np.isin(hour, [1, 2, 3, 4])
    vol = market.bars.volume
    count = np.bincount((market.trades.ts - market.bars.ts[0]) // 60_000, minlength=N_BARS)
    assert np.median(vol[peak]) > 1.5 * np.median(vol[trough])
    assert count[peak].mean() > 1.5 * count[trough].mean()
    w = season_weight(np.array([market.bars.ts[0] + 15 * 3_600_000, market.bars.ts[0] + 3 * 3_600_000]),
                      market.params)
    assert w[0] > 1.5 * w[1]


def test_jumps_in_truth_move_prices(market, returns):
    t = market.truth
    jumped = t.jump != 0
    assert 5 <= jumped.sum() == len(t.jump_ts)
    bar_open = market.bars.ts[jumped]
    assert np.all((t.jump_ts >= bar_open) & (t.jump_ts < bar_open + 60_000))
    in_returns = jumped[1:]  # returns[i] is bar i + 1
    r, size = returns[in_returns], t.jump[1:][in_returns]
    # the bar return carries the jump: correlated with its size and far larger than a typical bar
    assert np.corrcoef(r, size)[0, 1] > 0.7
    assert np.median(np.abs(r)) > 3 * np.median(np.abs(returns))


def test_regimes_switch_and_scale_volatility(market, returns):
    reg = market.truth.regime
    assert set(np.unique(reg)) == {0, 1}
    switches = np.count_nonzero(np.diff(reg))
    assert switches >= 4
    # spells are persistent: far fewer switches than a coin flip per bar would give
    assert switches < 0.01 * len(reg)
    calm, turb = returns[reg[1:] == 0], returns[reg[1:] == 1]
    ratio = np.median(turb ** 2) / np.median(calm ** 2)
    p = market.params
    assert ratio > 0.5 * p.turbulent_var_mult, ratio


# --- book ------------------------------------------------------------------------------------------------


def test_book_sanity(market):
    bk, p = market.book, market.params
    assert np.all(bk.bid_px[:, 0] < bk.ask_px[:, 0])
    for px in (bk.bid_px, bk.ask_px):
        assert np.all(np.isfinite(px))
        np.testing.assert_allclose(px / p.tick_size, np.round(px / p.tick_size), atol=1e-6)
    assert np.all(np.diff(bk.bid_px, axis=1) < 0) and np.all(np.diff(bk.ask_px, axis=1) > 0)
    assert np.all(bk.bid_sz > 0) and np.all(bk.ask_sz > 0)
    assert np.all(np.diff(bk.bid_sz.mean(axis=0)) > 0) and np.all(np.diff(bk.ask_sz.mean(axis=0)) > 0)
    # the mid at the snapshot lies inside the touch
    assert np.all(bk.bid_px[:, 0] <= market.truth.mid) and np.all(market.truth.mid <= bk.ask_px[:, 0])


def test_book_spread_widens_with_volatility_and_depth_leans_with_flow(market):
    bk, t = market.book, market.truth
    spread = bk.ask_px[:, 0] - bk.bid_px[:, 0]
    assert stats.spearmanr(spread, t.variance).statistic > 0.5
    bid, ask = bk.bid_sz.sum(axis=1), bk.ask_sz.sum(axis=1)
    depth_imb = (bid - ask) / (bid + ask)
    assert np.corrcoef(depth_imb, t.signal)[0, 1] > 0.2
    assert np.corrcoef(depth_imb, t.imbalance)[0, 1] > 0.1


# --- parameters and errors -------------------------------------------------------------------------------


def test_overrides_and_timeframes():
    m = simulate(n_bars=200, timeframe="5m", seed=1, trades_per_minute=2.0, levels=3)
    assert m.params.trades_per_minute == 2.0 and m.params.levels == 3 and m.book.levels == 3
    assert np.all(np.diff(m.bars.ts) == 300_000)
    assert 5 < len(m.trades) / 200 < 15  # 2 per minute on 5 m bars
    base = SimulatorParams(daily_vol=0.05)
    assert simulate(n_bars=10, params=base, seed=1).params.daily_vol == 0.05
    single = simulate(n_bars=1)
    assert len(single.bars) == 1 and len(single.book) == 1


@pytest.mark.parametrize("kwargs, match", [
    (dict(no_such_knob=1), "unknown simulator parameter"),
    (dict(garch_alpha=0.2, garch_beta=0.85), "garch_alpha \\+ garch_beta < 1"),
    (dict(t_dof=2.0), "t_dof"),
    (dict(signal_impact_now=0.8, signal_impact_next=0.8), "signal_impact"),
    (dict(tick_size=-1.0), "tick_size"),
    (dict(timeframe="1x"), "timeframe"),
    (dict(n_bars=0), "n_bars"),
])
def test_bad_parameters_raise_config_error(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        simulate(**{"n_bars": 10, **kwargs})


def test_every_parameter_is_documented():
    import inspect

    import bot4jax.data.simulator as sim

    src = inspect.getsource(sim.SimulatorParams)
    for f in dataclasses.fields(SimulatorParams):
        line = next(i for i, s in enumerate(src.splitlines()) if s.strip().startswith(f"{f.name}:"))
        assert src.splitlines()[line + 1].strip().startswith('"""'), f"{f.name} has no docstring"
