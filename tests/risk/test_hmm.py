"""Gaussian HMM by Baum-Welch: recovery of a simulated chain, monotone EM, NumPy log-space reference."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import norm

from bot4jax.jaxcfg import jax, jnp
from bot4jax.risk.hmm import HMMParams, em_step, fit_hmm, hmm_filter, hmm_loglik

TRUE = HMMParams(mu=np.array([0.001, -0.002]), sigma=np.array([0.01, 0.03]),
                 trans=np.array([[0.97, 0.03], [0.08, 0.92]]), p0=np.array([1.0, 0.0]))
T = 3000


def simulate_chain(p: HMMParams, n: int, seed: int = 11):
    rng = np.random.default_rng(seed)
    s = np.empty(n, np.int64)
    s[0] = rng.choice(2, p=p.p0)
    u = rng.random(n)
    for t in range(1, n):
        s[t] = int(u[t] < p.trans[s[t - 1], 1])
    return p.mu[s] + p.sigma[s] * rng.standard_normal(n), s


@pytest.fixture(scope="module")
def data():
    return simulate_chain(TRUE, T)


@pytest.fixture(scope="module")
def fitted(data):
    return fit_hmm(data[0])


# --- a plain log-space reference -------------------------------------------------------------

def np_forward_backward(p: HMMParams, y):
    logb = norm.logpdf(y[:, None], p.mu[None, :], p.sigma[None, :])
    la = np.empty_like(logb)
    la[0] = np.log(p.p0) + logb[0]
    lA = np.log(p.trans)
    for t in range(1, len(y)):
        la[t] = logsumexp(la[t - 1][:, None] + lA, axis=0) + logb[t]
    lb = np.zeros_like(logb)
    for t in range(len(y) - 2, -1, -1):
        lb[t] = logsumexp(lA + (logb[t + 1] + lb[t + 1])[None, :], axis=1)
    ll = logsumexp(la[-1])
    gamma = np.exp(la + lb - ll)
    xi = np.exp(la[:-1, :, None] + lA[None] + (logb[1:] + lb[1:])[:, None, :] - ll).sum(axis=0)
    return ll, la, gamma, xi


def np_em_step(p: HMMParams, y):
    ll, _, gamma, xi = np_forward_backward(p, y)
    w = gamma.sum(axis=0)
    mu = gamma.T @ y / w
    var = (gamma * (y[:, None] - mu) ** 2).sum(axis=0) / w
    return ll, HMMParams(mu, np.sqrt(var), xi / xi.sum(axis=1, keepdims=True), gamma[0])


def test_em_step_equals_numpy_reference(data):
    y = data[0][:400]
    p = HMMParams(np.array([0.0, 0.001]), np.array([0.008, 0.02]),
                  np.array([[0.9, 0.1], [0.2, 0.8]]), np.array([0.6, 0.4]))
    ll, new = jax.jit(em_step)(jax.tree.map(jnp.asarray, p), jnp.asarray(y), 0.0)
    ll_ref, ref = np_em_step(p, y)
    assert float(ll) == pytest.approx(ll_ref, rel=1e-12)
    for a, b in zip(new, ref):
        np.testing.assert_allclose(np.asarray(a), b, rtol=1e-9, atol=1e-15)


def test_baum_welch_recovers_the_simulated_chain(fitted, data):
    p = fitted.params
    assert fitted.converged and fitted.n_iter < 1000
    # within 5 standard errors sigma_k / sqrt(time spent in state k)
    assert abs(p.mu[0] - TRUE.mu[0]) < 5 * 0.01 / np.sqrt(0.7 * T)
    assert abs(p.mu[1] - TRUE.mu[1]) < 5 * 0.03 / np.sqrt(0.25 * T)
    np.testing.assert_allclose(p.sigma, TRUE.sigma, rtol=0.1)
    np.testing.assert_allclose(np.diag(p.trans), np.diag(TRUE.trans), atol=0.03)
    np.testing.assert_allclose(p.trans.sum(axis=1), 1.0, rtol=1e-12)
    # against what this sample's hidden chain actually did (its realised occupancy and switches)
    s = data[1]
    np.testing.assert_allclose(fitted.stationary[1], np.mean(s == 1), atol=0.03)
    counts = np.array([[np.sum((s[:-1] == i) & (s[1:] == j)) for j in (0, 1)] for i in (0, 1)])
    np.testing.assert_allclose(p.trans, counts / counts.sum(axis=1, keepdims=True), atol=0.02)
    # the decoded regimes agree with the true ones most of the time
    probs = np.asarray(hmm_filter(p, jnp.asarray(data[0])))
    assert np.mean((probs[:, 1] > 0.5) == (data[1] == 1)) > 0.85


def test_loglik_never_decreases_and_equals_reference(fitted, data):
    hist = np.asarray(fitted.loglik_history)[: fitted.n_iter]
    assert hist.size >= 3 and np.all(np.isnan(np.asarray(fitted.loglik_history)[fitted.n_iter:]))
    assert np.all(np.diff(hist) >= -1e-9 * np.abs(hist[1:]))
    assert fitted.loglik >= hist[-1] - 1e-9 * abs(hist[-1])
    ll_ref, la, _, _ = np_forward_backward(fitted.params, data[0])
    assert fitted.loglik == pytest.approx(ll_ref, rel=1e-11)
    assert float(hmm_loglik(fitted.params, jnp.asarray(data[0]))) == pytest.approx(ll_ref, rel=1e-11)
    filt = np.exp(la - logsumexp(la, axis=1, keepdims=True))
    np.testing.assert_allclose(np.asarray(fitted.last_state_prob), filt[-1], rtol=1e-9, atol=1e-12)


def test_states_are_ordered_calm_first(fitted):
    assert fitted.params.sigma[0] < fitted.params.sigma[1]


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="finite returns"):
        fit_hmm(np.r_[np.zeros(30), np.nan])
    with pytest.raises(ValueError, match="at least 20"):
        fit_hmm(np.ones(5))
