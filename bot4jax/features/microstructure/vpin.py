"""VPIN: volume-synchronised probability of informed trading with bulk volume classification
(Easley, Lopez de Prado and O'Hara 2012, Rev. Financ. Stud. 25(5)), and the toxicity regimes.

Bulk volume classification. Observation i (a bar or a trade) has price p_i and volume v_i. Its
price change dp_i = p_i - p_{i-1} (dp_0 = 0) is standardised by the root mean square of the last
`sigma_window` changes up to and including it (fewer at the start; the first observation has none):

    s_i^2 = mean(dp_j^2, j = max(1, i - W + 1) .. i),    z_i = dp_i / s_i   (0 when s_i = 0)

and a share F(z_i) of its volume is buyer-initiated, F the standard normal CDF (or a Student-t CDF
with `dof` degrees of freedom; z is not rescaled to unit variance). Only past and current changes
enter, so the classification is causal and the streaming kernel gives the same numbers.

Volume buckets. The volume stream is cut into buckets of exactly V = bucket_volume; an observation
that straddles a boundary is split in proportion, each part keeping the observation's buy share.
For bucket k with buy volume B_k, the order imbalance is |B_k - (V - B_k)| / V, and

    VPIN_k = (1 / window) sum_{j = k - window + 1 .. k} |2 B_j - V| / V,    in [0, 1]

one value per completed bucket, NaN for the first window - 1 buckets. The paper's default is 50
buckets a day (V = a day's volume / 50) and a window of 50 buckets.

Computed here (batch) from the cumulative volume C_i and cumulative buy volume CB_i: the buy
volume up to a cumulative volume x inside observation i is CB_i - (C_i - x) F(z_i), and
B_k = CB((k+1) V) - CB(k V). The streaming twin `bot4jax.kernels.microstructure_nb.vpin_update_nb`
fills buckets one observation at a time.
"""
from __future__ import annotations

import math
from functools import partial
from typing import NamedTuple

import numpy as np

from bot4jax.features.microstructure._rolling import NAN, block_sums, check_window, pad_end, padded_length, series
from bot4jax.jaxcfg import jax, jnp

DEFAULT_SIGMA_WINDOW = 1000
TOXICITY_REGIMES = ("normal", "cautious", "defensive", "exit_only")


@jax.jit
def student_t_cdf(z, dof):
    """CDF of Student's t with `dof` degrees of freedom, via the regularised incomplete beta:
    F(z) = 1 - I_x(dof/2, 1/2) / 2 for z >= 0 with x = dof / (dof + z^2), symmetric below 0."""
    z = jnp.asarray(z, jnp.float64)
    x = dof / (dof + z * z)
    tail = 0.5 * jax.scipy.special.betainc(0.5 * dof, 0.5, x)
    return jnp.where(z >= 0, 1.0 - tail, tail)


def _buy_fraction(price, sigma_window, dof):
    n = price.shape[0]
    dp = jnp.concatenate([jnp.zeros(1), price[1:] - price[:-1]])
    s = block_sums(dp * dp, sigma_window)
    count = jnp.minimum(jnp.arange(n), sigma_window).astype(jnp.float64)
    var = s / jnp.maximum(count, 1.0)
    z = jnp.where(var > 0, dp / jnp.sqrt(jnp.where(var > 0, var, 1.0)), 0.0)
    if dof is None:
        return jax.scipy.special.ndtr(z)
    return student_t_cdf(z, dof)


_buy_fraction_jit = jax.jit(_buy_fraction, static_argnames=("sigma_window", "dof"))


def _check_dof(dof):
    if dof is not None and not (isinstance(dof, (int, float)) and not isinstance(dof, bool)
                                and math.isfinite(dof) and dof > 0):
        raise ValueError(f"dof must be None (normal CDF) or a finite number > 0; got {dof!r}")
    return None if dof is None else float(dof)


def bvc_buy_fraction(price, sigma_window: int = DEFAULT_SIGMA_WINDOW, dof: float | None = None):
    """Buy share F(z_i) of each observation's volume, shape (n,) (see the module docstring).

    price: (n,); sigma_window: changes in the standardisation (>= 1); dof: None for the normal CDF,
    else Student-t degrees of freedom (> 0).
    """
    sigma_window = check_window(sigma_window, "sigma_window", allow_none=False)
    return _buy_fraction_jit(series(price, "price"), sigma_window, _check_dof(dof))


class VPINBuckets(NamedTuple):
    """Per completed bucket k = 0..K-1 (arrays of shape (K,))."""

    vpin: object       # VPIN_k, NaN for k < window - 1
    buy: object        # B_k, buy volume of the bucket (base units)
    end_index: object  # index of the observation that completes the bucket (int64)


def bucket_arrays(price, volume, bucket_volume, window, sigma_window, dof, max_buckets):
    """Buckets k = 0..max_buckets-1 of the stream: (vpin, buy, end_index, valid), each (max_buckets,).

    valid[k]: bucket k is complete ((k+1) V <= total volume); the other entries are padding
    (end_index = n there). VPIN is NaN for k < window - 1 and for padding.
    """
    n = price.shape[0]
    frac = _buy_fraction(price, sigma_window, dof)
    cum = jnp.cumsum(volume)
    cum_buy = jnp.cumsum(volume * frac)
    bounds = bucket_volume * jnp.arange(1, max_buckets + 1, dtype=jnp.float64)
    valid = bounds <= cum[-1]
    idx = jnp.clip(jnp.searchsorted(cum, bounds, side="left"), 0, n - 1)
    buy_at = cum_buy[idx] - (cum[idx] - bounds) * frac[idx]   # CB at each bucket end
    buy = jnp.diff(buy_at, prepend=0.0)
    imbalance = jnp.clip(jnp.abs(2.0 * buy - bucket_volume) / bucket_volume, 0.0, 1.0)
    imbalance = jnp.where(valid, imbalance, 0.0)
    roll = block_sums(imbalance, min(window, max_buckets)) / window
    k = jnp.arange(max_buckets)
    vpin = jnp.where((k >= window - 1) & valid, jnp.clip(roll, 0.0, 1.0), NAN)
    return vpin, jnp.clip(buy, 0.0, bucket_volume), jnp.where(valid, idx, n), valid


