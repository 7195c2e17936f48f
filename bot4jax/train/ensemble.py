"""The trained ensemble as one artifact: members, blend and calibrator; its checkpoint layout; and its
batch forward pass, the twin of the live engine (`bot4jax.live.engine.DecisionEngine`).

    ens          = Ensemble(...)                             built by `bot4jax.train.pipeline`
    tree, meta   = to_checkpoint(ens)                        one orbax pytree + JSON metadata
    ens          = from_checkpoint(tree, meta)
    out          = predict_bars(ens, features, close)        {"members" (M, n), "blend" (n,), "p" (n,)}

Per row t (feature row x_t, F columns):

    p_m,t  = member m on x_t[cols_m]                          logistic, mlp: the row alone
                                                             lstm: its stream state after rows
                                                             first_valid .. t (`attention_lstm.stream_step`)
    b_t    = blend(p_1,t .. p_M,t)                            `bot4jax.models.blending.predict_blend`;
                                                             dynamic: rolling BMA over the outcomes
                                                             resolved by t (rows i with i + h <= t)
    p_t    = clip(iso_r(b_t), c, 1 - c)                       isotonic map of regime r = regime of
                                                             x_t[regime column] (global map when thin
                                                             or when there are no regimes)

The outcome of row i is y_i = 1{close_{i+h} > close_i} (h = label horizon); it is known at bar i + h.
Rows before the features' warm-up ends get NaN. Checkpoint pytree:

    {"members": {name: params}, "blend": {"weights", ["coef", "intercept"]},   (no blend if dynamic)
     "calibrator": {"global": {"x", "y"}, ["regimes": {"<id>": {"x", "y"}}, "edges"]}}
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bot4jax.models.blending import Blend, dynamic_blend, predict_blend
from bot4jax.registry.checkpoints import CheckpointError
from bot4jax.train.members import MemberSpec
from bot4jax.validation.calibration import IsotonicCalibrator

KIND = "ensemble"


@dataclass(frozen=True)
class Ensemble:
    """features: names of the feature row; flow_span: EMA span of the flow features (if present);
    specs: the members; params: member name -> fitted parameters; mode: the blend mode; blend: the
    fitted blend (None for "dynamic"); dynamic_window / dynamic_temperature: the dynamic blend's
    settings; calibrator: the global isotonic map; regime_maps: regime id -> its own map; regime_column:
    feature index of the regime variable (-1: no regimes); regime_edges: (R - 1,) cut points;
    clip: calibrated probabilities kept in [clip, 1 - clip]; horizon: label horizon in bars."""

    features: tuple
    flow_span: int
    specs: tuple
    params: dict
    mode: str
    blend: Blend | None
    dynamic_window: int
    dynamic_temperature: float
    calibrator: IsotonicCalibrator
    regime_maps: dict
    regime_column: int
    regime_edges: np.ndarray
    clip: float
    horizon: int

    @property
    def names(self) -> tuple:
        return tuple(s.name for s in self.specs)


# ---------------------------------------------------------------------------------- checkpoint


def _knots(cal: IsotonicCalibrator) -> dict:
    return {"x": np.asarray(cal.x_knots), "y": np.asarray(cal.y_knots)}


def _cal(d: dict) -> IsotonicCalibrator:
    x, y = np.array(d["x"], np.float64), np.array(d["y"], np.float64)
    x.setflags(write=False)
    y.setflags(write=False)
    return IsotonicCalibrator(x, y, 0)


def to_checkpoint(ens: Ensemble) -> tuple[dict, dict]:
    """(pytree of arrays for orbax, JSON-able metadata)."""
    tree = {"members": {s.name: ens.params[s.name] for s in ens.specs},
            "calibrator": {"global": _knots(ens.calibrator)}}
    if ens.regime_maps:
        tree["calibrator"]["regimes"] = {str(g): _knots(c) for g, c in ens.regime_maps.items()}
    if ens.regime_column >= 0:
        tree["calibrator"]["edges"] = np.asarray(ens.regime_edges, np.float64)
    if ens.blend is not None:
        tree["blend"] = {"weights": np.asarray(ens.blend.weights, np.float64)}
        if ens.blend.coef is not None:
            tree["blend"]["coef"] = np.asarray(ens.blend.coef, np.float64)
            tree["blend"]["intercept"] = np.float64(ens.blend.intercept)
    meta = {
        "kind": KIND, "features": list(ens.features), "flow_span": ens.flow_span, "horizon": ens.horizon,
        "members": [{"name": s.name, "kind": s.kind, "columns": list(s.columns), "features": list(s.features),
                     "length": s.length} for s in ens.specs],
        "blend": {"mode": ens.mode, "voting": ens.blend.voting if ens.blend is not None else "",
                  "dynamic_window": ens.dynamic_window, "dynamic_temperature": ens.dynamic_temperature},
        "calibration": {"regime_column": ens.regime_column, "clip": ens.clip,
                        "regimes": sorted(int(g) for g in ens.regime_maps)},
    }
    return tree, meta


def from_checkpoint(tree: dict, meta: dict, where: str = "checkpoint") -> Ensemble:
    """Rebuild the Ensemble from `to_checkpoint`'s output (as restored by orbax)."""
    if meta.get("kind") != KIND:
        raise CheckpointError(f"{where}: model kind {meta.get('kind')!r} is not an ensemble of this version; "
                              f"retrain it with `python -m bot4jax.train`")
    try:
        specs = tuple(MemberSpec(m["name"], m["kind"], tuple(m["columns"]), tuple(m["features"]), int(m["length"]))
                      for m in meta["members"])
        b = meta["blend"]
        blend = None
        if "blend" in tree:
            coef = tree["blend"].get("coef")
            blend = Blend(b["mode"], np.asarray(tree["blend"]["weights"], np.float64),
                          None if coef is None else np.asarray(coef, np.float64),
                          float(tree["blend"].get("intercept", 0.0)), b["voting"] or "soft")
        cal = tree["calibrator"]
        regime_maps = {int(g): _cal(d) for g, d in cal.get("regimes", {}).items()}
        c = meta["calibration"]
        return Ensemble(tuple(meta["features"]), int(meta["flow_span"]), specs,
                        {s.name: tree["members"][s.name] for s in specs}, b["mode"], blend,
                        int(b["dynamic_window"]), float(b["dynamic_temperature"]), _cal(cal["global"]),
                        regime_maps, int(c["regime_column"]), np.asarray(cal.get("edges", np.zeros(0)), np.float64),
                        float(c["clip"]), int(meta["horizon"]))
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{where}: incomplete ensemble checkpoint ({type(e).__name__}: {e}); "
                              f"retrain it") from None


