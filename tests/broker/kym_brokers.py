"""Both brokers `kym serve` can run, on KYM's own PKI: the managed Mosquitto (with the
configuration `kym mosquitto-config` writes) and the embedded broker, behind one interface."""

from __future__ import annotations

import json
import queue
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from devices import ca, keystore
from gateway.broker import Broker, BrokerConfig
from gateway.broker.mosquitto import ManagedMosquitto
from gateway.broker.plugin import broker_limits
from gateway.server import free_port
from tests.broker.rawmqtt import RawClient

ORDERS, RESULTS = "kym/v1/devices/{}/orders", "kym/v1/devices/{}/results"
SHARED_ORDERS = "$share/kym/kym/v1/devices/+/orders"
REGISTERED = ("dev-a", "dev-b", "dev-c")
GATEWAY_LIMITS = (10.0, 50)  # the gateway's default rate and burst; the brokers allow twice
WAIT_S = 5.0


@dataclass
class KymBroker:
    """A running broker, the PKI it trusts, and certificates for whoever a test needs."""

    kind: str
    port: int
    pki: keystore.Pki
    tmp: Path
    control: ManagedMosquitto | Broker
    _issued: dict[str, tuple[Path, Path]] = field(default_factory=dict)

    def identity(self, cn: str) -> tuple[Path, Path]:
        """A client certificate from the device CA with this CN (a gateway's for kym-gateway-n)."""
        if cn.startswith("kym-gateway-"):
            now = datetime.now(UTC)
            return keystore.ensure_gateway_client_identity(self.pki, int(cn.rsplit("-")[-1]), now)
        if cn not in self._issued:
            self._issued[cn] = issue(self.pki, cn, self.tmp)
        return self._issued[cn]

    def tls(self, cn: str) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki.paths.bundle))
        context.load_cert_chain(*self.identity(cn))
        return context

    def raw(self, cn: str) -> RawClient:
        """A bare MQTT 3.1.1 connection (not yet CONNECTed) as `cn`."""
        return RawClient(self.port, self.tls(cn), WAIT_S)

    def paho(self, cn: str, clean_session: bool = True) -> Paho:
        """A connected paho client as `cn`."""
        return Paho(self, cn, clean_session)


def issue(pki: keystore.Pki, cn: str, directory: Path) -> tuple[Path, Path]:
    """A device certificate for `cn` straight from the device CA, as KYM issues them."""
    key = ca.new_private_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    cert = ca.issue_device_certificate(
        pki.device_issuing, csr, cn, pki.trust_domain, datetime.now(UTC)
    )
    cert_path, key_path = directory / f"{cn}.crt", directory / f"{cn}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class Paho:
    """A paho client that records messages and SUBACK codes; it never reconnects."""

    def __init__(self, broker: KymBroker, cn: str, clean_session: bool) -> None:
        self.cn = cn
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.subacks: queue.Queue[list[int]] = queue.Queue()
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.on_message: Callable[[mqtt.MQTTMessage], None] = self.messages.put
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=cn,
            clean_session=clean_session,
            protocol=mqtt.MQTTv311,
            reconnect_on_failure=False,
        )
        cert, key = broker.identity(cn)
        self.client.tls_set(ca_certs=str(broker.pki.paths.bundle), certfile=cert, keyfile=key)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *_: self.disconnected.set()
        self.client.on_message = lambda c, u, m: self.on_message(m)
        self.client.on_subscribe = lambda c, u, mid, codes, p: self.subacks.put(
            [int(code.value) for code in codes]
        )
        self.client.connect("127.0.0.1", broker.port, keepalive=30)
        self.client.loop_start()
        assert self.connected.wait(WAIT_S), f"{cn} got no CONNACK"

    def _on_connect(self, client: mqtt.Client, *args: Any) -> None:
        sock = client.socket()
        if isinstance(sock, socket.socket):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connected.set()

    def subscribe(self, topic_filter: str) -> int:
        self.client.subscribe(topic_filter, qos=1)
        return self.subacks.get(timeout=WAIT_S)[0]

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(WAIT_S)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        self.client._reset_sockets()


def echo_gateway(broker: KymBroker, n: int = 0, clean_session: bool = True) -> Paho:
    """A gateway worker that answers each order on the sender's results topic."""
    gateway = broker.paho(f"kym-gateway-{n}", clean_session)

    def answer(message: mqtt.MQTTMessage) -> None:
        gateway.messages.put(message)  # what it was given, for the test to inspect
        device = message.topic.split("/")[3]
        body = json.dumps({"order": message.payload.decode(), "by": n}).encode()
        gateway.client.publish(RESULTS.format(device), body, qos=1)

    gateway.on_message = answer
    assert gateway.subscribe(SHARED_ORDERS) == 1
    return gateway


def start_kym_broker(kind: str, tmp_path: Path, binary: str | None) -> KymBroker:
    """Start one broker on a free port, admitting the devices in REGISTERED."""
    now = datetime.now(UTC)
    pki = keystore.load_or_create_pki(tmp_path / "data", "kym.local", now)
    control: ManagedMosquitto | Broker
    if kind.startswith("mosquitto"):  # "mosquitto-dynsec": access rules by dynsec.json
        assert binary is not None
        port = free_port()
        control = ManagedMosquitto(
            binary,
            pki,
            "127.0.0.1",
            port,
            tmp_path / "mq",
            devices=lambda: REGISTERED,
            patterns=kind == "mosquitto",
        )
        control.start(now)
    else:
        cert, key = keystore.ensure_server_certificate(pki, "127.0.0.1", now)
        control = Broker(
            BrokerConfig(
                certfile=cert,
                keyfile=key,
                cafile=pki.paths.device_cafile,
                crlfile=pki.paths.crl,
                port=0,
                device_limits=broker_limits(*GATEWAY_LIMITS),  # as `kym serve` sets them
            )
        )
        control.start()
        port = control.port
    return KymBroker(kind, port, pki, tmp_path, control)


BROKER_KINDS = [pytest.param("mosquitto", marks=pytest.mark.mosquitto), "embedded"]
# The access rules' tests also run on the managed Mosquitto without kym_access (no compiler):
ACCESS_KINDS = [*BROKER_KINDS, pytest.param("mosquitto-dynsec", marks=pytest.mark.mosquitto)]


def running(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KymBroker]:
    """The broker of kind `request.param`, stopped after the test."""
    binary = request.getfixturevalue("mosquitto_binary") if request.param != "embedded" else None
    broker = start_kym_broker(request.param, tmp_path, binary)
    try:
        yield broker
    finally:
        broker.control.stop()


@pytest.fixture(params=BROKER_KINDS)
def kym_broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KymBroker]:
    """The managed Mosquitto and the embedded broker, each in turn."""
    yield from running(request, tmp_path)


@pytest.fixture
def mosquitto_broker(tmp_path: Path, mosquitto_binary: str) -> Iterator[KymBroker]:
    """The managed Mosquitto alone (access rules by kym_access, as `kym serve` runs it)."""
    broker = start_kym_broker("mosquitto", tmp_path, mosquitto_binary)
    try:
        yield broker
    finally:
        broker.control.stop()


@pytest.fixture
def dynsec_broker(tmp_path: Path, mosquitto_binary: str) -> Iterator[KymBroker]:
    """The managed Mosquitto with its access rules by dynsec.json (as without a compiler)."""
    broker = start_kym_broker("mosquitto-dynsec", tmp_path, mosquitto_binary)
    try:
        yield broker
    finally:
        broker.control.stop()
