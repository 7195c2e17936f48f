"""The train job's plots and its one-screen summary in the log."""
from __future__ import annotations

import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

log = logging.getLogger("bot4jax.train")


def importance_chart(path: Path, features: list, aggregated: list, per_member: dict, title: str) -> None:
    """Horizontal bars: the aggregated importance of each feature, with each member's as dots."""
    k = len(features)
    fig, ax = plt.subplots(figsize=(7.5, 0.35 * k + 1.6))
    yk = np.arange(k)[::-1]
    ax.barh(yk, aggregated, color="tab:blue", alpha=0.7, label="ensemble (member-weighted)")
    for (name, d), marker in zip(per_member.items(), "os^dv"):
        ax.plot([d.get(f, np.nan) for f in features], yk, marker, ms=4, ls="none", label=name)
    ax.set_yticks(yk, features)
    ax.axvline(0.0, color="k", lw=0.6)
    ax.set_xlabel("increase of out-of-fold log loss when the feature is permuted (nats)")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def log_summary(m: dict) -> None:
    cv = m["cpcv"]
    fmt = "%-18s log loss %.5f ± %.5f  Brier %.5f  ECE %.4f  AUC %.4f  Sharpe %6.2f ± %.2f"
    for kind, table in (("member", cv["members"]), ("blend", cv["blends"])):
        for name, s in table.items():
            log.info(fmt, f"{kind} {name}", s["log_loss"]["mean"], s["log_loss"]["std"], s["brier"]["mean"],
                     s["ece"]["mean"], s["auc"]["mean"], s["sharpe"]["mean"], s["sharpe"]["std"])
    ch = cv["chosen"]
    log.info("chosen blend: %s (out-of-fold log loss %.5f; best member %s %.5f; beats every member: %s)",
             ch["mode"], ch["log_loss"], ch["best_member"], ch["best_member_log_loss"], ch["beats_every_member"])
    c = cv["calibration"]
    log.info("calibration: Brier %.5f -> %.5f, ECE %.4f -> %.4f", c["before"]["brier"], c["after"]["brier"],
             c["before"]["ece"], c["after"]["ece"])
    o = cv["overfitting"]
    log.info("PBO %s over %d configurations; deflated Sharpe of the chosen blend %s",
             o["pbo"].get("pbo"), len(o["configurations"]), o["deflated_sharpe"].get("dsr"))
    if m.get("sentinel"):
        s = m["sentinel"]
        log.info("leakage sentinel: %s (shuffled-outcome Sharpe %s, threshold %.2f)",
                 "passed" if s["passed"] else "FAILED", ", ".join(f"{v:+.4f}" for v in s["sharpes"]), s["threshold"])
    st = m["strategy"]
    log.info("test span: log loss %.5f (base rate %.5f), Brier %.5f, ECE %.4f, AUC %.4f; strategy Sharpe %.2f, "
             "return %.2f%% (buy and hold %.2f%%)", m["log_loss"], m["log_loss_base_rate"], m["brier"], m["ece"],
             m["auc"], st["sharpe"], 100 * st["total_return"], 100 * st["buy_and_hold_return"])
