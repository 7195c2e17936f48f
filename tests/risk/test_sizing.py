"""Kelly sizing and the eight risk clamp layers: kernel against a plain-Python reference, each layer
made to bind on purpose, invalid inputs, config validation, and no Numba runtime allocation."""
import json
import math
import os
import subprocess
import sys
import textwrap
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from bot4jax import config as cfg
from bot4jax.errors import ConfigError
from bot4jax.kernels import risk_nb
from bot4jax.kernels.risk_nb import INPUT_ORDER, RECORD_DTYPE, risk_clamps_nb
from bot4jax.risk.sizing import (LAYER_NAMES, RiskClamps, RiskConfig, annualised_vol, book_correlation,
                                 decision_record, describe, params_record)

NAN, INF = math.nan, math.inf
DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"

# ---------------------------------------------------------------------------------------------------
# Plain-Python reference of the eight layers (slow and obvious; the kernel must agree exactly)
# ---------------------------------------------------------------------------------------------------

# name -> (low, high, low inclusive, high inclusive)
DOMAINS = {
    "p_up": (0.0, 1.0, True, True), "payoff_ratio": (0.0, INF, False, False),
    "forecast_vol": (0.0, INF, False, False), "var_per_unit": (0.0, INF, False, False),
    "es_per_unit": (0.0, INF, False, False), "open_heat": (0.0, INF, True, False),
    "corr_with_book": (-1.0 - 1e-9, 1.0 + 1e-9, True, True), "gross_exposure": (0.0, INF, True, False),
    "drawdown": (0.0, 1.0, True, True), "vol_ratio": (0.0, INF, True, False),
    "toxicity": (0.0, 1.0, True, True),
}


def in_domain(name, x):
    lo, hi, lo_in, hi_in = DOMAINS[name]
    if math.isnan(x) or math.isinf(x):
        return False
    return (x >= lo if lo_in else x > lo) and (x <= hi if hi_in else x < hi)


def crisis_multiplier(c: RiskConfig, drawdown, vol_ratio, toxicity):
    """(multiplier, flags): the most severe active condition wins."""
    candidates, flags = [1.0], 0
    if drawdown >= c.drawdown_halt:
        candidates.append(0.0)
        flags |= risk_nb.R_DRAWDOWN_HALT
    elif drawdown >= c.drawdown_reduce:
        candidates.append(c.drawdown_reduce_scale)
        flags |= risk_nb.R_DRAWDOWN_REDUCE
    if vol_ratio >= c.vol_halt_ratio:
        candidates.append(0.0)
        flags |= risk_nb.R_VOL_HALT
    elif vol_ratio >= c.vol_spike_ratio:
        candidates.append(c.vol_spike_scale)
        flags |= risk_nb.R_VOL_SPIKE
    regimes = [(c.toxicity_exit, 0.0, risk_nb.R_TOXICITY_EXIT),
               (c.toxicity_defensive, c.toxicity_defensive_scale, risk_nb.R_TOXICITY_DEFENSIVE),
               (c.toxicity_cautious, c.toxicity_cautious_scale, risk_nb.R_TOXICITY_CAUTIOUS)]
    for threshold, scale, flag in regimes:
        if toxicity >= threshold:
            candidates.append(scale)
            flags |= flag
            break
    return min(candidates), flags


