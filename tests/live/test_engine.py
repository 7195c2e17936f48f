"""The live decision engine runs the whole saved ensemble (features -> members -> blend -> calibrator)
one bar at a time, and equals the batch forward pass `predict_bars` on the same bars, for every kind
of blend, with regime calibrators, through an orbax round trip."""
import dataclasses
import math

import numpy as np
import pytest

from bot4jax.config import LSTMConfig, TrainConfig
from bot4jax.data.simulator import simulate
from bot4jax.live.engine import DecisionEngine
from bot4jax.jaxcfg import jax, jnp
from bot4jax.models import attention_lstm, baseline, blending
from bot4jax.registry.checkpoints import CheckpointError, load_model, save_model
from bot4jax.train.ensemble import Ensemble, from_checkpoint, predict_bars, to_checkpoint
from bot4jax.data.sources import buy_volume_per_bar
from bot4jax.train.features import feature_matrix, feature_names
from bot4jax.train.members import lstm_config, member_specs
from bot4jax.validation.calibration import isotonic_fit

N_TRAIN, N_LIVE, SPAN = 1500, 400, 5
CONFIG = TrainConfig(lstm=LSTMConfig(hidden=8, window=4, burn_in=4))
# What training hands the risk layer (a GARCH(1,1)-t in percent units); fixed here: the engine only
# carries it to the loop.
RISK = {"payoff_ratio": 1.02, "volatility": {"mu": 0.0, "omega": 0.05, "alpha": 0.05, "beta": 0.9, "nu": 5.0,
                                             "scale": 100.0, "h0": 1.0, "long_run_variance": 1.0,
                                             "converged": True}}


@pytest.fixture(scope="module")
def fitted():
    """Member parameters at their (seeded) initialisation around the scaler of a simulated market:
    what matters here is that live and batch compute the same function of them, not their skill.
    The live bars are a later stretch of the same market."""
    m = simulate(n_bars=N_TRAIN + N_LIVE, timeframe="1m", seed=3)
    bv = buy_volume_per_bar(m.bars.ts, m.trades)
    names = feature_names(True)
    x = feature_matrix(m.bars, bv, SPAN)
    specs = member_specs(CONFIG, names)
    cols = {s.name: list(s.columns) for s in specs}  # each member reads its own columns
    rows = x[60:N_TRAIN]
    mean, std = rows.mean(axis=0), rows.std(axis=0)
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    c = cols["logistic"]
    params = {
        "logistic": {"scaler": {"mean": mean[c], "std": std[c]},
                     "model": {"coef": jnp.asarray(0.3 * np.random.default_rng(0).normal(size=len(c))),
                               "intercept": jnp.asarray(0.01)}},
        "mlp": baseline.init_params(k1, len(cols["mlp"]), 4, mean[cols["mlp"]], std[cols["mlp"]]),
        "lstm": attention_lstm.init_params(k2, len(cols["lstm"]), lstm_config(CONFIG), mean[cols["lstm"]],
                                           std[cols["lstm"]]),
    }
    return dict(market=m, bv=bv, x=x, specs=tuple(specs), params=params, names=names, risk=RISK)


def _ensemble(f, mode="stacking", voting="soft", regimes=False, horizon=1) -> Ensemble:
    M = len(f["specs"])
    P = np.random.default_rng(0).uniform(0.3, 0.7, size=(M, 300))
    yy = (np.random.default_rng(1).uniform(size=300) < P.mean(axis=0)).astype(float)
    blend = None if mode == "dynamic" else blending.fit_blend(mode, P, yy, voting=voting)
    rng = np.random.default_rng(2)
    b = rng.uniform(0.35, 0.65, 2000)
    cal = isotonic_fit(b, (rng.uniform(size=2000) < b).astype(float))
    maps, col, edges = {}, -1, np.zeros(0)
    if regimes:
        col = f["names"].index("bb_width")
        edges = np.quantile(f["x"][60:N_TRAIN, col], [1 / 3, 2 / 3])
        maps = {0: isotonic_fit(b[:1000], (rng.uniform(size=1000) < b[:1000] ** 2 * 2).astype(float)),
                2: isotonic_fit(b[1000:], (rng.uniform(size=1000) < 0.5).astype(float))}
    return Ensemble(f["names"], SPAN, f["specs"], f["params"], mode, blend, 50, 1.0, cal, maps, col, edges,
                    1e-3, horizon)


def _engine(f, ens, tmp_path) -> DecisionEngine:
    tree, meta = to_checkpoint(ens)
    meta["risk"] = f["risk"]
    path = save_model(tmp_path / "model", tree, meta)
    return DecisionEngine(load_model(path))


def _live(f, engine, flow=True):
    b = f["market"].bars
    out = []
    for i in range(N_TRAIN, N_TRAIN + N_LIVE):
        p = engine.on_bar(b.close[i], b.high[i], b.low[i], b.volume[i], f["bv"][i] if flow else math.nan)
        out.append((p, engine.last_members.copy(), engine.last_blend))
    return out


