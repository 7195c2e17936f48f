"""Order requests with client ids, linked-order builders, and the pre-trade limits.

    req = order("BTC/USDT", +1, "limit", 0.01, price=60_000.0)
    group = bracket("BTC/USDT", +1, 0.01, entry_price=60_000.0, take_profit=63_000.0, stop_loss=58_500.0)
    states = await manager.submit_group(*group)         # kind, legs, group_id

A linked order is a `LinkedOrder(kind, legs, group_id)` of plain `OrderRequest`s: the venue only ever
sees simple orders, and `OrderManager` (bot4jax.execution.order_manager) emulates the link client-side
through the kernel's group logic (kernels/orders_nb.py: OCO, bracket, OTO, multi-leg semantics).

Client ids are chosen here, before anything is sent: `<prefix><16 hex>` for a simple order, and
`<group id>-<leg>` for the legs of a group (entry "e", take-profit "tp", stop-loss "sl", OCO legs
"a"/"b"/..., OTO "p"/"s", multi-leg "0", "1", ...), at most 36 characters (Binance's limit).
"""
from __future__ import annotations

import math
import secrets
from decimal import Decimal
from dataclasses import dataclass, fields
from typing import NamedTuple, Sequence

import numpy as np

from bot4jax.errors import ConfigError
from bot4jax.execution.base import ORDER_TYPES, TIME_IN_FORCE, OrderRequest
from bot4jax.kernels import orders_nb as nb

LINK_KINDS = {"oco": nb.G_OCO, "bracket": nb.G_BRACKET, "oto": nb.G_OTO, "multileg": nb.G_MULTILEG}
MAX_CLIENT_ID = 36


def new_client_id(prefix: str = "b4j") -> str:
    """A fresh client order id: `prefix` + 16 random hex digits (64 bits: collisions are not a
    practical concern within one account)."""
    if not prefix.isalnum() or len(prefix) > 12:
        raise ValueError(f"client id prefix must be 1-12 letters or digits; got {prefix!r}")
    return prefix + secrets.token_hex(8)


class LinkedOrder(NamedTuple):
    """A group of orders handled together; `OrderManager.submit_group(*linked)` takes it apart."""
    kind: str                      # one of LINK_KINDS
    legs: tuple[OrderRequest, ...]
    group_id: str


def order(symbol: str, side: int, type: str, amount: float, *, price: float | None = None,
          stop_price: float | None = None, tif: str = "GTC", expire_ts: int | None = None,
          post_only: bool = False, client_id: str | None = None) -> OrderRequest:
    """A validated OrderRequest with a fresh client id unless one is given."""
    req = OrderRequest(client_id or new_client_id(), symbol, side, type, float(amount),
                       None if price is None else float(price),
                       None if stop_price is None else float(stop_price), tif, expire_ts, post_only)
    validate_request(req)
    return req


def validate_request(req: OrderRequest) -> None:
    """Raise ValueError naming the field when `req` is not an order the kernel accepts."""
    def bad(field: str, why: str):
        raise ValueError(f"order {req.client_id!r}: field '{field}' {why}; got {getattr(req, field)!r}")

    if not req.client_id or len(req.client_id) > MAX_CLIENT_ID:
        bad("client_id", f"must be 1-{MAX_CLIENT_ID} characters")
    if req.side not in (1, -1):
        bad("side", "must be +1 (buy) or -1 (sell)")
    if req.type not in ORDER_TYPES:
        bad("type", f"must be one of {ORDER_TYPES}")
    if req.tif not in TIME_IN_FORCE:
        bad("tif", f"must be one of {TIME_IN_FORCE}")
    if not (isinstance(req.amount, (int, float)) and 0 < req.amount < math.inf):
        bad("amount", "must be a finite number > 0")
    needs_price = req.type in ("limit", "stop_limit")
    needs_stop = req.type in ("stop", "stop_limit")
    for name, needed in (("price", needs_price), ("stop_price", needs_stop)):
        value = getattr(req, name)
        if needed and not (value is not None and 0 < value < math.inf):
            bad(name, f"must be a finite number > 0 for a {req.type} order")
        if not needed and value is not None:
            bad(name, f"must be None for a {req.type} order")
    if req.post_only and (req.type != "limit" or req.tif in ("IOC", "FOK")):
        bad("post_only", "applies to GTC or GTD limit orders only")
    if (req.tif == "GTD") != (req.expire_ts is not None):
        bad("expire_ts", "is required for GTD and only for GTD")


def _group_id(group_id: str | None) -> str:
    gid = group_id or new_client_id("g")
    if len(gid) > MAX_CLIENT_ID - 3:
        raise ValueError(f"group id must be at most {MAX_CLIENT_ID - 3} characters; got {gid!r}")
    return gid


def _exit_leg(symbol, side, amount, stop, stop_limit, tif, cid):
    if stop_limit is None:
        return order(symbol, side, "stop", amount, stop_price=stop, tif=tif, client_id=cid)
    return order(symbol, side, "stop_limit", amount, price=stop_limit, stop_price=stop, tif=tif, client_id=cid)


