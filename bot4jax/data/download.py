"""Historical candles and trades from a venue through ccxt into the ParquetStore.

Paginated (`since` plus the venue's page limit), rate limited (ccxt's `enableRateLimit`: requests start
at least `rateLimit * cost` ms apart), retried with capped exponential back-off on ccxt.NetworkError
(timeouts, HTTP 429/418 rate limits, 5xx, dropped connections), honouring a venue's Retry-After; any
other ccxt error (unknown symbol, bad parameter) stops at once with one clear message.

Pages are written to the store as the download goes (every `flush_s` seconds and whenever it stops,
error included), so an interrupted download keeps what it fetched; running it again fetches only what
is missing: the span before the first stored row and the span after the last one. The candle still
open (its close time, ts + timeframe, is after now) is never stored.

Spans are half-open in ms UTC: `since_ms <= ts < until_ms`; `until_ms=None` means up to now.

Trades: Binance's aggTrades endpoint answers a time window with the *last* `limit` trades of the
window, so for Binance (and its ccxt subclasses) the first trade id at or after `since` is located by
narrowing the window until it fits in one page, and pages then follow by id (`fromId`). Other venues
page by time: each page ends before its last millisecond, which the next page starts from, so a
millisecond is never split across pages.
"""
from __future__ import annotations

import email.utils
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import urlsplit

import numpy as np

from bot4jax.data.store import ParquetStore
from bot4jax.data.timeframes import timeframe_ms
from bot4jax.data.types import Bars, Trades, concat, validate
from bot4jax.errors import Bot4jaxError, ConfigError

log = logging.getLogger("bot4jax.data.download")

HOUR_MS = 3_600_000
TRADES_TIMEFRAME = "tick"


