"""Fixtures for the embedded broker: a throwaway PKI, a running broker, recording MQTT clients.

The PKI mirrors KYM's: a device root CA signs device certificates (CN = device id) and the
gateway's client certificate; a separate service root signs the broker's server certificate
and a signing certificate; a foreign CA signs nothing we trust.
"""

from __future__ import annotations

import ipaddress
import queue
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from gateway.broker import Broker, BrokerConfig
from tests.broker.kym_brokers import kym_broker, mosquitto_broker  # noqa: F401 - fixtures
from tests.broker.rawmqtt import RawClient
from tests.broker.testpki import Identity, Pki, issue_client, leaf, make_ca, new_key, save

WAIT_S = 5.0


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """Every certificate the broker tests need, made once per run."""
    directory = tmp_path_factory.mktemp("pki")
    device_ca = make_ca(directory, "KYM Device Root CA")
    service_ca = make_ca(directory, "KYM Service Root CA")
    foreign_ca = make_ca(directory, "Foreign CA")
    server_key, signing_key = new_key(), new_key()
    server = save(
        directory,
        "server",
        "127.0.0.1",
        server_key,
        leaf(
            service_ca,
            "127.0.0.1",
            server_key,
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            [ExtendedKeyUsageOID.SERVER_AUTH],
        ),
    )
    signing = save(
        directory,
        "signing",
        "kym-gateway-signing",
        signing_key,
        leaf(
            service_ca,
            "kym-gateway-signing",
            signing_key,
            x509.UniformResourceIdentifier("urn:kym:gateway"),
            None,
        ),
    )
    return Pki(
        dir=directory,
        device_ca=device_ca,
        service_ca=service_ca,
        foreign_ca=foreign_ca,
        server=server,
        signing=signing,
        devices={
            cn: issue_client(directory, device_ca, cn, cn) for cn in ("dev-a", "dev-b", "dev-c")
        },
        gateway=issue_client(directory, device_ca, "kym-gateway-0", "kym-gateway-0"),
        gateway2=issue_client(directory, device_ca, "kym-gateway-1", "kym-gateway-1"),
        service_client=issue_client(directory, service_ca, "dev-a", "service-dev-a"),
        foreign_device=issue_client(directory, foreign_ca, "dev-a", "foreign-dev-a"),
        no_eku_device=issue_client(directory, device_ca, "dev-a", "no-eku-dev-a", usage=None),
    )


def broker_config(pki: Pki, tmp_path: Path, **overrides: object) -> BrokerConfig:
    """A config on an ephemeral port, with its own CRL file (the device CA's, empty)."""
    settings: dict[str, object] = {
        "certfile": pki.server.cert,
        "keyfile": pki.server.key,
        "cafile": pki.device_ca.path,
        "crlfile": pki.write_crl(tmp_path / "crl.pem"),
        "port": 0,
    }
    settings.update(overrides)
    return BrokerConfig(**settings)  # type: ignore[arg-type]


@pytest.fixture
def broker(pki: Pki, tmp_path: Path) -> Iterator[Broker]:
    """A running broker with default settings."""
    with Broker(broker_config(pki, tmp_path)) as running:
        yield running


class Peer:
    """A paho MQTT 3.1.1 client that records what happens to it; it never reconnects."""

    def __init__(
        self,
        port: int,
        pki: Pki,
        identity: Identity | None,
        client_id: str = "",
        clean_session: bool = True,
    ) -> None:
        self.port = port
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.settled = threading.Event()  # a CONNACK came, or the connection ended
        self.connack: ReasonCode | None = None
        self.session_present: bool | None = None
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.subacks: queue.Queue[list[ReasonCode]] = queue.Queue()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or (identity.cn if identity else ""),
            clean_session=clean_session,
            protocol=mqtt.MQTTv311,
            reconnect_on_failure=False,
        )
        self.client.tls_set(
            ca_certs=str(pki.service_ca.path),
            certfile=str(identity.cert) if identity else None,
            keyfile=str(identity.key) if identity else None,
        )
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = lambda client, userdata, msg: self.messages.put(msg)
        self.client.on_subscribe = lambda client, userdata, mid, codes, props: self.subacks.put(
            list(codes)
        )

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: object,
    ) -> None:
        self.connack, self.session_present = reason, flags.session_present
        sock = client.socket()
        if not reason.is_failure and isinstance(sock, socket.socket):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connected.set()
        self.settled.set()

    def _on_disconnect(self, *args: object) -> None:
        self.disconnected.set()
        self.settled.set()

    def start(self) -> Peer:
        """Connect and start the network thread; a refused handshake may raise or disconnect."""
        self.client.connect("127.0.0.1", self.port, keepalive=30)
        self.client.loop_start()
        return self

    def accepted(self) -> bool:
        """Wait for the outcome of the connection: True if a CONNACK accepted it."""
        assert self.settled.wait(WAIT_S), "neither a CONNACK nor a disconnect"
        return self.connack is not None and not self.connack.is_failure

    def subscribe(self, topic: str, qos: int = 1) -> int:
        """Subscribe and return the SUBACK return code (0x80 when refused)."""
        self.client.subscribe(topic, qos)
        return int(self.subacks.get(timeout=WAIT_S)[0].value)

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        """Publish and wait until the broker acknowledged it (QoS 1)."""
        self.client.publish(topic, payload, qos).wait_for_publish(WAIT_S)

    def expect(self) -> mqtt.MQTTMessage:
        """The next message received (fails the test after a few seconds)."""
        return self.messages.get(timeout=WAIT_S)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        # paho keeps its socket and its wake-up socket pair until garbage collection, where
        # they would raise ResourceWarnings: close them now.
        self.client._reset_sockets()


@pytest.fixture
def peers(broker: Broker, pki: Pki) -> Iterator[Callable[..., Peer]]:
    """Make connected paho clients of `broker`; all are closed at the end of the test."""
    made: list[Peer] = []

    def connect(
        identity: Identity | None,
        client_id: str = "",
        clean_session: bool = True,
        accept: bool = True,
    ) -> Peer:
        peer = Peer(broker.port, pki, identity, client_id, clean_session)
        made.append(peer)
        peer.start()
        if accept:
            assert peer.accepted(), f"connection refused: {peer.connack}"
        return peer

    yield connect
    for peer in made:
        peer.close()


def tls_client_context(pki: Pki, identity: Identity | None) -> ssl.SSLContext:
    """A client context that verifies the broker and presents `identity`."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki.service_ca.path))
    if identity is not None:
        ctx.load_cert_chain(identity.cert, identity.key)
    return ctx


@pytest.fixture
def raws(broker: Broker, pki: Pki) -> Iterator[Callable[..., RawClient]]:
    """Open raw TLS MQTT connections to `broker`; all are closed at the end of the test."""
    made: list[RawClient] = []

    def open_raw(identity: Identity | None, timeout_s: float = WAIT_S) -> RawClient:
        client = RawClient(broker.port, tls_client_context(pki, identity), timeout_s)
        made.append(client)
        return client

    yield open_raw
    for client in made:
        client.close()
