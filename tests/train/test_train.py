"""`python -m bot4jax.train` end to end on a small simulated market: the full report (every member and
blend mode out of fold over the CPCV paths, PBO and deflated Sharpe, calibration before / after,
diversity, importance, the leakage sentinel), the saved ensemble reproducing the test-span numbers,
and the calibrated ensemble beating every member out of fold where the order flow carries signal."""
import dataclasses
import json
import math

import numpy as np
import pytest

from bot4jax import config as cfg
from bot4jax.models.stacking import MODES, logistic_member
from bot4jax.registry.checkpoints import load_model
from bot4jax.train.__main__ import main as train_main
from bot4jax.train.__main__ import parser
from bot4jax.train.cpcv import DevSamples, equal_sizes, evenly
from bot4jax.train.ensemble import from_checkpoint, predict_bars
from bot4jax.train.features import FLOW_NAMES, feature_matrix, feature_names, select
from bot4jax.train.leakage import shuffled_outcome_sentinel
from bot4jax.train.pipeline import QUICK, _features_of_first, load_market, quick_config
from bot4jax.validation.scoring import log_loss

METRIC_KEYS = {"log_loss", "brier", "ece", "auc", "sharpe"}


def _run(tmp, *flags):
    out = tmp / "runs"
    train_main(["--no-progress", "--out", str(out), "--checkpoints", str(tmp / "ck"), *flags])
    return sorted(out.iterdir(), key=lambda p: p.stat().st_mtime)[-1]


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    run_dir = _run(tmp, "--quick")
    return run_dir, json.loads((run_dir / "metrics.json").read_text())


def test_report_has_every_member_and_blend_mode_over_the_paths(quick):
    _, m = quick
    cv = m["cpcv"]
    n_paths = math.comb(cv["cv"]["n_groups"] - 1, cv["cv"]["n_test_groups"] - 1)
    assert cv["cv"]["n_paths"] == n_paths >= 3
    assert set(cv["members"]) == {"logistic", "mlp", "lstm"} and set(cv["blends"]) == set(MODES)
    for table in (cv["members"], cv["blends"]):
        for name, s in table.items():
            assert METRIC_KEYS <= set(s), name
            for k in METRIC_KEYS:
                assert len(s[k]["paths"]) == n_paths and np.isclose(s[k]["mean"], np.mean(s[k]["paths"]))
                assert np.isclose(s[k]["std"], np.std(s[k]["paths"], ddof=1))
            assert 0.6 < s["log_loss"]["mean"] < 0.8 and 0 < s["brier"]["mean"] < 0.3
    ch = cv["chosen"]
    assert ch["mode"] == min(cv["blends"], key=lambda k: cv["blends"][k]["log_loss"]["mean"])
    assert math.isclose(sum(ch["weights"].values()), 1.0)


def test_overfitting_calibration_diversity_importance_and_sentinel(quick):
    run_dir, m = quick
    o = m["cpcv"]["overfitting"]
    assert o["configurations"] == ["logistic", "mlp", "lstm"] + [f"blend:{k}" for k in MODES]
    assert 0.0 <= o["pbo"]["pbo"] <= 1.0 and o["pbo"]["n_combinations"] == math.comb(16, 8)
    d = o["deflated_sharpe"]
    assert d["configuration"] == f"blend:{m['cpcv']['chosen']['mode']}"
    assert d["dsr"] is None and d["reason"] or 0.0 <= d["dsr"] <= 1.0
    c = m["cpcv"]["calibration"]
    for side in ("before", "after"):
        assert {"log_loss", "brier", "ece"} == set(c[side]) and 0 < c[side]["brier"] < 0.3
    div = m["cpcv"]["diversity"]
    assert np.array(div["error_correlation"]).shape == (3, 3) and 0 <= div["mean_disagreement"] <= 1
    imp = json.loads((run_dir / "importance.json").read_text())
    assert set(imp["features"]) == set(feature_names(True)) and len(imp["aggregated"]) == len(imp["features"])
    assert imp["aggregated"] == sorted(imp["aggregated"], reverse=True)
    assert imp["features"][0] in FLOW_NAMES  # the simulator's signal is in the order flow
    s = m["sentinel"]
    assert s["passed"] and all(abs(v) < 0.1 for v in s["sharpes"]) and set(s["per_member_sharpes"]) == {
        "logistic", "mlp", "lstm"}
    assert m["lookahead"]["passed"]
    for png in ("calibration_before.png", "calibration_after.png", "calibration.png", "importance.png",
                "equity.png"):
        assert (run_dir / png).stat().st_size > 5_000, png


def test_saved_ensemble_reproduces_the_test_span_and_nothing_saw_it(quick):
    run_dir, m = quick
    ck = load_model(run_dir)
    ens = from_checkpoint(ck.params, ck.meta)
    assert ens.names == ("logistic", "mlp", "lstm") and ens.mode == m["cpcv"]["chosen"]["mode"]
    config = quick_config(cfg.TrainConfig(quick=True))
    bars, bv, _, _ = load_market(config)
    out = predict_bars(ens, feature_matrix(bars, bv, config.features.flow_span), bars.close)
    test = (bars.ts >= m["test_start"]) & (bars.ts <= m["test_end"])
    assert test.sum() == m["n_test"]
    y = (np.r_[bars.close[1:], np.nan] > bars.close)[test].astype(float)
    assert np.isclose(log_loss(out["p"][test], y), m["log_loss"], rtol=0, atol=1e-12)
    # the development samples end, label included, before the test span starts
    assert m["n_train"] == m["cpcv"]["cv"]["n_samples"]
    first_test = int(np.flatnonzero(test)[0])
    assert m["n_train"] <= first_test - 49 - 1