class DownloadError(Bot4jaxError):
    """A download that cannot go on: a venue error, or retries exhausted. Says which request failed."""


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of one request on ccxt.NetworkError.

    The k-th retry waits min(cap_s, base_s * 2**(k-1)) seconds, or the venue's Retry-After when it
    sends one (up to max_retry_after_s; a longer ban stops the download). `attempts` counts the first try.
    """

    attempts: int = 8
    base_s: float = 1.0
    cap_s: float = 60.0
    max_retry_after_s: float = 900.0

    def backoff(self, retry: int) -> float:
        return min(self.cap_s, self.base_s * 2.0 ** (retry - 1))


@dataclass(frozen=True)
class DownloadResult:
    path: Path
    kind: str             # "bars" or "trades"
    rows_added: int       # rows the stored file gained
    requests: int         # requests made, market loading and retries included
    retries: int
    first_ts: int | None  # span stored after the download (ms)
    last_ts: int | None


def make_exchange(name: str, *, api_url: str | None = None, rate_limit_ms: float | None = None,
                  market_types: tuple[str, ...] | None = None, timeout_ms: int | None = None):
    """A sync ccxt exchange `ccxt.<name>` with rate limiting on and no API keys (public data only).

    api_url: "scheme://host[:port]" replacing the scheme and host of every REST endpoint in
             `urls['api']` (paths are kept): a testnet, a proxy or a local test server.
    rate_limit_ms: override of the venue's `rateLimit` (ms between requests of cost 1).
    market_types: the market types to load where ccxt supports choosing them (Binance's
             `options['fetchMarkets']['types']`), e.g. ("spot",) to skip the futures endpoints.
    """
    import ccxt

    return build_exchange(ccxt, name, api_url=api_url, rate_limit_ms=rate_limit_ms, timeout_ms=timeout_ms,
                          market_types=market_types)


def build_exchange(module, exchange_id: str, *, api_url: str | None = None, ws_url: str | None = None,
                   rate_limit_ms: float | None = None, timeout_ms: int | None = None,
                   market_types: tuple[str, ...] | None = None, config: dict | None = None):
    """`module.<exchange_id>` (module: ccxt, ccxt.async_support or ccxt.pro) with rate limiting on.

    api_url / ws_url replace scheme and host of the REST / websocket endpoints in `urls['api']`
    (paths kept; ccxt keeps the websocket ones under the key 'ws'); market_types restricts market
    loading where ccxt lets us choose; config adds to the constructor's settings (e.g. API keys).
    The one place the sync data download, the async venue and the live streams build exchanges.
    """
    cls = getattr(module, exchange_id, None)
    if exchange_id not in module.exchanges or cls is None:
        raise ConfigError(f"unknown exchange {exchange_id!r}: ccxt knows {len(module.exchanges)} venues, e.g. "
                          "binance, bybit, okx, kraken, coinbase (see ccxt.exchanges)")
    settings: dict = {"enableRateLimit": True, **(config or {})}
    if rate_limit_ms is not None:
        settings["rateLimit"] = rate_limit_ms
    if timeout_ms is not None:
        settings["timeout"] = timeout_ms
    exchange = cls(settings)
    urls = exchange.urls["api"]
    if api_url:
        _check_base(api_url, ("http", "https"), "--api-url")
        urls = ({k: v if k == "ws" else _rehost(v, api_url) for k, v in urls.items()} if isinstance(urls, dict)
                else _rehost(urls, api_url))
    if ws_url:
        _check_base(ws_url, ("ws", "wss"), "--ws-url")
        if not isinstance(urls, dict) or "ws" not in urls:
            raise ConfigError(f"{exchange_id}: ccxt keeps no websocket URLs in urls['api']['ws'] to point "
                              f"at {ws_url}")
        urls = {**urls, "ws": _rehost(urls["ws"], ws_url)}
    exchange.urls["api"] = urls
    fetch_markets = exchange.options.get("fetchMarkets")
    if market_types and isinstance(fetch_markets, dict) and "types" in fetch_markets:
        exchange.options["fetchMarkets"] = {**fetch_markets, "types": list(market_types)}
    return exchange


def _check_base(url: str, schemes: tuple[str, ...], name: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in schemes or not parts.netloc:
        raise ConfigError(f"{name} {url!r} must look like {schemes[0]}://host:port or {schemes[-1]}://host")


def _rehost(urls, base: str):
    """`urls` (a URL or nested dicts of them) with scheme and host replaced by those of `base`."""
    if isinstance(urls, dict):
        return {k: _rehost(v, base) for k, v in urls.items()}
    if isinstance(urls, str) and "://" in urls:
        b = urlsplit(base)
        return urlsplit(urls)._replace(scheme=b.scheme, netloc=b.netloc).geturl()
    return urls


def parse_time(text: str) -> int:
    """ms UTC of "2024-01-01", "2024-01-01T12:30", "2024-01-01 12:30:00" (UTC unless an offset is
    given) or of a bare integer of ms since the epoch."""
    t = text.strip()
    if t.isdigit():
        return int(t)
    try:
        d = datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"time {text!r} is not a date like 2024-01-01 or 2024-01-01T12:30, "
                          "nor ms since 1970") from None
    if d.tzinfo is None:
        d = d.replace(tzinfo=timezone.utc)
    return int(d.timestamp() * 1000)


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


# --- One request with retries --------------------------------------------------------------------

class _Requests:
    """Calls into the exchange with the retry policy; counts requests and retries."""

    def __init__(self, exchange, policy: RetryPolicy, sleep: Callable[[float], None] = time.sleep):
        self.exchange, self.policy, self.sleep = exchange, policy, sleep
        self.count = self.retries = 0

    def __call__(self, what: str, fn, *args, **kwargs):
        import ccxt

        for attempt in range(1, self.policy.attempts + 1):
            self.exchange.last_response_headers = None  # so a Retry-After read below is this response's
            self.count += 1
            try:
                return fn(*args, **kwargs)
            except ccxt.NetworkError as e:
                wait = self._wait(e, attempt)
                if attempt == self.policy.attempts:
                    raise DownloadError(f"{self.exchange.id} {what}: still failing after {attempt} attempts "
                                        f"({type(e).__name__}: {_short(e)})") from e
                self.retries += 1
                log.warning("%s %s: %s (%s); retry %d of %d in %.2f s", self.exchange.id, what,
                            type(e).__name__, _short(e), attempt, self.policy.attempts - 1, wait)
                self.sleep(wait)
            except ccxt.BaseError as e:
                raise DownloadError(f"{self.exchange.id} {what}: {type(e).__name__}: {_short(e)}") from e
        raise AssertionError("unreachable")

    def _wait(self, e, attempt: int) -> float:
        import ccxt

        # Only an HTTP answer can carry Retry-After; a timeout or a dropped connection has no headers.
        if isinstance(e, (ccxt.DDoSProtection, ccxt.ExchangeNotAvailable)):
            asked = retry_after_s(self.exchange.last_response_headers)
            if asked is not None:
                if asked > self.policy.max_retry_after_s:
                    raise DownloadError(f"{self.exchange.id} asks to wait {asked:.0f} s before the next request "
                                        f"(Retry-After), longer than {self.policy.max_retry_after_s:.0f} s: "
                                        "try again later") from e
                return asked
        return self.policy.backoff(attempt)


def retry_after_s(headers) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), None if absent."""
    if not headers:
        return None
    value = headers.get("Retry-After") if hasattr(headers, "get") else None
    if value is None:
        value = next((v for k, v in dict(headers).items() if k.lower() == "retry-after"), None)
    if value is None:
        return None
    value = str(value).strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _short(e: BaseException, n: int = 300) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= n else text[:n] + "..."


