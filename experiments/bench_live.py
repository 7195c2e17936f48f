"""Decision latency and memory of the live loop over a replay (the backtest path is the live path).

    .venv/bin/python experiments/bench_live.py [--model RUN] [--bars 3600] [--timeframe 1s] [--repeats 3]

Replays simulator bars through `python -m bot4jax.live` (in-process, `run_live`) with the simulated
venue, the order manager and its SQLite journal (non-durable in a replay; the durable intent write of
--live is timed separately), the breakers and the metrics. Reports per-event decision latency
(bar in -> order out, model included; the full cycle with the answer's bookkeeping beside it)
p50 / p99 / p99.9 as medians over the repeats, the Numba
risk-and-order part alone (risk clamps kernel + pre-trade check and order submit kernel), the durable
journal write, and the resident memory after each replay (3,600 one-second bars = one hour of live
decisions at one per second). Without --model a quick model is trained first. Writes
experiments/runs/benchmarks/live.json.
"""
from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bot4jax.config import LiveConfig
from bot4jax.execution.base import OrderRequest
from bot4jax.execution.journal import OrderJournal
from bot4jax.kernels import orders_nb as nb
from bot4jax.execution.orders import OrderLimits, limits_record
from bot4jax.live.loop import run_live
from bot4jax.risk.sizing import RiskClamps, RiskConfig

OUT = Path(__file__).resolve().parent / "runs" / "benchmarks"


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return math.nan


def numba_risk_and_order(n: int = 20_000) -> dict:
    """The per-decision Numba work: the eight clamp layers + the pre-trade check and order submit."""
    clamps = RiskClamps(RiskConfig())
    book = nb.init_book(1024)
    limits = limits_record(OrderLimits(), 1e-8)[0]
    acct = np.zeros(1, nb.ACCOUNT_DTYPE)[0]
    acct["position"], acct["quote"], acct["mark"] = 0.0, 1e9, 40_000.0
    times = np.empty(n)
    for i in range(n):
        t0 = time.perf_counter_ns()
        clamps.size(0.56, 1.1, 0.55, 0.07, 0.08)
        slot = nb.risk_submit_nb(book, limits, acct, 1, nb.T_MARKET, nb.TIF_GTC, 0, 100_000, math.nan, math.nan,
                                 nb.NO_EXPIRY, 0, 0, False)
        times[i] = (time.perf_counter_ns() - t0) / 1000.0
        nb.release_nb(book, slot)
    times = times[n // 10:]
    return {"p50_us": float(np.percentile(times, 50)), "p99_us": float(np.percentile(times, 99)),
            "p999_us": float(np.percentile(times, 99.9))}


def durable_intent(tmp: Path, n: int = 300) -> dict:
    times = np.empty(n)
    with OrderJournal(tmp / "durable.sqlite", durable=True) as journal:
        for i in range(n):
            req = OrderRequest(f"b4jbench{i}", "BTC/USDT", 1, "market", 0.01)
            t0 = time.perf_counter_ns()
            journal.record_intent(req)
            times[i] = (time.perf_counter_ns() - t0) / 1000.0
    return {"p50_us": float(np.percentile(times, 50)), "p99_us": float(np.percentile(times, 99))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="a train run directory (default: train a quick one)")
    ap.add_argument("--bars", type=int, default=3_600)
    ap.add_argument("--timeframe", default="1s")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="b4j-bench-live-"))
    model = args.model
    if not model:   # trained in its own process: the memory figures are the replay's alone
        model = subprocess.run([sys.executable, "-m", "bot4jax.train", "--quick", "--no-progress", "--out",
                                str(tmp / "runs"), "--checkpoints", str(tmp / "ck")], check=True,
                               capture_output=True, text=True).stdout.strip().splitlines()[-1]
    runs, rss = [], []
    for r in range(args.repeats):
        config = LiveConfig(model=model, out=str(tmp / "live"), sim_bars=args.bars, timeframe=args.timeframe,
                            sim_seed=100 + r)
        run_dir = run_live(config, progress=False)
        rss.append(rss_mb())
        s = json.loads((run_dir / "summary.json").read_text())
        runs.append(s)
    lat = {q: statistics.median(s["latency_us"][q] for s in runs) for q in ("p50", "p99", "p999")}
    cyc = {q: statistics.median(s["cycle_us"][q] for s in runs) for q in ("p50", "p99", "p999")}
    result = {
        "bars_per_replay": args.bars, "timeframe": args.timeframe, "repeats": args.repeats, "model": model,
        "decision_latency_us_median_of_runs": lat,
        "decision_cycle_us_median_of_runs": cyc,
        "per_run": [{k: s[k] for k in ("decisions", "orders", "fills", "latency_us", "cycle_us")} for s in runs],
        "numba_risk_and_order_us": numba_risk_and_order(),
        "durable_journal_intent_us": durable_intent(tmp),
        "rss_mb_after_each_replay": rss,
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "targets": {"decision_p99_us": 1000.0, "numba_risk_and_order_us": 10.0, "rss_mb": 1024.0},
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "live.json").write_text(json.dumps(result, indent=2))
    n = result["numba_risk_and_order_us"]
    cycle = "decision + bookkeeping of the answer (us)"
    print(f"{'measure':<44}{'p50':>10}{'p99':>10}{'p99.9':>10}")
    print(f"{'decision latency, bar in -> order out (us)':<44}{lat['p50']:>10.1f}{lat['p99']:>10.1f}{lat['p999']:>10.1f}")
    print(f"{cycle:<44}{cyc['p50']:>10.1f}{cyc['p99']:>10.1f}{cyc['p999']:>10.1f}")
    print(f"{'Numba risk clamps + order submit (us)':<44}{n['p50_us']:>10.2f}{n['p99_us']:>10.2f}{n['p999_us']:>10.2f}")
    d = result["durable_journal_intent_us"]
    print(f"{'durable journal intent, --live (us)':<44}{d['p50_us']:>10.1f}{d['p99_us']:>10.1f}")
    print(f"resident memory after each {args.bars}-bar replay: {', '.join(f'{x:.0f}' for x in rss)} MB "
          f"(peak {result['max_rss_mb']:.0f} MB)")
    print(f"written to {OUT / 'live.json'}")


if __name__ == "__main__":
    main()