def reference(c: RiskConfig, x: dict) -> dict:
    invalid = sum(1 << k for k, name in enumerate(INPUT_ORDER) if not in_domain(name, x[name]))
    if invalid:
        return {"final": 0.0, "kelly": 0.0, "proposal": 0.0, "sizes": [0.0] * 8,
                "binding": risk_nb.BINDING_INVALID, "reasons": risk_nb.R_INVALID_INPUT, "invalid": invalid}
    p, b = x["p_up"], x["payoff_ratio"]
    sign = 1.0 if p >= 0.5 else -1.0
    q = max(p, 1.0 - p)
    kelly = q - (1.0 - q) / b
    reasons = 0
    size = c.safety_factor * kelly
    if kelly <= 0:
        reasons |= risk_nb.R_NO_KELLY_EDGE
        size = 0.0
    if sign < 0 and not c.allow_short:
        reasons |= risk_nb.R_SHORT_BLOCKED
        size = 0.0
    proposal = sign * size if size > 0 else 0.0

    rho = min(1.0, max(-1.0, x["corr_with_book"]))
    if rho != x["corr_with_book"]:
        reasons |= risk_nb.R_CORR_CLIPPED
    gross, es = x["gross_exposure"], x["es_per_unit"]
    multiplier, crisis_flags = crisis_multiplier(c, x["drawdown"], x["vol_ratio"], x["toxicity"])
    reasons |= crisis_flags
    corr_scale = 1.0 - c.corr_penalty * max(0.0, sign * rho) if gross > 0 else 1.0
    layers = [
        lambda s: s if abs(p - 0.5) >= c.min_edge else 0.0,
        lambda s: min(s, c.target_vol / x["forecast_vol"]),
        lambda s: min(s, c.max_var / x["var_per_unit"]),
        lambda s: min(s, c.max_es / es),
        lambda s: min(s, max(0.0, c.max_heat - x["open_heat"]) / es),
        lambda s: s * corr_scale,
        lambda s: min(s, max(0.0, c.max_leverage - gross)),
        lambda s: s * multiplier,
    ]
    sizes, binding = [], risk_nb.BINDING_NONE
    for i, layer in enumerate(layers):
        new = layer(size)
        if new < size:
            binding = i
            reasons |= 1 << i
        size = new
        sizes.append(sign * size if size > 0 else 0.0)
    return {"final": sizes[-1], "kelly": sign * kelly, "proposal": proposal, "sizes": sizes,
            "binding": binding, "reasons": reasons, "invalid": 0}


def as_dict(rec):
    return {"final": float(rec["final"]), "kelly": float(rec["kelly"]), "proposal": float(rec["proposal"]),
            "sizes": [float(v) for v in rec["sizes"]], "binding": int(rec["binding"]),
            "reasons": int(rec["reasons"]), "invalid": int(rec["invalid"])}


def via_dispatcher(c: RiskConfig, x: dict):
    """The njit kernel called with records, as njit code calls it (the other entry point)."""
    params, rec = params_record(c), decision_record()
    final = risk_clamps_nb(params[0], *(x[name] for name in INPUT_ORDER), rec[0])
    return final, as_dict(rec[0])


# Inputs where no layer binds under the default config: p = 0.6, b = 1 -> f* = 0.2, proposal 0.05.
BASE = {"p_up": 0.6, "payoff_ratio": 1.0, "forecast_vol": 0.5, "var_per_unit": 0.05, "es_per_unit": 0.06,
        "open_heat": 0.0, "corr_with_book": 0.0, "gross_exposure": 0.0, "drawdown": 0.0, "vol_ratio": 1.0,
        "toxicity": 0.0}


@pytest.fixture(scope="module")
def clamps():
    return RiskClamps()


def size(clamps, **changes):
    x = dict(BASE, **changes)
    fraction, rec = clamps.size(**x)
    return fraction, describe(rec), x


# ---------------------------------------------------------------------------------------------------
# Kelly proposal
# ---------------------------------------------------------------------------------------------------

def test_base_case_binds_nothing(clamps):
    fraction, d, _ = size(clamps)
    assert fraction == pytest.approx(0.25 * 0.2, rel=1e-12)
    assert d["binding"] == "none" and d["reduced_by"] == [] and d["reasons"] == []
    assert all(v == pytest.approx(0.05, rel=1e-12) for v in d["sizes"].values())


