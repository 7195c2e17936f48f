"""Seeded market simulator: bars, trades and L2 books with the stylized facts of a crypto market.

`simulate(n_bars, timeframe, seed, **overrides) -> SimulatedMarket` is bot4jax's offline data source.
Everything is drawn from one `numpy.random.Generator` tree seeded by `seed` (three independent child
streams: latent paths, trade tape, book), so the same seed gives identical arrays and changing a book
parameter leaves the price path as it was.

The model, per bar t = 0..n-1 of length Δ (ms), with D = Δ / 1 day:

Latent paths (this module)
    regime      s_t ∈ {0 calm, 1 turbulent}, Markov: P(0→1) = Δ / calm_mean, P(1→0) = Δ / turbulent_mean
                (each at most 1), s_{-1} drawn from the stationary distribution
    signal      x_t = φ x_{t-1} + sqrt(1 - φ²) η_t,          η_t ~ N(0, 1), x_{-1} ~ N(0, 1)   (Var x = 1)
    shock       u_t = k0 x_t + k1 x_{t-1} + c z_t,           z_t ~ Student-t(ν) / sqrt(ν / (ν - 2)),
                c = sqrt(1 - k0² - k1² - 2 k0 k1 φ)          so Var u_t = 1
    GARCH(1,1)  h_{t+1} = ω + α h_t u_t² + β h_t,            ω = 1 - α - β, h_0 = 1   (E h = 1)
    season      w(τ) = 1 + a_eu g(τ - τ_eu) + a_us g(τ - τ_us), g = circular Gaussian bump of width b
                hours, τ = UTC hour of the bar, normalised so its mean over a day is 1
    variance    σ_t² = σ̄² · h_t · m_{s_t} / E[m] · w(τ_t)^(2 p_w),   σ̄² = daily_vol² · D,
                m = (1, turbulent_var_mult), E[m] under the stationary regime distribution
    jumps       N_t ~ Poisson(jumps_per_day · D · (1 or turbulent_jump_mult)),
                J_t ~ N(N_t · jump_mean, N_t · jump_scale²), at one uniform time inside the bar
    log mid     L_t = L_{t-1} + μ_{s_t} D + σ_t u_t + J_t,   L_{-1} = log price0

So the informed signal moves the price partly in its own bar (k0) and partly in the next (k1), the
order flow of bar t (driven by x_t, below) predicts r_{t+1} through k1 + k0 φ, and returns inherit a
small positive autocorrelation k0² φ + k0 k1 (1 + φ²) + k1² φ from the persistence of x.

Trade tape and book (simulator_book)
    intensity   λ_t = trades_per_minute · Δ/1 min · f_t / mean(f),  f_t = w(τ_t) · (σ_t^{ns} / σ̄)^κ,
                σ^{ns} = σ_t without the season factor
    orders      O_t ~ Poisson(λ_t / (1 + e)) market orders at uniform times in the bar, each filled in
                1 + Poisson(e) trades that share its millisecond, side and price (e = fills_extra)
    side        P(buy | bar t) = (1 + tanh(γ x_t)) / 2
    mid path    Brownian bridge from L_{t-1} to L_t - J_t with scale σ_t, plus J_t after the jump time
    spread      half spread q_t = half_spread_bps · 1e-4 · (σ_t / σ̄)^ψ (fraction of the mid);
                ask = ceil(mid (1 + q) / tick) tick, bid = floor(mid (1 - q) / tick) tick
    trade       price = ask for a buy, bid for a sell (bid-ask bounce); amount = size_scale · Pareto(size_tail)
    bars        open/high/low/close/volume of the trades in each bar; an empty bar is flat at the previous close
    book        at each bar close: touch from the end-of-bar mid and q_t, further levels a geometric
                number of ticks apart, sizes depth_size · (1 + depth_growth k) · lognormal noise ·
                exp(±θ x_t) (bids +, asks -: depth leans with the informed flow) · (σ_t / σ̄)^-ε
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from bot4jax.data.simulator_book import bars_from_trades, book_snapshots, trade_tape
from bot4jax.data.timeframes import timeframe_ms
from bot4jax.data.types import Bars, Book, Trades, validate
from bot4jax.errors import ConfigError

DAY_MS = 86_400_000
HOUR_MS = 3_600_000


@dataclass(frozen=True)
class SimulatorParams:
    """Every knob of the simulator, with defaults that look like a liquid BTC/USDT market on 1m bars.

    Rates and durations are per unit of time (so other timeframes stay sensible); GARCH and informed-flow
    coefficients are per bar.
    """

    start_ms: int = 1_704_067_200_000
    """Open time of the first bar, ms since the epoch UTC (default 2024-01-01 00:00)."""
    price0: float = 42_000.0
    """Mid price before the first bar (quote currency)."""
    tick_size: float = 0.5
    """Price grid of quotes and trades (quote currency)."""
    lot_size: float = 1e-5
    """Amount grid of trades and book sizes (base currency)."""

    daily_vol: float = 0.03
    """Standard deviation of the diffusive daily log return (jumps come on top)."""
    garch_alpha: float = 0.06
    """GARCH(1,1) α per bar: weight of the last squared standardised shock."""
    garch_beta: float = 0.92
    """GARCH(1,1) β per bar: weight of the last variance; α + β < 1 (persistence)."""
    t_dof: float = 5.0
    """Degrees of freedom ν of the Student-t innovations (ν > 2; lower = fatter tails)."""

    turbulent_var_mult: float = 3.0
    """Variance multiplier of the turbulent regime relative to the calm one."""
    calm_mean_hours: float = 36.0
    """Mean duration of a calm spell, hours."""
    turbulent_mean_hours: float = 6.0
    """Mean duration of a turbulent spell, hours."""
    drift_calm_per_day: float = 0.001
    """Log drift per day in the calm regime."""
    drift_turbulent_per_day: float = -0.003
    """Log drift per day in the turbulent regime."""

    jumps_per_day: float = 2.0
    """Poisson rate of price jumps per day in the calm regime."""
    turbulent_jump_mult: float = 3.0
    """Jump rate multiplier in the turbulent regime."""
    jump_mean: float = 0.0
    """Mean log size of one jump."""
    jump_scale: float = 0.004
    """Standard deviation of the log size of one jump."""

    signal_phi: float = 0.5
    """AR(1) coefficient φ per bar of the informed-flow signal x_t (its persistence)."""
    signal_impact_now: float = 0.10
    """k0: loading of the bar's standardised shock on x_t (price moves with the flow in the same bar)."""
    signal_impact_next: float = 0.18
    """k1: loading on x_{t-1} (the part of the information that reaches the price one bar later)."""
    signal_flow: float = 0.5
    """γ: aggressor-side tilt, P(buy) = (1 + tanh(γ x_t)) / 2."""

    trades_per_minute: float = 20.0
    """Average number of trades per minute (over the whole run)."""
    fills_extra: float = 0.25
    """Mean number of extra fills per market order (fills share the order's millisecond)."""
    intensity_vol_elasticity: float = 1.0
    """κ: trade intensity ∝ (volatility / its average)^κ."""
    size_scale: float = 0.005
    """Minimum trade amount of the Pareto size law (base currency)."""
    size_tail: float = 1.8
    """Pareto tail index of trade amounts (> 1; below 2 the variance is infinite, as in real tapes)."""

    season_eu_amp: float = 0.6
    """Height of the European-hours bump of activity (relative to the night floor of 1)."""
    season_eu_hour: float = 8.5
    """UTC hour of the European peak."""
    season_us_amp: float = 1.0
    """Height of the US-hours bump of activity."""
    season_us_hour: float = 14.5
    """UTC hour of the US peak."""
    season_width_hours: float = 2.5
    """Standard deviation (hours) of each bump."""
    season_vol_power: float = 0.25
    """p_w: volatility ∝ w(τ)^p_w (activity and volatility share the daily pattern)."""

    half_spread_bps: float = 0.75
    """Half spread at average volatility, basis points of the mid."""
    spread_vol_elasticity: float = 1.0
    """ψ: half spread ∝ (volatility / its average)^ψ."""
    levels: int = 10
    """Price levels per side in each book snapshot."""
    level_gap_ticks: float = 2.0
    """Mean distance between neighbouring book levels, ticks (at least 1)."""
    depth_size: float = 0.5
    """Mean size at the touch (base currency)."""
    depth_growth: float = 0.3
    """Relative growth of the mean level size per level away from the touch."""
    depth_noise: float = 0.5
    """Standard deviation of the lognormal noise on each level's size."""
    depth_signal_tilt: float = 0.3
    """θ: bid sizes × exp(θ x_t), ask sizes × exp(-θ x_t)."""
    depth_vol_elasticity: float = 0.5
    """Book sizes ∝ (volatility / its average)^-elasticity (liquidity thins when volatility rises)."""

    def __post_init__(self):
        positive = ("price0", "tick_size", "lot_size", "daily_vol", "turbulent_var_mult", "calm_mean_hours",
                    "turbulent_mean_hours", "turbulent_jump_mult", "trades_per_minute", "size_scale",
                    "season_width_hours", "half_spread_bps", "depth_size")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ConfigError(f"simulator parameter {name} must be > 0, got {getattr(self, name)!r}")
        non_negative = ("jumps_per_day", "jump_scale", "fills_extra", "season_eu_amp", "season_us_amp",
                        "garch_alpha", "garch_beta", "depth_growth", "depth_noise")
        for name in non_negative:
            if not getattr(self, name) >= 0:
                raise ConfigError(f"simulator parameter {name} must be >= 0, got {getattr(self, name)!r}")
        if not self.garch_alpha + self.garch_beta < 1:
            raise ConfigError(f"simulator needs garch_alpha + garch_beta < 1 (stationary variance), got "
                              f"{self.garch_alpha} + {self.garch_beta}")
        if not self.t_dof > 2:
            raise ConfigError(f"simulator parameter t_dof must be > 2 (finite variance), got {self.t_dof!r}")
        if not -1 < self.signal_phi < 1:
            raise ConfigError(f"simulator parameter signal_phi must be in (-1, 1), got {self.signal_phi!r}")
        if not self.size_tail > 1:
            raise ConfigError(f"simulator parameter size_tail must be > 1 (finite mean), got {self.size_tail!r}")
        if self.signal_variance() >= 1:
            raise ConfigError("simulator signal_impact_now / signal_impact_next too large: the signal would "
                              f"explain {self.signal_variance():.2f} >= 1 of the return variance")
        if int(self.levels) != self.levels or self.levels < 1:
            raise ConfigError(f"simulator parameter levels must be a positive integer, got {self.levels!r}")
        if self.level_gap_ticks < 1:
            raise ConfigError(f"simulator parameter level_gap_ticks must be >= 1, got {self.level_gap_ticks!r}")
        if self.price0 < 1000 * self.tick_size:
            raise ConfigError(f"simulator price0 {self.price0} must be at least 1000 ticks of {self.tick_size}")

    def signal_variance(self) -> float:
        """Share of Var u_t explained by the signal: k0² + k1² + 2 k0 k1 φ."""
        k0, k1 = self.signal_impact_now, self.signal_impact_next
        return k0 * k0 + k1 * k1 + 2 * k0 * k1 * self.signal_phi


