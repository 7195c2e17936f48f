"""Stacking ensemble: out-of-fold predictions, CPCV paths, the five blend modes, simplex weights,
diversity and permutation importance.

References: scikit-learn's LogisticRegression (the member and the meta model), scipy's SLSQP (the
simplex weights), and brute-force loops written from the definitions in this file.
"""
import itertools
import math

import numpy as np
import pytest
from scipy.optimize import minimize
from sklearn.linear_model import LogisticRegression

from bot4jax.config import ModelConfig
from bot4jax.jaxcfg import jnp
from bot4jax.models import stacking as S
from bot4jax.models.proximal import project_simplex
from bot4jax.validation.purged_cv import combinatorial_purged_cv, cpcv_groups, purged_kfold
from bot4jax.validation.scoring import log_loss

N, G, K = 1200, 6, 2


@pytest.fixture(scope="module")
def world():
    """Two members that each see half of the signal: an ensemble has something to combine."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(N, 4))
    z = 0.9 * x[:, 0] - 0.6 * x[:, 1] + 0.8 * x[:, 2] + 0.5 * x[:, 3]
    y = (rng.uniform(size=N) < 1 / (1 + np.exp(-z))).astype(float)
    t0 = 1_700_000_000_000 + np.arange(N, dtype=np.int64) * 60_000
    t1 = t0 + 3 * 60_000  # 3-bar labels: they overlap, so purging matters
    members = [S.logistic_member(C=1.0, name="left"), S.logistic_member(C=1.0, name="right")]
    xs = {"left": x[:, :2] * [1.0, 5.0] + 2.0, "right": x[:, 2:]}
    splits = combinatorial_purged_cv(t0, t1, G, K, embargo=0.01)
    oof = S.oof_predictions(members, xs, y, None, splits)
    P = S.assemble_paths(oof, G, K)
    meta = purged_kfold(t0, t1, 5, embargo=0.01)
    return dict(x=x, xs=xs, y=y, t0=t0, t1=t1, members=members, splits=splits, oof=oof, P=P, meta=meta)


# ------------------------------------------------------------------------------- OOF and paths


def test_oof_equals_sklearn_member_refits(world):
    """Every OOF prediction = sklearn's fit on the split's standardised training rows."""
    oof, xs, y = world["oof"], world["xs"], world["y"]
    for s in (0, 7, 14):
        train, _, test = oof.splits[s]
        for m, name in enumerate(oof.names):
            xt = xs[name][train]
            mean, sd = xt.mean(axis=0), xt.std(axis=0)
            sk = LogisticRegression(C=1.0, solver="newton-cholesky", tol=1e-12)
            sk.fit((xt - mean) / sd, y[train])
            ref = sk.predict_proba((xs[name][test] - mean) / sd)[:, 1]
            np.testing.assert_allclose(oof.test_p[s][m], ref, rtol=0, atol=1e-9)


def test_paths_cover_every_group_once_from_the_right_split(world):
    oof, P = world["oof"], world["P"]
    groups = cpcv_groups(N, G)
    assert P.shape == (math.comb(G - 1, K - 1), 2, N) and np.all(np.isfinite(P))
    combos = list(itertools.combinations(range(G), K))
    for j in range(P.shape[0]):
        for g, idx in enumerate(groups):
            # the (j+1)-th split, in combinations order, that tests group g
            s = [i for i, c in enumerate(combos) if g in c][j]
            test = oof.splits[s][2]
            lookup = {int(t): k for k, t in enumerate(test)}
            ref = oof.test_p[s][:, [lookup[int(i)] for i in idx]]
            np.testing.assert_array_equal(P[j][:, idx], ref)


def test_purged_kfold_gives_one_path_of_each_rows_prediction(world):
    members, xs, y, t0, t1 = world["members"], world["xs"], world["y"], world["t0"], world["t1"]
    kf = purged_kfold(t0, t1, 4)
    oof = S.oof_predictions(members, xs, y, None, kf)
    P = S.assemble_paths(oof, 4, 1)
    flat = np.full((2, N), np.nan)
    for (_, _, test), p in zip(oof.splits, oof.test_p):
        flat[:, test] = p
    np.testing.assert_array_equal(P[0], flat)
    with pytest.raises(ValueError, match="splits"):
        S.assemble_paths(oof, 6, 2)


def test_validation_splits_take_the_latest_training_rows_and_purge_before_them(world):
    t0, t1, splits = world["t0"], world["t1"], world["splits"]
    for (train, test), (tr, val, te) in zip(splits, S.validation_splits(splits, t0, t1, 0.2)):
        np.testing.assert_array_equal(te, test)
        assert val.size == math.ceil(0.2 * train.size)
        np.testing.assert_array_equal(val, train[-val.size:])
        assert set(tr) <= set(train[:-val.size])
        assert np.all(t1[tr] < t0[val[0]])
        dropped = np.setdiff1d(train[:-val.size], tr)
        assert np.all(t1[dropped] >= t0[val[0]])


def test_mlp_member_plugs_in(world):
    x, y, t0, t1 = world["x"], world["y"], world["t0"], world["t1"]
    member = S.mlp_member(ModelConfig(hidden=4, epochs=2, batch_size=128, learning_rate=1e-2), seed=0)
    splits = S.validation_splits(purged_kfold(t0, t1, 3)[:1], t0, t1, 0.2)
    oof = S.oof_predictions([member], x, y, None, splits)
    assert oof.test_p[0].shape == (1, splits[0][2].size)
    assert log_loss(oof.test_p[0][0], y[splits[0][2]]) < math.log(2)  # learnt something
    with pytest.raises(ValueError, match="validation block"):
        S.oof_predictions([member], x, y, None, purged_kfold(t0, t1, 3)[:1])


# ------------------------------------------------------------------------------- blend modes


def test_stacking_meta_equals_sklearn_on_member_logits(world):
    P, y = world["P"][0], world["y"]
    b = S.fit_blend("stacking", P, y, C=0.7)
    logits = np.log(P / (1 - P)).T
    sk = LogisticRegression(C=0.7, solver="newton-cholesky", tol=1e-12).fit(logits, y)
    np.testing.assert_allclose(b.coef, sk.coef_[0], rtol=0, atol=1e-9)
    np.testing.assert_allclose(S.predict_blend(b, P), sk.predict_proba(logits)[:, 1], rtol=0, atol=1e-10)
    np.testing.assert_allclose(S.member_weights(b), np.abs(b.coef) / np.abs(b.coef).sum())


def test_blending_fits_only_the_latest_block(world):
    P, y = world["P"][0], world["y"]
    rows = np.arange(100, 1000)
    b = S.fit_blend("blending", P, y, rows=rows, holdout_fraction=0.25)
    ref = S.fit_blend("stacking", P, y, rows=rows[-225:])
    np.testing.assert_allclose(b.coef, ref.coef, rtol=0, atol=1e-12)
    assert b.intercept == pytest.approx(ref.intercept, abs=1e-12)


def test_voting_soft_hard_and_bma_by_hand(world):
    P, y = world["P"][0], world["y"]
    np.testing.assert_allclose(S.predict_blend(S.fit_blend("voting", P, y), P), P.mean(axis=0))
    hard = S.predict_blend(S.fit_blend("voting", P, y, voting="hard"), P)
    np.testing.assert_allclose(hard, (P > 0.5).mean(axis=0))
    ll = (y * np.log(P) + (1 - y) * np.log(1 - P)).sum(axis=1)
    for T in (1.0, 50.0):
        ref = np.exp((ll - ll.max()) / T) / np.exp((ll - ll.max()) / T).sum()
        np.testing.assert_allclose(S.fit_blend("bma", P, y, temperature=T).weights, ref, rtol=1e-12)
    assert np.allclose(S.fit_blend("bma", P, y, temperature=1e12).weights, 0.5)


def test_simplex_weights_equal_scipy_slsqp():
    rng = np.random.default_rng(5)
    n, M = 800, 4
    y = (rng.uniform(size=n) < 0.5).astype(float)
    truth = np.clip(0.5 + 0.3 * (y - 0.5) + 0.1 * rng.normal(size=n), 0.01, 0.99)
    P = np.vstack([truth, np.clip(truth + 0.2 * rng.normal(size=n), 0.01, 0.99),
                   np.full(n, 0.5), np.clip(1 - truth, 0.01, 0.99)])  # the last one is harmful
    w = rng.uniform(0.5, 1.5, n)

    def f(v):
        q = v @ P
        return -np.sum(w * (y * np.log(q) + (1 - y) * np.log(1 - q))) / w.sum()

    ref = minimize(f, np.full(M, 1 / M), method="SLSQP", bounds=[(0, 1)] * M,
                   constraints=[{"type": "eq", "fun": lambda v: v.sum() - 1}],
                   options={"ftol": 1e-15, "maxiter": 1000})
    ours = S.simplex_weights(P, y, w)
    assert ours.sum() == pytest.approx(1.0, abs=1e-14) and np.all(ours >= 0)
    assert ours[3] == 0.0  # the harmful member is cut out exactly
    np.testing.assert_allclose(ours, ref.x, atol=1e-5)
    assert f(ours) <= ref.fun + 1e-12


def test_project_simplex_is_the_euclidean_projection():
    rng = np.random.default_rng(0)
    for _ in range(20):
        v = rng.normal(size=6) * 2
        p = np.asarray(project_simplex(jnp.asarray(v)))
        assert p.sum() == pytest.approx(1.0, abs=1e-12) and np.all(p >= 0)
        # variational inequality: (v - p) . (z - p) <= 0 for every z on the simplex
        z = rng.dirichlet(np.ones(6), size=200)
        assert np.all((z - p) @ (v - p) <= 1e-12)


def _dynamic_reference(P, y, t0, t1, window, T):
    """For each row: the rows resolved by its start, the latest `window` of them by (t1, row)."""
    n, M = y.size, P.shape[0]
    ll = y * np.log(P) + (1 - y) * np.log(1 - P)
    out = np.empty((n, M))
    for t in range(n):
        known = sorted((t1[i], i) for i in range(n) if t1[i] <= t0[t])[-window:]
        s = np.zeros(M) if not known else ll[:, [i for _, i in known]].sum(axis=1)
        e = np.exp((s - s.max()) / T)
        out[t] = e / e.sum()
    return out


def test_dynamic_equals_brute_force_and_streaming_and_is_causal():
    rng = np.random.default_rng(11)
    n, M, window, T = 300, 3, 40, 2.0
    P = rng.uniform(0.05, 0.95, size=(M, n))
    y = (rng.uniform(size=n) < 0.5).astype(float)
    t0 = np.sort(rng.integers(0, 400, n))
    t1 = t0 + rng.integers(1, 12, n)  # variable label lengths: resolution order differs from row order
    p, wts = S.dynamic_blend(P, y, t0, t1, window=window, temperature=T)
    np.testing.assert_allclose(wts, _dynamic_reference(P, y, t0, t1, window, T), rtol=1e-10)
    np.testing.assert_allclose(p, np.sum(wts * P.T, axis=1), rtol=1e-12)

    # streaming: observe outcomes as they resolve, query weights at each row's start
    state, k = S.dynamic_init(M, window), 0
    order = np.argsort(t1, kind="stable")
    for t in range(n):
        while k < n and t1[order[k]] <= t0[t]:
            state = S.dynamic_observe(state, P[:, order[k]], y[order[k]])
            k += 1
        np.testing.assert_allclose(S.dynamic_weights(state, T), wts[t], rtol=1e-10)

    # causal: outcomes not yet resolved at row t cannot move its weights
    t = 200
    future = t1 > t0[t]
    y2, P2 = y.copy(), P.copy()
    y2[future] = 1 - y2[future]
    P2[:, future] = rng.uniform(0.05, 0.95, size=(M, future.sum()))
    _, w2 = S.dynamic_blend(P2, y2, t0, t1, window=window, temperature=T)
    np.testing.assert_array_equal(w2[t], wts[t])
    with pytest.raises(ValueError, match="after its start"):
        S.dynamic_blend(P, y, t0, t0, window=window)


def test_blend_oof_is_cross_fitted_and_beats_every_member(world):
    P, y, meta, t0, t1 = world["P"][0], world["y"], world["meta"], world["t0"], world["t1"]
    kw = dict(splits=meta, t0=t0, t1=t1, window=300, temperature=1.0)
    p = S.blend_oof("stacking", P, y, **kw)
    train, test = meta[2]
    ref = S.predict_blend(S.fit_blend("stacking", P[:, train], y[train]), P[:, test])
    np.testing.assert_allclose(p[test], ref, rtol=0, atol=1e-12)
    losses = {m: log_loss(S.blend_oof(m, P, y, **kw), y) for m in S.MODES}
    best_member = min(log_loss(P[m], y) for m in range(P.shape[0]))
    assert losses["stacking"] < best_member - 0.02  # the members see disjoint halves of the signal
    assert losses["blending"] < best_member
    p_opt = S.blend_oof("voting", P, y, voting="optimized", **kw)
    assert np.all(np.isfinite(p_opt))
    paths = S.blend_paths("stacking", world["P"], y, **kw)
    assert paths.shape == (world["P"].shape[0], N)
    with pytest.raises(ValueError, match="cross-fit"):
        S.blend_oof("bma", P, y)


# ------------------------------------------------------------------------------- diversity, importance


def test_diversity_by_hand():
    P = np.array([[0.9, 0.2, 0.6, 0.4], [0.8, 0.7, 0.3, 0.4], [0.9, 0.2, 0.6, 0.4]])
    y = np.array([1.0, 0.0, 1.0, 1.0])
    d = S.diversity(P, y)
    assert d.disagreement[0, 1] == 0.5 and d.disagreement[0, 2] == 0.0
    assert d.mean_disagreement == pytest.approx((0.5 + 0.0 + 0.5) / 3)
    e = y - P
    r01 = np.corrcoef(e[0], e[1])[0, 1]
    assert d.error_corr[0, 1] == pytest.approx(r01) and d.error_corr[0, 2] == pytest.approx(1.0)
    assert d.mean_error_corr == pytest.approx((2 * r01 + 1) / 3)


def test_permutation_importance_finds_the_signal(world):
    members, x, y, t0, t1 = world["members"], world["x"], world["y"], world["t0"], world["t1"]
    noise = np.random.default_rng(9).normal(size=(N, 1))
    xs = {"left": np.c_[world["x"][:, [0, 2]], noise], "right": np.c_[x[:, [1, 3]], noise]}
    oof = S.oof_predictions(members, xs, y, None, purged_kfold(t0, t1, 3))
    imp = S.permutation_importance(members, xs, y, oof, weights=[3.0, 1.0], seed=1)
    assert imp.per_member.shape == (2, 3)
    assert np.all(imp.per_member[:, :2] > 0.01)           # the informative columns
    assert np.all(np.abs(imp.per_member[:, 2]) < 0.005)   # pure noise
    np.testing.assert_allclose(imp.weights, [0.75, 0.25])
    np.testing.assert_allclose(imp.aggregated, imp.weights @ imp.per_member)


def test_permutation_importance_on_windows_permutes_whole_feature_columns():
    """A sequence member (n, T, F): a member reading only the last step of feature 0."""
    rng = np.random.default_rng(2)
    n, T = 400, 5
    xw = rng.normal(size=(n, T, 2))
    y = (xw[:, -1, 0] > 0).astype(float)
    last = S.Member("last_step",
                    fit=lambda x, y, w, tr, va: None,
                    predict=lambda params, x: 1 / (1 + np.exp(-3 * np.asarray(x)[:, -1, 0])))
    splits = purged_kfold(np.arange(n), np.arange(n) + 1, 2)
    oof = S.oof_predictions([last], xw, y, None, splits)
    imp = S.permutation_importance([last], xw, y, oof, n_repeats=2)
    assert imp.per_member[0, 0] > 0.3 and imp.per_member[0, 1] == 0.0