@pytest.mark.parametrize("p, b", [(0.55, 1.0), (0.6, 1.5), (0.7, 0.8), (0.52, 2.5), (0.9, 3.0), (1.0, 1.0)])
def test_kelly_closed_form(p, b):
    wide = RiskClamps(RiskConfig(min_edge=0.0, target_vol=INF, max_var=INF, max_es=INF, max_heat=INF))
    fraction, rec = wide.size(p, b, 0.5, 0.05, 0.06)
    full = p - (1 - p) / b
    assert rec["kelly"] == pytest.approx(full, rel=1e-12, abs=1e-15)
    assert fraction == pytest.approx(0.25 * full, rel=1e-12)
    assert rec["binding"] == risk_nb.BINDING_NONE
    half = RiskClamps(RiskConfig(safety_factor=0.5, min_edge=0.0, target_vol=INF, max_var=INF, max_es=INF,
                                 max_heat=INF))
    assert half.size(p, b, 0.5, 0.05, 0.06)[0] == pytest.approx(0.5 * full, rel=1e-12)


def test_negative_kelly_is_floored_at_zero(clamps):
    fraction, d, _ = size(clamps, p_up=0.55, payoff_ratio=0.8)  # f* = 0.55 - 0.45 / 0.8 < 0
    assert fraction == 0.0 and d["kelly"] == pytest.approx(0.55 - 0.45 / 0.8)
    assert d["reasons"] == ["no_kelly_edge"] and d["binding"] == "none"


def test_short_signal_long_only_and_signed(clamps):
    fraction, d, _ = size(clamps, p_up=0.35)
    assert fraction == 0.0 and "short_blocked" in d["reasons"]
    assert d["kelly"] == pytest.approx(-(0.65 - 0.35 / 1.0))
    short = RiskClamps(RiskConfig(allow_short=True))
    fraction, rec = short.size(**dict(BASE, p_up=0.35, payoff_ratio=1.2))
    assert fraction == pytest.approx(-0.25 * (0.65 - 0.35 / 1.2), rel=1e-12)
    assert rec["binding"] == risk_nb.BINDING_NONE and all(rec["sizes"] < 0)


# ---------------------------------------------------------------------------------------------------
# Each layer binds on purpose
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("layer, changes, before, expected", [
    ("calibration_gate", {"p_up": 0.51}, 0.25 * 0.02, 0.0),               # edge 0.01 < min_edge 0.02
    ("vol_target", {"forecast_vol": 10.0}, 0.05, 0.40 / 10.0),             # cap 0.04 < 0.05
    ("var_limit", {"var_per_unit": 1.0}, 0.05, 0.03),                      # 0.03 / 1.0
    ("es_limit", {"es_per_unit": 1.0}, 0.05, 0.04),                        # 0.04 / 1.0 (heat cap 0.08)
    ("portfolio_heat", {"open_heat": 0.0782}, 0.05, (0.08 - 0.0782) / 0.06),
    ("correlation", {"gross_exposure": 0.2, "corr_with_book": 0.6}, 0.05, 0.05 * 0.4),
    ("leverage", {"gross_exposure": 0.98}, 0.05, 1.0 - 0.98),
    ("crisis", {"drawdown": 0.12}, 0.05, 0.05 * 0.5),
])
def test_each_layer_binds(clamps, layer, changes, before, expected):
    fraction, d, x = size(clamps, **changes)
    assert fraction == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert d["binding"] == layer and d["reduced_by"] == [layer]
    i = LAYER_NAMES.index(layer)
    size_before = d["sizes"][LAYER_NAMES[i - 1]] if i > 0 else d["proposal"]
    assert size_before == pytest.approx(before, rel=1e-12)
    assert describe(clamps.size(**x)[1]) == d  # deterministic, and the record is rewritten in full


def test_binding_is_the_last_layer_that_reduced(clamps):
    # vol target cuts 0.05 -> 0.04, then VaR 0.04 -> 0.03: VaR is the constraint that holds at the end
    fraction, d, _ = size(clamps, forecast_vol=10.0, var_per_unit=1.0)
    assert fraction == pytest.approx(0.03)
    assert d["binding"] == "var_limit" and d["reduced_by"] == ["vol_target", "var_limit"]
    assert d["sizes"]["vol_target"] == pytest.approx(0.04)
    # a layer that does not reduce (VaR cap 0.6 above 0.04) does not bind
    fraction, d, _ = size(clamps, forecast_vol=10.0)
    assert d["binding"] == "vol_target"


