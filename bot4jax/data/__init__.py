"""Market data: types, validation and file loaders (no JAX imported here)."""
from bot4jax.data.loaders import load, load_checked
from bot4jax.data.types import Bars, Book, Repair, Trades, aligned, validate
from bot4jax.errors import DataError

__all__ = ["Bars", "Book", "DataError", "Repair", "Trades", "aligned", "load", "load_checked",
           "validate"]