# ---------------------------------------------------------------------------------- batch twin


def member_predict(spec: MemberSpec, params, rows: np.ndarray) -> np.ndarray:
    """P(up) of one member for consecutive finite feature rows (n, F), as a live stream started at
    the first of them computes it; (n,) float64."""
    x = np.asarray(rows, np.float64)[:, list(spec.columns)]
    if spec.kind == "logistic":
        from bot4jax.models import logistic
        z = (x - np.asarray(params["scaler"]["mean"])) / np.asarray(params["scaler"]["std"])
        return np.asarray(logistic.predict_proba(params["model"], z), np.float64)
    if spec.kind == "mlp":
        from bot4jax.models import baseline
        return np.asarray(baseline.predict_proba(params, x), np.float64)
    if spec.kind == "lstm":
        from bot4jax.models import attention_lstm
        return np.asarray(attention_lstm.predict_series(params, x), np.float64)
    raise CheckpointError(f"unknown member kind {spec.kind!r}")


def regimes_of(ens: Ensemble, rows: np.ndarray) -> np.ndarray:
    if ens.regime_column < 0:
        return np.zeros(len(rows), np.int64)
    return np.searchsorted(ens.regime_edges, np.asarray(rows)[:, ens.regime_column], side="right").astype(np.int64)


def calibrate(ens: Ensemble, b: np.ndarray, regimes: np.ndarray) -> np.ndarray:
    """clip(iso_r(b)) per row; regimes (n,) int64 (0 everywhere without regimes)."""
    out = ens.calibrator.predict(b)
    for g, cal in ens.regime_maps.items():
        sel = regimes == g
        if sel.any():
            out[sel] = cal.predict(b[sel])
    return np.clip(out, ens.clip, 1.0 - ens.clip)


def outcomes(close: np.ndarray, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """(y (n,) with 0 where unknown, known (n,) bool): y_i = 1{close_{i+h} > close_i}."""
    close = np.asarray(close, np.float64)
    y = np.zeros(close.size)
    known = np.zeros(close.size, bool)
    if close.size > horizon:
        y[:-horizon] = (close[horizon:] > close[:-horizon]).astype(np.float64)
        known[:-horizon] = True
    return y, known


def blend_rows(ens: Ensemble, P: np.ndarray, y: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Blend (M, n) member probabilities of consecutive rows; y, known: their outcomes (dynamic)."""
    if ens.blend is not None:
        return predict_blend(ens.blend, P)
    n = P.shape[1]
    t0 = np.arange(n, dtype=np.int64)
    # an outcome not yet known resolves after every row here: it never enters a weight
    t1 = np.where(known, t0 + ens.horizon, np.iinfo(np.int64).max)
    return dynamic_blend(P, np.where(known, y, 0.0), t0, t1, window=ens.dynamic_window,
                         temperature=ens.dynamic_temperature)[0]


def predict_bars(ens: Ensemble, features: np.ndarray, close: np.ndarray) -> dict:
    """The live engine's outputs for every bar of a series, in one batch.

    features: (n, F) rows of `ens.features` (NaN during the warm-up; finite from the first finite row
    on); close: (n,) closes (outcomes for the dynamic blend). Returns {"members": (M, n), "blend": (n,),
    "p": (n,)} float64, NaN before the first finite row.
    """
    features = np.asarray(features, np.float64)
    n = features.shape[0]
    finite = np.all(np.isfinite(features), axis=1)
    out = {"members": np.full((len(ens.specs), n), np.nan), "blend": np.full(n, np.nan), "p": np.full(n, np.nan)}
    if not finite.any():
        return out
    first = int(np.argmax(finite))
    if not finite[first:].all():
        raise ValueError(f"feature row {first + int(np.argmin(finite[first:]))} is not finite after the warm-up")
    rows = features[first:]
    P = np.stack([member_predict(s, ens.params[s.name], rows) for s in ens.specs])
    y, known = outcomes(np.asarray(close, np.float64)[first:], ens.horizon)
    b = blend_rows(ens, P, y, known)
    out["members"][:, first:] = P
    out["blend"][first:] = b
    out["p"][first:] = calibrate(ens, b, regimes_of(ens, rows))
    return out
