"""Hostile devices with valid certificates against both brokers `kym serve` runs (the managed
Mosquitto with its access rules by kym_access, and by dynsec as `kym mosquitto-config` writes
them, and the embedded broker): they cannot take other devices' orders, act as another identity,
rewrite the access rules, make the broker replay or hold orders for them (retained messages,
wills, QoS 2), log in with a certificate revoked or superseded while a connection waited, or
stop the broker serving others by flooding it or sending oversize packets."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from devices import keystore
from devices.crl import build_crl
from gateway.broker import mosquitto
from tests.broker.kym_brokers import (
    ACCESS_KINDS,
    BROKER_KINDS,
    ORDERS,
    RESULTS,
    KymBroker,
    echo_gateway,
    issue,
    running,
    start_kym_broker,
)
from tests.broker.rawmqtt import RawClient, connect_packet, publish_packet

FLOOD = 10_000


@pytest.fixture(params=ACCESS_KINDS)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KymBroker]:
    yield from running(request, tmp_path)


def answers(target: KymBroker, device: str, count: int) -> set[str]:
    """Send `count` orders as `device` through an echo gateway; the orders that got answers."""
    client = target.paho(device)
    assert client.subscribe(RESULTS.format(device)) == 1
    sent = {f"{device}-{i}" for i in range(count)}
    for order in sorted(sent):
        client.publish(ORDERS.format(device), order.encode())
    got: set[str] = set()
    deadline = time.monotonic() + 20
    while got != sent and time.monotonic() < deadline:
        got.add(json.loads(client.messages.get(timeout=20).payload)["order"])
    client.close()
    return got


def test_a_claimed_client_id_neither_takes_over_nor_borrows_another_identity(
    target: KymBroker,
) -> None:
    victim = target.paho("dev-a", clean_session=False)
    assert victim.subscribe(RESULTS.format("dev-a")) == 1
    impostor = target.raw("dev-b")
    assert impostor.connect(client_id="dev-a", username="dev-a") == (False, 0)
    assert impostor.subscribe(1, RESULTS.format("dev-a"), RESULTS.format("dev-b")) == [0x80, 1]
    gateway = target.paho("kym-gateway-0")
    gateway.publish(RESULTS.format("dev-a"), b"for dev-a")
    assert victim.messages.get(timeout=5).payload == b"for dev-a"
    assert not victim.disconnected.is_set()
    impostor.sock.settimeout(0.3)
    with pytest.raises(TimeoutError):
        impostor.receive()
    for client in (impostor, victim, gateway):
        client.close()


def test_a_device_cannot_rewrite_the_access_rules_through_control_topics(
    target: KymBroker,
) -> None:
    evil_role = {
        "command": "createRole",
        "rolename": "evil",
        "acls": [{"acltype": "subscribePattern", "topic": "#", "allow": True}],
    }
    grant = {"command": "addClientRole", "username": "dev-b", "rolename": "evil"}
    attacker = target.raw("dev-b")
    assert attacker.connect(client_id="dev-b") == (False, 0)
    assert attacker.subscribe(1, "$CONTROL/dynamic-security/v1/response") == [0x80]
    commands = json.dumps({"commands": [evil_role, grant]}).encode()
    attacker.send(publish_packet("$CONTROL/dynamic-security/v1", commands, qos=1))
    assert attacker.receive() is not None  # the PUBACK: acknowledged, and dropped
    time.sleep(0.3)
    assert attacker.subscribe(2, "#", ORDERS.format("dev-a")) == [0x80, 0x80]
    victim = target.raw("dev-a")
    assert victim.connect(client_id="dev-a") == (False, 0)
    attacker.send(publish_packet("$CONTROL/kym/v1/kick", b"dev-a", qos=1))  # kym_access's
    assert attacker.receive() is not None  # acknowledged, and dropped: only an admin may kick
    assert victim.subscribe(1, RESULTS.format("dev-a")) == [1]  # still connected, still allowed
    victim.close()
    attacker.close()


def test_an_oversize_packet_ends_only_that_connection(target: KymBroker) -> None:
    gateway = echo_gateway(target)
    oversize = target.raw("dev-b")
    try:
        assert oversize.connect(client_id="dev-b") == (False, 0)
        try:
            oversize.send(publish_packet(ORDERS.format("dev-b"), b"x" * 300_000, qos=1))
        except OSError:
            pass  # the broker closed it while the packet was still being written: refused too
        else:
            assert oversize.closed_by_broker()
    finally:
        oversize.close()
    assert answers(target, "dev-a", 5) == {f"dev-a-{i}" for i in range(5)}
    gateway.close()


def test_a_flood_of_forbidden_publishes_leaves_other_devices_served(target: KymBroker) -> None:
    gateway = echo_gateway(target)
    flooder = target.raw("dev-b")
    assert flooder.connect(client_id="dev-b") == (False, 0)
    forged = publish_packet(ORDERS.format("dev-a"), b"forged", qos=0)
    flooder.send(forged * FLOOD)  # 10,000 messages onto another device's topic in one write
    assert answers(target, "dev-a", 20) == {f"dev-a-{i}" for i in range(20)}
    taken = [gateway.messages.get_nowait().payload for _ in range(gateway.messages.qsize())]
    assert sorted(taken) == sorted(f"dev-a-{i}".encode() for i in range(20))
    flooder.close()
    gateway.close()


def test_a_retained_order_or_will_is_never_dealt_to_a_gateway_that_subscribes_later(
    target: KymBroker,
) -> None:
    """Mosquitto kept a retained message on a device's orders topic (its persistence file
    included, after a revocation too) and gave it to every gateway worker at each subscription,
    every reconnect and broker restart: up to 256 KiB per device, again and again."""
    device = target.raw("dev-a")
    assert device.connect(client_id="dev-a") == (False, 0)
    device.send(publish_packet(ORDERS.format("dev-a"), b"retained order", qos=1, retain=True))
    device.receive()  # a PUBACK (the embedded broker clears the flag), or Mosquitto hangs up
    device.close()
    will = ORDERS.format("dev-b"), b"retained will", 1
    willing = target.raw("dev-b")
    willing.send(connect_packet(client_id="dev-b", will=will, will_retain=True))
    willing.receive()  # a CONNACK (the will goes out unretained), or Mosquitto hangs up
    willing.close()  # without DISCONNECT: a will there was goes out now
    time.sleep(0.5)
    gateway = echo_gateway(target)  # a worker subscribing afresh, as after any reconnect
    time.sleep(1.0)
    assert gateway.messages.empty(), gateway.messages.get().payload
    assert answers(target, "dev-c", 3) == {f"dev-c-{i}" for i in range(3)}
    gateway.close()


@pytest.mark.parametrize(
    ("topic", "payload"),
    [
        (ORDERS.format("dev-b"), b"forged order"),
        (RESULTS.format("dev-b"), b"forged result"),
        ("$CONTROL/kym/v1/kick", b"dev-b"),
        (
            "$CONTROL/dynamic-security/v1",
            b'{"commands":[{"command":"deleteClient","username":"dev-b"}]}',
        ),
    ],
)
def test_a_will_where_the_device_may_not_publish_never_goes_out(
    target: KymBroker, topic: str, payload: bytes
) -> None:
    """The embedded broker refuses such a CONNECT (5); Mosquitto accepts it and checks the will
    when it would send it: either way it never reaches the gateway, the other device or the
    brokers' control topics (a kick or a dynsec command as a will would end dev-b's session)."""
    gateway = echo_gateway(target)
    victim = target.paho("dev-b")
    assert victim.subscribe(RESULTS.format("dev-b")) == 1
    sneaky = target.raw("dev-a")
    sneaky.send(connect_packet(client_id="dev-a", will=(topic, payload, 1)))
    sneaky.receive()  # CONNACK 5 (embedded) or 0 (Mosquitto)
    sneaky.close()  # without DISCONNECT: a will it was allowed goes out now
    time.sleep(1.0)
    assert gateway.messages.empty() and victim.messages.empty()
    assert not victim.disconnected.is_set()
    assert answers(target, "dev-c", 2) == {"dev-c-0", "dev-c-1"}
    for client in (victim, gateway):
        client.close()


@pytest.mark.mosquitto
def test_a_retained_order_stored_before_the_upgrade_is_never_dealt_either(
    tmp_path: Path, mosquitto_binary: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`retain_available false` stops new retained messages, but one already in the persistence
    file of an earlier configuration was still dealt to every gateway worker at each
    subscription; kym_access now delivers no retained message to anyone."""
    current = mosquitto.config_text

    def earlier(*args: Any, **kwargs: Any) -> str:
        return current(*args, **kwargs).replace("retain_available false", "retain_available true")

    monkeypatch.setattr(mosquitto, "config_text", earlier)
    target = start_kym_broker("mosquitto", tmp_path, mosquitto_binary)
    try:
        device = target.raw("dev-a")
        assert device.connect(client_id="dev-a") == (False, 0)
        device.send(publish_packet(ORDERS.format("dev-a"), b"retained", qos=1, retain=True))
        assert device.receive() is not None  # the PUBACK: stored, retained
        device.close()
        target.control.stop()  # SIGTERM: Mosquitto saves it in its persistence file
        monkeypatch.setattr(mosquitto, "config_text", current)
        assert isinstance(target.control, mosquitto.ManagedMosquitto)
        target.control.start(datetime.now(UTC))
        gateway = echo_gateway(target)
        time.sleep(1.0)
        assert gateway.messages.empty(), gateway.messages.get().payload
        gateway.close()
    finally:
        target.control.stop()


