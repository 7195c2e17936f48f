"""Shared numerics of the microstructure features: input checks, windowed sums, lags, small solves.

Windowed sums (`block_sums`) are formed in blocks of `window` samples, as in
`bot4jax.features.indicators`: inside a block a running sum from the block's start, plus the suffix
of the previous block that still lies in the window (that block's total minus its running sum at the
same position). Every window sum is then made of at most 2 * window terms whatever the series length,
so its rounding error is bounded by the window, not by the series (a difference of two cumulative
sums over the whole series would carry an error of eps * |sum of the whole series|). The streaming
kernels in `bot4jax.kernels.microstructure_nb` do the same arithmetic one sample at a time.

NaN convention of every windowed feature: the output is NaN where the window holds a NaN input (or
is not full yet); a window=None (whole-sample) result is NaN if any input is NaN.
"""
from __future__ import annotations

import numpy as np

from bot4jax.jaxcfg import jax, jnp

NAN = float("nan")


def padded_length(n: int) -> int:
    """n rounded up to a multiple of 2**(bits - 4): at most 16 shapes per doubling of n, <= 1/8 extra.

    Causal computations on inputs padded at the end give the same values before the padding, so
    padding to these lengths compiles a few programs for any n instead of one per n."""
    step = 1 << max(0, n.bit_length() - 4)
    return max(step, -(-n // step) * step)


def pad_end(a: np.ndarray, size: int, mode: str) -> np.ndarray:
    """`a` (n, ...) extended to `size` rows: repeating its last row ("edge") or with zeros ("zeros")."""
    extra = size - a.shape[0]
    if extra == 0:
        return a
    if mode == "edge":
        return np.concatenate([a, np.repeat(a[-1:], extra, axis=0)])
    return np.concatenate([a, np.zeros((extra,) + a.shape[1:], a.dtype)])


def check_window(window, name: str = "window", minimum: int = 1, allow_none: bool = True) -> int | None:
    """`window` as an int >= minimum (None passes when allowed); a clear ValueError otherwise."""
    if window is None and allow_none:
        return None
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < minimum:
        what = f"an integer >= {minimum}" + (" or None" if allow_none else "")
        raise ValueError(f"{name} must be {what}; got {window!r}")
    return int(window)


def series(x, name: str, n: int | None = None) -> jax.Array:
    """`x` as a float64 JAX vector of shape (n,); raises ValueError naming the argument otherwise."""
    if isinstance(x, (list, tuple)):
        x = np.asarray(x, dtype=np.float64)
    a = jnp.asarray(x, dtype=jnp.float64)
    if a.ndim != 1:
        raise ValueError(f"{name} must be a vector of shape (n,); got shape {a.shape}")
    if n is not None and a.shape[0] != n:
        raise ValueError(f"{name} has {a.shape[0]} elements but the first input has {n}; "
                         "inputs must be aligned, one value per observation")
    return a


def top_level(x, name: str, n: int | None = None) -> jax.Array:
    """Level 0 of a book column given as (n,) or (n, levels), as a float64 vector."""
    a = jnp.asarray(x, dtype=jnp.float64)
    if a.ndim == 2:
        a = a[:, 0]
    return series(a, name, n)


def book_levels(x, name: str, n: int | None = None) -> jax.Array:
    """A book column as (n, levels) float64 ((n,) is one level)."""
    a = jnp.asarray(x, dtype=jnp.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"{name} must have shape (n,) or (n, levels); got shape {a.shape}")
    if n is not None and a.shape[0] != n:
        raise ValueError(f"{name} has {a.shape[0]} rows but the first input has {n}")
    return a


_SUB = 16  # sub-block length of the running sums inside a block (measured on CPU: 16 ~ 8 < 4, 32)


def _running_sums(X: jax.Array) -> jax.Array:
    """Cumulative sums along the last axis of X (..., w), as two small matrix products.

    XLA's CPU cumsum is several times slower than memory speed. Here the row is cut into sub-blocks
    of `_SUB`: one product with a lower-triangular matrix of ones gives the running sums inside each
    sub-block, a second one the exclusive running sum of the sub-block totals, added back. Each sum
    has at most w terms, as in a sequential running sum. X must be NaN- and inf-free (0 * NaN).
    """
    w = X.shape[-1]
    s = min(_SUB, w)
    k = -(-w // s)
    lead = X.shape[:-1]
    Xs = jnp.pad(X, [(0, 0)] * len(lead) + [(0, k * s - w)]).reshape(*lead, k, s)
    inside = Xs @ np.tril(np.ones((s, s))).T
    if k == 1:
        return inside.reshape(*lead, s)[..., :w]
    before = inside[..., -1] @ np.tril(np.ones((k, k)), -1).T      # totals of the earlier sub-blocks
    return (inside + before[..., None]).reshape(*lead, k * s)[..., :w]


def block_sums(x: jax.Array, window: int) -> jax.Array:
    """out[..., t] = sum of x[..., max(0, t - window + 1) .. t] for NaN-free, finite x of shape (..., n).

    The first window - 1 outputs are partial sums (callers mask them). Blocks of `window` samples:
    with t = b * window + j, the window is x[b, 0..j] (a running sum inside block b) plus
    x[b-1, j+1..window-1] (block b-1's total minus its running sum at j).
    """
    n = x.shape[-1]
    w = max(1, min(window, n))
    nb = -(-n // w)
    lead = x.shape[:-1]
    X = jnp.pad(x, [(0, 0)] * len(lead) + [(0, nb * w - n)]).reshape(*lead, nb, w)
    run = _running_sums(X)
    suffix = run[..., -1:] - run
    prev = jnp.concatenate([jnp.zeros_like(suffix[..., :1, :]), suffix[..., :-1, :]], axis=-2)
    return (run + prev).reshape(*lead, nb * w)[..., :n]


def window_sums(channels: list[jax.Array], window: int | None, bad: jax.Array | None = None):
    """Sums of each channel (n,) over the trailing window, and where they are usable.

    channels: NaN-free vectors of shape (n,); bad: (n,) bool marking observations that make every
    window holding them invalid (NaN inputs, undefined lags). Returns (sums, ok): with a window,
    sums is a list of (n,) arrays and ok (n,) is True where the window is full and holds no bad
    observation; with window=None, sums are scalars over the whole sample and ok a scalar bool.
    """
    if window is None:
        sums = [jnp.sum(c) for c in channels]
        ok = jnp.asarray(True) if bad is None else ~jnp.any(bad)
        return sums, ok
    n = channels[0].shape[0]
    stack = list(channels) + ([] if bad is None else [bad.astype(jnp.float64)])
    s = block_sums(jnp.stack(stack), window)
    ok = jnp.arange(n) >= window - 1
    if bad is not None:
        ok = ok & (s[-1] == 0.0)  # counts of 0/1 are exact in float64
    return [s[i] for i in range(len(channels))], ok


def clean(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(x with NaN replaced by 0, NaN mask)."""
    bad = jnp.isnan(x)
    return jnp.where(bad, 0.0, x), bad


def lag(x: jax.Array, k: int = 1, fill: float = NAN) -> jax.Array:
    """x shifted k steps later along the last axis: out[t] = x[t - k], `fill` for t < k."""
    if k == 0:
        return x
    pad = jnp.full(x.shape[:-1] + (k,), fill, dtype=x.dtype)
    return jnp.concatenate([pad, x[..., :-k]], axis=-1)


def diff(x: jax.Array) -> jax.Array:
    """out[t] = x[t] - x[t-1], NaN at t = 0 (same length as x)."""
    return x - lag(x, 1)


def cholesky(A: list[list[jax.Array]]) -> list[list[jax.Array]]:
    """Lower Cholesky factor of a small symmetric positive definite matrix, elementwise over arrays.

    A is a k x k nested list of equally shaped arrays (one matrix per element; only the lower
    triangle is read). Unrolled in plain elementwise operations, which XLA fuses: far faster on CPU
    than a batched `jnp.linalg` call on many tiny systems. A matrix that is not positive definite
    gives NaN.
    """
    k = len(A)
    L = [[None] * k for _ in range(k)]
    for i in range(k):
        for j in range(i + 1):
            s = A[i][j]
            for m in range(j):
                s = s - L[i][m] * L[j][m]
            if i == j:
                L[i][i] = jnp.sqrt(jnp.where(s > 0, s, NAN))
            else:
                L[i][j] = s / L[j][j]
    return L


def chol_solve(L: list[list[jax.Array]], b: list[jax.Array]) -> list[jax.Array]:
    """x with (L L^T) x = b, elementwise over arrays (L from `cholesky`, b a list of k arrays)."""
    k = len(b)
    y = [None] * k
    for i in range(k):
        s = b[i]
        for m in range(i):
            s = s - L[i][m] * y[m]
        y[i] = s / L[i][i]
    x = [None] * k
    for i in reversed(range(k)):
        s = y[i]
        for m in range(i + 1, k):
            s = s - L[m][i] * x[m]
        x[i] = s / L[i][i]
    return x


def ols_slope(n, sx, sy, sxy, sxx):
    """Slope of the OLS fit y = a + b x from sums over n observations: (n Sxy - Sx Sy) / (n Sxx - Sx^2)."""
    den = n * sxx - sx * sx
    return jnp.where(den > 0, (n * sxy - sx * sy) / jnp.where(den > 0, den, 1.0), NAN)
