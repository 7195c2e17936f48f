"""DCC-GARCH(1,1) on simulated assets with a known correlation, and its window."""
import numpy as np
import pytest

from bot4jax.models import dcc

K, HALF = 3, 600


def _garch_assets(corr_by_row, seed):
    """k GARCH(1,1) normal series whose innovations have correlation corr_by_row[t] (constant off
    the diagonal) at time t. Returns (T, k)."""
    rng = np.random.default_rng(seed)
    t = len(corr_by_row)
    out = np.empty((t, K))
    omega = np.array([0.05, 0.1, 0.02])
    alpha = np.array([0.08, 0.05, 0.1])
    beta = np.array([0.9, 0.9, 0.85])
    s = omega / (1 - alpha - beta)
    for i, rho in enumerate(corr_by_row):
        c = np.full((K, K), rho) + (1 - rho) * np.eye(K)
        z = np.linalg.cholesky(c) @ rng.standard_normal(K)
        out[i] = np.sqrt(s) * z
        s = omega + alpha * out[i] ** 2 + beta * s
    return out


@pytest.fixture(scope="module")
def regime_change():
    """Correlation 0 in the first HALF rows, 0.7 in the last HALF."""
    return _garch_assets([0.0] * HALF + [0.7] * HALF, seed=1)


@pytest.fixture(scope="module")
def fits(regime_change):
    x = regime_change
    return {"full": dcc.fit_dcc(x), "window": dcc.fit_dcc(x, window=HALF), "tail": dcc.fit_dcc(x[-HALF:])}


def _assert_valid(r):
    assert np.all(np.isfinite(r))
    np.testing.assert_allclose(r, np.swapaxes(r, -1, -2), atol=1e-14)
    np.testing.assert_allclose(np.diagonal(r, axis1=-2, axis2=-1), 1.0, atol=1e-12)
    assert np.min(np.linalg.eigvalsh(r)) > -1e-12
    assert np.all(np.abs(r) <= 1.0 + 1e-12)


def test_recovers_a_constant_correlation(fits):
    res = fits["window"]  # the last HALF rows: constant correlation 0.7
    assert res.converged
    off = res.correlation[:, ~np.eye(K, dtype=bool)]
    assert np.mean(off) == pytest.approx(0.7, abs=0.07)
    assert res.params["a"] + res.params["b"] < 1.0
    assert res.params["a"] < 0.1  # little dynamics in a constant correlation


def test_correlation_matrices_are_valid(fits):
    for res in fits.values():
        assert res.correlation.shape[1:] == (K, K)
        _assert_valid(res.correlation)
        _assert_valid(res.next_correlation)
        _assert_valid(res.qbar / np.sqrt(np.outer(np.diag(res.qbar), np.diag(res.qbar))))


def test_window_is_the_estimation_sample(fits):
    win, tail, full = fits["window"], fits["tail"], fits["full"]
    # window=w is the fit on the last w rows, nothing else
    assert win.correlation.shape == (HALF, K, K) and full.correlation.shape == (2 * HALF, K, K)
    np.testing.assert_array_equal(win.correlation, tail.correlation)
    assert win.params == tail.params and win.window == HALF and tail.window is None
    # and it changes the result: the full sample's target mixes both regimes
    off = ~np.eye(K, dtype=bool)
    target = lambda q: (q / np.sqrt(np.outer(np.diag(q), np.diag(q))))[off].mean()  # noqa: E731
    assert target(win.qbar) > 0.6
    assert target(full.qbar) < 0.5
    assert np.mean(full.next_correlation[off]) < np.mean(win.next_correlation[off]) + 0.3  # still a valid forecast


def test_next_correlation_follows_the_recursion(fits):
    res = fits["window"]
    path = dcc.correlation_path(res.params["a"], res.params["b"], res.std_resid, res.qbar)
    np.testing.assert_allclose(path[:-1], res.correlation, rtol=1e-12)
    np.testing.assert_allclose(path[-1], res.next_correlation, rtol=1e-12)


def test_bad_input_is_rejected(regime_change):
    with pytest.raises(ValueError, match="k >= 2"):
        dcc.fit_dcc(regime_change[:, :1])
    with pytest.raises(ValueError, match="window"):
        dcc.fit_dcc(regime_change, window=10)