def test_an_order_with_qos_2_ends_the_connection_and_reaches_no_gateway(
    target: KymBroker,
) -> None:
    """Mosquitto kept each QoS 2 order until the device's PUBREL, up to 200 of up to 256 KiB per
    device, and with a persistent session after the device left: a device that never released
    them held about 50 MB of the broker's memory, within its rate. Orders are QoS 1; the embedded
    broker already hung up on QoS 2, and now Mosquitto's kym_ratelimit does."""
    gateway = echo_gateway(target)
    device = target.raw("dev-a")
    assert device.connect(client_id="dev-a", clean=False) == (False, 0)
    device.send(publish_packet(ORDERS.format("dev-a"), b"a QoS 2 order", qos=2, packet_id=1))
    assert device.closed_by_broker()
    device.close()
    time.sleep(0.3)
    assert gateway.messages.empty()
    assert answers(target, "dev-a", 2) == {"dev-a-0", "dev-a-1"}  # its QoS 1 orders go on
    gateway.close()


def revoke_in_crl(target: KymBroker, certificate: Path) -> None:
    """List `certificate` in the CRL and have the broker reload it, as a revocation or the
    end of a rotation does."""
    serial = x509.load_pem_x509_certificate(certificate.read_bytes()).serial_number
    now = datetime.now(UTC)
    keystore.write_crl(target.pki, build_crl(target.pki.device_issuing, [(serial, now)], 7, now))
    target.control.reload_crl()
    time.sleep(0.5)  # Mosquitto reloads on SIGHUP, in its own time


