"""API keys for live trading, from the environment only, and a log filter that keeps them out of logs.

Variables, for an exchange id as ccxt spells it (binance, okx, kraken, ...), upper-cased with every
character other than a letter or digit replaced by "_":

    BOT4JAX_<EXCHANGE>_API_KEY       the API key                      (always required)
    BOT4JAX_<EXCHANGE>_API_SECRET    the API secret                   (always required)
    BOT4JAX_<EXCHANGE>_API_PASSWORD  the API passphrase               (only where the venue requires one,
                                                                       e.g. okx, kucoin, coinbase exchange)

e.g. BOT4JAX_BINANCE_API_KEY and BOT4JAX_BINANCE_API_SECRET. Keys are never read from config files or
flags, so they cannot end up in a run's resolved config or a shell history.

Secrets never appear in a repr, an error message or a log line: `Credentials` prints "***", errors
name the variable and never its value, and `RedactSecrets` (a logging.Filter) replaces any secret
value in a log record with "***". Install it with `install_redaction`, which puts it on a logger's
handlers: a filter on a logger sees only records logged through that very logger, while a filter on a
handler sees every record that reaches the handler, also those propagated from child loggers such as
"ccxt.base.exchange" (whose DEBUG lines carry the request headers, the API key included).
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from bot4jax.errors import ConfigError

MASK = "***"


def env_names(exchange_id: str) -> tuple[str, str, str]:
    """(key, secret, password) variable names for `exchange_id`."""
    stem = "BOT4JAX_" + re.sub(r"[^A-Z0-9]", "_", exchange_id.upper()) + "_API_"
    return stem + "KEY", stem + "SECRET", stem + "PASSWORD"


@dataclass(frozen=True, repr=False)
class Credentials:
    """What ccxt needs to sign requests for one exchange. Printing it shows no secret."""

    exchange_id: str
    api_key: str = field(repr=False)
    secret: str = field(repr=False)
    password: str | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        password = "" if self.password is None else f", password={MASK}"
        return f"Credentials({self.exchange_id!r}, api_key={MASK}, secret={MASK}{password})"

    __str__ = __repr__

    def ccxt_config(self) -> dict:
        """The constructor fields of a ccxt exchange: apiKey, secret and, when set, password."""
        config = {"apiKey": self.api_key, "secret": self.secret}
        if self.password is not None:
            config["password"] = self.password
        return config

    def secrets(self) -> tuple[str, ...]:
        """Every value that must never be logged (the API key counts: it identifies the account)."""
        return tuple(s for s in (self.api_key, self.secret, self.password) if s)


def needs_password(exchange_id: str) -> bool:
    """Whether ccxt says the venue signs with a passphrase as well (its `requiredCredentials`)."""
    import ccxt

    cls = getattr(ccxt, exchange_id, None)
    if exchange_id not in ccxt.exchanges or cls is None:
        raise ConfigError(f"unknown exchange {exchange_id!r}: see ccxt.exchanges for the ids ccxt knows")
    return bool(cls().requiredCredentials.get("password"))


def load_credentials(exchange_id: str, environ: Mapping[str, str] | None = None,
                     password: bool | None = None) -> Credentials:
    """Credentials for `exchange_id` from the environment (`environ`, default os.environ).

    password: whether a passphrase is required; None asks ccxt. Raises ConfigError naming every
    missing (or empty) variable, never a value.
    """
    env = os.environ if environ is None else environ
    key_var, secret_var, password_var = env_names(exchange_id)
    if password is None:
        password = needs_password(exchange_id)
    wanted = [key_var, secret_var] + ([password_var] if password else [])
    missing = [name for name in wanted if not env.get(name)]
    if missing:
        raise ConfigError(f"live trading on {exchange_id} needs {' and '.join(wanted)} in the environment; "
                          f"not set: {', '.join(missing)}")
    return Credentials(exchange_id, env[key_var], env[secret_var], env.get(password_var) or None)


class RedactSecrets(logging.Filter):
    """Replaces every secret value in a log record with "***"; never drops a record.

    The message is formatted first (`msg % args`), so a secret passed as an argument is caught too;
    string attributes added through `extra=`, the formatted exception and the stack are redacted as
    well. Secrets shorter than `min_len` characters are refused: masking "a" would mangle every line.
    """

    def __init__(self, secrets: Iterable[str] = (), min_len: int = 6):
        super().__init__()
        self.min_len = min_len
        self._secrets: tuple[str, ...] = ()
        self.add(*secrets)

    def add(self, *secrets: str) -> None:
        new = {s for s in secrets if s}
        short = [s for s in new if len(s) < self.min_len]
        if short:
            raise ConfigError(f"a secret shorter than {self.min_len} characters cannot be redacted safely")
        # Longest first, so a secret that contains another is masked whole.
        self._secrets = tuple(sorted(set(self._secrets) | new, key=len, reverse=True))

    def redact(self, text: str) -> str:
        for s in self._secrets:
            if s in text:
                text = text.replace(s, MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:   # a malformed record: keep what logging would print, redacted
            message = f"{record.msg} {record.args}"
        record.msg, record.args = self.redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        for name, value in list(vars(record).items()):
            if isinstance(value, str) and name != "msg":
                setattr(record, name, self.redact(value))
        return True


def install_redaction(secrets: Iterable[str], logger: logging.Logger | None = None) -> RedactSecrets:
    """Put one RedactSecrets on `logger` (default the root logger) and on each of its handlers.

    Call it after the handlers are configured; a handler added later needs `handler.addFilter(f)`.
    """
    logger = logging.getLogger() if logger is None else logger
    f = RedactSecrets(secrets)
    logger.addFilter(f)
    for handler in logger.handlers:
        handler.addFilter(f)
    return f