# --- Writing as we go ----------------------------------------------------------------------------

class _Sink:
    """Buffers pages and appends them to the store every `flush_s` seconds and on `flush()`."""

    def __init__(self, store: ParquetStore, key: tuple, flush_s: float):
        self.store, self.key, self.flush_s = store, key, flush_s
        self.parts: list = []
        self.added = 0
        self._last = time.monotonic()

    def add(self, data) -> None:
        if len(data):
            self.parts.append(data)
        if time.monotonic() - self._last >= self.flush_s:
            self.flush()

    def flush(self) -> None:
        if self.parts:
            data = concat(self.parts)
            self.parts = []
            self.added += self.store.append(*self.key, data)
        self._last = time.monotonic()


class _Progress:
    """A tqdm bar over a time span (ms of market time), labelled with the time reached."""

    def __init__(self, enabled: bool, total_ms: int, label: str):
        from tqdm import tqdm

        self.label = label
        self.bar = tqdm(total=max(total_ms, 1), disable=not enabled, desc=label, leave=True,
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}]")

    def advance(self, ms: int, reached: int) -> None:
        self.bar.set_description_str(f"{self.label} {iso(reached)[:16]}", refresh=False)
        self.bar.update(ms)

    def close(self) -> None:
        self.bar.close()


def _missing_spans(since: int, end: int, first: int | None, last: int | None,
                   after_last: int) -> list[tuple[int, int]]:
    """Spans of [since, end) not yet stored: before the first stored row, and from `after_last` on."""
    if first is None:
        return [(since, end)] if since < end else []
    spans = []
    if since < first:
        spans.append((since, min(first, end)))
    start = max(since, after_last)
    if start < end:
        spans.append((start, end))
    return spans


def _market(exchange, symbol: str, req: _Requests) -> dict:
    import ccxt

    req("load markets", exchange.load_markets)
    try:
        return exchange.market(symbol)
    except ccxt.BadSymbol:
        types = exchange.options.get("fetchMarkets")
        loaded = types.get("types") if isinstance(types, dict) else None
        hint = f" (loaded market types: {', '.join(loaded)})" if loaded else ""
        raise DownloadError(f"{exchange.id} has no market {symbol!r}{hint}; symbols look like 'BTC/USDT' "
                            "(spot) or 'BTC/USDT:USDT' (perpetual)") from None


def _feature_limit(exchange, market: dict, method: str) -> int | None:
    features = getattr(exchange, "features", None) or {}
    f = features.get(market.get("type")) or {}
    if market.get("type") in ("swap", "future"):
        f = f.get("linear" if market.get("linear") else "inverse") or {}
    return ((f or {}).get(method) or {}).get("limit")


def _check_rate_limit(exchange) -> None:
    if not exchange.enableRateLimit:
        log.warning("%s: enableRateLimit is off; requests will not be spaced by rateLimit", exchange.id)


# --- Candles -------------------------------------------------------------------------------------

