"""Payee devices: a fuel pump and an EV charger. They never start a payment; they are paid.

A car at the pump asks how much to reserve (`preauthorise`), sends a `hold` to the pump's
device id, and the pump, on `hold_placed`, dispenses for a while and then `capture`s what was
actually dispensed, or `void`s the hold when the car left without taking anything. Now and
then it refunds part of a capture (a price correction) once the capture is confirmed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from devices.sdk import DeviceClient, Event, Result
from devices.sdk.messages import capture_fields, refund_fields, void_fields
from simulators.base import SimDevice
from simulators.metrics import Recorder


@dataclass
class Dispensing:
    """One car being served under an open hold."""

    payment_id: str
    payer_device_id: str | None
    held_minor: int
    done_at: float


class Station(SimDevice):
    """A payee that serves under holds: capture what it dispensed, void, sometimes refund."""

    kind = "other"
    category = "other"
    initiates = False
    unit = "unit"

    def __init__(
        self,
        client: DeviceClient,
        *,
        rng: random.Random | None = None,
        recorder: Recorder | None = None,
        currency: str = "EUR",
        price_per_unit_minor: int = 100,
        preauth_minor: int = 10000,
        session_s: tuple[float, float] = (2.0, 8.0),
        void_probability: float = 0.05,
        refund_probability: float = 0.05,
        refund_after_s: float = 1.0,
    ) -> None:
        super().__init__(client, rng=rng, recorder=recorder, currency=currency)
        self.price_per_unit_minor, self.preauth_minor = price_per_unit_minor, preauth_minor
        self.session_s = session_s
        self.void_probability, self.refund_probability = void_probability, refund_probability
        self.refund_after_s = refund_after_s
        self.serving: dict[str, Dispensing] = {}
        self.seen: set[str] = set()
        self.captures: dict[str, str] = {}  # capture order id -> payment id
        self.refunds_due: list[tuple[float, str, int]] = []  # (when, payment id, amount)
        self.dispensed_minor = 0

    def preauthorise(self, payer_device_id: str, now: float) -> int:
        """How much a car should hold before it is served."""
        return self.preauth_minor

    def on_event(self, event: Event, now: float) -> None:
        if event.event == "hold_placed" and event.payment_id and event.amount:
            if event.payment_id in self.seen:
                return  # a redelivery: this hold is being (or was) served already
            self.seen.add(event.payment_id)
            done_at = now + self.rng.uniform(*self.session_s)
            self.serving[event.payment_id] = Dispensing(
                event.payment_id, event.payer_device_id, event.amount, done_at
            )

    def on_result(self, result: Result, now: float) -> None:
        payment_id = self.captures.pop(result.order_id or "", None)
        if result.status == "captured" and payment_id and result.amount:
            self.dispensed_minor += result.amount
            if self.rng.random() < self.refund_probability:
                amount = max(1, result.amount // 10)
                self.refunds_due.append((now + self.refund_after_s, payment_id, amount))

    def tick(self, now: float) -> None:
        for payment_id, session in list(self.serving.items()):
            if now >= session.done_at:
                del self.serving[payment_id]
                self.finish(session)
        due = [r for r in self.refunds_due if now >= r[0]]
        self.refunds_due = [r for r in self.refunds_due if now < r[0]]
        for _, payment_id, amount in due:
            self.send(refund_fields(payment_id, amount, self.currency))

    def finish(self, session: Dispensing) -> str:
        """Capture what was dispensed, or void when nothing was."""
        if self.rng.random() < self.void_probability:
            return self.send(void_fields(session.payment_id))
        units = self.rng.randint(1, max(1, session.held_minor // self.price_per_unit_minor))
        amount = min(session.held_minor, units * self.price_per_unit_minor)
        order_id = self.send(capture_fields(session.payment_id, amount, self.currency))
        self.captures[order_id] = session.payment_id
        return order_id

    def describe(self) -> dict[str, Any]:
        return {"serving": len(self.serving), "dispensed_minor": self.dispensed_minor}


class FuelPump(Station):
    """Sells fuel by the litre (price per litre in minor units)."""

    kind = "fuel_pump"
    category = "fuel"
    unit = "litre"

    def __init__(self, client: DeviceClient, **options: Any) -> None:
        options.setdefault("price_per_unit_minor", 185)
        options.setdefault("preauth_minor", 15000)
        super().__init__(client, **options)


class EvCharger(Station):
    """Sells energy by the kWh."""

    kind = "ev_charger"
    category = "ev_charging"
    unit = "kWh"

    def __init__(self, client: DeviceClient, **options: Any) -> None:
        options.setdefault("price_per_unit_minor", 49)
        options.setdefault("preauth_minor", 5000)
        options.setdefault("session_s", (4.0, 12.0))
        super().__init__(client, **options)
