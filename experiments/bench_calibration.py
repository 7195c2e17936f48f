"""Benchmark: isotonic calibration (ours: NumPy sort + Numba PAVA + np.interp) against scikit-learn.

    .venv/bin/python experiments/bench_calibration.py            # 10^6 points, 7 repeats
    .venv/bin/python experiments/bench_calibration.py --quick    # 10^5 points, 3 repeats

Data (seeded): scores s ~ U(0, 1) rounded to 6 decimals (so there are ties to pool), outcomes
y ~ Bernoulli(s^2), and for the weighted case weights ~ U(0.5, 2). Each repeat fits on the n points
and predicts n fresh scores drawn from U(-0.05, 1.05) (some outside the fitted range, so clipping is
exercised), once with `isotonic_fit(...).predict` and once with
`IsotonicRegression(out_of_bounds="clip").fit(...).predict`, alternating, in the same run. Reports
the median wall time of fit + predict (and of the fit alone), the ratio scikit-learn / ours, and the
largest absolute difference of the predictions. The Numba kernels are compiled (or loaded from
cache) before timing. Writes experiments/runs/benchmarks/calibration.json (scikit-learn is a dev
dependency: benchmark only); --quick writes calibration_quick.json instead.
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
from sklearn.isotonic import IsotonicRegression

from bot4jax.jsonio import write_json_atomic
from bot4jax.validation.calibration import isotonic_fit

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "experiments" / "runs" / "benchmarks" / "calibration.json"


def ours(x, y, w, t):
    t0 = time.perf_counter()
    cal = isotonic_fit(x, y, w)
    t1 = time.perf_counter()
    p = cal.predict(t)
    return p, t1 - t0, time.perf_counter() - t0


def sklearn(x, y, w, t):
    t0 = time.perf_counter()
    ir = IsotonicRegression(out_of_bounds="clip").fit(x, y, sample_weight=w)
    t1 = time.perf_counter()
    p = ir.predict(t)
    return p, t1 - t0, time.perf_counter() - t0


def run_case(n: int, repeats: int, weighted: bool, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    x = np.round(rng.uniform(size=n), 6)
    y = (rng.uniform(size=n) < x ** 2).astype(np.float64)
    w = rng.uniform(0.5, 2.0, n) if weighted else None
    t = rng.uniform(-0.05, 1.05, n)
    isotonic_fit(x[:100], y[:100], None if w is None else w[:100]).predict(t[:100])  # compile / load
    times = {"ours": [], "sklearn": []}
    fits = {"ours": [], "sklearn": []}
    max_diff = 0.0
    for _ in range(repeats):
        p_o, f_o, a_o = ours(x, y, w, t)
        p_s, f_s, a_s = sklearn(x, y, w, t)
        times["ours"].append(a_o)
        times["sklearn"].append(a_s)
        fits["ours"].append(f_o)
        fits["sklearn"].append(f_s)
        max_diff = max(max_diff, float(np.max(np.abs(p_o - p_s))))
    med = {k: float(np.median(v)) for k, v in times.items()}
    med_fit = {k: float(np.median(v)) for k, v in fits.items()}
    return {
        "case": f"n={n}" + (" weighted" if weighted else ""),
        "n": n,
        "weighted": weighted,
        "repeats": repeats,
        "unique_x": int(np.unique(x).size),
        "ours_fit_predict_ms": med["ours"] * 1e3,
        "sklearn_fit_predict_ms": med["sklearn"] * 1e3,
        "ours_fit_ms": med_fit["ours"] * 1e3,
        "sklearn_fit_ms": med_fit["sklearn"] * 1e3,
        "ratio_sklearn_over_ours": med["sklearn"] / med["ours"],
        "max_abs_diff": max_diff,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10^5 points, 3 repeats")
    args = ap.parse_args()
    n, repeats = (100_000, 3) if args.quick else (1_000_000, 7)
    rows = [run_case(n, repeats, weighted, seed=i) for i, weighted in enumerate((False, True))]

    head = f"{'case':<20}{'ours ms':>10}{'sklearn ms':>12}{'ratio':>8}{'ours fit':>10}{'sk fit':>9}{'max |diff|':>12}"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['case']:<20}{r['ours_fit_predict_ms']:>10.1f}{r['sklearn_fit_predict_ms']:>12.1f}"
              f"{r['ratio_sklearn_over_ours']:>8.2f}{r['ours_fit_ms']:>10.1f}{r['sklearn_fit_ms']:>9.1f}"
              f"{r['max_abs_diff']:>12.2e}")
    print("times: median wall time of fit + predict (and fit alone); ratio = sklearn / ours")

    OUT.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "benchmark": "isotonic calibration fit + predict vs scikit-learn IsotonicRegression(out_of_bounds='clip')",
        "quick": args.quick,
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpu_count": os.cpu_count()},
        "results": rows,
    }
    out = OUT.with_name("calibration_quick.json") if args.quick else OUT
    write_json_atomic(out, doc)
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
