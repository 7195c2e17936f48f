"""API keys from the environment only, and never in a repr, an error or a log line."""
from __future__ import annotations

import asyncio
import io
import logging

import pytest

from bot4jax.errors import ConfigError
from bot4jax.execution.base import ExchangeError, OrderRequest
from bot4jax.execution.ccxt_venue import CcxtVenue
from bot4jax.execution.credentials import (Credentials, RedactSecrets, env_names, install_redaction,
                                           load_credentials)
from tests.support.binance_rest import SpotMarket
from tests.support.binance_trading import BinanceTradingServer, new_api_key


def test_env_names():
    assert env_names("binance") == ("BOT4JAX_BINANCE_API_KEY", "BOT4JAX_BINANCE_API_SECRET",
                                    "BOT4JAX_BINANCE_API_PASSWORD")
    assert env_names("binance.us-x")[0] == "BOT4JAX_BINANCE_US_X_API_KEY"


def test_load_credentials_from_the_environment():
    env = {"BOT4JAX_BINANCE_API_KEY": "k" * 64, "BOT4JAX_BINANCE_API_SECRET": "s" * 64}
    c = load_credentials("binance", env)
    assert (c.api_key, c.secret, c.password) == ("k" * 64, "s" * 64, None)
    assert c.ccxt_config() == {"apiKey": "k" * 64, "secret": "s" * 64}


@pytest.mark.parametrize("exchange, env, missing", [
    ("binance", {"BOT4JAX_BINANCE_API_KEY": "key-value-1"}, ["BOT4JAX_BINANCE_API_SECRET"]),
    ("binance", {"BOT4JAX_BINANCE_API_KEY": "key-value-1", "BOT4JAX_BINANCE_API_SECRET": ""},
     ["BOT4JAX_BINANCE_API_SECRET"]),                                   # empty counts as missing
    ("binance", {}, ["BOT4JAX_BINANCE_API_KEY", "BOT4JAX_BINANCE_API_SECRET"]),
    ("okx", {"BOT4JAX_OKX_API_KEY": "key-value-1", "BOT4JAX_OKX_API_SECRET": "secret-value-1"},
     ["BOT4JAX_OKX_API_PASSWORD"]),                                     # ccxt: okx signs with a passphrase
])
def test_a_missing_variable_is_named_and_no_value_is_shown(exchange, env, missing):
    with pytest.raises(ConfigError) as e:
        load_credentials(exchange, env)
    text = str(e.value)
    assert text.endswith("not set: " + ", ".join(missing))
    assert "key-value-1" not in text and "secret-value-1" not in text


def test_reprs_hide_every_secret():
    c = Credentials("okx", "key-value-1", "secret-value-1", "pass-value-1")
    for text in (repr(c), str(c), f"{c}", repr([c]), repr(CcxtVenue("okx", "BTC/USDT", credentials=c))):
        assert "key-value-1" not in text and "secret-value-1" not in text and "pass-value-1" not in text
    assert repr(c) == "Credentials('okx', api_key=***, secret=***, password=***)"


def test_filter_redacts_messages_arguments_extras_and_tracebacks():
    f = RedactSecrets(["topsecret", "topsecret-longer"])
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s|%(user_field)s"))
    handler.addFilter(f)
    log = logging.getLogger("test_credentials.filter")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("key %s and %r", "topsecret", {"k": "topsecret-longer"}, extra={"user_field": "x topsecret"})
        try:
            raise ValueError("bad topsecret")
        except ValueError:
            log.exception("failed", extra={"user_field": "-"})
    finally:
        log.removeHandler(handler)
    out = stream.getvalue()
    assert "topsecret" not in out
    assert "key *** and {'k': '***'}|x ***" in out and "ValueError: bad ***" in out
    with pytest.raises(ConfigError, match="shorter than 6"):
        RedactSecrets(["abc"])


def test_install_on_the_root_catches_records_propagated_from_child_loggers():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        f = install_redaction(["child-secret-1"])
        logging.getLogger("some.library.module").warning("header X-KEY: child-secret-1")
    finally:
        root.removeHandler(handler)
        root.removeFilter(f)
    assert stream.getvalue() == "header X-KEY: ***\n"


def test_no_secret_in_the_logs_of_a_whole_session_with_an_auth_failure():
    key, secret, wrong = new_api_key(), new_api_key(), new_api_key()
    good, bad = Credentials("binance", key, secret), Credentials("binance", key, wrong)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)   # ccxt logs every request's headers at DEBUG, the API key among them
    f = install_redaction(good.secrets() + bad.secrets())
    errors = []

    async def session(url):
        kw = {"api_url": url, "timeout_ms": 300, "rate_limit_ms": 5}
        async with CcxtVenue("binance", "BTC/USDT", credentials=good, **kw) as v:
            await v.fetch_balance()
            await v.create_order(OrderRequest("log-1", "BTC/USDT", +1, "limit", 0.01, price=39_000))
            await v.cancel_order("log-1", "BTC/USDT")
        try:
            async with CcxtVenue("binance", "BTC/USDT", credentials=bad, **kw):
                pass
        except ExchangeError as e:
            errors.append(e)
            logging.getLogger("bot4jax.live").error("venue refused: %s", e, exc_info=True)

    try:
        with BinanceTradingServer([SpotMarket("BTC", "USDT")], {key: secret}, {"USDT": 10_000}) as server:
            server.set_book("BTCUSDT", [(40_000, 1.0)], [(40_010, 1.0)])
            asyncio.run(session(server.url))
    finally:
        root.removeHandler(handler)
        root.removeFilter(f)
        root.setLevel(level)
    out = stream.getvalue()
    assert len(errors) == 1 and "authentication failed" in out
    assert "X-MBX-APIKEY" in out and "'X-MBX-APIKEY': '***'" in out   # the header was logged, masked
    for s in (key, secret, wrong):
        assert s not in out and s not in str(errors[0])
