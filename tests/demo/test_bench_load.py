"""`kym bench`'s load counts exactly against a real `kym serve` and Mosquitto: an order the
broker never delivers is lost, a replayed order's second result is a duplicate, orders a
device's window never let out (its earlier results never came) are lost too, and a result
whose signature does not verify (checked once the clock has stopped) is counted as forged."""

from __future__ import annotations

import asyncio
import secrets
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from rich.console import Console

from devices.contract import orders_topic
from devices.sdk.trust import ResultVerifier
from simulators.bench import packets
from simulators.bench.load import drive, provision_payers
from simulators.bench.paying import PayingDevice
from simulators.bench.provision import CURRENCY, Load
from simulators.bench.report import BenchReport
from simulators.bench.run import served_gateway
from simulators.fleet import Broker

pytestmark = pytest.mark.slow

SERVE = [sys.executable, "-m", "gateway.cli", "serve"]
PER_DEVICE = 6
QUIET_S = 10.0  # what "lost" waits for; every answered order comes back well within it


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, mosquitto_binary: str) -> Iterator[Gateway]:
    home = tmp_path_factory.mktemp("bench-load")
    token = secrets.token_urlsafe(24)
    console = Console(quiet=True)
    flags = ["--broker", "mosquitto"]
    with served_gateway(SERVE, home, token, flags, 0, console) as (api_url, broker, _pid):
        yield Gateway(api_url, broker, token, home)


@dataclass(frozen=True)
class Gateway:
    api_url: str
    broker: Broker
    token: str
    home: Path


def tampered_devices(gateway: Gateway, name: str) -> list[PayingDevice]:
    """Two funded devices with PER_DEVICE signed orders each, two of them tampered with:
    the first device's order 3 is a byte-for-byte replay of its order 2 (the gateway answers
    order 2 again, and order 3 never), and the second device's order 1 goes to the first
    device's orders topic, which the broker's rules do not let it publish to (dropped)."""
    load = Load(devices=2, orders=2 * PER_DEVICE)
    shop, devices = provision_payers(
        gateway.api_url, gateway.token, load, gateway.home / name, None
    )
    fields = {"type": "pay", "payee": shop, "amount": 1, "currency": CURRENCY}
    for device in devices:
        device.presign(fields, PER_DEVICE)
    first, second = devices
    first.orders[3] = (first.orders[3][0], first.orders[2][1])
    order_id, packet = second.orders[1]
    [(first_byte, body)] = packets.PacketReader().feed(packet)
    _topic, packet_id, jws = packets.parse_publish(first_byte, body)
    assert packet_id is not None
    elsewhere = orders_topic(first.device_id)
    second.orders[1] = (order_id, packets.publish_packet(elsewhere, packet_id, jws))
    return devices


def run(
    gateway: Gateway, devices: list[PayingDevice], rate: float | None, window: int | None
) -> BenchReport:
    load = Load(devices=2, orders=2 * PER_DEVICE, rate=rate)
    console = Console(quiet=True)
    return asyncio.run(
        drive(gateway.broker, devices, load, console, None, window=window, quiet_s=QUIET_S)
    )


@pytest.mark.parametrize("rate", [None, 50.0], ids=["flat-out", "open-loop"])
def test_a_dropped_order_is_lost_and_a_replay_duplicated(
    gateway: Gateway, rate: float | None
) -> None:
    report = run(gateway, tampered_devices(gateway, f"wide-{rate}"), rate, None)
    assert (report.orders, report.results, report.lost, report.duplicated) == (12, 10, 2, 1)
    assert report.statuses == {"approved": 10}


def test_orders_a_stalled_window_never_sent_count_as_lost(gateway: Gateway) -> None:
    # One order unanswered per device: the first stalls after its replay (orders 4 and 5
    # never go out), the second after its dropped order (orders 2 to 5 never go out).
    report = run(gateway, tampered_devices(gateway, "narrow"), None, 1)
    assert (report.orders, report.results, report.duplicated) == (12, 4, 1)
    assert report.lost == 12 - 4
    assert report.statuses == {"approved": 4}


def test_results_another_key_signed_are_forged_and_the_run_incomplete(gateway: Gateway) -> None:
    load = Load(devices=2, orders=2 * PER_DEVICE)
    shop, devices = provision_payers(gateway.api_url, gateway.token, load, gateway.home / "f", None)
    for device in devices:
        device.presign(
            {"type": "pay", "payee": shop, "amount": 1, "currency": CURRENCY}, PER_DEVICE
        )
    first, second = devices
    # The second device trusts another signer: every result it gets is then a forgery to it.
    second.verifier = ResultVerifier(another_signer(), second.device_id)
    report = run(gateway, devices, None, None)
    assert (report.orders, report.results, report.lost) == (12, 12, 0)  # counted on receipt
    assert report.forged == PER_DEVICE
    assert not report.complete
    assert '"forged": 6' in report.to_json()


def another_signer() -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not the gateway")])
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
