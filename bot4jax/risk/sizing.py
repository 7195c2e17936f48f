"""Position sizing: quarter-Kelly through eight risk clamp layers, around `bot4jax.kernels.risk_nb`.

    config = RiskConfig()                       # every limit, validated, frozen
    clamps = RiskClamps(config)                 # preallocates the parameter and decision records
    fraction, record = clamps.size(p_up=0.56, payoff_ratio=1.1, forecast_vol=0.55,
                                   var_per_unit=0.07, es_per_unit=0.08)
    log.info("risk %s", describe(record))       # which layer bound, and why

`fraction` is the target position as a signed fraction of equity. The formulas of the Kelly proposal
and of each layer, the units of every input and the meaning of the record's fields (`binding`: the
last layer that reduced the size) are in the kernel's module docstring, `kernels/risk_nb.py`.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from bot4jax.errors import ConfigError
from bot4jax.kernels import risk_nb
from bot4jax.kernels.risk_nb import (BINDING_INVALID, BINDING_NONE, INPUT_ORDER, N_LAYERS, PARAMS_DTYPE,
                                     RECORD_DTYPE, risk_clamps_ptr_nb)

LAYER_NAMES = ("calibration_gate", "vol_target", "var_limit", "es_limit", "portfolio_heat",
               "correlation", "leverage", "crisis")

# reason bit -> name; bits 0..7 are the layers (set when that layer reduced the size)
REASON_NAMES = {1 << i: f"{name}_reduced" for i, name in enumerate(LAYER_NAMES)}
REASON_NAMES.update({
    risk_nb.R_INVALID_INPUT: "invalid_input",
    risk_nb.R_NO_KELLY_EDGE: "no_kelly_edge",
    risk_nb.R_SHORT_BLOCKED: "short_blocked",
    risk_nb.R_CORR_CLIPPED: "correlation_clipped",
    risk_nb.R_DRAWDOWN_REDUCE: "drawdown_reduce",
    risk_nb.R_DRAWDOWN_HALT: "drawdown_halt",
    risk_nb.R_VOL_SPIKE: "vol_spike",
    risk_nb.R_VOL_HALT: "vol_halt",
    risk_nb.R_TOXICITY_CAUTIOUS: "toxicity_cautious",
    risk_nb.R_TOXICITY_DEFENSIVE: "toxicity_defensive",
    risk_nb.R_TOXICITY_EXIT: "toxicity_exit",
})

DAYS_PER_YEAR = 365.0  # crypto trades 24/7: every volatility here is annualised over 365 days


@dataclass(frozen=True)
class RiskConfig:
    """Limits of the Kelly proposal and the eight clamp layers, for a crypto spot account.

    All fractions are of account equity. Volatilities are annualised (365-day year) standard deviations
    of log returns. VaR and ES are losses as positive fractions, at the confidence and horizon the
    caller computes them with (the `unit_risk` helper: `var_confidence` over `risk_horizon_days`).
    A cap of `inf` switches its layer off.
    """
    # Kelly proposal
    safety_factor: float = 0.25          # fraction of full Kelly (0.25: quarter-Kelly), in (0, 1]
    allow_short: bool = False            # spot account: long or flat; True gives signed sizes
    # 0 calibration gate
    min_edge: float = 0.02               # trade only when |p - 0.5| >= min_edge, in [0, 0.5]
    # 1 volatility target
    target_vol: float = 0.40             # |x| <= target_vol / forecast_vol (BTC: ~0.5-0.9)
    # 2, 3 tail limits (defaults: 99 %, one day)
    max_var: float = 0.03                # |x| * var_per_unit <= max_var
    max_es: float = 0.04                 # |x| * es_per_unit <= max_es
    # 4 portfolio heat
    max_heat: float = 0.08               # open ES of the other positions + this one's <= max_heat
    # 5 correlation penalty
    corr_penalty: float = 1.0            # |x| *= 1 - corr_penalty * max(0, rho), in [0, 1]
    # 6 leverage cap
    max_leverage: float = 1.0            # gross exposure <= max_leverage (1: spot, no borrowing)
    # 7 crisis override: drawdown from the equity peak
    drawdown_reduce: float = 0.10        # from this drawdown on, size *= drawdown_reduce_scale
    drawdown_reduce_scale: float = 0.5
    drawdown_halt: float = 0.20          # from this drawdown on, size 0 (exit only)
    # 7 crisis override: volatility spike, vol_ratio = forecast / long-run volatility
    vol_spike_ratio: float = 2.0         # from this ratio on, size *= vol_spike_scale
    vol_spike_scale: float = 0.5
    vol_halt_ratio: float = 3.0          # from this ratio on, size 0
    # 7 crisis override: order-flow toxicity (VPIN): normal below toxicity_cautious
    toxicity_cautious: float = 0.2       # cautious: size *= 0.5 (50 % smaller)
    toxicity_cautious_scale: float = 0.5
    toxicity_defensive: float = 0.3      # defensive: size *= 0.2 (80 % smaller)
    toxicity_defensive_scale: float = 0.2
    toxicity_exit: float = 0.4           # exit only: size 0
    # the Gaussian VaR / ES per unit of `RiskClamps.unit_risk` (the kernel does not read these)
    var_confidence: float = 0.99         # in (0.5, 1)
    risk_horizon_days: float = 1.0       # > 0

    def __post_init__(self):
        def fail(name, requirement):
            raise ConfigError(f"risk config field '{name}' {requirement}, got {getattr(self, name)!r}")

        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "allow_short":
                if not isinstance(value, bool):
                    fail(f.name, "must be true or false")
            elif isinstance(value, bool) or not isinstance(value, (int, float)):
                fail(f.name, "must be a number")
            elif not value >= 0:  # also rejects NaN
                fail(f.name, "must be a number >= 0")
        for name in ("safety_factor", "corr_penalty", "drawdown_reduce_scale", "vol_spike_scale",
                     "toxicity_cautious_scale", "toxicity_defensive_scale"):
            if getattr(self, name) > 1:
                fail(name, "must be in [0, 1]")
        if self.safety_factor == 0:
            fail("safety_factor", "must be > 0 (0 never trades)")
        if self.min_edge > 0.5:
            fail("min_edge", "must be in [0, 0.5]")
        if not 0.5 < self.var_confidence < 1:
            fail("var_confidence", "must be in (0.5, 1)")
        if not 0 < self.risk_horizon_days < math.inf:
            fail("risk_horizon_days", "must be > 0 and finite")
        for lo, hi in (("drawdown_reduce", "drawdown_halt"), ("vol_spike_ratio", "vol_halt_ratio"),
                       ("toxicity_cautious", "toxicity_defensive"), ("toxicity_defensive", "toxicity_exit")):
            if getattr(self, lo) > getattr(self, hi):
                fail(lo, f"must be <= '{hi}' ({getattr(self, hi)!r})")


def params_record(config: RiskConfig) -> np.ndarray:
    """The kernel's parameters: a one-element PARAMS_DTYPE array filled from `config` by field name."""
    out = np.zeros(1, PARAMS_DTYPE)
    for name in PARAMS_DTYPE.names:
        out[name] = float(getattr(config, name))
    return out


