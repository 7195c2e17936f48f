"""Benchmark: latency of one risk decision (Kelly + eight clamp layers) and its Numba allocations.

    .venv/bin/python experiments/bench_risk.py             # 100,000 decisions, 5 repeats
    .venv/bin/python experiments/bench_risk.py --quick     # 20,000 decisions, 3 repeats

Inputs: a seeded stream of varied decisions (probabilities, volatilities, tail risks, book state,
drawdown, VPIN) so every layer binds somewhere and branches are not all predictable; about 1 % are
NaN. Each path is timed per call from Python with perf_counter_ns (the timer pair's own cost is a row
of the table), over `--n` calls, `--repeats` times; the table shows the median over repeats of each
percentile.
  RiskClamps.size      the entry point the live loop calls (C entry point through ctypes)
  dispatcher + records risk_clamps_nb called from Python through Numba's dispatcher
  python reference     the plain-Python reference of the tests (the ratio baseline)
  njit loop            amortised ns per decision when compiled code calls the kernel in a loop
Allocation: Numba runtime statistics (NUMBA_NRT_STATS=1, set below before numba is imported) before
and after `--n` calls of RiskClamps.size must be equal, and an njit loop of `--n` decisions must
allocate exactly what a loop of one decision does. Writes experiments/runs/benchmarks/risk.json.
"""
from __future__ import annotations

import os

os.environ["NUMBA_NRT_STATS"] = "1"  # before numba's import, or the runtime keeps no statistics

import argparse  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numba  # noqa: E402
import numpy as np  # noqa: E402
from numba import njit  # noqa: E402
from numba.core.runtime import rtsys  # noqa: E402

from bot4jax.jsonio import write_json_atomic  # noqa: E402
from bot4jax.kernels.risk_nb import INPUT_ORDER, RECORD_DTYPE, risk_clamps_nb  # noqa: E402
from bot4jax.risk.sizing import RiskClamps, RiskConfig, params_record  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "experiments" / "runs" / "benchmarks" / "risk.json"
TARGET_P99_US = 5.0


def decision_stream(n: int, seed: int = 0) -> np.ndarray:
    """(n, 11) inputs in INPUT_ORDER; about 1 % of rows carry a NaN forecast volatility."""
    rng = np.random.default_rng(seed)
    vol = rng.uniform(0.2, 2.0, n)
    x = np.column_stack([
        rng.uniform(0.3, 0.8, n),          # p_up
        rng.uniform(0.6, 2.0, n),          # payoff_ratio
        vol,                               # forecast_vol, annualised
        2.33 * vol / np.sqrt(365.0),       # var_per_unit, 99 % one day
        2.67 * vol / np.sqrt(365.0),       # es_per_unit
        rng.uniform(0.0, 0.1, n),          # open_heat
        rng.uniform(-1.0, 1.0, n),         # corr_with_book
        rng.uniform(0.0, 1.2, n),          # gross_exposure
        rng.uniform(0.0, 0.3, n),          # drawdown
        rng.uniform(0.5, 3.5, n),          # vol_ratio
        rng.uniform(0.0, 0.5, n),          # toxicity
    ])
    x[rng.uniform(size=n) < 0.01, 2] = np.nan
    return x


@njit(nogil=True)
def replay_nb(params, inputs, records):
    acc = 0.0
    for i in range(inputs.shape[0]):
        r = inputs[i]
        acc += risk_clamps_nb(params[0], r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10],
                              records[0])
    return acc


def per_call_ns(fn, rows: list[tuple]) -> np.ndarray:
    out = np.empty(len(rows), np.int64)
    clock = time.perf_counter_ns
    for i, row in enumerate(rows):
        t0 = clock()
        fn(*row)
        out[i] = clock() - t0
    return out


def timer_ns(rows: list[tuple]) -> np.ndarray:
    out = np.empty(len(rows), np.int64)
    clock = time.perf_counter_ns
    for i in range(len(rows)):
        t0 = clock()
        out[i] = clock() - t0
    return out


def percentiles_us(runs: list[np.ndarray]) -> dict[str, float]:
    q = np.array([np.percentile(r, [50, 99, 99.9]) for r in runs]) / 1e3
    med = np.median(q, axis=0)
    return {"p50_us": float(med[0]), "p99_us": float(med[1]), "p999_us": float(med[2]),
            "mean_us": float(np.median([r.mean() for r in runs]) / 1e3), "repeats": len(runs)}


