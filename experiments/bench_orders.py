"""Benchmark: order state machine throughput, allocation, and the latency of risk check + submit.

    .venv/bin/python experiments/bench_orders.py            # 2,000,000 ops a run, 5 repeats
    .venv/bin/python experiments/bench_orders.py --quick    # 300,000 ops, 3 repeats

Workload (one driver, `_mixed`, run three ways on identical inputs): a book of 1024 slots with a
ring of 64 resting limit orders; each cycle replaces one ring order (cancel + release of the old, risk
check + submit + ack of the new), every 2nd cycle a partial fill on a ring order, every 8th cycle a
whole bracket (three legs, link, entry ack and fill, exits released and acked, take-profit fill
cancelling the stop, group release), every 16th a trade through the matcher (expiry, activation,
maker fills with fees against a venue account). Each kernel call counts as one operation.
  njit driver     the driver compiled with Numba calling the kernels (the live loop's hot path)
  python driver   the same driver as plain Python calling the kernels through Numba's dispatcher
  reference       the same driver over the plain-Python reference of the tests (the ratio baseline)
Allocation: Numba runtime statistics (NUMBA_NRT_STATS=1, set before numba is imported) around driver
runs of different lengths must not differ, and Python's allocated block count must not grow over
--n calls of the kernels from Python. Latency: one risk check + submit (`risk_submit_nb`) and one
ack (`activate_nb`) timed per call from Python with perf_counter_ns (the timer pair's own cost is a
row). Writes experiments/runs/benchmarks/orders.json.
"""
from __future__ import annotations

import os

os.environ["NUMBA_NRT_STATS"] = "1"  # before numba's import, or the runtime keeps no statistics

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import types  # noqa: E402
from pathlib import Path  # noqa: E402

import numba  # noqa: E402
import numpy as np  # noqa: E402
from numba import njit  # noqa: E402
from numba.core.runtime import rtsys  # noqa: E402

from bot4jax.kernels import orders_nb as k  # noqa: E402
from bot4jax.kernels.orders_nb import (activate_nb, apply_fill_nb, cancel_nb, link_nb, match_trade_nb,  # noqa: E402
                                       release_group_nb, release_nb, risk_submit_nb, submit_nb)

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "experiments" / "runs" / "benchmarks" / "orders.json"
TARGET_OPS = 1_000_000
TARGET_LATENCY_US = 10.0

NAN = math.nan
NOEXP = k.NO_EXPIRY
LIMIT, STOP, GTC, G_BRACKET = k.T_LIMIT, k.T_STOP, k.TIF_GTC, k.G_BRACKET
RING = 64


def _mixed(book, limits, racct, cfg, vacct, legs, ring, prices, n_ops):
    """Run cycles until n_ops kernel calls were made; returns the count. Only return codes are read,
    so the same code drives the kernel and the reference."""
    ops = 0
    c = 0
    n_prices = prices.shape[0]
    while ops < n_ops:
        ts = c
        p = prices[c % n_prices]
        j = c % RING
        old = ring[j]
        if old >= 0:
            cancel_nb(book, old, ts)
            release_nb(book, old)
            ops += 2
        side = 1 if c % 2 == 0 else -1
        s = risk_submit_nb(book, limits, racct, side, LIMIT, GTC, 0, 1000, p - side * 5.0, NAN, NOEXP, ts, ts,
                           False)
        ops += 1
        if s >= 0:
            activate_nb(book, s, ts)
            ops += 1
        ring[j] = s
        if c % 2 == 0:
            f = ring[(c * 7 + 3) % RING]
            if f >= 0:
                apply_fill_nb(book, f, 300, p, ts)
                ops += 1
        if c % 8 == 0:
            e = submit_nb(book, 1, LIMIT, GTC, 0, 500, p, NAN, NOEXP, ts, ts, True)
            tp = submit_nb(book, -1, LIMIT, GTC, 0, 500, p + 10.0, NAN, NOEXP, ts, ts, True)
            sl = submit_nb(book, -1, STOP, GTC, 0, 500, NAN, p - 10.0, NOEXP, ts, ts, True)
            legs[0] = e
            legs[1] = tp
            legs[2] = sl
            g = link_nb(book, G_BRACKET, legs, 3, ts)
            activate_nb(book, e, ts)
            apply_fill_nb(book, e, 500, p, ts)
            activate_nb(book, tp, ts)
            activate_nb(book, sl, ts)
            apply_fill_nb(book, tp, 500, p + 10.0, ts)
            release_group_nb(book, g)
            ops += 10
        if c % 16 == 0:
            match_trade_nb(book, cfg, vacct, ts, p, 1.0)
            ops += 1
        c += 1
    return ops


