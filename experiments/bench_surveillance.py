"""Benchmark: surveillance detectors, accuracy on planted episodes and speed.

    .venv/bin/python experiments/bench_surveillance.py            # 20 planted hours, 10 clean hours
    .venv/bin/python experiments/bench_surveillance.py --quick    # 4 planted hours, 2 clean hours

Accuracy: fresh seeds (1000 + k, never used while tuning the defaults) of the surveillance simulator,
one hour each with every manipulation planted twice, and clean half-hours (seeds 5000 + k) without
any. Matching rule (bot4jax.surveillance.match): an alert is true when its detector equals an
episode's kind and its [start, end] overlaps the episode's; recall = episodes with >= 1 true alert /
episodes; precision = true alerts / alerts; false alerts per hour on the clean streams. Default config.

Speed: on one planted hour (~300k events) each detector alone (Numba kernel over the whole stream),
all six through `SurveillanceMonitor.on_events` (validation included) in one batch and in batches of
1,000 events, median of the repeats; and, as the reference, the plain-Python implementations of
tests/surveillance/reference.py on the first 50,000 events of the same stream (whose alerts must
equal the kernels'): the ratio is reference time / kernel time per event. Kernels are compiled (or
loaded from cache) before timing. Writes experiments/runs/benchmarks/surveillance.json
(--quick: surveillance_quick.json).
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the plain-Python references live in the tests

from bot4jax.jsonio import write_json_atomic  # noqa: E402
from bot4jax.data.simulator_surveillance import EPISODE_KINDS, simulate_surveillance  # noqa: E402
from bot4jax.surveillance import (  # noqa: E402
    DETECTORS, SurveillanceMonitor, detect, detector_init, detector_update, match, take_events,
)
from bot4jax.surveillance.detectors import event_arrays  # noqa: E402
from tests.surveillance.reference import run_reference  # noqa: E402

OUT = ROOT / "experiments" / "runs" / "benchmarks" / "surveillance.json"


def accuracy(planted_hours: int, clean_halfhours: int) -> dict:
    tot = {k: dict(alerts=0, true_alerts=0, episodes=0, found=0, clean_alerts=0) for k in DETECTORS}
    levels = {k: [] for k in DETECTORS}
    events = 0
    for k in range(planted_hours):
        sim = simulate_surveillance(3_600, seed=1_000 + k, episodes=EPISODE_KINDS * 2)
        alerts = detect(sim.events)
        events += len(sim.events)
        for name, m in match(alerts, sim.episodes).items():
            for f in ("alerts", "true_alerts", "episodes", "found"):
                tot[name][f] += m[f]
        for a in alerts:
            levels[a.detector].append(int(a.level))
    clean_events = 0
    for k in range(clean_halfhours):
        sim = simulate_surveillance(1_800, seed=5_000 + k, episodes=())
        clean_events += len(sim.events)
        for a in detect(sim.events):
            tot[a.detector]["clean_alerts"] += 1
    clean_hours = clean_halfhours / 2
    rows = {}
    for name, t in tot.items():
        rows[name] = {**t,
                      "precision": t["true_alerts"] / t["alerts"] if t["alerts"] else None,
                      "recall": t["found"] / t["episodes"],
                      "clean_alerts_per_hour": t["clean_alerts"] / clean_hours,
                      "levels": {lv: levels[name].count(i) for i, lv in enumerate(
                          ("none", "low", "medium", "high", "critical")) if i}}
    return {"planted_hours": planted_hours, "planted_events": events, "clean_hours": clean_hours,
            "clean_events": clean_events, "per_detector": rows}


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def speed(repeats: int) -> dict:
    sim = simulate_surveillance(3_600, seed=999, episodes=EPISODE_KINDS * 2)
    ev = sim.events
    arrays = event_arrays(ev)
    n = len(ev)
    detect(take_events(ev, slice(0, 20_000)))  # compile or load every kernel
    rows = {}
    head = take_events(ev, slice(0, 50_000))
    for name in DETECTORS:
        t_kernel = timed(lambda: detector_update(detector_init(name), arrays), repeats)
        t_head = timed(lambda: detector_update(detector_init(name), head), repeats)
        t0 = time.perf_counter()
        ref = run_reference(name, head)
        t_ref = time.perf_counter() - t0
        _, mine = detector_update(detector_init(name), head)
        same = sorted((a.ts, a.trigger_id, int(a.level), a.event_ids) for a in mine) == \
            sorted((a["ts"], a["trigger_id"], a["level"], a["event_ids"]) for a in ref)
        rows[name] = {"events_per_s": n / t_kernel, "us_per_event": t_kernel / n * 1e6,
                      "reference_events_per_s": len(head) / t_ref,
                      "ratio_reference_over_kernel": (t_ref / len(head)) / (t_head / len(head)),
                      "alerts_equal_reference": same}

    def monitor(batch):
        mon = SurveillanceMonitor()
        for a in range(0, n, batch):
            mon.on_events(take_events(ev, slice(a, a + batch)))

    t_all = timed(lambda: monitor(n), repeats)
    t_batched = timed(lambda: monitor(1_000), repeats)
    rows["all_six_monitor"] = {"events_per_s": n / t_all, "us_per_event": t_all / n * 1e6}
    rows["all_six_monitor_batches_of_1000"] = {"events_per_s": n / t_batched, "us_per_event": t_batched / n * 1e6}
    return {"events": n, "repeats": repeats, "per_detector": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="4 planted hours, 2 clean hours, 3 repeats")
    args = ap.parse_args()
    planted, clean, repeats = (4, 4, 3) if args.quick else (20, 20, 5)

    acc = accuracy(planted, clean)
    spd = speed(repeats)

    print(f"accuracy: {acc['planted_hours']} planted hours ({acc['planted_events']:,} events), "
          f"{acc['clean_hours']:.0f} clean hours ({acc['clean_events']:,} events), default config")
    head = f"{'detector':<19}{'episodes':>9}{'found':>7}{'recall':>8}{'alerts':>8}{'true':>6}{'precision':>10}" \
           f"{'clean FP/h':>11}"
    print(head)
    print("-" * len(head))
    for name, r in acc["per_detector"].items():
        prec = f"{r['precision']:.3f}" if r["precision"] is not None else "-"
        print(f"{name:<19}{r['episodes']:>9}{r['found']:>7}{r['recall']:>8.3f}{r['alerts']:>8}{r['true_alerts']:>6}"
              f"{prec:>10}{r['clean_alerts_per_hour']:>11.2f}")
    print()
    print(f"speed: {spd['events']:,} events, median of {repeats}; reference = plain Python on the first 50,000")
    head = f"{'detector':<33}{'events/s':>14}{'us/event':>10}{'ref events/s':>14}{'ratio':>8}{'equal':>7}"
    print(head)
    print("-" * len(head))
    for name, r in spd["per_detector"].items():
        extra = (f"{r['reference_events_per_s']:>14,.0f}{r['ratio_reference_over_kernel']:>8.0f}"
                 f"{str(r['alerts_equal_reference']):>7}") if "reference_events_per_s" in r else ""
        print(f"{name:<33}{r['events_per_s']:>14,.0f}{r['us_per_event']:>10.3f}{extra}")
    print("ratio = reference time / kernel time per event; timings on a shared machine are noisy")

    OUT.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "benchmark": "surveillance: precision / recall per detector on planted episodes, false alerts on clean "
                     "streams, events per second per detector and all together",
        "quick": args.quick,
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpu_count": os.cpu_count()},
        "accuracy": acc,
        "speed": spd,
    }
    out = OUT.with_name("surveillance_quick.json") if args.quick else OUT
    write_json_atomic(out, doc)
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
