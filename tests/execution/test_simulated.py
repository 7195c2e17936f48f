import pytest

from bot4jax.execution.simulated import SimulatedExchange


def test_market_order_fills_at_next_price_with_slippage_and_fee():
    ex = SimulatedExchange(cash=1000.0, fee_bps=10, slippage_bps=5)
    assert ex.submit_market(0, 1, 2.0) is not None
    assert ex.fills == []  # nothing fills before the next price
    (fill,) = ex.on_price(60_000, 100.0)
    assert fill.price == pytest.approx(100.05)
    assert fill.fee == pytest.approx(2 * 100.05 * 1e-3)
    assert ex.position == 2.0
    assert ex.cash == pytest.approx(1000 - 200.1 - fill.fee)
    ex.submit_market(60_000, -1, 2.0)
    (sell,) = ex.on_price(120_000, 110.0)
    assert sell.price == pytest.approx(110 * (1 - 5e-4))
    assert ex.position == 0.0
    assert ex.equity(1.0) == pytest.approx(ex.cash)
    assert ex.fees_paid == pytest.approx(fill.fee + sell.fee)


def test_buys_shrink_to_cash_and_sells_never_exceed_position():
    ex = SimulatedExchange(cash=100.0, fee_bps=10, slippage_bps=0)
    ex.submit_market(0, 1, 5.0)
    (fill,) = ex.on_price(1, 50.0)
    assert fill.amount == pytest.approx(100 / (50 * 1.001))
    assert ex.cash == pytest.approx(0.0, abs=1e-9)
    assert ex.submit_market(2, -1, 10.0) is None and ex.rejected == 1
    assert ex.submit_market(2, 1, 0.0) is None and ex.rejected == 2
