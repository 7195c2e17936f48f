"""The allocator settings made on import of bot4jax.jaxcfg (glibc only): XLA's per-call buffers
are reused instead of coming back as fresh pages, and the settings stay off when asked."""
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux")
    or not os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc"), reason="glibc only")

# Three 8 MB outputs per call: with glibc's defaults each call faults in ~24 MB of fresh pages.
PROBE = """
import resource
from bot4jax.jaxcfg import MALLOC_TUNED, jax, jnp
f = jax.jit(lambda x: (x * 2.0, x * 3.0, x * 4.0))
x = jnp.ones(1_000_000)
for _ in range(3):
    jax.block_until_ready(f(x))
faults = []
for _ in range(11):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    jax.block_until_ready(f(x))
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(MALLOC_TUNED, sorted(faults)[5])
"""


def probe(**env) -> tuple[str, int]:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("MALLOC_", "GLIBC_TUNABLES", "BOT4JAX_MALLOC"))}
    out = subprocess.run([sys.executable, "-c", PROBE], env={**clean, **env}, check=True,
                         capture_output=True, text=True).stdout.split()
    return out[0], int(out[1])


def test_buffers_are_reused_without_page_faults():
    tuned, faults = probe()
    assert tuned == "True"
    assert faults < 200          # 6,000 pages make up the three outputs


def test_opt_out_and_the_users_own_settings_are_respected():
    assert probe(BOT4JAX_MALLOC_TUNING="0")[0] == "False"
    assert probe(MALLOC_TRIM_THRESHOLD_="131072")[0] == "False"
