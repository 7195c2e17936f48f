"""GARCH(1,1): derivatives, parity with arch, recovery, constraints, forecasts, simulation, batch and
streaming. Series share one length (T = 5030, the S&P 500 sample) so that each (dist, T) compiles once."""
import gzip
import warnings
from pathlib import Path

import numpy as np
import pytest

from bot4jax.jaxcfg import jax, jnp
from bot4jax.kernels.garch_nb import garch_variance_path_nb, garch_variance_update_nb, init_state
from bot4jax.models import garch
from bot4jax.models import garch_lik as gf

arch = pytest.importorskip("arch")
from arch import arch_model  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
T = 5030


def _arch_fit(r, dist):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return arch_model(r, mean="Constant", vol="GARCH", p=1, q=1, dist=dist).fit(disp="off")


def _simulate(params, n, seed):
    r, s = garch.simulate(params, n, jax.random.key(seed), dist="t" if "nu" in params else "normal")
    return r, s


@pytest.fixture(scope="module")
def sp500():
    from arch.data import sp500 as data

    close = data.load()["Adj Close"].to_numpy()
    r = 100.0 * np.diff(close) / close[:-1]
    assert r.shape[0] == T
    return r


@pytest.fixture(scope="module")
def btc_hourly():
    path = DATA / "Binance_BTCUSDT_1h.csv.gz"
    if not path.exists():
        pytest.skip(f"{path} not available")
    a = np.genfromtxt(gzip.open(path, "rt"), delimiter=",", skip_header=1, usecols=(0, 6))
    a[a[:, 0] < 1e11, 0] *= 1000  # seconds -> ms in the older rows
    a = a[np.argsort(a[:, 0], kind="stable")]
    _, first = np.unique(a[:, 0], return_index=True)  # de-duplicate the overlapping hours
    close = a[first, 1]
    r = 100.0 * np.diff(close) / close[:-1]
    return r[-T:]


@pytest.fixture(scope="module")
def sim_t():
    params = {"mu": 0.05, "omega": 0.04, "alpha": 0.09, "beta": 0.89, "nu": 6.0}
    return params, _simulate(params, T, 11)[0]


# --- derivatives ------------------------------------------------------------------------------------