mixed_nb = njit(nogil=True)(_mixed)


def load_reference():
    """The plain-Python reference lives with the tests (a dev-only import)."""
    sys.path.insert(0, str(ROOT))
    from tests.execution.test_orders_kernel import RefBook
    return RefBook


def reference_driver():
    """`_mixed` with its kernel names bound to the reference's methods."""
    def call(name):
        return lambda book, *a: getattr(book, name)(*a)

    names = {
        "cancel_nb": call("cancel"), "activate_nb": call("activate"), "apply_fill_nb": call("apply_fill"),
        "risk_submit_nb": call("risk_submit"), "submit_nb": call("submit"),
        "release_nb": lambda book, s: book.release(s) or 0,
        "release_group_nb": lambda book, g: book.release_group(g) or 0,
        "link_nb": lambda book, kind, legs, n, ts: book.link(kind, [int(x) for x in legs[:n]], ts),
        "match_trade_nb": call("match_trade"),
    }
    return types.FunctionType(_mixed.__code__, {**globals(), **names}, "_mixed_ref")


def inputs(capacity: int = 1024):
    limits = np.zeros(1, k.LIMITS_DTYPE)
    limits["lot"], limits["max_position"], limits["max_notional"], limits["fee"] = 1e-8, 1e12, 1e15, 7.5e-4
    racct = np.zeros(1, k.ACCOUNT_DTYPE)
    racct["position"], racct["quote"], racct["mark"] = 1e9, 1e15, 100.0
    cfg = k.venue_params(0.01, 1e-8, 2.5, 2.0, 7.5, 1.0, True)
    prices = 100.0 + np.round(np.cumsum(np.random.default_rng(0).normal(0, 0.3, 4096)), 2)
    return limits, racct, cfg, prices


def fresh_state(capacity: int = 1024, kernel=True):
    book = k.init_book(capacity) if kernel else load_reference()(capacity)
    vacct = np.array([10**18, 10**15], np.int64) if kernel else [10**18, 10**15]
    return book, vacct, np.zeros(8, np.int64), np.full(RING, -1, np.int64)


def run_njit(n_ops, limits, racct, cfg, prices):
    book, vacct, legs, ring = fresh_state()
    t0 = time.perf_counter()
    ops = mixed_nb(book, limits[0], racct[0], cfg[0], vacct, legs, ring, prices, n_ops)
    return ops, time.perf_counter() - t0, book


def run_python(n_ops, limits, racct, cfg, prices):
    book, vacct, legs, ring = fresh_state()
    t0 = time.perf_counter()
    ops = _mixed(book, limits[0], racct[0], cfg[0], vacct, legs, ring, prices, n_ops)
    return ops, time.perf_counter() - t0


def run_reference(n_ops, limits, racct, cfg, prices):
    book, vacct, legs, ring = fresh_state(kernel=False)
    cfg_dict = {n: float(cfg[0][n]) for n in k.VENUE_DTYPE.names}
    t0 = time.perf_counter()
    ops = reference_driver()(book, limits[0], racct[0], cfg_dict, vacct, legs, ring, prices, n_ops)
    return ops, time.perf_counter() - t0


