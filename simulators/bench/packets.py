"""The few MQTT 3.1.1 packets `kym bench`'s asyncio clients send and read (idle and paying).

Only what a device needs: CONNECT (clean session, no credentials: the certificate is the
identity), SUBSCRIBE to its results topic, QoS 1 PUBLISH of an order, PUBACK of a result,
PINGREQ, DISCONNECT; and a reader that splits a byte stream into (type and flags, body).
"""

from __future__ import annotations

import struct

KEEPALIVE_S = 600
PINGREQ = b"\xc0\x00"
DISCONNECT = b"\xe0\x00"
CONNACK, PUBLISH, PUBACK, SUBACK, PINGRESP = 0x20, 0x30, 0x40, 0x90, 0xD0


def _string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("!H", len(raw)) + raw


def _packet(kind: int, body: bytes) -> bytes:
    """A fixed header (packet type and flags, then the remaining length) and `body`."""
    length, encoded = len(body), bytearray()
    while True:
        byte, length = length % 128, length // 128
        encoded.append(byte | (0x80 if length else 0))
        if not length:
            return bytes([kind]) + bytes(encoded) + body


def connect_packet(client_id: str, keepalive_s: int = KEEPALIVE_S) -> bytes:
    """MQTT 3.1.1 CONNECT, clean session, no credentials (the certificate is the identity)."""
    return _packet(
        0x10,
        _string("MQTT") + bytes([4, 0x02]) + struct.pack("!H", keepalive_s) + _string(client_id),
    )


def subscribe_packet(topic: str, packet_id: int = 1) -> bytes:
    """SUBSCRIBE to one topic at QoS 1."""
    return _packet(0x82, struct.pack("!H", packet_id) + _string(topic) + bytes([1]))


def publish_packet(topic: str, packet_id: int, payload: bytes) -> bytes:
    """PUBLISH at QoS 1 (packet id 1 to 65535), not retained."""
    return _packet(0x32, _string(topic) + struct.pack("!H", packet_id) + payload)


def puback_packet(packet_id: int) -> bytes:
    return b"\x40\x02" + struct.pack("!H", packet_id)


def packet_id_of(sequence: int) -> int:
    """The `sequence`-th packet id of a connection: 1 to 65535, then round again."""
    return sequence % 65535 + 1


class PacketReader:
    """Splits the bytes read from a connection into whole packets."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """Every packet completed by `data`: (first byte, body), in order."""
        buffer = self._buffer
        buffer += data
        packets, start, end = [], 0, len(buffer)
        while end - start >= 2:
            length, shift, at, whole = 0, 0, start + 1, False
            while at < end:
                byte = buffer[at]
                at += 1
                length |= (byte & 0x7F) << shift
                if not byte & 0x80:
                    whole = True
                    break
                shift += 7
                if shift > 21:
                    raise ValueError("a remaining length longer than four bytes")
            if not whole or at + length > end:
                break  # the header or the body is not all here yet
            packets.append((buffer[start], bytes(buffer[at : at + length])))
            start = at + length
        del buffer[:start]
        return packets


def parse_publish(flags: int, body: bytes) -> tuple[str, int | None, bytes]:
    """A PUBLISH body's topic, packet id (None at QoS 0) and payload."""
    topic_length = struct.unpack_from("!H", body)[0]
    topic = body[2 : 2 + topic_length].decode()
    at = 2 + topic_length
    if (flags >> 1) & 0x03:
        return topic, struct.unpack_from("!H", body, at)[0], body[at + 2 :]
    return topic, None, body[at:]
