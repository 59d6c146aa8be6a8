"""The load generator of `kym bench`: SDK devices paying one shop, flat out or at a rate.

Every device is provisioned through the API (its own key and certificate), approved, funded
and given rules that let every payment through. Every order is signed before the clock starts
(`DeviceClient.prepare`), so that the run measures the gateway, not the signing; sending one
journals it (unsynced: the bench measures the gateway, not the device's disk) and publishes it;
the SDK's re-sending of unanswered orders is off, so that queueing never turns into replays.
Results come back through the SDK, their signatures verified, as for any device.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from rich.console import Console

from devices.sdk import DeviceClient, KeyType, PreparedOrder
from devices.sdk.messages import pay_fields
from simulators.backoffice import Admin, Owner
from simulators.base import provision_device
from simulators.bench.cpu import CpuMeter
from simulators.bench.report import BenchReport
from simulators.bench.tally import Tally
from simulators.fleet import Broker

CURRENCY = "EUR"
FUNDS_MINOR = 10**9
QUIET_LIMIT_S = 30.0  # give up waiting when no result arrived for this long


@dataclass(frozen=True)
class Load:
    """What to send: `orders` in all, spread evenly over `devices`."""

    devices: int
    orders: int
    rate: float | None = None  # orders per second; None: as fast as the broker takes them
    key_type: KeyType = "p256"


def run_load(
    api_url: str,
    broker: Broker,
    admin_token: str,
    load: Load,
    state_dir: Path,
    console: Console,
    meter: CpuMeter | None = None,
    parties: Parties | None = None,
    before_sending: Callable[[], None] | None = None,
) -> BenchReport:
    """Provision and connect the devices, send every order, wait for every result (with
    `parties`, the owner and integrator who registered them already, see `register_payer`;
    `before_sending` runs once they are connected: paho's select() loop cannot watch a
    socket numbered above 1024, so thousands of idle connections must come after)."""
    tally = Tally()
    clients: list[DeviceClient] = []
    try:
        with console.status(f"registering {load.devices} devices"):
            shop = provision_fleet(
                api_url, broker, admin_token, load, state_dir, tally, clients, parties
            )
        if before_sending is not None:
            before_sending()
        with console.status(f"signing {load.orders // load.devices * load.devices} orders"):
            orders = presign(clients, shop, load.orders // load.devices)
        if meter is not None:
            meter.start()
        started = time.perf_counter()
        with console.status(f"sending {len(orders)} orders"):
            send(orders, tally, load.rate)
        sent_s = time.perf_counter() - started
        wait_for_results(tally, len(orders), console)
        cpu = meter.stop() if meter is not None else {}
        ended = max(tally.last_result_at, started + sent_s)
        return report(tally, len(orders), ended - started, sent_s, cpu)
    finally:
        for client in clients:
            client.close()


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
    admin = Admin(api_url, admin_token)
    try:
        parties = parties or make_parties(admin)
        shop: str = admin.create_merchant("shop", "retail", CURRENCY)["id"]
    finally:
        admin.close()
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
            owner.approve_device(client.device_id)
            owner.top_up(client.device_id, FUNDS_MINOR, CURRENCY, "bench")
            owner.set_rules(client.device_id, {"currency": CURRENCY})
            client.connect()
    finally:
        owner.close()
    return shop


@dataclass(frozen=True)
class Parties:
    """The bench's owner (who approves, funds and sets rules) and integrator (who registers)."""

    owner_id: str
    owner_key: str
    integrator_key: str


def make_parties(admin: Admin) -> Parties:
    owner = admin.create_owner("bench", timezone="UTC")
    integrator = admin.create_integrator("bench")
    return Parties(owner["id"], owner["api_key"], integrator["api_key"])


def register_payer(api_url: str, parties: Parties, load: Load, state_dir: Path, n: int) -> Path:
    """Paying device `n`'s state dir, registered once (again: its stored identity)."""
    return provision_device(
        state_dir / f"b{n}",
        api_url,
        parties.integrator_key,
        parties.owner_id,
        "other",
        f"bench-{parties.owner_id}-{n}",  # unique per run: a database may be reused
        manufacturer="bench",
        model="b",
        key_type=load.key_type,
    )


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


def report(
    tally: Tally, orders: int, seconds: float, sent_s: float, cpu: dict[str, float | None]
) -> BenchReport:
    """The run's numbers; every order here is final at its first result (no approvals)."""
    latencies = tally.latencies()
    return BenchReport(
        orders=orders,
        results=tally.answered,
        seconds=seconds,
        p50_ms=latencies.p50_ms,
        p99_ms=latencies.p99_ms,
        statuses=tally.statuses,
        reasons=tally.reasons,
        p95_ms=latencies.p95_ms,
        max_ms=latencies.max_ms,
        lost=tally.lost(),
        duplicated=tally.duplicated,
        cpu_s=cpu,
        offered_per_s=orders / sent_s if sent_s else None,
    )