def decision_record() -> np.ndarray:
    """A one-element RECORD_DTYPE array for the kernel to write into (binding: none yet)."""
    out = np.zeros(1, RECORD_DTYPE)
    out["binding"] = BINDING_NONE
    return out


class RiskClamps:
    """Sizes one decision at a time; holds the kernel's preallocated records (not thread-safe).

    Each call overwrites the same record, so `size` allocates no arrays; copy what you keep
    (`describe(record)` does).
    """

    def __init__(self, config: RiskConfig | None = None):
        self.config = config if config is not None else RiskConfig()
        # The kernel reads and writes these arrays by address: they must live as long as self.
        self._params = params_record(self.config)
        self._records = decision_record()
        self._cfg_address = self._params.ctypes.data
        self._rec_address = self._records.ctypes.data
        self._rec = self._records[0]     # a view: shows each call's result
        self._kernel = risk_clamps_ptr_nb
        z = NormalDist().inv_cdf(self.config.var_confidence)
        horizon = math.sqrt(self.config.risk_horizon_days / DAYS_PER_YEAR)
        self._var_k = z * horizon
        self._es_k = NormalDist().pdf(z) / (1.0 - self.config.var_confidence) * horizon

    def size(self, p_up: float, payoff_ratio: float, forecast_vol: float, var_per_unit: float,
             es_per_unit: float, open_heat: float = 0.0, corr_with_book: float = 0.0,
             gross_exposure: float = 0.0, drawdown: float = 0.0, vol_ratio: float = 1.0,
             toxicity: float = 0.0) -> tuple[float, np.void]:
        """Target position (signed fraction of equity) and the decision record (a view, overwritten
        by the next call).

        p_up: calibrated P(long bet wins), [0, 1]. payoff_ratio: average win / average loss, > 0.
        forecast_vol: annualised volatility forecast (`annualised_vol`), > 0. var_per_unit,
        es_per_unit: VaR / ES of a 100 %-of-equity position as loss fractions, > 0 (`unit_risk`).
        open_heat: summed ES of the other positions; corr_with_book: their exposure-weighted
        correlation with this asset (`book_correlation`); gross_exposure: their summed |weight|.
        drawdown: fraction below the equity peak; vol_ratio: forecast / long-run volatility;
        toxicity: VPIN in [0, 1], 0 when not measured. NaN, inf or out-of-range inputs give 0 with
        `binding` BINDING_INVALID and the `invalid` bitmask naming them (see `describe`).
        """
        fraction = self._kernel(self._cfg_address, p_up, payoff_ratio, forecast_vol, var_per_unit,
                                es_per_unit, open_heat, corr_with_book, gross_exposure, drawdown, vol_ratio,
                                toxicity, self._rec_address)
        return fraction, self._rec

    def unit_risk(self, forecast_vol: float) -> tuple[float, float]:
        """Gaussian (VaR, ES) of a 100 %-of-equity position from an annualised volatility.

        sigma_h = forecast_vol * sqrt(risk_horizon_days / 365); VaR = z_c * sigma_h and
        ES = phi(z_c) / (1 - c) * sigma_h at c = var_confidence, zero mean. The normal law
        understates crypto's tails: pass Student-t, historical or Monte Carlo figures when you have them.
        """
        return self._var_k * forecast_vol, self._es_k * forecast_vol


