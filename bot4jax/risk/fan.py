"""Monte Carlo fan chart: percentiles of the equity path over time, as numbers, JSON and PNG.

    fan = equity_fan("garch_t", params, jax.random.key(0), n_paths=10_000, n_steps=252)
    write_fan(run_dir / "fan_garch_t", fan, title="GARCH-t, 1 year")   # .png and .json

Equity starts at 1 and is exp(X_t) with X_t the cumulative log-return; at each step the
percentiles are numpy's default (linear) sample percentiles over the paths. The paths are the
ones `simulate_paths` and `sample_log_returns` draw for the same key (path i is the same in all
three), computed in one scan with memory O(paths + steps x percentiles).
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import NamedTuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from bot4jax.jaxcfg import jax, jnp  # noqa: E402
from bot4jax.jsonio import write_json_atomic  # noqa: E402
from bot4jax.risk import counter_rng as crng  # noqa: E402
from bot4jax.risk.mc_stats import quantile_sorted, sort_f64  # noqa: E402
from bot4jax.risk.montecarlo import prepare_inputs, run_block  # noqa: E402

__all__ = ["Fan", "equity_fan", "write_fan", "PERCENTILES"]

PERCENTILES = (1.0, 5.0, 25.0, 50.0, 75.0, 95.0, 99.0)


class Fan(NamedTuple):
    process: str
    n_paths: int
    n_steps: int
    percentiles: tuple          # (q,) in percent
    equity: np.ndarray          # (n_steps + 1, q): row t = percentiles of equity after t steps
    mean: np.ndarray            # (n_steps + 1,) mean equity

    def to_dict(self) -> dict:
        return {"process": self.process, "n_paths": self.n_paths, "n_steps": self.n_steps,
                "percentiles": list(self.percentiles), "step": list(range(self.n_steps + 1)),
                "equity": self.equity.tolist(), "mean": self.mean.tolist()}


@functools.partial(jax.jit, static_argnums=(0, 3, 4, 5))
def _fan(process, params, key, n_paths, n_steps, qs):
    seed = crng.seed_from_key(key)
    paths = jnp.arange(n_paths, dtype=jnp.uint64)

    def fold(x, r, t):
        x = x + r
        eq = jnp.exp(x)
        return x, (quantile_sorted(sort_f64(eq), qs), jnp.mean(eq))

    _, (q, m) = run_block(process, params, seed, paths, n_steps, jnp.zeros(n_paths), fold)
    return q, m


def equity_fan(process, params, key, n_paths: int, n_steps: int,
               percentiles=PERCENTILES) -> Fan:
    """Percentiles (in percent) of the equity over the paths at every step, with step 0 = 1."""
    percentiles = tuple(float(p) for p in percentiles)
    if not all(0.0 <= p <= 100.0 for p in percentiles):
        raise ValueError(f"percentiles must lie in [0, 100], got {percentiles}")
    proc, params, n_paths, n_steps = prepare_inputs(process, params, n_paths, n_steps)
    q, m = _fan(proc, params, key, n_paths, n_steps, tuple(p / 100.0 for p in percentiles))
    equity = np.vstack([np.ones((1, len(percentiles))), np.asarray(q)])
    mean = np.concatenate([[1.0], np.asarray(m)])
    return Fan(proc.name, n_paths, n_steps, percentiles, equity, mean)


def write_fan(path_stem, fan: Fan, title: str | None = None) -> tuple[Path, Path]:
    """Write `<path_stem>.png` (the fan) and `<path_stem>.json` (its numbers); returns both paths."""
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    png, js = stem.with_suffix(".png"), stem.with_suffix(".json")
    steps = np.arange(fan.n_steps + 1)
    qs = list(fan.percentiles)
    fig, ax = plt.subplots(figsize=(9, 4.5))
    # shade symmetric percentile pairs, outermost lightest
    pairs = [(i, len(qs) - 1 - i) for i in range(len(qs) // 2)]
    for k, (lo, hi) in enumerate(pairs):
        ax.fill_between(steps, fan.equity[:, lo], fan.equity[:, hi], color="tab:blue",
                        alpha=0.12 + 0.18 * k / max(len(pairs) - 1, 1),
                        label=f"{qs[lo]:g}-{qs[hi]:g}%", lw=0)
    if len(qs) % 2:
        mid = len(qs) // 2
        ax.plot(steps, fan.equity[:, mid], color="tab:blue", lw=1.5, label=f"{qs[mid]:g}% (median)")
    ax.plot(steps, fan.mean, color="black", lw=1.0, ls="--", label="mean")
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_xlabel("step")
    ax.set_ylabel("equity (start = 1)")
    ax.set_title(title or f"{fan.process}: {fan.n_paths:,} paths")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    write_json_atomic(js, fan.to_dict())
    return png, js
