"""What `kym demo` makes happen, apart from the view: the scripted scenarios and the owners.

`opening` is the script that plays first, so that every outcome shows within seconds; `Story`
keeps what each order was and what the devices were told, which the script's scenarios are
checked against; `Desk` plays the owners, deciding the approvals their event streams announce
and topping up wallets.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from devices.sdk import ApiError, DeviceClient, Event, PreparedOrder, Result
from devices.sdk.messages import PENDING, pay_fields
from simulators.backoffice import Balance, Owner
from simulators.base import SimDevice
from simulators.car import Car
from simulators.demo.events import Inbox
from simulators.fleet import CURRENCY, TOP_UPS, Fleet
from simulators.household import Fridge, SmartMeter
from simulators.misbehaving import MisbehavingDevice
from simulators.stations import EvCharger, FuelPump

SESSION_S = (1.5, 3.5)  # a car at a pump or a charger, compressed like the month
ROGUE_EVERY_S = 0.7  # the misbehaving device's pace while the script plays
DECIDE_AFTER_S = 1.5  # the owner reads an approval before deciding, so that it shows
APPROVE_PROBABILITY = 0.75
TOP_UP_BELOW = 0.25  # of the device's first top-up
REPAIR_BILL = 48_000  # above what the funded car's owner keeps: an instalment offer

T = TypeVar("T")


class Story:
    """What each order was and what the devices were told about it (main thread only)."""

    def __init__(self) -> None:
        self.orders: dict[tuple[str, str], dict[str, Any]] = {}  # as signed
        self.payers: dict[str, str] = {}  # payment id -> the device that pays
        self.payments: dict[tuple[str, str], str] = {}  # (device, order) -> payment id
        self.statuses: defaultdict[tuple[str, str], list[str]] = defaultdict(list)
        self.events: defaultdict[tuple[str, str], list[str]] = defaultdict(list)
        self.outcomes: Counter[tuple[str, str, str]] = Counter()  # (type, status, reason)
        self.replays = 0

    def watch(self, client: DeviceClient) -> None:
        """Note every order the client signs: results name the order, not what it was."""
        prepare = client.prepare

        def noting(
            fields: dict[str, Any], order_id: str | None = None, ts: int | None = None
        ) -> PreparedOrder:
            prepared = prepare(fields, order_id, ts)
            self.orders[(client.device_id, prepared.order_id)] = fields
            return prepared

        client.prepare = noting  # type: ignore[method-assign]

    def order(self, device_id: str, order_id: str | None) -> dict[str, Any]:
        return self.orders.get((device_id, order_id or ""), {})

    def note_result(self, device_id: str, result: Result) -> None:
        if result.duplicate:
            self.replays += 1
            return
        key = (device_id, result.order_id or "")
        went_pending = PENDING in self.statuses.get(key, [])
        if result.order_id:
            self.statuses[key].append(decision_of(result.status, result.reason))
        if result.status == "approved" and result.payment_id:
            self.payers[result.payment_id] = device_id
            self.payments[key] = result.payment_id
        if result.is_final:
            reason = result.reason or ("after the owner approved" if went_pending else "")
            kind = self.order(device_id, result.order_id).get("type", "-")
            self.outcomes[(kind, result.status, reason)] += 1

    def note_event(self, device_id: str, event: Event) -> None:
        self.events[(device_id, event.payment_id or "")].append(event.event)


@dataclass
class Scenario:
    """One scripted order and what must come of it: its results, then its payer's events."""

    at_s: float
    label: str
    payer: SimDevice
    send: Callable[[float], str]
    statuses: tuple[str, ...]
    events: tuple[str, ...] = ()
    decision: bool | None = None  # the owner's, when the order waits for approval
    order_id: str | None = None

    def observed(self, story: Story) -> tuple[list[str], list[str]]:
        """The results (repeats merged) and the payer's events about its payment."""
        key = (self.payer.device_id, self.order_id or "")
        statuses: list[str] = []
        for status in story.statuses.get(key, []):
            if not statuses or statuses[-1] != status:
                statuses.append(status)
        payment_id = story.payments.get(key)
        events = story.events.get((self.payer.device_id, payment_id), []) if payment_id else []
        return statuses, list(events)

    def matched(self, story: Story) -> bool:
        return self.observed(story) == (list(self.statuses), list(self.events))

    def finished(self, story: Story) -> bool:
        statuses, events = self.observed(story)
        if not statuses or statuses[-1] == PENDING:
            return False
        return statuses != list(self.statuses) or len(events) >= len(self.events)