def _batch(f, ens, flow=True):
    b = f["market"].bars
    live = slice(N_TRAIN, N_TRAIN + N_LIVE)
    bv = f["bv"][live] if flow else np.full(N_LIVE, np.nan)
    from bot4jax.data.types import take
    x = feature_matrix(take(b, live), bv, SPAN)
    return predict_bars(ens, x, b.close[live])


@pytest.mark.parametrize("mode, voting, regimes, horizon", [
    ("stacking", "soft", False, 1),
    ("voting", "optimized", True, 1),
    ("voting", "hard", False, 1),
    ("bma", "soft", False, 1),
    ("dynamic", "soft", True, 3),
])
def test_engine_equals_the_batch_forward_pass(fitted, tmp_path, mode, voting, regimes, horizon):
    ens = _ensemble(fitted, mode, voting, regimes, horizon)
    engine = _engine(fitted, ens, tmp_path)
    live = _live(fitted, engine)
    batch = _batch(fitted, ens)
    p = np.array([r[0] for r in live])
    valid = np.isfinite(batch["p"])
    np.testing.assert_array_equal(np.isfinite(p), valid)
    assert valid.sum() == N_LIVE - 49  # the feature warm-up, then a decision on every bar
    members = np.array([r[1] for r in live])[valid]
    np.testing.assert_allclose(members, batch["members"][:, valid].T, atol=1e-5, rtol=0)
    blends = np.array([r[2] for r in live])
    np.testing.assert_allclose(blends[valid], batch["blend"][valid], atol=1e-5, rtol=0)
    np.testing.assert_allclose(p[valid], batch["p"][valid], atol=1e-5, rtol=0)
    assert np.all((p[valid] >= 1e-3) & (p[valid] <= 1 - 1e-3))
    assert np.std(members[:, 0]) > 0  # the members respond to the data


def test_dynamic_weights_follow_the_resolved_outcomes(fitted, tmp_path):
    """The dynamic blend's weights move from equal toward the member with the better recent record."""
    engine = _engine(fitted, _ensemble(fitted, "dynamic"), tmp_path)
    _live(fitted, engine)
    assert engine.n_observed == N_LIVE - 49 - 1
    # the same weights as the library's streaming form fed the same outcomes
    b = fitted["market"].bars
    state = blending.dynamic_init(3, 50)
    ps = [r[1] for r in _live_again(fitted, tmp_path)]
    close = b.close[N_TRAIN + 49:N_TRAIN + N_LIVE]
    for i in range(len(ps) - 1):
        state = blending.dynamic_observe(state, ps[i], float(close[i + 1] > close[i]))
    np.testing.assert_allclose(engine.dynamic_weights, blending.dynamic_weights(state), rtol=1e-9, atol=1e-12)
    assert not np.allclose(engine.dynamic_weights, 1 / 3)


def _live_again(f, tmp_path):
    engine = _engine(f, _ensemble(f, "dynamic"), tmp_path / "again")
    return [r for r in _live(f, engine) if np.isfinite(r[0])]


def test_missing_order_flow_reads_as_no_information(fitted, tmp_path):
    ens = _ensemble(fitted)
    engine = _engine(fitted, ens, tmp_path)
    p = np.array([r[0] for r in _live(fitted, engine, flow=False)])
    assert engine.missing_flow == N_LIVE
    batch = _batch(fitted, ens, flow=False)
    valid = np.isfinite(batch["p"])
    np.testing.assert_allclose(p[valid], batch["p"][valid], atol=1e-5, rtol=0)
    x = feature_matrix(fitted["market"].bars, np.full(N_TRAIN + N_LIVE, np.nan), SPAN)
    assert np.all(x[:, -2:] == 0.0)


def test_checkpoint_round_trip_keeps_every_array(fitted, tmp_path):
    ens = _ensemble(fitted, "stacking", regimes=True)
    tree, meta = to_checkpoint(ens)
    save_model(tmp_path / "m", tree, meta)
    ck = load_model(tmp_path / "m")
    back = from_checkpoint(ck.params, ck.meta)
    assert back.names == ens.names and back.mode == "stacking" and back.features == ens.features
    np.testing.assert_array_equal(back.blend.coef, ens.blend.coef)
    np.testing.assert_array_equal(back.calibrator.x_knots, ens.calibrator.x_knots)
    assert set(back.regime_maps) == {0, 2}
    np.testing.assert_array_equal(back.regime_edges, ens.regime_edges)
    for a, b in zip(jax.tree_util.tree_leaves(back.params), jax.tree_util.tree_leaves(ens.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_checkpoint_of_another_kind_is_refused_clearly(fitted, tmp_path):
    tree, meta = to_checkpoint(_ensemble(fitted))
    meta.update(kind="baseline_mlp", risk=fitted["risk"])
    save_model(tmp_path / "old", tree, meta)
    with pytest.raises(CheckpointError, match="not an ensemble.*retrain"):
        DecisionEngine(load_model(tmp_path / "old"))
    tree, meta = to_checkpoint(dataclasses.replace(_ensemble(fitted), features=("x",) * 12))
    meta["risk"] = fitted["risk"]
    save_model(tmp_path / "odd", tree, meta)
    with pytest.raises(CheckpointError, match="features"):
        DecisionEngine(load_model(tmp_path / "odd"))
