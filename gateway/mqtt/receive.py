"""paho's MQTT client with a receive path of its own for PUBLISH packets (issue 10's flood).

paho reads a packet with one `recv` for its first byte, one per byte of its length and one for
the rest, after a `select`; it then builds an `MQTTMessage`, runs the callback under two locks,
and queues each PUBACK as a packet of its own, waking its loop through a socket pair and writing
one TLS record per acknowledgement. That is about 30 µs per message (benchmarks/receive_bench.py),
and a flood of 10,000 from one device spends it all on the network thread, holding the GIL
against the order worker.

`ReceivingClient` reads what the socket has in large pieces and splits it into packets itself;
a QoS 0 or 1 PUBLISH (MQTT 3.1.1) goes to `on_publish_packet(topic, payload, mid, qos)` without a
message object, and the ones it refuses (it returns False) are acknowledged together: one
buffer of PUBACKs written once per round of reads (about 6 µs a message in all). `ack_many`
sends the acknowledgements of a worker's batch in one buffer too. Every other packet (CONNACK,
SUBACK, PINGRESP, QoS 2, MQTT 5) is handed to paho's own `_packet_handle`, as paho's reader
would; so is a PUBACK, except that of MQTT 3.1.1 without an `on_publish` callback, which is
handled as paho would but without decoding a reason code and properties (`_puback`).

These are paho's private members (written against paho-mqtt 2.2); with a paho that lacks
them, `ReceivingClient` reads with paho's own reader and hands each message over from
`on_message` (`PAHO_READER_USABLE`).
"""

from __future__ import annotations

import logging
import struct
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from typing import Any, cast

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

log = logging.getLogger("kym.mqtt")

READ_SIZE = 65_536
MAX_READS = 64  # per call: then paho's loop gets to write (PUBACKs, results) before reading on
_PRIVATE = (
    "_packet_read",
    "_packet_handle",
    "_packet_queue",
    "_packet_write",
    "_sock_recv",
    "_do_on_publish",
)
PAHO_READER_USABLE = all(hasattr(mqtt.Client, name) for name in _PRIVATE)
_PUBLISH, _PUBACK = 0x30, 0x40
_PUBACK_OF = struct.Struct("!BBH")
# What paho decodes an MQTT 3.1.1 PUBACK into; nobody gets them (no on_publish, see _puback).
_SUCCESS = ReasonCode(PacketTypes.PUBACK)
_NO_PROPERTIES = Properties(PacketTypes.PUBACK)

# (topic, payload, mid, qos) -> True when taken, False when it is to be acknowledged at once
PublishHandler = Callable[[str, bytes, int, int], bool]


def pubacks(mids: Iterable[int]) -> bytes:
    """The PUBACK packets of these message ids, back to back."""
    return b"".join(_PUBACK_OF.pack(_PUBACK, 2, mid) for mid in mids)


