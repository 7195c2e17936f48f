"""Benchmark: the 21 microstructure features over one day of one-second bars, the streaming kernels per
event, and the accuracy of the estimators against known parameters.

    .venv/bin/python experiments/bench_microstructure.py            # 86,400 one-second bars, 15 repeats
    .venv/bin/python experiments/bench_microstructure.py --quick    # 8,640 bars, 5 repeats

Data: `bot4jax.data.simulator.simulate(n_bars=86_400, timeframe="1s", seed)`: bars, ~29k trades and
86,400 ten-level book snapshots.
Batch: median wall time of `all_features(bars, trades, book)` (all 21 features, 23 columns, window
300 bars, from the NumPy data types, host preparation included) after a first compiling call; per
feature, the public function alone at the same size, beside a pandas reference of the same
quantity where one exists (rolling covariance / sums; pandas is a dev dependency: benchmark only).
Streaming: ns per event of each `<name>_run_nb` replay (VPIN per trade, OFI and depth imbalance per
book row, Kyle's lambda per bar), and, as the reference, the plain-Python update per event.
Accuracy: true vs estimated on the ground-truth models of `bot4jax.features.microstructure.sim`
over several seeds (Roll spread, Kyle's lambda, noise variance, Huang-Stoll shares, information
share, VPIN of i.i.d. flow).
Writes experiments/runs/benchmarks/microstructure.json.
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import time
from collections import deque
from pathlib import Path

import numpy as np
import pandas as pd

from bot4jax.jsonio import write_json_atomic
from bot4jax.data.simulator import simulate
from bot4jax.features import microstructure as ms
from bot4jax.features.microstructure import sim
from bot4jax.jaxcfg import jax
from bot4jax.kernels import microstructure_nb as nb

OUT = Path(__file__).resolve().parent / "runs" / "benchmarks" / "microstructure.json"
WINDOW = 300
BUDGET_BATCH_MS = 300.0
BUDGET_EVENT_NS = 2_000.0


def timed(fn, repeats: int) -> list[float]:
    fn()                                    # compile / warm caches
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t)
    return times


def stats(times: list[float]) -> dict[str, float]:
    return {"median_ms": 1e3 * float(np.median(times)), "min_ms": 1e3 * float(np.min(times)), "repeats": len(times)}


def per_bar_inputs(m):
    bars, trades = m.bars, m.trades
    bi = (trades.ts - bars.ts[0]) // 1000
    n = len(bars)
    signed = np.bincount(bi, trades.side * trades.amount, minlength=n)
    return bars.close, signed, bars.volume


def per_feature(m, repeats: int) -> dict:
    """Each public function alone on the day's data, and a pandas reference where there is one."""
    close, signed, volume = per_bar_inputs(m)
    bars, book, trades = m.bars, m.book, m.trades
    logc = np.log(close)
    dp = np.diff(close, prepend=np.nan)
    r = np.diff(logc, prepend=np.nan)
    bucket = float(volume.sum()) / 50
    s_dp, s_r, s_sv, s_v = pd.Series(dp), pd.Series(r), pd.Series(signed), pd.Series(volume)
    w = WINDOW
    rows = {
        "roll_spread": (lambda: ms.roll_spread(logc, w),
                        lambda: 2 * np.sqrt(-s_r.rolling(w).cov(s_r.shift(1)).clip(upper=0))),
        "kyle_lambda": (lambda: ms.kyle_lambda(dp, signed, w),
                        lambda: s_dp.rolling(w).cov(s_sv) / s_sv.rolling(w).var()),
        "amihud_illiquidity": (lambda: ms.amihud_illiquidity(close, volume, w), None),
        "realized_variance": (lambda: ms.realized_variance(close, w), lambda: (s_r ** 2).rolling(w).sum()),
        "bipower_variation": (lambda: ms.bipower_variation(close, w),
                              lambda: math.pi / 2 * (s_r.abs() * s_r.abs().shift(1)).rolling(w).sum()),
        "noise_variance": (lambda: ms.noise_variance(close, w), None),
        "variance_ratio": (lambda: ms.variance_ratio(close, w), None),
        "corwin_schultz_spread": (lambda: ms.corwin_schultz_spread(bars.high, bars.low, w), None),
        "abdi_ranaldo_spread": (lambda: ms.abdi_ranaldo_spread(bars.high, bars.low, close, w), None),
        "trade_flow_imbalance": (lambda: ms.trade_flow_imbalance(signed, volume, w),
                                 lambda: s_sv.rolling(w).sum() / s_v.rolling(w).sum()),
        "vpin": (lambda: ms.vpin(close, volume, bucket), None),
        "order_flow_imbalance": (lambda: ms.order_flow_imbalance(book.bid_px, book.bid_sz, book.ask_px,
                                                                 book.ask_sz, w), None),
        "depth_imbalance": (lambda: ms.depth_imbalance(book.bid_sz, book.ask_sz, 5), None),
        "microprice": (lambda: ms.microprice(book.bid_px, book.bid_sz, book.ask_px, book.ask_sz), None),
        "quoted_spread": (lambda: ms.quoted_spread(book.bid_px, book.ask_px), None),
        "information_share": (lambda: ms.information_share(close, 0.5 * (book.bid_px[:, 0] + book.ask_px[:, 0]), w),
                              None),
        "spread_decomposition (per trade)": (lambda: ms.spread_decomposition(np.log(trades.price), trades.side, w),
                                             None),
    }
    out = {}
    for name, (ours, ref) in rows.items():
        row = {"ours": stats(timed(ours, repeats))}
        if ref is not None:
            row["pandas"] = stats(timed(ref, repeats))
            row["speedup_vs_pandas_median"] = row["pandas"]["median_ms"] / row["ours"]["median_ms"]
        out[name] = row
    return out


