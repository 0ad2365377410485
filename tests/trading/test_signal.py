"""The signal: probability → target position, long-only, scaled in and capped."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from ares_stream.config import TradingConfig
from ares_stream.trading.signal import target_position

CFG = TradingConfig(enter=0.55, exit=0.5, order_notional=1000.0, max_position_notional=2000.0)


def test_enter_scales_in_by_order_notional_up_to_the_cap() -> None:
    """Each bar above ``enter`` adds ``order_notional`` of quote until the cap is reached."""
    qty = 0.0
    seen = []
    for _ in range(4):
        qty = target_position(0.7, qty, 250.0, CFG)
        seen.append(qty)
    assert seen == [4.0, 8.0, 8.0, 8.0]


def test_exit_goes_flat_and_the_band_between_holds() -> None:
    """Below ``exit`` the target is zero; between the thresholds (and at them) it is unchanged."""
    assert target_position(0.49, 3.0, 100.0, CFG) == 0.0
    assert target_position(0.5, 3.0, 100.0, CFG) == 3.0
    assert target_position(0.55, 3.0, 100.0, CFG) == 3.0


def test_nan_probability_holds() -> None:
    """A NaN probability (a regression model) neither enters nor exits."""
    assert target_position(math.nan, 2.0, 100.0, CFG) == 2.0


@given(st.floats(0.0, 1.0), st.floats(0.0, 50.0), st.floats(1.0, 1e5))
def test_target_is_never_negative_and_never_buys_past_the_cap(p: float, qty: float,
                                                              price: float) -> None:
    """The target is ≥ 0 and a buy never takes the position past ``max_position_notional``."""
    target = target_position(p, qty, price, CFG)
    assert target >= 0.0
    if target > qty:
        assert target * price <= CFG.max_position_notional * (1 + 1e-12)
