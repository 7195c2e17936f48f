"""Both entry points end to end: train on the simulator, replay through the live loop, and the
live probabilities equal the batch predictions for the same bars."""
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bot4jax.data.simulator import simulate
from bot4jax.data.sources import buy_volume_per_bar
from bot4jax.live.__main__ import main as live_main
from bot4jax.registry.checkpoints import load_model
from bot4jax.risk.sizing import LAYER_NAMES
from bot4jax.train.__main__ import main as train_main
from bot4jax.train.ensemble import from_checkpoint, predict_bars
from bot4jax.train.features import feature_matrix

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
LIVE_BARS, LIVE_SEED = 700, 5


def _train(tmp: Path, *flags) -> Path:
    out = tmp / "runs"
    train_main(["--quick", "--no-progress", "--out", str(out), "--checkpoints", str(tmp / "ck"), *flags])
    (run_dir,) = sorted(out.iterdir(), key=lambda p: p.stat().st_mtime)[-1:]
    return run_dir


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    return tmp, _train(tmp, "--seed", "0")


@pytest.fixture(scope="module")
def replayed(trained):
    tmp, _ = trained
    out = tmp / "live"
    # no --model: the newest model in the store
    live_main(["--checkpoints", str(tmp / "ck"), "--out", str(out), "--sim-bars", str(LIVE_BARS),
               "--sim-seed", str(LIVE_SEED), "--no-progress"])
    (run_dir,) = out.iterdir()
    return run_dir


def test_train_writes_a_complete_run(trained):
    tmp, run_dir = trained
    for name in ("config.toml", "metrics.json", "equity.png", "calibration.png", "run.log", "model/model.json"):
        assert (run_dir / name).is_file(), name
    m = json.loads((run_dir / "metrics.json").read_text())
    for key in ("n_train", "n_test", "log_loss", "brier", "accuracy"):
        assert np.isfinite(m[key]), key
    assert m["n_train"] > 2 * m["n_test"] * 0.9 and m["n_test"] > 1000
    assert 0 < m["brier"] < 0.3 and 0.3 < m["accuracy"] < 0.8
    assert np.isfinite(m["strategy"]["sharpe"])
    assert m["test_start"] > 0 and Path(m["checkpoint"]).is_dir()
    index = json.loads((tmp / "ck" / "index.json").read_text())
    assert index[-1]["name"] == run_dir.name


def test_same_seed_same_metrics(trained, tmp_path):
    _, run_dir = trained
    again = _train(tmp_path, "--seed", "0")
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (run_dir, again))
    for key in ("seconds", "checkpoint"):
        a.pop(key), b.pop(key)
    assert a == b


def test_live_replay_summary(replayed):
    s = json.loads((replayed / "summary.json").read_text())
    assert {"decisions", "orders", "fills", "final_equity", "latency_us"} <= set(s)
    assert set(s["latency_us"]) >= {"p50", "p99", "p999"}
    with open(replayed / "decisions.csv") as f:
        first = next(i for i, r in enumerate(csv.DictReader(f)) if r["p_up"])
    assert s["decisions"] == LIVE_BARS - first  # every bar after the warm-up
    assert s["orders"] > 0 and s["fills"] >= s["orders"] - s["open_orders"] and s["open_orders"] <= 1
    assert 0 < s["latency_us"]["p50"] <= s["latency_us"]["p99"] <= s["latency_us"]["p999"]
    with open(replayed / "trades.csv") as f:
        assert len(list(csv.DictReader(f))) == s["fills"]
    with open(replayed / "decisions.csv") as f:
        decided = [r for r in csv.DictReader(f) if r["p_up"]]
    # every decision went through the risk layers; the target never exceeds the leverage cap
    assert {r["binding"] for r in decided} <= set(LAYER_NAMES) | {"none", "invalid_input"}
    assert all(0.0 <= float(r["target"]) <= 1.0 for r in decided)
    assert any(float(r["target"]) > 0 for r in decided)
    assert (replayed / "equity.png").is_file()


def test_live_probabilities_equal_batch_predictions(trained, replayed):
    """The live loop's bar-by-bar probabilities (streaming features, members, blend, calibrator) equal
    the batch computation of the whole ensemble over the same bars."""
    _, run_dir = trained
    with open(replayed / "decisions.csv") as f:
        rows = list(csv.DictReader(f))
    live_p = np.array([float(r["p_up"]) if r["p_up"] else np.nan for r in rows])
    market = simulate(n_bars=LIVE_BARS, timeframe="1m", seed=LIVE_SEED)
    bars = market.bars
    assert [int(r["ts"]) for r in rows] == bars.ts.tolist()
    ck = load_model(run_dir)
    ens = from_checkpoint(ck.params, ck.meta)
    x = feature_matrix(bars, buy_volume_per_bar(bars.ts, market.trades), ens.flow_span)
    batch_p = np.asarray(predict_bars(ens, x, bars.close)["p"], np.float64)
    valid = np.isfinite(live_p)
    assert valid.sum() > LIVE_BARS // 2
    np.testing.assert_array_equal(np.isfinite(batch_p), valid)
    # float32 members agree to ~1e-6; the fitted isotonic calibrator's steep stretches magnify that
    np.testing.assert_allclose(live_p[valid], batch_p[valid], atol=1e-4, rtol=0)


