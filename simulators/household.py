"""A fridge that reorders groceries (a large order waits for the owner's approval) and a smart
meter that pays the utility each (possibly compressed) month under a mandate."""

from __future__ import annotations

import random

from devices.sdk import DeviceClient
from devices.sdk.messages import pay_fields
from simulators.base import SimDevice
from simulators.metrics import Recorder


class Fridge(SimDevice):
    """Reorders from one grocer; one order in `large_every` is a big weekly shop."""

    kind = "fridge"

    def __init__(
        self,
        client: DeviceClient,
        *,
        grocer: str,
        rng: random.Random | None = None,
        recorder: Recorder | None = None,
        interval_s: float | None = None,
        currency: str = "EUR",
        large_probability: float = 0.2,
        small_minor: tuple[int, int] = (800, 4000),
        large_minor: tuple[int, int] = (9000, 20000),
    ) -> None:
        super().__init__(
            client, rng=rng, recorder=recorder, interval_s=interval_s, currency=currency
        )
        self.grocer, self.large_probability = grocer, large_probability
        self.small_minor, self.large_minor = small_minor, large_minor

    def act(self, now: float) -> str:
        large = self.rng.random() < self.large_probability
        low, high = self.large_minor if large else self.small_minor
        what = "weekly shop" if large else "milk, eggs, butter"
        return self.send(
            pay_fields(self.grocer, self.rng.randint(low, high), self.currency, f"reorder: {what}")
        )


class SmartMeter(SimDevice):
    """Pays the month's electricity: consumption times price, every `month_s` seconds."""

    kind = "smart_meter"
    regular = True

    def __init__(
        self,
        client: DeviceClient,
        *,
        utility: str,
        rng: random.Random | None = None,
        recorder: Recorder | None = None,
        month_s: float | None = 30 * 86400,
        currency: str = "EUR",
        price_per_kwh_minor: int = 32,
        kwh_per_month: tuple[float, float] = (150.0, 450.0),
    ) -> None:
        super().__init__(client, rng=rng, recorder=recorder, interval_s=month_s, currency=currency)
        self.utility, self.price_per_kwh_minor = utility, price_per_kwh_minor
        self.kwh_per_month = kwh_per_month

    def act(self, now: float) -> str:
        kwh = self.rng.uniform(*self.kwh_per_month)
        amount = max(1, round(kwh * self.price_per_kwh_minor))
        return self.send(
            pay_fields(self.utility, amount, self.currency, f"electricity: {kwh:.0f} kWh")
        )
