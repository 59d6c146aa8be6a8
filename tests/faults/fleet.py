"""Devices that pay in a steady stream while the test breaks things, and the checks afterwards:
every acknowledged order has exactly one decision, the ledger and the audit chain hold, and
each balance is its start less its approved amounts."""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from sqlalchemy import create_engine, text

from devices.sdk import DeviceClient, GatewayApi, Identity, Registration, Result, provision
from gateway.mqtt.workers import broker_acknowledged
from tests.faults.processes import ADMIN_TOKEN, Gateway, kym

START_BALANCE = 10_000_000
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@dataclass
class Device:
    """One paying device: what it sent, what the broker acknowledged, what came back."""

    identity: Identity
    owner_key: str
    client: DeviceClient | None = None
    sent: dict[str, mqtt.MQTTMessageInfo] = field(default_factory=dict)
    amounts: dict[str, int] = field(default_factory=dict)
    results: list[Result] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.identity.device_id


def _post(url: str, path: str, key: str | None, body: dict[str, Any]) -> dict[str, Any]:
    headers = ADMIN if key is None else {"Authorization": f"Bearer {key}"}
    answer = httpx.post(f"{url}{path}", json=body, headers=headers, timeout=30)
    assert answer.status_code in (200, 201), (path, answer.status_code, answer.text)
    return dict(answer.json())


def register_fleet(url: str, state_root: Path, count: int) -> tuple[list[Device], str]:
    """`count` approved, funded devices with rules in EUR, and a merchant they pay."""
    merchant = _post(url, "/v1/merchants", None, {"name": "shop", "category": "parking"})
    integrator = _post(url, "/v1/integrators", None, {"name": "ACME"})
    fleet = []
    for n in range(count):
        owner = _post(url, "/v1/owners", None, {"name": f"owner {n}", "timezone": "UTC"})
        registration = Registration(owner["id"], "car", "ACME", "M1", f"SN-fault-{n}")
        with GatewayApi(url, integrator["api_key"]) as api:
            identity = provision(state_root / f"dev{n}", api, registration)
        device, key = identity.device_id, owner["api_key"]
        _post(url, f"/v1/devices/{device}/approve", key, {})
        answer = httpx.put(
            f"{url}/v1/devices/{device}/rules",
            json={"currency": "EUR"},
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        top_up = {"amount": START_BALANCE, "currency": "EUR", "idempotency_key": "start"}
        _post(url, f"/v1/devices/{device}/wallet/top-ups", key, top_up)
        fleet.append(Device(identity, key))
    return fleet, str(merchant["id"])


class Stream:
    """Each device pays the merchant every `period_s` from its own thread until stopped."""

    def __init__(self, fleet: list[Device], merchant: str, period_s: float) -> None:
        self.fleet, self.merchant, self.period_s = fleet, merchant, period_s
        self.stopping = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(d,)) for d in fleet]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self.stopping.set()
        for thread in self._threads:
            thread.join(10)

    def _run(self, device: Device) -> None:
        rng = random.Random(device.id)
        assert device.client is not None
        while not self.stopping.wait(self.period_s * rng.uniform(0.5, 1.5)):
            amount = rng.randint(1, 500)
            order = device.client.prepare({"type": "pay", "payee": self.merchant,
                                           "amount": amount, "currency": "EUR"})  # fmt: skip
            device.client.journal.record_order(order.order_id, order.jws)
            device.amounts[order.order_id] = amount
            device.sent[order.order_id] = device.client.publish_raw(order.jws.encode())


def connect_fleet(fleet: list[Device], port: int, resend_after: float | None) -> None:
    """Connect every device with a persistent session; results go to `Device.results`."""
    for device in fleet:
        client = DeviceClient(
            device.identity, "127.0.0.1", port, fsync=False, resend_after=resend_after,
            on_result=device.results.append,
        )  # fmt: skip
        client.connect(timeout_s=30)
        device.client = client


def close_fleet(fleet: list[Device]) -> None:
    for device in fleet:
        if device.client is not None:
            device.client.close()


@contextmanager
def running_fleet(
    gateway: Gateway, state_root: Path, count: int, port: int, resend_after: float | None
) -> Iterator[tuple[list[Device], str]]:
    """Start the gateway, register `count` devices and a merchant, connect the devices to the
    broker on `port`; (the fleet, the merchant id). On exit the devices close and the gateway
    stops, whatever happened."""
    fleet: list[Device] = []
    try:
        gateway.start()
        gateway.wait_healthy()
        fleet, merchant = register_fleet(gateway.url, state_root, count)
        connect_fleet(fleet, port, resend_after)
        yield fleet, merchant
    finally:
        close_fleet(fleet)
        gateway.stop()