def download_ohlcv(exchange, symbol: str, timeframe: str, since_ms: int, until_ms: int | None = None, *,
                   store: ParquetStore, progress: bool = True, page_limit: int | None = None,
                   retry: RetryPolicy = RetryPolicy(), flush_s: float = 10.0, repair: bool = False,
                   sleep: Callable[[float], None] = time.sleep) -> DownloadResult:
    """Download candles of `symbol` with open time in [since_ms, until_ms) into `store` (kind "bars").

    exchange: a sync ccxt exchange (see `make_exchange`); page_limit: candles per request (default:
    the venue's maximum from ccxt's `features`); repair: drop invalid candles the venue sends (logged)
    instead of stopping with a DataError.
    """
    try:
        tf = timeframe_ms(timeframe)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if getattr(exchange, "timeframes", None) and timeframe not in exchange.timeframes:
        raise DownloadError(f"{exchange.id} has no {timeframe!r} candles; "
                            f"it offers {', '.join(exchange.timeframes)}")
    key = (exchange.id, symbol, "bars", timeframe)
    now = exchange.milliseconds()
    end = now if until_ms is None else min(until_ms, now)
    last = store.last_ts(*key)
    spans = _missing_spans(since_ms, end, store.first_ts(*key), last, (last or 0) + tf)
    req = _Requests(exchange, retry, sleep)
    if not spans:  # all stored already: no need to ask the venue anything
        return DownloadResult(store.path(*key), "bars", 0, 0, 0, store.first_ts(*key), last)
    _check_rate_limit(exchange)
    market = _market(exchange, symbol, req)
    limit = page_limit or _feature_limit(exchange, market, "fetchOHLCV")
    sink = _Sink(store, key, flush_s)
    bar = _Progress(progress, sum(b - a for a, b in spans), f"{exchange.id} {symbol} {timeframe}")
    try:
        for start, stop in spans:
            cursor = start
            while cursor < stop:
                page = req(f"fetch_ohlcv {symbol} {timeframe} since {iso(cursor)}", exchange.fetch_ohlcv,
                           symbol, timeframe, since=cursor, limit=limit)
                rows = [r for r in page if cursor <= r[0] < stop]
                if not rows:
                    break  # the venue has nothing more in this span
                now = exchange.milliseconds()
                closed = [r for r in rows if r[0] + tf <= now]
                sink.add(_bars(closed, f"{exchange.id} {symbol} {timeframe} candles from {iso(cursor)}", repair))
                nxt = int(rows[-1][0]) + tf
                bar.advance(min(nxt, stop) - cursor, nxt)
                cursor = nxt
                if len(closed) < len(rows):
                    break  # reached the candle that is still open
    finally:
        bar.close()
        sink.flush()
    return DownloadResult(store.path(*key), "bars", sink.added, req.count, req.retries,
                          store.first_ts(*key), store.last_ts(*key))


def _bars(rows: list, source: str, repair: bool) -> Bars:
    a = np.array([[np.nan if v is None else v for v in r[:6]] for r in rows], np.float64).reshape(-1, 6)
    bars = Bars(a[:, 0].astype(np.int64), a[:, 1], a[:, 2], a[:, 3], a[:, 4], a[:, 5])
    bars, report = validate(bars, source, repair=repair)
    if report.dropped:
        log.warning("%s", report)
    return bars


# --- Trades --------------------------------------------------------------------------------------

def download_trades(exchange, symbol: str, since_ms: int, until_ms: int | None = None, *,
                    store: ParquetStore, progress: bool = True, page_limit: int | None = None,
                    retry: RetryPolicy = RetryPolicy(), flush_s: float = 10.0, repair: bool = False,
                    pagination: str = "auto", sleep: Callable[[float], None] = time.sleep) -> DownloadResult:
    """Download public trades of `symbol` with ts in [since_ms, until_ms) into `store` (kind "trades",
    timeframe "tick"). Trade ids are the venue's (Binance: aggregate trade ids).

    pagination: "id" (Binance and its ccxt subclasses: locate the first id, then `fromId`), "time"
    (`since`, for venues whose trades answer from `since` onwards), or "auto" (id for Binance, time
    otherwise); see the module docstring.
    """
    if pagination not in ("auto", "id", "time"):
        raise ConfigError(f"pagination {pagination!r} is not one of auto, id, time")
    if pagination == "id" and not _pages_by_id(exchange):
        raise ConfigError(f"{exchange.id}: trade pages by id are supported for Binance only; use 'time'")
    by_id = pagination == "id" or (pagination == "auto" and _pages_by_id(exchange))
    limit = page_limit or (1000 if by_id else None)
    key = (exchange.id, symbol, "trades", TRADES_TIMEFRAME)
    now = exchange.milliseconds()
    end = now if until_ms is None else min(until_ms, now)
    last = store.last_row(*key)
    last_ts = None if last is None else last["ts"]
    # Trades can share a millisecond: resume at the last stored one; the store drops what it already has.
    spans = _missing_spans(since_ms, end, store.first_ts(*key), last_ts, last_ts or 0)
    req = _Requests(exchange, retry, sleep)
    if not spans:
        return DownloadResult(store.path(*key), "trades", 0, 0, 0, store.first_ts(*key), last_ts)
    _check_rate_limit(exchange)
    _market(exchange, symbol, req)
    sink = _Sink(store, key, flush_s)
    bar = _Progress(progress, sum(b - a for a, b in spans), f"{exchange.id} {symbol} trades")
    try:
        for start, stop in spans:
            # Resuming after the last stored trade: Binance continues from the next id.
            resume_id = int(last["id"]) + 1 if by_id and start == last_ts and last["id"] >= 0 else None
            pages = (_binance_pages(req, exchange, symbol, start, stop, limit, resume_id) if by_id
                     else _time_pages(req, exchange, symbol, start, stop, limit))
            done = start
            for page in pages:
                rows = [t for t in page if start <= t["timestamp"] < stop]
                if rows:
                    source = f"{exchange.id} {symbol} trades from {iso(rows[0]['timestamp'])}"
                    sink.add(_trades(rows, source, repair))
                    reached = min(rows[-1]["timestamp"], stop)
                    bar.advance(reached - done, reached)
                    done = reached
                if len(rows) < len(page) and page[-1]["timestamp"] >= stop:
                    break
    finally:
        bar.close()
        sink.flush()
    return DownloadResult(store.path(*key), "trades", sink.added, req.count, req.retries,
                          store.first_ts(*key), store.last_ts(*key))


