import numpy as np
import pytest

from bot4jax.features.labels import forward_return_labels


def test_labels_end_times_and_ties():
    ts = np.arange(6) * 60_000
    close = np.array([10.0, 11.0, 11.0, 10.5, 12.0, 12.0])
    y, t1, fwd = forward_return_labels(ts, close, 2)
    assert y[:4].tolist() == [1.0, 0.0, 1.0, 1.0]
    assert np.isnan(y[4:]).all() and (t1[4:] == -1).all()
    assert t1[:4].tolist() == ts[2:].tolist()
    np.testing.assert_allclose(fwd[:4], np.log(close[2:] / close[:-2]))
    y1, _, _ = forward_return_labels(ts, close, 1)
    assert y1[1] == 0.0  # an unchanged price is "not up"


def test_horizon_must_be_positive():
    with pytest.raises(ValueError):
        forward_return_labels(np.arange(3), np.ones(3), 0)
