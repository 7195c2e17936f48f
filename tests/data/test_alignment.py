"""Market data columns are 64-byte aligned, so JAX on CPU reads them in place instead of copying."""
import numpy as np
import pytest

from bot4jax.data import Bars, Book, Trades, aligned, load
from bot4jax.data.types import ALIGNMENT


def _misaligned(values, dtype=np.float64):
    """A copy of `values` whose data starts 8 bytes past a 64-byte boundary."""
    values = np.asarray(values, dtype)
    raw = np.empty(values.nbytes + 2 * ALIGNMENT, np.uint8)
    start = -raw.ctypes.data % ALIGNMENT + 8
    out = raw[start:start + values.nbytes].view(dtype).reshape(values.shape)
    out[...] = values
    return out


def _is_aligned(a):
    return a.size == 0 or (a.flags.c_contiguous and a.ctypes.data % ALIGNMENT == 0)


@pytest.mark.parametrize("n", [0, 1, 7, 1000])
def test_every_column_is_aligned_and_keeps_its_values(n):
    rng = np.random.default_rng(n)
    price = 100.0 + rng.random(n)
    ts = np.arange(n, dtype=np.int64) * 60_000
    bars = Bars(ts=_misaligned(ts, np.int64), open=_misaligned(price), high=_misaligned(price + 1),
                low=_misaligned(price - 1), close=_misaligned(price), volume=_misaligned(price))
    trades = Trades(ts=_misaligned(ts, np.int64), price=_misaligned(price),
                    amount=_misaligned(price), side=np.ones(n, np.int8))
    px = _misaligned(np.stack([price, price + 1], axis=1))
    book = Book(ts=ts, bid_px=px, bid_sz=px, ask_px=px + 2, ask_sz=px)
    for data in (bars, trades, book):
        for name in data.columns:
            assert _is_aligned(getattr(data, name)), (type(data).__name__, name)
    np.testing.assert_array_equal(bars.close, price)
    np.testing.assert_array_equal(bars.ts, ts)
    np.testing.assert_array_equal(book.ask_px, np.stack([price + 2, price + 3], axis=1))


def test_an_aligned_array_is_not_copied_and_a_strided_one_is():
    a = aligned(np.arange(10.0))
    assert aligned(a) is a
    strided = aligned(np.arange(20.0))[::2]
    b = aligned(strided)
    assert b is not strided and _is_aligned(b)
    np.testing.assert_array_equal(b, np.arange(0.0, 20.0, 2.0))


def test_loaded_columns_reach_jax_without_a_copy(tmp_path):
    from bot4jax.jaxcfg import jax

    path = tmp_path / "bars.csv"
    rows = "\n".join(f"{1_700_000_000_000 + 60_000 * i},{100 + i},{101 + i},{99 + i},{100.5 + i},{i}"
                     for i in range(50))
    path.write_text("timestamp,open,high,low,close,volume\n" + rows + "\n")
    bars = load(path)
    assert _is_aligned(bars.close)
    on_device = jax.device_put(bars.close, may_alias=True)
    assert on_device.unsafe_buffer_pointer() == bars.close.ctypes.data
    # The check can fail: an array 8 bytes off the boundary is copied.
    off = _misaligned(bars.close)
    assert jax.device_put(off, may_alias=True).unsafe_buffer_pointer() != off.ctypes.data