def test_correlation_only_penalises_same_direction_risk():
    clamps = RiskClamps(RiskConfig(allow_short=True))
    x = dict(BASE, gross_exposure=0.2, corr_with_book=-0.6)
    assert clamps.size(**x)[0] == pytest.approx(0.05)          # long, hedging the book: no penalty
    fraction, rec = clamps.size(**dict(x, p_up=0.4))            # short into a negatively correlated book
    assert fraction == pytest.approx(-0.05 * 0.4) and rec["binding"] == risk_nb.L_CORR
    # no open book: the correlation is not applied
    assert clamps.size(**dict(BASE, corr_with_book=0.9))[0] == pytest.approx(0.05)


def test_heat_and_leverage_already_used_up(clamps):
    fraction, d, _ = size(clamps, open_heat=0.2)
    assert fraction == 0.0 and d["binding"] == "portfolio_heat"
    fraction, d, _ = size(clamps, gross_exposure=1.5)
    assert fraction == 0.0 and d["binding"] == "leverage"


@pytest.mark.parametrize("changes, multiplier, flag", [
    ({"drawdown": 0.05}, 1.0, None),
    ({"drawdown": 0.10}, 0.5, "drawdown_reduce"),
    ({"drawdown": 0.25}, 0.0, "drawdown_halt"),
    ({"vol_ratio": 1.9}, 1.0, None),
    ({"vol_ratio": 2.0}, 0.5, "vol_spike"),
    ({"vol_ratio": 3.5}, 0.0, "vol_halt"),
    ({"toxicity": 0.19}, 1.0, None),
    ({"toxicity": 0.2}, 0.5, "toxicity_cautious"),
    ({"toxicity": 0.29}, 0.5, "toxicity_cautious"),
    ({"toxicity": 0.3}, 0.2, "toxicity_defensive"),
    ({"toxicity": 0.39}, 0.2, "toxicity_defensive"),
    ({"toxicity": 0.4}, 0.0, "toxicity_exit"),
    ({"toxicity": 0.8}, 0.0, "toxicity_exit"),
    ({"drawdown": 0.12, "toxicity": 0.35}, 0.2, "toxicity_defensive"),   # the most severe wins
    ({"drawdown": 0.12, "vol_ratio": 2.5}, 0.5, "vol_spike"),
])
def test_crisis_regimes(clamps, changes, multiplier, flag):
    fraction, d, _ = size(clamps, **changes)
    assert fraction == pytest.approx(0.05 * multiplier, rel=1e-12)
    assert d["binding"] == ("crisis" if multiplier < 1 else "none")
    crisis_flags = [r for r in d["reasons"] if not r.endswith("_reduced")]
    if flag is None:
        assert crisis_flags == []
    else:
        assert flag in crisis_flags


# ---------------------------------------------------------------------------------------------------
# Invalid inputs: zero position, flagged, no exception
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", INPUT_ORDER)
@pytest.mark.parametrize("bad", [NAN, INF, -INF, -0.5])
def test_invalid_inputs_give_zero(clamps, name, bad):
    if bad == -0.5 and name == "corr_with_book":
        bad = -1.5
    fraction, d, _ = size(clamps, **{name: bad})
    assert fraction == 0.0
    assert d["binding"] == "invalid_input" and d["reasons"] == ["invalid_input"]
    assert d["invalid_inputs"] == [name]
    assert all(v == 0.0 for v in d["sizes"].values())
    # the next valid call recovers fully
    assert size(clamps)[0] == pytest.approx(0.05)


def test_invalid_mask_names_every_bad_input(clamps):
    fraction, d, _ = size(clamps, p_up=1.2, toxicity=NAN, payoff_ratio=0.0)
    assert fraction == 0.0 and d["invalid_inputs"] == ["p_up", "payoff_ratio", "toxicity"]