@dataclass(frozen=True, eq=False)
class SimulatorTruth:
    """The latent paths behind a simulated market, one value per bar unless noted (shape (n,))."""

    variance: np.ndarray
    """σ_t²: conditional variance of the bar's diffusive log return (GARCH × regime × season)."""
    garch_h: np.ndarray
    """h_t: GARCH(1,1) state, mean 1 (before regime and season scaling)."""
    regime: np.ndarray
    """s_t (int8): 0 calm, 1 turbulent."""
    jump: np.ndarray
    """J_t: log size of the jump inside the bar, 0 where none."""
    jump_ts: np.ndarray
    """Time of each jump, ms (int64, shape (number of jump bars,))."""
    signal: np.ndarray
    """x_t: informed-flow signal (AR(1), unit variance)."""
    imbalance: np.ndarray
    """Order-flow imbalance of the bar's trades, Σ side·amount / Σ amount in [-1, 1]; 0 with no trade."""
    intensity: np.ndarray
    """λ_t: expected number of trades in the bar."""
    mid: np.ndarray
    """Mid price at the bar's close (exp L_t)."""
    half_spread: np.ndarray
    """q_t: half spread as a fraction of the mid."""


@dataclass(frozen=True, eq=False)
class SimulatedMarket:
    """What `simulate` returns: validated bars, trades and books, the latent truth and the inputs."""

    bars: Bars
    trades: Trades
    book: Book
    truth: SimulatorTruth
    params: SimulatorParams
    timeframe: str
    seed: int


