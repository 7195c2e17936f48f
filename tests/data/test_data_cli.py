"""`python -m bot4jax.data`: download against the local Binance server, inspect, and one-line errors."""
from __future__ import annotations

import subprocess
import sys

import ccxt
import numpy as np
import pytest

from bot4jax.cli import run_cli
from bot4jax.data.__main__ import PROG, main, parser
from bot4jax.data.store import ParquetStore
from bot4jax.errors import DataError
from tests.support.binance_rest import BinanceRestServer, SpotMarket, make_agg_trades, make_klines

T0 = 1_704_067_200_000  # 2024-01-01 UTC
MIN = 60_000


@pytest.fixture(scope="module")
def venue():
    market = SpotMarket("BTC", "USDT", klines={"1m": make_klines(T0, 250, MIN, seed=1)},
                        trades=make_agg_trades(T0, 300, seed=2))
    with BinanceRestServer([market]) as server:
        yield server
        assert server.unexpected == []


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "bot4jax.data", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def test_download_then_resume_through_the_cli(venue, tmp_path):
    args = ["download", "--symbol", "BTC/USDT", "--since", "2024-01-01", "--until", "2024-01-01T03:00",
            "--api-url", venue.url, "--no-progress"]
    r = cli(*args, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("180 new 1m candles of BTC/USDT from binance in data/binance/BTC-USDT/bars/1m.parquet")
    bars = ParquetStore(tmp_path / "data").read("binance", "BTC/USDT", "bars", "1m")
    rows = venue.markets["BTCUSDT"].klines["1m"][:180]
    np.testing.assert_array_equal(bars.ts, rows[:, 0].astype(np.int64))
    np.testing.assert_array_equal(bars.close, rows[:, 4])

    n = len(venue.requests)
    r = cli(*args, "--store", "data", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("0 new 1m candles") and len(venue.requests) == n  # nothing left to ask for

    r = cli("download", "--symbol", "BTC/USDT", "--since", str(T0), "--trades", "--store", str(tmp_path / "s"),
            "--api-url", venue.url, "--no-progress")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("300 new trades of BTC/USDT")
    got = ParquetStore(tmp_path / "s").read("binance", "BTC/USDT", "trades", "tick")
    np.testing.assert_array_equal(got.id, venue.markets["BTCUSDT"].trades.ids)


def test_venue_errors_are_one_line_without_traceback(venue, tmp_path):
    r = cli("download", "--symbol", "DOGE/USDT", "--since", "2024-01-01", "--api-url", venue.url,
            "--no-progress", cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        "python -m bot4jax.data: error: binance has no market 'DOGE/USDT' (loaded market types: spot); symbols "
        "look like 'BTC/USDT' (spot) or 'BTC/USDT:USDT' (perpetual)"]
    assert "Traceback" not in r.stderr and not (tmp_path / "data").exists()


def test_usage_errors_exit_2_and_bad_values_exit_1(tmp_path, capsys):
    r = cli("download", "--since", "2024-01-01", cwd=tmp_path)
    assert r.returncode == 2 and "the following arguments are required: --symbol" in r.stderr
    assert run_cli(main, ["download", "--symbol", "BTC/USDT", "--since", "yesterday"], prog=PROG) == 1
    assert capsys.readouterr().err.strip() == (
        "python -m bot4jax.data: error: time 'yesterday' is not a date like 2024-01-01 or 2024-01-01T12:30, "
        "nor ms since 1970")
    argv = ["download", "--symbol", "BTC/USDT", "--since", "2024-01-02", "--until", "2024-01-01"]
    assert run_cli(main, argv, prog=PROG) == 1
    assert "--until 2024-01-01 is not after --since 2024-01-02" in capsys.readouterr().err
    argv = ["download", "--exchange", "nosuchvenue", "--symbol", "BTC/USDT", "--since", "2024-01-01"]
    assert run_cli(main, argv, prog=PROG) == 1
    assert "unknown exchange 'nosuchvenue'" in capsys.readouterr().err


def test_help_explains_every_flag():
    text = parser()._subparsers._group_actions[0].choices["download"].format_help()
    for flag in ("--exchange", "--symbol", "--timeframe", "--since", "--until", "--trades", "--store", "--repair",
                 "--api-url", "--rate-limit", "--page-limit", "--no-progress"):
        assert flag in text
    assert "default ./data" in text and "testnet" in text
    r = cli("inspect", "--help")
    assert r.returncode == 0 and "--repair" in r.stdout and "--kind" in r.stdout


def test_inspect_summarises_a_store_file(tmp_path):
    rows = make_klines(T0, 100, MIN, seed=4)
    keep = np.r_[0:40, 45:100]  # five bars missing
    from bot4jax.data.types import Bars
    bars = Bars(rows[keep, 0].astype(np.int64), *(rows[keep, j] for j in range(1, 6)))
    path = ParquetStore(tmp_path).write("binance", "BTC/USDT", "bars", "1m", bars)
    r = cli("inspect", str(path))
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "kind: bars (1m)", "rows: 95", "span: 2024-01-01T00:00:00.000Z .. 2024-01-01T01:39:00.000Z",
        "gaps: 1 (5 missing bars; longest 5 bars after 2024-01-01T00:39:00.000Z)",
        f"repair: {path}: 95 rows, all valid"]


def test_inspect_a_malformed_file_is_one_line(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("date,open,high,low,close,volume\n"
                   "2024-01-01 00:00:00,10,11,9,10.5,1\n"
                   "2024-01-01 00:01:00,10,8,9,10.5,1\n")
    r = cli("inspect", str(bad))
    assert r.returncode == 1 and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"python -m bot4jax.data: error: {bad}, row 2, field 'high'")
    r = cli("inspect", str(bad), "--repair")
    assert r.returncode == 0 and "rows: 1" in r.stdout and "dropped 1 of 2 rows" in r.stdout
    r = cli("inspect", str(tmp_path / "missing.parquet"))
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "missing.parquet" in r.stderr


def test_run_cli_turns_expected_errors_into_one_line(capsys):
    def boom(exc):
        def main(argv):
            raise exc
        return main

    assert run_cli(boom(DataError("f.csv", "bad\nvalue", row=3, field="close")), [], prog="x") == 1
    assert capsys.readouterr().err == "x: error: f.csv, row 3, field 'close': bad value\n"
    assert run_cli(boom(ccxt.BadSymbol("binance does not have market symbol X")), [], prog="x") == 1
    assert capsys.readouterr().err == "x: error: BadSymbol: binance does not have market symbol X\n"
    assert run_cli(boom(KeyboardInterrupt()), [], prog="x") == 130
    assert run_cli(lambda argv: 3, [], prog="x") == 3 and run_cli(lambda argv: None, []) == 0
    with pytest.raises(ZeroDivisionError):  # a bug keeps its traceback
        run_cli(boom(ZeroDivisionError("x")), [], prog="x")