def oco(symbol: str, side: int, amount: float, *, price: float, stop_price: float,
        stop_limit_price: float | None = None, tif: str = "GTC", group_id: str | None = None) -> LinkedOrder:
    """One-cancels-the-other: a limit at `price` and a stop (stop-limit at `stop_limit_price` when
    given) at `stop_price`, same side and amount; a fill on either shrinks or cancels the other.
    The usual exit of a long: side -1, price above the market, stop below."""
    gid = _group_id(group_id)
    legs = (order(symbol, side, "limit", amount, price=price, tif=tif, client_id=f"{gid}-a"),
            _exit_leg(symbol, side, amount, stop_price, stop_limit_price, tif, f"{gid}-b"))
    return LinkedOrder("oco", legs, gid)


def bracket(symbol: str, side: int, amount: float, *, entry_price: float | None = None,
            take_profit: float | None = None, stop_loss: float | None = None,
            stop_limit_price: float | None = None, tif: str = "GTC", group_id: str | None = None) -> LinkedOrder:
    """An entry (limit at `entry_price`, market when None) then, for whatever it fills, a
    take-profit limit and / or a stop-loss (stop, or stop-limit at `stop_limit_price`) on the other
    side as an OCO. At least one exit is required; for a long, take_profit > stop_loss."""
    if take_profit is None and stop_loss is None:
        raise ValueError("bracket: give take_profit, stop_loss or both")
    if take_profit is not None and stop_loss is not None and side * (take_profit - stop_loss) <= 0:
        raise ValueError(f"bracket: take_profit {take_profit} must be on the profit side of stop_loss {stop_loss}")
    gid = _group_id(group_id)
    entry = order(symbol, side, "market" if entry_price is None else "limit", amount, price=entry_price,
                  tif=tif, client_id=f"{gid}-e")
    legs = [entry]
    if take_profit is not None:
        legs.append(order(symbol, -side, "limit", amount, price=take_profit, client_id=f"{gid}-tp"))
    if stop_loss is not None:
        legs.append(_exit_leg(symbol, -side, amount, stop_loss, stop_limit_price, "GTC", f"{gid}-sl"))
    return LinkedOrder("bracket", tuple(legs), gid)


def _relabel(req: OrderRequest, cid: str) -> OrderRequest:
    values = {f.name: getattr(req, f.name) for f in fields(req)}
    values["client_id"] = cid
    out = OrderRequest(**values)
    validate_request(out)
    return out


def oto(primary: OrderRequest, secondary: OrderRequest, group_id: str | None = None) -> LinkedOrder:
    """One-triggers-the-other: `secondary` is sent only once `primary` is completely filled, and
    cancelled if the primary ends otherwise. The legs get the group's client ids."""
    gid = _group_id(group_id)
    return LinkedOrder("oto", (_relabel(primary, f"{gid}-p"), _relabel(secondary, f"{gid}-s")), gid)


def multileg(legs: Sequence[OrderRequest], group_id: str | None = None) -> LinkedOrder:
    """Legs sent together and cancelled together: any leg rejected, cancelled or expired cancels the
    others (fills do not)."""
    if not 2 <= len(legs) <= nb.MAX_LEGS:
        raise ValueError(f"multileg: 2 to {nb.MAX_LEGS} legs; got {len(legs)}")
    gid = _group_id(group_id)
    return LinkedOrder("multileg", tuple(_relabel(leg, f"{gid}-{i}") for i, leg in enumerate(legs)), gid)


# ---------------------------------------------------------------------------------------------------
# pre-trade limits


@dataclass(frozen=True)
class OrderLimits:
    """Pre-trade limits of one symbol's order manager (see kernels/orders_nb.risk_check_nb).

    max_position  largest |position| in base units, counting the open orders on the same side
    max_notional  largest single order in quote (amount * limit / stop / mark price)
    allow_short   False: never sell more than is held (open sells included)
    fee_bps       added to a buy's cost in the balance check (the venue's taker fee)
    """
    max_position: float = math.inf
    max_notional: float = math.inf
    allow_short: bool = False
    fee_bps: float = 10.0

    def __post_init__(self):
        for name in ("max_position", "max_notional", "fee_bps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ConfigError(f"order limits field '{name}' must be a number >= 0, got {value!r}")
        if not isinstance(self.allow_short, bool):
            raise ConfigError(f"order limits field 'allow_short' must be true or false, got {self.allow_short!r}")


def limits_record(limits: OrderLimits, lot: float) -> np.ndarray:
    """The kernel's one-element LIMITS_DTYPE array."""
    out = np.zeros(1, nb.LIMITS_DTYPE)
    out["lot"], out["max_position"], out["max_notional"] = lot, limits.max_position, limits.max_notional
    out["allow_short"], out["fee"] = float(limits.allow_short), limits.fee_bps * 1e-4
    return out


def risk_reasons(mask: int) -> tuple[str, ...]:
    """The names of the denials in a risk mask, lowest bit first ("" for none)."""
    return tuple(name for bit, name in sorted(nb.RISK_NAMES.items()) if mask & bit)


def to_lots(amount: float, lot: float) -> int:
    """`amount` in whole lots, rounded to the nearest (amounts are expected on the lot grid)."""
    return int(round(amount / lot))


def from_lots(lots: int, lot: float) -> float:
    """The float nearest to lots * lot computed exactly in decimal (3 * 0.1 -> 0.3, not
    0.30000000000000004), so a venue rounding it down to its step gets the same lots back."""
    return float(Decimal(int(lots)) * Decimal(repr(float(lot))))
