"""Typed, frozen configuration trees, loaded from TOML and overridden field by field from the CLI.

Each section is a frozen dataclass; the defaults run offline on the simulator. `from_dict` builds a
tree from nested dicts (as TOML gives them) and rejects unknown keys and wrong types with a
ConfigError that names the key, so a typo in a config file never passes silently.
"""
from __future__ import annotations

import dataclasses
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path

from bot4jax.errors import ConfigError
from bot4jax.live.breakers import BreakerConfig
from bot4jax.risk.sizing import RiskConfig


@dataclass(frozen=True)
class DataConfig:
    path: str = ""                 # a market data file; empty: the built-in simulator
    symbol: str = "SIM/USDT"       # label only for files and the simulator
    timeframe: str = "1m"
    repair: bool = False           # drop bad rows (and report them) instead of failing
    sim_bars: int = 43_200         # simulator length: 30 days of 1m bars
    sim_seed: int = 7


@dataclass(frozen=True)
class LabelConfig:
    horizon: int = 1               # bars ahead; label = 1 if close[t + horizon] > close[t] else 0


@dataclass(frozen=True)
class FeatureConfig:
    order_flow: bool = True        # add the signed-volume features when the data has trades (the
                                   # simulator); candle files have none, and then they are left out
    flow_span: int = 5             # EMA span (bars) of the order-flow imbalance


@dataclass(frozen=True)
class ModelConfig:
    """The MLP member (and the one-network baseline): one tanh hidden layer."""
    hidden: int = 8                # small on purpose: bar features carry little signal, big nets fit noise
    learning_rate: float = 1e-2
    weight_decay: float = 1e-2
    epochs: int = 40
    batch_size: int = 256
    patience: int = 5              # epochs without validation improvement before stopping
    features: str = "flow_imb,flow_imb_ema"  # comma-separated feature names this member sees (empty:
                                   # all); flow names on data without trades fall back to all


@dataclass(frozen=True)
class LogisticConfig:
    """The penalised logistic member (scikit-learn's objective; see bot4jax.models.logistic)."""
    C: float = 0.01                # inverse penalty strength: firm, since most bar features are noise
    l1_ratio: float = 0.0          # 0: ridge, 1: lasso
    features: str = ""             # comma-separated feature names; empty: all


@dataclass(frozen=True)
class LSTMConfig:
    """The attention LSTM member (bot4jax.models.attention_lstm). Small on purpose: it is fitted once
    per CPCV split on 2 CPU cores."""
    hidden: int = 16
    heads: int = 8
    window: int = 8                # rows the attention reads
    burn_in: int = 8               # rows before the window that warm the LSTM state up
    epochs: int = 10
    batch_size: int = 256
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    patience: int = 3
    max_train: int = 12_000        # training windows per fit, evenly spaced over the training rows
    features: str = "flow_imb"     # the order-flow sequence (all features on data without trades)


@dataclass(frozen=True)
class CVConfig:
    """Combinatorial purged CV over the development span (everything before the test span)."""
    n_groups: int = 6              # N contiguous groups
    n_test_groups: int = 2         # k test groups per split: C(N, k) splits, C(N-1, k-1) backtest paths
    embargo: float = 0.01          # fraction of the samples dropped after each test group
    blend_folds: int = 5           # purged K-fold over each path that cross-fits the learned blends
    uniqueness: bool = True        # weight samples by label uniqueness
    time_decay: float = 1.0        # weight of the oldest sample relative to the newest (1: no decay)


@dataclass(frozen=True)
class EnsembleConfig:
    members: str = "logistic,mlp,lstm"   # any of logistic, mlp, lstm
    modes: str = "stacking,blending,voting,bma,dynamic"  # blend modes evaluated; the best by
                                   # out-of-fold log loss is the one saved
    stack_C: float = 1.0           # meta logistic penalty (stacking, blending)
    holdout_fraction: float = 0.3  # blending: the latest fraction of rows the meta model is fitted on
    voting: str = "optimized"      # soft, hard, or optimized (simplex weights)
    bma_temperature: float = 1.0   # w ∝ exp(out-of-fold log-likelihood / T)
    dynamic_window: int = 500      # dynamic: rolling window of resolved outcomes
    dynamic_temperature: float = 1.0
    importance_rows: int = 2000    # test rows per split for permutation importance (0: all)


@dataclass(frozen=True)
class CalibrationConfig:
    regimes: int = 0               # 0: one isotonic map; >= 2: one per tercile/quantile regime of
                                   # regime_feature, falling back to the global map when thin
    regime_feature: str = "bb_width"
    min_count: int = 500           # rows a regime needs for its own map
    clip: float = 1e-3             # calibrated probabilities are kept in [clip, 1 - clip]


@dataclass(frozen=True)
class SentinelConfig:
    enabled: bool = True
    folds: int = 4                 # purged K-fold of the shuffled-outcome refit
    block: int = 500               # rows per shuffle block
    n_shuffles: int = 1
    threshold: float = 0.1         # |per-row Sharpe| of a clean pipeline stays below this


@dataclass(frozen=True)
class EvalConfig:
    test_fraction: float = 0.3     # the last part of the data, never seen in training
    val_fraction: float = 0.25     # the last part of each training set, for early stopping (large:
                                   # with a weak signal a short block makes the stopping epoch noise)
    fee_bps: float = 7.5           # per side, on traded notional
    slippage_bps: float = 2.5
    min_edge: float = 0.05         # long when p_up > 0.5 + min_edge, flat otherwise