class ReceivingClient(mqtt.Client):  # type: ignore[misc]  # paho is not followed (pyproject)
    """A paho client whose network thread splits PUBLISH packets itself (module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_publish_packet: PublishHandler | None = None
        self.after_read: Callable[[], None] | None = None  # once a read's packets are handled
        self._held = threading.local()  # `one_wakeup`: the threads queueing without waking
        self._rbuf = bytearray()
        self._rbuf_sock: object = None  # the socket _rbuf's bytes came from
        self._refused: list[int] = []
        if not PAHO_READER_USABLE:
            log.warning("this paho-mqtt lacks what our reader uses: reading with paho's own")
            self.on_message = self._on_paho_message

    @contextmanager
    def one_wakeup(self) -> Iterator[None]:
        """Queue this thread's packets without waking paho's network loop for each, and wake it
        once at the end: paho writes a byte to its socket pair per packet, a system call and a
        GIL hand-off to the network thread for every result of a batch."""
        self._held.active = True
        try:
            yield
        finally:
            self._held.active = False
            wake = self._sockpairW
            if wake is not None:
                with suppress(OSError):  # BlockingIOError included: it is awake already
                    wake.send(mqtt.sockpair_data)

    def _packet_queue(
        self,
        command: int,
        packet: bytes | bytearray,
        mid: int,
        qos: int,
        info: mqtt.MQTTMessageInfo | None = None,
    ) -> mqtt.MQTTErrorCode:
        if not getattr(self._held, "active", False) or self._thread is None:
            return cast(mqtt.MQTTErrorCode, super()._packet_queue(command, packet, mid, qos, info))
        self._out_packet.append(_out_packet(command, packet, mid, qos, info))
        return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS

    def ack_many(self, mids: list[int]) -> None:
        """PUBACK these QoS 1 messages of the current connection, in one write."""
        if not mids:
            return
        if not PAHO_READER_USABLE:
            for mid in mids:
                self.ack(mid, 1)
            return
        self._packet_queue(_PUBACK, pubacks(mids), 0, 0)

    def _on_paho_message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        handler = self.on_publish_packet
        if handler is not None and not handler(
            message.topic, message.payload, message.mid, message.qos
        ):
            self.ack(message.mid, message.qos)
        if self.after_read is not None:
            self.after_read()

    def _packet_read(self) -> mqtt.MQTTErrorCode:
        if not PAHO_READER_USABLE:
            return super()._packet_read()
        if self._rbuf_sock is not self._sock:  # a new connection: no bytes of the old one
            self._rbuf_sock, self._rbuf, self._refused = self._sock, bytearray(), []
        for _ in range(MAX_READS):
            try:
                data = self._sock_recv(READ_SIZE)
            except BlockingIOError:
                break
            except OSError as err:
                log.warning("failed to receive on the broker socket: %s", err)
                return mqtt.MQTTErrorCode.MQTT_ERR_CONN_LOST
            if not data:
                return mqtt.MQTTErrorCode.MQTT_ERR_CONN_LOST
            with self._msgtime_mutex:
                self._last_bytes_received = mqtt.time_func()
            self._rbuf += data
            rc = self._split_packets()
            if self._sock is None or self._sock is not self._rbuf_sock:
                return mqtt.MQTTErrorCode.MQTT_ERR_CONN_LOST  # a handler closed the connection
            if self.after_read is not None:
                self.after_read()
            if rc > 0:
                return rc
        self._flush_refused()
        return mqtt.MQTTErrorCode.MQTT_ERR_AGAIN

    def _split_packets(self) -> mqtt.MQTTErrorCode:
        """Handle every whole packet in the buffer; keep the partial one at its end."""
        buf, pos, end = self._rbuf, 0, len(self._rbuf)
        rc = mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS
        while rc <= 0 and self._sock is self._rbuf_sock:  # paho's reader goes on after AGAIN
            frame = _frame(buf, pos, end)
            if frame is None:
                break
            body, after = frame
            if body < 0:
                rc = mqtt.MQTTErrorCode.MQTT_ERR_PROTOCOL
                break
            command = buf[pos]
            if (command & 0xF6) in (_PUBLISH, _PUBLISH | 2) and self._protocol != mqtt.MQTTv5:
                rc = self._publish(command, bytes(buf[body:after]))
            elif command == _PUBACK and after - body == 2 and self._fast_puback():
                rc = self._puback(buf[body] << 8 | buf[body + 1])
            else:
                rc = self._paho_packet(command, bytes(buf[body:after]))
            pos = after
        del buf[:pos]
        return rc

    def _publish(self, command: int, packet: bytes) -> mqtt.MQTTErrorCode:
        """A QoS 0 or 1 PUBLISH: topic length, topic, message id (QoS 1), payload."""
        qos = (command & 6) >> 1
        if len(packet) < 2:
            return mqtt.MQTTErrorCode.MQTT_ERR_PROTOCOL
        topic_end = 2 + (packet[0] << 8 | packet[1])
        if topic_end + 2 * qos > len(packet):
            return mqtt.MQTTErrorCode.MQTT_ERR_PROTOCOL
        mid = packet[topic_end] << 8 | packet[topic_end + 1] if qos else 0
        try:
            topic = packet[2:topic_end].decode()
        except UnicodeDecodeError:  # not an order's topic; acknowledged so as not to stay in flight
            log.warning("dropped a message whose topic is not UTF-8")
            taken = False
        else:
            handler = self.on_publish_packet
            taken = handler is None or handler(topic, packet[topic_end + 2 * qos :], mid, qos)
        if qos and not taken:
            self._refused.append(mid)
        return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS

    def _fast_puback(self) -> bool:
        """Whether a PUBACK may skip paho's decoding: MQTT 3.1.1 (the packet is only the message
        id) and no `on_publish` callback to hand a reason code and properties to."""
        return self._protocol != mqtt.MQTTv5 and self.on_publish is None

    def _puback(self, mid: int) -> mqtt.MQTTErrorCode:
        """The broker acknowledged our QoS 1 publish `mid` (a result): what paho's
        `_handle_pubackcomp` does, without building a ReasonCode and a Properties for each
        (half of paho's time per acknowledgement)."""
        with self._out_message_mutex:
            if mid in self._out_messages:
                rc: mqtt.MQTTErrorCode = self._do_on_publish(mid, _SUCCESS, _NO_PROPERTIES)
                return rc
        return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS

    def _paho_packet(self, command: int, packet: bytes) -> mqtt.MQTTErrorCode:
        """Any other packet, through paho's own handling."""
        self._in_packet = {
            "command": command,
            "have_remaining": 1,
            "remaining_count": [],
            "remaining_mult": 1,
            "remaining_length": len(packet),
            "packet": bytearray(packet),
            "to_process": 0,
            "pos": 0,
        }
        try:
            rc: mqtt.MQTTErrorCode = self._packet_handle()
        except mqtt.MalformedPacket as exc:
            log.warning("malformed packet from the broker: %s", exc)
            rc = mqtt.MQTTErrorCode.MQTT_ERR_PROTOCOL
        self._in_packet["command"], self._in_packet["packet"] = 0, bytearray()
        self._in_packet["have_remaining"] = 0
        return rc

    def _flush_refused(self) -> None:
        """Queue the refused messages' PUBACKs and write them now: `_packet_queue` would wake
        paho's loop through its socket pair for another round of `select` first."""
        if self._refused:
            refused, self._refused = self._refused, []
            self._out_packet.append(_out_packet(_PUBACK, pubacks(refused), 0, 0, None))
            self._packet_write()  # what it cannot write now, paho's loop writes when it can


def _out_packet(
    command: int, packet: bytes | bytearray, mid: int, qos: int, info: mqtt.MQTTMessageInfo | None
) -> dict[str, Any]:
    """A packet for paho's write queue, as its own `_packet_queue` makes it."""
    return {
        "command": command,
        "mid": mid,
        "qos": qos,
        "pos": 0,
        "to_process": len(packet),
        "packet": packet,
        "info": info,
    }


def _frame(buf: bytearray, pos: int, end: int) -> tuple[int, int] | None:
    """Where the packet at `pos` has its body and where it ends, None when it is not all in the
    buffer yet, (-1, -1) when its remaining length is malformed."""
    length, shift, at = 0, 0, pos + 1
    while True:
        if at >= end:
            return None
        byte = buf[at]
        length |= (byte & 0x7F) << shift
        at += 1
        if byte < 0x80:
            break
        shift += 7
        if shift > 21:
            return -1, -1
    after = at + length
    return None if after > end else (at, after)
