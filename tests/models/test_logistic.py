"""Penalised logistic regression: equal to scikit-learn's LogisticRegression (same C, l1_ratio,
sample weights), optimal by the KKT conditions, and the zero-weight trick equal to dropping rows.

References: sklearn's newton-cholesky solver for L2 (exact to rounding), saga at tol 1e-12 for the
elastic net and L1, and the subgradient optimality conditions written out in this file.
"""
import warnings

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from bot4jax.models.logistic import decision_function, logistic_fit, predict_proba

N, F = 400, 5


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    # unequal scales and offsets, two irrelevant features: L1 should zero them
    x = rng.normal(size=(N, F)) * [1.0, 2.0, 0.5, 1.0, 3.0] + [0.0, 1.0, 0.0, -1.0, 0.0]
    beta = np.array([1.0, -0.5, 0.0, 0.3, 0.0])
    y = (rng.uniform(size=N) < 1 / (1 + np.exp(-(x @ beta + 0.2)))).astype(float)
    w = rng.uniform(0.2, 2.0, N)
    return x, y, w


def _sklearn(x, y, w, C, l1_ratio=0.0, fit_intercept=True):
    solver = "newton-cholesky" if l1_ratio == 0 else "saga"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # saga's convergence chatter at tol 1e-12
        m = LogisticRegression(C=C, l1_ratio=l1_ratio, solver=solver, tol=1e-12, max_iter=100_000,
                               fit_intercept=fit_intercept)
        return m.fit(x, y, sample_weight=w)


@pytest.mark.parametrize("C", [1.0, 0.05, np.inf])
def test_l2_equals_sklearn(data, C):
    x, y, w = data
    res = logistic_fit(x, y, w, C=C)
    sk = _sklearn(x, y, w, C)
    assert res.converged and res.n_iter < 30
    np.testing.assert_allclose(np.asarray(res.params["coef"]), sk.coef_[0], rtol=0, atol=1e-9)
    assert abs(float(res.params["intercept"]) - sk.intercept_[0]) < 1e-9
    np.testing.assert_allclose(np.asarray(predict_proba(res.params, x)), sk.predict_proba(x)[:, 1],
                               rtol=0, atol=1e-10)
    np.testing.assert_allclose(np.asarray(decision_function(res.params, x)), sk.decision_function(x),
                               rtol=0, atol=1e-8)


def test_no_intercept_equals_sklearn(data):
    x, y, w = data
    res = logistic_fit(x, y, w, C=0.3, fit_intercept=False)
    sk = _sklearn(x, y, w, 0.3, fit_intercept=False)
    assert float(res.params["intercept"]) == 0.0
    np.testing.assert_allclose(np.asarray(res.params["coef"]), sk.coef_[0], rtol=0, atol=1e-9)


@pytest.mark.parametrize("C, l1_ratio", [(0.3, 0.5), (0.02, 1.0)])
def test_elastic_net_equals_sklearn_saga(data, C, l1_ratio):
    x, y, w = data
    res = logistic_fit(x, y, w, C=C, l1_ratio=l1_ratio)
    sk = _sklearn(x, y, w, C, l1_ratio)
    assert res.converged
    np.testing.assert_allclose(np.asarray(res.params["coef"]), sk.coef_[0], rtol=0, atol=1e-6)
    assert abs(float(res.params["intercept"]) - sk.intercept_[0]) < 1e-6


@pytest.mark.parametrize("C, l1_ratio", [(0.3, 0.5), (0.02, 1.0), (1.0, 0.0)])
def test_kkt_conditions_hold(data, C, l1_ratio):
    """Subgradient optimality of C sum s loss + (1-rho)/2 |b|^2 + rho |b|_1, written from scratch."""
    x, y, w = data
    res = logistic_fit(x, y, w, C=C, l1_ratio=l1_ratio)
    beta, b = np.asarray(res.params["coef"]), float(res.params["intercept"])
    p = 1 / (1 + np.exp(-(x @ beta + b)))
    g = C * x.T @ (w * (p - y)) + (1 - l1_ratio) * beta  # gradient of the smooth part
    assert abs(C * np.sum(w * (p - y))) < 1e-6            # the free intercept
    nz = beta != 0
    np.testing.assert_allclose(g[nz] + l1_ratio * np.sign(beta[nz]), 0.0, atol=1e-6)
    assert np.all(np.abs(g[~nz]) <= l1_ratio + 1e-6)
    if l1_ratio == 1.0:
        assert (~nz).sum() >= 1  # strong L1 zeroes at least one irrelevant feature exactly


def test_zero_weights_equal_dropping_rows_and_integer_weights_equal_copies(data):
    x, y, w = data
    keep = np.arange(N) % 3 != 0
    masked = logistic_fit(x, y, np.where(keep, w, 0.0), C=0.5)
    dropped = logistic_fit(x[keep], y[keep], w[keep], C=0.5)
    np.testing.assert_allclose(np.asarray(masked.params["coef"]), np.asarray(dropped.params["coef"]),
                               rtol=0, atol=1e-10)
    reps = np.where(keep, 2, 1)
    doubled = logistic_fit(x, y, reps.astype(float), C=0.5)
    copied = logistic_fit(np.repeat(x, reps, axis=0), np.repeat(y, reps), C=0.5)
    np.testing.assert_allclose(np.asarray(doubled.params["coef"]), np.asarray(copied.params["coef"]),
                               rtol=0, atol=1e-10)


def test_bad_input_is_named(data):
    x, y, w = data
    xb = x.copy()
    xb[7, 2] = np.nan
    with pytest.raises(ValueError, match="row 7, column 2"):
        logistic_fit(xb, y)
    with pytest.raises(ValueError, match="row 3"):
        logistic_fit(x, np.where(np.arange(N) == 3, 2.0, y))
    with pytest.raises(ValueError, match="row 5 is negative"):
        logistic_fit(x, y, np.where(np.arange(N) == 5, -1.0, w))
    with pytest.raises(ValueError, match="l1_ratio"):
        logistic_fit(x, y, l1_ratio=1.5)
    with pytest.raises(ValueError, match="C must be > 0"):
        logistic_fit(x, y, C=0.0)
