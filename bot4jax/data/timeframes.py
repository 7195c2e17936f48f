"""ccxt-style timeframe strings ("1m", "5m", "1h", "1d", "1w") as milliseconds."""
from __future__ import annotations

_UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
YEAR_MS = 365 * 86_400_000


def timeframe_ms(timeframe: str) -> int:
    """Length of one bar in ms; raises ValueError naming the accepted form for anything else."""
    try:
        count, unit = int(timeframe[:-1]), timeframe[-1]
        if count > 0 and unit in _UNIT_MS:
            return count * _UNIT_MS[unit]
    except (ValueError, IndexError):
        pass
    raise ValueError(f"timeframe {timeframe!r} is not of the form <count><s|m|h|d|w>, e.g. '1m' or '4h'")


def periods_per_year(timeframe: str) -> float:
    """Bars per year for a 24/7 market (crypto): used to annualise Sharpe ratios."""
    return YEAR_MS / timeframe_ms(timeframe)


def infer_timeframe(ts_ms) -> str:
    """The timeframe string of bars from their most common spacing (gaps and duplicates ignored)."""
    import numpy as np

    d = np.diff(np.asarray(ts_ms, np.int64))
    d = d[d > 0]
    if d.size == 0:
        raise ValueError("need at least two bars with distinct timestamps to infer the timeframe")
    values, counts = np.unique(d, return_counts=True)
    step = int(values[np.argmax(counts)])
    for unit in ("w", "d", "h", "m", "s"):
        if step % _UNIT_MS[unit] == 0:
            return f"{step // _UNIT_MS[unit]}{unit}"
    raise ValueError(f"bar spacing {step} ms is not a whole number of seconds")
