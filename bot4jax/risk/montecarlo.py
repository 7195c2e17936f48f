"""Monte Carlo risk: simulate return paths of a calibrated process, reduce them to a `RiskReport`.

    from bot4jax.jaxcfg import jax
    from bot4jax.risk.montecarlo import simulate_paths, calibrate_garch_t, GARCH_T
    params = calibrate_garch_t(daily_log_returns)
    rep = simulate_paths(GARCH_T, params, jax.random.key(0), n_paths=100_000, n_steps=252)
    rep.var, rep.cvar            # (3,) losses at 95 / 99 / 99.9 %
    rep.max_drawdown_quantiles   # at rep.max_drawdown_levels

The processes (GBM, Merton jump diffusion, GARCH(1,1)-t, two-state regime switching, Student-t
flights) and their parameters are described in `processes`; the statistics in `mc_stats`.

How a run is laid out (all inside one jitted call):
- Paths are split over the devices (a `jax.sharding.Mesh` with one axis, "paths", and
  `jax.shard_map`); on each device into blocks of at most `MAX_BLOCK` paths, simulated one after
  the other (`lax.map`) so that a block's state stays in cache.
- A block runs a `lax.scan` over chunks of 8 to 16 steps (`chunk_size`): the random variates of
  a chunk are drawn in one vectorised call (float32, see `processes`), then an inner scan applies
  the process step and folds the log-return into the per-path statistics. Memory is O(paths),
  independent of the number of steps.
- Random numbers are counter-based on (key, stream, step, global path index) (`counter_rng`), so
  the result does not depend on the number of devices or the blocking: a sharded run equals an
  unsharded one exactly.
- The per-path statistics (O(paths)) are gathered and reduced at the end: the quantiles need a
  sort over all paths, and reducing in one place keeps the report bit-identical for any number
  of devices.
"""
from __future__ import annotations

import functools
import operator
from typing import Callable

import numpy as np

from bot4jax.jaxcfg import jax, jnp
from bot4jax.risk import counter_rng as crng
from bot4jax.risk import mc_stats
from bot4jax.risk.calibrate import (calibrate_gbm, calibrate_garch_t, calibrate_merton,
                                    calibrate_regime, calibrate_student_t)
from bot4jax.risk.hmm import HMMResult, fit_hmm, hmm_loglik
from bot4jax.risk.mc_stats import DRAWDOWN_LEVELS, VAR_LEVELS, PathStats, RiskReport, risk_report
from bot4jax.risk.processes import (GARCH_T, GBM, MERTON, PROCESSES, REGIME, STUDENT_T,
                                    GarchTParams, GBMParams, MertonParams, Process, RegimeParams,
                                    StudentTParams, garch_unconditional_variance, gbm_moments,
                                    get_process, merton_moments, regime_stationary)

__all__ = [
    "simulate_paths", "path_stats", "sample_log_returns", "report_from_stats",
    "RiskReport", "PathStats", "VAR_LEVELS", "DRAWDOWN_LEVELS",
    "Process", "GBM", "MERTON", "GARCH_T", "REGIME", "STUDENT_T", "PROCESSES", "get_process",
    "GBMParams", "MertonParams", "GarchTParams", "RegimeParams", "StudentTParams",
    "gbm_moments", "merton_moments", "garch_unconditional_variance", "regime_stationary",
    "calibrate_gbm", "calibrate_merton", "calibrate_garch_t", "calibrate_regime",
    "calibrate_student_t", "fit_hmm", "hmm_loglik", "HMMResult",
]

CHUNK = 12          # steps whose variates are drawn in one call (unless a divisor fits better)
MAX_BLOCK = 8192    # paths simulated together on one device (their state stays in L2)


def chunk_size(n_steps: int) -> int:
    """Steps per chunk: a divisor of n_steps in [8, 16] if there is one (no remainder chunk to
    compile), else CHUNK. The random numbers do not depend on it (words are keyed by step)."""
    for k in range(16, 7, -1):
        if n_steps % k == 0:
            return k
    return min(CHUNK, n_steps)


def run_block(process: Process, params, seed, paths, n_steps: int, acc, fold: Callable):
    """Simulate the paths `paths` (uint64 (B,), global indices) for `n_steps` steps.

    fold(acc, r, t) -> (acc, out) receives each step's log-returns r (B,) float64 and the step
    t (int32, 1-based). Returns (final acc, outs stacked over steps: leading axis n_steps).
    """
    def chunk(carry, t0, k):
        v = process.draw(params, seed, t0, k, paths)

        def inner(c, xs):
            state, a = c
            vt, t = xs
            state, r = process.step(params, state, vt)
            a, out = fold(a, r, t)
            return (state, a), out

        return jax.lax.scan(inner, carry, (v, (t0 + jnp.arange(k)).astype(jnp.int32)))

    carry = (process.init(params, seed, paths), acc)
    size = chunk_size(n_steps)
    n_full, rem = divmod(n_steps, size)
    outs = []
    if n_full:
        starts = 1 + size * jnp.arange(n_full, dtype=jnp.int32)
        carry, out = jax.lax.scan(lambda c, t0: chunk(c, t0, size), carry, starts)
        outs.append(jax.tree.map(lambda o: o.reshape((n_full * size,) + o.shape[2:]), out))
    if rem:
        carry, out = chunk(carry, jnp.int32(1 + size * n_full), rem)
        outs.append(out)
    out = jax.tree.map(lambda *o: jnp.concatenate(o, axis=0), *outs)
    return carry[1], out


def _stats_fold(a, r, t):
    return mc_stats.update(a, r, t), None


