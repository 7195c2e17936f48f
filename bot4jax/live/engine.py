"""The per-bar decision: streaming features (Numba) -> the checkpoint's model (one jitted call).

State is preallocated once: the feature kernel's state array and the feature row it writes into.
"""
from __future__ import annotations

import numpy as np

from bot4jax.features.bars import FEATURE_NAMES
from bot4jax.kernels.features_nb import features_init, features_update_nb
from bot4jax.models import baseline
from bot4jax.registry.checkpoints import Checkpoint, CheckpointError


class DecisionEngine:
    def __init__(self, checkpoint: Checkpoint):
        meta = checkpoint.meta
        if meta.get("kind") != "baseline_mlp" or tuple(meta.get("features", ())) != FEATURE_NAMES:
            raise CheckpointError(
                f"{checkpoint.path}: model kind {meta.get('kind')!r} with features {meta.get('features')} "
                f"is not the baseline over {list(FEATURE_NAMES)}; retrain it with this version")
        self.params = checkpoint.params
        self.min_edge = float(meta["min_edge"])
        self.state = features_init()
        self.row = np.empty((1, len(FEATURE_NAMES)), np.float64)
        self.predict = baseline.predict_proba
        self.predict(self.params, self.row * 0.0).block_until_ready()  # compile before the first event

    def on_bar(self, close: float, high: float, low: float, volume: float) -> float:
        """P(up) after this bar, or NaN while the features are still warming up."""
        if not features_update_nb(self.state, close, high, low, volume, self.row[0]):
            return float("nan")
        return float(self.predict(self.params, self.row)[0])

    def wants_long(self, p_up: float) -> bool:
        return p_up > 0.5 + self.min_edge