def per_call_ns(fn, n):
    out = np.empty(n, np.int64)
    clock = time.perf_counter_ns
    for i in range(n):
        t0 = clock()
        fn(i)
        out[i] = clock() - t0
    return out


def percentiles_us(runs):
    q = np.array([np.percentile(r, [50, 99, 99.9]) for r in runs]) / 1e3
    med = np.median(q, axis=0)
    return {"p50_us": float(med[0]), "p99_us": float(med[1]), "p999_us": float(med[2]), "repeats": len(runs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", type=int, default=2_000_000, help="kernel operations per njit run")
    ap.add_argument("--n", type=int, default=100_000, help="calls per Python latency / allocation run")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="300,000 ops, 30,000 calls, 3 repeats")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    if args.quick:
        args.ops, args.n, args.repeats = 300_000, 30_000, 3
    limits, racct, cfg, prices = inputs()

    # warm up (compile, or load from the cache) and check the njit driver agrees with the reference
    ops, _, book = run_njit(5_000, limits, racct, cfg, prices)
    ref_book, ref_vacct, ref_legs, ref_ring = fresh_state(kernel=False)
    cfg_dict = {n: float(cfg[0][n]) for n in k.VENUE_DTYPE.names}
    reference_driver()(ref_book, limits[0], racct[0], cfg_dict, ref_vacct, ref_legs, ref_ring, prices, 5_000)
    statuses = [k.STATUS_NAMES[s] for s in book.orders["status"][:len(ref_book.orders)]]
    ref_statuses = [o.status if o is not None else "free" for o in ref_book.orders]
    assert statuses == ref_statuses, "njit driver and reference disagree"

    # throughput
    rows = {}
    for name, fn, n in (("njit driver", run_njit, args.ops), ("python driver", run_python, max(args.ops // 20, 20_000)),
                        ("reference", run_reference, max(args.ops // 100, 10_000))):
        rates = []
        for _ in range(args.repeats if name == "njit driver" else max(1, args.repeats // 2)):
            out = fn(n, limits, racct, cfg, prices)
            rates.append(out[0] / out[1])
        rows[name] = {"ops": n, "ops_per_s": float(np.median(rates)), "ns_per_op": float(1e9 / np.median(rates)),
                      "repeats": len(rates)}
    base = rows["reference"]["ops_per_s"]
    for row in rows.values():
        row["speedup_vs_reference"] = row["ops_per_s"] / base

    # allocation: Numba runtime (njit driver) and Python blocks (kernels called from Python)
    s0 = rtsys.get_allocation_stats()
    run_njit(10_000, limits, racct, cfg, prices)
    s1 = rtsys.get_allocation_stats()
    run_njit(args.ops, limits, racct, cfg, prices)
    s2 = rtsys.get_allocation_stats()
    nrt_small, nrt_large = s1.alloc - s0.alloc, s2.alloc - s1.alloc
    book, vacct, legs, ring = fresh_state()
    L, A = limits[0], racct[0]

    def cycle(i):
        s = risk_submit_nb(book, L, A, 1, LIMIT, GTC, 0, 1000, 99.0, NAN, NOEXP, i, i, False)
        activate_nb(book, s, i)
        apply_fill_nb(book, s, 400, 99.0, i)
        cancel_nb(book, s, i)
        release_nb(book, s)

    for i in range(1000):
        cycle(i)
    growth = []   # Python blocks gained over n and over 4n cycles: a leak per call grows with n
    for n in (args.n // 4, args.n):
        gc.collect()
        b0 = sys.getallocatedblocks()
        for i in range(n):
            cycle(i)
        gc.collect()
        growth.append(sys.getallocatedblocks() - b0)
    alloc = {"nrt_allocs_10k_ops": int(nrt_small), "nrt_allocs_large_run": int(nrt_large),
             "python_block_growth": {f"{5 * (args.n // 4)}_calls": int(growth[0]), f"{5 * args.n}_calls": int(growth[1])},
             "no_allocation_per_op": bool(nrt_small == nrt_large and max(growth) < 0.001 * 5 * args.n)}

    # latency from Python, in a live-sized book (RING resting orders): each timed risk check +
    # submit and ack is followed, untimed, by a cancel and release so the book keeps its size
    clock = time.perf_counter_ns

    def timed(n):
        book, vacct, legs, ring = fresh_state()
        for j in range(RING):
            activate_nb(book, risk_submit_nb(book, L, A, 1, LIMIT, GTC, 0, 1000, 90.0 - j, NAN, NOEXP, 0, 0, False), 0)
        t_timer, t_submit, t_ack = (np.empty(n, np.int64) for _ in range(3))
        for i in range(n):
            t0 = clock()
            t1 = clock()
            s = risk_submit_nb(book, L, A, 1, LIMIT, GTC, 0, 1000, 99.0, NAN, NOEXP, i, i, False)
            t2 = clock()
            activate_nb(book, s, i)
            t3 = clock()
            cancel_nb(book, s, i)
            release_nb(book, s)
            t_timer[i], t_submit[i], t_ack[i] = t1 - t0, t2 - t1, t3 - t2
        return t_timer, t_submit, t_ack

    lat = {"timer": [], "risk_submit_nb": [], "activate_nb": []}
    for _ in range(args.repeats):
        a, b, c = timed(args.n)
        lat["timer"].append(a)
        lat["risk_submit_nb"].append(b)
        lat["activate_nb"].append(c)
    latency = {name: percentiles_us(runs) for name, runs in lat.items()}

    print(f"\norder kernel, {platform.processor() or platform.machine()}, numba {numba.__version__}, "
          f"median of {args.repeats} runs (machine shared with other jobs: timings are noisy)\n")
    print(f"{'driver':<16}{'ops':>12}{'ops/s':>16}{'ns/op':>10}{'x reference':>14}")
    for name, r in rows.items():
        print(f"{name:<16}{r['ops']:>12,}{r['ops_per_s']:>16,.0f}{r['ns_per_op']:>10.1f}{r['speedup_vs_reference']:>14.1f}")
    print(f"\n{'call from Python':<20}{'p50 us':>10}{'p99 us':>10}{'p99.9 us':>10}")
    for name, r in latency.items():
        print(f"{name:<20}{r['p50_us']:>10.2f}{r['p99_us']:>10.2f}{r['p999_us']:>10.2f}")
    print(f"\nNumba runtime allocations: {nrt_small} in a 10,000-op run, {nrt_large} in a {args.ops:,}-op run "
          f"(per call of the driver, not per op); Python blocks gained: {growth[0]} over {5 * (args.n // 4):,} "
          f"and {growth[1]} over {5 * args.n:,} kernel calls from Python")
    ok_ops = rows["njit driver"]["ops_per_s"] >= TARGET_OPS
    ok_lat = latency["risk_submit_nb"]["p99_us"] < TARGET_LATENCY_US
    print(f"target >= {TARGET_OPS:,} ops/s: {'met' if ok_ops else 'NOT met'}; "
          f"risk check + submit p99 < {TARGET_LATENCY_US} us: {'met' if ok_lat else 'NOT met'}; "
          f"no allocation per op: {'yes' if alloc['no_allocation_per_op'] else 'NO'}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {"benchmark": "orders", "command": " ".join(["experiments/bench_orders.py"] + sys.argv[1:]),
              "machine": {"processor": platform.processor() or platform.machine(), "python": platform.python_version(),
                          "numba": numba.__version__, "numpy": np.__version__, "cpus": os.cpu_count()},
              "throughput": rows, "latency_from_python": latency, "allocation": alloc,
              "targets": {"ops_per_s": TARGET_OPS, "met_ops": ok_ops, "risk_submit_p99_us": TARGET_LATENCY_US,
                          "met_latency": ok_lat},
              "note": "shared machine: re-run on an idle one for reported figures"}
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
