"""The SDK's devices as a load (`DeviceClient`: paho threads, the journal), kept for
`benchmarks/flood_bench.py`, whose victims are SDK clients; `kym bench` itself uses the
lighter connections of `simulators.bench.paying`."""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path

from rich.console import Console

from devices.sdk import DeviceClient, PreparedOrder
from devices.sdk.messages import pay_fields
from simulators.backoffice import Owner
from simulators.bench.provision import (
    CURRENCY,
    Load,
    Parties,
    allow_to_pay,
    parties_and_shop,
    register_payer,
)
from simulators.bench.tally import Tally
from simulators.fleet import Broker

QUIET_LIMIT_S = 30.0  # give up waiting when no result arrived for this long


def provision_fleet(
    api_url: str,
    broker: Broker,
    admin_token: str,
    load: Load,
    state_dir: Path,
    tally: Tally,
    clients: list[DeviceClient],
    parties: Parties | None = None,
) -> str:
    """Register, approve, fund and connect the devices (appended to `clients`); the shop's id."""
    parties, shop = parties_and_shop(api_url, admin_token, parties)
    owner = Owner(api_url, parties.owner_id, parties.owner_key)
    try:
        for n in range(load.devices):
            directory = register_payer(api_url, parties, load, state_dir, n)
            client = DeviceClient.from_state_dir(
                directory,
                broker.host,
                broker.port,
                fsync=False,
                resend_after=None,  # a replay would count as load; every order here is new
            )
            client.on_result = partial(tally.result, client.device_id)
            clients.append(client)
            allow_to_pay(owner, client.device_id)
            client.connect()
    finally:
        owner.close()
    return shop


def presign(
    clients: list[DeviceClient], shop: str, per_device: int
) -> list[tuple[DeviceClient, PreparedOrder]]:
    """Every order, signed, interleaved across devices."""
    return [
        (client, client.prepare(pay_fields(shop, 1, CURRENCY)))
        for _ in range(per_device)
        for client in clients
    ]


def send(
    orders: list[tuple[DeviceClient, PreparedOrder]], tally: Tally, rate: float | None
) -> None:
    """Journal and publish each order; with a `rate`, on an open-loop schedule: each order is
    due at its slot, and its latency counts from there however late it actually went out."""
    interval_s = 1.0 / rate if rate else 0.0
    started = time.perf_counter()
    for index, (client, order) in enumerate(orders):
        due = time.perf_counter()
        if interval_s:
            due = started + index * interval_s
            delay_s = due - time.perf_counter()
            if delay_s > 0:
                time.sleep(delay_s)
        tally.sent(client.device_id, order.order_id, due)
        client.submit(order)


def wait_for_results(tally: Tally, expected: int, console: Console) -> None:
    """Until every order has its final result, or none arrived for QUIET_LIMIT_S."""
    last, last_change = -1, time.monotonic()
    with console.status("waiting for results") as status:
        while (got := tally.answered) < expected:
            status.update(f"results: {got}/{expected}")
            if got != last:
                last, last_change = got, time.monotonic()
            elif time.monotonic() - last_change > QUIET_LIMIT_S:
                return
            time.sleep(0.01)
