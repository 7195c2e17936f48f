"""The ensemble's feature rows: the bar features plus, when the data has trades, order-flow features.

    names = feature_names(with_flow)                     ("ret_1", ..., "volume_ratio"[, flow names])
    x     = feature_matrix(bars, buy_volume, span)        (n, F) float64, NaN during the warm-up
    bv    = buy_volume_per_bar(bar_ts, trades)            (n,) taker-buy amount of each bar (bot4jax.data.sources)

Order flow (the simulator's informed traders tilt the aggressor side, so the signed volume of bar t
predicts the return of bar t + 1; bars alone carry almost none of it):

    imb_t = (2 B_t - V_t) / V_t          B_t buyer-initiated amount of bar t, V_t its total amount;
                                         0 when V_t = 0 or B_t is unknown (NaN): no information
    ema_t = ema_{t-1} + a (imb_t - ema_{t-1}),  a = 2 / (span + 1),  ema_0 = imb_0

in [-1, 1]. Trades come from the simulator or a tape; Binance candles also carry the taker-buy volume.
Candle files without it get no flow features at all (`feature_names(False)`), so a model never
learns from a column that is constant in training.

The batch form is the streaming update `flow_update` run over the rows, so the two are equal by
construction; the bar features' streaming twin is `bot4jax.kernels.features_nb`.
"""
from __future__ import annotations

import numpy as np

from bot4jax.features.bars import FEATURE_NAMES, bar_features

FLOW_NAMES = ("flow_imb", "flow_imb_ema")
_EMA, _COUNT = 0, 1


def feature_names(with_flow: bool) -> tuple[str, ...]:
    return FEATURE_NAMES + (FLOW_NAMES if with_flow else ())


def flow_init() -> np.ndarray:
    """State of the order-flow features: [ema, bars seen]."""
    return np.zeros(2)


def flow_update(state: np.ndarray, volume: float, buy_volume: float, span: int, out: np.ndarray) -> None:
    """Add one bar; write (imb, ema) into out[0:2]. O(1), plain floats: a few hundred ns."""
    imb = (2.0 * buy_volume - volume) / volume if volume > 0.0 and buy_volume == buy_volume else 0.0
    if state[_COUNT] == 0.0:
        ema = imb
    else:
        ema = state[_EMA] + 2.0 / (span + 1.0) * (imb - state[_EMA])
    state[_EMA] = ema
    state[_COUNT] += 1.0
    out[0] = imb
    out[1] = ema


def flow_features(volume, buy_volume, span: int) -> np.ndarray:
    """(n, 2) order-flow features: `flow_update` over every bar."""
    if not (isinstance(span, (int, np.integer)) and span >= 1):
        raise ValueError(f"flow span must be an integer >= 1 bar, got {span!r}")
    v = np.asarray(volume, np.float64).tolist()
    b = np.asarray(buy_volume, np.float64).tolist()
    out = np.empty((len(v), 2))
    state = flow_init()
    for t in range(len(v)):
        flow_update(state, v[t], b[t], span, out[t])
    return out


def feature_matrix(bars, buy_volume: np.ndarray | None, span: int) -> np.ndarray:
    """(n, F) rows of `feature_names(buy_volume is not None)`; NaN during the 50-bar warm-up."""
    x = bar_features(bars.close, bars.high, bars.low, bars.volume)
    if buy_volume is None:
        return x
    return np.concatenate([x, flow_features(bars.volume, buy_volume, span)], axis=1)


def select(names: tuple[str, ...], spec: str, what: str) -> np.ndarray:
    """Column indices of the comma-separated feature names in `spec` (empty: every column).

    Flow features asked for on data without trades are dropped (the data cannot give them); if that
    leaves nothing, every column is used. Any other unknown name is a ConfigError."""
    if not spec.strip():
        return np.arange(len(names))
    wanted = [s.strip() for s in spec.split(",") if s.strip()]
    unknown = [w for w in wanted if w not in names and w not in FLOW_NAMES]
    if unknown:
        from bot4jax.errors import ConfigError
        raise ConfigError(f"{what}: unknown feature(s) {unknown}; known: {list(FEATURE_NAMES + FLOW_NAMES)}")
    idx = [names.index(w) for w in wanted if w in names]
    return np.array(idx, np.int64) if idx else np.arange(len(names))
