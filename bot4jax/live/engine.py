"""The per-bar decision: streaming features (Numba) -> the checkpoint's model (one jitted call), and
the bar-volatility forecast (streaming GARCH) the risk layers size with.

State is preallocated once: the feature kernel's state, the feature row it writes into, and the
GARCH variance state.
"""
from __future__ import annotations

import math

import numpy as np

from bot4jax.features.bars import FEATURE_NAMES
from bot4jax.kernels.features_nb import features_init, features_update_nb
from bot4jax.kernels.garch_nb import SIGMA2, garch_variance_update_nb, init_state, make_params
from bot4jax.models import baseline
from bot4jax.registry.checkpoints import Checkpoint, CheckpointError


class DecisionEngine:
    def __init__(self, checkpoint: Checkpoint):
        meta = checkpoint.meta
        if (meta.get("kind") != "baseline_mlp" or tuple(meta.get("features", ())) != FEATURE_NAMES
                or "risk" not in meta):
            raise CheckpointError(
                f"{checkpoint.path}: model kind {meta.get('kind')!r} with features {meta.get('features')} "
                f"is not this version's baseline over {list(FEATURE_NAMES)} with risk inputs; retrain it")
        self.params = checkpoint.params
        self.payoff_ratio = float(meta["risk"]["payoff_ratio"])
        vol = meta["risk"]["volatility"]
        self.scale = float(vol["scale"])
        self.long_run_variance = float(vol["long_run_variance"])
        self.garch_params = make_params(vol["mu"], vol["omega"], vol["alpha"], vol["beta"])
        # Live starts on data after the training span, not right after it: begin at the long run.
        self.garch_state = init_state(self.long_run_variance)
        self.prev_close = math.nan
        self.state = features_init()
        self.row = np.empty((1, len(FEATURE_NAMES)), np.float64)
        self.predict = baseline.predict_proba
        self.predict(self.params, self.row * 0.0).block_until_ready()  # compile before the first event

    def on_bar(self, close: float, high: float, low: float, volume: float) -> float:
        """P(up) after this bar, or NaN while the features are still warming up."""
        if self.prev_close == self.prev_close:
            garch_variance_update_nb(self.garch_state, self.garch_params, self.scale * math.log(close / self.prev_close))
        self.prev_close = close
        if not features_update_nb(self.state, close, high, low, volume, self.row[0]):
            return float("nan")
        return float(self.predict(self.params, self.row)[0])

    @property
    def bar_variance(self) -> float:
        """Forecast variance of the next bar's decimal log return."""
        return self.garch_state[SIGMA2] / (self.scale * self.scale)

    @property
    def vol_ratio(self) -> float:
        """Forecast / long-run volatility: above 1 in a volatility spike."""
        return math.sqrt(self.garch_state[SIGMA2] / self.long_run_variance)