def opening(fleet: Fleet) -> list[Scenario]:
    """The script: every outcome the contract describes, in the first seconds (the stations
    are set up for it: the pump's first customer gets a refund, the charger's leaves)."""
    car, other_car = [s for s in fleet.simulators if isinstance(s, Car)][:2]
    pump, charger = only(fleet, FuelPump), only(fleet, EvCharger)
    fridge, meter = only(fleet, Fridge), only(fleet, SmartMeter)
    for station in (pump, charger):
        station.session_s, station.refund_after_s = SESSION_S, 1.0
    pump.void_probability, pump.refund_probability = 0.0, 1.0  # changed when the script ends
    charger.void_probability = 1.0

    def shop(amount_minor: int, what: str) -> Callable[[float], str]:
        return lambda _now: fridge.send(pay_fields(fridge.grocer, amount_minor, CURRENCY, what))

    # A table, one scenario to a row: the formatter would spread it over 60 lines.
    # fmt: off
    return [
        Scenario(0.0, "fuels under a hold; the pump captures, refunds a little",
                 car, lambda now: car.refuel(pump, now), ("approved",),
                 ("hold_captured", "refund_received")),
        Scenario(0.6, "leaves the charger without charging: hold voided",
                 other_car, lambda now: other_car.refuel(charger, now), ("approved",),
                 ("hold_voided",)),
        Scenario(1.2, "pays for parking", other_car,
                 lambda _now: other_car.pay_merchant("parking", 450, "2 h parking"),
                 ("approved",)),
        Scenario(1.8, "reorders milk", fridge, shop(2380, "milk, eggs, butter"),
                 ("approved",)),
        Scenario(2.4, "pays the month's electricity under its mandate", meter,
                 meter.act, ("approved",)),
        Scenario(3.0, "insurance above approval_above, covered by a mandate", car,
                 lambda _now: car.pay_merchant("insurance", 17500, "insurance renewal"),
                 ("approved",)),
        Scenario(3.6, "weekly shop: waits for the owner, who approves", fridge,
                 shop(12450, "weekly shop"), (PENDING, "approved"), decision=True),
        Scenario(4.2, "buys snacks: groceries are not among its categories",
                 other_car, lambda _now: other_car.pay_merchant("groceries", 3500, "snacks"),
                 ("declined category_not_allowed",)),
        Scenario(4.8, "party order: waits for the owner, who declines", fridge,
                 shop(18990, "party"), (PENDING, "declined approval_declined"), decision=False),
        Scenario(5.4, "pays a motorway toll", car,
                 lambda _now: car.pay_merchant("tolls", 820, "motorway toll"), ("approved",)),
    ] + ([
        Scenario(6.0, "repair bill: the owner takes an instalment offer", car,
                 lambda _now: car.pay_merchant("maintenance", REPAIR_BILL, "brake repair"),
                 (PENDING, "approved"), decision=True),
    ] if car.device_id in fleet.funded else [])
    # fmt: on


class Script:
    """Sends each scenario at its time, and the rogue's tricks one after another."""

    def __init__(
        self, scenarios: list[Scenario], rogue: MisbehavingDevice, plan: dict[str, bool]
    ) -> None:
        self.scenarios, self.rogue, self.plan = scenarios, rogue, plan
        self._rogue_next = 0.3

    def run(self, elapsed_s: float, now: float) -> None:
        for scenario in self.scenarios:
            if scenario.order_id is None and elapsed_s >= scenario.at_s:
                scenario.order_id = scenario.send(now)
                if scenario.decision is not None:
                    self.plan[scenario.order_id] = scenario.decision
        if not self.rogue_done and not self.rogue.outstanding and elapsed_s >= self._rogue_next:
            self.rogue.act(now)
            self._rogue_next = elapsed_s + ROGUE_EVERY_S

    @property
    def rogue_done(self) -> bool:
        return {m for m, _ in self.rogue.refusals} >= set(self.rogue.mischief)

    def done(self, story: Story) -> bool:
        scenarios_done = all(s.order_id and s.finished(story) for s in self.scenarios)
        return scenarios_done and self.rogue_done and not self.rogue.outstanding


