"""Import JAX through here: statistics run in float64, so x64 is switched on before any array exists.

Neural networks choose float32 explicitly in their own parameters and inputs.

On Linux with glibc, importing this module also makes malloc keep freed memory for reuse instead
of handing it back to the kernel at once (`mallopt`: mmap threshold 32 MiB, trim threshold
256 MiB, top pad 64 MiB). XLA on CPU allocates fresh output and scratch buffers on every call, from
its worker threads. With glibc's defaults those often come back as new pages: a thread arena's
heap is trimmed, or deleted once empty (the top pad keeps it), and a buffer above the
history-dependent mmap threshold is mapped afresh. Their page faults, one per 4 KiB and each
zeroing it, then cost more than the computation: the five batch indicators over 10**6 prices took
3,000-18,000 faults per round and 1.3-2.3x longer, by chance of the process's history
(experiments/bench_indicators.py reports both settings). NumPy and pandas temporaries are reused
too. The cost: up to 256 MiB of freed heap may stay resident after a peak. BOT4JAX_MALLOC_TUNING=0
keeps glibc's defaults, and a process that sets MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_,
MALLOC_TOP_PAD_ or GLIBC_TUNABLES itself is left alone. (Limiting malloc to one arena works too,
but only when set before any other thread allocates, which an import cannot promise.)
"""
import ctypes
import os
import sys

_M_TRIM_THRESHOLD = -1        # glibc <malloc.h>
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3


def _tune_glibc_malloc() -> bool:
    """Apply the settings above; True when they were set."""
    if os.environ.get("BOT4JAX_MALLOC_TUNING", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    if any(k in os.environ for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_",
                                     "MALLOC_TOP_PAD_", "GLIBC_TUNABLES")):
        return False
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc"):
            return False
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (ValueError, OSError, AttributeError):    # not glibc
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, 32 << 20)     # glibc's ceiling for it on 64-bit
                and mallopt(_M_TRIM_THRESHOLD, 256 << 20)
                and mallopt(_M_TOP_PAD, 64 << 20))


MALLOC_TUNED = _tune_glibc_malloc()

import jax  # noqa: E402  (after the allocator settings, before XLA's threads and buffers exist)
import jax.numpy as jnp  # noqa: E402

jax.config.update("jax_enable_x64", True)

__all__ = ["jax", "jnp", "MALLOC_TUNED"]