def annualised_vol(bar_variance: float, bars_per_year: float) -> float:
    """sqrt(h * bars_per_year): a per-bar variance of decimal log returns (not percent) annualised.

    `bot4jax.data.timeframes.periods_per_year(timeframe)` gives bars_per_year for a 24/7 market.
    """
    return math.sqrt(bar_variance * bars_per_year)


def book_correlation(weights: np.ndarray, corr: np.ndarray) -> float:
    """Exposure-weighted correlation of a new asset with the open book.

    rho = sum_i w_i * rho_i / sum_i |w_i| over the other positions i (weights: signed fractions of
    equity, shape (n,); corr: the new asset's row of the DCC correlation matrix at those assets,
    shape (n,)). A short position contributes -rho_i. An empty book gives 0.
    """
    weights = np.asarray(weights, np.float64)
    gross = float(np.abs(weights).sum())
    if gross == 0.0:
        return 0.0
    return float(np.dot(weights, np.asarray(corr, np.float64)) / gross)


def _names(mask: int, table: dict) -> list[str]:
    return [name for bit, name in sorted(table.items()) if mask & bit]


def describe(record) -> dict:
    """A decision record (RECORD_DTYPE, a record or a one-element array) as a plain dict for logs."""
    r = record[0] if isinstance(record, np.ndarray) else record
    binding = int(r["binding"])
    if binding == BINDING_NONE:
        bound = "none"
    elif binding == BINDING_INVALID:
        bound = "invalid_input"
    else:
        bound = LAYER_NAMES[binding]
    reasons, invalid = int(r["reasons"]), int(r["invalid"])
    sizes = r["sizes"]
    return {
        "final": float(r["final"]),
        "kelly": float(r["kelly"]),
        "proposal": float(r["proposal"]),
        "sizes": {LAYER_NAMES[i]: float(sizes[i]) for i in range(N_LAYERS)},
        "binding": bound,
        "reduced_by": [LAYER_NAMES[i] for i in range(N_LAYERS) if reasons & (1 << i)],
        "reasons": _names(reasons, REASON_NAMES),
        "invalid_inputs": [INPUT_ORDER[k] for k in range(len(INPUT_ORDER)) if invalid & (1 << k)],
    }
