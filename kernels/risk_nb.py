"""Risk clamps and Kelly sizing for one decision: a Numba kernel over preallocated records.

`risk_clamps_nb(cfg, p_up, payoff_ratio, forecast_vol, var_per_unit, es_per_unit, open_heat,
corr_with_book, gross_exposure, drawdown, vol_ratio, toxicity, rec) -> float` returns the target
position as a signed fraction of equity (+0.3: long 30 % of equity; -0.1: short 10 %) and writes what
happened into `rec`. `cfg` is one PARAMS_DTYPE record and `rec` one RECORD_DTYPE record (in njit
code: `params[0]`, `records[i]`). `risk_clamps_ptr_nb` is the same kernel with the two records passed
by address, for callers in Python (`bot4jax.risk.sizing.RiskClamps`, which also builds the records
from the typed config). Neither allocates: no Numba runtime allocation per call.

Kelly proposal
--------------
The signal's direction is long when p = p_up >= 0.5, else short. For a binary bet in that direction
won with probability q = max(p, 1 - p) and paying b = payoff_ratio (average win / average loss of such bets),
the growth-optimal fraction is the Kelly fraction

    f* = q - (1 - q) / b                                     (Kelly 1956; for p >= 0.5: p - (1-p)/b)

The proposal is safety_factor * f*, floored at 0 (f* <= 0: the bet loses money in expectation), and
zero for a short signal unless `allow_short`. Since f* <= q <= 1 and safety_factor <= 1, the
proposal never exceeds 100 % of equity; the layers below hold it under every other cap.

The eight layers, in order, on the magnitude |x| of the signed position x
-------------------------------------------------------------------------
0 calibration gate  |x| = 0 unless the calibrated edge |p - 0.5| >= min_edge
1 volatility target |x| <= target_vol / forecast_vol        (both annualised, 365-day year)
2 VaR limit         |x| * var_per_unit <= max_var           (fractions of equity)
3 ES limit          |x| * es_per_unit <= max_es
4 portfolio heat    open_heat + |x| * es_per_unit <= max_heat    (a position's heat is its ES)
5 correlation       |x| *= 1 - corr_penalty * max(0, sign(x) * corr_with_book), only when
                    gross_exposure > 0 (no book, nothing to be correlated with)
6 leverage cap      gross_exposure + |x| <= max_leverage
7 crisis override   |x| *= m, m the smallest multiplier of the active conditions:
                    drawdown >= drawdown_halt: 0; >= drawdown_reduce: drawdown_reduce_scale;
                    vol_ratio >= vol_halt_ratio: 0; >= vol_spike_ratio: vol_spike_scale;
                    toxicity >= toxicity_exit: 0 (exit only); >= toxicity_defensive:
                    toxicity_defensive_scale; >= toxicity_cautious: toxicity_cautious_scale

Every layer can only shrink |x| and never flips its sign. A cap below zero (heat or leverage already
used up) counts as zero.

The record (RECORD_DTYPE)
-------------------------
kelly      full Kelly fraction f* of the signalled bet, signed by direction (before the floor)
proposal   signed position entering layer 0
sizes[i]   signed position after layer i, i = 0..7
final      the returned position, = sizes[7]
binding    the last layer that strictly reduced |x|, i.e. the tightest constraint at the end: for
           the cap layers the final size equals that layer's cap. -1 (BINDING_NONE): no layer
           reduced the proposal (it may still be 0, see reasons). -2 (BINDING_INVALID): an input
           was NaN, infinite or out of its domain and the position is 0.
reasons    bitmask: bit i (i = 0..7) set when layer i strictly reduced |x| (so the first layer that
           bound is the lowest set bit), plus the R_* flags below
invalid    bitmask over the inputs in INPUT_ORDER: bit k set when input k was invalid

Inputs and their units (invalid outside these ranges -> position 0, never an exception)
-------------------------------------------------------------------------------------------
p_up            calibrated probability that the price goes up (a long bet wins), in [0, 1]
payoff_ratio    average win / average loss of the signalled bet, in (0, inf)
forecast_vol    annualised volatility forecast of the asset's log return, in (0, inf)
                (per-bar GARCH variance h: sqrt(h * bars_per_year), 365-day year)
var_per_unit    VaR of a position of 100 % of equity, as a loss fraction of equity, in (0, inf)
es_per_unit     expected shortfall of the same position, in (0, inf)
open_heat       sum of ES (fraction of equity) of the other open positions, in [0, inf)
corr_with_book  exposure-weighted correlation of this asset with the other positions, in [-1, 1]
gross_exposure  sum of |weight| of the other open positions (fractions of equity), in [0, inf)
drawdown        (peak equity - equity) / peak equity, in [0, 1]
vol_ratio       forecast volatility / long-run (unconditional) volatility, in [0, inf)
toxicity        order-flow toxicity (VPIN), in [0, 1]

The size is a target for this asset, not an increment: open_heat and gross_exposure exclude it.
"""
from __future__ import annotations

