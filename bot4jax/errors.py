"""Error types users see. Each says what is wrong and where, so a CLI can print it as one line."""
from __future__ import annotations


class Bot4jaxError(Exception):
    """Base of every error bot4jax raises on purpose; the CLIs print these without a traceback."""


class DataError(Bot4jaxError, ValueError):
    """Bad market data: names the source (file), the row and the field.

    `row` is the 1-based data row in the source as the user would count it (for a CSV with a header,
    the first data line is row 1), or None when the problem is not tied to a single row.
    """

    def __init__(self, source: str, message: str, row: int | None = None, field: str | None = None):
        self.source, self.row, self.field, self.message = source, row, field, message
        where = source
        if row is not None:
            where += f", row {row}"
        if field is not None:
            where += f", field '{field}'"
        super().__init__(f"{where}: {message}")


class ConfigError(Bot4jaxError, ValueError):
    """An invalid configuration value or flag."""
