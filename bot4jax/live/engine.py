"""The per-bar decision: streaming features (Numba) -> every ensemble member (one jitted call) -> blend
-> isotonic calibration, and the bar-volatility forecast (streaming GARCH) the risk layers size with.

    engine = DecisionEngine(checkpoint)              a checkpoint written by `python -m bot4jax.train`
    p_up   = engine.on_bar(close, high, low, volume, buy_volume=nan)
    engine.bar_variance, engine.vol_ratio, engine.payoff_ratio

Per bar: the bar features' kernel (`bot4jax.kernels.features_nb`) and, when the model uses order
flow, `bot4jax.train.features.flow_update` write the feature row; one jitted call evaluates every
member on it (the logistic and MLP members on the row, the attention LSTM by one streaming step that
carries its recurrent state and attention cache, `attention_lstm.stream_step`); then the blend
(NumPy, float64; the dynamic blend updates its rolling log-likelihoods with the outcome that
resolved at this bar) and the calibrator (`np.interp` over the isotonic knots). The LSTM stream
starts at the first bar after the features' warm-up, as `bot4jax.train.ensemble.predict_bars`
(the batch twin, tested equal) assumes.

`buy_volume` is the bar's buyer-initiated volume (from trades, or a venue's taker-buy volume). A
model trained with order-flow features reads it; when a feed cannot give it (NaN), the imbalance is
taken as 0, i.e. no information (counted in `missing_flow`).

State is preallocated once; nothing but the jitted call's outputs is allocated per bar.
"""
from __future__ import annotations

import functools
import logging
import math

import numpy as np

from bot4jax.features.bars import FEATURE_NAMES
from bot4jax.jaxcfg import jax, jnp
from bot4jax.kernels.features_nb import features_init, features_update_nb
from bot4jax.kernels.garch_nb import SIGMA2, garch_variance_update_nb, init_state, make_params
from bot4jax.models.blending import _CLIP, _LOGIT_CLIP  # the clips predict_blend / dynamic_blend use
from bot4jax.registry.checkpoints import Checkpoint, CheckpointError
from bot4jax.train.ensemble import from_checkpoint
from bot4jax.train.features import FLOW_NAMES, flow_init, flow_update

log = logging.getLogger("bot4jax.live")

N_BAR = len(FEATURE_NAMES)


@functools.lru_cache(maxsize=16)
def _members_step(specs: tuple):
    """A jitted f(params, lstm_state, row (F,)) -> (P (M,) float64, lstm_state) over every member;
    one per ensemble structure (parameters are arguments), so engines of one structure share it."""
    from bot4jax.models import attention_lstm, baseline

    def step(params, lstm_state, row):
        ps = []
        for s in specs:
            x = row[jnp.asarray(s.columns)]
            prm = params[s.name]
            if s.kind == "logistic":
                z = (x - prm["scaler"]["mean"]) / prm["scaler"]["std"]
                ps.append(jax.nn.sigmoid(z @ prm["model"]["coef"] + prm["model"]["intercept"]))
            elif s.kind == "mlp":
                ps.append(baseline.predict_proba(prm, x[None, :])[0].astype(jnp.float64))
            elif s.kind == "lstm":
                p, lstm_state = attention_lstm.stream_step(prm, lstm_state, x)
                ps.append(p.astype(jnp.float64))
            else:
                raise CheckpointError(f"unknown member kind {s.kind!r}")
        return jnp.stack(ps), lstm_state

    return jax.jit(step, donate_argnums=1)