def test_correlation_rounding_is_clipped_not_rejected(clamps):
    fraction, d, _ = size(clamps, gross_exposure=0.1, corr_with_book=1.0 + 1e-12)
    assert fraction == 0.0 and d["binding"] == "correlation" and "correlation_clipped" in d["reasons"]
    fraction, d, _ = size(clamps, gross_exposure=0.1, corr_with_book=-1.0 - 1e-12)
    assert fraction == pytest.approx(0.05) and d["reasons"] == ["correlation_clipped"]


# ---------------------------------------------------------------------------------------------------
# Kernel against the reference on random inputs and configs, NaN and inf included
# ---------------------------------------------------------------------------------------------------

SPECIAL = st.sampled_from([NAN, INF, -INF, -0.01, 0.0, 1.5])
RANGES = {"p_up": (0.0, 1.0), "payoff_ratio": (0.05, 5.0), "forecast_vol": (0.01, 5.0),
          "var_per_unit": (1e-4, 0.5), "es_per_unit": (1e-4, 0.6), "open_heat": (0.0, 0.12),
          "corr_with_book": (-1.0, 1.0), "gross_exposure": (0.0, 1.5), "drawdown": (0.0, 0.4),
          "vol_ratio": (0.0, 4.0), "toxicity": (0.0, 0.6)}


@st.composite
def inputs(draw):
    """Plausible inputs; one time in four, one to three of them NaN, infinite or out of range."""
    x = {name: draw(st.floats(lo, hi)) for name, (lo, hi) in RANGES.items()}
    if draw(st.integers(0, 3)) == 0:
        for name in draw(st.lists(st.sampled_from(INPUT_ORDER), min_size=1, max_size=3)):
            x[name] = draw(SPECIAL)
    return x


@st.composite
def configs(draw):
    unit = st.floats(0.0, 1.0)
    dd = sorted(draw(st.lists(st.floats(0.0, 0.5), min_size=2, max_size=2)))
    vr = sorted(draw(st.lists(st.floats(0.5, 4.0), min_size=2, max_size=2)))
    tox = sorted(draw(st.lists(st.floats(0.0, 0.6), min_size=3, max_size=3)))
    return RiskConfig(
        safety_factor=draw(st.floats(0.01, 1.0)), allow_short=draw(st.booleans()),
        min_edge=draw(st.floats(0.0, 0.2)), target_vol=draw(st.floats(0.0, 1.5)),
        max_var=draw(st.floats(0.0, 0.1)), max_es=draw(st.floats(0.0, 0.12)),
        max_heat=draw(st.floats(0.0, 0.2)),
        corr_penalty=draw(unit), max_leverage=draw(st.floats(0.0, 3.0)),
        drawdown_reduce=dd[0], drawdown_halt=dd[1], drawdown_reduce_scale=draw(unit),
        vol_spike_ratio=vr[0], vol_halt_ratio=vr[1], vol_spike_scale=draw(unit),
        toxicity_cautious=tox[0], toxicity_defensive=tox[1], toxicity_exit=tox[2],
        toxicity_cautious_scale=draw(unit), toxicity_defensive_scale=draw(unit))


@settings(max_examples=400, deadline=None)
@given(c=st.one_of(st.just(RiskConfig()), configs()), x=inputs())
def test_kernel_equals_reference(c, x):
    expected = reference(c, x)
    fraction, rec = RiskClamps(c).size(**x)
    assert as_dict(rec) == expected
    assert fraction == expected["final"]
    nb_final, nb_rec = via_dispatcher(c, x)
    assert nb_rec == expected and nb_final == expected["final"]


