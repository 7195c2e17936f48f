"""validate(): one test per kind of bad row; each error names source, row and field, and each repair
drops exactly the bad rows with a count per reason. A Hypothesis property test injects random
corruptions into valid bars and checks that repair drops exactly the corrupted rows."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot4jax.data import Bars, Book, DataError, Repair, Trades, validate
from bot4jax.data.types import take

SRC = "market.csv"


def make_bars(n: int, seed: int = 0) -> Bars:
    """Valid bars: a positive random walk with high > max(open, close) and low < min(open, close)."""
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.r_[100.0, close[:-1]]
    high = np.maximum(open_, close) * (1 + rng.uniform(0.001, 0.01, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0.001, 0.01, n))
    ts = 1_600_000_000_000 + 60_000 * np.arange(n)
    return Bars(ts, open_, high, low, close, rng.uniform(0, 10, n))


def make_trades(n: int = 8) -> Trades:
    ts = 1_600_000_000_000 + np.array([0, 0, 5, 9, 9, 9, 12, 20])[:n]  # ties are fine for trades
    return Trades(ts, np.linspace(10, 11, n), np.full(n, 0.5), np.where(np.arange(n) % 2, 1, -1),
                  np.arange(100, 100 + n))


def make_book(n: int = 6, levels: int = 3) -> Book:
    mid = 100 + np.arange(n, dtype=float)[:, None]
    step = np.arange(levels, dtype=float)[None, :] * 0.1
    ts = 1_600_000_000_000 + 100 * np.arange(n)
    return Book(ts, mid - 0.05 - step, np.ones((n, levels)), mid + 0.05 + step, np.ones((n, levels)))


def with_values(data, field: str, index, value):
    arr = getattr(data, field).copy()
    arr[index] = value
    return type(data)(**{**{c: getattr(data, c) for c in data.columns}, field: arr})


def assert_error(data, row: int, field: str, text: str, rows=None):
    with pytest.raises(DataError) as info:
        validate(data, SRC, rows=rows)
    e = info.value
    assert (e.source, e.row, e.field) == (SRC, row, field)
    msg = str(e)
    assert msg.startswith(f"{SRC}, row {row}, field '{field}': ") and text in msg


def assert_repair(data, bad_rows, reasons: dict):
    fixed, rep = validate(data, SRC, repair=True)
    keep = np.setdiff1d(np.arange(len(data)), bad_rows)
    assert rep == Repair(SRC, len(data), len(bad_rows), reasons)
    for c in data.columns:
        np.testing.assert_array_equal(getattr(fixed, c), getattr(take(data, keep), c))
    assert f"dropped {len(bad_rows)} of {len(data)} rows" in str(rep)


def test_valid_data_passes_unchanged():
    for data in (make_bars(50), make_trades(), make_book()):
        out, rep = validate(data, SRC)
        assert out is data and rep == Repair(SRC, len(data)) and "all valid" in str(rep)
        out, rep = validate(data, SRC, repair=True)
        assert out is data and rep.dropped == 0


def test_timestamp_going_back_in_time():
    bars = with_values(make_bars(10), "ts", 4, 1_600_000_000_000 + 60_000 * 2 + 1)
    assert_error(bars, 5, "ts", "timestamp goes back in time")
    assert_repair(bars, [4], {"ts out of order": 1})
    trades = with_values(make_trades(), "ts", 5, 1_600_000_000_000 + 4)  # 9, 9 -> 4 < 9
    assert_error(trades, 6, "ts", "goes back in time")
    assert_repair(trades, [5], {"ts out of order": 1})


def test_duplicate_timestamps():
    bars = with_values(make_bars(10), "ts", [3, 7], [1_600_000_000_000 + 60_000 * 2,
                                                      1_600_000_000_000 + 60_000 * 6])
    assert_error(bars, 4, "ts", "duplicate timestamp")
    assert_repair(bars, [3, 7], {"ts duplicate timestamp": 2})
    # a duplicate of the last good row counts as a duplicate even after an out-of-order row
    ts = 1_600_000_000_000 + np.array([0, 10, 5, 10, 20]) * 60_000
    assert_repair(with_values(make_bars(5), "ts", slice(None), ts), [2, 3],
                  {"ts out of order": 1, "ts duplicate timestamp": 1})
    validate(make_trades(), SRC)  # trades may share a millisecond


def test_rows_argument_maps_errors_to_source_rows():
    bars = with_values(make_bars(6), "volume", 1, -1.0)
    assert_error(bars, 5, "volume", "negative volume", rows=np.array([6, 5, 4, 3, 2, 1]))


@pytest.mark.parametrize("field", ["open", "high", "low", "close"])
def test_nan_price(field):
    bars = with_values(make_bars(8), field, 2, np.nan)
    assert_error(bars, 3, field, "not a finite number")
    assert_repair(bars, [2], {f"{field} not a finite number": 1})


def test_nan_volume():
    bars = with_values(make_bars(8), "volume", 6, np.nan)
    assert_error(bars, 7, "volume", "not a finite number")
    assert_repair(bars, [6], {"volume not a finite number": 1})


def test_infinite_price():
    bars = with_values(make_bars(8), "close", [1, 5], [np.inf, -np.inf])
    assert_error(bars, 2, "close", "not a finite number")
    assert_repair(bars, [1, 5], {"close not a finite number": 2})
    trades = with_values(make_trades(), "price", 3, np.inf)
    assert_error(trades, 4, "price", "not a finite number")
    assert_repair(trades, [3], {"price not a finite number": 1})


def test_zero_price():
    bars = with_values(make_bars(8), "low", 3, 0.0)
    assert_error(bars, 4, "low", "must be positive (value 0.0)")
    assert_repair(bars, [3], {"low must be positive": 1})
    trades = with_values(make_trades(), "price", 0, 0.0)
    assert_error(trades, 1, "price", "must be positive")
    assert_repair(trades, [0], {"price must be positive": 1})


def test_negative_price():
    bars = make_bars(8)
    neg = with_values(with_values(with_values(bars, "open", 4, -5.0), "low", 4, -6.0), "close", 4, -5.5)
    assert_error(neg, 5, "open", "must be positive")
    assert_repair(neg, [4], {"open must be positive": 1, "low must be positive": 1,
                             "close must be positive": 1})


def test_high_below_low():
    bars = make_bars(8)
    swapped = with_values(with_values(bars, "high", 6, bars.low[6]), "low", 6, bars.high[6])
    assert_error(swapped, 7, "high", "high is below low")
    # swapping also puts high below open/close and low above them: one row, three reasons
    assert_repair(swapped, [6], {"high high is below low": 1, "high high is below open or close": 1,
                                 "low low is above open or close": 1})


def test_high_below_open_or_close():
    bars = make_bars(8)
    top = np.maximum(bars.open[2], bars.close[2])
    low_high = (top + np.minimum(bars.open[2], bars.close[2])) / 2
    bad = with_values(bars, "high", 2, low_high)
    assert_error(bad, 3, "high", "high is below open or close")
    assert_repair(bad, [2], {"high high is below open or close": 1})
    bottom = with_values(bars, "low", 5, np.maximum(bars.open[5], bars.close[5]))
    assert_error(bottom, 6, "low", "low is above open or close")
    assert_repair(bottom, [5], {"low low is above open or close": 1})


def test_negative_volume():
    bars = with_values(make_bars(8), "volume", [0, 7], -0.5)
    assert_error(bars, 1, "volume", "negative volume (value -0.5)")
    assert_repair(bars, [0, 7], {"volume negative volume": 2})
    validate(with_values(make_bars(8), "volume", 3, 0.0), SRC)  # a bar without trades is fine


def test_bad_trade_side():
    trades = with_values(make_trades(), "side", [2, 6], [0, 2])
    assert_error(trades, 3, "side", "must be +1 (buy) or -1 (sell)")
    assert_repair(trades, [2, 6], {"side must be +1 (buy) or -1 (sell)": 2})


def test_bad_trade_amount():
    trades = with_values(make_trades(), "amount", 1, 0.0)
    assert_error(trades, 2, "amount", "must be positive")
    assert_repair(trades, [1], {"amount must be positive": 1})


def test_crossed_book():
    book = make_book()
    crossed = with_values(book, "bid_px", (3, 0), book.ask_px[3, 0] + 0.01)
    assert_error(crossed, 4, "bid_px", "crossed book")
    assert_repair(crossed, [3], {"bid_px crossed book: best bid at or above best ask": 1})
    locked = with_values(book, "bid_px", (1, 0), book.ask_px[1, 0])
    assert_error(locked, 2, "bid_px", "crossed book")


def test_book_missing_levels_are_fine_but_bad_sizes_are_not():
    book = make_book()
    thin = with_values(with_values(book, "ask_px", (2, 2), np.nan), "ask_sz", (2, 2), 0.0)
    validate(thin, SRC)
    bad = with_values(book, "bid_sz", (4, 1), -1.0)
    assert_error(bad, 5, "bid_sz", "negative or non-finite size")
    nan_px = with_values(book, "ask_px", (0, 1), np.nan)
    assert_error(nan_px, 1, "ask_px", "not a finite positive price")


def test_negative_timestamp():
    bars = with_values(make_bars(4), "ts", 0, -60_000)
    assert_error(bars, 1, "ts", "negative timestamp")
    assert_repair(bars, [0], {"ts negative timestamp": 1})


def test_first_problem_in_row_order_is_reported():
    bars = with_values(with_values(make_bars(10), "volume", 7, -1.0), "close", 4, np.nan)
    assert_error(bars, 5, "close", "not a finite number")


# -- property: repair drops exactly the corrupted rows ---------------------------------------------

PRICE_FIELDS = ("open", "high", "low", "close")
CORRUPTIONS = ("nan", "inf", "zero", "negative", "high_below_low", "negative_volume", "duplicate_ts",
               "back_in_time")


def corrupt(bars: Bars, plan: dict[int, tuple[str, int]]) -> Bars:
    """Apply one corruption per planned row; timestamp corruptions refer to the last clean row."""
    cols = {c: getattr(bars, c).copy() for c in bars.columns}
    for i in sorted(plan):
        kind, pick = plan[i]
        field = PRICE_FIELDS[pick % 4]
        if kind == "nan":
            cols[(*PRICE_FIELDS, "volume")[pick % 5]][i] = np.nan
        elif kind == "inf":
            cols[field][i] = np.inf if pick % 2 else -np.inf
        elif kind == "zero":
            cols[field][i] = 0.0
        elif kind == "negative":
            cols[field][i] = -cols[field][i]
        elif kind == "high_below_low":
            cols["high"][i], cols["low"][i] = cols["low"][i], cols["high"][i]
        elif kind == "negative_volume":
            cols["volume"][i] = -1.0 - pick
        else:
            clean = [k for k in range(i) if k not in plan]
            last = bars.ts[clean[-1]]
            cols["ts"][i] = last if kind == "duplicate_ts" else last - 1 - pick
    return Bars(**cols)


@st.composite
def corrupted_bars(draw):
    n = draw(st.integers(2, 60))
    bars = make_bars(n, seed=draw(st.integers(0, 2**16)))
    rows = draw(st.sets(st.integers(0, n - 1), max_size=n))
    plan = {}
    for i in sorted(rows):
        kind = draw(st.sampled_from(CORRUPTIONS))
        if kind in ("duplicate_ts", "back_in_time") and not any(k not in plan for k in range(i)):
            kind = "nan"  # a time corruption needs an earlier clean row to be out of order against
        plan[i] = (kind, draw(st.integers(0, 1000)))
    return bars, plan


@settings(max_examples=150, deadline=None)
@given(corrupted_bars())
def test_repair_drops_exactly_the_corrupted_rows(case):
    bars, plan = case
    bad = corrupt(bars, plan)
    fixed, rep = validate(bad, SRC, repair=True)
    clean = np.array([i for i in range(len(bars)) if i not in plan], dtype=int)
    assert rep.rows_in == len(bars) and rep.dropped == len(plan)
    assert sum(rep.reasons.values()) >= len(plan)
    for c in bars.columns:
        np.testing.assert_array_equal(getattr(fixed, c), getattr(bars, c)[clean])
    if plan:
        first = min(plan)
        with pytest.raises(DataError) as info:
            validate(bad, SRC)
        assert info.value.row == first + 1
    time_kinds = [k for k, _ in plan.values() if k in ("duplicate_ts", "back_in_time")]
    assert rep.reasons.get("ts duplicate timestamp", 0) == time_kinds.count("duplicate_ts")
    assert rep.reasons.get("ts out of order", 0) == time_kinds.count("back_in_time")
