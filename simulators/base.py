"""What every simulated device shares: an SDK client, a seeded RNG, a schedule, a recorder.

A simulator never blocks. `step(now)` handles what arrived since the last step (results and
events, queued by the SDK's callbacks), does the follow-ups that are due (a pump's capture,
say), and takes its next scheduled action when `now` has reached it. `act(now)` takes an
action at once, whatever the schedule: the population runner calls it at each arrival of its
fixed-rate schedule. `now` is any monotonic clock in seconds; tests pass their own.
"""

from __future__ import annotations

import queue
import random
from collections import deque
from pathlib import Path
from typing import Any, ClassVar

from devices.sdk import (
    DeviceClient,
    Event,
    GatewayApi,
    KeyType,
    Registration,
    Result,
    provision,
)
from simulators.metrics import Recorder


class SimDevice:
    """A device with behaviour over time; subclasses write `act`, and react in the handlers."""

    kind: ClassVar[str] = "other"
    category: ClassVar[str | None] = None  # what it sells when it is the payee
    initiates: ClassVar[bool] = True  # whether it starts payments (payees only react)
    regular: ClassVar[bool] = False  # a fixed interval (a meter) or a Poisson process (a car)

    def __init__(
        self,
        client: DeviceClient,
        *,
        rng: random.Random | None = None,
        recorder: Recorder | None = None,
        interval_s: float | None = None,
        currency: str = "EUR",
    ) -> None:
        self.client, self.currency = client, currency
        self.rng = rng or random.Random(client.device_id)
        self.recorder = recorder or Recorder()
        self.interval_s = interval_s  # mean time between self-driven actions; None: never
        self.next_at: float | None = None
        self.results: deque[Result] = deque(maxlen=1000)  # what it was told, oldest first
        self.events: deque[Event] = deque(maxlen=1000)
        self.pending_seen = 0
        self._arrived: queue.Queue[Result | Event] = queue.Queue()
        client.on_result = self._on_result
        client.on_event = self._on_event

    @property
    def device_id(self) -> str:
        return self.client.device_id

    def step(self, now: float) -> None:
        """Handle arrivals, do due follow-ups, and act when the schedule says so."""
        while True:
            try:
                item = self._arrived.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, Result):
                self.results.append(item)
                self.on_result(item, now)
            else:
                self.events.append(item)
                self.on_event(item, now)
        self.tick(now)
        if self.interval_s is None or not self.initiates:
            return
        if self.next_at is None:  # spread the first actions out
            self.next_at = now + self.rng.uniform(0, self.interval_s)
        elif now >= self.next_at:
            self.act(now)
            wait_s = self.interval_s if self.regular else self.rng.expovariate(1 / self.interval_s)
            self.next_at = now + wait_s

    def act(self, now: float) -> str | None:
        """Take one action now; the order id it sent, if any."""
        return None

    def tick(self, now: float) -> None:
        """Follow-ups that fall due (captures, refunds, ...)."""

    def on_result(self, result: Result, now: float) -> None:
        """A verified result for one of this device's orders."""

    def on_event(self, event: Event, now: float) -> None:
        """A verified event addressed to this device."""

    def send(self, fields: dict[str, Any]) -> str:
        """Sign, journal and publish an order, and note it for the latencies."""
        prepared = self.client.prepare(fields)
        self.recorder.sent(self.device_id, prepared.order_id)
        return self.client.submit(prepared)

    def close(self) -> None:
        self.client.close()

    def _on_result(self, result: Result) -> None:  # the SDK's dispatcher thread
        self.recorder.result(self.device_id, result)
        if result.status == "pending_approval":
            self.pending_seen += 1  # read by whoever plays the owner
        self._arrived.put(result)

    def _on_event(self, event: Event) -> None:  # the SDK's dispatcher thread
        self.recorder.event(self.device_id, event)
        self._arrived.put(event)


def provision_device(
    state_dir: Path,
    api_url: str,
    integrator_key: str,
    owner_id: str,
    kind: str,
    serial_number: str,
    *,
    category: str | None = None,
    currency: str = "EUR",
    model: str = "Sim-1",
    manufacturer: str = "KYM Simulators",
    key_type: KeyType = "p256",
) -> Path:
    """Register a simulated device through the SDK (idempotent per state dir)."""
    registration = Registration(
        owner_id=owner_id,
        kind=kind,
        manufacturer=manufacturer,
        model=model,
        serial_number=serial_number,
        currency=currency,
        category=category,
    )
    with GatewayApi(api_url, integrator_key) as api:
        provision(state_dir, api, registration, key_type)
    return state_dir