import numpy as np
from numba import carray, njit, types
from numba.core import cgutils
from numba.extending import intrinsic

N_LAYERS = 8
L_GATE, L_VOL, L_VAR, L_ES, L_HEAT, L_CORR, L_LEVERAGE, L_CRISIS = range(N_LAYERS)

BINDING_NONE = -1
BINDING_INVALID = -2

# reasons: bits 0..7 are the layers that reduced the size; the flags follow
R_INVALID_INPUT = 1 << 8        # an input was NaN, infinite or out of range: position 0
R_NO_KELLY_EDGE = 1 << 9        # f* <= 0: the bet has no positive expected growth
R_SHORT_BLOCKED = 1 << 10       # short signal (p < 0.5) in a long-only account
R_CORR_CLIPPED = 1 << 11        # corr_with_book was within 1e-9 outside [-1, 1] and was clipped
R_DRAWDOWN_REDUCE = 1 << 12
R_DRAWDOWN_HALT = 1 << 13
R_VOL_SPIKE = 1 << 14
R_VOL_HALT = 1 << 15
R_TOXICITY_CAUTIOUS = 1 << 16
R_TOXICITY_DEFENSIVE = 1 << 17
R_TOXICITY_EXIT = 1 << 18

INPUT_ORDER = ("p_up", "payoff_ratio", "forecast_vol", "var_per_unit", "es_per_unit", "open_heat",
               "corr_with_book", "gross_exposure", "drawdown", "vol_ratio", "toxicity")

# Field names equal the RiskConfig fields the kernel reads; allow_short is 1.0 or 0.0.
PARAMS_DTYPE = np.dtype([(name, np.float64) for name in (
    "safety_factor", "allow_short", "min_edge", "target_vol", "max_var", "max_es", "max_heat",
    "corr_penalty", "max_leverage", "drawdown_reduce", "drawdown_reduce_scale", "drawdown_halt",
    "vol_spike_ratio", "vol_spike_scale", "vol_halt_ratio", "toxicity_cautious",
    "toxicity_cautious_scale", "toxicity_defensive", "toxicity_defensive_scale", "toxicity_exit")])

RECORD_DTYPE = np.dtype([("kelly", np.float64), ("proposal", np.float64),
                         ("sizes", np.float64, (N_LAYERS,)), ("final", np.float64),
                         ("binding", np.int64), ("reasons", np.int64), ("invalid", np.int64)])

_CORR_TOL = 1e-9