def test_a_connection_opened_before_a_revocation_gets_nothing_after_it(target: KymBroker) -> None:
    """The embedded broker checked the CRL only in the TLS handshake: a device that held a
    connection open without CONNECT (for up to 10 s) logged in after its revocation and its
    kick, subscribed to its results and was never ended."""
    held = target.raw("dev-a")  # handshake done, CONNECT held back
    live = target.raw("dev-a")
    assert live.connect(client_id="dev-a") == (False, 0)
    revoke_in_crl(target, target.identity("dev-a")[0])
    target.control.forget_device("dev-a")  # what revoking does after the CRL
    assert live.closed_by_broker()
    live.close()
    _, code = held.connect(client_id="dev-a")
    assert code == 5 or held.subscribe(1, RESULTS.format("dev-a")) == [0x80]
    held.close()


@pytest.fixture(params=BROKER_KINDS)
def managed(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KymBroker]:
    """The brokers `kym serve` runs: the managed Mosquitto (kym_access) and the embedded one."""
    yield from running(request, tmp_path)


def held_open_then_superseded(target: KymBroker) -> tuple[RawClient, RawClient]:
    """A connection of dev-a's first certificate opened (handshake done, CONNECT held back)
    before a rotation listed that certificate in the CRL; and dev-a on its new certificate,
    connected and subscribed to its results."""
    held = target.raw("dev-a")
    revoke_in_crl(target, target.identity("dev-a")[0])
    (target.tmp / "new").mkdir()
    rotated = target.tls("dev-a")
    rotated.load_cert_chain(*issue(target.pki, "dev-a", target.tmp / "new"))
    device = RawClient(target.port, rotated, 5.0)
    assert device.connect(client_id="dev-a") == (False, 0)
    assert device.subscribe(1, RESULTS.format("dev-a")) == [1]
    return held, device


def test_a_superseded_certificate_held_open_reads_none_of_its_devices_results(
    managed: KymBroker,
) -> None:
    """Both brokers checked the CRL only in the TLS handshake: a connection that a leaked,
    rotated-out key opened before the rotation logged in after it as the device and read its
    results (Mosquitto keeps a connection without CONNECT for 90 s and more)."""
    held, device = held_open_then_superseded(managed)
    _, code = held.connect(client_id="dev-a")
    if code == 0:  # Mosquitto cannot refuse the CONNECT of a certificate identity
        assert held.subscribe(1, RESULTS.format("dev-a")) == [0x80]
    else:
        assert code == 5
    gateway = managed.paho("kym-gateway-0")
    gateway.publish(RESULTS.format("dev-a"), b"for dev-a's new certificate only")
    held.sock.settimeout(1.0)
    try:
        received = held.receive()  # None once the broker has closed it
    except TimeoutError:  # open, and given nothing
        received = None
    assert received is None, received.payload
    for client in (held, device, gateway):
        client.close()


def test_a_superseded_certificate_held_open_cannot_push_the_device_off_on_embedded(
    tmp_path: Path,
) -> None:
    """The embedded broker goes further and refuses its CONNECT, so the device's own session
    stays (Mosquitto 2.0.11 gives a plugin no say in a certificate client's CONNECT: the device
    is pushed off once per such connection, and its reconnect takes the session back)."""
    target = start_kym_broker("embedded", tmp_path, None)
    try:
        held, device = held_open_then_superseded(target)
        assert held.connect(client_id="dev-a") == (False, 5)
        assert held.closed_by_broker()
        held.close()
        device.sock.settimeout(0.5)
        with pytest.raises(TimeoutError):  # not taken over: the connection stays, quiet
            device.receive()
        device.close()
    finally:
        target.control.stop()
