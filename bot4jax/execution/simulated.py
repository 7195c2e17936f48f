"""A simulated spot exchange for replays and paper trading: market orders, fees, slippage.

A market order submitted while bar t is processed fills at the open of the next bar the exchange
sees (the first price after the decision, so no look-ahead), moved against the order by the
slippage, and pays the taker fee on the filled notional in the quote currency. Orders that the
account cannot afford are shrunk to what the cash covers; sells never exceed the position (spot,
no shorting). Every order and fill is kept for the trades file.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Order:
    id: int
    ts: int          # submission time, ms
    side: int        # +1 buy, -1 sell
    amount: float    # base currency


@dataclass(frozen=True)
class Fill:
    order_id: int
    ts: int
    side: int
    amount: float
    price: float
    fee: float       # quote currency


@dataclass
class SimulatedExchange:
    cash: float
    fee_bps: float = 7.5
    slippage_bps: float = 2.5
    position: float = 0.0
    fees_paid: float = 0.0
    traded_notional: float = 0.0
    pending: list = field(default_factory=list)
    orders: list = field(default_factory=list)
    fills: list = field(default_factory=list)
    rejected: int = 0

    def submit_market(self, ts: int, side: int, amount: float) -> Order | None:
        """Queue a market order; returns None (and counts a rejection) for a non-positive amount
        or a sell of more than the position."""
        if not amount > 0 or side not in (1, -1) or (side < 0 and amount > self.position + 1e-12):
            self.rejected += 1
            return None
        order = Order(len(self.orders) + 1, ts, side, amount)
        self.orders.append(order)
        self.pending.append(order)
        return order

    def on_price(self, ts: int, price: float) -> list[Fill]:
        """Fill every pending order at `price` (the next bar's open) moved by the slippage."""
        new = []
        for order in self.pending:
            px = price * (1 + order.side * self.slippage_bps * 1e-4)
            fee_rate = self.fee_bps * 1e-4
            amount = order.amount
            if order.side > 0:
                amount = min(amount, self.cash / (px * (1 + fee_rate)))
            else:
                amount = min(amount, self.position)
            if amount <= 0:
                self.rejected += 1
                continue
            notional = amount * px
            fee = notional * fee_rate
            self.cash -= order.side * notional + fee
            self.position += order.side * amount
            self.fees_paid += fee
            self.traded_notional += notional
            fill = Fill(order.id, ts, order.side, amount, px, fee)
            self.fills.append(fill)
            new.append(fill)
        self.pending = []
        return new

    def equity(self, price: float) -> float:
        return self.cash + self.position * price
