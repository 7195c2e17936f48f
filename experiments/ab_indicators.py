"""A/B of the batch indicators at two git revisions, interleaved in one process.

    .venv/bin/python experiments/ab_indicators.py 91fa03d HEAD            # the five in sequence
    .venv/bin/python experiments/ab_indicators.py 91fa03d HEAD --per-function
    .venv/bin/python experiments/ab_indicators.py HEAD WORKTREE     # uncommitted changes

Each revision's `bot4jax/features/indicators.py` is loaded as its own module (the rest of the
package is the working tree's). Calls alternate A, B, B, A, ... so a change in the machine's state
hits both alike; the paired median ratio (B / A per adjacent pair) is the figure to read, the
medians beside it move with the machine. Prices: the indicator benchmark's random walk, 10**6,
64-byte aligned NumPy input.
"""
from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_indicators import random_walk  # noqa: E402

from bot4jax.jaxcfg import jax  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
INDICATORS = "bot4jax/features/indicators.py"
WORKTREE = "WORKTREE"
CALLS = {"sma": lambda m, x: m.sma(x, 20), "ema": lambda m, x: m.ema(x, 20),
         "rsi": lambda m, x: m.rsi(x, 14), "macd": lambda m, x: m.macd(x, 12, 26, 9),
         "bollinger": lambda m, x: m.bollinger(x, 20, 2.0)}


def load_revision(rev: str, folder: Path):
    """The module at git revision `rev`, or the working tree's for WORKTREE."""
    if rev == WORKTREE:
        source = (ROOT / INDICATORS).read_text()
    else:
        source = subprocess.run(["git", "show", f"{rev}:{INDICATORS}"], cwd=ROOT, check=True,
                                capture_output=True, text=True).stdout
    path = folder / f"indicators_{len(list(folder.iterdir()))}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def interleaved(fns: list, x, rounds: int) -> list[np.ndarray]:
    for f in fns:
        jax.block_until_ready(f(x))
    times = [[] for _ in fns]
    for r in range(rounds):
        order = range(len(fns)) if r % 2 == 0 else reversed(range(len(fns)))
        for i in order:
            t = time.perf_counter()
            jax.block_until_ready(fns[i](x))
            times[i].append(time.perf_counter() - t)
    return [np.array(t) for t in times]


def report(label: str, revs: list[str], times: list[np.ndarray]) -> None:
    for rev, t in zip(revs, times):
        print(f"{label:10s} {rev:12s} median {1e3 * np.median(t):7.2f} ms  min {1e3 * t.min():7.2f}"
              f"  paired ratio vs {revs[0]}: {np.median(t / times[0]):.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("revs", nargs=2, help="two git revisions, e.g. 91fa03d HEAD, or WORKTREE for the "
                    "uncommitted file")
    ap.add_argument("--rounds", type=int, default=200, help="calls per revision (default 200)")
    ap.add_argument("--per-function", action="store_true", help="each indicator apart too")
    args = ap.parse_args()
    x = random_walk(1_000_000)
    with tempfile.TemporaryDirectory() as folder:
        mods = [load_revision(rev, Path(folder)) for rev in args.revs]
        five = [lambda x, m=m: [c(m, x) for c in CALLS.values()] for m in mods]
        report("five", args.revs, interleaved(five, x, args.rounds))
        if args.per_function:
            for name, call in CALLS.items():
                fns = [lambda x, m=m, call=call: call(m, x) for m in mods]
                report(name, args.revs, interleaved(fns, x, args.rounds))


if __name__ == "__main__":
    main()
