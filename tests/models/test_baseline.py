import numpy as np
import pytest

from bot4jax.config import ModelConfig
from bot4jax.models import baseline

CONFIG = ModelConfig(hidden=8, learning_rate=1e-2, epochs=15, batch_size=256, patience=4)


def _logistic_data(seed, n=6000):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)) * np.array([1.0, 10.0, 0.01]) + np.array([0.0, 50.0, 1.0])
    z = (x - np.array([0.0, 50.0, 1.0])) / np.array([1.0, 10.0, 0.01])
    p = 1 / (1 + np.exp(-(1.2 * z[:, 0] - 0.8 * z[:, 1])))
    y = (rng.uniform(size=n) < p).astype(float)
    return x, y, p


@pytest.fixture(scope="module")
def fitted():
    x, y, p = _logistic_data(0)
    return baseline.fit(x[:4000], y[:4000], x[4000:5000], y[4000:5000], CONFIG, seed=1, progress=False), x, y, p


def test_learns_a_known_logistic_relationship(fitted):
    fit, x, _, p_true = fitted
    p = np.asarray(baseline.predict_proba(fit.params, x[5000:]))
    # close to the true probabilities, on raw unscaled features (the scaler travels with the model)
    assert np.mean(np.abs(p - p_true[5000:])) < 0.04
    assert fit.val_loss[fit.best_epoch] == min(fit.val_loss)


def test_same_seed_same_parameters(fitted):
    fit, x, y, _ = fitted
    again = baseline.fit(x[:4000], y[:4000], x[4000:5000], y[4000:5000], CONFIG, seed=1, progress=False)
    for a, b in zip(np.asarray(fit.params["net"]["w1"]).ravel(), np.asarray(again.params["net"]["w1"]).ravel()):
        assert a == b
    other = baseline.fit(x[:4000], y[:4000], x[4000:5000], y[4000:5000], CONFIG, seed=2, progress=False)
    assert not np.array_equal(np.asarray(fit.params["net"]["w1"]), np.asarray(other.params["net"]["w1"]))


def test_one_row_equals_the_batch(fitted):
    fit, x, _, _ = fitted
    batch = np.asarray(baseline.predict_proba(fit.params, x[:200]))
    rows = np.array([float(baseline.predict_proba(fit.params, x[i:i + 1])[0]) for i in range(200)])
    np.testing.assert_allclose(rows, batch, atol=1e-6)
