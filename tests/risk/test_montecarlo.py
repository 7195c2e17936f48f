"""Monte Carlo risk: random variates, closed forms, statistics against NumPy references, calibration.

Tolerances against closed forms are multiples of the Monte Carlo standard error (5 sigma, fixed
keys), the references for the statistics are plain NumPy on the full paths.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from bot4jax.jaxcfg import jax, jnp
from bot4jax.risk import counter_rng as crng
from bot4jax.risk import mc_stats
from bot4jax.risk import montecarlo as mc
from bot4jax.risk.fan import equity_fan, write_fan

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
KEY = jax.random.key(20240601)
Z = 5.0  # standard errors allowed against a closed form


# --- random variates ------------------------------------------------------------------------

@jax.jit
def _words(seed, n):
    return crng.words(seed, 3, jnp.arange(4), jnp.arange(n.shape[0]))


def _draw_words(n: int, seed: int = 7):
    return _words(crng.seed_from_key(jax.random.key(seed)), jnp.zeros(n))  # (4, n)


def test_normal_pair_is_standard_normal_and_independent():
    w = _draw_words(50_000)
    za, zb = (np.asarray(a, np.float64).ravel() for a in jax.jit(crng.normal_pair)(w))
    for z in (za, zb):
        assert sps.kstest(z, "norm").pvalue > 1e-3
        assert abs(z.mean()) < Z / math.sqrt(z.size)
        assert abs(z.var() - 1.0) < Z * math.sqrt(2.0 / z.size)
    assert abs(np.corrcoef(za, zb)[0, 1]) < Z / math.sqrt(za.size)
    assert abs(np.corrcoef(za ** 2, zb ** 2)[0, 1]) < Z / math.sqrt(za.size)
    # rows are different steps of the same paths: uncorrelated too
    z = np.asarray(jax.jit(crng.normal_pair)(w)[0], np.float64)
    assert abs(np.corrcoef(z[0], z[1])[0, 1]) < Z / math.sqrt(z.shape[1])


@pytest.mark.parametrize("nu", [2.5, 5.0, 30.0])
def test_student_t_matches_scipy(nu):
    t = np.asarray(jax.jit(crng.student_t)(_draw_words(50_000, seed=int(nu * 10)), nu), np.float64).ravel()
    assert sps.kstest(t, sps.t(nu).cdf).pvalue > 1e-3
    if nu > 4:  # the unit-variance scaling the GARCH-t process uses
        zs = t * math.sqrt((nu - 2) / nu)
        kurt = 3 + 6 / (nu - 4)
        assert abs(zs.var() - 1.0) < Z * math.sqrt((kurt - 1) / zs.size)


def test_uniforms_and_thresholds():
    w = _draw_words(50_000, seed=3)
    u = np.asarray(jax.jit(crng.uniform)(w)).ravel()
    assert 0.0 < u.min() and u.max() < 1.0
    assert sps.kstest(u, "uniform").pvalue > 1e-3
    bits = np.asarray(jax.jit(crng.uniform_bits)(w)).ravel()
    for p in (0.02, 0.5, 0.97):
        frac = np.mean(bits < np.asarray(crng.threshold32(p)))
        assert abs(frac - p) < Z * math.sqrt(p * (1 - p) / bits.size)


def test_streams_depend_on_key_step_and_path_only():
    words = jax.jit(crng.words, static_argnums=1)
    seed = jax.jit(crng.seed_from_key)(jax.random.key(1))
    a = words(seed, 0, jnp.arange(5, 8), jnp.arange(100, 164))
    b = words(seed, 0, jnp.arange(0, 10), jnp.arange(0, 200))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b)[5:8, 100:164])
    assert not np.any(np.asarray(a) == np.asarray(words(seed, 1, jnp.arange(5, 8), jnp.arange(100, 164))))
    other = words(jax.jit(crng.seed_from_key)(jax.random.key(2)), 0, jnp.arange(5, 8), jnp.arange(100, 164))
    assert not np.any(np.asarray(a) == np.asarray(other))


# --- closed forms -----------------------------------------------------------------------------

def _mean_var_check(x, mean, var):
    """Sample mean and variance of x against the truth, with standard errors from the sample."""
    n = x.size
    assert abs(x.mean() - mean) < Z * math.sqrt(var / n), (x.mean(), mean)
    m4 = np.mean((x - x.mean()) ** 4)
    assert abs(x.var(ddof=1) - var) < Z * math.sqrt((m4 - var ** 2) / n), (x.var(ddof=1), var)


# One shape for every simulation below, so each process compiles once (path_stats, the report
# and sample_log_returns); 37 steps = 3 chunks of 12 and a remainder of 1.
N, T = 50_000, 37
GBM_P = mc.GBMParams(mu=0.0004, sigma=0.02)


@pytest.fixture(scope="module")
def gbm_stats():
    return mc.path_stats(mc.GBM, GBM_P, KEY, N, T)


def test_gbm_terminal_moments(gbm_stats):
    m, v = mc.gbm_moments(GBM_P, T)
    _mean_var_check(np.asarray(gbm_stats.log_return), m, v)


def test_gbm_var_cvar_match_lognormal_closed_form(gbm_stats):
    rep = mc.report_from_stats(gbm_stats, T)
    m, v = mc.gbm_moments(GBM_P, T)
    s = math.sqrt(v)
    for i, a in enumerate(mc.VAR_LEVELS):
        p = 1 - a
        zp = sps.norm.ppf(p)
        xq = m + s * zp
        var_true = -math.expm1(xq)
        # quantile standard error: sqrt(p (1-p) / n) / density of R at the quantile
        dens = sps.norm.pdf(zp) / (s * math.exp(xq))
        se_q = math.sqrt(p * (1 - p) / N) / dens
        assert abs(float(rep.var[i]) - var_true) < Z * se_q, (a, float(rep.var[i]), var_true)
        # E[R | R <= q] for lognormal R + 1; its standard error (tail variance + quantile error)
        es = math.exp(m + v / 2) * sps.norm.cdf(zp - s) / p - 1.0
        e2 = math.exp(2 * m + 2 * v) * sps.norm.cdf(zp - 2 * s) / p - 2 * (es + 1) + 1
        tail_var = e2 - es ** 2
        se_es = math.sqrt((tail_var + (1 - p) * (-var_true - es) ** 2) / (N * p))
        assert abs(float(rep.cvar[i]) + es) < Z * se_es, (a, float(rep.cvar[i]), -es)


def test_merton_matches_analytic_mean_and_variance():
    p = mc.MertonParams(mu=0.0005, sigma=0.01, lam=0.2, jump_mean=-0.03, jump_std=0.04)
    x = np.asarray(mc.path_stats(mc.MERTON, p, KEY, N, T).log_return)
    _mean_var_check(x, *mc.merton_moments(p, T))
    # the compensator makes E[S_T / S_0] = exp(mu T)
    g = np.exp(x)
    assert abs(g.mean() - math.exp(p.mu * T)) < Z * g.std() / math.sqrt(g.size)


GARCH_P = mc.GarchTParams(mu=0.0002, omega=2e-6, alpha=0.05, beta=0.90, nu=8.0, h0=4e-5)


def test_garch_paths_reproduce_unconditional_variance():
    hbar = mc.garch_unconditional_variance(GARCH_P)
    assert hbar == pytest.approx(4e-5)
    x = np.asarray(mc.path_stats(mc.GARCH_T, GARCH_P, KEY, N, T).log_return)
    # increments are uncorrelated with E[h_t] = hbar, so Var X_T = T hbar
    _mean_var_check(x, T * GARCH_P.mu, T * hbar)


def test_garch_innovations_are_unit_variance_student_t():
    """Rebuild h_t from the simulated returns: z_t = e_t / sqrt(h_t) must be t(nu) scaled to unit variance."""
    r = np.asarray(mc.sample_log_returns(mc.GARCH_T, GARCH_P, KEY, N, T))
    e = r - GARCH_P.mu
    h = np.full(N, GARCH_P.h0)
    z = np.empty_like(e)
    for t in range(T):
        z[t] = e[t] / np.sqrt(h)
        h = GARCH_P.omega + GARCH_P.alpha * e[t] ** 2 + GARCH_P.beta * h
    nu = GARCH_P.nu
    zs = z.ravel()
    assert sps.kstest(zs, sps.t(nu, scale=math.sqrt((nu - 2) / nu)).cdf).pvalue > 1e-3
    kurt = 3 + 6 / (nu - 4)
    assert abs(zs.var() - 1.0) < Z * math.sqrt((kurt - 1) / zs.size)
    # pooled per-step variance against omega / (1 - alpha - beta), per-path means are i.i.d.
    per_path = np.mean(e ** 2, axis=0)
    hbar = mc.garch_unconditional_variance(GARCH_P)
    assert abs(per_path.mean() - hbar) < Z * per_path.std() / math.sqrt(N)


REGIME_P = mc.RegimeParams(mu=np.array([0.001, -0.003]), sigma=np.array([0.01, 0.03]),
                           trans=np.array([[0.95, 0.05], [0.10, 0.90]]), p0=np.array([0.9, 0.1]))


def test_regime_terminal_mean_and_state_occupancy():
    x = np.asarray(mc.path_stats(mc.REGIME, REGIME_P, KEY, N, T).log_return)
    pi, mean = REGIME_P.p0.copy(), 0.0
    for _ in range(T):
        mean += pi @ REGIME_P.mu
        pi = pi @ REGIME_P.trans
    assert abs(x.mean() - mean) < Z * x.std() / math.sqrt(x.size)
    np.testing.assert_allclose(mc.regime_stationary(REGIME_P.trans), [2 / 3, 1 / 3])


def test_student_t_flights_moments():
    p = mc.StudentTParams(loc=0.0002, scale=0.01, nu=6.0)
    x = np.asarray(mc.path_stats(mc.STUDENT_T, p, KEY, N, T).log_return)
    _mean_var_check(x, T * p.loc, T * p.scale ** 2 * p.nu / (p.nu - 2))


# --- statistics against NumPy references ------------------------------------------------------

def np_path_stats(R):
    """Per-path statistics from the full paths (steps, paths), the plain way."""
    n = R.shape[1]
    X = np.vstack([np.zeros((1, n)), np.cumsum(R, axis=0)])  # X_0 = 0
    P = np.maximum.accumulate(X, axis=0)
    D = P - X
    mdd = D.max(axis=0)
    trough = D.argmax(axis=0)  # = the step, first occurrence
    peak = P[trough, np.arange(n)]
    back = (np.arange(X.shape[0])[:, None] > trough) & (X >= peak)  # at or above that peak again
    rt = np.where(back.any(axis=0), back.argmax(axis=0) - trough, -trough)
    rt = np.where(mdd > 0, rt, 0)
    return X[-1], mdd, rt, (D[1:] > 0).sum(axis=0)


def np_report(x, mdd, rt, uw):
    r = np.expm1(x)
    q = np.quantile(r, [1 - a for a in mc.VAR_LEVELS])
    frac = -np.expm1(-mdd)
    return {"var": -q, "cvar": np.array([-r[r <= qi].mean() for qi in q]),
            "max_drawdown_mean": frac.mean(),
            "max_drawdown_quantiles": np.quantile(frac, mc.DRAWDOWN_LEVELS),
            "recovery_mean": rt[rt > 0].mean(), "recovered_fraction": (rt > 0).sum() / (mdd > 0).sum(),
            "underwater_mean": uw.mean(), "mean_return": r.mean(), "std_return": r.std(ddof=1),
            "log_return_mean": x.mean(), "log_return_var": x.var(ddof=1)}


SMALL = {
    "gbm": GBM_P,
    "merton": mc.MertonParams(mu=0.0005, sigma=0.01, lam=0.3, jump_mean=-0.02, jump_std=0.03),
    "garch_t": GARCH_P,
    "regime": REGIME_P,
    "student_t": mc.StudentTParams(loc=0.0003, scale=0.01, nu=3.0),
}


@pytest.mark.parametrize("name", list(SMALL))
def test_path_statistics_equal_numpy_on_full_paths(name):
    p = SMALL[name]
    R = np.asarray(mc.sample_log_returns(name, p, KEY, N, T))
    assert R.shape == (T, N) and np.all(np.isfinite(R))
    st = mc.path_stats(name, p, KEY, N, T)
    x, mdd, rt, uw = np_path_stats(R)
    np.testing.assert_allclose(np.asarray(st.log_return), x, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(np.asarray(st.max_drawdown_log), mdd, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(np.asarray(st.recovery), rt)
    np.testing.assert_array_equal(np.asarray(st.underwater), uw)
    assert (rt > 0).any() and (rt < 0).any()  # both outcomes exercised
    rep = mc.report_from_stats(st, T)
    ref = np_report(x, mdd, rt, uw)
    for k, v in ref.items():
        np.testing.assert_allclose(np.asarray(getattr(rep, k)), v, rtol=1e-11, err_msg=k)


def test_var_cvar_equal_numpy_quantiles_on_the_same_returns(gbm_stats):
    rep = mc.report_from_stats(gbm_stats, T)
    r = np.expm1(np.asarray(gbm_stats.log_return))
    for i, a in enumerate(mc.VAR_LEVELS):
        q = np.quantile(r, 1 - a)
        assert float(rep.var[i]) == pytest.approx(-q, rel=1e-13, abs=1e-16)
        assert float(rep.cvar[i]) == pytest.approx(-r[r <= q].mean(), rel=1e-12)


def test_sort_and_quantile_helpers_equal_numpy():
    rng = np.random.default_rng(0)
    a = np.concatenate([rng.standard_normal(997), [0.0, -0.0, 5.0, -5.0, 1e-300, -1e-300]])
    s = np.asarray(jax.jit(mc_stats.sort_f64)(jnp.asarray(a)))
    np.testing.assert_array_equal(s, np.sort(a))
    qs = (0.0, 0.001, 0.01, 0.05, 0.5, 0.731, 0.999, 1.0)
    got = np.asarray(mc_stats.quantile_sorted(jnp.asarray(s), qs))
    np.testing.assert_allclose(got, np.quantile(a, qs), rtol=1e-15, atol=0)


def test_drawdown_bookkeeping_on_hand_made_paths():
    cols = [
        [0.1, -0.3, 0.1, 0.25, -0.1],       # trough at 2, back above 0.1 at 4; under water at 2, 3, 5
        [0.1] * 5,                           # never below its peak
        [-0.1, -0.1, 0.05, -0.2, 0.1],       # trough at 4, never recovers
        [-0.5, 0.5, -0.25, -0.25, 0.5],      # exact breakeven at 2; the equal drawdown at 4 is not a new max
    ]
    R = jnp.asarray(np.array(cols).T)

    def run(R):
        def body(s, xs):
            r, t = xs
            return mc_stats.update(s, r, t), None
        s, _ = jax.lax.scan(body, mc_stats.init(R.shape[1]), (R, jnp.arange(1, 6, dtype=jnp.int32)))
        return mc_stats.finish(s)

    st = jax.jit(run)(R)
    np.testing.assert_allclose(np.asarray(st.log_return), [0.05, 0.5, -0.25, 0.0], atol=1e-15)
    np.testing.assert_allclose(np.asarray(st.max_drawdown_log), [0.3, 0.0, 0.35, 0.5], atol=1e-15)
    np.testing.assert_array_equal(np.asarray(st.recovery), [2, 0, -4, 1])
    np.testing.assert_array_equal(np.asarray(st.underwater), [3, 0, 5, 3])


def test_simulate_paths_is_the_report_of_path_stats():
    p = SMALL["garch_t"]
    rep = mc.simulate_paths(mc.GARCH_T, p, KEY, N, T)
    ref = mc.report_from_stats(mc.path_stats(mc.GARCH_T, p, KEY, N, T), T)
    for k in rep._fields:
        np.testing.assert_array_equal(np.asarray(getattr(rep, k)), np.asarray(getattr(ref, k)), err_msg=k)
    d = rep.to_dict()
    assert d["n_paths"] == N and d["n_steps"] == T and len(d["var"]) == 3
    json.dumps(d)


def test_bad_arguments_are_explained():
    with pytest.raises(ValueError, match="unknown process 'heston'"):
        mc.simulate_paths("heston", GBM_P, KEY, 10, 5)
    with pytest.raises(TypeError, match="gbm takes GBMParams, got MertonParams"):
        mc.simulate_paths("gbm", SMALL["merton"], KEY, 10, 5)
    with pytest.raises(ValueError, match="gbm parameter 'sigma' = -0.1 must be >= 0"):
        mc.simulate_paths("gbm", mc.GBMParams(0.0, -0.1), KEY, 10, 5)
    with pytest.raises(ValueError, match="merton parameter 'lam'"):
        mc.simulate_paths("merton", SMALL["merton"]._replace(lam=3.0), KEY, 10, 5)
    with pytest.raises(ValueError, match="garch_t parameter 'nu'"):
        mc.simulate_paths("garch_t", GARCH_P._replace(nu=2.0), KEY, 10, 5)
    with pytest.raises(ValueError, match="regime parameter 'trans'"):
        mc.simulate_paths("regime", REGIME_P._replace(trans=np.array([[0.9, 0.2], [0.1, 0.9]])), KEY, 10, 5)
    with pytest.raises(ValueError, match="n_paths >= 2"):
        mc.simulate_paths("gbm", GBM_P, KEY, 1, 5)


# --- fan chart --------------------------------------------------------------------------------

def test_fan_percentiles_match_the_simulated_paths(tmp_path):
    p = SMALL["student_t"]
    fan = equity_fan("student_t", p, KEY, N, T)
    R = np.asarray(mc.sample_log_returns("student_t", p, KEY, N, T))
    eq = np.exp(np.cumsum(R, axis=0))
    np.testing.assert_allclose(fan.equity[1:], np.percentile(eq, fan.percentiles, axis=1).T, rtol=1e-12)
    np.testing.assert_allclose(fan.mean[1:], eq.mean(axis=1), rtol=1e-12)
    assert np.all(fan.equity[0] == 1.0)
    png, js = write_fan(tmp_path / "fan", fan)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    back = json.loads(js.read_text())
    np.testing.assert_allclose(back["equity"], fan.equity)
    assert back["percentiles"] == list(fan.percentiles) and len(back["step"]) == T + 1


# --- calibration ------------------------------------------------------------------------------

def _long_series(name, p, length=8_000, seed=5):
    """One long series made of simulated paths end to end (for a stateless process)."""
    R = np.asarray(mc.sample_log_returns(name, p, jax.random.key(seed), N, T))
    return R.T.ravel()[:length]


def test_calibrate_gbm_is_the_moment_estimator():
    r = np.random.default_rng(1).normal(0.001, 0.02, 500)
    p = mc.calibrate_gbm(r)
    assert p.sigma == pytest.approx(r.std(ddof=1))
    assert p.mu == pytest.approx(r.mean() + 0.5 * r.var(ddof=1))


def test_calibrate_merton_recovers_simulated_parameters():
    true = mc.MertonParams(mu=0.0005, sigma=0.01, lam=0.1, jump_mean=-0.04, jump_std=0.03)
    p = mc.calibrate_merton(_long_series("merton", true))
    assert p.sigma == pytest.approx(true.sigma, rel=0.06)
    assert p.lam == pytest.approx(true.lam, rel=0.3)
    assert p.jump_mean == pytest.approx(true.jump_mean, abs=0.01)
    assert p.jump_std == pytest.approx(true.jump_std, rel=0.3)


def test_calibrate_student_t_recovers_simulated_parameters():
    true = mc.StudentTParams(loc=0.0004, scale=0.012, nu=3.5)
    p = mc.calibrate_student_t(_long_series("student_t", true))
    assert p.nu == pytest.approx(true.nu, rel=0.12)
    assert p.scale == pytest.approx(true.scale, rel=0.05)
    assert p.loc == pytest.approx(true.loc, abs=0.0005)


def test_calibration_rejects_bad_series():
    with pytest.raises(ValueError, match=r"returns\[3\] is nan"):
        mc.calibrate_gbm([0.01, 0.02, -0.01, np.nan, 0.0])
    with pytest.raises(ValueError, match="constant"):
        mc.calibrate_student_t(np.zeros(100))


def _btc_daily_log_returns():
    path = DATA / "Binance_BTCUSDT_d.csv"
    if not path.exists():
        pytest.skip(f"real data not available at {path}")
    a = np.genfromtxt(path, delimiter=",", skip_header=1, usecols=(0, 6))
    a[a[:, 0] < 1e11, 0] *= 1000  # seconds-style rows
    ts, close = a[:, 0], a[:, 1]
    order = np.argsort(ts, kind="stable")
    ts, close = ts[order], close[order]
    keep = np.concatenate([[True], np.diff(ts) > 0])  # 2017-12-18 appears twice
    close = close[keep][:-1]  # the newest row is a partial day
    return np.diff(np.log(close))


def test_all_processes_calibrate_and_simulate_on_real_btc_returns():
    r = _btc_daily_log_returns()
    assert r.size > 1300
    params = {"gbm": mc.calibrate_gbm(r), "merton": mc.calibrate_merton(r),
              "garch_t": mc.calibrate_garch_t(r), "regime": mc.calibrate_regime(r),
              "student_t": mc.calibrate_student_t(r)}
    g = params["garch_t"]
    assert 2 < g.nu < 10 and 0.8 < g.alpha + g.beta < 1  # fat tails, persistent volatility
    long_run = mc.calibrate_garch_t(r, start="unconditional")
    assert long_run.h0 == pytest.approx(mc.garch_unconditional_variance(g))
    assert 0 < g.h0 < long_run.h0  # mid-2021 was calmer than the fitted long-run level
    reg_long = mc.calibrate_regime(r, start="stationary")
    np.testing.assert_allclose(reg_long.p0, mc.regime_stationary(reg_long.trans))
    assert params["regime"].sigma[1] > 1.5 * params["regime"].sigma[0]
    assert params["student_t"].nu < 5
    assert params["merton"].lam > 0.005
    for name, p in params.items():
        rep = mc.report_from_stats(mc.path_stats(name, p, KEY, N, T), T)
        d = rep.to_dict()
        assert all(np.isfinite(d["var"])) and all(np.isfinite(d["cvar"])), name
        assert 0 < d["var"][0] < d["var"][1] < d["var"][2] < 1, name
    # the one-step variance each model implies is the data's, within the looseness of each fit
    m = params["merton"]
    reg = params["regime"]
    pi = mc.regime_stationary(reg.trans)
    st = params["student_t"]
    implied = {
        "gbm": params["gbm"].sigma ** 2,
        "merton": m.sigma ** 2 + m.lam * (m.jump_std ** 2 + m.jump_mean ** 2),
        "regime": pi @ (reg.sigma ** 2 + reg.mu ** 2) - (pi @ reg.mu) ** 2,
    }
    for name, v in implied.items():
        assert 0.5 < v / r.var() < 2.0, (name, v, r.var())
    # nu near 2: the t's variance is barely finite, compare the interquartile range instead
    iqr = 2 * st.scale * sps.t.ppf(0.75, st.nu)
    assert iqr == pytest.approx(np.subtract(*np.percentile(r, [75, 25])), rel=0.1)
