"""Benchmark: Ljung-Box, ARCH-LM and ADF (ours, NumPy) against statsmodels on one long series.

    .venv/bin/python experiments/bench_stats.py             # hourly BTC (33,413 hours), 5 repeats
    .venv/bin/python experiments/bench_stats.py --quick     # its last 8,000 hours, 3 repeats

Series: log close of Binance BTC/USDT hourly from ../shared/data (sorted, de-duplicated), or, when
that folder is absent, a seeded random walk of the same length; returns are its differences.
Cases: Ljung-Box at lag 24 and ARCH-LM at lag 12 on the returns; ADF with a constant on the log
prices at a fixed 12 lags and with the AIC lag choice (statsmodels refits one OLS per candidate lag,
ours reads every candidate from one QR). Median wall time over the repeats of each, in the same
run, the ratio statsmodels / ours, and the relative difference of the statistics and p-values.
BLAS threads are whatever the environment sets (OMP_NUM_THREADS=1 is steadier on a busy machine).
Writes experiments/runs/benchmarks/stats.json (statsmodels is a dev dependency: benchmark only).
"""
from __future__ import annotations

import argparse
import gzip
import os
import platform
import time
import warnings
from pathlib import Path

import numpy as np
from statsmodels.stats.diagnostic import acorr_ljungbox, het_arch
from statsmodels.tsa.stattools import adfuller

from bot4jax.jsonio import write_json_atomic
from bot4jax.validation.stats import adf, arch_lm, ljung_box

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data" / "Binance_BTCUSDT_1h.csv.gz"
OUT = ROOT / "experiments" / "runs" / "benchmarks" / "stats.json"


def load_log_prices() -> tuple[np.ndarray, str]:
    if not DATA.exists():
        rng = np.random.default_rng(0)
        return 9.0 + np.cumsum(rng.normal(0.0, 0.01, 33_413)), "simulated random walk (data absent)"
    a = np.genfromtxt(gzip.open(DATA, "rt"), delimiter=",", skip_header=1, usecols=(0, 6))
    a[a[:, 0] < 1e11, 0] *= 1000
    a = a[np.argsort(a[:, 0], kind="stable")]
    _, first = np.unique(a[:, 0], return_index=True)
    return np.log(a[first, 1]), "Binance BTC/USDT 1h log close"


def sm_cases(lp: np.ndarray, r: np.ndarray) -> dict:
    def lb():
        d = acorr_ljungbox(r, lags=[24])
        return float(d["lb_stat"].iloc[0]), float(d["lb_pvalue"].iloc[0])

    def quiet(f):
        def g():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out = f()
            return float(out[0]), float(out[1])

        return g

    return {
        "ljung_box lag 24 (returns)": lb,
        "arch_lm lag 12 (returns)": quiet(lambda: het_arch(r, nlags=12)),
        "adf c, 12 lags (log price)": quiet(lambda: adfuller(lp, maxlag=12, regression="c", autolag=None)),
        "adf c, AIC lags (log price)": quiet(lambda: adfuller(lp, regression="c", autolag="AIC")),
    }


def our_cases(lp: np.ndarray, r: np.ndarray) -> dict:
    return {
        "ljung_box lag 24 (returns)": lambda: tuple(ljung_box(r, 24)),
        "arch_lm lag 12 (returns)": lambda: tuple(arch_lm(r, 12)),
        "adf c, 12 lags (log price)": lambda: tuple(adf(lp, 12)),
        "adf c, AIC lags (log price)": lambda: tuple(adf(lp)),
    }


def median_time(f, repeats: int) -> tuple[float, tuple]:
    out, times = f(), []  # one warm-up call
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = f()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), out


def rel(a: float, b: float) -> float:
    if a == b:
        return 0.0
    return abs(a - b) / abs(b) if b != 0 else float("inf")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="last 8,000 hours, 3 repeats")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    lp, source = load_log_prices()
    if args.quick:
        lp = lp[-8000:]
    repeats = args.repeats or (3 if args.quick else 5)
    r = np.diff(lp)
    ref, ours = sm_cases(lp, r), our_cases(lp, r)
    rows = []
    print(f"{source}: {lp.size} log prices, median of {repeats} repeats")
    print(f"{'case':32s} {'statsmodels':>12s} {'ours':>10s} {'ratio':>7s} {'rel d stat':>11s} {'rel d p':>9s}")
    for name in ref:
        t_ref, (s_ref, p_ref) = median_time(ref[name], repeats)
        t_our, (s_our, p_our) = median_time(ours[name], repeats)
        row = {
            "case": name,
            "statsmodels_s": t_ref,
            "ours_s": t_our,
            "ratio": t_ref / t_our,
            "statistic": s_our,
            "pvalue": p_our,
            "rel_diff_statistic": rel(s_our, s_ref),
            "rel_diff_pvalue": rel(p_our, p_ref),
        }
        rows.append(row)
        print(f"{name:32s} {t_ref * 1e3:10.2f}ms {t_our * 1e3:8.2f}ms {row['ratio']:6.1f}x "
              f"{row['rel_diff_statistic']:11.1e} {row['rel_diff_pvalue']:9.1e}")
    result = {
        "benchmark": "stats",
        "source": source,
        "n": int(lp.size),
        "repeats": repeats,
        "cases": rows,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "omp_num_threads": os.environ.get("OMP_NUM_THREADS")},
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_json_atomic(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