class Desk:
    """Plays the owners: decides each approval a moment after its owner's event stream announced
    it (`approval.pending`, through the `Inbox`); tops up low wallets."""

    def __init__(
        self,
        fleet: Fleet,
        inbox: Inbox,
        plan: dict[str, bool],
        rng: random.Random,
        say: Callable[[str], None],
        names: dict[str, str],
    ) -> None:
        self.fleet, self.inbox, self.plan, self.rng = fleet, inbox, plan, rng
        self.say, self.names = say, names
        self.waiting: dict[str, tuple[float, Owner, dict[str, Any]]] = {}
        self.decided: Counter[str] = Counter()
        self.topped_up = 0

    def run(self, now: float) -> None:
        for owner, approval in self.inbox.pending():
            self.waiting.setdefault(approval["id"], (now + DECIDE_AFTER_S, owner, approval))
        for approval_id, (at, owner, approval) in list(self.waiting.items()):
            if now >= at:
                del self.waiting[approval_id]
                self._decide(owner, approval)

    def _decide(self, owner: Owner, approval: dict[str, Any]) -> None:
        approve = self.plan.pop(approval["order_id"], None)
        if approve is None:
            approve = self.rng.random() < APPROVE_PROBABILITY
        offer = approval.get("offer") if approve else None
        option = choose(offer) if offer else None
        try:
            owner.decide(approval["id"], approve, option["count"] if option else None)
        except ApiError as exc:
            if exc.status != 409:  # 409: decided or expired meanwhile
                raise
            return
        self.decided["approved" if approve else "declined"] += 1
        device = self.names.get(approval["device_id"], approval["device_id"])
        if offer and option:
            self.say(
                f"the owner accepts the instalment offer for {device}'s "
                f"{money(approval['amount'])}: {offer_text(offer, option)}"
            )
            return
        self.say(
            f"the owner {'approves' if approve else 'declines'} {device}'s order of "
            f"{money(approval['amount'])}"
        )

    def top_up(self, wallets: dict[str, Balance]) -> None:
        for simulator in self.fleet.payers:
            if simulator.device_id in self.fleet.funded:
                continue  # its owner's everyday account tops it up, with each payment
            full = TOP_UPS[simulator.kind]
            wallet = wallets.get(simulator.device_id)
            if wallet is None or wallet.available_minor >= full * TOP_UP_BELOW:
                continue
            self.topped_up += 1
            amount = full - wallet.available_minor
            owner = self.fleet.owners[simulator.device_id]
            owner.top_up(simulator.device_id, amount, CURRENCY, f"demo-{self.topped_up}")
            self.say(f"the owner tops up {self.names[simulator.device_id]} with {money(amount)}")


def choose(offer: dict[str, Any]) -> dict[str, Any]:
    """The instalment option the demo's owner takes: the middle one (6 of 3, 6 and 12)."""
    options: list[dict[str, Any]] = offer["options"]
    return options[len(options) // 2]


def offer_text(offer: dict[str, Any], option: dict[str, Any]) -> str:
    """What the owner read before accepting: the count, each instalment, the fee, the total."""
    return (
        f"{option['count']} of {money(option['instalment_amount'])} every "
        f"{offer['interval_days']} days, fee {money(option['fee'])}, total "
        f"{money(option['total'])}, first due {option['first_due'][:10]}"
    )


def only(fleet: Fleet, cls: type[T]) -> T:
    [found] = [s for s in fleet.simulators if isinstance(s, cls)]
    return found


def decision_of(status: str, reason: str | None) -> str:
    """A result as the script writes it: its status, then its reason when it has one."""
    return f"{status} {reason}" if reason else status


def money(amount_minor: int) -> str:
    """Minor units as an amount for a person (every wallet here is in euros, two decimals)."""
    sign = "-" if amount_minor < 0 else ""
    units, cents = divmod(abs(amount_minor), 100)
    return f"{sign}{units:,}.{cents:02d} {CURRENCY}"