def _layout(n_paths: int, n_dev: int) -> tuple[int, int]:
    """(blocks per device, block size): blocks of at most MAX_BLOCK, padding under 64 a block."""
    per_dev = -(-n_paths // n_dev)
    n_blk = -(-per_dev // MAX_BLOCK)
    block = -(-per_dev // n_blk)
    return n_blk, -(-block // 64) * 64


def _resolve_devices(devices) -> tuple:
    if devices is None:
        return tuple(jax.devices())
    if isinstance(devices, int):
        avail = jax.devices()
        if not 1 <= devices <= len(avail):
            raise ValueError(f"devices={devices}: between 1 and {len(avail)} are available")
        return tuple(avail[:devices])
    return tuple(devices)


@functools.lru_cache(maxsize=64)
def _compiled(process: Process, n_paths: int, n_steps: int, devices: tuple, what: str):
    n_dev = len(devices)
    n_blk, block = _layout(n_paths, n_dev)

    def local(params, seed, block_ids):
        def one(b):
            paths = b.astype(jnp.uint64) * np.uint64(block) + jnp.arange(block, dtype=jnp.uint64)
            acc, _ = run_block(process, params, seed, paths, n_steps, mc_stats.init(block),
                               _stats_fold)
            return mc_stats.finish(acc)

        out = jax.lax.map(one, block_ids)
        return jax.tree.map(lambda a: a.reshape(-1), out)

    if n_dev > 1:
        mesh = jax.sharding.Mesh(np.array(devices), ("paths",))
        spec = jax.sharding.PartitionSpec
        # check_vma off: every value inside is per-device (no collectives), the carries start
        # from device-invariant zeros and become device-varying, which the checker would reject
        local = jax.shard_map(local, mesh=mesh, in_specs=(spec(), spec(), spec("paths")),
                              out_specs=spec("paths"), check_vma=False)

    def stats_fn(params, key):
        seed = crng.seed_from_key(key)
        stats = local(params, seed, jnp.arange(n_dev * n_blk, dtype=jnp.int32))
        return jax.tree.map(lambda a: a[:n_paths], stats)

    if what == "stats":
        return jax.jit(stats_fn)

    def report_fn(params, key):
        stats = stats_fn(params, key)
        if n_dev > 1:
            # gather the O(paths) per-path values before reducing: sums and sorts then run in
            # the same order as on one device, so the report does not depend on the device count
            rep = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
            stats = jax.lax.with_sharding_constraint(stats, rep)
        return risk_report(stats, n_steps)

    return jax.jit(report_fn)


def prepare_inputs(process, params, n_paths: int, n_steps: int):
    process = get_process(process)
    if not isinstance(params, process.params_type):
        raise TypeError(f"{process.name} takes {process.params_type.__name__}, "
                        f"got {type(params).__name__}")
    try:
        n_paths, n_steps = operator.index(n_paths), operator.index(n_steps)
    except TypeError:
        raise TypeError(f"n_paths and n_steps must be integers, got {n_paths!r}, {n_steps!r}") from None
    if n_paths < 2 or n_steps < 1:
        raise ValueError(f"need n_paths >= 2 and n_steps >= 1, got {n_paths}, {n_steps}")
    if not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(params)):
        process.check(params)
    params = jax.tree.map(lambda a: jnp.asarray(a, dtype=jnp.float64), params)
    return process, params, n_paths, n_steps


def path_stats(process, params, key, n_paths: int, n_steps: int, *, devices=None) -> PathStats:
    """Per-path statistics (terminal log-return, max drawdown, recovery, time under water).

    process: a `Process` or its name; params: its parameter NamedTuple (per-step units);
    key: a JAX PRNG key; devices: None (all of `jax.devices()`), a count, or a sequence.
    Returns `PathStats` of (n_paths,) arrays, sharded over the paths axis when devices > 1.
    """
    process, params, n_paths, n_steps = prepare_inputs(process, params, n_paths, n_steps)
    return _compiled(process, n_paths, n_steps, _resolve_devices(devices), "stats")(params, key)


def simulate_paths(process, params, key, n_paths: int, n_steps: int, *, devices=None) -> RiskReport:
    """Simulate `n_paths` paths of `n_steps` steps and return their `RiskReport`.

    VaR and CVaR of the terminal simple return at 95 / 99 / 99.9 %, the distribution of the
    maximum drawdown (mean and quantiles), the mean time to recover from it to breakeven and the
    time under water, all accumulated inside the scan (memory O(n_paths)). Same arguments as
    `path_stats`; the same key gives the same report for any number of devices.
    """
    process, params, n_paths, n_steps = prepare_inputs(process, params, n_paths, n_steps)
    return _compiled(process, n_paths, n_steps, _resolve_devices(devices), "report")(params, key)


@functools.partial(jax.jit, static_argnames=("n_steps",))
def report_from_stats(stats: PathStats, n_steps: int) -> RiskReport:
    """`RiskReport` from `PathStats` (what `simulate_paths` does after `path_stats`)."""
    return risk_report(stats, n_steps)


@functools.partial(jax.jit, static_argnums=(0, 3, 4))
def _log_returns(process, params, key, n_paths, n_steps):
    seed = crng.seed_from_key(key)
    paths = jnp.arange(n_paths, dtype=jnp.uint64)
    _, out = run_block(process, params, seed, paths, n_steps, (), lambda a, r, t: (a, r))
    return out


def sample_log_returns(process, params, key, n_paths: int, n_steps: int):
    """Every step's log-return, (n_steps, n_paths) float64: the same numbers `path_stats` folds
    for the same key. Memory O(paths x steps): for plots, tests and small runs."""
    process, params, n_paths, n_steps = prepare_inputs(process, params, n_paths, n_steps)
    return _log_returns(process, params, key, n_paths, n_steps)