def bucket_bound(total_volume: float, bucket_volume: float) -> int:
    """A static bucket count above total / V: a power of two, so that few shapes compile."""
    expected = int(total_volume / bucket_volume) + 2
    return 1 << max(4, (expected - 1).bit_length())


@partial(jax.jit, static_argnames=("window", "sigma_window", "dof", "max_buckets"))
def _buckets(price, volume, bucket_volume, window, sigma_window, dof, max_buckets):
    vpin, buy, idx, valid = bucket_arrays(price, volume, bucket_volume, window, sigma_window, dof, max_buckets)
    return vpin, buy, idx, jnp.sum(valid)


def _check_inputs(price, volume, bucket_volume):
    p = series(price, "price")
    v = series(volume, "volume", p.shape[0])
    if p.shape[0] == 0:
        raise ValueError("vpin needs at least one observation")
    if not (isinstance(bucket_volume, (int, float, np.integer, np.floating)) and not isinstance(bucket_volume, bool)
            and math.isfinite(bucket_volume) and bucket_volume > 0):
        raise ValueError(f"bucket_volume must be a finite number > 0; got {bucket_volume!r}")
    pn, vn = np.asarray(p, np.float64), np.asarray(v, np.float64)
    checks = (("price", pn, np.isfinite(pn) & (pn > 0), "positive"),
              ("volume", vn, np.isfinite(vn) & (vn >= 0), "non-negative"))
    for name, a, good, kind in checks:
        bad = np.flatnonzero(~good)
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"vpin: {name}[{i}] = {float(a[i])!r} is not a finite {kind} number "
                             f"({bad.size} such values); drop or repair those rows first")
    return pn, vn, float(vn.sum())


def vpin_buckets(price, volume, bucket_volume, window=50, sigma_window=DEFAULT_SIGMA_WINDOW,
                 dof=None) -> VPINBuckets:
    """VPIN and the buy volume of every completed bucket (see the module docstring).

    price, volume: (n,) per observation (bars: close and volume; trades: price and amount).
    bucket_volume: V > 0 in the units of volume. window: buckets averaged (>= 1). sigma_window:
    price changes in the standardisation (>= 1). dof: None for the normal CDF, else the Student-t
    degrees of freedom (> 0). Raises ValueError on a NaN or non-positive price or a NaN or negative
    volume (naming the first such index). Returns arrays of the K completed buckets.
    """
    window = check_window(window, allow_none=False)
    sigma_window = check_window(sigma_window, "sigma_window", allow_none=False)
    dof = _check_dof(dof)
    p, v, total = _check_inputs(price, volume, bucket_volume)
    # Static in the compiled program: the bucket count (a bound; the exact count comes back from the
    # device) and the length (padded at the end with zero volume, which completes no bucket).
    max_buckets = bucket_bound(total, float(bucket_volume))
    size = padded_length(p.shape[0])
    vp, buy, idx, count = _buckets(pad_end(p, size, "edge"), pad_end(v, size, "zeros"), float(bucket_volume),
                                   window, sigma_window, dof, max_buckets)
    k = int(count)
    return VPINBuckets(vp[:k], buy[:k], idx[:k])


def vpin(price, volume, bucket_volume, window=50):
    """VPIN per completed volume bucket, bulk volume classification with the normal CDF (Easley, Lopez de
    Prado and O'Hara 2012; see the module docstring).

    price, volume: (n,) of the trades or bars; bucket_volume: V > 0 (e.g. a day's volume / 50);
    window: buckets averaged. Returns a float64 JAX array (K,) for the K completed buckets, NaN
    for the first window - 1, each value in [0, 1]. `vpin_buckets` has the options (Student-t CDF,
    standardisation window) and the bucket details.
    """
    return vpin_buckets(price, volume, bucket_volume, window).vpin


def toxicity_regime(vpin_value, config=None) -> str:
    """The toxicity regime of a VPIN value under the risk layer's thresholds.

    "normal" below config.toxicity_cautious (default 0.2), "cautious" from it (positions x
    toxicity_cautious_scale, default 0.5), "defensive" from config.toxicity_defensive (0.3; x 0.2),
    "exit_only" from config.toxicity_exit (0.4). The same comparisons (>=) as the risk kernel's
    crisis layer, so the recorded regime is the one the sizing applied. config: a
    `bot4jax.risk.sizing.RiskConfig` (None: its defaults). NaN (VPIN not defined yet) and values
    outside [0, 1] raise ValueError: the risk kernel treats them as invalid input and sizes 0, so a
    caller without a VPIN yet passes 0 ("not measured") to both.
    """
    if config is None:
        from bot4jax.risk.sizing import RiskConfig
        config = RiskConfig()
    v = float(vpin_value)
    if not 0.0 <= v <= 1.0:  # also NaN
        raise ValueError(f"a VPIN value must lie in [0, 1] (pass 0 when it is not measured yet); got {v!r}")
    if v >= config.toxicity_exit:
        return "exit_only"
    if v >= config.toxicity_defensive:
        return "defensive"
    if v >= config.toxicity_cautious:
        return "cautious"
    return "normal"