def random_config(rng) -> RiskConfig:
    dd, vr = np.sort(rng.uniform(0, 0.5, 2)), np.sort(rng.uniform(0.5, 4, 2))
    tox = np.sort(rng.uniform(0, 0.6, 3))
    u = rng.uniform(0, 1, 6)
    return RiskConfig(
        safety_factor=rng.uniform(0.05, 1), allow_short=bool(rng.integers(2)), min_edge=rng.uniform(0, 0.1),
        target_vol=rng.uniform(0.05, 1.5), max_var=rng.uniform(0.001, 0.1), max_es=rng.uniform(0.001, 0.12),
        max_heat=rng.uniform(0.01, 0.2), corr_penalty=u[0], max_leverage=rng.uniform(0.1, 3),
        drawdown_reduce=dd[0], drawdown_halt=dd[1], drawdown_reduce_scale=u[1], vol_spike_ratio=vr[0],
        vol_halt_ratio=vr[1], vol_spike_scale=u[2], toxicity_cautious=tox[0], toxicity_defensive=tox[1],
        toxicity_exit=tox[2], toxicity_cautious_scale=u[3], toxicity_defensive_scale=u[4])


def test_kernel_equals_reference_on_a_seeded_sweep():
    """Many random configs and inputs; every binding outcome must occur so every layer is compared."""
    rng = np.random.default_rng(4)
    seen = set()
    for _ in range(200):
        c = random_config(rng)
        clamps = RiskClamps(c)
        for _ in range(25):
            x = {name: float(rng.uniform(lo, hi)) for name, (lo, hi) in RANGES.items()}
            if rng.uniform() < 0.1:
                x[INPUT_ORDER[rng.integers(len(INPUT_ORDER))]] = float(rng.choice([NAN, INF, -INF, -1.0]))
            expected = reference(c, x)
            fraction, rec = clamps.size(**x)
            assert as_dict(rec) == expected, (c, x)
            seen.add(expected["binding"])
    assert seen == set(range(-2, 8))


@settings(max_examples=300, deadline=None)
@given(c=configs(), x=inputs())
def test_final_size_respects_every_cap(c, x):
    fraction, rec = RiskClamps(c).size(**x)
    a = abs(fraction)
    assert a <= abs(rec["proposal"]) and (fraction == 0 or np.sign(fraction) == np.sign(rec["proposal"]))
    if rec["invalid"]:
        assert fraction == 0.0
        return
    tol = 1e-12
    if a > 0:
        assert abs(x["p_up"] - 0.5) >= c.min_edge
        assert a * x["forecast_vol"] <= c.target_vol * (1 + tol)
        assert a * x["var_per_unit"] <= c.max_var * (1 + tol)
        assert a * x["es_per_unit"] <= c.max_es * (1 + tol)
        assert x["open_heat"] + a * x["es_per_unit"] <= c.max_heat * (1 + tol) + tol
        assert x["gross_exposure"] + a <= c.max_leverage * (1 + tol) + tol
        assert a <= c.safety_factor


def test_njit_loop_equals_python_calls():
    """A batch replay calls the kernel from compiled code, one record per decision."""
    from numba import njit

    @njit
    def replay(params, inputs, records, out):
        for i in range(inputs.shape[0]):
            r = inputs[i]
            out[i] = risk_clamps_nb(params[0], r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9],
                                    r[10], records[i])

    rng = np.random.default_rng(1)
    n = 500
    inputs = np.column_stack([rng.uniform(0.3, 0.8, n), rng.uniform(0.5, 2, n), rng.uniform(0.1, 2, n),
                              rng.uniform(0.01, 0.2, n), rng.uniform(0.01, 0.3, n), rng.uniform(0, 0.1, n),
                              rng.uniform(-1, 1, n), rng.uniform(0, 1.2, n), rng.uniform(0, 0.3, n),
                              rng.uniform(0, 4, n), rng.uniform(0, 0.5, n)])
    inputs[::37, 2] = np.nan
    c = RiskConfig(allow_short=True)
    records, out = np.zeros(n, RECORD_DTYPE), np.zeros(n)
    replay(params_record(c), inputs, records, out)
    clamps = RiskClamps(c)
    for i in range(n):
        fraction, rec = clamps.size(*inputs[i].tolist())
        assert fraction == out[i] and as_dict(rec) == as_dict(records[i])
    assert (records["binding"] == risk_nb.BINDING_INVALID).sum() == len(range(0, n, 37))
    assert len(set(records["binding"].tolist())) >= 6  # the random inputs reach most layers


