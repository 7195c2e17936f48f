"""The streaming feature kernel equals the batch features, bar by bar."""
from pathlib import Path

import numpy as np
import pytest

from bot4jax.data.simulator import simulate
from bot4jax.features.bars import FEATURE_NAMES, WARMUP_BARS, bar_features
from bot4jax.kernels.features_nb import N_FEATURES, features_init, features_update_nb

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _stream(close, high, low, volume):
    state, out = features_init(), np.empty((len(close), N_FEATURES))
    valid = np.array([features_update_nb(state, close[i], high[i], low[i], volume[i], out[i])
                      for i in range(len(close))])
    return out, valid


def _check(close, high, low, volume):
    batch = bar_features(close, high, low, volume)
    stream, valid = _stream(close, high, low, volume)
    np.testing.assert_array_equal(np.isnan(stream), np.isnan(batch))
    np.testing.assert_allclose(stream, batch, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(valid, np.all(np.isfinite(batch), axis=1))
    return batch, valid


def test_simulated_bars():
    bars = simulate(n_bars=1500, seed=3).bars
    batch, valid = _check(bars.close, bars.high, bars.low, bars.volume)
    assert batch.shape == (1500, len(FEATURE_NAMES)) == (1500, N_FEATURES)
    assert not valid[:WARMUP_BARS - 1].any() and valid[WARMUP_BARS - 1:].all()


def test_flat_prices_and_zero_volume_are_defined():
    close = np.r_[np.full(80, 100.0), np.linspace(100, 110, 40)]
    volume = np.r_[np.zeros(90), np.ones(30)]
    batch, _ = _check(close, close, close, volume)
    assert np.all(batch[60:80, 5] == 0.0) and np.all(batch[60:80, 9] == 0.0)


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is not on this machine")
def test_real_candles():
    import gzip
    import json
    a = np.array(json.load(gzip.open(SHARED / "binance_XRP_ETH-1m-2019.json.gz")))
    _check(a[:, 4], a[:, 2], a[:, 3], a[:, 5])