@njit(cache=True, nogil=True)
def _invalid_inputs(p_up, payoff_ratio, forecast_vol, var_per_unit, es_per_unit, open_heat,
                    corr_with_book, gross_exposure, drawdown, vol_ratio, toxicity):
    # Written as `not (lo <= x <= hi)` so NaN fails every test; `< inf` rejects infinities.
    inf = np.inf
    bad = 0
    if not (0.0 <= p_up <= 1.0):
        bad |= 1 << 0
    if not (0.0 < payoff_ratio < inf):
        bad |= 1 << 1
    if not (0.0 < forecast_vol < inf):
        bad |= 1 << 2
    if not (0.0 < var_per_unit < inf):
        bad |= 1 << 3
    if not (0.0 < es_per_unit < inf):
        bad |= 1 << 4
    if not (0.0 <= open_heat < inf):
        bad |= 1 << 5
    if not (-1.0 - _CORR_TOL <= corr_with_book <= 1.0 + _CORR_TOL):
        bad |= 1 << 6
    if not (0.0 <= gross_exposure < inf):
        bad |= 1 << 7
    if not (0.0 <= drawdown <= 1.0):
        bad |= 1 << 8
    if not (0.0 <= vol_ratio < inf):
        bad |= 1 << 9
    if not (0.0 <= toxicity <= 1.0):
        bad |= 1 << 10
    return bad


@njit(cache=True, nogil=True)
def _step(rec, layer, old, new, sign):
    """Record layer `layer` taking |x| from `old` to `new` (new <= old); returns new."""
    if new < old:
        rec.binding = layer
        rec.reasons |= 1 << layer
    rec.sizes[layer] = sign * new if new > 0.0 else 0.0  # no -0.0 in the record
    return new


@njit(cache=True, nogil=True)
def risk_clamps_nb(cfg, p_up, payoff_ratio, forecast_vol, var_per_unit, es_per_unit, open_heat,
                   corr_with_book, gross_exposure, drawdown, vol_ratio, toxicity, rec):
    """Kelly proposal through the eight clamp layers; returns the signed target fraction of equity.

    cfg: one PARAMS_DTYPE record (read only); rec: one RECORD_DTYPE record, overwritten. Allocates
    nothing. See the module docstring for the formulas, units and the record.
    """
    rec.reasons = 0
    rec.binding = BINDING_NONE
    bad = _invalid_inputs(p_up, payoff_ratio, forecast_vol, var_per_unit, es_per_unit, open_heat,
                          corr_with_book, gross_exposure, drawdown, vol_ratio, toxicity)
    rec.invalid = bad
    if bad != 0:
        rec.kelly = 0.0
        rec.proposal = 0.0
        for i in range(N_LAYERS):
            rec.sizes[i] = 0.0
        rec.final = 0.0
        rec.binding = BINDING_INVALID
        rec.reasons = R_INVALID_INPUT
        return 0.0

    # Kelly proposal for the bet in the signalled direction
    sign = 1.0 if p_up >= 0.5 else -1.0
    q = p_up if p_up >= 0.5 else 1.0 - p_up
    kelly = q - (1.0 - q) / payoff_ratio
    rec.kelly = sign * kelly
    mag = cfg.safety_factor * kelly
    if kelly <= 0.0:
        rec.reasons |= R_NO_KELLY_EDGE
        mag = 0.0
    if sign < 0.0 and cfg.allow_short == 0.0:
        rec.reasons |= R_SHORT_BLOCKED
        mag = 0.0
    rec.proposal = sign * mag if mag > 0.0 else 0.0

    # 0 calibration gate
    mag = _step(rec, L_GATE, mag, mag if abs(p_up - 0.5) >= cfg.min_edge else 0.0, sign)
    # 1 volatility target
    mag = _step(rec, L_VOL, mag, min(mag, cfg.target_vol / forecast_vol), sign)
    # 2 VaR and 3 ES limits
    mag = _step(rec, L_VAR, mag, min(mag, cfg.max_var / var_per_unit), sign)
    mag = _step(rec, L_ES, mag, min(mag, cfg.max_es / es_per_unit), sign)
    # 4 portfolio heat: the risk budget the other positions leave, spent at es_per_unit per unit
    mag = _step(rec, L_HEAT, mag, min(mag, max(0.0, cfg.max_heat - open_heat) / es_per_unit), sign)
    # 5 correlation penalty: only positive correlation in the trade's direction adds to book risk
    rho = min(1.0, max(-1.0, corr_with_book))
    if rho != corr_with_book:
        rec.reasons |= R_CORR_CLIPPED
    scale = 1.0
    if gross_exposure > 0.0:
        scale = 1.0 - cfg.corr_penalty * max(0.0, sign * rho)
    mag = _step(rec, L_CORR, mag, mag * scale, sign)
    # 6 leverage cap
    mag = _step(rec, L_LEVERAGE, mag, min(mag, max(0.0, cfg.max_leverage - gross_exposure)), sign)
    # 7 crisis override: the most severe active condition sets the multiplier
    m = 1.0
    if drawdown >= cfg.drawdown_halt:
        rec.reasons |= R_DRAWDOWN_HALT
        m = 0.0
    elif drawdown >= cfg.drawdown_reduce:
        rec.reasons |= R_DRAWDOWN_REDUCE
        m = min(m, cfg.drawdown_reduce_scale)
    if vol_ratio >= cfg.vol_halt_ratio:
        rec.reasons |= R_VOL_HALT
        m = 0.0
    elif vol_ratio >= cfg.vol_spike_ratio:
        rec.reasons |= R_VOL_SPIKE
        m = min(m, cfg.vol_spike_scale)
    if toxicity >= cfg.toxicity_exit:
        rec.reasons |= R_TOXICITY_EXIT
        m = 0.0
    elif toxicity >= cfg.toxicity_defensive:
        rec.reasons |= R_TOXICITY_DEFENSIVE
        m = min(m, cfg.toxicity_defensive_scale)
    elif toxicity >= cfg.toxicity_cautious:
        rec.reasons |= R_TOXICITY_CAUTIOUS
        m = min(m, cfg.toxicity_cautious_scale)
    mag = _step(rec, L_CRISIS, mag, mag * m, sign)

    final = sign * mag if mag > 0.0 else 0.0
    rec.final = final
    return final