# ---- streaming: kernels and plain-Python references per event --------------------------------

class PyKyle:
    def __init__(self, window):
        self.window, self.pairs = window, deque(maxlen=window)

    def update(self, dp, sv):
        self.pairs.append((dp, sv))
        if len(self.pairs) < self.window:
            return math.nan
        n = float(self.window)
        sx = math.fsum(b for _, b in self.pairs)
        sy = math.fsum(a for a, _ in self.pairs)
        sxy = math.fsum(a * b for a, b in self.pairs)
        sxx = math.fsum(b * b for _, b in self.pairs)
        return (n * sxy - sx * sy) / (n * sxx - sx * sx)


def streaming(m, repeats: int) -> dict:
    close, signed, _ = per_bar_inputs(m)
    dp = np.diff(close, prepend=np.nan)
    book, trades = m.book, m.trades
    bucket = float(trades.amount.sum()) / 50
    cases = {
        "vpin (per trade)": (lambda: nb.vpin_init(bucket, 50, 1000), nb.vpin_run_nb,
                             (trades.price, trades.amount), len(trades)),
        "order_flow_imbalance (per book row)": (lambda: nb.ofi_init(WINDOW), nb.ofi_run_nb,
                                                (book.bid_px[:, 0].copy(), book.bid_sz[:, 0].copy(),
                                                 book.ask_px[:, 0].copy(), book.ask_sz[:, 0].copy()), len(book)),
        "depth_imbalance (per book row, 5 levels)": (lambda: nb.depth_imbalance_init(5, 1), nb.depth_imbalance_run_nb,
                                                     (book.bid_sz, book.ask_sz), len(book)),
        "kyle_lambda (per bar, window 300)": (lambda: nb.kyle_init(WINDOW), nb.kyle_run_nb, (dp, signed), len(dp)),
    }
    out = {}
    for name, (init, run, arrays, n) in cases.items():
        buf = np.empty(n)
        run(init(), *(a[:100] for a in arrays), buf[:100])     # compile (cached on disk)
        times = []
        for _ in range(repeats):
            state = init()
            t = time.perf_counter()
            run(state, *arrays, buf)
            times.append(time.perf_counter() - t)
        out[name] = {"events": n, "ns_per_event_median": 1e9 * float(np.median(times)) / n,
                     "ns_per_event_min": 1e9 * float(np.min(times)) / n}
    # the same kernel called once per event from Python (what a Python loop pays: the dispatch)
    state = nb.kyle_init(WINDOW)
    k = 20_000
    t = time.perf_counter()
    for a, b in zip(dp[:k].tolist(), signed[:k].tolist()):
        nb.kyle_update_nb(state, a, b)
    from_python = 1e9 * (time.perf_counter() - t) / k
    ref = PyKyle(WINDOW)
    t = time.perf_counter()
    for a, b in zip(dp[1:k + 1].tolist(), signed[1:k + 1].tolist()):
        ref.update(a, b)
    py_ref = 1e9 * (time.perf_counter() - t) / k
    kyle = out["kyle_lambda (per bar, window 300)"]
    kyle["ns_per_event_called_from_python"] = from_python
    kyle["python_reference_ns_per_event"] = py_ref
    kyle["speedup_vs_python_reference"] = py_ref / kyle["ns_per_event_median"]
    return out