def _pages_by_id(exchange) -> bool:
    import ccxt

    return isinstance(exchange, ccxt.binance)


def _binance_pages(req, exchange, symbol: str, start: int, stop: int, limit: int,
                   from_id: int | None) -> Iterator[list]:
    """Pages of trades in id order from the first trade at or after `start` (or from `from_id`)."""
    if from_id is None:
        from_id = _first_trade_id(req, exchange, symbol, start, stop, limit)
        if from_id is None:
            return
    while True:
        page = req(f"fetch_trades {symbol} fromId {from_id}", exchange.fetch_trades, symbol,
                   limit=limit, params={"fromId": from_id})
        if not page:
            return
        yield page
        if len(page) < limit or page[-1]["timestamp"] >= stop:
            return  # reached the latest trade, or the end of the span
        from_id = int(page[-1]["id"]) + 1


def _first_trade_id(req, exchange, symbol: str, start: int, stop: int, limit: int) -> int | None:
    """Id of the first trade at or after `start` (before `stop`), None if there is none.

    A window [t, t + width] (Binance allows at most one hour) that returns a full page may hold more
    trades than the page, and Binance returns the last ones: halve the window until the answer is not
    full. (A single millisecond with more than `limit` trades cannot be split: its last trades start.)
    """
    t, width, probed = start, HOUR_MS, False
    while t < stop:
        hi = min(t + width, stop - 1)  # endTime is inclusive
        page = req(f"fetch_trades {symbol} since {iso(t)}", exchange.fetch_trades, symbol, since=t,
                   limit=limit, params={"until": hi})
        page = [x for x in page if t <= x["timestamp"] <= hi]
        if len(page) >= limit and hi > t:
            width = (hi - t) // 2
            continue
        if page:
            return int(page[0]["id"])
        if not probed:
            # An empty hour may be before the market opened: jump to its first trade rather than
            # walking the years before it one hour per request.
            probed = True
            first = req(f"fetch_trades {symbol} fromId 0", exchange.fetch_trades, symbol, limit=1,
                        params={"fromId": 0})
            if first and first[0]["timestamp"] > hi:
                t, width = int(first[0]["timestamp"]), HOUR_MS
                continue
        t, width = hi + 1, HOUR_MS
    return None


def _time_pages(req, exchange, symbol: str, start: int, stop: int, limit: int | None) -> Iterator[list]:
    """Pages by `since`. A page ends before its last millisecond, which starts the next page, so the
    trades of one millisecond are never split (a millisecond holding a whole page is taken as is)."""
    cursor = start
    while cursor < stop:
        page = req(f"fetch_trades {symbol} since {iso(cursor)}", exchange.fetch_trades, symbol,
                   since=cursor, limit=limit)
        page = [x for x in page if x["timestamp"] >= cursor]
        if not page:
            return
        last = page[-1]["timestamp"]
        head = [x for x in page if x["timestamp"] < last]
        if head:
            yield head
            cursor = last
        else:
            yield page
            cursor = last + 1


def _trades(rows: list, source: str, repair: bool) -> Trades:
    side = {"buy": 1, "sell": -1}
    ids = []
    for t in rows:
        try:
            ids.append(int(t["id"]))
        except (TypeError, ValueError):
            ids.append(-1)  # a venue id that is not a number is not kept
    trades = Trades(
        ts=np.array([t["timestamp"] for t in rows], np.int64),
        price=np.array([np.nan if t["price"] is None else t["price"] for t in rows], np.float64),
        amount=np.array([np.nan if t["amount"] is None else t["amount"] for t in rows], np.float64),
        side=np.array([side.get(t["side"], 0) for t in rows], np.int8),
        id=np.array(ids, np.int64),
    )
    trades, report = validate(trades, source, repair=repair)
    if report.dropped:
        log.warning("%s", report)
    return trades
