"""Run directories and logging: every run writes `<out>/<run-id>/` with its config, numbers, plots and log."""
from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

from bot4jax import config as cfg
from bot4jax.jsonio import write_json_atomic


def make_run_dir(out: str | Path, kind: str, seed: int | None = None) -> Path:
    """A new directory `<out>/<UTC time>-<kind>[-s<seed>]`, suffixed if that name is taken."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    base = f"{stamp}-{kind}" + (f"-s{seed}" if seed is not None else "")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for i in range(1000):
        p = out / (base if i == 0 else f"{base}-{i}")
        try:
            p.mkdir()
            return p
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a run directory under {out}")


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": round(record.created, 6), "level": record.levelname, "logger": record.name,
                 "message": record.getMessage()}
        entry.update(getattr(record, "fields", {}))
        return json.dumps(entry, default=str)


def setup_logging(run_dir: Path | None, json_lines: bool = False, verbose: bool = False) -> None:
    """Human-readable lines on stderr (JSON lines if asked) and the full log in `<run_dir>/run.log`."""
    logger = logging.getLogger("bot4jax")
    logger.setLevel(logging.DEBUG)
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.DEBUG if verbose else logging.INFO)
    console.setFormatter(_JsonFormatter() if json_lines else logging.Formatter("%(levelname)s %(message)s"))
    logger.addHandler(console)
    if run_dir is not None:
        fh = logging.FileHandler(Path(run_dir) / "run.log")
        fh.setLevel(logging.DEBUG)
        fh.setFormatter(_JsonFormatter() if json_lines else
                        logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        logger.addHandler(fh)
    logger.propagate = False


def write_config(run_dir: Path, config) -> None:
    (Path(run_dir) / "config.toml").write_text(cfg.dumps(config))


def write_json(path: Path, obj) -> None:
    write_json_atomic(path, obj)
