"""The simulators' scenarios that `tests/sdk/test_scenarios.py` leaves out, end to end: the
whole gateway (orders decided, results signed) on Mosquitto and on the embedded broker, the
API over real HTTP, devices made and driven by the SDK.

Covered there and not repeated here: a car fuelling under a hold that the pump captures and
refunds, a pump voiding, parking, tolls and insurance under a mandate, a fridge's large order
approved by the owner, a meter's bills under its mandate, each refusal of the misbehaving
device, and a population at a fixed rate.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from simulators.car import Car
from simulators.fleet import RULES, TOP_UPS, Broker, Fleet, Mix, seed_fleet
from simulators.household import Fridge, SmartMeter
from simulators.population import OwnerDesk
from simulators.stations import EvCharger
from tests.support.gateway import ADMIN_TOKEN
from tests.support.stack import Http  # noqa: F401 - the fixture, reused

T = TypeVar("T")
MakeFleet = Callable[..., Fleet]


@pytest.fixture
def make_fleet(live: Http, tmp_path: Path) -> Iterator[MakeFleet]:  # noqa: F811
    fleets: list[Fleet] = []

    def make(mix: Mix, **options: Any) -> Fleet:
        fleet = seed_fleet(
            live.url,
            Broker("127.0.0.1", live.stack.port),
            ADMIN_TOKEN,
            mix,
            tmp_path / f"fleet-{len(fleets)}",
            seed=11,
            **options,
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


def test_a_car_charges_under_a_hold_and_the_charger_captures_what_it_delivered(
    make_fleet: MakeFleet,
) -> None:
    fleet = make_fleet(Mix(cars=1, chargers=1))
    car, charger = only(fleet, Car), only(fleet, EvCharger)
    charger.session_s, charger.void_probability, charger.refund_probability = (0.1, 0.2), 0, 0
    hold_id = car.refuel(charger, time.monotonic())
    run_until(
        fleet,
        lambda: any(e.event == "hold_captured" for e in car.events) and charger.dispensed_minor > 0,
    )  # the charger's `captured` may come second
    hold = car.client.wait_for_result(hold_id)
    assert (hold.status, hold.amount) == ("approved", charger.preauth_minor)
    [placed] = [e for e in charger.events if e.event == "hold_placed"]
    assert (placed.payment_id, placed.payer_device_id) == (hold.payment_id, car.device_id)
    [captured] = [e for e in car.events if e.event == "hold_captured"]
    assert captured.payment_id == hold.payment_id
    assert captured.amount == charger.dispensed_minor
    assert 0 < charger.dispensed_minor <= charger.preauth_minor
    assert charger.dispensed_minor % charger.price_per_unit_minor == 0  # whole kWh
    expected = TOP_UPS["car"] - charger.dispensed_minor  # the rest of the hold is released
    wallet = fleet.owners[car.device_id].wallet(car.device_id)
    assert wallet == {"currency": "EUR", "balance": expected, "available": expected}


def test_an_owner_who_declines_leaves_the_fridges_money_where_it_was(
    make_fleet: MakeFleet,
) -> None:
    fleet = make_fleet(Mix(fridges=1))
    fridge = only(fleet, Fridge)
    fridge.large_probability = 1.0
    order_id = fridge.act(time.monotonic())
    assert fridge.client.wait_for_result(order_id, final=False).status == "pending_approval"
    run_until(fleet, lambda: fridge.pending_seen == 1)  # what the desk goes by, set just after
    desk = OwnerDesk(fleet, random.Random(0), approve_probability=0.0)
    desk.run_once()
    final = fridge.client.wait_for_result(order_id)
    assert (final.status, final.reason) == ("declined", "approval_declined")
    assert desk.decided == {"approve": 0, "decline": 1}
    owner = fleet.owners[fridge.device_id]
    assert owner.pending_approvals() == []
    assert owner.wallet(fridge.device_id)["balance"] == TOP_UPS["fridge"]
    assert fridge.client.journal.unfinished() == []


def test_an_approval_nobody_decides_expires_and_the_fridge_hears_so(
    make_fleet: MakeFleet,
) -> None:
    fleet = make_fleet(Mix(fridges=1))
    fridge = only(fleet, Fridge)
    owner = fleet.owners[fridge.device_id]
    owner.set_rules(fridge.device_id, {**RULES["fridge"], "approval_ttl_seconds": 1})
    fridge.large_probability = 1.0
    order_id = fridge.act(time.monotonic())
    assert fridge.client.wait_for_result(order_id, final=False).status == "pending_approval"
    final = fridge.client.wait_for_result(order_id, timeout_s=1 + 5 + 2)  # ttl + 5 s + slack
    assert (final.status, final.reason) == ("declined", "approval_expired")
    assert owner.wallet(fridge.device_id)["balance"] == TOP_UPS["fridge"]


def test_a_smart_meter_pays_each_compressed_month_by_itself_under_its_mandate(
    make_fleet: MakeFleet,
) -> None:
    month_s = 0.4
    fleet = make_fleet(Mix(meters=1), month_s=month_s)
    meter = only(fleet, SmartMeter)
    started = time.monotonic()
    run_until(fleet, lambda: sum(r.is_final for r in meter.results) >= 3)
    elapsed_s = time.monotonic() - started
    meter.interval_s = None  # no more bills; the last step may have sent one more
    run_until(fleet, lambda: fleet.recorder.open_orders == 0)
    bills = list(meter.results)[:3]
    assert [b.status for b in bills] == ["approved"] * 3  # approval_above 1, but mandated
    assert elapsed_s >= 2 * month_s  # one bill a month: the first within the first month
    assert fleet.owners[meter.device_id].pending_approvals() == []
    wallet = fleet.owners[meter.device_id].wallet(meter.device_id)
    paid = sum(b.amount or 0 for b in meter.results if b.status == "approved")
    assert wallet["balance"] == TOP_UPS["smart_meter"] - paid


def test_a_car_on_its_own_schedule_gets_an_answer_to_everything_it_does(
    make_fleet: MakeFleet,
) -> None:
    fleet = make_fleet(Mix(cars=1, pumps=1, chargers=1), interval_s=0.1)
    car = only(fleet, Car)
    for station in fleet.stations:
        station.session_s = (0.05, 0.1)
    run_until(fleet, lambda: len(car.results) >= 8)
    for simulator in fleet.payers:
        simulator.interval_s = None  # stop acting; let what is in flight finish
    run_until(
        fleet,
        lambda: (
            fleet.recorder.open_orders == 0
            and not any(s.serving or s.refunds_due for s in fleet.stations)
        ),
    )
    assert car.refused == []  # rules, mandate and funds allow all of what a car does
    assert car.holds == {}  # every hold answered
    assert sum(len(client.dropped) for client in fleet.clients) == 0
    summary = fleet.recorder.summary(1.0)
    assert summary.unanswered == 0 and summary.surprises == []
