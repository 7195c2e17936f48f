"""Baseline probabilistic classifier: a one-hidden-layer MLP over standardised features, in JAX.

    z = (x - mean) / std                      (mean, std from the training rows; float64 -> float32)
    p = sigmoid(w2 . tanh(W1 z + b1) + b2)    P(up) for each row

Trained with optax AdamW (gradient clipping, cosine learning-rate decay) on the binary cross-entropy,
early stopping on a later validation block. The parameters are a plain dict pytree, so the same
`predict_proba` serves a batch of rows in research and one row per decision in live.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import optax
from tqdm.auto import tqdm

from bot4jax.config import ModelConfig
from bot4jax.jaxcfg import jax, jnp


def init_params(key, n_features: int, hidden: int, mean: np.ndarray, std: np.ndarray) -> dict:
    """Xavier-uniform weights, zero biases; the feature scaler travels with the parameters."""
    k1, k2 = jax.random.split(key)

    def xavier(k, fan_in, fan_out):
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        return jax.random.uniform(k, (fan_in, fan_out), jnp.float32, -limit, limit)

    # The scaler is data, not a parameter: it sits beside the network so the optimiser never sees it.
    return {
        "scaler": {"mean": jnp.asarray(mean, jnp.float64), "std": jnp.asarray(std, jnp.float64)},
        "net": {
            "w1": xavier(k1, n_features, hidden),
            "b1": jnp.zeros(hidden, jnp.float32),
            "w2": xavier(k2, hidden, 1)[:, 0],
            "b2": jnp.zeros((), jnp.float32),
        },
    }


def _logits(net: dict, scaler: dict, x) -> jnp.ndarray:
    z = ((x - scaler["mean"]) / scaler["std"]).astype(jnp.float32)
    h = jnp.tanh(z @ net["w1"] + net["b1"])
    return h @ net["w2"] + net["b2"]


@jax.jit
def predict_proba(params: dict, x) -> jnp.ndarray:
    """P(up) for feature rows x of shape (n, n_features) (float64); returns (n,) float32."""
    return jax.nn.sigmoid(_logits(params["net"], params["scaler"], x))


def _loss(net, scaler, x, y):
    return optax.sigmoid_binary_cross_entropy(_logits(net, scaler, x), y).mean()


@dataclass(frozen=True)
class FitResult:
    params: dict
    train_loss: list
    val_loss: list
    best_epoch: int


@functools.lru_cache(maxsize=8)
def _training(learning_rate: float, weight_decay: float, total_steps: int):
    """(optimizer, jitted epoch) for these settings, built once: refits with the same settings
    (seeds, folds, tests) reuse the compiled epoch instead of re-tracing a new closure."""
    schedule = optax.cosine_decay_schedule(learning_rate, total_steps, alpha=0.1)
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(schedule, weight_decay=weight_decay))
    return optimizer, _make_epoch(optimizer)


def _make_epoch(optimizer):
    @jax.jit
    def epoch(net, scaler, opt_state, xb, yb):
        def step(carry, batch):
            p, s = carry
            loss, grads = jax.value_and_grad(_loss)(p, scaler, *batch)
            updates, s = optimizer.update(grads, s, p)
            return (optax.apply_updates(p, updates), s), loss
        (net, opt_state), losses = jax.lax.scan(step, (net, opt_state), (xb, yb))
        return net, opt_state, losses.mean()
    return epoch


_val_loss = jax.jit(_loss)


def fit(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
        config: ModelConfig, seed: int = 0, progress: bool = True) -> FitResult:
    """Train on (x_train, y_train), keep the parameters of the epoch with the lowest validation loss."""
    n, f = x_train.shape
    mean = x_train.mean(axis=0)
    std = np.where(x_train.std(axis=0) > 0, x_train.std(axis=0), 1.0)
    key = jax.random.PRNGKey(seed)
    key, init_key = jax.random.split(key)
    params = init_params(init_key, f, config.hidden, mean, std)
    batch = min(config.batch_size, n)
    steps_per_epoch = n // batch
    optimizer, epoch_fn = _training(config.learning_rate, config.weight_decay, steps_per_epoch * config.epochs)
    net, scaler = params["net"], params["scaler"]
    opt_state = optimizer.init(net)
    x_train = jnp.asarray(x_train)
    y_train = jnp.asarray(y_train, jnp.float32)
    x_val, y_val = jnp.asarray(x_val), jnp.asarray(y_val, jnp.float32)
    best = (np.inf, net, 0)
    train_hist, val_hist = [], []
    bar = tqdm(range(config.epochs), desc="training", unit="epoch", disable=not progress, leave=False)
    for ep in bar:
        key, perm_key = jax.random.split(key)
        order = jax.random.permutation(perm_key, n)[: steps_per_epoch * batch]
        xb = x_train[order].reshape(steps_per_epoch, batch, f)
        yb = y_train[order].reshape(steps_per_epoch, batch)
        net, opt_state, tr = epoch_fn(net, scaler, opt_state, xb, yb)
        vl = float(_val_loss(net, scaler, x_val, y_val))
        train_hist.append(float(tr))
        val_hist.append(vl)
        bar.set_postfix(train=f"{float(tr):.4f}", val=f"{vl:.4f}")
        if vl < best[0] - 1e-6:
            best = (vl, net, ep)
        elif ep - best[2] >= config.patience:
            break
    return FitResult({"scaler": scaler, "net": best[1]}, train_hist, val_hist, best[2])