class DecisionEngine:
    def __init__(self, checkpoint: Checkpoint):
        meta = checkpoint.meta
        ens = from_checkpoint(checkpoint.params, meta, str(checkpoint.path))
        extra = ens.features[N_BAR:]
        if ens.features[:N_BAR] != FEATURE_NAMES or extra not in ((), FLOW_NAMES) or "risk" not in meta:
            raise CheckpointError(
                f"{checkpoint.path}: features {list(ens.features)} are not this version's "
                f"{list(FEATURE_NAMES)} (+ {list(FLOW_NAMES)}) with risk inputs; retrain it")
        self.ensemble = ens
        self.payoff_ratio = float(meta["risk"]["payoff_ratio"])
        vol = meta["risk"]["volatility"]
        self.scale = float(vol["scale"])
        self.long_run_variance = float(vol["long_run_variance"])
        self.garch_params = make_params(vol["mu"], vol["omega"], vol["alpha"], vol["beta"])
        # Live starts on data after the training span, not right after it: begin at the long run.
        self.garch_state = init_state(self.long_run_variance)
        self.prev_close = math.nan

        self.state = features_init()
        self.row = np.zeros(len(ens.features), np.float64)
        self.with_flow = bool(extra)
        self.flow_state = flow_init()
        self.flow_out = self.row[N_BAR:]  # a view: flow_update writes the row in place
        self.missing_flow = 0

        self.params = {s.name: ens.params[s.name] for s in ens.specs}
        self.lstm = next((s for s in ens.specs if s.kind == "lstm"), None)
        self.step = _members_step(tuple(ens.specs))
        self.lstm_state = self._fresh_lstm_state()
        # compile before the first event, on a throwaway state (the step consumes the one it gets)
        jax.block_until_ready(self.step(self.params, self._fresh_lstm_state(), jnp.zeros(len(ens.features))))

        self.blend = ens.blend
        self.horizon = ens.horizon
        if ens.blend is not None:
            self.coef = None if ens.blend.coef is None else np.asarray(ens.blend.coef, np.float64)
            self.weights = np.asarray(ens.blend.weights, np.float64)
            self.hard = ens.blend.coef is None and ens.blend.voting == "hard"
        else:
            # dynamic: a ring of the last `window` resolved rows' log-likelihoods and their running sum
            M = len(ens.specs)
            self.ll_ring = [[0.0] * M for _ in range(ens.dynamic_window)]
            self.ll_sum = [0.0] * M
            self.n_observed = 0
            self.hist_p = [[0.0] * M for _ in range(ens.horizon + 1)]
            self.hist_close = [0.0] * (ens.horizon + 1)
        self.n_valid = 0
        self.xk, self.yk = ens.calibrator.x_knots, ens.calibrator.y_knots
        self.regime_maps = {g: (c.x_knots, c.y_knots) for g, c in ens.regime_maps.items()}
        self.last_members = np.full(len(ens.specs), np.nan)
        self.last_blend = math.nan

    def _fresh_lstm_state(self):
        if self.lstm is None:
            return ()
        from bot4jax.models.attention_lstm import stream_init
        return stream_init(self.params[self.lstm.name])

    def on_bar(self, close: float, high: float, low: float, volume: float,
               buy_volume: float = math.nan) -> float:
        """P(up) over the label horizon after this bar, or NaN while the features are warming up."""
        if self.prev_close == self.prev_close:
            garch_variance_update_nb(self.garch_state, self.garch_params, self.scale * math.log(close / self.prev_close))
        self.prev_close = close
        if self.with_flow:
            if buy_volume != buy_volume:
                self.missing_flow += 1
            flow_update(self.flow_state, volume, buy_volume, self.ensemble.flow_span, self.flow_out)
        if not features_update_nb(self.state, close, high, low, volume, self.row):
            return float("nan")
        P, self.lstm_state = self.step(self.params, self.lstm_state, self.row)
        P = np.asarray(P)
        b = self._blend(P, close)
        self.last_members, self.last_blend = P, b
        xk, yk = self.xk, self.yk
        if self.regime_maps:
            r = int(np.searchsorted(self.ensemble.regime_edges, self.row[self.ensemble.regime_column], side="right"))
            xk, yk = self.regime_maps.get(r, (xk, yk))
        clip = self.ensemble.clip
        return min(max(float(np.interp(b, xk, yk)), clip), 1.0 - clip)

    def _blend(self, P: np.ndarray, close: float) -> float:
        """`blending.predict_blend` for one row (static blends), or the dynamic blend's streaming
        form (`blending.dynamic_observe` / `dynamic_weights` with an O(M) running sum)."""
        if self.blend is not None:
            if self.coef is not None:
                pc = np.clip(P, _LOGIT_CLIP, 1.0 - _LOGIT_CLIP)
                z = self.blend.intercept + self.coef @ (np.log(pc) - np.log1p(-pc))
                return float(1.0 / (1.0 + math.exp(-z)))
            return float(self.weights @ ((P > 0.5) if self.hard else P))
        h, k = self.horizon, self.n_valid
        p = P.tolist()  # M is a handful: plain floats beat NumPy calls on tiny arrays
        if k >= h:  # the outcome of the row h bars ago is known now
            j = (k - h) % (h + 1)
            y = close > self.hist_close[j]
            slot = self.n_observed % len(self.ll_ring)
            old, new, total = self.ll_ring[slot], [], self.ll_sum
            for m, q in enumerate(self.hist_p[j]):
                q = min(max(q, _CLIP), 1.0 - _CLIP)
                v = math.log(q) if y else math.log1p(-q)
                total[m] += v - old[m]
                new.append(v)
            self.ll_ring[slot] = new
            self.n_observed += 1
            if slot == len(self.ll_ring) - 1:  # once per window: no rounding drift in the sum
                self.ll_sum = [math.fsum(col) for col in zip(*self.ll_ring)]
        self.hist_p[k % (h + 1)] = p
        self.hist_close[k % (h + 1)] = close
        self.n_valid = k + 1
        w = self.dynamic_weights
        return math.fsum(wi * pi for wi, pi in zip(w, p))

    @property
    def dynamic_weights(self) -> list:
        """The dynamic blend's current member weights, softmax(summed log-likelihoods / T), (M,)."""
        t = self.ensemble.dynamic_temperature
        top = max(self.ll_sum)
        e = [math.exp((v - top) / t) for v in self.ll_sum]
        s = math.fsum(e)
        return [v / s for v in e]

    @property
    def bar_variance(self) -> float:
        """Forecast variance of the next bar's decimal log return."""
        return self.garch_state[SIGMA2] / (self.scale * self.scale)

    @property
    def vol_ratio(self) -> float:
        """Forecast / long-run volatility: above 1 in a volatility spike."""
        return math.sqrt(self.garch_state[SIGMA2] / self.long_run_variance)