def all_acknowledged(fleet: list[Device], why: str) -> dict[str, set[str]]:
    """device id -> its acknowledged orders, asserting (`why`) that every sent one was."""
    orders = {d.id: acknowledged(d) for d in fleet}
    assert all(len(orders[d.id]) == len(d.sent) for d in fleet), why
    return orders


def assert_decided_once(
    fleet: list[Device],
    gateway: Gateway,
    database_url: str,
    orders: dict[str, set[str]],
    name: str,
    timeout_s: float = 60,
    **extra: Any,
) -> None:
    """Wait for the decisions, check the outcome, report its figures as `name`: none lost,
    none decided twice."""
    wait_until_decided(fleet, orders, timeout_s)
    figures = check_outcome(fleet, gateway.url, gateway.data_dir, database_url, orders)
    report(figures.line(name, **extra))
    assert (figures.lost, figures.conflicting) == (0, 0), gateway.tail_of_log()


def acknowledged(device: Device, timeout_s: float = 30) -> set[str]:
    """Orders whose PUBACK the device got (waiting for the ones still in flight)."""
    deadline = time.monotonic() + timeout_s
    for info in device.sent.values():
        while broker_acknowledged(info) is False and time.monotonic() < deadline:
            time.sleep(0.05)
    return {order_id for order_id, info in device.sent.items() if broker_acknowledged(info)}


def final_results(device: Device) -> dict[str, set[tuple[Any, ...]]]:
    """order id -> the distinct final answers it got (status, reason, payment id, amount)."""
    answers: dict[str, set[tuple[Any, ...]]] = defaultdict(set)
    for r in list(device.results):
        if r.order_id is not None and r.is_final and r.reason != "rate_limited":
            answers[r.order_id].add((r.status, r.reason, r.payment_id, r.amount))
    return answers


def wait_until_decided(fleet: list[Device], orders: dict[str, set[str]], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(orders[d.id] <= set(final_results(d)) for d in fleet):
            return
        time.sleep(0.2)


@dataclass
class Figures:
    orders: int = 0
    decisions: int = 0
    lost: int = 0
    conflicting: int = 0
    rows_not_one: int = 0  # acknowledged orders without exactly one row in `orders`
    deliveries: int = 0
    approved: int = 0

    def line(self, name: str, **extra: Any) -> str:
        fields = {**extra, **self.__dict__}
        return f"FAULTS {name}: " + " ".join(f"{k}={v}" for k, v in fields.items())


def check_outcome(
    fleet: list[Device], url: str, data_dir: Path, database_url: str, orders: dict[str, set[str]]
) -> Figures:
    """Exactly one decision per acknowledged order (results and rows), balances, ledger, audit."""
    figures = Figures()
    rows = _order_rows(database_url)
    for device in fleet:
        answers = final_results(device)
        figures.orders += len(orders[device.id])
        figures.deliveries += sum(1 for r in device.results if r.order_id in orders[device.id])
        approved = 0
        for order_id in orders[device.id]:
            got = answers.get(order_id, set())
            figures.lost += not got
            figures.conflicting += len(got) > 1
            figures.decisions += len(got) == 1
            figures.rows_not_one += rows.get((device.id, order_id), 0) != 1
            if got and next(iter(got))[0] == "approved":
                approved += device.amounts[order_id]
                figures.approved += 1
        extra = [o for (d, o), n in rows.items() if d == device.id and o not in orders[device.id]]
        assert not extra, f"decided orders nobody acknowledged: {extra[:5]}"
        headers = {"Authorization": f"Bearer {device.owner_key}"}
        wallet = httpx.get(f"{url}/v1/devices/{device.id}/wallet", headers=headers, timeout=30)
        assert wallet.json()["balance"] == START_BALANCE - approved, (device.id, wallet.json())
    lost = [(d.id, o) for d in fleet for o in orders[d.id] if o not in final_results(d)]
    assert figures.rows_not_one == 0 and not lost, f"{figures}: lost {lost[:10]}"
    for command in ("ledger", "check"), ("audit", "verify"):
        done = kym(*command, "--data-dir", str(data_dir), "--database-url", database_url)
        assert done.returncode == 0, f"kym {' '.join(command)}: {done.stdout}{done.stderr}"
    return figures


def _order_rows(database_url: str) -> dict[tuple[str, str], int]:
    engine = create_engine(database_url)
    with engine.connect() as conn:
        query = "SELECT device_id, order_id, count(*) FROM orders GROUP BY device_id, order_id"
        rows = {(d, o): int(n) for d, o, n in conn.execute(text(query))}
    engine.dispose()
    return rows


def report(line: str) -> None:
    """Print a figures line and keep it in $KYM_FAULT_FIGURES."""
    import os

    print(line)
    path = os.environ.get("KYM_FAULT_FIGURES")
    if path:
        with open(path, "a") as file:
            file.write(line + "\n")