def test_real_btc_days_through_the_clamps():
    """Daily Binance BTC/USDT 2017-2021: an EWMA(0.94) variance forecast (known before each day) and
    Gaussian unit VaR/ES drive the clamps; every decision equals the reference, and in the March 2020
    crash (forecast vol above twice its long-run level) the crisis override halves the position."""
    path = DATA / "Binance_BTCUSDT_d.csv"
    if not path.exists():
        pytest.skip(f"{path} not found (real market data lives outside the repository)")
    a = np.genfromtxt(path, delimiter=",", skip_header=1, usecols=(0, 6))
    a[a[:, 0] < 1e11, 0] *= 1000                       # two timestamp styles in one file
    ts, first = np.unique(a[:, 0], return_index=True)  # one duplicated day; ascending order
    close = a[first, 1][:-1]                            # the newest row is a partial day
    r = np.diff(np.log(close))
    h = np.empty(r.size)
    h[0] = r[:30].var()
    for t in range(1, r.size):
        h[t] = 0.94 * h[t - 1] + 0.06 * r[t - 1] ** 2
    long_run = r.std()
    c = RiskConfig()
    clamps = RiskClamps(c)
    flagged = []
    for t in range(r.size):
        vol = annualised_vol(h[t], 365.0)
        var, es = clamps.unit_risk(vol)
        x = dict(BASE, p_up=0.6, payoff_ratio=1.5, forecast_vol=vol, var_per_unit=var, es_per_unit=es,
                 vol_ratio=math.sqrt(h[t]) / long_run)
        fraction, rec = clamps.size(**x)
        assert as_dict(rec) == reference(c, x)
        if rec["reasons"] & risk_nb.R_VOL_SPIKE:
            flagged.append(int(ts[t + 1]))
            if rec["binding"] == risk_nb.L_CRISIS:
                assert fraction == pytest.approx(0.5 * rec["sizes"][risk_nb.L_CRISIS - 1])
    crash = int(np.datetime64("2020-03-13", "ms").astype(np.int64))
    assert crash in flagged and 0 < len(flagged) < r.size // 20


# ---------------------------------------------------------------------------------------------------
# No Numba runtime allocation per call (NRT statistics need NUMBA_NRT_STATS=1 before numba's import)
# ---------------------------------------------------------------------------------------------------

def test_no_runtime_allocation_per_call():
    script = textwrap.dedent("""
        import json
        import numpy as np
        from numba import njit
        from numba.core.runtime import rtsys
        from bot4jax.kernels.risk_nb import RECORD_DTYPE, risk_clamps_nb
        from bot4jax.risk.sizing import RiskClamps, RiskConfig, params_record

        @njit
        def loop(params, records, n):
            acc = 0.0
            for i in range(n):
                acc += risk_clamps_nb(params[0], 0.5 + (i % 40) / 100.0, 1.2, 0.6, 0.07, 0.08, 0.01, 0.3, 0.4,
                                      0.05, 1.5, (i % 50) / 100.0, records[0])
            return acc

        clamps = RiskClamps(RiskConfig())
        params, records = params_record(RiskConfig()), np.zeros(1, RECORD_DTYPE)
        clamps.size(0.6, 1.0, 0.5, 0.05, 0.06)
        loop(params, records, 10)
        s0 = rtsys.get_allocation_stats()
        for i in range(20_000):
            clamps.size(0.5 + (i % 40) / 100.0, 1.2, 0.6, 0.07, 0.08, 0.01, 0.3, 0.4, 0.05, 1.5,
                        (i % 50) / 100.0)
        s1 = rtsys.get_allocation_stats()
        loop(params, records, 10)
        s2 = rtsys.get_allocation_stats()
        loop(params, records, 20_000)
        s3 = rtsys.get_allocation_stats()
        print(json.dumps([list(s) for s in (s0, s1, s2, s3)]))
    """)
    env = dict(os.environ, NUMBA_NRT_STATS="1")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    s0, s1, s2, s3 = json.loads(done.stdout.strip().splitlines()[-1])
    assert s0 == s1, "RiskClamps.size allocated through the Numba runtime"
    # an njit loop wraps its array arguments once per loop call, whatever the number of decisions
    assert [b - a for a, b in zip(s1, s2)] == [b - a for a, b in zip(s2, s3)]