def test_drawdown_breaker_flattens_and_halts(trained, tmp_path):
    _, run_dir = trained
    out = tmp_path / "live"
    live_main(["--model", str(run_dir), "--out", str(out), "--sim-bars", str(LIVE_BARS), "--sim-seed",
               str(LIVE_SEED), "--max-drawdown", "0.0005", "--no-progress"])
    (live_dir,) = out.iterdir()
    s = json.loads((live_dir / "summary.json").read_text())
    assert s["breaker_state"] == "halted" and s["breaker_transitions"]["drawdown:trip"] == 1
    with open(live_dir / "decisions.csv") as f:
        rows = list(csv.DictReader(f))
    halt = next(i for i, r in enumerate(rows) if r["breaker"] == "halted")
    assert all(float(r["target"]) == 0.0 for r in rows[halt:] if r["target"])   # flatten, then nothing new
    assert all(r["action"] in ("sell", "hold") for r in rows[halt:] if r["target"])
    assert abs(float(rows[-1]["position"])) < 1e-12 and abs(s["final_position"]) < 1e-12   # float dust of the sums


def _cli(module, *args, cwd):
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


@pytest.mark.parametrize("module", ["bot4jax.train", "bot4jax.live"])
def test_cli_bad_file_is_one_clear_line(module, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,open,high,low,close,volume\n1000,1,2,0.5,1.5,3\n2000,1,2,0.5,nan,3\n")
    flag = "--data" if module == "bot4jax.train" else "--replay"
    r = _cli(module, flag, str(bad), "--out", str(tmp_path / "o"), "--checkpoints", str(tmp_path / "ck"),
             cwd=tmp_path)
    assert r.returncode != 0
    if module == "bot4jax.live":  # no model yet: that is said first, clearly
        assert "no model in the checkpoint store" in r.stderr
    else:
        assert "bad.csv" in r.stderr and "row 2" in r.stderr and "'close'" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_help_explains_every_flag():
    for module, flag in (("bot4jax.train", "--quick"), ("bot4jax.live", "--replay")):
        r = _cli(module, "--help", cwd=ROOT)
        assert r.returncode == 0 and flag in r.stdout and "usage:" in r.stdout


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is not on this machine")
def test_train_and_replay_on_real_data(tmp_path):
    data = SHARED / "BTC_USDT-5m-2023.json.gz"
    run_dir = _train(tmp_path, "--data", str(data), "--symbol", "BTC/USDT")
    m = json.loads((run_dir / "metrics.json").read_text())
    assert m["timeframe"] == "5m" and m["n_test"] > 3000
    live_main(["--replay", str(data), "--model", str(run_dir), "--out", str(tmp_path / "live"), "--no-progress"])
    (live_dir,) = (tmp_path / "live").iterdir()
    s = json.loads((live_dir / "summary.json").read_text())
    assert s["bars"] == 10_999 and s["decisions"] == 10_999 - 49 and s["final_equity"] > 0


def test_paper_trading_polls_a_venue_and_survives_a_failed_poll(trained, tmp_path):
    """Real ccxt against a local server speaking Binance's REST API, on the wall clock with 1 s candles:
    history primes the features without orders, each candle is decided on once it closes, a failed
    poll (502) is retried, and the simulated venue fills the orders at the venue's prices."""
    from tests.support.binance_rest import BinanceRestServer, Fault, SpotMarket, make_klines

    _, run_dir = trained
    step = 1_000
    start = (int(time.time() * 1000) // step - 230) * step
    rows = make_klines(start, 600, step, seed=4)
    market = SpotMarket("BTC", "USDT", klines={"1s": rows[:1]})
    with BinanceRestServer([market]) as server:
        serve_klines = server.routes["/api/v3/klines"]

        def started_candles_only(params):   # like the venue: no candle before its open time
            market.klines = {"1s": rows[rows[:, 0] <= time.time() * 1000]}
            return serve_klines(params)

        server.routes["/api/v3/klines"] = started_candles_only
        server.inject("/api/v3/klines", 4, Fault.server_error(502))
        out = tmp_path / "paper"
        live_main(["--exchange", "binance", "--api-url", server.url, "--symbol", "BTC/USDT",
                   "--timeframe", "1s", "--poll-seconds", "0.05", "--max-bars", "212",
                   "--model", str(run_dir), "--out", str(out), "--no-progress"])
        assert not server.unexpected
    (live_dir,) = out.iterdir()
    with open(live_dir / "decisions.csv") as f:
        decisions = list(csv.DictReader(f))
    ts = [int(d["ts"]) for d in decisions]
    assert len(ts) == 212 and np.all(np.diff(ts) == step)   # no gap, no repeat
    assert all(d["action"] == "history" for d in decisions[:200])
    live = decisions[200:]
    assert {d["action"] for d in live} <= {"hold", "buy", "sell", "warmup"} and any(d["p_up"] for d in live)
    s = json.loads((live_dir / "summary.json").read_text())
    assert s["bars"] == 212 and s["mode"] == "paper" and s["decisions"] >= 1


def test_ctrl_c_stops_cleanly_and_writes_every_output(trained, tmp_path):
    import signal

    tmp, _ = trained
    out = tmp_path / "live"
    proc = subprocess.Popen([sys.executable, "-m", "bot4jax.live", "--checkpoints", str(tmp / "ck"), "--out", str(out),
                             "--speed", "1", "--sim-bars", "200", "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    deadline = time.time() + 120
    while not list(out.glob("*/decisions.csv")) and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)  # the loop is now waiting for the next bar (one minute at --speed 1)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr and "interrupted" in stderr
    (run_dir,) = out.iterdir()
    s = json.loads((run_dir / "summary.json").read_text())
    assert s["interrupted"] is True and 1 <= s["bars"] < 200
    assert (run_dir / "trades.csv").is_file() and stdout.strip() == str(run_dir)


def test_live_without_api_keys_is_one_clear_error_before_any_order(tmp_path, monkeypatch):
    from bot4jax.errors import ConfigError

    monkeypatch.delenv("BOT4JAX_BINANCE_API_KEY", raising=False)
    monkeypatch.delenv("BOT4JAX_BINANCE_API_SECRET", raising=False)
    with pytest.raises(ConfigError, match="BOT4JAX_BINANCE_API_KEY"):
        live_main(["--live", "--exchange", "binance", "--out", str(tmp_path), "--journal",
                   str(tmp_path / "j.sqlite"), "--no-progress", "--model", "."])
    assert not (tmp_path / "j.sqlite").exists()


def test_a_high_surveillance_alert_stops_new_exposure(trained, tmp_path):
    """A real monitor's high alert, delivered through its subscription, keeps the loop from adding to
    the position for the pause, while the same bars unpaused do buy."""
    import asyncio
    import dataclasses

    from bot4jax.config import LiveConfig
    from bot4jax.data.simulator_surveillance import simulate_surveillance
    from bot4jax.execution.journal import OrderJournal
    from bot4jax.live.breakers import Breakers
    from bot4jax.live.engine import DecisionEngine
    from bot4jax.live.feeds import open_feed
    from bot4jax.live.loop import Loop
    from bot4jax.live.metrics import LiveMetrics
    from bot4jax.live.session import make_venue, open_manager
    from bot4jax.surveillance import SurveillanceMonitor

    _, run_dir = trained
    config = LiveConfig(model=str(run_dir), sim_bars=LIVE_BARS, sim_seed=LIVE_SEED, surveillance_pause_s=1e9)

    async def replay(alert_first: bool, name: str) -> list[dict]:
        venue = make_venue(config)
        journal = OrderJournal(tmp_path / f"{name}.sqlite", durable=False)
        manager = await open_manager(config, venue, journal)
        feed = open_feed(config)
        with open(tmp_path / f"{name}.csv", "w", newline="") as f:
            breakers = Breakers(dataclasses.replace(config.breakers, stale_after_s=1e6))
            loop = Loop(config, DecisionEngine(load_model(run_dir)), venue, manager, journal, breakers,
                        LiveMetrics(), feed.timeframe, f)
            if alert_first:
                monitor = SurveillanceMonitor(audit_log=str(tmp_path / "alerts.jsonl"))
                monitor.subscribe(loop.on_alert)
                monitor.on_events(simulate_surveillance(600.0, seed=3, episodes=("ramping",)).events)
                assert loop.paused_until > 0
            await loop.run(feed, progress=False)
        journal.close()
        with open(tmp_path / f"{name}.csv") as f:
            return list(csv.DictReader(f))

    free = asyncio.run(replay(False, "free"))
    paused = asyncio.run(replay(True, "paused"))
    assert any(r["action"] == "buy" for r in free)
    assert not any(r["action"] == "buy" for r in paused) and all(float(r["position"]) == 0.0 for r in paused)
    assert [r["p_up"] for r in paused] == [r["p_up"] for r in free]   # the same decisions, only held back
