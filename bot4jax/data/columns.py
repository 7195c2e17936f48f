"""Column conversions for the loaders: text, numbers and dates to typed NumPy columns.

Each converter returns (values, bad-row mask or None, reason), so the loader can name the rows that
failed and either raise or drop them.
"""
from __future__ import annotations

import warnings
from datetime import datetime, timedelta, timezone

import numpy as np

_BUY = ["buy", "b", "1", "+1", "1.0"]
_SELL = ["sell", "s", "-1", "-1.0"]
_TRUE = ["true", "t", "1", "1.0", "yes", "y"]
_FALSE = ["false", "f", "0", "0.0", "no", "n"]
# Tried in order after ISO 8601 (datetime.fromisoformat); day-first / month-first layouts such as
# 01/02/2020 are left out on purpose: they cannot be told apart.
_DATE_FORMATS = ("%Y-%m-%d %I-%p", "%Y-%m-%d %I %p", "%Y-%m-%d %I:%M %p", "%Y-%m-%d %I:%M:%S %p",
                 "%Y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M", "%Y/%m/%d", "%Y.%m.%d %H:%M:%S",
                 "%Y.%m.%d %H:%M", "%Y.%m.%d", "%d %b %Y %H:%M:%S", "%d %b %Y", "%b %d, %Y")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
def object_array(values) -> np.ndarray:
    return np.fromiter(values, dtype=object, count=len(values))



def is_number(s) -> bool:
    try:
        float(s)
        return True
    except (TypeError, ValueError):
        return False


def to_float(values: np.ndarray):
    if values.dtype.kind in "fiu":
        return values.astype(np.float64), None, ""
    if values.dtype.kind != "b":
        try:
            out = values.astype(np.float64)  # parses strings; None would become NaN, bools 1.0
            if values.dtype.kind != "O" or set(map(type, values.tolist())) <= {str, int, float}:
                return out, None, ""
        except (TypeError, ValueError):
            pass
    out, bad = np.full(len(values), np.nan), np.zeros(len(values), bool)
    for i, v in enumerate(values.tolist()):
        try:
            if v is None or isinstance(v, bool):
                raise TypeError
            out[i] = float(v)
        except (TypeError, ValueError):
            bad[i] = True
    return out, bad, "not a number"


def _ms_from_int(x: np.ndarray) -> np.ndarray:
    a, out = np.abs(x), x.copy()
    out[a < 10**11] *= 1000
    out[(a >= 10**14) & (a < 10**17)] //= 1000
    out[a >= 10**17] //= 1_000_000
    return out


def _ms_from_float(x: np.ndarray):
    a = np.abs(x)
    bad = ~np.isfinite(x) | (a >= 9.2e18)
    out = np.zeros(len(x), np.int64)
    for lo, hi, f in ((0, 1e11, lambda v: np.rint(v * 1000)), (1e11, 1e14, np.rint),
                      (1e14, 1e17, lambda v: np.floor(v / 1e3)), (1e17, 9.2e18, lambda v: np.floor(v / 1e6))):
        m = ~bad & (a >= lo) & (a < hi)
        out[m] = f(x[m])
    return out, bad


def to_ms(values: np.ndarray, exact_ms: bool = False):
    """int64 ms UTC from epoch numbers in any unit (by magnitude), datetime64 or date strings."""
    k = values.dtype.kind
    if k == "M":
        bad = np.isnat(values)
        return values.astype("datetime64[ms]").view(np.int64).copy(), bad, "missing time"
    if k in "iu":
        x = values.astype(np.int64)
        return (x if exact_ms else _ms_from_int(x)), None, ""
    if k == "f":
        out, bad = _ms_from_float(values)
        return out, bad, "not a valid time"
    if k == "O":
        vals = values.tolist()
        types = set(map(type, vals))
        if types <= {int}:
            try:
                return to_ms(np.array(vals, np.int64), exact_ms)
            except OverflowError:
                pass
        if types <= {int, float}:
            return to_ms(np.array(vals, np.float64))
        if not types <= {str}:
            values = object_array(["" if v is None else str(v) for v in vals])
    if k == "b":
        return np.zeros(len(values), np.int64), np.ones(len(values), bool), "not a time"
    try:  # strings of integers: exact, even for nanoseconds
        return to_ms(values.astype(np.int64), exact_ms)
    except (ValueError, OverflowError, TypeError):
        pass
    x, bad, _ = to_float(values)
    if bad is not None and 2 * bad.sum() > len(values):  # mostly not numbers: a column of dates
        return _dates(np.char.strip(values.astype(str)))
    out, bad2 = _ms_from_float(x)
    return out, bad2 if bad is None else bad | bad2, "not a number"


def _dates(s: np.ndarray):
    """ms from date strings: vectorised NumPy ISO parsing, else each distinct string in Python."""
    special = np.isin(np.char.lower(s), ["", "nat", "now", "today"])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # NumPy only warns on a time-zone suffix: parse those below
            d = s.astype("datetime64[ms]")
        return d.view(np.int64).copy(), special | np.isnat(d), "not a date"
    except (ValueError, TypeError, Warning):
        pass
    uniq, inverse = np.unique(s, return_inverse=True)
    parsed = [_parse_date(u) for u in uniq.tolist()]
    ms = np.array([-1 if p is None else p for p in parsed], np.int64)[inverse]
    bad = np.array([p is None for p in parsed], bool)[inverse] | special
    return ms, bad, "not a date"


def _parse_date(s: str) -> int | None:
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        dt = None
    for fmt in _DATE_FORMATS if dt is None else ():
        try:
            dt = datetime.strptime(s, fmt)
            break
        except ValueError:
            continue
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return (dt - _EPOCH) // timedelta(milliseconds=1)


def lower_strings(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind == "O":
        values = np.array(["" if v is None else str(v) for v in values.tolist()], dtype=str)
    return np.char.lower(np.char.strip(values.astype(str)))


def to_side(values: np.ndarray):
    s = lower_strings(values)
    side = np.where(np.isin(s, _BUY), 1, np.where(np.isin(s, _SELL), -1, 0)).astype(np.int8)
    return side, side == 0, "not a side (buy/sell, b/s, +1/-1)"


def maker_to_side(values: np.ndarray):
    s = lower_strings(values)
    maker, taker = np.isin(s, _TRUE), np.isin(s, _FALSE)
    # buyer is maker => the seller took liquidity => seller-initiated (-1)
    return np.where(maker, -1, 1).astype(np.int8), ~(maker | taker), "not a true/false flag"


def to_ids(values: np.ndarray) -> np.ndarray | None:
    """int64 ids (-1 where missing), or None when the ids are not integers (e.g. UUIDs)."""
    if values.dtype.kind in "iu":
        return values.astype(np.int64)
    out = np.empty(len(values), np.int64)
    try:
        for i, v in enumerate(values.tolist()):
            out[i] = -1 if v is None or v == "" else int(v) if not isinstance(v, float) else _int(v)
    except (TypeError, ValueError, OverflowError):
        return None
    return out


def _int(v: float) -> int:
    if not v.is_integer():
        raise ValueError
    return int(v)
