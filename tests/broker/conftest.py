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
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from gateway.broker import Broker, BrokerConfig
from tests.broker.kym_brokers import kym_broker, mosquitto_broker  # noqa: F401 - fixtures
from tests.broker.rawmqtt import RawClient

WAIT_S = 5.0


@dataclass(frozen=True)
class Ca:
    name: str
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    path: Path


@dataclass(frozen=True)
class Identity:
    """A client certificate and its key, as files."""

    cn: str
    cert: Path
    key: Path
    serial: int


@dataclass(frozen=True)
class Pki:
    dir: Path
    device_ca: Ca
    service_ca: Ca
    foreign_ca: Ca
    server: Identity
    signing: Identity
    devices: dict[str, Identity]
    gateway: Identity
    gateway2: Identity
    service_client: Identity
    foreign_device: Identity
    no_eku_device: Identity

    def issue(
        self,
        cn: str,
        name: str,
        usage: x509.ObjectIdentifier | None = ExtendedKeyUsageOID.CLIENT_AUTH,
    ) -> Identity:
        """Issue another client certificate from the device CA (`usage` None: no EKU at all)."""
        return _issue_client(self.dir, self.device_ca, cn, name, usage)

    def write_crl(self, path: Path, revoked: tuple[int, ...] = ()) -> Path:
        """Write a CRL file: the foreign CA's (empty) CRL, then the device CA's."""
        pem = _crl(self.foreign_ca, ()) + _crl(self.device_ca, revoked)
        path.write_bytes(pem)
        return path


def _now() -> datetime:
    return datetime.now(UTC)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _make_ca(directory: Path, cn: str) -> Ca:
    key = _key()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - timedelta(hours=1))
        .not_valid_after(_now() + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    path = directory / f"{cn}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Ca(cn, key, cert, path)


def _leaf(
    ca: Ca,
    cn: str,
    key: ec.EllipticCurvePrivateKey,
    san: x509.GeneralName,
    eku: list[x509.ObjectIdentifier] | None,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - timedelta(hours=1))
        .not_valid_after(_now() + timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([san]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    return builder.sign(ca.key, hashes.SHA256())


def _save(
    directory: Path, name: str, cn: str, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate
) -> Identity:
    cert_path = directory / f"{name}.crt"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Identity(cn, cert_path, _write_key(directory / f"{name}.key", key), cert.serial_number)


def _issue_client(
    directory: Path,
    ca: Ca,
    cn: str,
    name: str,
    usage: x509.ObjectIdentifier | None = ExtendedKeyUsageOID.CLIENT_AUTH,
) -> Identity:
    key = _key()
    san = x509.UniformResourceIdentifier(f"urn:kym:device:{cn}")
    eku = [usage] if usage is not None else None
    return _save(directory, name, cn, key, _leaf(ca, cn, key, san, eku))


def _crl(ca: Ca, revoked: tuple[int, ...]) -> bytes:
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.cert.subject)
        .last_update(_now() - timedelta(minutes=1))
        .next_update(_now() + timedelta(days=1))
    )
    for serial in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(_now() - timedelta(minutes=1))
            .build()
        )
    return builder.sign(ca.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """Every certificate the broker tests need, made once per run."""
    directory = tmp_path_factory.mktemp("pki")
    device_ca = _make_ca(directory, "KYM Device Root CA")
    service_ca = _make_ca(directory, "KYM Service Root CA")
    foreign_ca = _make_ca(directory, "Foreign CA")
    server_key, signing_key = _key(), _key()
    server = _save(
        directory,
        "server",
        "127.0.0.1",
        server_key,
        _leaf(
            service_ca,
            "127.0.0.1",
            server_key,
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            [ExtendedKeyUsageOID.SERVER_AUTH],
        ),
    )
    signing = _save(
        directory,
        "signing",
        "kym-gateway-signing",
        signing_key,
        _leaf(
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
            cn: _issue_client(directory, device_ca, cn, cn) for cn in ("dev-a", "dev-b", "dev-c")
        },
        gateway=_issue_client(directory, device_ca, "kym-gateway-0", "kym-gateway-0"),
        gateway2=_issue_client(directory, device_ca, "kym-gateway-1", "kym-gateway-1"),
        service_client=_issue_client(directory, service_ca, "dev-a", "service-dev-a"),
        foreign_device=_issue_client(directory, foreign_ca, "dev-a", "foreign-dev-a"),
        no_eku_device=_issue_client(directory, device_ca, "dev-a", "no-eku-dev-a", usage=None),
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
