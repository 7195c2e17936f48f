"""Benchmark: one live decision of the whole ensemble (`bot4jax.live.engine.DecisionEngine.on_bar`).

    .venv/bin/python experiments/bench_engine.py --model RUN_DIR      # a trained run or checkpoint
    .venv/bin/python experiments/bench_engine.py                      # newest in checkpoints/, else a
                                                                      # --quick train into a temp dir
    .venv/bin/python experiments/bench_engine.py --quick              # fewer bars and repeats

Each repeat builds a fresh engine and replays the same simulated bars (with their order flow)
through it, timing every `on_bar` after the features' warm-up with `perf_counter_ns`; reported are
the medians over repeats of the p50, p99 and p99.9 per decision, against the 1 ms budget
(ratio = p99 / 1000 us). The parts of a decision are timed the same way on their own: the
bar-feature kernel, the flow update, the one jitted call over every member (with the LSTM's
streaming step), the blend, the calibrator. For reference, the batch twin `predict_bars` over the
same bars, per row. Writes experiments/runs/benchmarks/engine.json (engine_quick.json with --quick).
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "experiments" / "runs" / "benchmarks"
BUDGET_US = 1000.0


def _model(arg: str | None) -> tuple[Path, str]:
    from bot4jax.registry.checkpoints import CheckpointError, CheckpointStore

    if arg:
        return Path(arg), "given"
    try:
        return CheckpointStore(ROOT / "checkpoints").latest(), "newest in checkpoints/"
    except CheckpointError:
        tmp = Path(tempfile.mkdtemp(prefix="bench_engine_"))
        subprocess.run([sys.executable, "-m", "bot4jax.train", "--quick", "--no-progress", "--out", str(tmp / "runs"),
                        "--checkpoints", str(tmp / "ck")], check=True, cwd=ROOT)
        return next((tmp / "runs").iterdir()), "a --quick train (small LSTM)"


def _pct(a, q):
    return float(np.percentile(a, q))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--bars", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=None)
    args = ap.parse_args()
    n_bars = args.bars or (1000 if args.quick else 5000)
    repeats = args.repeats or (3 if args.quick else 7)

    from bot4jax.data.simulator import simulate
    from bot4jax.jaxcfg import jax
    from bot4jax.kernels.features_nb import features_init, features_update_nb
    from bot4jax.live.engine import DecisionEngine
    from bot4jax.registry.checkpoints import load_model
    from bot4jax.train.ensemble import predict_bars
    from bot4jax.data.sources import buy_volume_per_bar
    from bot4jax.train.features import feature_matrix, flow_init, flow_update

    path, origin = _model(args.model)
    ck = load_model(path)
    m = simulate(n_bars=n_bars, timeframe="1m", seed=11)
    b = m.bars
    bv = buy_volume_per_bar(b.ts, m.trades)
    cols = [c.tolist() for c in (b.close, b.high, b.low, b.volume, bv)]

    per = {k: [] for k in ("decision_p50", "decision_p99", "decision_p999", "features", "flow", "members",
                           "blend", "calibration", "batch_per_row")}
    for _ in range(repeats):
        engine = DecisionEngine(ck)
        lat = []
        for c, h, lo, v, q in zip(*cols):
            t0 = time.perf_counter_ns()
            p = engine.on_bar(c, h, lo, v, q)
            lat.append(time.perf_counter_ns() - t0)
            if p != p:
                lat.pop()
        lat = np.array(lat) / 1000.0
        per["decision_p50"].append(_pct(lat, 50))
        per["decision_p99"].append(_pct(lat, 99))
        per["decision_p999"].append(_pct(lat, 99.9))

        # the parts on their own, in the same order and on the same bars
        ens = engine.ensemble
        state, row, fstate = features_init(), np.zeros(len(ens.features)), flow_init()
        t_feat, t_flow, t_mem, t_blend, t_cal = [], [], [], [], []
        e2 = DecisionEngine(ck)
        for c, h, lo, v, q in zip(*cols):
            t0 = time.perf_counter_ns()
            ok = features_update_nb(state, c, h, lo, v, row)
            t1 = time.perf_counter_ns()
            if e2.with_flow:
                flow_update(fstate, v, q, ens.flow_span, row[10:])
            t2 = time.perf_counter_ns()
            if not ok:
                continue
            P, e2.lstm_state = e2.step(e2.params, e2.lstm_state, row)
            P = np.asarray(P)
            t3 = time.perf_counter_ns()
            bl = e2._blend(P, c)
            t4 = time.perf_counter_ns()
            min(max(float(np.interp(bl, e2.xk, e2.yk)), ens.clip), 1 - ens.clip)
            t5 = time.perf_counter_ns()
            t_feat.append(t1 - t0), t_flow.append(t2 - t1), t_mem.append(t3 - t2), t_blend.append(t4 - t3)
            t_cal.append(t5 - t4)
        for k, v in (("features", t_feat), ("flow", t_flow), ("members", t_mem), ("blend", t_blend),
                     ("calibration", t_cal)):
            per[k].append(_pct(np.array(v) / 1000.0, 50))

        x = feature_matrix(b, bv if engine.with_flow else None, ens.flow_span)
        t0 = time.perf_counter()
        jax.block_until_ready(predict_bars(ens, x, b.close)["p"])
        per["batch_per_row"].append((time.perf_counter() - t0) * 1e6 / n_bars)

    med = {k: float(np.median(v)) for k, v in per.items()}
    result = {
        "what": "one live decision of the saved ensemble: features -> members -> blend -> calibrator",
        "model": str(ck.path), "model_origin": origin,
        "members": [s.name for s in ens.specs],
        "blend_mode": ck.meta["blend"]["mode"], "lstm": next((mm for mm in ck.meta["members"] if mm["kind"] == "lstm"), None),
        "bars": n_bars, "repeats": repeats, "unit": "microseconds, median over repeats",
        "decision": {"p50": med["decision_p50"], "p99": med["decision_p99"], "p999": med["decision_p999"]},
        "parts_p50": {k: med[k] for k in ("features", "flow", "members", "blend", "calibration")},
        "budget_us": BUDGET_US, "p99_over_budget": med["decision_p99"] / BUDGET_US,
        "reference_batch_predict_bars_per_row_us": med["batch_per_row"],
        "p50_over_batch_per_row": med["decision_p50"] / med["batch_per_row"],
        "machine": {"python": platform.python_version(), "processor": platform.processor(),
                    "cpus": __import__("os").cpu_count()},
        "note": "timings on a shared machine are noisy; rerun on an idle one for the record",
    }
    print(f"model: {ck.path} ({origin}); members {result['members']}, blend {result['blend_mode']}")
    print(f"{'part':<28}{'p50 us':>10}")
    for k, v in result["parts_p50"].items():
        print(f"{k:<28}{v:>10.1f}")
    d = result["decision"]
    print(f"{'decision (on_bar)':<28}{d['p50']:>10.1f}   p99 {d['p99']:.1f}   p99.9 {d['p999']:.1f}   "
          f"p99 / 1 ms budget = {result['p99_over_budget']:.3f}")
    print(f"{'batch twin, per row':<28}{med['batch_per_row']:>10.1f}")
    OUT.mkdir(parents=True, exist_ok=True)
    out = OUT / ("engine_quick.json" if args.quick else "engine.json")
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
