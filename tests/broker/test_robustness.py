"""Bad input ends only the offending connection; the broker keeps serving everyone else."""

from __future__ import annotations

import contextlib
import random
import socket
import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.broker import Broker
from tests.broker.rawmqtt import RawClient, connect_packet, packet, publish_packet
from tests.broker.testpki import Identity, Pki
from tests.support.peers import Peer, broker_config, tls_client_context
from tests.support.services import unavailable

ORDERS, RESULTS = "kym/v1/devices/{}/orders", "kym/v1/devices/{}/results"
NOISE = random.Random(1).randbytes(600)  # fixed bytes that are no MQTT, so the test is repeatable


def still_serving(pki: Pki, peers: Callable[..., Peer]) -> bool:
    """True if a fresh device can still get an order to a gateway."""
    gateway = peers(pki.gateway)
    assert gateway.subscribe("kym/v1/devices/+/orders") == 1
    peers(pki.devices["dev-c"]).publish(ORDERS.format("dev-c"), b"still here")
    return bool(gateway.expect().payload == b"still here")


def test_an_mqtt5_connect_gets_return_code_1_and_is_closed(
    pki: Pki, raws: Callable[..., RawClient]
) -> None:
    client = raws(pki.devices["dev-a"])
    assert client.connect(level=5) == (False, 1)
    assert client.closed_by_broker()


def test_an_mqtt_3_1_connect_is_accepted(pki: Pki, raws: Callable[..., RawClient]) -> None:
    client = raws(pki.devices["dev-a"])
    assert client.connect(level=3) == (False, 0)
    assert client.subscribe(1, RESULTS.format("dev-a")) == [1]


def test_an_oversize_packet_disconnects_the_client(pki: Pki, tmp_path: Path) -> None:
    with Broker(broker_config(pki, tmp_path, max_packet_size=1024)) as broker:
        client = RawClient(broker.port, tls_client_context(pki, pki.devices["dev-a"]))
        try:
            assert client.connect() == (False, 0)
            client.send(publish_packet(ORDERS.format("dev-a"), b"x" * 1000, qos=0))
            client.send(publish_packet(ORDERS.format("dev-a"), b"x" * 2000, qos=0))
            assert client.closed_by_broker()
        finally:
            client.close()


def test_an_announced_oversize_packet_is_refused_before_its_body_arrives(
    pki: Pki, raws: Callable[..., RawClient]
) -> None:
    client = raws(pki.devices["dev-a"])
    assert client.connect() == (False, 0)
    client.send(bytes((0x30, 0xFF, 0xFF, 0xFF, 0x7F)))  # 256 MiB announced, nothing sent
    assert client.closed_by_broker()


@pytest.mark.parametrize(
    "bad",
    [
        publish_packet("kym/v1/devices/+/orders", b"wildcard topic"),
        publish_packet("kym/v1/devices/dev-a/#", b"wildcard topic"),
        publish_packet(b"kym/v1/devices/dev-a\x00/orders", b"NUL in topic"),
        publish_packet(b"kym/\xff\xfe", b"not UTF-8"),
        publish_packet(ORDERS.format("dev-a"), b"qos 2", qos=2),
        packet(0x82, b"\x00\x01"),  # SUBSCRIBE without a filter
        packet(0x80, b"\x00\x01\x00\x01#\x01"),  # SUBSCRIBE with wrong header flags
        packet(0x50, b"\x00\x01"),  # PUBREC: no QoS 2 here
        packet(0x20, b"\x00\x00"),  # CONNACK from a client
        connect_packet(),  # a second CONNECT
        NOISE[:64],
    ],
    ids=[
        "plus",
        "hash",
        "nul",
        "utf8",
        "qos2",
        "empty-subscribe",
        "subscribe-flags",
        "pubrec",
        "connack",
        "second-connect",
        "random",
    ],
)
def test_a_protocol_error_closes_only_that_connection(
    pki: Pki, raws: Callable[..., RawClient], peers: Callable[..., Peer], bad: bytes
) -> None:
    client = raws(pki.devices["dev-a"])
    assert client.connect() == (False, 0)
    client.send(bad)
    assert client.closed_by_broker()
    assert still_serving(pki, peers)


