"""Counter-based random numbers for Monte Carlo paths: one 64-bit word per (stream, step, path).

Why not `jax.random`: on this CPU threefry costs about 15 ns per 32-bit word and `jax.random.t`
about 0.4 us a draw, several times the whole budget of a simulated path step. Here a word is the
SplitMix64 output function (Steele, Lea and Flood 2014, the generator behind Java's
SplittableRandom, which passes BigCrush) applied to a counter:

    word(seed, stream j, step t, path p) = mix64(s_{j,t} + (p + 1) * G),   G = 0x9E3779B97F4A7C15
    s_{j,t} = mix64(seed ^ mix64(16 t + j + 1))

so every path's numbers depend only on its global index, never on how paths are blocked or
sharded over devices: a sharded run reproduces an unsharded one bit for bit. The per-(step, stream)
offsets are pseudo-random points of one 2^64 cycle; two windows of 10^6 paths overlap with
probability about 10^-8 per run.

Variates are built in float32 (the vector units do twice the lanes and XLA's float32 `log` is
vectorised, its float64 one is not) and used in float64 by the processes:
- `normal_pair`: Box-Muller, R = sqrt(-2 ln u1) with u1 from 31 bits (|z| up to 6.66, a
  truncated tail mass of about 3e-11 per draw), the angle from 27 bits via an octant and
  polynomials (cos/sin errors below 3e-8, no float32 `sin`/`cos`, which XLA computes slowly).
- `student_t`: Bailey's (1994) polar method without rejection: for (U, V) uniform on the unit
  disc, W = U^2 + V^2 is Uniform(0, 1) independent of the angle, and
  T = cos(theta) sqrt(nu (W^(-2/nu) - 1)) is exactly Student t(nu), for any real nu > 0.
- `uniform`: 32-bit uniforms on (0, 1) in float64; `uniform_bits` / `threshold32` the same as
  integers, for Bernoulli draws without floating point.
The tests compare these distributions with scipy's by Kolmogorov-Smirnov and by their moments.
"""
from __future__ import annotations

import numpy as np

from bot4jax.jaxcfg import jax, jnp

__all__ = ["seed_from_key", "stream_seeds", "words", "normal_pair", "student_t", "uniform",
           "uniform_bits", "threshold32"]

_G = np.uint64(0x9E3779B97F4A7C15)
_C1 = np.uint64(0xBF58476D1CE4E5B9)
_C2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)


def mix64(z):
    """SplitMix64's output function: a bijection of uint64 with full avalanche."""
    z = (z ^ (z >> _S30)) * _C1
    z = (z ^ (z >> _S27)) * _C2
    return z ^ (z >> _S31)


def seed_from_key(key) -> jax.Array:
    """A uint64 seed from a JAX PRNG key (typed `jax.random.key` or raw uint32 `PRNGKey`)."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    data = jnp.ravel(key).astype(jnp.uint64)
    s = jnp.uint64(0x6A09E667F3BCC909)
    for i in range(data.shape[0]):  # static: 2 words for threefry, 4 for rbg
        s = mix64(s ^ (data[i] + np.uint64(((i + 1) * int(_G)) % 2**64)))
    return s


def stream_seeds(seed, stream: int, steps) -> jax.Array:
    """s_{j,t} for the steps `steps` (int, any shape) of stream `stream` (0..15)."""
    t = jnp.asarray(steps).astype(jnp.uint64)
    return mix64(seed ^ mix64(t * np.uint64(16) + np.uint64(stream + 1)))


def words(seed, stream: int, steps, paths) -> jax.Array:
    """uint64 words of shape (len(steps), len(paths)): row k for step steps[k], column for path."""
    s = stream_seeds(seed, stream, steps)[:, None]
    p = (jnp.asarray(paths).astype(jnp.uint64) + np.uint64(1)) * _G
    return mix64(s + p[None, :])


def _radius_uniform(w):
    """u1 in (0, 1) from the top 31 bits, float32; near 0 it resolves 2^-32."""
    k = (w >> np.uint64(33)).astype(jnp.int32).astype(jnp.float32)
    return (k + jnp.float32(0.5)) * jnp.float32(2.0 ** -31)


def _unit_circle(w):
    """(cos, sin) of an angle uniform on [0, 2 pi): 24 bits place it in an octant, 3 bits pick the octant."""
    f = ((w >> np.uint64(3)) & np.uint64(0xFFFFFF)).astype(jnp.int32).astype(jnp.float32)
    phi = (f + jnp.float32(0.5)) * jnp.float32(np.pi / 4 * 2.0 ** -24)  # (0, pi/4)
    p2 = phi * phi
    # Taylor series to phi^10 / phi^11: truncation below (pi/4)^12/12! = 1.1e-9 on [0, pi/4].
    c = 1 + p2 * (-1 / 2 + p2 * (1 / 24 + p2 * (-1 / 720 + p2 * (1 / 40320 + p2 * (-1 / 3628800)))))
    s = phi * (1 + p2 * (-1 / 6 + p2 * (1 / 120 + p2 * (-1 / 5040 + p2 * (1 / 362880)))))
    c = c.astype(jnp.float32)
    s = s.astype(jnp.float32)
    o = (w & np.uint64(7)).astype(jnp.int32)
    swap = (o & 1) == 1  # reflect about pi/4
    c, s = jnp.where(swap, s, c), jnp.where(swap, c, s)
    c = jnp.where((o & 2) == 2, -c, c)
    s = jnp.where((o & 4) == 4, -s, s)
    return c, s


def normal_pair(w):
    """Two independent N(0, 1) float32 arrays (Box-Muller) from one word each."""
    r = jnp.sqrt(jnp.maximum(jnp.float32(-2.0) * jnp.log(_radius_uniform(w)), 0))
    c, s = _unit_circle(w)
    return r * c, r * s


def student_t(w, nu):
    """Student t(nu) float32 from one word each (Bailey's polar method); `nu` a scalar > 0.

    Not standardised: the variance is nu / (nu - 2) for nu > 2.
    """
    nu = jnp.asarray(nu).astype(jnp.float32)
    c, _ = _unit_circle(w)
    lw = jnp.log(_radius_uniform(w))
    return c * jnp.sqrt(nu * jnp.expm1((jnp.float32(-2.0) / nu) * lw))


def uniform(w):
    """Uniform on (0, 1), float64, from the top 32 bits: (k + 0.5) 2^-32."""
    k = (w >> np.uint64(32)).astype(jnp.float64)
    return (k + 0.5) * (2.0 ** -32)


def uniform_bits(w):
    """The top 32 bits as uint32: a uniform integer on 0..2^32-1 (compare with `threshold32`)."""
    return (w >> np.uint64(32)).astype(jnp.uint32)


def threshold32(p):
    """k = round(p 2^32) clipped to 0..2^32-1 as uint32, so that P(uniform_bits < k) = p to 2^-32
    (p = 1 gives 1 - 2^-32)."""
    k = jnp.clip(jnp.round(jnp.asarray(p, jnp.float64) * 2.0 ** 32), 0, 2.0 ** 32 - 1)
    return k.astype(jnp.uint32)