def test_calibrated_ensemble_beats_every_member_out_of_fold(quick):
    """Where the order flow carries signal, the chosen blend's out-of-fold log loss (mean over the CPCV
    paths) is below every member's. (Same seed, same report: tests/test_end_to_end.py.)"""
    _, m = quick
    cv = m["cpcv"]
    best = min(s["log_loss"]["mean"] for s in cv["members"].values())
    assert cv["chosen"]["beats_every_member"] and cv["chosen"]["log_loss"] < best
    assert m["order_flow"] and m["log_loss"] < m["log_loss_base_rate"]  # and it carries over to the test span


# ------------------------------------------------------------------------------------------ pieces


def test_every_config_field_has_a_flag():
    dests = {a.dest for a in parser()._actions}

    def leaves(obj, prefix=""):
        for f in dataclasses.fields(obj):
            v = getattr(obj, f.name)
            if dataclasses.is_dataclass(v):
                yield from leaves(v, f"{prefix}{f.name}.")
            else:
                yield prefix + f.name

    missing = [k for k in leaves(cfg.TrainConfig()) if k not in dests]
    assert not missing
    c, _, _ = __import__("bot4jax.cli", fromlist=["x"]).config_from_flags(
        parser(), cfg.TrainConfig, ["--lstm-hidden", "24", "--cv-uniqueness", "false", "--ensemble-modes", "voting"])
    assert (c.lstm.hidden, c.cv.uniqueness, c.ensemble.modes) == (24, False, "voting")


def test_quick_caps_each_size():
    q = quick_config(cfg.TrainConfig(quick=True))
    for key, cap in QUICK.items():
        section, name = key.split(".")
        assert getattr(getattr(q, section), name) == min(cap, getattr(getattr(cfg.TrainConfig(), section), name))


def test_flow_features_degrade_without_trades():
    names = feature_names(False)
    assert not set(FLOW_NAMES) & set(names)
    np.testing.assert_array_equal(select(names, "flow_imb", "lstm.features"), np.arange(len(names)))
    np.testing.assert_array_equal(select(feature_names(True), "flow_imb, ret_1", "x"), [10, 0])
    with pytest.raises(cfg.ConfigError, match="unknown feature"):
        select(names, "nope", "lstm.features")


def test_equal_sizes_trims_to_the_smallest_split():
    idx = [np.arange(10, 10 + k) for k in (50, 47, 53)]
    triples = [(t, np.arange(100, 100 + v), np.arange(3)) for t, v in zip(idx, (9, 8, 10))]
    out = equal_sizes(triples)
    assert {o[0].size for o in out} == {47} and {o[1].size for o in out} == {8}
    for (tr, va, _), (tr0, va0, _) in zip(out, triples):
        assert set(tr) <= set(tr0) and np.all(np.diff(tr) > 0) and np.array_equal(va, va0[-8:])
    np.testing.assert_array_equal(evenly(np.arange(5), 9), np.arange(5))


def test_sentinel_catches_the_future_return_used_as_a_feature():
    """The leaked column follows the shuffled outcome, so the refit keeps predicting it out of fold:
    caught. The same pipeline on honest features passes."""
    config = cfg.TrainConfig(sentinel=cfg.SentinelConfig(folds=4, block=250))
    rng = np.random.default_rng(0)
    n = 3000
    fwd = rng.standard_t(4, n) * 1e-3
    honest = rng.normal(size=(n, 3))
    t0 = np.arange(n, dtype=np.int64) * 60_000
    dev = DevSamples((fwd > 0).astype(float), t0, t0 + 60_000, fwd, np.ones(n))
    members = [logistic_member(name="logistic")]
    clean = shuffled_outcome_sentinel(members, lambda o: {"logistic": honest}, fwd, dev, config)
    assert clean["passed"] and abs(clean["sharpes"][0]) < 0.1
    leak = shuffled_outcome_sentinel(members, lambda o: {"logistic": np.c_[honest, o]}, fwd, dev, config)
    assert not leak["passed"] and leak["sharpes"][0] > 0.3


def test_lookahead_check_catches_a_feature_that_reads_the_next_bar():
    from bot4jax.train.leakage import features_lookahead

    config = cfg.TrainConfig(data=cfg.DataConfig(sim_bars=600))
    bars, bv, _, _ = load_market(config)

    def honest(k):  # what the train job checks: rows < k from bars < k (padded to one length)
        return _features_of_first(bars, bv, k, 5)

    def leaky(k):
        x = honest(k)
        c = bars.close[:k]
        return np.c_[x, np.r_[np.log(c[1:] / c[:-1]), np.nan]]  # next bar's return: look-ahead

    assert features_lookahead(honest, len(bars))["passed"]
    res = features_lookahead(leaky, len(bars))
    assert not res["passed"] and res["first_difference"]["column"] == x_cols(bv)


def x_cols(bv):
    return len(feature_names(bv is not None))
