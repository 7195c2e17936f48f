"""The ensemble's base learners as configured: which model, which feature columns, which input shape.

    specs   = member_specs(config, feature_names)         one MemberSpec per configured member
    members = build_members(specs, config)                 `bot4jax.models.members.Member`s
    x       = member_inputs(specs, features, start, stop)  {name: inputs of rows start .. stop - 1}

Row members (logistic, mlp) see one feature row per sample, (n, F_m). The attention LSTM sees the
window of the last ``burn_in + window`` rows ending at the sample's row, (n, L, F_m), as a strided
view (no copy); so the first sample needs L - 1 finite rows before it (`first_sample`).

The LSTM is fitted on at most ``max_train`` windows evenly spaced over the split's training rows,
so that every CPCV split trains the same number of steps and the training step compiles once
(the optimiser schedule's length is part of the compiled program).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from bot4jax.config import TrainConfig
from bot4jax.errors import ConfigError
from bot4jax.models.members import Member, logistic_member, mlp_member
from bot4jax.train.features import select

KINDS = ("logistic", "mlp", "lstm")
log = logging.getLogger("bot4jax.train")


@dataclass(frozen=True)
class MemberSpec:
    """name (= kind here), the feature columns it reads (indices into the feature row) and their
    names, and the rows per input window (1 for row members)."""

    name: str
    kind: str
    columns: tuple[int, ...]
    features: tuple[str, ...]
    length: int


def lstm_config(config: TrainConfig):
    from bot4jax.models.attention_lstm import AttentionLSTMConfig

    c = config.lstm
    return AttentionLSTMConfig(hidden=c.hidden, heads=c.heads, window=c.window, burn_in=c.burn_in,
                               epochs=c.epochs, batch_size=c.batch_size, lr=c.learning_rate,
                               weight_decay=c.weight_decay, patience=c.patience)


def member_specs(config: TrainConfig, names: tuple[str, ...]) -> list[MemberSpec]:
    kinds = [k.strip() for k in config.ensemble.members.split(",") if k.strip()]
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds or len(set(kinds)) != len(kinds):
        raise ConfigError(f"ensemble.members must name distinct members among {list(KINDS)}, "
                          f"got {config.ensemble.members!r}")
    specs = []
    for kind in kinds:
        section = {"logistic": config.logistic, "mlp": config.model, "lstm": config.lstm}[kind]
        cols = select(names, section.features, f"{kind}.features")
        if section.features.strip() and len(cols) == len(names) and len(names) > len(section.features.split(",")):
            log.warning("%s: the features %r are not in this data (no trades?); it reads every feature",
                        kind, section.features)
        length = lstm_config(config).sequence_length if kind == "lstm" else 1
        specs.append(MemberSpec(kind, kind, tuple(int(c) for c in cols), tuple(names[c] for c in cols), length))
    return specs


def first_sample(specs: list[MemberSpec], first_valid: int) -> int:
    """The first row every member can predict: each needs its window of finite rows."""
    return first_valid + max(s.length for s in specs) - 1


def member_inputs(specs: list[MemberSpec], features: np.ndarray, start: int, stop: int) -> dict:
    """Inputs of the samples at rows start .. stop - 1 (first axis = those samples, in order)."""
    out = {}
    for s in specs:
        cols = features[:, list(s.columns)]
        if s.length == 1:
            out[s.name] = np.ascontiguousarray(cols[start:stop])
        else:
            from bot4jax.models.attention_lstm import windows

            if start - (s.length - 1) < 0:
                raise ValueError(f"{s.name}: row {start} has no {s.length}-row window before it")
            out[s.name] = windows(cols, s.length)[start - (s.length - 1):stop - (s.length - 1)]
    return out


def lstm_member(config: TrainConfig, seed: int, name: str = "lstm") -> Member:
    """The attention LSTM as an ensemble member: early stopping on the split's validation block,
    sample weights used, at most ``lstm.max_train`` evenly spaced training windows."""
    from bot4jax.jaxcfg import jax
    from bot4jax.models import attention_lstm as lstm
    from bot4jax.models import attention_lstm_train as lstm_train

    cfg = lstm_config(config)
    cap = config.lstm.max_train

    def fit(x, y, w, train_idx, val_idx):
        if len(val_idx) == 0:
            raise ValueError(f"{name}: the LSTM needs a validation block for early stopping")
        train = np.asarray(train_idx)
        if train.size > cap:
            train = train[np.round(np.linspace(0, train.size - 1, cap)).astype(np.int64)]
        ww = np.ones(len(y)) if w is None else np.asarray(w, np.float64)
        res = lstm_train.fit(np.asarray(x[train]), y[train], cfg, jax.random.PRNGKey(seed),
                             val=(np.asarray(x[val_idx]), y[val_idx], ww[val_idx]), weight=ww[train],
                             progress=False)
        return res.params

    def predict(params, x):
        return np.asarray(lstm.predict_proba(params, np.asarray(x)), np.float64)

    return Member(name, fit, predict)


def build_members(specs: list[MemberSpec], config: TrainConfig) -> list[Member]:
    out = []
    for s in specs:
        if s.kind == "logistic":
            out.append(logistic_member(config.logistic.C, config.logistic.l1_ratio, name=s.name))
        elif s.kind == "mlp":
            out.append(mlp_member(config.model, seed=config.seed, name=s.name))
        else:
            out.append(lstm_member(config, config.seed, name=s.name))
    return out
