"""Technical indicators in batch (JAX, float64): SMA, EMA, RSI, MACD, Bollinger bands.

Every function takes prices `x` of shape (n,) or (m, n) (one series per row, time along the last
axis; NumPy or JAX, any real dtype) and returns float64 JAX arrays of the same shape. Window
parameters are static (a new value compiles once); `k` of `bollinger` is traced.

Conventions (each equals a pandas expression, the reference the tests hold us to):

    sma(x, w)          x.rolling(w).mean()
    ema(x, s)          x.ewm(span=s, adjust=False, min_periods=s).mean()
    rsi(x, p)          Wilder: ewm(alpha=1/p, adjust=False, min_periods=p) of the gains and
                       losses of x.diff(), then 100 * avg_gain / (avg_gain + avg_loss)
    macd(x, f, s, g)   ema_f(x) - ema_s(x) and its ewm(span=g, adjust=False, min_periods=g)
    bollinger(x, w, k) rolling mean +/- k * rolling std with ddof=0

Warm-up outputs are NaN, never zeros. NaN prices (the data layer rejects them, so this is only a
documented edge): the windowed indicators (sma, bollinger) are NaN exactly for the windows that
contain a NaN, as in pandas; the recursive ones (ema, rsi, macd) are NaN from the NaN's index on,
where pandas would skip it. The streaming kernels in `bot4jax.kernels.indicators_nb` do the same.
Other non-finite prices (+-inf) are outside the contract.

How it is computed (CPU speed and float64 accuracy at once):
- EMA-type recursions y[t] = d*y[t-1] + a*u[t] run in blocks of 8 samples: one matvec per block
  gives every block's local end state, the block-end states follow from the same recursion one
  level up (8x shorter, recursively), and each block is re-run by one small matmul with its
  incoming state folded into its first input (at the top level the state's share, d**(j+1)
  times it, is added after the matmul so that XLA fuses it into the next step). No power beyond
  the 8th of a level's decay and no long sums appear, so the error stays at a few ulps however
  long the series (a sequential `lax.scan` is ~1.5-4x slower on CPU; an associative scan over the
  whole series is slower too and multiplies long chains of d; measured at 10**6 samples). A NaN
  would spread through its block inside the matmul (and on to the last state), so when the last
  state is NaN a second branch (`lax.cond`) runs the recursion on the series with NaN replaced
  by 0 and makes the outputs NaN from the first NaN on; clean series pay nothing for this.
  MACD's two EMAs share one matmul (their difference is linear in the prices).
- Rolling sums are formed per window from at most `window` terms, never as differences of running
  sums along the series (cumulative sums of x and x**2 lose ~4e-6 on the mean and ~6e-3 on the
  Bollinger bands of a random walk near 30,000 over 10**6 samples). The variance is summed around
  a price c inside the window, so the cancellation in E[(x-c)^2] - E[x-c]^2 is bounded by the
  window length rather than by the price level, and a flat window gives exactly 0. Short windows
  are summed directly, only where they are complete (slices of x, no padded copy; the warm-up is
  the result's NaN padding), their terms added pairwise: plain sums straight from the prices or
  from partial sums of 4 prices, squared deviations around the window's last price. Long ones in
  chunks of `window` samples, as a prefix of the window's chunk plus a suffix of the chunk
  before, both around the first price of the window's chunk (O(1) per sample; the streaming
  kernels use the same split).
"""
from __future__ import annotations

from functools import partial

import numpy as np

from bot4jax.jaxcfg import jax, jnp

_BLOCK = 8    # block length of the blocked recursion, at every level (measured: 8 ~ 16 < 4, 32, 64)
# Rolling windows up to these lengths are summed directly (O(window) per sample, one fused pass);
# longer ones in chunks (O(1) per sample but ~4 passes and more memory). Crossovers measured on CPU
# at 10**6 samples: SMA from slices is faster than `reduce_window` over the whole window up to
# w ~ 100 (0.6 against 1.4 ms at w = 5), which then degrades (80 ms at w = 256).
_SMA_SLICES_MAX = 64
_SMA_PRICES_ONLY_MAX = 24   # SMA windows up to this add prices, longer ones partial sums of 4
_SMA_DIRECT_MAX = 256
_BOLLINGER_DIRECT_MAX = 64
_PARTIAL_SUM = 4    # direct window sums of w >= 8 add up partial sums of this many prices


