"""Market microstructure features (batch, JAX float64): 21 order-flow, liquidity and variation measures,
VPIN toxicity, and the toxicity regimes of the risk layer.

    from bot4jax.features.microstructure import roll_spread, kyle_lambda, vpin, all_features

Modules, one job each: `spreads` (Roll, Corwin-Schultz, Abdi-Ranaldo, quoted, effective, realized),
`impact` (Kyle, Hasbrouck, Amihud), `flow` (order flow imbalance, trade flow imbalance, depth
imbalance, microprice, trade intensity), `variance` (realized variance, bipower variation, noise
variance, variance ratio), `decomposition` (Huang-Stoll three-way spread decomposition),
`information_share` (Hasbrouck 1995), `vpin` (bulk volume classification, VPIN, toxicity regimes),
`catalog` (the registry FEATURES and `all_features` on a bar grid), `sim` (ground-truth market models
for the tests). The streaming twins of VPIN, order flow imbalance, rolling Kyle's lambda and depth
imbalance are the Numba kernels in `bot4jax.kernels.microstructure_nb`.

Each function takes NumPy or JAX vectors (n,) (book columns (n,) or (n, levels)) and returns float64
JAX arrays; window sizes are static (a new value compiles once). Estimators give one value over the
sample with window=None and a rolling (n,) array with an int window; NaN marks what is not defined.
"""
from bot4jax.features.microstructure.catalog import COLUMNS, FEATURES, N_FEATURES, Feature, all_features
from bot4jax.features.microstructure.decomposition import SpreadDecomposition, spread_decomposition
from bot4jax.features.microstructure.flow import (
    depth_imbalance, microprice, ofi_events, order_flow_imbalance, trade_flow_imbalance, trade_intensity,
)
from bot4jax.features.microstructure.impact import (
    amihud_illiquidity, hasbrouck_lambda, kyle_lambda, signed_root_dollar_volume,
)
from bot4jax.features.microstructure.information_share import InformationShare, information_share
from bot4jax.features.microstructure.spreads import (
    abdi_ranaldo_spread, corwin_schultz_spread, effective_spread, quoted_spread, realized_spread, roll_spread,
)
from bot4jax.features.microstructure.variance import (
    bipower_variation, noise_variance, realized_variance, variance_ratio,
)
from bot4jax.features.microstructure.vpin import (
    TOXICITY_REGIMES, VPINBuckets, bvc_buy_fraction, student_t_cdf, toxicity_regime, vpin, vpin_buckets,
)

__all__ = [
    "COLUMNS", "FEATURES", "N_FEATURES", "Feature", "InformationShare", "SpreadDecomposition",
    "TOXICITY_REGIMES", "VPINBuckets", "abdi_ranaldo_spread", "all_features", "amihud_illiquidity",
    "bipower_variation", "bvc_buy_fraction", "corwin_schultz_spread", "depth_imbalance", "effective_spread",
    "hasbrouck_lambda", "information_share", "kyle_lambda", "microprice", "noise_variance", "ofi_events",
    "order_flow_imbalance", "quoted_spread", "realized_spread", "realized_variance", "roll_spread",
    "signed_root_dollar_volume", "spread_decomposition", "student_t_cdf", "toxicity_regime",
    "trade_flow_imbalance", "trade_intensity", "variance_ratio", "vpin", "vpin_buckets",
]