@intrinsic
def _voidptr_at(typingctx, address):
    """An integer address (from `ndarray.ctypes.data`) as a void pointer, for `carray`."""
    if not isinstance(address, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], cgutils.voidptr_t)

    return types.voidptr(address), codegen


# An explicit signature: compiled once (cached on disk), and an int argument is converted to float
# instead of triggering a new compilation in the hot path.
_PTR_SIGNATURE = types.float64(types.intp, *([types.float64] * len(INPUT_ORDER)), types.intp)


@njit(_PTR_SIGNATURE, cache=True, nogil=True)
def risk_clamps_ptr_nb(cfg_address, p_up, payoff_ratio, forecast_vol, var_per_unit, es_per_unit, open_heat,
                       corr_with_book, gross_exposure, drawdown, vol_ratio, toxicity, rec_address):
    """`risk_clamps_nb` for callers in Python: the records passed as the integer addresses of a
    one-element PARAMS_DTYPE array and a one-element RECORD_DTYPE array, which the caller keeps alive.

    Why: from Python, Numba's dispatcher unboxes a record argument in about 1 us and ctypes converts
    thirteen arguments in about 2.5 us, against ~0.1 us for the kernel itself; integers and floats
    unbox in tens of ns, and a `carray` view over a raw pointer allocates nothing.
    """
    cfg = carray(_voidptr_at(cfg_address), 1, dtype=PARAMS_DTYPE)
    rec = carray(_voidptr_at(rec_address), 1, dtype=RECORD_DTYPE)
    return risk_clamps_nb(cfg[0], p_up, payoff_ratio, forecast_vol, var_per_unit, es_per_unit, open_heat,
                          corr_with_book, gross_exposure, drawdown, vol_ratio, toxicity, rec[0])
