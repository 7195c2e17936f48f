"""`python -m bot4jax.data`: download market data into the Parquet store, or inspect a data file."""
from __future__ import annotations

import argparse
import logging
import sys

from bot4jax.cli import run_cli

PROG = "python -m bot4jax.data"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Market data: download from a venue through ccxt into "
                                "the Parquet store, or inspect a data file.")
    sub = p.add_subparsers(dest="command", required=True, metavar="{download,inspect}")

    d = sub.add_parser("download", help="download candles or trades into the store (resumable)",
                       description="Download candles (or trades with --trades) into "
                                   "<store>/<exchange>/<symbol>/bars/<timeframe>.parquet (trades: "
                                   "trades/tick.parquet). Running it again fetches only what is missing; the "
                                   "candle still open is never stored. Times are UTC. No API keys needed.")
    d.add_argument("--exchange", default="binance", help="ccxt exchange id (default binance)")
    d.add_argument("--symbol", required=True, help="ccxt symbol, e.g. BTC/USDT (spot) or BTC/USDT:USDT (perpetual)")
    d.add_argument("--timeframe", default="1m", help="candle length, e.g. 1m, 5m, 1h, 1d (default 1m); "
                                                    "ignored with --trades")
    d.add_argument("--since", required=True, help="start (inclusive): 2024-01-01, 2024-01-01T12:00 or ms since 1970")
    d.add_argument("--until", help="end (exclusive), same forms as --since (default: now)")
    d.add_argument("--trades", action="store_true", help="download public trades instead of candles")
    d.add_argument("--store", default="./data", help="store folder (default ./data)")
    d.add_argument("--repair", action="store_true",
                   help="drop invalid rows the venue sends (and report them) instead of stopping")
    d.add_argument("--api-url", metavar="URL",
                   help="replace the scheme and host of the venue's REST API, keeping its paths: a testnet, "
                        "a proxy or a local server (e.g. http://127.0.0.1:8080)")
    d.add_argument("--rate-limit", type=float, metavar="MS",
                   help="milliseconds between requests of cost 1 (default: the venue's, from ccxt)")
    d.add_argument("--page-limit", type=int, metavar="N",
                   help="rows per request (default: the venue's maximum)")
    d.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    i = sub.add_parser("inspect", help="load a data file and summarise it",
                       description="Load a freqtrade JSON, CSV or Parquet file (the kind is detected) and "
                                   "print its kind, rows, time span, gaps and what --repair would drop.")
    i.add_argument("file", help="the data file")
    i.add_argument("--kind", choices=("bars", "trades", "book"), help="the kind, when detection cannot tell")
    i.add_argument("--repair", action="store_true", help="drop invalid rows and report them instead of stopping")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "download":
        return _download(args)
    return _inspect(args)


def _download(args) -> int:
    from bot4jax.data import download as dl
    from bot4jax.data.store import ParquetStore
    from bot4jax.errors import ConfigError

    since = dl.parse_time(args.since)
    until = dl.parse_time(args.until) if args.until else None
    if until is not None and until <= since:
        raise ConfigError(f"--until {args.until} is not after --since {args.since}")
    if args.page_limit is not None and args.page_limit <= 0:
        raise ConfigError("--page-limit must be a positive number of rows")
    types = ("spot",) if ":" not in args.symbol else ("linear", "inverse")
    exchange = dl.make_exchange(args.exchange, api_url=args.api_url, rate_limit_ms=args.rate_limit,
                                market_types=types)
    store = ParquetStore(args.store)
    common = dict(store=store, progress=not args.no_progress, page_limit=args.page_limit, repair=args.repair)
    if args.trades:
        r = dl.download_trades(exchange, args.symbol, since, until, **common)
        what = "trades"
    else:
        r = dl.download_ohlcv(exchange, args.symbol, args.timeframe, since, until, **common)
        what = f"{args.timeframe} candles"
    span = "nothing stored" if r.first_ts is None else f"stored {dl.iso(r.first_ts)} .. {dl.iso(r.last_ts)}"
    print(f"{r.rows_added} new {what} of {args.symbol} from {exchange.id} in {r.path} "
          f"({span}; {r.requests} requests, {r.retries} retries)")
    return 0


def _inspect(args) -> int:
    from pathlib import Path

    from bot4jax.data.loaders import load_checked

    data, report = load_checked(Path(args.file), kind=args.kind, repair=args.repair)
    for line in summary(data):
        print(line)
    print(f"repair: {report}")
    return 0


def summary(data) -> list[str]:
    """Lines describing a data object: kind, rows, span, gaps."""
    import numpy as np

    from bot4jax.data.download import iso
    from bot4jax.data.timeframes import infer_timeframe, timeframe_ms

    lines = [f"kind: {data.kind}", f"rows: {len(data)}"]
    if len(data) == 0:
        return lines
    ts = data.ts
    lines.append(f"span: {iso(int(ts[0]))} .. {iso(int(ts[-1]))}")
    if data.kind == "book":
        lines[0] += f" ({data.levels} levels)"
    if len(ts) < 2:
        return lines
    d = np.diff(ts)
    if data.kind == "bars":
        try:
            tf = infer_timeframe(ts)
        except ValueError:
            return lines
        step = timeframe_ms(tf)
        lines[0] += f" ({tf})"
        gaps = np.flatnonzero(d > step)
        if gaps.size:
            missing = int(((d[gaps] // step) - 1).sum())
            g = gaps[np.argmax(d[gaps])]
            lines.append(f"gaps: {gaps.size} ({missing} missing bars; longest {int(d[g] // step) - 1} bars "
                         f"after {iso(int(ts[g]))})")
        else:
            lines.append("gaps: none")
    else:
        g = int(np.argmax(d))
        lines.append(f"gaps: longest {d[g] / 1000:.3f} s without a row, after {iso(int(ts[g]))}")
    return lines


if __name__ == "__main__":
    sys.exit(run_cli(main, prog=PROG))