@dataclass(frozen=True)
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    label: LabelConfig = field(default_factory=LabelConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    logistic: LogisticConfig = field(default_factory=LogisticConfig)
    lstm: LSTMConfig = field(default_factory=LSTMConfig)
    cv: CVConfig = field(default_factory=CVConfig)
    ensemble: EnsembleConfig = field(default_factory=EnsembleConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    sentinel: SentinelConfig = field(default_factory=SentinelConfig)
    seed: int = 0
    out: str = "experiments/runs"
    checkpoints: str = "checkpoints"
    quick: bool = False


@dataclass(frozen=True)
class LiveConfig:
    replay: str = ""               # a market data file; empty (and no exchange): the simulator
    model: str = ""                # a train run directory or checkpoint; empty: newest in the store
    checkpoints: str = "checkpoints"
    out: str = "experiments/runs"
    speed: str = "max"             # "max", or a multiple of real time such as "60"
    exchange: str = ""             # a ccxt exchange id: paper trading on its live market data
    symbol: str = "BTC/USDT"
    timeframe: str = "1m"
    api_url: str = ""              # override the venue's REST base URL (testnets, local servers)
    ws_url: str = ""               # override the venue's websocket base URL
    websocket: bool = True         # market data over the venue's websocket when it has one, else REST polling
    live: bool = False             # send real orders (needs API keys in the environment)
    journal: str = ""              # order journal (SQLite); empty: state/<exchange>_<symbol>.sqlite with
                                   # --live (kept across runs: reconciled at every start), else in the run dir
    reset_halt: bool = False       # clear a sticky drawdown / daily-loss halt left by an earlier run
    metrics_port: int = 0          # serve Prometheus metrics on 127.0.0.1:<port> (0: off)
    surveillance: bool = False     # watch the venue's public trades for manipulation (with --exchange)
    surveillance_pause_s: float = 300.0  # after a high or critical alert: no new exposure for this long
    repair: bool = False
    sim_bars: int = 5_000
    sim_seed: int = 11
    initial_cash: float = 10_000.0
    rebalance_band: float = 0.02   # trade only when the target moves this far (fraction of equity)
    fee_bps: float = 7.5           # simulated venue: taker fee per side
    maker_fee_bps: float = 2.0     # simulated venue: maker fee (resting limit orders)
    slippage_bps: float = 2.5      # simulated venue: taker orders fill this far beyond the next price
    latency_ms: int = 0            # simulated venue: an order becomes active this long after it is sent
    participation: float = 0.25    # simulated venue: at most this share of a bar's volume fills our orders
    max_position: float = float("inf")   # pre-trade check: largest position, base currency
    max_notional: float = float("inf")   # pre-trade check: largest order notional, quote currency
    vpin_buckets: int = 50         # VPIN volume buckets per day of the market's volume
    vpin_window: int = 50          # VPIN averages over this many buckets
    max_bars: int = 0              # stop after this many bars (0: until the data or Ctrl-C ends it)
    poll_seconds: float = 5.0      # REST polling interval for paper trading
    risk: RiskConfig = field(default_factory=RiskConfig)  # Kelly sizing and the eight clamp layers
    breakers: BreakerConfig = field(default_factory=BreakerConfig)  # circuit breakers


def _check_type(key: str, value, hint):
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ConfigError(f"config key '{key}': expected {hint.__name__}, got {value!r}")
    return value


def from_dict(cls, values: dict, prefix: str = ""):
    """Build the dataclass `cls` from nested dicts; unknown keys and wrong types raise ConfigError."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise ConfigError(f"unknown config key(s) {sorted(prefix + k for k in unknown)}; "
                          f"known in this section: {sorted(names)}")
    kwargs = {}
    for key, value in values.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise ConfigError(f"config key '{prefix}{key}' is a section, got {value!r}")
            kwargs[key] = from_dict(hint, value, f"{prefix}{key}.")
        else:
            kwargs[key] = _check_type(prefix + key, value, hint)
    return cls(**kwargs)


def to_dict(config) -> dict:
    return dataclasses.asdict(config)


def merge(base: dict, overrides: dict) -> dict:
    """Deep-merge `overrides` into `base` (both nested dicts); dotted keys address nested fields."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    for key, value in overrides.items():
        head, _, rest = key.partition(".")
        if rest:
            out[head] = merge(out.get(head, {}), {rest: value})
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def load(cls, path: str | Path | None = None, overrides: dict | None = None):
    """Defaults of `cls`, then the TOML file at `path`, then `overrides` (dotted keys from flags)."""
    values: dict = {}
    if path:
        try:
            values = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config file {path}: {e}") from None
    values = merge(values, {k: v for k, v in (overrides or {}).items() if v is not None})
    return from_dict(cls, values)


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    raise TypeError(f"cannot write {v!r} to TOML")


def dumps(config) -> str:
    """TOML text of a config tree (scalars at the top, then one table per section)."""
    def write(d: dict, prefix: str) -> list[str]:
        lines = [f"{k} = {_toml_value(v)}" for k, v in d.items() if not isinstance(v, dict)]
        for k, v in d.items():
            if isinstance(v, dict):
                lines += ["", f"[{prefix}{k}]"] + write(v, f"{prefix}{k}.")
        return lines
    return "\n".join(write(to_dict(config), "")) + "\n"
