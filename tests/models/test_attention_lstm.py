"""Attention LSTM: shapes, initialisation, the hand-written LSTM backward pass, the whole forward pass
against a plain NumPy float64 reference, streaming == batch forward, training (a planted sequence
signal is learnt, determinism, early stopping), configuration errors and a checkpoint round trip.

Sizes are tiny and the compiled functions are shared (module-scope fixtures, one config) to keep
the file fast.
"""
import dataclasses

import numpy as np
import pytest

from bot4jax.errors import ConfigError
from bot4jax.jaxcfg import jax, jnp
from bot4jax.models import attention_lstm as al
from bot4jax.models.attention_lstm_train import fit, gradient_sums, init_optimiser, train_step, validation_loss
from bot4jax.registry.checkpoints import load_model, save_model

F = 3
CONFIG = al.AttentionLSTMConfig(hidden=16, heads=2, window=5, burn_in=3, epochs=6, batch_size=128,
                                lr=1e-2, patience=3)
L = CONFIG.sequence_length


@pytest.fixture(scope="module")
def params():
    rng = np.random.default_rng(0)
    p = al.init_params(jax.random.PRNGKey(3), F, CONFIG, mean=rng.normal(size=F), std=rng.uniform(0.5, 2, F))
    # move every parameter away from its initial value (zero biases, unit scales) so that a wrong
    # index or a dropped term cannot hide
    net = jax.tree_util.tree_map(lambda a: jnp.asarray(a + 0.3 * rng.normal(size=a.shape), jnp.float32), p["net"])
    return {**p, "net": net}


# ---------------------------------------------------------------------------------------------
# plain NumPy float64 reference of the whole forward pass (full self-attention, all keys formed)


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _ref_lstm(x, p):                                   # x (T, In)
    w_ih, w_hh, b = (np.asarray(p[k], np.float64) for k in ("w_ih", "w_hh", "b"))
    hid = w_hh.shape[0]
    h, c, out = np.zeros(hid), np.zeros(hid), []
    for x_t in x:
        g = x_t @ w_ih + h @ w_hh + b
        i, f, gg, o = _sigmoid(g[:hid]), _sigmoid(g[hid:2 * hid]), np.tanh(g[2 * hid:3 * hid]), _sigmoid(g[3 * hid:])
        c = f * c + i * gg
        h = o * np.tanh(c)
        out.append(h)
    return np.array(out)


def _ref_ln(x, p):
    m, v = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - m) / np.sqrt(v + 1e-5) * np.asarray(p["scale"], np.float64) + np.asarray(p["bias"], np.float64)


def _ref_prob(params, seq):                            # seq (L, F) raw features
    net = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params["net"])
    pe = np.asarray(params["pe"], np.float64)
    z = (seq - np.asarray(params["scaler"]["mean"])) / np.asarray(params["scaler"]["std"])
    h1 = _ref_lstm(z, net["lstm1"])
    h = h1 + _ref_lstm(h1, net["lstm2"])
    w = min(len(pe), len(seq))
    a = _ref_ln(h[-w:], net["ln1"]) + pe[len(pe) - w:]
    at = net["attn"]
    q = np.einsum("h,hnd->nd", a[-1], at["wq"]) + at["bq"]
    k = np.einsum("wh,ndh->wnd", a, at["wk"]) + at["bk"]
    v = np.einsum("wh,nhd->wnd", a, at["wv"]) + at["bv"]
    s = np.einsum("nd,wnd->nw", q, k) / np.sqrt(q.shape[-1])
    pw = np.exp(s - s.max(-1, keepdims=True))
    pw /= pw.sum(-1, keepdims=True)
    o = np.einsum("nd,ndh->h", np.einsum("nw,wnd->nd", pw, v), at["wo"]) + at["bo"]
    r = _ref_ln(a[-1] + o, net["ln2"])
    return _sigmoid(r @ net["head"]["kernel"][:, 0] + net["head"]["bias"][0])


# ---------------------------------------------------------------------------------------------
# windows, shapes, initialisation


def test_windows_are_a_strided_view_ending_at_their_row():
    x = np.arange(30.0).reshape(10, 3)
    w = al.windows(x, 4)
    assert w.shape == (7, 4, 3)
    assert np.shares_memory(w, x)                       # a view, not a copy
    for j in range(7):                                  # window j is rows j .. j + 3: no look-ahead
        np.testing.assert_array_equal(w[j], x[j:j + 4])
    with pytest.raises(ValueError, match="length 11"):
        al.windows(x, 11)
    with pytest.raises(ValueError, match="2-D"):
        al.windows(x[0], 2)