def _series(x) -> jax.Array:
    x = jnp.asarray(x, dtype=jnp.float64)
    if x.ndim not in (1, 2):
        raise ValueError("prices must have shape (n,) or (m, n) with time along the last axis; "
                         f"got shape {x.shape}")
    return x


def _check_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)


def _warmup(y: jax.Array, count: int) -> jax.Array:
    """NaN at the first `count` positions of the last axis."""
    return y.at[..., :count].set(jnp.nan)


def _nan_before(y: jax.Array, count: int) -> jax.Array:
    """y (..., n - count) preceded by `count` NaN along the last axis."""
    return jnp.pad(y, [(0, 0)] * (y.ndim - 1) + [(count, 0)], constant_values=jnp.nan)


def _decay_matrix(d: float, gain: float, b: int) -> np.ndarray:
    """L[i, j] = gain * d**(i-j) for i >= j, else 0; shape (b, b). Built in NumPy: a constant."""
    i = np.arange(b)
    lag = i[:, None] - i[None, :]
    return np.where(lag >= 0, gain * np.power(d, np.maximum(lag, 0).astype(np.float64)), 0.0)


def _blocks(u: jax.Array) -> jax.Array:
    """u (..., n) cut into blocks of `_BLOCK` samples, (..., nb, b), zero-padded at the end."""
    n = u.shape[-1]
    b = max(1, min(_BLOCK, n))         # a short series is one block, not padded to a long one
    nb = -(-n // b)
    return jnp.pad(u, [(0, 0)] * (u.ndim - 1) + [(0, nb * b - n)]).reshape(*u.shape[:-1], nb, b)


def _linear_recurrence(u: jax.Array, d: float, gain: float, y0: jax.Array) -> jax.Array:
    """y[..., t] = d * y[..., t-1] + gain * u[..., t] with y[..., -1] = y0, for NaN-free u.

    u: (..., n) float64; y0: (...,); d, gain: Python floats. Returns (..., n).
    Blocks of `_BLOCK` samples: the block-end states come from one matvec per block (zero
    incoming state) and the same recursion one level up (`_BLOCK` times shorter, recursively);
    each block is then re-run by one small matmul with its incoming state folded into its first
    input. NaN inputs would spread through a whole block (0 * NaN in the matmul), so callers
    route series holding a NaN through `_nan_from_first` instead of handling NaN here (that
    keeps the clean path free of NaN bookkeeping).
    """
    U = _blocks(u)
    *lead, nb, b = U.shape
    L = _decay_matrix(d, gain, b)
    prev = _entry_states(U @ L[-1], d, b, y0)
    # The incoming state enters as an extra input at the block's first sample: y = d*prev + gain*u0.
    U2 = U + jnp.where(jnp.arange(b) == 0, (d / gain) * prev[..., None], 0.0)
    return (U2 @ L.T).reshape(*lead, nb * b)[..., :u.shape[-1]]


def _entry_states(ends: jax.Array, d: float, b: int, y0: jax.Array) -> jax.Array:
    """The state entering each block (..., nb), from the blocks' local final states `ends`
    (zero incoming state) of y[t] = d*y[t-1] + gain*u[t] in blocks of b, y[-1] = y0: the same
    recursion one level up."""
    if ends.shape[-1] == 1:
        return y0[..., None]
    # The state entering block k is the one leaving block k-1: the recursion one level up, run
    # over (y0, ends[0], ..., ends[-2]) from a zero state, yields the entering states directly.
    # (Shifting its result instead puts a concatenation, a branch per element that keeps LLVM
    # from vectorising, into every full-length loop that reads the states.)
    shifted = jnp.concatenate([y0[..., None], ends[..., :-1]], axis=-1)
    return _linear_recurrence(shifted, d**b, 1.0, jnp.zeros_like(y0))


def _recurrence(u: jax.Array, d: float, gain: float, y0: jax.Array) -> jax.Array:
    """`_linear_recurrence` at the top level, its result left for the caller's next step to fuse.

    Same recursion and blocks; the block-local responses come from one matmul of the raw input,
    y_local = U @ L.T, and the incoming state is added afterwards, y = y_local + d**(j+1) * prev
    (j = position in the block). That sum is elementwise, so XLA fuses it into whatever consumes y
    (the RSI ratio, the MACD line, the warm-up mask) instead of writing and re-reading a corrected
    input (measured ~10-20% faster for rsi and macd). The levels below stay `_linear_recurrence`:
    their results must be materialised, or XLA would fuse every level into this last pass.
    u: (..., n) float64 without NaN; y0: (...,). Returns (..., n).
    """
    U = _blocks(u)
    *lead, nb, b = U.shape
    L = _decay_matrix(d, gain, b)
    prev = _entry_states(U @ L[-1], d, b, y0)
    lift = np.power(d, np.arange(1, b + 1, dtype=np.float64))   # d**(j+1), j = 0..b-1
    return (U @ L.T + lift * prev[..., None]).reshape(*lead, nb * b)[..., :u.shape[-1]]


def _nan_from_first(fn, x: jax.Array):
    """fn(x) for a recursive indicator, NaN from each row's first NaN price on.

    fn maps prices (..., n) to (outputs, probe): a tuple of arrays shaped like x, and the states
    of one of its blocked recursions (..., n). fn always runs on x; when a row held a NaN (rare:
    the data layer rejects NaN), fn runs again on the prices with NaN replaced by 0 and every
    output is NaN from the row's first NaN on — what the sequential recursion gives, since a NaN
    input poisons every later state and no earlier one. The blocked recursion spreads a NaN to
    its whole block and every later one, so a row held a NaN iff its probe ends in NaN (finite
    prices give finite states): that one value decides, instead of a pass over the prices
    before fn. (The probe is a recursion's state rather than an output, because XLA would write
    an output computed with a division out twice to read its last value.)
    """
    def masked(x):
        bad = jnp.isnan(x)
        idx = jnp.arange(x.shape[-1])
        first = jnp.min(jnp.where(bad, idx, x.shape[-1]), axis=-1, keepdims=True)
        return tuple(jnp.where(idx >= first, jnp.nan, y) for y in fn(jnp.where(bad, 0.0, x))[0])

    out, probe = fn(x)
    return jax.lax.cond(jnp.any(jnp.isnan(probe[..., -1])), lambda args: masked(args[0]),
                        lambda args: args[1], (x, out))


def _ema_difference(x: jax.Array, fast: int, slow: int) -> jax.Array:
    """EMA_fast(x) - EMA_slow(x), adjust=False, both seeded at x[..., 0], no warm-up mask.

    The difference is linear in the prices, so one matmul with the difference of the two block
    matrices gives its block-local part, and the two entry states add afterwards (as in
    `_recurrence`, fused into the caller's next step)."""
    X = _blocks(x)
    *lead, nb, b = X.shape
    (a_f, a_s) = (2.0 / (fast + 1.0), 2.0 / (slow + 1.0))
    L_f, L_s = _decay_matrix(1.0 - a_f, a_f, b), _decay_matrix(1.0 - a_s, a_s, b)
    y = X @ (L_f - L_s).T
    for L, d, sign in ((L_f, 1.0 - a_f, 1.0), (L_s, 1.0 - a_s, -1.0)):
        # One matvec per EMA: a (b, 2) matrix for both measured 0.64 ms against 2 x 0.22.
        share = (sign * np.power(d, np.arange(1, b + 1, dtype=np.float64))
                 * _entry_states(X @ L[-1], d, b, x[..., 0])[..., None])
        y = y + share
    return y.reshape(*lead, nb * b)[..., :x.shape[-1]]


def _complete_window_sums(x: jax.Array, window: int, partial_sums: bool) -> jax.Array:
    """Sum of x over each complete window, (..., n - window + 1): entry t ends at x[..., t+w-1].

    Each window adds its own w prices, never differences of running sums. With `partial_sums`,
    windows of 8 or more are added up from partial sums of 4 prices (one `reduce_window` pass,
    which XLA keeps as its own array rather than recomputing it in every consumer) plus the
    remaining < 4 prices: about w/4 + 6 additions per window instead of w - 1, for one more pass
    over the series. That pays for long windows and for sums read by several fused loops (XLA
    recomputes slice sums in each); a short window read once is cheaper straight from the prices
    (measured: SMA 20 0.86x of the partial-sum time, SMA 32 1.23x).
    """
    n = x.shape[-1]
    m = n - window + 1
    q = _PARTIAL_SUM if partial_sums and window >= 2 * _PARTIAL_SUM else 1
    if q > 1:
        dims = (1,) * (x.ndim - 1) + (q,)
        parts = jax.lax.reduce_window(x, 0.0, jax.lax.add, dims, (1,) * x.ndim, "VALID")
    else:
        parts = x
    full = window // q
    # parts[..., e - q + 1] sums the q prices ending at e; window t ends at e = t + w - 1.
    terms = [parts[..., window - q - j * q:window - q - j * q + m] for j in range(full)]
    terms += [x[..., window - 1 - i:window - 1 - i + m] for i in range(full * q, window)]
    return _tree_sum(terms)


def _tree_sum(terms: list) -> jax.Array:
    """Sum of equally shaped arrays added pairwise. XLA keeps the order of additions as written,
    so a running sum over k terms is a chain of k - 1 dependent adds per element, which bounds a
    fused loop by the add latency; pairwise, the chain is log2(k) deep."""
    while len(terms) > 1:
        terms = [a + b for a, b in zip(terms[0::2], terms[1::2])] + terms[len(terms) & ~1:]
    return terms[0]


def _chunked_window_sums(x: jax.Array, window: int, squares: bool = True):
    """Window sums in O(1) work per sample, each from at most `window` terms.

    The series is cut into chunks of w = window samples. A window ending at position j of chunk k
    is the prefix [0, j] of chunk k plus the suffix (j, w) of chunk k-1, both summed around
    c = the first price of chunk k, which lies inside every such window. Prefixes and suffixes are
    in-chunk running sums (`cumsum` within each chunk, the suffix one run backwards), so no
    sum spans more than one chunk and none is a difference of two sums.
    Returns (c, s1, s2) shaped like x, s1 = sum over the window of (x - c), s2 of (x - c)**2
    (None unless `squares`).
    """
    n = x.shape[-1]
    lead = x.shape[:-1]
    nc = -(-n // window)
    X = jnp.pad(x, [(0, 0)] * len(lead) + [(0, nc * window - n)]).reshape(*lead, nc, window)
    c = X[..., 0]
    c_next = jnp.concatenate([c[..., 1:], c[..., -1:]], axis=-1)    # the shift chunk k+1 uses

    def prefix(v):                                  # sum over in-chunk positions <= j
        # A prefix sum only adds earlier terms, so a NaN reaches exactly the sums that hold it.
        return jnp.cumsum(v, axis=-1)

    def suffix_after(v):                            # sum over in-chunk positions > j
        s = jnp.flip(prefix(jnp.flip(v, axis=-1)), axis=-1)
        return jnp.concatenate([s[..., 1:], jnp.zeros_like(s[..., :1])], axis=-1)

    def combine(pre, suf):                          # pre of chunk k + suf of chunk k-1
        before = jnp.concatenate([jnp.zeros_like(suf[..., :1, :]), suf[..., :-1, :]], axis=-2)
        return (pre + before).reshape(*lead, nc * window)[..., :n]

    y = X - c[..., None]
    y_next = X - c_next[..., None]
    s1 = combine(prefix(y), suffix_after(y_next))
    s2 = combine(prefix(y * y), suffix_after(y_next * y_next)) if squares else None
    shift = jnp.broadcast_to(c[..., None], X.shape).reshape(*lead, nc * window)[..., :n]
    return shift, s1, s2


@partial(jax.jit, static_argnames=("window",))
def sma(x, window: int) -> jax.Array:
    """Simple moving average: mean of the last `window` prices.

    sma[t] = (1/w) * sum_{i=0}^{w-1} x[t-i];  NaN for t < w-1 (pandas `rolling(w).mean()`).
    Every window is summed from its own <= w terms (directly for w <= 256: up to w = 24 from the
    prices, up to 64 from partial sums of 4 prices, then by `reduce_window`; in chunks for longer
    windows, see the module docstring), so no error accumulates along the series. Cost
    O(min(w, 256)) per sample.
    Shapes: (n,) -> (n,), (m, n) -> (m, n).
    """
    window = _check_int("window", window)
    x = _series(x)
    n = x.shape[-1]
    if window > n:
        return jnp.full_like(x, jnp.nan)
    if window <= _SMA_SLICES_MAX:
        # Only the complete windows are summed (no padded copy of x); the warm-up is the result's
        # NaN padding.
        sums = _complete_window_sums(x, window, partial_sums=window > _SMA_PRICES_ONLY_MAX)
        return _nan_before(sums / window, window - 1)
    if window <= _SMA_DIRECT_MAX:
        dims = (1,) * (x.ndim - 1) + (window,)
        pad = [(0, 0)] * (x.ndim - 1) + [(window - 1, 0)]
        mean = jax.lax.reduce_window(x, 0.0, jax.lax.add, dims, (1,) * x.ndim, pad) / window
    else:
        shift, s1, _ = _chunked_window_sums(x, window, squares=False)
        mean = shift + s1 / window
    return _warmup(mean, window - 1)


@partial(jax.jit, static_argnames=("span",))
def ema(x, span: int) -> jax.Array:
    """Exponential moving average, pandas `ewm(span=span, adjust=False, min_periods=span).mean()`.

    alpha = 2/(span+1);  y[0] = x[0];  y[t] = (1-alpha)*y[t-1] + alpha*x[t];
    NaN for t < span-1. Shapes: (n,) -> (n,), (m, n) -> (m, n).
    """
    span = _check_int("span", span)
    x = _series(x)
    if x.shape[-1] == 0:
        return x
    alpha = 2.0 / (span + 1.0)
    # The plain recursion here: with nothing to fuse its last step into, the deferred-state form
    # of `_recurrence` measured no faster.
    def line(v):
        y = _linear_recurrence(v, 1.0 - alpha, alpha, v[..., 0])
        return (y,), y

    (y,) = _nan_from_first(line, x)
    return _warmup(y, span - 1)


@partial(jax.jit, static_argnames=("period",))
def rsi(x, period: int = 14) -> jax.Array:
    """Wilder's relative strength index in [0, 100].

    gain[t] = max(x[t]-x[t-1], 0), loss[t] = max(x[t-1]-x[t], 0) for t >= 1;
    avg[1] = value[1], avg[t] = (1-alpha)*avg[t-1] + alpha*value[t] with alpha = 1/period —
    Wilder's smoothing seeded at the first change, i.e. pandas
    `ewm(alpha=1/period, adjust=False, min_periods=period).mean()` on `diff().clip(lower=0)` and
    `(-diff()).clip(lower=0)` (not Wilder's original seed, the SMA of the first `period` changes).
    rsi[t] = 100 * avg_gain / (avg_gain + avg_loss)  (= 100 - 100/(1 + RS)); 100 when avg_loss = 0
    and avg_gain > 0; 50 when both are 0 (a flat series; pandas gives NaN there).
    NaN for t < period (the first `period` changes make the first value).
    Shapes: (n,) -> (n,), (m, n) -> (m, n).
    """
    period = _check_int("period", period)
    x = _series(x)
    if x.shape[-1] <= period:                      # all warm-up
        return jnp.full_like(x, jnp.nan)
    alpha = 1.0 / period

    def averages(v):
        # The changes x[t] - x[t-1], t >= 1: the recursions run over these n-1 values, seeded at
        # the first, and the result takes its place from index 1 on (index 0 is warm-up).
        delta = v[..., 1:] - v[..., :-1]
        gain = jnp.maximum(delta, 0.0)
        loss = jnp.maximum(-delta, 0.0)
        # Two 1-D recursions rather than one on a stacked (2, n) array: XLA then fuses the diff
        # into each recursion's first pass instead of materialising the stack (measured faster).
        gain = _recurrence(gain, 1.0 - alpha, alpha, gain[..., 0])
        loss = _recurrence(loss, 1.0 - alpha, alpha, loss[..., 0])
        total = gain + loss
        # gain/total is exactly 1 when loss == 0 (and 0 when gain == 0), so those cases are exact.
        value = jnp.where(total == 0.0, 50.0, 100.0 * (gain / jnp.where(total == 0.0, 1.0, total)))
        return (_nan_before(value[..., period - 1:], period),), gain

    (value,) = _nan_from_first(averages, x)
    return value


@partial(jax.jit, static_argnames=("fast", "slow", "signal"))
def macd(x, fast: int = 12, slow: int = 26, signal: int = 9):
    """Moving average convergence/divergence -> (macd, signal, histogram), each shaped like x.

    macd = EMA_fast(x) - EMA_slow(x), both adjust=False EMAs seeded at x[0] (warm-up runs through);
    NaN for t < t0 = max(fast, slow) - 1.
    signal = adjust=False EMA (span `signal`) of the macd line, seeded at macd[t0];
    NaN for t < t0 + signal - 1. histogram = macd - signal (NaN where signal is).
    pandas: `m = ewm(span=fast, adjust=False, min_periods=fast).mean()
    - ewm(span=slow, adjust=False, min_periods=slow).mean()`,
    `s = m.ewm(span=signal, adjust=False, min_periods=signal).mean()`, `h = m - s`.
    """
    fast = _check_int("fast", fast)
    slow = _check_int("slow", slow)
    signal = _check_int("signal", signal)
    x = _series(x)
    n = x.shape[-1]
    t0 = max(fast, slow) - 1
    if n <= t0:
        nan = jnp.full_like(x, jnp.nan)
        return nan, nan, nan
    alpha = 2.0 / (signal + 1.0)

    def lines(v):
        line = _ema_difference(v, fast, slow)
        # Before t0 the signal recursion is fed macd[t0] (a fixed point of the recursion), so it
        # starts at macd[t0] there.
        seeded = jnp.where(jnp.arange(n) < t0, line[..., t0:t0 + 1], line)
        sig = _warmup(_recurrence(seeded, 1.0 - alpha, alpha, line[..., t0]), t0 + signal - 1)
        line = _warmup(line, t0)
        return (line, sig, line - sig), seeded

    return _nan_from_first(lines, x)


@partial(jax.jit, static_argnames=("window",))
def bollinger(x, window: int = 20, k=2.0):
    """Bollinger bands -> (middle, upper, lower), each shaped like x.

    middle = rolling mean over `window`; upper/lower = middle +/- k * sd, where sd is the rolling
    population standard deviation (ddof=0, as Bollinger defines it):
    sd[t]**2 = (1/w) sum_{i<w} (x[t-i] - middle[t])**2.  NaN for t < window-1.
    pandas: `rolling(w).mean()` +/- k * `rolling(w).std(ddof=0)`. The variance of each window is
    summed around a price inside it (see the module docstring): relative error of sd ~ window *
    1e-16, exactly 0 on flat windows, no drift along the series; the middle is the window's plain
    sum over w, as `sma`. Cost O(min(window, 64)) per sample.
    """
    window = _check_int("window", window)
    x = _series(x)
    n = x.shape[-1]
    if window > n:
        nan = jnp.full_like(x, jnp.nan)
        return nan, nan, nan
    if window <= _BOLLINGER_DIRECT_MAX:
        # Complete windows only (no padded copy of x). The variance is summed around the window's
        # last price c: mean((x - c)**2) - mean(x - c)**2, so a flat window gives exactly 0. The
        # middle comes from plain window sums, as the SMA does; partial sums of 4, as four loops
        # read it.
        m = n - window + 1
        mean = _complete_window_sums(x, window, partial_sums=True) / window
        last = x[..., window - 1:]
        devs = [x[..., window - 1 - i:window - 1 - i + m] - last for i in range(1, window)]
        if devs:
            # The offset from the deviations themselves, not as mean - c: that would carry the
            # rounding of the plain sum, ~1e-16 of the price (max sd error 3e-10 at 30,000
            # against 3e-11 this way, for ~3% more time).
            offset = _tree_sum(devs) / window
            squares = _tree_sum([d * d for d in devs])
        else:
            offset = squares = jnp.zeros_like(last)
        half = k * jnp.sqrt(jnp.maximum(squares / window - offset * offset, 0.0))
        return tuple(_nan_before(y, window - 1) for y in (mean, mean + half, mean - half))
    shift, s1, s2 = _chunked_window_sums(x, window)
    mean_dev = s1 / window                                   # middle - shift
    var = jnp.maximum(s2 / window - mean_dev * mean_dev, 0.0)
    middle = _warmup(shift + mean_dev, window - 1)
    half = k * jnp.sqrt(var)
    return middle, middle + half, middle - half


__all__ = ["sma", "ema", "rsi", "macd", "bollinger"]