def load_reference():
    """The plain-Python reference lives with the tests (a dev-only import, like pandas elsewhere)."""
    sys.path.insert(0, str(ROOT))
    from tests.risk.test_sizing import reference
    return reference


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="decisions per timed run")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs (median of each percentile)")
    ap.add_argument("--quick", action="store_true", help="20,000 decisions, 3 repeats")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    if args.quick:
        args.n, args.repeats = 20_000, 3
    if args.repeats < 1 or args.n < 100:
        ap.error("need --repeats >= 1 and --n >= 100")

    config = RiskConfig()
    clamps = RiskClamps(config)
    inputs = decision_stream(args.n)
    rows = [tuple(r) for r in inputs.tolist()]
    params, records = params_record(config), np.zeros(1, RECORD_DTYPE)
    cfg_rec, out_rec = params[0], records[0]

    def dispatcher(*x):
        return risk_clamps_nb(cfg_rec, *x, out_rec)

    reference = load_reference()
    names = INPUT_ORDER

    def python_reference(*x):
        return reference(config, dict(zip(names, x)))["final"]

    # warm up: compile / load from cache, touch every path
    for fn in (clamps.size, dispatcher, python_reference):
        per_call_ns(fn, rows[:1000])
    replay_nb(params, inputs[:10], records)

    # no Numba runtime allocation per decision
    s0 = rtsys.get_allocation_stats()
    for row in rows:
        clamps.size(*row)
    s1 = rtsys.get_allocation_stats()
    replay_nb(params, inputs[:1], records)
    s2 = rtsys.get_allocation_stats()
    replay_nb(params, inputs, records)
    s3 = rtsys.get_allocation_stats()
    loop_one = [b - a for a, b in zip(s1, s2)]
    loop_n = [b - a for a, b in zip(s2, s3)]
    allocation = {"size_calls": args.n, "before": list(s0), "after": list(s1),
                  "unchanged": list(s0) == list(s1), "njit_loop_of_1": loop_one, "njit_loop_of_n": loop_n,
                  "njit_loop_constant": loop_one == loop_n, "fields": list(s0._fields)}

    n_ref = min(args.n, 20_000)  # the reference is slow; its percentiles settle well before 100,000
    timings = {"timer": [], "RiskClamps.size": [], "dispatcher + records": [], "python reference": []}
    loop_ns = []
    for _ in range(args.repeats):  # interleaved, so a burst of load hits every path alike
        timings["timer"].append(timer_ns(rows))
        timings["RiskClamps.size"].append(per_call_ns(clamps.size, rows))
        timings["dispatcher + records"].append(per_call_ns(dispatcher, rows))
        timings["python reference"].append(per_call_ns(python_reference, rows[:n_ref]))
        t0 = time.perf_counter_ns()
        replay_nb(params, inputs, records)
        loop_ns.append((time.perf_counter_ns() - t0) / args.n)

    table = {k: percentiles_us(v) for k, v in timings.items()}
    table["njit loop (amortised)"] = {"p50_us": float(np.median(loop_ns)) / 1e3, "p99_us": None,
                                      "p999_us": None, "mean_us": float(np.median(loop_ns)) / 1e3,
                                      "repeats": len(loop_ns)}
    ref_p50 = table["python reference"]["p50_us"]
    for k, v in table.items():
        v["speedup_vs_reference_p50"] = None if k == "timer" else ref_p50 / v["p50_us"]
    p99 = table["RiskClamps.size"]["p99_us"]
    result = {
        "n_decisions": args.n, "n_reference_calls": n_ref,
        "latency": table,
        "target_p99_us": TARGET_P99_US, "meets_target": p99 < TARGET_P99_US,
        "nrt_allocation": allocation,
        "machine": {"cpus": os.cpu_count(), "load_avg_1m_5m_15m": os.getloadavg(),
                    "platform": platform.platform(), "python": platform.python_version(),
                    "numba": numba.__version__, "numpy": np.__version__},
    }

    print(f"{args.n:,} decisions per run, median over {args.repeats} runs of each percentile "
          f"(reference: {n_ref:,} calls); load avg {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"{'path':24s} {'p50 us':>8s} {'p99 us':>8s} {'p99.9 us':>9s} {'mean us':>8s} {'x ref p50':>10s}")
    for k, v in table.items():
        p99s = "-" if v["p99_us"] is None else f"{v['p99_us']:.3f}"
        p999s = "-" if v["p999_us"] is None else f"{v['p999_us']:.3f}"
        ratio = "-" if v["speedup_vs_reference_p50"] is None else f"{v['speedup_vs_reference_p50']:.1f}"
        print(f"{k:24s} {v['p50_us']:8.3f} {p99s:>8s} {p999s:>9s} {v['mean_us']:8.3f} {ratio:>10s}")
    print(f"\nRiskClamps.size p99 {p99:.2f} us: {'meets' if p99 < TARGET_P99_US else 'MISSES'} "
          f"the {TARGET_P99_US:.0f} us target (timer overhead included)")
    print(f"NRT stats {tuple(s0._fields)}: before {tuple(s0)}, after {args.n:,} calls {tuple(s1)} -> "
          f"{'unchanged' if allocation['unchanged'] else 'CHANGED'}; njit loop of 1: {loop_one}, "
          f"of {args.n:,}: {loop_n} -> {'constant' if allocation['njit_loop_constant'] else 'GROWS'}")

    write_json_atomic(args.out, result)
    print(f"\nwrote {args.out}")
    if not (allocation["unchanged"] and allocation["njit_loop_constant"]):
        raise SystemExit("Numba runtime allocation per decision detected")


if __name__ == "__main__":
    main()