# ---- accuracy against ground truth ---------------------------------------------------------

def accuracy(seeds: list[int], n: int) -> dict:
    rows = {}

    def record(name, truth, estimates, units):
        est = np.array(estimates, dtype=float)
        rows[name] = {"true": truth, "mean_estimate": float(est.mean()), "sd_estimate": float(est.std(ddof=1)),
                      "max_abs_error": float(np.max(np.abs(est - truth))),
                      "max_rel_error": float(np.max(np.abs(est - truth)) / abs(truth)), "units": units,
                      "seeds": seeds, "n": n}

    roll = [float(ms.roll_spread(sim.roll_model(n, 0.5, 0.2, s).price)) for s in seeds]
    record("roll_spread (Roll model, c = 0.5, sigma = 0.2)", 1.0, roll, "price")
    kyle = [float(ms.kyle_lambda(*sim.kyle_model(n, 0.3, 1.0, s)[:2])) for s in seeds]
    record("kyle_lambda (dp = 0.3 x + N(0, 1))", 0.3, kyle, "price per unit volume")
    noise = [float(ms.noise_variance(sim.noisy_price(n, 5e-5, 1e-4, s).price)) for s in seeds]
    record("noise_variance (sigma 5e-5, noise sd 1e-4)", 1e-8, noise, "squared log price")
    hs = [ms.spread_decomposition(*sim.huang_stoll_model(n, 0.5, 0.3, 0.2, 0.3, 0.1, s)[:2]) for s in seeds]
    record("huang_stoll adverse selection", 0.3, [float(d.adverse_selection) for d in hs], "share")
    record("huang_stoll inventory", 0.2, [float(d.inventory) for d in hs], "share")
    record("huang_stoll order processing", 0.5, [float(d.order_processing) for d in hs], "share")
    two = [sim.two_market_model(n // 2, 0.1, 0.3, 1e-3, 1e-3, s) for s in seeds]
    record("information_share of a (g_a 0.1, g_b 0.3)", two[0].information_share_a,
           [float(ms.information_share(t.price_a, t.price_b).mid) for t in two], "share")
    vp = []
    for s in seeds:
        rng = np.random.default_rng(s)
        price = 1e4 + np.cumsum(rng.normal(size=n))
        vp.append(float(np.nanmean(np.asarray(ms.vpin(price, np.ones(n), 1.0)))))
    record("vpin of i.i.d. Gaussian flow, one observation per bucket (E = 1/2)", 0.5, vp, "[0, 1]")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bars", type=int, default=86_400, help="one-second bars (default: one day)")
    ap.add_argument("--repeats", type=int, default=15, help="timed repeats (median reported)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="8,640 bars, 5 repeats, smaller accuracy runs")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    if args.quick:
        args.bars, args.repeats = 8_640, 5
    if args.repeats < 1 or args.bars < 2 * WINDOW:
        ap.error(f"need --repeats >= 1 and --bars >= {2 * WINDOW}")

    m = simulate(n_bars=args.bars, timeframe="1s", seed=args.seed)
    t = time.perf_counter()
    first = ms.all_features(m.bars, m.trades, m.book, window=WINDOW)
    first_call_s = time.perf_counter() - t
    t_all = timed(lambda: ms.all_features(m.bars, m.trades, m.book, window=WINDOW), args.repeats)
    batch = {"all_features": stats(t_all), "first_call_s (compile)": first_call_s,
             "columns": len(first), "features": ms.N_FEATURES, "bars": len(m.bars), "trades": len(m.trades),
             "book_rows": len(m.book), "book_levels": m.book.levels, "window_bars": WINDOW,
             "finite_share_per_column": {k: float(np.isfinite(v).mean()) for k, v in first.items()}}
    functions = per_feature(m, args.repeats)
    stream = streaming(m, args.repeats)
    acc = accuracy(list(range(3 if args.quick else 5)), 20_000 if args.quick else 50_000)

    worst_event = max(v["ns_per_event_median"] for v in stream.values())
    result = {
        "batch": batch, "per_function": functions, "streaming": stream, "accuracy": acc,
        "budgets": {"batch_ms": BUDGET_BATCH_MS, "per_event_ns": BUDGET_EVENT_NS,
                    "batch_within": batch["all_features"]["median_ms"] < BUDGET_BATCH_MS,
                    "streaming_within": worst_event < BUDGET_EVENT_NS},
        "seed": args.seed,
        "machine": {"cpus": os.cpu_count(), "load_avg_1m_5m_15m": os.getloadavg(),
                    "platform": platform.platform(), "python": platform.python_version(),
                    "jax": jax.__version__, "pandas": pd.__version__, "numpy": np.__version__},
    }

    print(f"{len(m.bars):,} one-second bars, {len(m.trades):,} trades, {len(m.book):,} book rows x "
          f"{m.book.levels} levels; median of {args.repeats} runs; load avg {os.getloadavg()[0]:.2f}")
    a = batch["all_features"]
    print(f"all_features: {ms.N_FEATURES} features / {len(first)} columns: median {a['median_ms']:.1f} ms, "
          f"min {a['min_ms']:.1f} ms (budget {BUDGET_BATCH_MS:.0f} ms); first call {first_call_s:.1f} s")
    print(f"\n{'one function (window 300)':36s} {'ours ms (med/min)':>18s} {'pandas ms (med/min)':>21s} {'x':>6s}")
    for k, v in functions.items():
        o, p = v["ours"], v.get("pandas")
        ps = f"{p['median_ms']:9.2f} {p['min_ms']:9.2f} {v['speedup_vs_pandas_median']:6.1f}" if p else f"{'-':>26s}"
        print(f"{k:36s} {o['median_ms']:8.2f} {o['min_ms']:9.2f}   {ps}")
    print(f"\n{'streaming kernel':44s} {'ns/event (med)':>15s} {'(min)':>8s}  (budget {BUDGET_EVENT_NS:.0f} ns)")
    for k, v in stream.items():
        print(f"{k:44s} {v['ns_per_event_median']:15.1f} {v['ns_per_event_min']:8.1f}")
    kyle = stream["kyle_lambda (per bar, window 300)"]
    print(f"kyle update called from a Python loop: {kyle['ns_per_event_called_from_python']:.0f} ns/event; "
          f"plain-Python reference update: {kyle['python_reference_ns_per_event']:.0f} ns/event "
          f"({kyle['speedup_vs_python_reference']:.0f}x slower than the kernel)")
    print(f"\n{'accuracy (true vs estimated)':70s} {'true':>10s} {'mean est':>10s} {'max rel err':>11s}")
    for k, v in acc.items():
        print(f"{k:70s} {v['true']:10.4g} {v['mean_estimate']:10.4g} {v['max_rel_error']:11.2%}")

    write_json_atomic(args.out, result)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
