"""Probe: time and minor page faults of each call of the five batch indicators, back to back.

    .venv/bin/python experiments/probe_indicator_faults.py [--calls 40]

Prints one `<input><ms>/<thousand faults>` entry per call (input n = NumPy, d = device array). On a
VM where a first touch of a fresh page costs microseconds, the call time follows the fault count:
XLA writes its outputs and temporaries into freshly allocated 8 MB buffers.
"""
import argparse
import resource
import time

import numpy as np

from bot4jax.features import indicators as ind
from bot4jax.jaxcfg import jax, jnp


def five(a):
    return (ind.sma(a, 20), ind.ema(a, 20), ind.rsi(a, 14), ind.macd(a), ind.bollinger(a))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=40)
    args = ap.parse_args()
    x = 30_000 * np.exp(np.cumsum(np.random.default_rng(0).normal(0, 2e-3, 1_000_000)))
    xd = jax.device_put(jnp.asarray(x))
    jax.block_until_ready(five(xd))
    row = []
    for i in range(args.calls):
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t = time.perf_counter()
        jax.block_until_ready(five(xd if i % 2 else x))
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
        row.append(f"{'d' if i % 2 else 'n'}{1e3 * (time.perf_counter() - t):.0f}/{faults // 1000}k")
    print(" ".join(row))


if __name__ == "__main__":
    main()