def test_shapes_dtypes_and_split_prediction(params):
    x = np.random.default_rng(1).normal(size=(150, L, F))
    p = al.predict_proba(params, x, workers=1)           # one call, CHUNK windows per pass
    assert p.shape == (150,) and p.dtype == np.float32 and np.all((p > 0) & (p < 1))
    # two threads, and calls of 64 windows with the last one padded: the same numbers
    np.testing.assert_allclose(al.predict_proba(params, x, workers=2), p, atol=1e-6)
    np.testing.assert_allclose(al.predict_proba(params, x, batch_size=64, workers=2), p, atol=1e-6)
    np.testing.assert_allclose(al.predict_proba(params, x[:5]), p[:5], atol=1e-6)
    for leaf in jax.tree_util.tree_leaves(params["net"]):
        assert leaf.dtype == jnp.float32
    assert params["pe"].shape == (CONFIG.window, CONFIG.hidden)
    h, n = CONFIG.hidden, CONFIG.heads
    assert params["net"]["attn"]["wq"].shape == (h, n, h // n)
    assert params["net"]["attn"]["wk"].shape == (n, h // n, h)
    assert params["net"]["attn"]["wv"].shape == (n, h, h // n)


def test_xavier_initialisation_statistics():
    p = al.init_params(jax.random.PRNGKey(3), F, CONFIG)["net"]     # the fixture's key: no new compile
    h = CONFIG.hidden
    # U(-a, a) with a = sqrt(6 / (fan_in + fan_out)) has standard deviation a / sqrt(3); LSTM
    # matrices are Xavier per gate block (fan_out = H), so all four blocks share one limit
    groups = [([p["lstm1"]["w_ih"]], F, h), ([p["lstm1"]["w_hh"]], h, h), ([p["lstm2"]["w_ih"]], h, h),
              ([p["lstm2"]["w_hh"]], h, h), ([p["attn"][k] for k in ("wq", "wk", "wv", "wo")], h, h)]
    for arrays, fan_in, fan_out in groups:
        w = np.concatenate([np.asarray(a).ravel() for a in arrays])
        a = np.sqrt(6 / (fan_in + fan_out))
        assert np.abs(w).max() <= a
        assert abs(w.std() / (a / np.sqrt(3)) - 1) < (0.12 if w.size < 500 else 0.08), (fan_in, w.size)
        assert abs(w.mean()) < 0.1 * a
    b = np.asarray(p["lstm1"]["b"])
    np.testing.assert_array_equal(b[h:2 * h], 1.0)                # forget gate bias
    np.testing.assert_array_equal(np.delete(b, np.s_[h:2 * h]), 0.0)
    np.testing.assert_array_equal(np.asarray(p["ln1"]["scale"]), 1.0)


# ---------------------------------------------------------------------------------------------
# the LSTM layer's custom backward pass, and the whole forward pass against the reference


def _autodiff_lstm(x, w_ih, w_hh, b):
    def step(carry, x_t):
        h, c = carry
        i, f, g, o = jnp.split(x_t @ w_ih + b + h @ w_hh, 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (h, c), h
    zero = jnp.zeros((x.shape[1], w_hh.shape[0]), jnp.float32)
    return jax.lax.scan(step, (zero, zero), x)[1]


def test_lstm_backward_pass_equals_autodiff_of_a_plain_lstm():
    rng = np.random.default_rng(2)
    t, b, i, h = 9, 5, 3, 4
    args = [jnp.asarray(rng.normal(size=s), jnp.float32) for s in ((t, b, i), (i, 4 * h), (h, 4 * h), (4 * h,))]
    cot = jnp.asarray(rng.normal(size=(t, b, h)), jnp.float32)
    np.testing.assert_allclose(al.lstm_layer(*args), _autodiff_lstm(*args), atol=1e-6)
    ours = jax.grad(lambda *a: jnp.sum(al.lstm_layer(*a) * cot), argnums=(0, 1, 2, 3))(*args)
    ref = jax.grad(lambda *a: jnp.sum(_autodiff_lstm(*a) * cot), argnums=(0, 1, 2, 3))(*args)
    for g_ours, g_ref in zip(ours, ref):
        assert g_ours.dtype == jnp.float32
        np.testing.assert_allclose(g_ours, g_ref, atol=2e-6 * float(jnp.abs(g_ref).max()) + 1e-7)


def test_forward_equals_numpy_reference(params):
    rng = np.random.default_rng(5)
    mean, std = np.asarray(params["scaler"]["mean"]), np.asarray(params["scaler"]["std"])
    for length in (L, 2):                                # with a burn-in; shorter than W
        x = mean + std * rng.normal(size=(4, length, F))
        ours = al.predict_proba(params, x)
        ref = np.array([_ref_prob(params, s) for s in x])
        np.testing.assert_allclose(ours, ref, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# streaming


def test_stream_equals_batch_forward_over_the_same_rows(params):
    rng = np.random.default_rng(6)
    n = 4 * CONFIG.window                                 # longer than the window
    rows = np.asarray(params["scaler"]["mean"]) + rng.normal(size=(n, F)) * 2
    state = al.stream_init(params)
    probs = []
    for r in rows:
        p, state = al.stream_step(params, state, r)
        probs.append(float(p))
    probs = np.array(probs)
    assert int(state.t) == n
    for j in (CONFIG.window - 2, CONFIG.window + 3, n - 1):
        batch = al.predict_proba(params, rows[None, :j + 1])[0]
        assert abs(probs[j] - batch) < 1e-5, j
    # the scanned batch twin gives the same numbers, and resuming a warmed-up state continues it
    half = n // 2                                          # one compiled shape for the three calls
    np.testing.assert_allclose(al.predict_series(params, rows[:half]), probs[:half], atol=1e-6)
    first, state2 = al.stream_warmup(params, al.stream_init(params), rows[:half])
    rest, _ = al.stream_warmup(params, state2, rows[half:])
    np.testing.assert_allclose(np.concatenate([first, rest]), probs, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# training


def _planted(seed, n):
    """Label of row i: the sign of x0 summed over rows i-3 .. i (a sequence signal), 10% flipped."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n + L - 1, F)) * np.array([1.0, 3.0, 0.5]) + np.array([0.0, 10.0, -2.0])
    s = np.convolve(x[:, 0], np.ones(4), mode="full")[:len(x)]
    y = ((s > 0) ^ (rng.uniform(size=len(x)) < 0.1)).astype(float)
    return al.windows(x, L), y[L - 1:]


def _auc(p, y):
    ranks = np.argsort(np.argsort(p)) + 1
    pos = y == 1
    return (ranks[pos].sum() - pos.sum() * (pos.sum() + 1) / 2) / (pos.sum() * (~pos).sum())


@pytest.fixture(scope="module")
def planted():
    xtr, ytr = _planted(10, 2000)
    xv, yv = _planted(11, 600)
    xte, yte = _planted(12, 1000)
    res = fit(xtr, ytr, CONFIG, jax.random.PRNGKey(0), val=(xv, yv), progress=False)
    return res, (xtr, ytr, xv, yv, xte, yte)


def test_fit_learns_a_planted_sequence_signal(planted):
    res, (*_, xte, yte) = planted
    assert res.train_loss[-1] < res.train_loss[0] - 0.1
    assert res.val_loss[res.best_epoch] == min(res.val_loss)
    auc = _auc(al.predict_proba(res.params, xte), yte)
    assert auc > 0.75, auc                                  # no-skill is 0.5; the flips cap it near 0.9
    for leaf in jax.tree_util.tree_leaves(res.params["net"]):
        assert leaf.dtype == jnp.float32


def test_same_key_same_parameters(planted):
    res, (xtr, ytr, xv, yv, *_) = planted
    again = fit(xtr, ytr, CONFIG, jax.random.PRNGKey(0), val=(xv, yv), progress=False)
    for a, b in zip(jax.tree_util.tree_leaves(res.params), jax.tree_util.tree_leaves(again.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    other = fit(xtr[:1000], ytr[:1000], dataclasses.replace(CONFIG, epochs=1), jax.random.PRNGKey(1),
                progress=False)
    short = fit(xtr[:1000], ytr[:1000], dataclasses.replace(CONFIG, epochs=1), jax.random.PRNGKey(0),
                progress=False)
    assert not np.array_equal(np.asarray(other.params["net"]["lstm1"]["w_hh"]),
                              np.asarray(short.params["net"]["lstm1"]["w_hh"]))


def test_early_stopping_keeps_the_best_epoch_and_stops(planted):
    _, (xtr, ytr, xv, yv, *_) = planted
    noise = (np.random.default_rng(13).uniform(size=len(yv)) < 0.5).astype(float)  # unlearnable
    cfg = dataclasses.replace(CONFIG, epochs=30, patience=2, min_delta=0.002)
    res = fit(xtr, ytr, cfg, jax.random.PRNGKey(0), val=(xv, noise), progress=False)
    assert res.stopped_early and len(res.val_loss) < cfg.epochs
    assert len(res.val_loss) == res.best_epoch + cfg.patience + 1
    rest = {k: v for k, v in res.params.items() if k != "net"}
    kept = validation_loss(res.params["net"], rest, xv, noise.astype(np.float32),
                           np.ones(len(noise), np.float32), cfg.batch_size)
    assert kept == pytest.approx(res.val_loss[res.best_epoch], abs=1e-6)


def test_parallel_gradient_equals_one_pass(params, planted):
    _, (xtr, ytr, *_) = planted
    net, rest = params["net"], {k: v for k, v in params.items() if k != "net"}
    x, y = xtr[:128], ytr[:128].astype(np.float32)
    w = np.linspace(0.5, 1.5, 128).astype(np.float32)
    w[100:] = 0
    whole = gradient_sums(net, rest, x, y, w)             # two passes of CHUNK windows
    halves = [gradient_sums(net, rest, x[s], y[s], w[s]) for s in (slice(0, 64), slice(64, 128))]
    padded = gradient_sums(net, rest, x[:100], y[:100], w[:100])   # padded inside to 128, weight 0
    added = jax.tree_util.tree_map(lambda a, b: a + b, *halves)
    for a, b, c in zip(*(jax.tree_util.tree_leaves(t) for t in (whole, added, padded))):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(c, a, rtol=1e-5, atol=1e-6)
    # the threaded step (two halves on two threads) applies the same update as one thread
    steps = []
    for workers in (1, 2):
        n = jax.tree_util.tree_map(jnp.copy, net)
        opt = init_optimiser(n, CONFIG)
        opt.hyperparams["learning_rate"] = jnp.asarray(1e-2, jnp.float32)
        steps.append(train_step(n, opt, rest, x, y, w, workers))
    assert float(steps[0][2]) == pytest.approx(float(steps[1][2]), rel=1e-6)
    for a, b in zip(jax.tree_util.tree_leaves(steps[0][0]), jax.tree_util.tree_leaves(steps[1][0])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_fit_rejects_bad_inputs(planted):
    _, (xtr, ytr, *_) = planted
    with pytest.raises(ValueError, match="the config wants burn_in \\+ window = 8"):
        fit(xtr[:, 1:], ytr, CONFIG, jax.random.PRNGKey(0), progress=False)
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        fit(xtr, ytr * 2, CONFIG, jax.random.PRNGKey(0), progress=False)
    with pytest.raises(ValueError, match="labels must have shape"):
        fit(xtr, ytr[:-1], CONFIG, jax.random.PRNGKey(0), progress=False)


# ---------------------------------------------------------------------------------------------
# configuration and checkpoints


@pytest.mark.parametrize("field, value, message", [
    ("heads", 3, "AttentionLSTMConfig.heads: 3 heads do not divide hidden=16"),
    ("hidden", 0, "AttentionLSTMConfig.hidden: must be at least 1"),
    ("window", 0, "AttentionLSTMConfig.window"),
    ("burn_in", -1, "AttentionLSTMConfig.burn_in"),
    ("batch_size", 2.5, "AttentionLSTMConfig.batch_size: expected an int"),
    ("epochs", True, "AttentionLSTMConfig.epochs: expected an int"),
    ("lr", 0.0, "AttentionLSTMConfig.lr: must be positive"),
    ("lr", float("nan"), "AttentionLSTMConfig.lr: expected a finite number"),
    ("warmup", 1.0, "AttentionLSTMConfig.warmup"),
    ("weight_decay", -0.1, "AttentionLSTMConfig.weight_decay"),
    ("clip", 0, "AttentionLSTMConfig.clip: must be positive"),
    ("patience", 0, "AttentionLSTMConfig.patience"),
])
def test_config_errors_name_the_field(field, value, message):
    with pytest.raises(ConfigError, match=message.replace("+", "\\+")):
        dataclasses.replace(CONFIG, **{field: value})


def test_checkpoint_round_trip(params, tmp_path):
    save_model(tmp_path / "m", params, {"kind": "attention_lstm", "window": CONFIG.window})
    ck = load_model(tmp_path / "m")
    x = np.random.default_rng(7).normal(size=(6, L, F))
    np.testing.assert_array_equal(al.predict_proba(ck.params, x), al.predict_proba(params, x))
    assert ck.params["pe"].shape == (CONFIG.window, CONFIG.hidden)
