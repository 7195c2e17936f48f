"""Benchmark: the five indicators, batch (JAX) against pandas, and the streaming kernels (Numba).

    .venv/bin/python experiments/bench_indicators.py            # 10**6 prices, 9 rounds of 3
    .venv/bin/python experiments/bench_indicators.py --quick    # 10**5 prices, 5 rounds of 3

Prices: a seeded geometric random walk around 30,000 (daily-ish volatility of BTC per step).
Batch: wall time of the five indicators (SMA 20, EMA 20, RSI 14, MACD 12/26/9, Bollinger 20/2)
over the whole series, pandas vs ours (compiled first, `block_until_ready`), in the same run.
Ours is timed with each public function called once: from a NumPy input (as pandas gets), 64-byte
aligned as every bot4jax.data column is, so JAX reads it in place; from the same prices 16 bytes
off that boundary (JAX then copies them on every call, as it would an arbitrary NumPy
allocation); from a JAX array already on the device; and with the five inside one `jax.jit` (as a
user computing several indicators would write it, and as bot4jax.features.bars does).
The cases take turns in rounds, each case `--repeats` calls back to back after one untimed call
(so each is timed in its steady state). Reported: the medians over all rounds and their ratio,
and the median over rounds of each round's own ratio pandas / ours (a shared machine's load
drifts over seconds; a ratio of times taken within the same second is the steadier figure).
Page faults per round are counted, and the batch comparison is repeated in a child process with
glibc's default malloc settings (BOT4JAX_MALLOC_TUNING=0; see `bot4jax.jaxcfg` for what importing
it changes). Per function: each one alone, from the device, beside the pandas expression where
there is a single one. Accuracy: max |ours - pandas| per output. Streaming: ns per price of each
`<name>_run_nb` replay.
Writes experiments/runs/benchmarks/indicators.json (pandas is a dev dependency: benchmark only).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bot4jax.data.types import ALIGNMENT, aligned
from bot4jax.features import indicators as ind
from bot4jax.jaxcfg import MALLOC_TUNED, jax, jnp
from bot4jax.jsonio import write_json_atomic
from bot4jax.kernels import indicators_nb as nb

OUT = Path(__file__).resolve().parent / "runs" / "benchmarks" / "indicators.json"


def random_walk(n: int, seed: int = 0) -> np.ndarray:
    """Prices as bot4jax.data holds them: C-contiguous and 64-byte aligned (`aligned`)."""
    rng = np.random.default_rng(seed)
    return aligned(30_000.0 * np.exp(np.cumsum(rng.normal(0.0, 0.002, n))))


def unaligned_copy(x: np.ndarray) -> np.ndarray:
    """A copy of x starting 16 bytes past a 64-byte boundary, as a plain NumPy allocation may: JAX
    on CPU copies such an array on every jitted call."""
    raw = np.empty(x.nbytes + 2 * ALIGNMENT, np.uint8)
    start = -raw.ctypes.data % ALIGNMENT + 16
    out = raw[start:start + x.nbytes].view(x.dtype)
    out[:] = x
    return out


def pandas_five(x: np.ndarray) -> dict[str, np.ndarray]:
    s = pd.Series(x)
    out = {"sma": s.rolling(20).mean(), "ema": s.ewm(span=20, adjust=False, min_periods=20).mean()}
    d = s.diff()
    gain = d.clip(lower=0).ewm(alpha=1 / 14, adjust=False, min_periods=14).mean()
    loss = (-d).clip(lower=0).ewm(alpha=1 / 14, adjust=False, min_periods=14).mean()
    out["rsi"] = 100 - 100 / (1 + gain / loss)
    line = (s.ewm(span=12, adjust=False, min_periods=12).mean()
            - s.ewm(span=26, adjust=False, min_periods=26).mean())
    sig = line.ewm(span=9, adjust=False, min_periods=9).mean()
    out.update(macd=line, macd_signal=sig, macd_hist=line - sig)
    mid = s.rolling(20).mean()
    sd = s.rolling(20).std(ddof=0)
    out.update(bb_middle=mid, bb_upper=mid + 2 * sd, bb_lower=mid - 2 * sd)
    return {k: v.to_numpy() for k, v in out.items()}


def ours_five(x) -> dict[str, jax.Array]:
    out = {"sma": ind.sma(x, 20), "ema": ind.ema(x, 20), "rsi": ind.rsi(x, 14)}
    out["macd"], out["macd_signal"], out["macd_hist"] = ind.macd(x, 12, 26, 9)
    out["bb_middle"], out["bb_upper"], out["bb_lower"] = ind.bollinger(x, 20, 2.0)
    return out


# One public function (or its pandas expression) at a time, to see where the time goes.
PER_FUNCTION = {
    "sma": (lambda x: ind.sma(x, 20), lambda s: s.rolling(20).mean()),
    "ema": (lambda x: ind.ema(x, 20),
            lambda s: s.ewm(span=20, adjust=False, min_periods=20).mean()),
    "rsi": (lambda x: ind.rsi(x, 14), None),
    "macd": (lambda x: ind.macd(x, 12, 26, 9), None),
    "bollinger": (lambda x: ind.bollinger(x, 20, 2.0),
                  lambda s: (s.rolling(20).mean(), s.rolling(20).std(ddof=0))),
}


def timed(fn, repeats: int) -> tuple[list[float], list[int]]:
    """Wall times and minor page faults of `repeats` calls, after one untimed call."""
    fn()                                    # compile / warm caches
    times, faults = [], []
    for _ in range(repeats):
        f = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f)
    return times, faults


def stats(times: list[float]) -> dict[str, float]:
    return {"median_ms": 1e3 * float(np.median(times)), "min_ms": 1e3 * float(np.min(times)),
            "repeats": len(times)}


STREAMING = {
    "sma": (lambda: nb.sma_init(20), nb.sma_run_nb),
    "ema": (lambda: nb.ema_init(20), nb.ema_run_nb),
    "rsi": (lambda: nb.rsi_init(14), nb.rsi_run_nb),
    "macd": (lambda: nb.macd_init(12, 26, 9), nb.macd_run_nb),
    "bollinger": (lambda: nb.bollinger_init(20, 2.0), nb.bollinger_run_nb),
}


def batch_timings(x: np.ndarray, rounds: int, repeats: int) -> dict:
    """Median / min ms (and page faults) of pandas and of ours over the five, and per-round
    ratios pandas / ours."""
    x_dev = jax.device_put(jnp.asarray(x))
    # A user computing several indicators can jit them together: one call, one transfer of the
    # prices, one XLA program over the five public functions (reported apart).
    five_jit = jax.jit(ours_five)
    x_off = unaligned_copy(x)
    cases = {
        "pandas": lambda: pandas_five(x),
        "ours_numpy_input": lambda: jax.block_until_ready(ours_five(x)),
        "ours_unaligned_numpy_input": lambda: jax.block_until_ready(ours_five(x_off)),
        "ours_device_input": lambda: jax.block_until_ready(ours_five(x_dev)),
        "ours_one_jit_over_the_five_numpy_input": lambda: jax.block_until_ready(five_jit(x)),
    }
    times = {k: [] for k in cases}
    faults = {k: [] for k in cases}
    ratios = {k: [] for k in cases if k != "pandas"}
    for fn in cases.values():       # one untimed round: compiles, and the allocator's first pass
        fn()
    for _ in range(rounds):
        block = {}
        for k, fn in cases.items():
            t, f = timed(fn, repeats)
            times[k] += t
            faults[k] += f
            block[k] = np.median(t)
        for k in ratios:
            ratios[k].append(float(block["pandas"] / block[k]))
    out = {k: {**stats(times[k]), "page_faults_median": float(np.median(faults[k]))}
           for k in cases}
    for k, r in ratios.items():
        out[k]["speedup_per_round"] = r
        out[k]["speedup_median_of_rounds"] = float(np.median(r))
    return out


def glibc_defaults_run(args) -> dict:
    """The batch comparison again, in a child process with glibc's default malloc settings."""
    env = dict(os.environ, BOT4JAX_MALLOC_TUNING="0")
    out = subprocess.run([sys.executable, __file__, "--batch-only", "--n", str(args.n),
                          "--rounds", str(args.rounds), "--repeats", str(args.repeats)],
                         env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="number of prices")
    ap.add_argument("--rounds", type=int, default=9,
                    help="rounds in which the batch cases take turns (default 9)")
    ap.add_argument("--repeats", type=int, default=3,
                    help="timed calls of each case per round (default 3); per function and "
                         "streaming: rounds x repeats calls")
    ap.add_argument("--quick", action="store_true", help="10**5 prices, 5 rounds")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--batch-only", action="store_true",
                    help="time the batch comparison only and print it as JSON (writes no file)")
    args = ap.parse_args()
    if args.quick:
        args.n, args.rounds = 100_000, 5
    if args.rounds < 1 or args.repeats < 1 or args.n < 100:
        ap.error("need --rounds >= 1, --repeats >= 1 and --n >= 100")
    calls = args.rounds * args.repeats

    x = random_walk(args.n)
    batch = batch_timings(x, args.rounds, args.repeats)
    if args.batch_only:
        print(json.dumps(batch))
        return
    defaults = glibc_defaults_run(args) if MALLOC_TUNED else None
    x_dev = jax.device_put(jnp.asarray(x))

    per_function = {}
    s = pd.Series(x)
    for name, (ours_fn, pandas_fn) in PER_FUNCTION.items():
        row = {"ours_device_input": stats(timed(
            lambda: jax.block_until_ready(ours_fn(x_dev)), calls)[0])}
        if pandas_fn is not None:
            row["pandas"] = stats(timed(lambda: pandas_fn(s), calls)[0])
        per_function[name] = row

    ref = pandas_five(x)
    ours = {k: np.asarray(v) for k, v in ours_five(x).items()}
    accuracy = {}
    for k, r in ref.items():
        a = ours[k]
        same_nan = bool(np.array_equal(np.isnan(a), np.isnan(r)))
        diff = np.abs(a - r)
        accuracy[k] = {"max_abs_diff": float(np.nanmax(diff)),
                       "max_diff_over_price": float(np.nanmax(diff / x)),
                       "same_nan": same_nan}

    # pandas' rolling std is itself a running update along the whole series; measure both against
    # an exact two-pass std over the last 200,000 windows.
    tail = min(200_000, args.n - 19)
    win = np.lib.stride_tricks.sliding_window_view(x, 20)[-tail:]
    exact_sd = np.sqrt(((win - win.mean(axis=1, keepdims=True)) ** 2).mean(axis=1))
    ours_sd = ((ours["bb_upper"] - ours["bb_middle"]) / 2.0)[-tail:]
    pandas_sd = ((ref["bb_upper"] - ref["bb_middle"]) / 2.0)[-tail:]
    exact_std = {"windows": tail,
                 "ours_max_abs_err": float(np.max(np.abs(ours_sd - exact_sd))),
                 "pandas_max_abs_err": float(np.max(np.abs(pandas_sd - exact_sd)))}

    streaming = {}
    for name, (init, run) in STREAMING.items():
        run(init(), x[:1000])                  # compile (cached on disk after the first run)
        times = []
        for _ in range(calls):
            state = init()
            t = time.perf_counter()
            run(state, x)
            times.append(time.perf_counter() - t)
        streaming[name] = {"ns_per_update_median": 1e9 * float(np.median(times)) / args.n,
                           "ns_per_update_min": 1e9 * float(np.min(times)) / args.n}

    for k, v in batch.items():
        if k != "pandas":
            v["speedup_of_medians"] = batch["pandas"]["median_ms"] / v["median_ms"]
    ours = batch["ours_numpy_input"]
    result = {
        "n_prices": args.n,
        "rounds": args.rounds,
        "repeats_per_round": args.repeats,
        "batch": batch,
        "speedup_vs_pandas_median": ours["speedup_of_medians"],
        "speedup_vs_pandas_median_of_rounds": ours["speedup_median_of_rounds"],
        # On a shared machine the fastest run of each side is the least disturbed one.
        "speedup_vs_pandas_min": batch["pandas"]["min_ms"] / ours["min_ms"],
        "malloc_tuned": MALLOC_TUNED,
        "glibc_default_malloc": defaults,
        "per_function": per_function,
        "accuracy_vs_pandas": accuracy,
        "bollinger_std_vs_exact_two_pass": exact_std,
        "streaming": streaming,
        "machine": {"cpus": os.cpu_count(), "load_avg_1m_5m_15m": os.getloadavg(),
                    "platform": platform.platform(), "python": platform.python_version(),
                    "jax": jax.__version__, "pandas": pd.__version__, "numpy": np.__version__,
                    "GLIBC_TUNABLES": os.environ.get("GLIBC_TUNABLES", "")},
    }

    print(f"{args.n:,} prices; {args.rounds} rounds of {args.repeats} calls per case; load avg "
          f"{os.getloadavg()[0]:.2f}; malloc tuned (bot4jax.jaxcfg): {MALLOC_TUNED}")
    print(f"{'batch, five indicators':40s} {'median ms':>10s} {'min ms':>8s} "
          f"{'speedup':>8s} {'per round':>10s}")
    for k, v in batch.items():
        speedups = (f"{v['speedup_of_medians']:7.1f}x {v['speedup_median_of_rounds']:9.1f}x"
                    if k != "pandas" else "")
        print(f"{k:40s} {v['median_ms']:10.2f} {v['min_ms']:8.2f} {speedups}")
    print("speedup: pandas' median / ours; per round: median over rounds of pandas / ours within "
          "the round.\nNumPy input is 64-byte aligned, as bot4jax.data holds prices (JAX reads it "
          "in place); the unaligned copy is copied by JAX on each call.")
    if defaults is not None:
        print(f"with glibc's default malloc settings (child process, BOT4JAX_MALLOC_TUNING=0): "
              f"pandas {defaults['pandas']['median_ms']:.1f} ms, ours from NumPy "
              f"{defaults['ours_numpy_input']['median_ms']:.1f} ms: "
              f"{defaults['pandas']['median_ms'] / defaults['ours_numpy_input']['median_ms']:.1f}x, "
              f"page faults per round {defaults['ours_numpy_input']['page_faults_median']:.0f}")
    print(f"\n{'one function':14s} {'ours ms (median/min)':>22s} {'pandas ms (median/min)':>24s}")
    for k, v in per_function.items():
        o, p = v["ours_device_input"], v.get("pandas")
        ps = f"{p['median_ms']:10.2f} {p['min_ms']:10.2f}" if p else f"{'-':>21s}"
        print(f"{k:14s} {o['median_ms']:11.2f} {o['min_ms']:10.2f}   {ps}")
    print(f"\n{'output':14s} {'max |ours - pandas|':>20s} {'/ price':>10s} {'same NaN':>9s}")
    for k, v in accuracy.items():
        print(f"{k:14s} {v['max_abs_diff']:20.3e} {v['max_diff_over_price']:10.1e} "
              f"{str(v['same_nan']):>9s}")
    print(f"Bollinger std vs exact two-pass (last {tail:,} windows): ours max err "
          f"{exact_std['ours_max_abs_err']:.2e}, pandas {exact_std['pandas_max_abs_err']:.2e}")
    print(f"\n{'streaming kernel':14s} {'ns/update (median)':>20s} {'(min)':>8s}")
    for k, v in streaming.items():
        print(f"{k:14s} {v['ns_per_update_median']:20.1f} {v['ns_per_update_min']:8.1f}")

    write_json_atomic(args.out, result)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
