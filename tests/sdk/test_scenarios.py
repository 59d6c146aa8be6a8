"""Simulators against the whole gateway (orders decided, results signed), over a real broker.

Each scenario seeds a small fleet through the HTTP API with `seed_fleet`, then drives the
simulators by hand with `step(now)`, so that every step is deterministic given the seed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from simulators.car import Car
from simulators.fleet import TOP_UPS, Broker, Fleet, Mix, seed_fleet
from simulators.household import Fridge, SmartMeter
from simulators.misbehaving import MISCHIEF, MisbehavingDevice
from simulators.population import run_population
from simulators.stations import FuelPump
from tests.support.gateway import ADMIN_TOKEN
from tests.support.stack import Http

T = TypeVar("T")


@pytest.fixture
def make_fleet(live: Http, tmp_path: Path) -> Iterator[Callable[[Mix], Fleet]]:
    fleets: list[Fleet] = []

    def make(mix: Mix) -> Fleet:
        fleet = seed_fleet(
            live.url,
            Broker("127.0.0.1", live.stack.port),
            ADMIN_TOKEN,
            mix,
            tmp_path / f"fleet-{len(fleets)}",
            seed=42,
        )
        fleets.append(fleet)
        return fleet

    yield make
    for fleet in fleets:
        fleet.close()


def only(fleet: Fleet, cls: type[T]) -> T:
    [found] = [s for s in fleet.simulators if isinstance(s, cls)]
    return found


def run_until(fleet: Fleet, done: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, "the scenario did not finish in time"
        fleet.step(time.monotonic())
        time.sleep(0.01)


def test_a_car_fuels_under_a_hold_the_pump_captures_and_refunds(
    make_fleet: Callable[[Mix], Fleet],
) -> None:
    fleet = make_fleet(Mix(cars=1, pumps=1))
    car, pump = only(fleet, Car), only(fleet, FuelPump)
    pump.session_s, pump.void_probability = (0.1, 0.2), 0.0
    pump.refund_probability, pump.refund_after_s = 1.0, 0.1
    hold_id = car.refuel(pump, time.monotonic())
    run_until(fleet, lambda: any(e.event == "refund_received" for e in car.events))
    hold = car.client.wait_for_result(hold_id)
    assert (hold.status, hold.amount) == ("approved", pump.preauth_minor)
    captured = [e for e in car.events if e.event == "hold_captured"][0]
    refunded = [e for e in car.events if e.event == "refund_received"][0]
    assert captured.payment_id == refunded.payment_id == hold.payment_id
    assert captured.amount is not None and 0 < captured.amount <= pump.preauth_minor
    assert captured.amount == pump.dispensed_minor
    assert refunded.amount == max(1, pump.dispensed_minor // 10)
    placed = [e for e in pump.events if e.event == "hold_placed"][0]
    assert placed.payer_device_id == car.device_id
    wallet = fleet.owners[car.device_id].wallet(car.device_id)
    expected = TOP_UPS["car"] - pump.dispensed_minor + refunded.amount
    assert wallet == {"currency": "EUR", "balance": expected, "available": expected}


def test_a_pump_voids_when_the_car_leaves_without_fuel(
    make_fleet: Callable[[Mix], Fleet],
) -> None:
    fleet = make_fleet(Mix(cars=1, pumps=1))
    car, pump = only(fleet, Car), only(fleet, FuelPump)
    pump.session_s, pump.void_probability = (0.05, 0.1), 1.0
    car.refuel(pump, time.monotonic())
    run_until(fleet, lambda: any(e.event == "hold_voided" for e in car.events))
    wallet = fleet.owners[car.device_id].wallet(car.device_id)
    assert wallet["balance"] == wallet["available"] == TOP_UPS["car"]


def test_a_car_pays_parking_tolls_and_insurance_under_its_mandate(
    make_fleet: Callable[[Mix], Fleet],
) -> None:
    fleet = make_fleet(Mix(cars=1))
    car = only(fleet, Car)
    orders = [car.do(action, time.monotonic()) for action in ("park", "toll", "insure")]
    orders += [car.pay_merchant("insurance", 17500, "a premium above approval_above")]
    results = [car.client.wait_for_result(order_id) for order_id in orders]
    assert [r.status for r in results] == ["approved"] * 4  # the mandate covers 17500 > 15000


def test_a_fridges_large_order_waits_for_the_owner(make_fleet: Callable[[Mix], Fleet]) -> None:
    fleet = make_fleet(Mix(fridges=1))
    fridge = only(fleet, Fridge)
    owner = fleet.owners[fridge.device_id]
    fridge.large_probability = 0.0
    small = fridge.client.wait_for_result(fridge.act(time.monotonic()))
    assert small.status == "approved"
    fridge.large_probability = 1.0
    large_id = fridge.act(time.monotonic())
    pending = fridge.client.wait_for_result(large_id, final=False)
    assert pending.status == "pending_approval"
    [approval] = owner.pending_approvals()
    assert approval["order_id"] == large_id and approval["device_id"] == fridge.device_id
    assert owner.decide(approval["id"], approve=True)["result"]["status"] == "approved"
    final = fridge.client.wait_for_result(large_id, timeout_s=10)
    assert (final.status, final.amount) == ("approved", approval["amount"])
    assert fridge.client.journal.unfinished() == []


def test_a_smart_meter_pays_the_utility_under_its_mandate(
    make_fleet: Callable[[Mix], Fleet],
) -> None:
    fleet = make_fleet(Mix(meters=1))
    meter = only(fleet, SmartMeter)
    bills = [meter.client.wait_for_result(meter.act(time.monotonic())) for _ in range(3)]
    assert [b.status for b in bills] == ["approved"] * 3  # approval_above 1, but mandated


def test_a_misbehaving_device_gets_each_refusal_it_asked_for(
    make_fleet: Callable[[Mix], Fleet],
) -> None:
    fleet = make_fleet(Mix(misbehaving=1))
    rogue = only(fleet, MisbehavingDevice)

    def done() -> bool:
        return {m for m, _ in rogue.refusals} == set(MISCHIEF) and not rogue.outstanding

    deadline = time.monotonic() + 20
    while not done():
        assert time.monotonic() < deadline, (rogue.refusals, rogue.expected, rogue.surprises)
        if not rogue.outstanding:
            rogue.act(time.monotonic())
        fleet.step(time.monotonic())
        time.sleep(0.02)
    assert rogue.surprises == []
    wallet = fleet.owners[rogue.device_id].wallet(rogue.device_id)
    assert wallet["balance"] == TOP_UPS["other"] - 1  # only the one honest cent moved


def test_a_population_at_a_fixed_rate_is_answered_in_full(live: Http, tmp_path: Path) -> None:
    summary = run_population(
        live.url,
        "127.0.0.1",
        live.stack.port,
        ADMIN_TOKEN,
        devices=6,
        rate=20,
        duration_s=2,
        state_dir=tmp_path / "population",
        seed=7,
        settle_s=20,
    )
    print(summary.render())
    assert summary.arrivals == 40
    assert summary.orders_sent >= 40
    assert summary.unanswered == 0 and summary.surprises == [] and summary.dropped == 0
    assert summary.latency_p50_ms is not None and summary.latency_p99_ms is not None
    assert summary.results.get("approved", 0) > 0
