"""Monte Carlo risk benchmark: bot4jax (JAX) against plain vectorised NumPy, same statistics.

For each process, 10,000 paths x 252 steps (by default): simulate, then terminal-return VaR and
CVaR at 95 / 99 / 99.9 %, the maximum drawdown of every path (mean and quantiles), the recovery
time of the maximum drawdown and the time under water. NumPy draws with `default_rng` (PCG64,
ziggurat normals), keeps the whole (steps, paths) array and reduces it; JAX runs
`simulate_paths`. Medians over repeated runs in one process, after one warm-up (compile) run,
JAX and NumPy alternating so that both see the same machine load. Also timed: drawing the
random variates alone (jax.random threefry / rbg, jax.random.t, bot4jax's counter_rng, NumPy),
which is why the simulation uses counter_rng.

    python experiments/bench_montecarlo.py                 # the table and the JSON
    python experiments/bench_montecarlo.py --quick         # small and fast (a smoke run)
    python experiments/bench_montecarlo.py --paths 1000000 --models gbm garch_t   # memory run

With more paths than --numpy-max-paths the NumPy reference is skipped (it would hold steps x
paths doubles); the run then reports bot4jax's peak resident memory (ru_maxrss) and time.
Writes experiments/runs/benchmarks/montecarlo.json (montecarlo_<paths>x<steps>[_quick].json for
other sizes) and, for the default run, the fan charts montecarlo_fan_<model>.png / .json.
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot4jax.jaxcfg import jax, jnp  # noqa: E402
from bot4jax.jsonio import write_json_atomic  # noqa: E402
from bot4jax.risk import counter_rng as crng  # noqa: E402
from bot4jax.risk import montecarlo as mc  # noqa: E402
from bot4jax.risk.fan import equity_fan, write_fan  # noqa: E402

LEVELS = mc.VAR_LEVELS
DD_LEVELS = mc.DRAWDOWN_LEVELS

MODELS = {
    "gbm": mc.GBMParams(mu=0.0004, sigma=0.02),
    "merton": mc.MertonParams(mu=0.0004, sigma=0.015, lam=0.05, jump_mean=-0.03, jump_std=0.05),
    "garch_t": mc.GarchTParams(mu=0.0004, omega=4e-6, alpha=0.08, beta=0.90, nu=5.0, h0=2e-4),
    "regime": mc.RegimeParams(mu=np.array([0.001, -0.002]), sigma=np.array([0.01, 0.035]),
                              trans=np.array([[0.98, 0.02], [0.06, 0.94]]), p0=np.array([0.75, 0.25])),
    "student_t": mc.StudentTParams(loc=0.0003, scale=0.012, nu=3.5),
}


# --- the NumPy reference: generate the full (steps, paths) log-returns, then reduce -------------

def numpy_log_returns(name: str, p, rng: np.random.Generator, n: int, T: int) -> np.ndarray:
    if name == "gbm":
        return (p.mu - 0.5 * p.sigma ** 2) + p.sigma * rng.standard_normal((T, n))
    if name == "merton":
        kappa = np.expm1(p.jump_mean + 0.5 * p.jump_std ** 2)
        k = rng.poisson(p.lam, (T, n))
        return ((p.mu - 0.5 * p.sigma ** 2 - p.lam * kappa) + p.sigma * rng.standard_normal((T, n))
                + k * p.jump_mean + p.jump_std * np.sqrt(k) * rng.standard_normal((T, n)))
    if name == "garch_t":
        z = rng.standard_t(p.nu, (T, n)) * np.sqrt((p.nu - 2.0) / p.nu)
        out = np.empty((T, n))
        h = np.full(n, p.h0)
        for t in range(T):
            e = np.sqrt(h) * z[t]
            out[t] = p.mu + e
            h = p.omega + p.alpha * e * e + p.beta * h
        return out
    if name == "regime":
        z = rng.standard_normal((T, n))
        u = rng.random((T, n))
        s = rng.random(n) < p.p0[1]
        out = np.empty((T, n))
        for t in range(T):
            out[t] = np.where(s, p.mu[1], p.mu[0]) + np.where(s, p.sigma[1], p.sigma[0]) * z[t]
            s = u[t] < np.where(s, p.trans[1, 1], p.trans[0, 1])
        return out
    if name == "student_t":
        return p.loc + p.scale * rng.standard_t(p.nu, (T, n))
    raise ValueError(name)


def numpy_report(R: np.ndarray) -> dict:
    """The statistics of `RiskReport` from full paths R (steps, paths) of log-returns, written
    to be quick in NumPy: in-place where possible, few passes over the (steps, paths) arrays."""
    T, n = R.shape
    X = np.cumsum(R, axis=0)
    D = np.maximum.accumulate(X, axis=0)
    np.maximum(D, 0.0, out=D)  # the running peak, X_0 = 0 included
    np.subtract(D, X, out=D)   # drawdown
    mdd = D.max(axis=0)
    trough = D.argmax(axis=0)  # row of the first maximum
    at_peak = D == 0.0         # back at (or above) the peak: the drawdown has recovered
    uw = T - np.count_nonzero(at_peak, axis=0)
    at_peak &= np.arange(T)[:, None] > trough[None, :]
    rec = np.where(at_peak.any(axis=0) & (mdd > 0), at_peak.argmax(axis=0) - trough, 0)
    r = np.expm1(X[-1])
    q = np.quantile(r, [1 - a for a in LEVELS])
    cvar = [-r[r <= qi].mean() for qi in q]
    mdd_frac = -np.expm1(-mdd)
    recovered = rec > 0
    return {"var": (-q).tolist(), "cvar": cvar,
            "max_drawdown_mean": float(mdd_frac.mean()),
            "max_drawdown_quantiles": np.quantile(mdd_frac, DD_LEVELS).tolist(),
            "recovery_mean": float(rec[recovered].mean()) if recovered.any() else float("nan"),
            "underwater_mean": float(uw.mean())}


# --- timing ---------------------------------------------------------------------------------

def bench_rng(n: int, T: int, repeats: int) -> dict:
    """Seconds to draw T x n variates: jax.random (threefry, rbg), counter_rng, and NumPy."""
    key = jax.random.key(0)
    steps, paths = jnp.arange(T), jnp.arange(n)
    nu = 5.0
    cands = {
        "jax.random.normal threefry f64": jax.jit(lambda k: jax.random.normal(k, (T, n))),
        "jax.random.normal rbg f64": jax.jit(lambda k: jax.random.normal(
            jax.random.key(jax.random.key_data(k)[1], impl="rbg"), (T, n))),
        "jax.random.t threefry f64": jax.jit(lambda k: jax.random.t(k, nu, (T, n))),
        "counter_rng normal_pair (2 normals a word) f32": jax.jit(lambda k: crng.normal_pair(
            crng.words(crng.seed_from_key(k), 0, steps[: (T + 1) // 2], paths))),
        "counter_rng student_t f32": jax.jit(lambda k: crng.student_t(
            crng.words(crng.seed_from_key(k), 0, steps, paths), nu)),
    }
    out = {}
    for name, f in cands.items():
        jax.block_until_ready(f(key))
        out[name] = statistics.median(timed(lambda: jax.block_until_ready(f(key)), repeats))
    rng = np.random.default_rng(0)
    out["numpy standard_normal f64"] = statistics.median(timed(lambda: rng.standard_normal((T, n)), repeats))
    out["numpy standard_t f64"] = statistics.median(timed(lambda: rng.standard_t(nu, (T, n)), repeats))
    return out


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def bench_model(name: str, n: int, T: int, repeats: int, numpy_max: int) -> dict:
    """JAX and NumPy timed alternately (one run of each per repeat), so that a change in the
    machine's load during the benchmark hits both sides of the ratio alike."""
    p = MODELS[name]
    key = jax.random.key(0)
    run = lambda: jax.block_until_ready(mc.simulate_paths(name, p, key, n, T))  # noqa: E731
    t0 = time.perf_counter()
    rep = run()
    compile_s = time.perf_counter() - t0
    with_numpy = n <= numpy_max
    if with_numpy:
        rng = np.random.default_rng(0)
        np_run = lambda: numpy_report(numpy_log_returns(name, p, rng, n, T))  # noqa: E731
        np_rep = np_run()
    jax_t, np_t = [], []
    for _ in range(repeats):
        jax_t += timed(run, 1)
        if with_numpy:
            np_t += timed(np_run, 1)
    row = {"model": name, "paths": n, "steps": T, "jax_compile_and_first_run_s": compile_s,
           "jax_s": jax_t, "jax_median_s": statistics.median(jax_t),
           "jax_paths_per_s": n / statistics.median(jax_t), "report": rep.to_dict()}
    if with_numpy:
        row.update({"numpy_s": np_t, "numpy_median_s": statistics.median(np_t),
                    "numpy_paths_per_s": n / statistics.median(np_t),
                    "speedup": statistics.median(np_t) / statistics.median(jax_t),
                    "numpy_report": np_rep})
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--paths", type=int, default=10_000)
    ap.add_argument("--steps", type=int, default=252)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--numpy-max-paths", type=int, default=100_000)
    ap.add_argument("--quick", action="store_true", help="2,000 paths, 3 repeats")
    ap.add_argument("--no-fan", action="store_true",
                    help="skip the fan charts (montecarlo_fan_<model>.png/.json; never with --quick)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.quick:
        args.paths, args.repeats = min(args.paths, 2_000), 3

    load0 = os.getloadavg()
    rss0_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    bench_dir = ROOT / "experiments" / "runs" / "benchmarks"
    rows = []
    print(f"{'model':<10} {'paths':>9} {'steps':>5} {'jax ms':>9} {'numpy ms':>9} {'speedup':>8} "
          f"{'jax paths/s':>12} {'VaR99':>7} {'CVaR99':>7} {'MDD mean':>8}")
    for name in args.models:
        row = bench_model(name, args.paths, args.steps, args.repeats, args.numpy_max_paths)
        rows.append(row)
        rep = row["report"]
        np_ms = f"{1e3 * row['numpy_median_s']:9.1f}" if "numpy_median_s" in row else f"{'-':>9}"
        sp = f"{row['speedup']:7.1f}x" if "speedup" in row else f"{'-':>8}"
        print(f"{name:<10} {args.paths:>9} {args.steps:>5} {1e3 * row['jax_median_s']:9.1f} {np_ms} {sp} "
              f"{row['jax_paths_per_s']:12.4g} {rep['var'][1]:7.4f} {rep['cvar'][1]:7.4f} "
              f"{rep['max_drawdown_mean']:8.4f}")
    peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    rng_rows = {}
    if args.paths <= args.numpy_max_paths:
        rng_rows = bench_rng(args.paths, args.steps, args.repeats)
        n_draws = args.steps * args.paths
        print(f"\nrandom variates, {args.steps} x {args.paths} = {n_draws:,} draws (median ms):")
        for name, sec in rng_rows.items():
            print(f"  {name:<50} {1e3 * sec:8.1f}")
    fans = []
    if not (args.no_fan or args.quick) and args.paths <= args.numpy_max_paths:
        for name in args.models:
            fan = equity_fan(name, MODELS[name], jax.random.key(0), args.paths, args.steps)
            title = f"{name}: equity percentiles, {args.paths:,} paths (benchmark parameters)"
            png, _ = write_fan(bench_dir / f"montecarlo_fan_{name}", fan, title=title)
            fans.append(str(png.relative_to(ROOT)))
        print("fan charts: " + ", ".join(fans))
    print(f"peak resident memory of this process: {peak_rss_mib:.0f} MiB "
          f"({rss0_mib:.0f} MiB after importing JAX, before simulating); "
          f"load average {load0[0]:.2f} at start, {os.getloadavg()[0]:.2f} at end "
          f"on {os.cpu_count()} CPUs (timings under load are noisy)")
    out = args.out or bench_dir / (
        "montecarlo.json" if (args.paths, args.steps) == (10_000, 252) and not args.quick
        else f"montecarlo_{args.paths}x{args.steps}{'_quick' if args.quick else ''}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out, {
        "benchmark": "montecarlo", "command": " ".join([Path(sys.argv[0]).name] + (argv or sys.argv[1:])),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "jax": jax.__version__, "numpy": np.__version__,
                    "devices": [str(d) for d in jax.devices()],
                    "loadavg_start": load0, "loadavg_end": os.getloadavg()},
        "repeats": args.repeats, "peak_rss_mib": peak_rss_mib, "rss_before_simulating_mib": rss0_mib,
        "results": rows, "rng_seconds": rng_rows, "fan_charts": fans})
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
