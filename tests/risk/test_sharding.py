"""Paths sharded over 4 devices give exactly the unsharded result, and really are sharded.

XLA's host device count must be set before JAX initialises, so the check runs in a subprocess
with XLA_FLAGS=--xla_force_host_platform_device_count=4.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent("""
    import json
    import numpy as np
    from bot4jax.jaxcfg import jax
    from bot4jax.risk import montecarlo as mc

    out = {"devices": len(jax.devices())}
    key = jax.random.key(3)
    cases = [
        ("gbm", mc.GBMParams(0.0004, 0.02), 1024, 24),   # 256 paths a device, no padding
        ("garch_t", mc.GarchTParams(0.0002, 2e-6, 0.05, 0.9, 6.0, 4e-5), 1000, 37),  # padded, remainder chunk
    ]
    for name, p, n, T in cases:
        sharded = mc.path_stats(name, p, key, n, T, devices=4)
        single = mc.path_stats(name, p, key, n, T, devices=1)
        arr = sharded.log_return
        out[name] = {
            "equal": all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(sharded, single)),
            "single_devices": len(single.log_return.sharding.device_set),
            "sharded_devices": len(arr.sharding.device_set),
            "shard_shapes": sorted(s.data.shape[0] for s in arr.addressable_shards),
            "shard_devices": len({s.device for s in arr.addressable_shards}),
        }
        if name == "garch_t":  # the report: per-path values gathered, then reduced identically
            out[name]["report_equal"] = all(
                np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True) for a, b in zip(
                    mc.simulate_paths(name, p, key, n, T, devices=4),
                    mc.simulate_paths(name, p, key, n, T, devices=1)))
    print("RESULT " + json.dumps(out))
""")


def test_sharded_paths_equal_unsharded_and_use_four_devices():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    out = json.loads(line[len("RESULT "):])
    assert out["devices"] == 4
    for name in ("gbm", "garch_t"):
        r = out[name]
        assert r["equal"], (name, r)
        assert r["single_devices"] == 1, (name, r)
        assert r["sharded_devices"] == 4 and r["shard_devices"] == 4, (name, r)
    assert out["gbm"]["shard_shapes"] == [256, 256, 256, 256]
    assert out["garch_t"]["report_equal"]
