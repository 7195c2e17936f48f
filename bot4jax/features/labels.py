"""Classification labels with their end times, so later validation can purge overlapping samples."""
from __future__ import annotations

import numpy as np


def forward_return_labels(ts: np.ndarray, close: np.ndarray, horizon: int):
    """Label y[t] = 1 if close[t + horizon] > close[t] else 0 ("up" versus "not up").

    Returns (y float64 with NaN where the future is unknown, t1 int64 label end time = ts[t + horizon],
    -1 where unknown, fwd_ret = log(close[t + horizon] / close[t]) with NaN where unknown). Shapes (n,).
    Ties count as "not up": a long position over an unchanged price only pays costs.
    """
    if horizon < 1:
        raise ValueError(f"horizon must be at least 1 bar, got {horizon}")
    n = len(close)
    y = np.full(n, np.nan)
    t1 = np.full(n, -1, np.int64)
    fwd = np.full(n, np.nan)
    if n > horizon:
        fwd[:-horizon] = np.log(close[horizon:] / close[:-horizon])
        y[:-horizon] = (fwd[:-horizon] > 0).astype(np.float64)
        t1[:-horizon] = ts[horizon:]
    return y, t1, fwd
