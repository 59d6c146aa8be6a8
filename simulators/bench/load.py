"""The load generator of `kym bench`: devices paying one shop, flat out or at a rate.

Every device is provisioned through the API (its own key and certificate), approved, funded
and given rules that let every payment through. Every order is signed and framed before the
clock starts, and every result's signature is checked after it stops, so that the run measures
the gateway, not the devices' cryptography. All the paying devices' connections, each its own
mutual-TLS MQTT session, are held by one asyncio loop (`simulators.bench.paying`): sending an
order is a socket write; every result is acknowledged and counted. Flat out, each device
keeps at most a window of orders unanswered (WINDOW in all, shared among the devices).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from devices.sdk.messages import pay_fields
from simulators.backoffice import Owner
from simulators.bench.cpu import CpuMeter
from simulators.bench.paying import PayingDevice, PayingFleet
from simulators.bench.provision import (
    CURRENCY,
    Load,
    Parties,
    allow_to_pay,
    parties_and_shop,
    register_payer,
)
from simulators.bench.report import BenchReport
from simulators.bench.sdk_load import (
    QUIET_LIMIT_S,
    presign,
    provision_fleet,
    send,
    wait_for_results,
)
from simulators.bench.tally import Tally
from simulators.fleet import Broker

__all__ = [  # with the SDK devices' load, which benchmarks/flood_bench.py's victims use
    "Load",
    "Parties",
    "await_results",
    "drive",
    "presign",
    "provision_fleet",
    "provision_payers",
    "report",
    "run_load",
    "send",
    "wait_for_results",
    "window_per_device",
]

WINDOW = 256  # flat out: orders without their final result, in all (the floor keeps 200)


def window_per_device(devices: int) -> int:
    """Flat out: each device's share of WINDOW, at least one."""
    return max(1, -(-WINDOW // devices))


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
    """Provision the devices, sign their orders, connect them, send every order and wait for
    every result (with `parties`, the owner and integrator who registered them already, see
    `register_payer`; `before_sending` runs in a thread once they are connected)."""
    with console.status(f"registering {load.devices} devices"):
        shop, devices = provision_payers(api_url, admin_token, load, state_dir, parties)
    per_device = load.orders // load.devices
    with console.status(f"signing {per_device * load.devices} orders"):
        for device in devices:
            device.presign(pay_fields(shop, 1, CURRENCY), per_device)
    return asyncio.run(drive(broker, devices, load, console, meter, before_sending))


async def drive(
    broker: Broker,
    devices: list[PayingDevice],
    load: Load,
    console: Console,
    meter: CpuMeter | None,
    before_sending: Callable[[], None] | None = None,
    window: int | None = None,
    quiet_s: float = QUIET_LIMIT_S,
) -> BenchReport:
    """Connect, send (open loop with a rate, else flat out, `window` orders unanswered per
    device, by default its share of WINDOW), wait until all are answered or `quiet_s` passed
    without a result, count."""
    tally = Tally()
    if load.rate:
        window = None
    elif window is None:
        window = window_per_device(load.devices)
    fleet = PayingFleet(broker, devices, tally, window)
    total = sum(len(device.orders) for device in devices)
    try:
        with console.status(f"connecting {len(devices)} devices"):
            await fleet.connect_all()
        if before_sending is not None:
            await asyncio.to_thread(before_sending)
        if meter is not None:
            meter.start()
        started = time.perf_counter()
        with console.status(f"sending {total} orders"):
            if load.rate:
                await fleet.send_at(load.rate)
            else:
                fleet.start_flat_out()
        await await_results(tally, total, console, quiet_s)
        cpu = meter.stop() if meter is not None else {}
        sent_s = max(fleet.last_sent_at - started, 0.0)  # 0: nothing to send
        ended = max(tally.last_result_at, fleet.last_sent_at, started)
        with console.status(f"checking the signatures of {tally.answered} results"):
            forged = fleet.check_signatures()
        return report(tally, total, ended - started, sent_s, cpu, total - fleet.sent, forged)
    finally:
        await fleet.close()


def provision_payers(
    api_url: str,
    admin_token: str,
    load: Load,
    state_dir: Path,
    parties: Parties | None = None,
) -> tuple[str, list[PayingDevice]]:
    """Register (or reload), approve, fund and set rules for the devices; the shop's id and
    the devices."""
    parties, shop = parties_and_shop(api_url, admin_token, parties)
    owner = Owner(api_url, parties.owner_id, parties.owner_key)
    devices = []
    try:
        for n in range(load.devices):
            device = PayingDevice.load(register_payer(api_url, parties, load, state_dir, n))
            devices.append(device)
            allow_to_pay(owner, device.device_id)
    finally:
        owner.close()
    return shop, devices


async def await_results(
    tally: Tally, expected: int, console: Console, quiet_s: float = QUIET_LIMIT_S
) -> None:
    """Until every order has its final result, or none arrived for `quiet_s`."""
    last, last_change = -1, time.monotonic()
    with console.status("waiting for results") as status:
        while (got := tally.answered) < expected:
            if got != last:
                status.update(f"results: {got}/{expected}")
                last, last_change = got, time.monotonic()
            elif time.monotonic() - last_change > quiet_s:
                return
            await asyncio.sleep(0.1)


def report(
    tally: Tally,
    orders: int,
    seconds: float,
    sent_s: float,
    cpu: dict[str, float | None],
    unsent: int = 0,
    forged: int = 0,
) -> BenchReport:
    """The run's numbers; every order here is final at its first result (no approvals).
    Lost: orders sent without a final result, and orders a window never let out because
    earlier results of their device never came."""
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
        lost=tally.lost() + unsent,
        timeline=tally.timeline(),
        duplicated=tally.duplicated,
        forged=forged,
        cpu_s=cpu,
        offered_per_s=orders / sent_s if sent_s else None,
    )
