"""A car: fuels at pumps and charges at chargers under holds, pays parking and tolls, and
renews its insurance under a standing mandate."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from devices.sdk import DeviceClient, Result
from devices.sdk.messages import hold_fields, pay_fields
from simulators.base import SimDevice
from simulators.metrics import Recorder
from simulators.stations import Station

ACTIONS = ("refuel", "charge", "park", "toll", "insure")
WEIGHTS = (3, 2, 4, 4, 1)


class Car(SimDevice):
    """`merchants` maps a category (`parking`, `tolls`, `insurance`) to a merchant id."""

    kind = "car"

    def __init__(
        self,
        client: DeviceClient,
        *,
        merchants: Mapping[str, str],
        pumps: Sequence[Station] = (),
        chargers: Sequence[Station] = (),
        rng: random.Random | None = None,
        recorder: Recorder | None = None,
        interval_s: float | None = None,
        currency: str = "EUR",
        weights: Sequence[float] = WEIGHTS,
        hold_expires_in_s: int = 600,
    ) -> None:
        super().__init__(
            client, rng=rng, recorder=recorder, interval_s=interval_s, currency=currency
        )
        self.merchants, self.pumps, self.chargers = dict(merchants), pumps, chargers
        self.weights, self.hold_expires_in_s = weights, hold_expires_in_s
        self.holds: dict[str, str] = {}  # hold order id -> the station's device id
        self.refused: list[Result] = []

    def act(self, now: float) -> str | None:
        possible = [(a, w) for a, w in zip(ACTIONS, self.weights, strict=True) if self._can(a)]
        if not possible:
            return None
        action = self.rng.choices([a for a, _ in possible], [w for _, w in possible])[0]
        return self.do(action, now)

    def do(self, action: str, now: float) -> str:
        """One named action: refuel, charge, park, toll or insure."""
        if action == "refuel":
            return self.refuel(self.rng.choice(self.pumps), now)
        if action == "charge":
            return self.refuel(self.rng.choice(self.chargers), now)
        if action == "park":
            return self.pay_merchant("parking", self.rng.randint(150, 900), "parking")
        if action == "toll":
            return self.pay_merchant("tolls", self.rng.randint(200, 1500), "motorway toll")
        return self.pay_merchant("insurance", self.rng.randint(9000, 18000), "insurance renewal")

    def refuel(self, station: Station, now: float) -> str:
        """Ask the station how much to reserve and hold it; the station captures later."""
        amount = station.preauthorise(self.device_id, now)
        fields = hold_fields(
            station.device_id,
            amount,
            self.currency,
            self.hold_expires_in_s,
            f"{station.unit}s at {station.device_id}",
        )
        order_id = self.send(fields)
        self.holds[order_id] = station.device_id
        return order_id

    def pay_merchant(self, category: str, amount_minor: int, description: str) -> str:
        return self.send(
            pay_fields(self.merchants[category], amount_minor, self.currency, description)
        )

    def on_result(self, result: Result, now: float) -> None:
        if result.status in ("declined", "rejected"):
            self.refused.append(result)
        if result.is_final and result.order_id:
            self.holds.pop(result.order_id, None)

    def _can(self, action: str) -> bool:
        if action == "refuel":
            return bool(self.pumps)
        if action == "charge":
            return bool(self.chargers)
        return {"park": "parking", "toll": "tolls", "insure": "insurance"}[action] in self.merchants
