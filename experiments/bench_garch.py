"""Benchmark: GARCH(1,1)-t fits, bot4jax (JAX) against arch, side by side in one process.

    .venv/bin/python experiments/bench_garch.py            # 120 and 1,000 series of 2,000 returns
    .venv/bin/python experiments/bench_garch.py --quick    # 120 series, fewer repeats

Series: simulated GARCH(1,1)-t returns (percent scale) with varied realistic parameters
(alpha ~ U(.05, .15), alpha + beta ~ U(.90, .99), nu ~ U(4, 12), unconditional variance ~ U(.5, 4)),
plus 2,000-hour windows of real hourly BTC/USDT returns when ../shared/data is present. Both
libraries fit the same model: constant mean, GARCH(1,1), Student t, alpha + beta <= 1 (arch's bound,
max_persistence=1.0 here).

Reported: wall-clock seconds (median over repeats for ours; arch fits every series once, one by one,
and its throughput is the total; each of our repeats is followed by arch on the next slice of the
series, so both see the same load of the shared CPU), the speed-up (arch time / ours), the share of our fits that
converged, and the parity of the estimates (|d alpha| + |d beta| against arch: 95th percentile and
max). Also a single compiled `fit` against arch's single fit, and the Numba streaming variance update.
Timings on a CPU shared with other jobs are noisy; the JSON keeps every repeat.
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

from bot4jax.jsonio import write_json_atomic
from bot4jax.jaxcfg import jax
from bot4jax.kernels.garch_nb import garch_variance_path_nb, garch_variance_update_nb
from bot4jax.models import garch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data"
OUT = ROOT / "experiments" / "runs" / "benchmarks" / "garch.json"
T = 2000


def simulated(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n GARCH(1,1)-t series of T returns and their true (mu, omega, alpha, beta, nu)."""
    rng = np.random.default_rng(seed)
    series, truth = [], []
    for i in range(n):
        alpha = rng.uniform(0.05, 0.15)
        p = rng.uniform(0.90, 0.99)
        nu = rng.uniform(4.0, 12.0)
        sbar = rng.uniform(0.5, 4.0)
        params = {"mu": rng.uniform(-0.05, 0.1), "omega": sbar * (1 - p), "alpha": alpha, "beta": p - alpha, "nu": nu}
        r, _ = garch.simulate(params, T, jax.random.key(seed * 100_000 + i), dist="t")
        series.append(r)
        truth.append(list(params.values()))
    return np.array(series), np.array(truth)


def btc_windows() -> np.ndarray | None:
    path = DATA / "Binance_BTCUSDT_1h.csv.gz"
    if not path.exists():
        return None
    a = np.genfromtxt(gzip.open(path, "rt"), delimiter=",", skip_header=1, usecols=(0, 6))
    a[a[:, 0] < 1e11, 0] *= 1000
    a = a[np.argsort(a[:, 0], kind="stable")]
    _, first = np.unique(a[:, 0], return_index=True)
    close = a[first, 1]
    r = 100.0 * np.diff(close) / close[:-1]
    n = r.shape[0] // T
    return r[: n * T].reshape(n, T)


def arch_fit_one(r: np.ndarray, dist: str = "t"):
    from arch import arch_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return arch_model(r, mean="Constant", vol="GARCH", p=1, q=1, dist=dist).fit(disp="off")