@pytest.mark.parametrize("dist", ["normal", "t"])
def test_exact_derivatives_equal_autodiff(dist):
    rng = np.random.default_rng(0)
    r = jnp.asarray(rng.standard_t(5, size=(150, 2)) * 1.3 + 0.1)
    bc = gf.backcast(r)
    th = jnp.array([[0.05, 0.1, 0.1, 0.8, 6.0], [-0.02, 0.3, 0.05, 0.9, 9.0]])[:, : 5 if dist == "t" else 4]

    @jax.jit
    def both(th):
        ours = gf.evaluate(th, r, bc, dist, hessian=True, scores=True)
        obs = lambda th: gf.loglik_obs(th, r, bc, dist)[0]  # noqa: E731
        total = lambda th: jnp.sum(obs(th))  # noqa: E731
        auto = (jnp.sum(obs(th), axis=0), jax.grad(total)(th), jax.hessian(total)(th), jax.jacfwd(obs)(th))
        return ours, auto, gf.evaluate(th, r, bc, dist, hessian=False).grad

    ev, (ll, g, h, scores), grad_only = both(th)
    for i in range(2):
        np.testing.assert_allclose(ev.loglik[i], ll[i], rtol=1e-12)
        np.testing.assert_allclose(ev.grad[i], g[i], rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(ev.hess[i], h[i, :, i, :], rtol=1e-9, atol=1e-8)
        np.testing.assert_allclose(ev.scores[:, i], scores[:, i, i, :], rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(grad_only, ev.grad, rtol=1e-13)


def test_backcast_is_arch_s():
    r = np.random.default_rng(3).standard_normal(200) * 2 + 0.3
    e = r - r.mean()
    w = 0.94 ** np.arange(75)
    assert float(gf.backcast(jnp.asarray(r)[:, None])[0]) == pytest.approx(np.sum(w * e[:75] ** 2) / w.sum(), rel=1e-13)


# --- parity with arch -------------------------------------------------------------------------------


def _assert_parity(res, ref):
    # our log-likelihood at least arch's minus 1e-6 relative; parameters within 1e-3
    assert res.converged
    assert res.loglik >= ref.loglikelihood - 1e-6 * abs(ref.loglikelihood)
    np.testing.assert_allclose(list(res.params.values()), ref.params.to_numpy(), atol=1e-3, rtol=0)
    np.testing.assert_allclose(res.conditional_volatility, ref.conditional_volatility, rtol=2e-3)


@pytest.mark.parametrize("dist", ["normal", "t"])
def test_parity_with_arch_on_sp500(sp500, dist):
    res = garch.fit(sp500, dist=dist, max_persistence=1.0)
    ref = _arch_fit(sp500, dist)
    _assert_parity(res, ref)
    # robust (sandwich) standard errors as arch's default cov_type="robust" (arch: numerical derivatives)
    np.testing.assert_allclose(list(res.std_errors.values()), ref.std_err.to_numpy(), rtol=2e-3)
    # analytic variance forecasts
    np.testing.assert_allclose(res.forecast(10), ref.forecast(horizon=10).variance.to_numpy()[-1], rtol=2e-3)


@pytest.mark.parametrize("dist", ["normal", "t"])
def test_parity_with_arch_on_hourly_btc(btc_hourly, dist):
    res = garch.fit(btc_hourly, dist=dist, max_persistence=1.0)
    _assert_parity(res, _arch_fit(btc_hourly, dist))
    assert res.persistence > 0.98  # hourly crypto sits near the stationarity bound


# --- recovery, constraints, regularisation ----------------------------------------------------------


def test_recovers_known_parameters(sim_t):
    params, r = sim_t
    res = garch.fit(r, dist="t")
    assert res.converged
    for k, v in params.items():
        # within 3 robust standard errors of the truth
        assert abs(res.params[k] - v) < 3 * res.std_errors[k], (k, res.params[k], v, res.std_errors[k])


def test_persistence_bound_is_honoured(btc_hourly):
    free = garch.fit(btc_hourly, dist="t", max_persistence=1.0)
    assert free.persistence > 0.995
    for bound in (0.99, 0.95):
        res = garch.fit(btc_hourly, dist="t", max_persistence=bound)
        assert res.converged
        assert res.persistence < bound
        assert res.persistence > bound - 1e-3  # the optimum is on the bound
        assert res.loglik < free.loglik


def test_l2_shrinks_the_dynamics(sim_t):
    _, r = sim_t
    base = garch.fit(r, dist="t")
    shrunk = garch.fit(r, dist="t", l2=0.05)
    assert shrunk.converged
    norm = lambda res: res.params["alpha"] ** 2 + res.params["beta"] ** 2  # noqa: E731
    assert norm(shrunk) < norm(base) - 0.01
    assert shrunk.loglik < base.loglik  # the unpenalised fit is the MLE


def test_series_without_arch_effects_is_not_silently_wrong():
    r = np.random.default_rng(5).standard_t(6, size=T)
    res = garch.fit(r, dist="t")
    ref = _arch_fit(r, "t")
    if res.converged:
        # a converged fit is a genuine optimum: no worse than arch, and (nearly) no ARCH effect
        assert res.loglik >= ref.loglikelihood - 1e-6 * abs(ref.loglikelihood)
        assert res.params["alpha"] < 0.02
    else:
        assert res.params["alpha"] < 0.02 or res.persistence > 0.99


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="constant"):
        garch.fit(np.ones(100))
    with pytest.raises(ValueError, match="index 7"):
        garch.fit(np.r_[np.zeros(7), np.nan, np.ones(100)])
    with pytest.raises(ValueError, match=r"row, column\).*index 0, 3"):
        garch.fit_many(np.where(np.arange(50)[None] == 3, np.inf, np.ones((2, 50)) * np.arange(2)[:, None]))
    with pytest.raises(ValueError, match="max_persistence"):
        garch.fit(np.arange(50.0), max_persistence=1.5)
    with pytest.raises(ValueError, match="dist"):
        garch.fit(np.arange(50.0), dist="skewt")


# --- batch ------------------------------------------------------------------------------------------


def test_fit_many_rows_equal_individual_fits(sim_t, sp500):
    _, r = sim_t
    rows = np.stack([r, sp500, np.full(T, 0.25)])  # the last row is constant: nothing to fit
    batch = garch.fit_many(rows, dist="t")
    assert list(batch.converged) == [True, True, False]
    assert np.all(np.isnan(batch.theta()[2]))
    for i in range(2):
        single = garch.fit(rows[i], dist="t")
        np.testing.assert_allclose(batch.theta()[i], list(single.params.values()), rtol=1e-6, atol=1e-8)
        assert batch.loglik[i] == pytest.approx(single.loglik, rel=1e-10)
        res = batch.result(i)
        np.testing.assert_allclose(res.conditional_volatility, single.conditional_volatility, rtol=1e-6)
        np.testing.assert_allclose(list(res.std_errors.values()), list(single.std_errors.values()), rtol=1e-4)


def test_result_is_immutable(sim_t):
    res = garch.fit(sim_t[1], dist="t")
    with pytest.raises(Exception):
        res.loglik = 0.0
    with pytest.raises(TypeError):
        res.params["alpha"] = 0.5
    with pytest.raises(ValueError):
        res.conditional_volatility[0] = 1.0


# --- forecasts and simulation -----------------------------------------------------------------------


def test_forecast_is_the_closed_form(sim_t):
    res = garch.fit(sim_t[1], dist="t")
    p = res.params
    s1 = p["omega"] + p["alpha"] * res.resid[-1] ** 2 + p["beta"] * res.conditional_volatility[-1] ** 2
    h = np.arange(1, 21)
    sbar = p["omega"] / (1 - p["alpha"] - p["beta"])
    np.testing.assert_allclose(res.forecast(20), sbar + (p["alpha"] + p["beta"]) ** (h - 1) * (s1 - sbar), rtol=1e-12)
    # the recursion written out
    path, s = [], s1
    for _ in h:
        path.append(s)
        s = p["omega"] + (p["alpha"] + p["beta"]) * s
    np.testing.assert_allclose(res.forecast(20), path, rtol=1e-12)
    integrated = garch.forecast_variance({"omega": 0.1, "alpha": 0.1, "beta": 0.9}, 2.0, 4)
    np.testing.assert_allclose(integrated, [2.0, 2.1, 2.2, 2.3])


@pytest.mark.parametrize("dist", ["normal", "t"])
def test_simulation_reproduces_the_unconditional_variance(dist):
    params = {"mu": 0.1, "omega": 0.2, "alpha": 0.08, "beta": 0.82, "nu": 8.0}
    r, s = garch.simulate(params, 20_000, jax.random.key(1), dist=dist, paths=20)
    sbar = params["omega"] / (1 - params["alpha"] - params["beta"])
    assert r.shape == (20, 20_000)
    assert np.mean(r) == pytest.approx(params["mu"], abs=0.01)
    assert np.var(r) == pytest.approx(sbar, rel=0.03)
    assert np.mean(s) == pytest.approx(sbar, rel=0.03)
    # the paths obey the recursion
    e = r[:, :-1] - params["mu"]
    np.testing.assert_allclose(s[:, 1:], params["omega"] + params["alpha"] * e**2 + params["beta"] * s[:, :-1], rtol=1e-12)


# --- streaming kernel -------------------------------------------------------------------------------


def _update_reference(state, params, r):
    """Plain-Python reference of garch_variance_update_nb."""
    if not np.isfinite(r):
        return float("nan")
    e = r - params[0]
    state[0] = params[1] + params[2] * e * e + params[3] * state[0]
    state[1] = e
    state[2] += 1.0
    return state[0]


def test_streaming_update_equals_reference_and_batch_filter(sim_t):
    _, r = sim_t
    res = garch.fit(r, dist="t")
    params, _ = res.stream_state()
    s_batch = res.conditional_volatility**2
    # start from s_0 and stream r_0 .. r_{T-2}: the kernel reproduces s_1 .. s_{T-1} of the fit
    st, ref_st = init_state(s_batch[0]), init_state(s_batch[0])
    out = np.empty(T - 1)
    for i in range(T - 1):
        out[i] = garch_variance_update_nb(st, params, r[i])
        assert out[i] == _update_reference(ref_st, params, r[i])
    np.testing.assert_allclose(out, s_batch[1:], rtol=1e-10)
    assert np.array_equal(st, ref_st) and st[2] == T - 1
    # the path kernel and the positioned state agree with the next-variance forecast
    st2 = init_state(s_batch[0])
    path = garch_variance_path_nb(st2, params, r, np.empty(T))
    assert path[-1] == pytest.approx(res.next_variance, rel=1e-10)
    assert res.stream_state()[1][0] == pytest.approx(res.forecast(1)[0], rel=1e-12)
    # a bad tick leaves the state alone
    before = st.copy()
    assert np.isnan(garch_variance_update_nb(st, params, np.nan))
    assert np.array_equal(st, before)
    with pytest.raises(ValueError):
        init_state(-1.0)
