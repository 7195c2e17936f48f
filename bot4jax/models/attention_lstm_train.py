"""Training the attention LSTM (`bot4jax.models.attention_lstm`) with optax.

Objective: the (optionally weighted) binary cross-entropy of the last row's logit,

    loss = sum_i w_i * BCE(logit_i, y_i) / sum_i w_i

minimised with AdamW (decoupled weight decay) after clipping the global gradient norm, the learning
rate rising linearly from 0 to `lr` over the first `warmup` fraction of steps and then following a
cosine down to lr / 20. After each epoch the loss on the caller's validation block (a purged fold)
is measured; the parameters of the best epoch are kept and training stops after `patience` epochs
without an improvement of at least `min_delta`. Everything random (initialisation, batch order)
derives from the one `key`, so a seed reproduces the parameters bit for bit.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import optax
from tqdm.auto import tqdm

from bot4jax.jaxcfg import jax, jnp
from bot4jax.models.attention_lstm import (CHUNK, AttentionLSTMConfig, chunked, default_workers,
                                           init_params, logits, logits_chunked, run_parallel)


@dataclass(frozen=True)
class FitResult:
    params: dict               # the best epoch's parameters (with scaler and positional table)
    train_loss: list           # mean training loss of each epoch
    val_loss: list             # validation loss after each epoch (empty without a validation block)
    best_epoch: int            # 0-based epoch whose parameters were kept
    stopped_early: bool


def _weighted_bce_sum(net, rest, x, y, w):
    return jnp.sum(w * optax.sigmoid_binary_cross_entropy(logits({**rest, "net": net}, x), y))


def _optimiser(learning_rate, weight_decay, max_norm):
    return optax.chain(optax.clip_by_global_norm(max_norm), optax.adamw(learning_rate, weight_decay=weight_decay))


# The hyperparameters live in the optimiser state (set by `fit`, the learning rate at every step from
# the schedule), so one compiled step serves every configuration, fold size and epoch count.
OPTIMISER = optax.inject_hyperparams(_optimiser)(learning_rate=0.0, weight_decay=0.0, max_norm=1.0)


def init_optimiser(net, config: AttentionLSTMConfig):
    """AdamW state for `net` with the config's hyperparameters, all float32 (a float64 scalar here
    would promote every update, and then the parameters, to float64)."""
    state = OPTIMISER.init(net)
    state.hyperparams["learning_rate"] = jnp.asarray(config.lr, jnp.float32)
    state.hyperparams["weight_decay"] = jnp.asarray(config.weight_decay, jnp.float32)
    state.hyperparams["max_norm"] = jnp.asarray(config.clip, jnp.float32)
    return state


def schedule(config: AttentionLSTMConfig, total_steps: int):
    """Learning rate at each step: linear warmup from 0 to lr, then a cosine down to lr / 20."""
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=config.lr, warmup_steps=int(config.warmup * total_steps),
        decay_steps=max(total_steps, 1), end_value=config.lr / 20)


@jax.jit
def gradient_sums(net, rest, x, y, w):
    """(sum_i w_i BCE_i, its gradient) over a batch, accumulated CHUNK windows at a time (see
    `attention_lstm.CHUNK`); padded rows carry weight 0."""
    def accumulate(total, batch):
        part = jax.value_and_grad(_weighted_bce_sum)(net, rest, *batch)
        return jax.tree_util.tree_map(jnp.add, total, part), None

    zero = (jnp.zeros((), jnp.float32), jax.tree_util.tree_map(jnp.zeros_like, net))
    w_chunks = jnp.pad(w, (0, -w.shape[0] % CHUNK)).reshape(-1, CHUNK)
    return jax.lax.scan(accumulate, zero, (chunked(x), chunked(y), w_chunks))[0]


@functools.partial(jax.jit, donate_argnums=(0, 1))
def _apply(net, opt_state, sums, total_weight):
    loss_sum, grad_sum = jax.tree_util.tree_map(lambda *parts: sum(parts), *sums)
    grads = jax.tree_util.tree_map(lambda g: g / total_weight, grad_sum)
    updates, opt_state = OPTIMISER.update(grads, opt_state, net)
    return optax.apply_updates(net, updates), opt_state, loss_sum / total_weight


def train_step(net, opt_state, rest, x, y, w, workers: int = 1):
    """One AdamW step on the batch (x (B, L, F), y (B,), w (B,)): (new net, new optimiser state,
    the batch loss before the step). `net` and `opt_state` are donated (updated in place).

    With workers > 1 the batch is split into that many equal parts whose gradient sums are computed
    in parallel threads (one core each, see `attention_lstm.run_parallel`) and added in a fixed
    order, so the result does not depend on the thread timing.
    """
    n = x.shape[0]
    workers = max(1, min(workers, -(-n // CHUNK)))
    rows = -(-n // workers)
    if workers > 1:
        rows = -(-rows // CHUNK) * CHUNK
    pad = rows * workers - n
    if pad:
        x = np.concatenate([x, np.broadcast_to(x[-1:], (pad,) + x.shape[1:])])
        y, w = np.pad(y, (0, pad)), np.pad(w, (0, pad))                  # padded rows weigh 0
    parts = [(net, rest, x[k * rows:(k + 1) * rows], y[k * rows:(k + 1) * rows], w[k * rows:(k + 1) * rows])
             for k in range(workers)]
    sums = run_parallel(gradient_sums, parts, workers)
    return _apply(net, opt_state, tuple(sums), jnp.asarray(np.sum(w), jnp.float32))


@jax.jit
def _batch_loss_sum(net, rest, x, y, w):
    bce = optax.sigmoid_binary_cross_entropy(logits_chunked({**rest, "net": net}, x), y)
    return jnp.sum(w * bce)


def _check(name: str, x, y, w, length: int | None):
    x = np.asarray(x)
    if x.ndim != 3:
        raise ValueError(f"fit: {name} windows must be (n, L, F), got shape {x.shape}")
    if length is not None and x.shape[1] != length:
        raise ValueError(f"fit: {name} windows have {x.shape[1]} rows, the config wants "
                         f"burn_in + window = {length}")
    y = np.asarray(y, np.float32)
    if y.shape != (x.shape[0],):
        raise ValueError(f"fit: {name} labels must have shape ({x.shape[0]},), got {y.shape}")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError(f"fit: {name} labels must be 0 or 1")
    w = np.ones(x.shape[0], np.float32) if w is None else np.asarray(w, np.float32)
    if w.shape != (x.shape[0],) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"fit: {name} weights must be ({x.shape[0]},), finite, >= 0, not all zero")
    return x, y, w


def validation_loss(net, rest, x, y, w, batch_size: int) -> float:
    """Weighted mean BCE over (x, y, w) in fixed-size padded chunks (one compiled shape)."""
    total, n = 0.0, x.shape[0]
    for start in range(0, n, batch_size):
        xb, yb, wb = x[start:start + batch_size], y[start:start + batch_size], w[start:start + batch_size]
        pad = batch_size - xb.shape[0]
        if pad:
            xb = np.concatenate([xb, np.broadcast_to(xb[-1:], (pad,) + xb.shape[1:])])
            yb, wb = np.pad(yb, (0, pad)), np.pad(wb, (0, pad))            # padded rows weigh 0
        total += float(_batch_loss_sum(net, rest, xb, yb, wb))
    return total / float(w.sum())


def fit(x, y, config: AttentionLSTMConfig, key, val=None, weight=None, progress: bool = True,
        workers: int | None = None) -> FitResult:
    """Train on windows x (n, burn_in + window, F) (float64) with labels y (n,) in {0, 1}.

    val: (x_val, y_val) or (x_val, y_val, w_val), the early-stopping block; None trains all epochs
    and keeps the last parameters. weight: optional sample weights (n,) (e.g. label uniqueness).
    key: a jax PRNG key. The scaler is the mean / std of the windows' last rows (every training row
    once when the windows come from `windows`). workers: parallel gradient threads per step (default:
    the usable CPU cores); the parameters do not depend on it beyond float rounding.
    """
    x, y, w = _check("training", x, y, weight, config.sequence_length)
    if val is not None:
        xv, yv, wv = _check("validation", val[0], val[1], val[2] if len(val) > 2 else None,
                            config.sequence_length)
    n, _, f = x.shape
    last = x[:, -1, :]
    mean = last.mean(axis=0)
    std = last.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    key, init_key = jax.random.split(key)
    params = init_params(init_key, f, config, mean, std)
    net, rest = params["net"], {k: v for k, v in params.items() if k != "net"}

    batch = min(config.batch_size, n)
    steps = n // batch
    workers = default_workers() if workers is None else workers
    lr_at = np.asarray(jax.vmap(schedule(config, steps * config.epochs))(jnp.arange(steps * config.epochs)),
                       np.float32)
    opt_state = init_optimiser(net, config)
    best = (np.inf, net, 0)
    train_hist, val_hist = [], []
    stopped = False
    bar = tqdm(total=steps * config.epochs, desc="attention LSTM", unit="step", disable=not progress,
               leave=False)
    for epoch in range(config.epochs):
        key, perm_key = jax.random.split(key)
        order = np.asarray(jax.random.permutation(perm_key, n))
        losses = []
        for s in range(steps):
            idx = np.sort(order[s * batch:(s + 1) * batch])           # sorted: gathers read forward
            opt_state.hyperparams["learning_rate"] = jnp.asarray(lr_at[epoch * steps + s])
            net, opt_state, loss = train_step(net, opt_state, rest, x[idx], y[idx], w[idx], workers)
            losses.append(loss)
            if s % 20 == 19 or s == steps - 1:
                bar.set_postfix(loss=f"{float(loss):.4f}", refresh=False)
            bar.update(1)
        train_hist.append(float(jnp.mean(jnp.stack(losses))))
        if val is None:
            best = (np.inf, net, epoch)
            continue
        vl = validation_loss(net, rest, xv, yv, wv, batch)
        val_hist.append(vl)
        bar.set_postfix(loss=f"{train_hist[-1]:.4f}", val=f"{vl:.4f}")
        if vl < best[0] - config.min_delta:
            # donation consumes `net` at the next step: keep a copy of the best parameters
            best = (vl, jax.tree_util.tree_map(jnp.copy, net), epoch)
        elif epoch - best[2] >= config.patience:
            stopped = True
            break
    bar.close()
    return FitResult({**rest, "net": best[1]}, train_hist, val_hist, best[2], stopped)