def interleaved(series: np.ndarray, repeats: int, dist: str = "t") -> tuple[dict, dict, object]:
    """Our batch fit `repeats` times, each followed by arch on the next 1/repeats of the series, so
    both sample the same load of the shared CPU. Returns (ours, arch, our last batch result)."""
    t0 = time.perf_counter()
    batch = garch.fit_many(series, dist=dist, max_persistence=1.0)  # compiles
    first = time.perf_counter() - t0
    walls, cpus, params, flags, times, arch_cpu = [], [], [], [], [], 0.0
    for part in np.array_split(np.arange(series.shape[0]), repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        batch = garch.fit_many(series, dist=dist, max_persistence=1.0)
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
        c0 = time.process_time()
        for i in part:
            w0 = time.perf_counter()
            res = arch_fit_one(series[i], dist)
            times.append(time.perf_counter() - w0)
            params.append(res.params.to_numpy())
            flags.append(res.convergence_flag == 0)
        arch_cpu += time.process_time() - c0
    ours = {
        "compile_and_first_run_s": first,
        "wall_s": walls,
        "cpu_s": cpus,
        "wall_s_median": float(np.median(walls)),
        "cpu_s_median": float(np.median(cpus)),
    }
    ref = {
        "params": np.array(params),
        "converged": np.array(flags),
        "wall_s": float(np.sum(times)),
        "cpu_s": arch_cpu,
        "per_fit_ms_median": float(np.median(times) * 1e3),
    }
    return ours, ref, batch


def compare(name: str, series: np.ndarray, repeats: int) -> dict:
    ours, ref, batch = interleaved(series, repeats)
    theta = batch.theta()
    d = np.abs(theta[:, 2] - ref["params"][:, 2]) + np.abs(theta[:, 3] - ref["params"][:, 3])
    # where arch's fit is worse than ours, the difference is arch's error, not ours: say so
    ll_ref = np.array([_arch_loglik(r, p) for r, p in zip(series, ref["params"])])
    return {
        "case": name,
        "n_series": int(series.shape[0]),
        "T": int(series.shape[1]),
        "ours": ours,
        "arch": {k: v for k, v in ref.items() if k != "params"} | {"converged": int(np.sum(ref["converged"]))},
        "speedup_wall": ref["wall_s"] / ours["wall_s_median"],
        "speedup_cpu": ref["cpu_s"] / ours["cpu_s_median"],
        "ours_converged": int(np.sum(batch.converged)),
        "iterations_median": float(np.median(batch.iterations)),
        "iterations_max": int(np.max(batch.iterations)),
        "dalpha_dbeta_p95": float(np.percentile(d, 95)),
        "dalpha_dbeta_max": float(np.max(d)),
        "loglik_ours_minus_arch_min": float(np.min(batch.loglik - ll_ref)),
    }


def _arch_loglik(r, params):
    """arch's log-likelihood at arch's estimate, recomputed with our likelihood (same definition)."""
    from bot4jax.jaxcfg import jnp
    from bot4jax.models import garch_lik as gf

    r_tm = jnp.asarray(r)[:, None]
    return float(jnp.sum(gf.loglik_obs(jnp.asarray(params)[None], r_tm, gf.backcast(r_tm), "t")[0]))


def single_fit(series: np.ndarray, repeats: int) -> dict:
    garch.fit(series[0], dist="t", max_persistence=1.0)  # compile
    ours, ref = [], []
    for _ in range(repeats):
        for r in series:
            t0 = time.perf_counter()
            garch.fit(r, dist="t", max_persistence=1.0)
            ours.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            arch_fit_one(r)
            ref.append(time.perf_counter() - t0)
    return {
        "fits": len(ours),
        "ours_ms_median": float(np.median(ours) * 1e3),
        "arch_ms_median": float(np.median(ref) * 1e3),
        "speedup": float(np.median(ref) / np.median(ours)),
    }


def streaming(n_updates: int, repeats: int) -> dict:
    params = np.array([0.05, 0.02, 0.1, 0.88])
    state = np.array([1.0, 0.0, 0.0])
    r = np.random.default_rng(0).standard_normal(n_updates)
    out = np.empty(n_updates)
    garch_variance_update_nb(state, params, 0.1)
    garch_variance_path_nb(state, params, r[:10], out[:10])
    call, loop = [], []
    for _ in range(repeats):
        f = garch_variance_update_nb
        t0 = time.perf_counter()
        for x in r:
            f(state, params, x)
        call.append((time.perf_counter() - t0) / n_updates)
        t0 = time.perf_counter()
        garch_variance_path_nb(state, params, r, out)
        loop.append((time.perf_counter() - t0) / n_updates)
    return {
        "python_call_ns_median": float(np.median(call) * 1e9),
        "in_kernel_loop_ns_median": float(np.median(loop) * 1e9),
        "updates_per_repeat": n_updates,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="120 series only, fewer repeats")
    ap.add_argument("--repeats", type=int, default=None, help="repeats of our batch fit (median reported)")
    args = ap.parse_args()
    repeats = args.repeats or (3 if args.quick else 5)
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    load_start = os.getloadavg()

    sizes = [120] if args.quick else [120, 1000]
    big, _ = simulated(max(sizes))
    cases = [compare(f"simulated GARCH-t, {n} series", big[:n], repeats) for n in sizes]
    btc = btc_windows()
    if btc is not None:
        cases.append(compare(f"BTC/USDT 1h windows, {btc.shape[0]} series", btc, repeats))
    single = single_fit(big[:5], 2 if args.quick else 4)
    stream = streaming(100_000 if args.quick else 1_000_000, 5)

    print(f"\nGARCH(1,1)-t, T = {T} returns per series, max_persistence = 1.0 (CPU shared with other jobs: noisy)")
    head = f"{'case':<36} {'ours s':>8} {'arch s':>8} {'x wall':>7} {'x cpu':>6} {'conv':>9} {'it med/max':>10} {'p95 |da|+|db|':>14} {'max':>9}"
    print(head)
    print("-" * len(head))
    for c in cases:
        print(
            f"{c['case']:<36} {c['ours']['wall_s_median']:8.3f} {c['arch']['wall_s']:8.2f} {c['speedup_wall']:7.1f}"
            f" {c['speedup_cpu']:6.1f} {c['ours_converged']:>4}/{c['n_series']:<4} {c['iterations_median']:4.0f}/{c['iterations_max']:<5}"
            f" {c['dalpha_dbeta_p95']:14.2e} {c['dalpha_dbeta_max']:9.2e}"
        )
    print(
        f"single compiled fit (T={T}): ours {single['ours_ms_median']:.2f} ms, arch {single['arch_ms_median']:.2f} ms,"
        f" x{single['speedup']:.1f} (median of {single['fits']})"
    )
    print(
        f"Numba streaming variance update: {stream['python_call_ns_median']:.0f} ns per call from Python,"
        f" {stream['in_kernel_loop_ns_median']:.1f} ns per update inside a compiled loop"
    )

    OUT.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "benchmark": "garch",
        "started": started,
        "command": "python experiments/bench_garch.py" + (" --quick" if args.quick else ""),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "loadavg_start": load_start, "loadavg_end": os.getloadavg()},
        "versions": {"jax": jax.__version__, "numpy": np.__version__, "arch": __import__("arch").__version__},
        "note": "wall-clock; ours = median over repeats of one fit_many call, arch = one fit per series, summed",
        "cases": cases,
        "single_fit": single,
        "streaming": stream,
    }
    write_json_atomic(OUT, record)
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