def season_weight(ts_ms: np.ndarray, p: SimulatorParams) -> np.ndarray:
    """w(τ) at each timestamp: 1 + two circular Gaussian bumps in the UTC hour τ, mean 1 over a day."""

    def raw(hours):
        w = np.ones_like(hours)
        for amp, peak in ((p.season_eu_amp, p.season_eu_hour), (p.season_us_amp, p.season_us_hour)):
            d = (hours - peak + 12.0) % 24.0 - 12.0  # signed distance on the 24 h circle
            w = w + amp * np.exp(-0.5 * (d / p.season_width_hours) ** 2)
        return w

    grid = (np.arange(1440) + 0.5) / 60.0
    hours = (np.asarray(ts_ms, np.int64) % DAY_MS) / HOUR_MS
    return raw(hours) / raw(grid).mean()


def _latent_paths(n: int, dt_ms: int, p: SimulatorParams, rng: np.random.Generator):
    """Regime, signal, GARCH state and standardised shocks (the only sequential part, one pass)."""
    nu = p.t_dof
    z = rng.standard_t(nu, n) / math.sqrt(nu / (nu - 2.0))
    eta = rng.standard_normal(n + 1)
    coin = rng.random(n + 1)

    p01 = min(1.0, dt_ms / (p.calm_mean_hours * HOUR_MS))
    p10 = min(1.0, dt_ms / (p.turbulent_mean_hours * HOUR_MS))
    phi, k0, k1 = p.signal_phi, p.signal_impact_now, p.signal_impact_next
    c = math.sqrt(1.0 - p.signal_variance())
    sq = math.sqrt(1.0 - phi * phi)
    alpha, beta = p.garch_alpha, p.garch_beta
    omega = 1.0 - alpha - beta

    # Python floats in the loop: about 10x faster than indexing NumPy scalars.
    z_l, eta_l, coin_l = z.tolist(), eta.tolist(), coin.tolist()
    s = 1 if coin_l[n] < p01 / (p01 + p10) else 0  # start from the stationary regime distribution
    x_prev, h_t = eta_l[n], 1.0
    reg_l, x_l, h_l, u_l = [0] * n, [0.0] * n, [0.0] * n, [0.0] * n
    for t in range(n):
        if coin_l[t] < (p10 if s else p01):
            s = 1 - s
        x_t = phi * x_prev + sq * eta_l[t]
        u_t = k0 * x_t + k1 * x_prev + c * z_l[t]
        reg_l[t], x_l[t], h_l[t], u_l[t] = s, x_t, h_t, u_t
        h_t = omega + alpha * h_t * u_t * u_t + beta * h_t
        x_prev = x_t
    return np.array(reg_l, np.int8), np.array(x_l), np.array(h_l), np.array(u_l)