def test_a_client_that_never_reads_its_answers_is_disconnected(
    pki: Pki, raws: Callable[..., RawClient], peers: Callable[..., Peer]
) -> None:
    flooder = raws(pki.devices["dev-a"])
    assert flooder.connect(keepalive_s=0) == (False, 0)
    pings = bytes((0xC0, 0)) * 32_768  # PINGREQs; their PINGRESPs are never read
    deadline, sent = time.monotonic() + 30, 0
    with pytest.raises((OSError, ssl.SSLError)):  # the broker ended the connection
        while time.monotonic() < deadline:
            flooder.send(pings)
            sent += len(pings)
        raise AssertionError(f"still connected after {sent:,} bytes of PINGREQs")
    assert still_serving(pki, peers)


def test_garbage_before_connect_and_without_tls_does_not_crash_the_broker(
    broker: Broker, pki: Pki, raws: Callable[..., RawClient], peers: Callable[..., Peer]
) -> None:
    after_tls = raws(pki.devices["dev-a"])
    after_tls.send(NOISE[:200])
    assert after_tls.closed_by_broker()
    with socket.create_connection(("127.0.0.1", broker.port), timeout=5) as plain:
        plain.sendall(b"GET / HTTP/1.1\r\n\r\n" + NOISE)
        with contextlib.suppress(ConnectionResetError):
            while plain.recv(1024):  # a TLS alert, then the end
                pass
    assert still_serving(pki, peers)


def _mosquitto(
    tool: str,
    broker: Broker,
    pki: Pki,
    identity: Identity,
    *args: str,
) -> subprocess.CompletedProcess[str]:
    command = [
        f"/usr/bin/{tool}",
        "-h",
        "127.0.0.1",
        "-p",
        str(broker.port),
        "--cafile",
        str(pki.service_ca.path),
        "--cert",
        str(identity.cert),
        "--key",
        str(identity.key),
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)


@pytest.fixture
def mosquitto_clients() -> None:
    """Require mosquitto_pub and mosquitto_sub (skipped locally, required in CI)."""
    if not (Path("/usr/bin/mosquitto_pub").exists() and Path("/usr/bin/mosquitto_sub").exists()):
        unavailable("the mosquitto_pub and mosquitto_sub clients")


@pytest.mark.usefixtures("mosquitto_clients")
def test_mosquitto_clients_round_trip_an_order(
    broker: Broker, pki: Pki, peers: Callable[..., Peer]
) -> None:
    gateway = peers(pki.gateway)
    assert gateway.subscribe("$share/kym/kym/v1/devices/+/orders") == 1
    sent = _mosquitto(
        "mosquitto_pub",
        broker,
        pki,
        pki.devices["dev-a"],
        "-q",
        "1",
        "-t",
        ORDERS.format("dev-a"),
        "-m",
        "from the CLI",
    )
    assert sent.returncode == 0, sent.stderr
    assert gateway.expect().payload == b"from the CLI"

    receiving = subprocess.Popen(
        [
            "/usr/bin/mosquitto_sub",
            "-h",
            "127.0.0.1",
            "-p",
            str(broker.port),
            "--cafile",
            str(pki.service_ca.path),
            "--cert",
            str(pki.devices["dev-a"].cert),
            "--key",
            str(pki.devices["dev-a"].key),
            "-q",
            "1",
            "-C",
            "1",
            "-t",
            RESULTS.format("dev-a"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        while receiving.poll() is None:  # publish until the subscriber is there to get it
            gateway.publish(RESULTS.format("dev-a"), b"result for the CLI")
            try:
                receiving.wait(0.1)
            except subprocess.TimeoutExpired:
                continue
        out, err = receiving.communicate(timeout=5)
    finally:
        receiving.kill()
        receiving.wait()
    assert (receiving.returncode, out.strip()) == (0, "result for the CLI"), err


@pytest.mark.usefixtures("mosquitto_clients")
def test_mosquitto_pub_is_refused_with_a_foreign_certificate_and_with_mqtt5(
    broker: Broker, pki: Pki
) -> None:
    foreign = _mosquitto(
        "mosquitto_pub", broker, pki, pki.foreign_device, "-t", ORDERS.format("dev-a"), "-m", "x"
    )
    assert foreign.returncode != 0
    mqtt5 = _mosquitto(
        "mosquitto_pub",
        broker,
        pki,
        pki.devices["dev-a"],
        "-V",
        "mqttv5",
        "-t",
        ORDERS.format("dev-a"),
        "-m",
        "x",
    )
    assert mqtt5.returncode != 0
    assert "protocol version" in (mqtt5.stdout + mqtt5.stderr).lower()