# ---------------------------------------------------------------------------------------------------
# Config validation and helpers
# ---------------------------------------------------------------------------------------------------

NUMERIC_FIELDS = [f.name for f in fields(RiskConfig) if f.name != "allow_short"]


@pytest.mark.parametrize("name", NUMERIC_FIELDS)
def test_negative_limit_rejected_naming_the_field(name):
    with pytest.raises(ConfigError, match=f"'{name}'.*-0.1"):
        RiskConfig(**{name: -0.1})
    with pytest.raises(ConfigError, match=f"'{name}'"):
        RiskConfig(**{name: NAN})


@pytest.mark.parametrize("changes, field_name", [
    ({"safety_factor": 1.5}, "safety_factor"), ({"safety_factor": 0.0}, "safety_factor"),
    ({"toxicity_cautious_scale": 2.0}, "toxicity_cautious_scale"), ({"min_edge": 0.6}, "min_edge"),
    ({"var_confidence": 0.4}, "var_confidence"), ({"risk_horizon_days": INF}, "risk_horizon_days"),
    ({"drawdown_reduce": 0.3}, "drawdown_reduce"), ({"toxicity_defensive": 0.5}, "toxicity_defensive"),
    ({"vol_spike_ratio": 4.0}, "vol_spike_ratio"), ({"max_var": "0.03"}, "max_var"),
    ({"allow_short": 1}, "allow_short"),
])
def test_inconsistent_config_rejected(changes, field_name):
    with pytest.raises(ConfigError, match=f"'{field_name}'"):
        RiskConfig(**changes)


def test_config_from_toml_values():
    c = cfg.from_dict(RiskConfig, {"max_var": 1, "allow_short": True, "target_vol": INF})
    assert (c.max_var, c.allow_short, c.target_vol) == (1.0, True, INF)
    with pytest.raises(ConfigError, match="max_heat"):
        cfg.from_dict(RiskConfig, {"max_heat": -0.5})
    assert replace(RiskConfig(), max_var=0.05).max_var == 0.05


def test_params_record_carries_every_kernel_field():
    c = RiskConfig(allow_short=True, max_var=0.07)
    p = params_record(c)[0]
    for name in p.dtype.names:
        assert p[name] == float(getattr(c, name))


def test_unit_risk_matches_the_normal_closed_form():
    c = RiskConfig(var_confidence=0.975, risk_horizon_days=2.0)
    var, es = RiskClamps(c).unit_risk(0.8)
    sigma = 0.8 * math.sqrt(2.0 / 365.0)
    assert var == pytest.approx(stats.norm.ppf(0.975) * sigma, rel=1e-12)
    tail_mean = stats.norm.expect(lambda r: r, lb=stats.norm.ppf(0.975)) / 0.025
    assert es == pytest.approx(tail_mean * sigma, rel=1e-8)


def test_helpers():
    assert annualised_vol(1e-4, 365 * 24) == pytest.approx(math.sqrt(1e-4 * 8760))
    assert book_correlation([], []) == 0.0
    assert book_correlation([0.3, -0.1], [0.8, 0.5]) == pytest.approx((0.3 * 0.8 - 0.1 * 0.5) / 0.4)


def test_describe_is_json_ready(clamps):
    _, rec = clamps.size(**dict(BASE, toxicity=0.25, forecast_vol=10.0))
    d = json.loads(json.dumps(describe(rec)))
    assert d["binding"] == "crisis" and d["reduced_by"] == ["vol_target", "crisis"]
    assert d["reasons"] == ["vol_target_reduced", "crisis_reduced", "toxicity_cautious"]
    assert list(d["sizes"]) == list(LAYER_NAMES)
    assert describe(decision_record())["binding"] == "none"  # a fresh record, before any decision