def _overrides(params: SimulatorParams | None, overrides: dict) -> SimulatorParams:
    base = params or SimulatorParams()
    known = {f.name for f in dataclasses.fields(SimulatorParams)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(f"unknown simulator parameter(s) {unknown}; known: {sorted(known)}")
    return dataclasses.replace(base, **overrides) if overrides else base


def _bar_paths(n: int, dt_ms: int, p: SimulatorParams, rng: np.random.Generator) -> dict:
    """Every per-bar latent path, shape (n,): the equations of the module docstring."""
    regime, x, h, u = _latent_paths(n, dt_ms, p, rng)
    day = dt_ms / DAY_MS
    bar_open = p.start_ms + dt_ms * np.arange(n, dtype=np.int64)
    w = season_weight(bar_open + dt_ms // 2, p)
    pi_turb = p.turbulent_mean_hours / (p.calm_mean_hours + p.turbulent_mean_hours)  # stationary P(s = 1)
    regime_mult = np.where(regime == 1, p.turbulent_var_mult, 1.0) / (1.0 + pi_turb * (p.turbulent_var_mult - 1.0))
    var_ns = p.daily_vol ** 2 * day * h * regime_mult  # without the daily season
    variance = var_ns * w ** (2.0 * p.season_vol_power)
    sigma = np.sqrt(variance)
    sigma_bar = p.daily_vol * math.sqrt(day)

    n_jumps = rng.poisson(p.jumps_per_day * day * np.where(regime == 1, p.turbulent_jump_mult, 1.0))
    jump = np.where(n_jumps > 0, n_jumps * p.jump_mean + np.sqrt(n_jumps) * p.jump_scale * rng.standard_normal(n),
                    0.0)
    jump_frac = rng.random(n)  # where in the bar the jump happens, fraction of Δ
    drift = np.where(regime == 1, p.drift_turbulent_per_day, p.drift_calm_per_day) * day
    diffusive = drift + sigma * u
    f = w * (np.sqrt(var_ns) / sigma_bar) ** p.intensity_vol_elasticity
    return dict(bar_open=bar_open, regime=regime, signal=x, garch_h=h, variance=variance, sigma=sigma,
                vol_ratio=sigma / sigma_bar, jump=jump, jump_frac=jump_frac, has_jump=n_jumps > 0,
                diffusive=diffusive, log_mid=math.log(p.price0) + np.cumsum(diffusive + jump),
                intensity=p.trades_per_minute * (dt_ms / 60_000) * f / f.mean(),
                half_spread=p.half_spread_bps * 1e-4 * (sigma / sigma_bar) ** p.spread_vol_elasticity)


def simulate(n_bars: int = 43_200, timeframe: str = "1m", seed: int = 0,
             params: SimulatorParams | None = None, **overrides) -> SimulatedMarket:
    """Simulate `n_bars` bars of `timeframe` from `seed`; keyword overrides replace SimulatorParams fields.

    Returns a SimulatedMarket whose bars (n,), trades (number of trades,) and book (n, levels) pass
    `bot4jax.data.types.validate` (checked here: a DataError means parameters that break the prices).
    Bar timestamps are open times start_ms + i Δ; book snapshots are taken at each bar's last
    millisecond (open + Δ - 1), with the end-of-bar mid. The default (30 days of 1m bars, ~860k
    trades) takes well under a second.
    """
    p = _overrides(params, overrides)
    try:
        dt_ms = timeframe_ms(timeframe)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    n = int(n_bars)
    if n < 1:
        raise ConfigError(f"simulate needs n_bars >= 1, got {n_bars!r}")
    # Independent streams: book or tape parameters never change the price path of a seed.
    rng_latent, rng_tape, rng_book = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))

    b = _bar_paths(n, dt_ms, p, rng_latent)
    trades = trade_tape(rng_tape, p, bar_open=b["bar_open"], dt_ms=dt_ms, log_mid=b["log_mid"],
                        diffusive=b["diffusive"], jump=b["jump"], jump_frac=b["jump_frac"], sigma=b["sigma"],
                        intensity=b["intensity"], half_spread=b["half_spread"], signal=b["signal"])
    bars, imbalance = bars_from_trades(trades, p.start_ms, dt_ms, n, _tick_round(p.price0, p.tick_size))
    mid = np.exp(b["log_mid"])
    book = book_snapshots(rng_book, p, ts=b["bar_open"] + (dt_ms - 1), mid=mid, half_spread=b["half_spread"],
                          signal=b["signal"], vol_ratio=b["vol_ratio"])
    source = f"simulate(seed={seed}, timeframe={timeframe})"
    for data in (bars, trades, book):  # the contract; cheap (~15 ms for a month of 1m bars)
        validate(data, source)
    jumped = b["has_jump"]
    truth = SimulatorTruth(
        variance=b["variance"], garch_h=b["garch_h"], regime=b["regime"], jump=b["jump"],
        jump_ts=b["bar_open"][jumped] + (b["jump_frac"][jumped] * dt_ms).astype(np.int64),
        signal=b["signal"], imbalance=imbalance, intensity=b["intensity"], mid=mid, half_spread=b["half_spread"])
    return SimulatedMarket(bars=bars, trades=trades, book=book, truth=truth, params=p, timeframe=timeframe,
                           seed=seed)


def _tick_round(price: float, tick: float) -> float:
    return max(1, round(price / tick)) * tick
