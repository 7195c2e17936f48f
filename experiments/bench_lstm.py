"""Benchmark: the attention LSTM (ours, JAX / Flax) against an equivalent PyTorch module, on CPU.

    .venv/bin/python experiments/bench_lstm.py            # default threads and 1 thread, 15 repeats
    .venv/bin/python experiments/bench_lstm.py --quick    # 5 repeats, fewer stream steps

Sizes: sequence 64 x 32 features, hidden 64, 8 heads, attention over all 64 rows (window 64, no
burn-in). Timed, as medians over repeats (each repeat times ours and PyTorch back to back, so both
see the same machine load):
- forward at batch 1 and at batch 256: ours is `predict_proba` (float64 windows in, standardised
  inside), PyTorch is the module under `torch.inference_mode()` on float32 tensors;
- one training step at batch 256: forward, binary cross-entropy, backward, gradient clipping and an
  AdamW update (ours: `train_step`, the step `fit` runs; PyTorch: zero_grad / backward / clip /
  step);
- the streaming step (`stream_step`, one row in, P(up) out, synchronised): p50 and p99 over many
  rows. PyTorch has no counterpart (its LSTM would rerun the window).
The PyTorch module gets our weights, and the benchmark first checks that both give the same
probabilities (max |diff| is reported), so the two compute the same function.

Threads: each configuration runs in its own process. "default": PyTorch uses
torch.get_num_threads() threads (reported) and ours splits batches over as many threads as there
are usable cores (`default_workers()`, reported; XLA runs each call's LSTM loop on one core).
"1 thread": torch.set_num_threads(1), ours with workers=1 and XLA_FLAGS="--xla_cpu_multi_thread_eigen=false
intra_op_parallelism_threads=1" (benchmark only: the library sets no XLA flag). Unless the caller
sets it, OMP_WAIT_POLICY=PASSIVE is set for both processes: PyTorch's OpenMP threads then sleep
instead of spinning at barriers, which on a shared, loaded machine keeps its 2-thread timings from
collapsing (10x slower forward passes were seen with the default spinning); it does not affect XLA.
PyTorch is a benchmark-only dependency. Writes experiments/runs/benchmarks/lstm.json (or
lstm_quick.json).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

from bot4jax.jsonio import write_json_atomic
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "experiments" / "runs" / "benchmarks" / "lstm.json"
B, T, F, H, HEADS = 256, 64, 32, 64, 8
SINGLE_THREAD_XLA = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def torch_module(params):
    """The same function in PyTorch, weights copied from our parameters."""
    import numpy as np
    import torch
    from torch import nn

    net = {k: v for k, v in params["net"].items()}
    t = lambda a: torch.tensor(np.asarray(a, dtype=np.float32))  # noqa: E731

    class TorchAttentionLSTM(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm1 = nn.LSTM(F, H, batch_first=True)
            self.lstm2 = nn.LSTM(H, H, batch_first=True)
            self.ln1 = nn.LayerNorm(H, eps=1e-5)
            self.attn = nn.MultiheadAttention(H, HEADS, batch_first=True)
            self.ln2 = nn.LayerNorm(H, eps=1e-5)
            self.head = nn.Linear(H, 1)
            self.register_buffer("pe", t(params["pe"]))
            self.register_buffer("mean", t(params["scaler"]["mean"]))
            self.register_buffer("std", t(params["scaler"]["std"]))

        def forward(self, x):                     # x (B, T, F) float32, raw features
            z = (x - self.mean) / self.std
            h1, _ = self.lstm1(z)
            h2, _ = self.lstm2(h1)
            a = self.ln1(h1 + h2) + self.pe[-x.shape[1]:]
            q = a[:, -1:]
            o, _ = self.attn(q, a, a, need_weights=False)
            return self.head(self.ln2(q[:, 0] + o[:, 0]))[:, 0]

    m = TorchAttentionLSTM()
    with torch.no_grad():
        for name, lstm in (("lstm1", m.lstm1), ("lstm2", m.lstm2)):
            lstm.weight_ih_l0.copy_(t(net[name]["w_ih"]).T)
            lstm.weight_hh_l0.copy_(t(net[name]["w_hh"]).T)
            lstm.bias_ih_l0.copy_(t(net[name]["b"]))
            lstm.bias_hh_l0.zero_()
        for name, ln in (("ln1", m.ln1), ("ln2", m.ln2)):
            ln.weight.copy_(t(net[name]["scale"]))
            ln.bias.copy_(t(net[name]["bias"]))
        a = net["attn"]
        # torch rows: output feature (head n, dim d); columns: input feature h
        wq = t(a["wq"]).reshape(H, H).T                           # (H, n, d) -> (n d, H)
        wk = t(a["wk"]).reshape(H, H)                             # (n, d, H) -> (n d, H)
        wv = t(a["wv"]).permute(0, 2, 1).reshape(H, H)            # (n, H, d) -> (n d, H)
        m.attn.in_proj_weight.copy_(torch.cat([wq, wk, wv]))
        m.attn.in_proj_bias.copy_(torch.cat([t(a[b]).reshape(H) for b in ("bq", "bk", "bv")]))
        m.attn.out_proj.weight.copy_(t(a["wo"]).reshape(H, H).T)
        m.attn.out_proj.bias.copy_(t(a["bo"]))
        m.head.weight.copy_(t(net["head"]["kernel"]).T)
        m.head.bias.copy_(t(net["head"]["bias"]))
    return m


def worker(repeats: int, stream_rows: int, single_thread: bool) -> dict:
    import numpy as np
    import torch

    from bot4jax.jaxcfg import jax, jnp
    from bot4jax.models import attention_lstm as al
    from bot4jax.models.attention_lstm_train import init_optimiser, train_step

    if single_thread:
        torch.set_num_threads(1)
    workers = 1 if single_thread else al.default_workers()
    rng = np.random.default_rng(0)
    mean, std = rng.normal(size=F), rng.uniform(0.5, 2.0, F)
    x = mean + std * rng.normal(size=(B, T, F))                   # float64, as features arrive
    y = (rng.uniform(size=B) < 0.5).astype(np.float32)
    w = np.ones(B, np.float32)
    x1 = x[:1]
    config = al.AttentionLSTMConfig(hidden=H, heads=HEADS, window=T, burn_in=0)
    params = al.init_params(jax.random.PRNGKey(0), F, config, mean, std)
    net, rest = params["net"], {k: v for k, v in params.items() if k != "net"}

    tm = torch_module(params)
    tx, tx1, ty = torch.tensor(x, dtype=torch.float32), torch.tensor(x1, dtype=torch.float32), torch.tensor(y)
    with torch.inference_mode():
        diff = float(np.max(np.abs(al.predict_proba(params, x) - torch.sigmoid(tm(tx)).numpy())))
    topt = torch.optim.AdamW(tm.parameters(), lr=1e-3, weight_decay=1e-4)

    def torch_step():
        topt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(tm(tx), ty)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(tm.parameters(), 1.0)
        topt.step()
        return loss

    state = {"net": jax.tree_util.tree_map(jnp.copy, net), "opt": init_optimiser(net, config)}

    def ours_step():
        state["net"], state["opt"], loss = train_step(state["net"], state["opt"], rest, x, y, w, workers)
        return float(loss)

    def torch_fwd(xx):
        with torch.inference_mode():
            return tm(xx)

    cases = {
        "forward b=1": (lambda: al.predict_proba(params, x1), lambda: torch_fwd(tx1), 50),
        "forward b=256": (lambda: al.predict_proba(params, x, workers=workers), lambda: torch_fwd(tx), 3),
        "train step b=256": (ours_step, torch_step, 1),
    }
    rows = []
    for name, (ours, theirs, inner) in cases.items():
        for _ in range(3):                                           # compile and warm up
            ours(), theirs()
        t_ours, t_torch = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(inner):
                ours()
            t1 = time.perf_counter()
            for _ in range(inner):
                theirs()
            t2 = time.perf_counter()
            t_ours.append((t1 - t0) / inner)
            t_torch.append((t2 - t1) / inner)
        o, p = float(np.median(t_ours)) * 1e3, float(np.median(t_torch)) * 1e3
        rows.append({"case": name, "ours_ms": o, "torch_ms": p, "ratio_torch_over_ours": p / o})

    feed = mean + std * rng.normal(size=(stream_rows + 200, F))
    s = al.stream_init(params)
    for r in feed[:200]:
        p, s = al.stream_step(params, s, r)
    float(p)
    lat = np.empty(stream_rows)
    for i, r in enumerate(feed[200:]):
        t0 = time.perf_counter()
        p, s = al.stream_step(params, s, r)
        float(p)
        lat[i] = time.perf_counter() - t0
    stream = {"rows": stream_rows, "p50_us": float(np.percentile(lat, 50) * 1e6),
              "p90_us": float(np.percentile(lat, 90) * 1e6), "p99_us": float(np.percentile(lat, 99) * 1e6)}
    return {"single_thread": single_thread, "torch_threads": torch.get_num_threads(), "our_workers": workers,
            "xla_flags": os.environ.get("XLA_FLAGS", ""), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
            "jax_version": jax.__version__,
            "torch_version": torch.__version__, "max_abs_diff_probs": diff, "results": rows,
            "stream": stream, "load_avg_1m_at_end": os.getloadavg()[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="5 repeats, 2,000 stream rows")
    ap.add_argument("--worker", choices=["default", "single"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    repeats, stream_rows = (5, 2_000) if args.quick else (15, 10_000)
    if args.worker:
        print(json.dumps(worker(repeats, stream_rows, args.worker == "single")))
        return

    runs = {}
    for mode in ("default", "single"):
        env = dict(os.environ)
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        if mode == "single":
            env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + SINGLE_THREAD_XLA).strip()
        cmd = [sys.executable, __file__, "--worker", mode] + (["--quick"] if args.quick else [])
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        runs[mode] = json.loads(done.stdout.strip().splitlines()[-1])

    head = f"{'threads':<24}{'case':<20}{'ours ms':>10}{'torch ms':>10}{'torch/ours':>12}"
    print(head)
    print("-" * len(head))
    for mode, run in runs.items():
        label = f"torch {run['torch_threads']}, ours {run['our_workers']}"
        for r in run["results"]:
            print(f"{label:<24}{r['case']:<20}{r['ours_ms']:>10.3f}{r['torch_ms']:>10.3f}"
                  f"{r['ratio_torch_over_ours']:>12.2f}")
        s = run["stream"]
        print(f"{label:<24}{'stream step':<20}  p50 {s['p50_us']:.0f} us, p90 {s['p90_us']:.0f} us, "
              f"p99 {s['p99_us']:.0f} us over {s['rows']} rows")
        print(f"{label:<24}max |P ours - P torch| = {run['max_abs_diff_probs']:.2e}, "
              f"load average at end {run['load_avg_1m_at_end']:.2f}")
    print("times: medians over repeats; ratio > 1 means ours is faster")

    OUT.parent.mkdir(parents=True, exist_ok=True)
    doc = {"benchmark": "attention LSTM (JAX/Flax) vs equivalent PyTorch module, CPU",
           "sizes": {"batch": B, "sequence": T, "features": F, "hidden": H, "heads": HEADS},
           "quick": args.quick, "repeats": repeats,
           "machine": {"platform": platform.platform(), "python": platform.python_version(),
                       "cpu_count": os.cpu_count()},
           "runs": runs}
    out = OUT.with_name("lstm_quick.json") if args.quick else OUT
    write_json_atomic(out, doc)
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
