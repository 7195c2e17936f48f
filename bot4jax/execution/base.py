"""What every exchange speaks: order requests, the venue's view of an order, fills, and the errors.

Two implementations share this interface: the simulated venue (replays, paper trading) and the ccxt
venue (real exchanges). The live loop, the order journal and reconciliation only ever see these types,
so a backtest runs the same code that trades.

Identity: every order carries a `client_id` chosen by us before the exchange is called. It is written
to the journal first, sent to the venue as its client order id, and used to look the order up again
after a timeout, so a retried request can never create a second order.

Sides are +1 (buy) and -1 (sell). Amounts are in the base currency, prices in the quote currency,
times in ms UTC.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from bot4jax.errors import Bot4jaxError

ORDER_TYPES = ("market", "limit", "stop", "stop_limit")
TIME_IN_FORCE = ("GTC", "IOC", "FOK", "GTD")

# An order's status as the journal and the venue adapters report it. "unknown" is a real state: the
# request left us but no answer came back (timeout, dropped connection, crash); it is resolved only
# by asking the venue, never by guessing.
STATUSES = ("pending", "open", "partially_filled", "filled", "canceled", "rejected", "expired", "unknown")
FINAL_STATUSES = frozenset(("filled", "canceled", "rejected", "expired"))


@dataclass(frozen=True)
class OrderRequest:
    client_id: str
    symbol: str
    side: int                      # +1 buy, -1 sell
    type: str                      # one of ORDER_TYPES
    amount: float                  # base currency, > 0
    price: float | None = None     # limit price (limit, stop_limit)
    stop_price: float | None = None  # trigger (stop, stop_limit)
    tif: str = "GTC"               # one of TIME_IN_FORCE
    expire_ts: int | None = None   # GTD only: the venue cancels the rest at this time
    post_only: bool = False        # limit orders only: rejected instead of taking liquidity


@dataclass(frozen=True)
class OrderState:
    """The venue's view of one order at one moment."""
    client_id: str
    venue_id: str | None
    symbol: str
    side: int
    type: str
    amount: float
    price: float | None
    status: str                    # one of STATUSES
    filled: float = 0.0
    avg_price: float | None = None
    ts: int | None = None
    reason: str | None = None      # why a rejection or cancellation happened, when the venue says

    @property
    def remaining(self) -> float:
        return max(0.0, self.amount - self.filled)


@dataclass(frozen=True)
class Fill:
    trade_id: str                  # the venue's trade id: fills are de-duplicated on it
    client_id: str
    venue_id: str | None
    symbol: str
    side: int
    amount: float
    price: float
    fee: float                     # in fee_currency
    fee_currency: str
    ts: int
    liquidity: str = "taker"       # "maker" or "taker"


@dataclass(frozen=True)
class Balance:
    currency: str
    free: float
    total: float


class Exchange(Protocol):
    """The async interface of a venue. Every call may raise the ExchangeError subclasses below."""

    name: str

    async def connect(self) -> None:
        """Load markets (once) and anything else needed before the first order."""

    async def close(self) -> None: ...

    async def create_order(self, request: OrderRequest) -> OrderState:
        """Send one order. Amount and prices are rounded to the venue's precision first; a request
        below the venue's limits raises OrderRejected without being sent."""

    async def cancel_order(self, client_id: str, symbol: str) -> OrderState: ...

    async def fetch_order(self, client_id: str, symbol: str) -> OrderState | None:
        """The order's current state, or None when the venue has never seen this client id."""

    async def fetch_open_orders(self, symbol: str) -> list[OrderState]: ...

    async def fetch_fills(self, symbol: str, since: int | None = None) -> list[Fill]:
        """Our fills on `symbol` at or after `since` (ms), oldest first."""

    async def fetch_balance(self) -> dict[str, Balance]: ...


class ExchangeError(Bot4jaxError):
    """Something went wrong talking to a venue. `venue` names it; messages never contain secrets."""

    def __init__(self, venue: str, message: str):
        self.venue = venue
        super().__init__(f"{venue}: {message}")


class OrderRejected(ExchangeError):
    """The venue (or our pre-trade check) refused the order; it does not exist. `reason` is a short
    machine-readable code such as "min_notional", "post_only_would_take", "insufficient_funds"."""

    def __init__(self, venue: str, message: str, reason: str):
        self.reason = reason
        super().__init__(venue, message)


class InsufficientFunds(OrderRejected):
    def __init__(self, venue: str, message: str):
        super().__init__(venue, message, "insufficient_funds")


class OrderNotFound(ExchangeError):
    """The venue does not know the order (cancel or fetch of an unknown id)."""


class RateLimited(ExchangeError):
    """The venue asked us to slow down; `retry_after` is in seconds when the venue says."""

    def __init__(self, venue: str, message: str, retry_after: float | None = None):
        self.retry_after = retry_after
        super().__init__(venue, message)


class ExchangeUnavailable(ExchangeError):
    """Network error, timeout or venue outage. For an order request the order's fate is unknown: the
    caller must mark it "unknown" and resolve it with fetch_order, never resend blindly."""


class Journal(Protocol):
    """Where the order manager writes before and after every exchange call (bot4jax.execution.journal
    implements it in SQLite). Intent first, then the call, then the answer: after a crash the journal
    tells which orders may exist at the venue without our knowing their fate."""

    def record_intent(self, request: OrderRequest, group_id: str | None = None) -> None: ...

    def record_state(self, state: OrderState) -> None:
        """An acknowledgement, a cancel confirmation, a rejection, or "unknown" after a lost answer."""

    def record_fill(self, fill: Fill) -> bool:
        """Store a fill; False (and nothing stored) when its trade id is already in the journal."""

    def unresolved(self) -> list[OrderState]:
        """Orders whose last known status is not final (pending, open, partially filled, unknown)."""
