"""MQTT clients of a broker under test: paho peers, TLS contexts and broker settings."""

from __future__ import annotations

import queue
import socket
import ssl
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from gateway.broker import BrokerConfig
from tests.broker.testpki import Identity, Pki

WAIT_S = 5.0


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


def tls_client_context(pki: Pki, identity: Identity | None) -> ssl.SSLContext:
    """A client context that verifies the broker and presents `identity`."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki.service_ca.path))
    if identity is not None:
        ctx.load_cert_chain(identity.cert, identity.key)
    return ctx
