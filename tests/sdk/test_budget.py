"""The device's send budget: new orders and re-sends share it, new orders first."""

from __future__ import annotations

from devices.sdk.budget import SendBudget


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_new_orders_go_first_and_resends_take_only_what_is_left() -> None:
    clock = FakeClock()
    budget = SendBudget(8, clock)
    budget.spend(5)
    assert budget.take(10) == 3  # a full budget less the application's 5
    clock.now += 0.5
    budget.spend(4)  # the half second's refill went to new orders
    assert budget.take(10) == 0


def test_a_burst_of_new_orders_never_takes_the_budget_below_empty() -> None:
    clock = FakeClock()
    budget = SendBudget(8, clock)
    budget.spend(100)  # the gateway refuses what exceeds its own bucket and counts no debt
    clock.now += 0.25
    assert budget.take(10) == 2


def test_what_a_resend_did_not_use_goes_back_and_the_budget_never_exceeds_a_second() -> None:
    clock = FakeClock()
    budget = SendBudget(8, clock)
    assert budget.take(8) == 8
    budget.give_back(3)
    assert budget.take(8) == 3
    clock.now += 60
    assert budget.take(100) == 8
