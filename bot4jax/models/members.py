"""Base learners of the stacking ensemble: one small interface, and the logistic and MLP members.

A member is three things (a frozen dataclass, so any model plugs in without subclassing):

    name                                           a unique label, used in reports
    fit(x, y, w, train_idx, val_idx) -> params     fit on rows train_idx of x (n, ...), y (n,), w (n,);
                                                   val_idx: a later block for early stopping (may be
                                                   empty; members without early stopping ignore it)
    predict(params, x) -> (k,) float64             P(y = 1) for rows x (k, ...)

``x`` is the whole sample array (first axis = samples, in time order), so a member may keep one input
shape across folds (the logistic member does: it zero-weights the rows outside ``train_idx``, one
compile for every fold). Rows outside ``train_idx`` may hold NaN labels; members must not read them.
Sequence members (the attention LSTM) take windows (n, T, F) the same way; the last axis is always
the feature axis, which is what permutation importance shuffles.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from bot4jax.models import logistic

__all__ = ["Member", "logistic_member", "mlp_member"]


@dataclass(frozen=True)
class Member:
    name: str
    fit: Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray], Any]
    predict: Callable[[Any, np.ndarray], np.ndarray]


def logistic_member(C: float = 1.0, l1_ratio: float = 0.0, name: str = "logistic") -> Member:
    """Penalised logistic regression (`bot4jax.models.logistic`) on features standardised with the
    mean and standard deviation of the training rows (zero-variance columns keep scale 1).

    params = {"scaler": {"mean": (f,), "std": (f,)}, "model": {"coef": (f,), "intercept": ()}}.
    Uses the sample weights w; ignores val_idx (no early stopping: the fit is a convex optimum).
    """

    def fit(x, y, w, train_idx, val_idx):
        x = np.asarray(x, np.float64)
        if x.ndim != 2:
            raise ValueError(f"{name}: x must be (n, n_features), got shape {x.shape}")
        xt = x[train_idx]
        mean = xt.mean(axis=0)
        sd = xt.std(axis=0)
        std = np.where(sd > 0, sd, 1.0)
        mask = np.zeros(x.shape[0], bool)
        mask[train_idx] = True
        # the full-length arrays keep one shape across folds; rows outside train weigh nothing
        z = np.where(mask[:, None], (x - mean) / std, 0.0)
        yy = np.where(mask, np.asarray(y, np.float64), 0.0)
        ww = np.where(mask, 1.0 if w is None else np.asarray(w, np.float64), 0.0)
        res = logistic.logistic_fit(z, yy, ww, C=C, l1_ratio=l1_ratio)
        if not res.converged:
            raise RuntimeError(f"{name}: logistic fit did not converge in {res.n_iter} iterations")
        return {"scaler": {"mean": mean, "std": std}, "model": res.params}

    def predict(params, x):
        z = (np.asarray(x, np.float64) - params["scaler"]["mean"]) / params["scaler"]["std"]
        return np.asarray(logistic.predict_proba(params["model"], z), np.float64)

    return Member(name, fit, predict)


def mlp_member(config, seed: int = 0, name: str = "mlp") -> Member:
    """The baseline MLP (`bot4jax.models.baseline`) with early stopping on val_idx (must be non-empty).

    ``config`` is a `bot4jax.config.ModelConfig`. The MLP's loss is unweighted: w is ignored.
    """
    from bot4jax.models import baseline  # flax/optax import cost only when an MLP is asked for

    def fit(x, y, w, train_idx, val_idx):
        if len(val_idx) == 0:
            raise ValueError(f"{name}: the MLP needs a validation block for early stopping; "
                             "build splits with bot4jax.models.stacking.validation_splits")
        return baseline.fit(x[train_idx], y[train_idx], x[val_idx], y[val_idx], config, seed,
                            progress=False).params

    def predict(params, x):
        return np.asarray(baseline.predict_proba(params, np.asarray(x, np.float64)), np.float64)

    return Member(name, fit, predict)
