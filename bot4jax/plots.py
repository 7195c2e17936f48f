"""PNG plots written beside the JSON of the numbers they show."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from bot4jax.validation.scoring import reliability  # noqa: E402


def _dates(ts_ms: np.ndarray):
    return np.asarray(ts_ms, dtype="datetime64[ms]")


def equity_curve(path: Path, ts_ms: np.ndarray, curves: dict[str, np.ndarray], title: str) -> None:
    """One line per named equity curve over time (UTC), with the worst drawdown of the first shaded."""
    fig, ax = plt.subplots(figsize=(9, 4.5))
    t = _dates(ts_ms)
    for name, eq in curves.items():
        ax.plot(t, eq, label=name, lw=1.2)
    first = next(iter(curves.values()))
    peak = np.maximum.accumulate(first)
    ax.fill_between(t, first, peak, color="tab:red", alpha=0.15, label="drawdown")
    ax.set_title(title)
    ax.set_ylabel("equity")
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def reliability_diagram(path: Path, p: np.ndarray, y: np.ndarray, title: str, bins: int = 10) -> None:
    """Observed frequency against mean predicted probability per bin, with the bin counts below."""
    mean_p, freq, count = reliability(p, y, bins)
    fig, (ax, axc) = plt.subplots(2, 1, figsize=(5.5, 6), sharex=True,
                                  gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="perfect")
    ok = count > 0
    ax.plot(mean_p[ok], freq[ok], "o-", label="model")
    ax.set_ylabel("observed frequency of up")
    ax.set_title(title)
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    axc.bar((np.arange(bins) + 0.5) / bins, count, width=0.9 / bins)
    axc.set_xlabel("predicted P(up)")
    axc.set_ylabel("count")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
