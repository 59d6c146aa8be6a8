"""The gateway's MQTT adapter: one paho client per worker, with its own certificate identity.

The paho callback only copies each message into a queue and returns (database work on paho's
network thread would stall every other message); a worker takes messages from the queue.
"""

from __future__ import annotations

import logging
import queue
import socket
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

log = logging.getLogger("kym.mqtt")
ORDERS_SHARED = "$share/kym/kym/v1/devices/+/orders"


def results_topic(device_id: str) -> str:
    """Where a device reads its results and events."""
    return f"kym/v1/devices/{device_id}/results"


@dataclass(frozen=True)
class Inbound:
    """An order as it arrived: the topic and the raw payload bytes."""

    topic: str
    payload: bytes


class GatewayClient:
    """Subscribes to every device's orders (shared) and publishes results, over mutual TLS."""

    def __init__(
        self,
        host: str,
        port: int,
        identity: str,
        cert: Path,
        key: Path,
        ca_bundle: Path,
        inbox: queue.Queue[Inbound] | None = None,
    ) -> None:
        self.host, self.port, self.identity = host, port, identity
        self.inbox: queue.Queue[Inbound] = inbox if inbox is not None else queue.Queue()
        self.subscribed = threading.Event()
        self._client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=identity, clean_session=True
        )
        self._client.tls_set(
            ca_certs=str(ca_bundle),
            certfile=str(cert),
            keyfile=str(key),
            cert_reqs=ssl.CERT_REQUIRED,
        )
        self._client.max_inflight_messages_set(1000)
        self._client.max_queued_messages_set(0)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.reconnect_delay_set(0.2, 5)

    def start(self) -> None:
        """Connect in the background; reconnects by itself."""
        self._client.connect_async(self.host, self.port, keepalive=30)
        self._client.loop_start()

    def stop(self) -> None:
        """Disconnect and stop the network thread."""
        self._client.disconnect()
        self._client.loop_stop()

    def publish(self, topic: str, payload: bytes) -> mqtt.MQTTMessageInfo:
        """Publish with QoS 1."""
        return self._client.publish(topic, payload, qos=1)

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        if rc.is_failure:
            log.error("broker refused the gateway identity %s: %s", self.identity, rc)
            return
        sock = client.socket()
        if sock is not None:  # paho does not set TCP_NODELAY: 44 ms round trips without it
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client.subscribe(ORDERS_SHARED, qos=1)

    def _on_subscribe(self, _c: Any, _u: Any, _mid: Any, codes: list[ReasonCode], _p: Any) -> None:
        if all(not code.is_failure for code in codes):
            self.subscribed.set()
        else:
            log.error("the broker refused the orders subscription: %s", codes)

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        self.subscribed.clear()
        if rc.is_failure:
            log.warning(
                "gateway %s disconnected from the broker (%s); reconnecting", self.identity, rc
            )

    def _on_message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        self.inbox.put(Inbound(message.topic, message.payload))
