"""MQTT 3.1.1 packets: framing a byte stream, decoding what clients send, encoding replies.

Pure: bytes in, packets out, no I/O. Decoding is strict, since every byte comes from the
network: a reserved flag set, a string that is not UTF-8 or holds U+0000, a topic name with a
wildcard, trailing bytes or a frame over the size bound raise `MalformedPacket`, and the broker
then closes the connection. A CONNECT for a protocol level other than 4 ("MQTT", 3.1.1) or 3
("MQIsdp", 3.1) raises `UnsupportedProtocolLevel`, answered with CONNACK return code 1.
Only the packets a client may send are decoded and only those a broker sends are encoded.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

CONNECT, CONNACK, PUBLISH, PUBACK = 1, 2, 3, 4
PUBREC, PUBREL, PUBCOMP = 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK = 8, 9, 10, 11
PINGREQ, PINGRESP, DISCONNECT = 12, 13, 14

CONNACK_ACCEPTED = 0
CONNACK_BAD_PROTOCOL_LEVEL = 1
CONNACK_NOT_AUTHORIZED = 5
SUBACK_FAILURE = 0x80

PINGRESP_PACKET = bytes((PINGRESP << 4, 0))
_PROTOCOLS = {"MQTT": 4, "MQIsdp": 3}
_U16 = struct.Struct("!H")


class MalformedPacket(Exception):
    """The bytes break MQTT 3.1.1: the connection must be closed."""


class PacketTooLarge(MalformedPacket):
    """A frame announces more bytes than the configured maximum packet size."""


class UnsupportedProtocolLevel(MalformedPacket):
    """A CONNECT for another protocol level (e.g. MQTT 5): answer CONNACK 1, then close."""


@dataclass(frozen=True, slots=True)
class Will:
    topic: str
    payload: bytes
    qos: int
    retain: bool


@dataclass(frozen=True, slots=True)
class Connect:
    level: int
    clean_session: bool
    keepalive_s: int
    client_id: str
    will: Will | None
    username: str | None
    password: bytes | None


@dataclass(frozen=True, slots=True)
class Publish:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    packet_id: int


@dataclass(frozen=True, slots=True)
class Puback:
    packet_id: int


@dataclass(frozen=True, slots=True)
class Subscribe:
    packet_id: int
    requests: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    packet_id: int
    filters: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PingReq:
    pass


@dataclass(frozen=True, slots=True)
class Disconnect:
    pass


Packet = Connect | Publish | Puback | Subscribe | Unsubscribe | PingReq | Disconnect


class Framer:
    """Cuts a byte stream into (first byte, body) frames of at most `max_size` bytes each."""

    __slots__ = ("_buf", "_max_size")

    def __init__(self, max_size: int) -> None:
        assert max_size >= 2
        self._buf = bytearray()
        self._max_size = max_size

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """Append received bytes and return every frame they complete, in order."""
        buf = self._buf
        buf += data
        frames: list[tuple[int, bytes]] = []
        pos = 0
        with memoryview(buf) as view:
            while (found := _frame_at(buf, pos, self._max_size)) is not None:
                start, end = found
                frames.append((buf[pos], view[start:end].tobytes()))
                pos = end
        if pos:
            del buf[:pos]
        return frames


def _frame_at(buf: bytearray, pos: int, max_size: int) -> tuple[int, int] | None:
    """The body's (start, end) of the frame at `pos`, or None while it is incomplete."""
    if pos < len(buf) and buf[pos] >> 4 in (0, 15):
        raise MalformedPacket(f"reserved packet type {buf[pos] >> 4}")
    length, multiplier, i = 0, 1, pos + 1
    while True:
        if i >= len(buf):
            return None
        byte = buf[i]
        length += (byte & 0x7F) * multiplier
        i += 1
        if not byte & 0x80:
            break
        multiplier *= 128
        if multiplier > 128**3:
            raise MalformedPacket("remaining length longer than four bytes")
    if (i - pos) + length > max_size:
        raise PacketTooLarge(f"packet of {(i - pos) + length} bytes over {max_size}")
    return (i, i + length) if len(buf) >= i + length else None


class _Reader:
    """Reads the fields of one packet body, refusing to run past its end."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise MalformedPacket("packet ends inside a field")
        chunk, self.pos = self.data[self.pos : end], end
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int(_U16.unpack(self.take(2))[0])

    def binary(self) -> bytes:
        return self.take(self.u16())

    def string(self) -> str:
        return decode_string(self.binary())

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def end(self) -> None:
        if self.remaining():
            raise MalformedPacket("trailing bytes after the last field")


def decode_string(raw: bytes) -> str:
    """Decode an MQTT UTF-8 string; surrogates, invalid UTF-8 and U+0000 are malformed."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedPacket("string is not valid UTF-8") from exc
    if "\x00" in text:
        raise MalformedPacket("string contains U+0000")
    return text


def check_topic_name(topic: str) -> str:
    """Return `topic` if it may name a published message (non-empty, no wildcards)."""
    if not topic or "+" in topic or "#" in topic:
        raise MalformedPacket(f"invalid topic name {topic!r}")
    return topic


def decode(first_byte: int, body: bytes) -> Packet:
    """Decode one frame a client sent; raise MalformedPacket for anything else."""
    kind, flags = first_byte >> 4, first_byte & 0x0F
    if kind == PUBLISH:
        return decode_publish(flags, body)
    expected_flags = 0b0010 if kind in (SUBSCRIBE, UNSUBSCRIBE) else 0
    if flags != expected_flags:
        raise MalformedPacket(f"bad fixed-header flags {flags:#x} for packet type {kind}")
    decoder = _DECODERS.get(kind)
    if decoder is None:
        raise MalformedPacket(f"packet type {kind} is not accepted from a client")
    return decoder(body)


def decode_publish(flags: int, body: bytes) -> Publish:
    """Decode a PUBLISH body; `flags` is the low nibble of its first byte."""
    dup, qos, retain = bool(flags & 0b1000), (flags >> 1) & 0b11, bool(flags & 1)
    if qos == 3 or (dup and qos == 0):
        raise MalformedPacket("invalid PUBLISH flags")
    if len(body) < 2:
        raise MalformedPacket("PUBLISH without a topic")
    end = 2 + _U16.unpack_from(body)[0]
    if end > len(body):
        raise MalformedPacket("PUBLISH topic runs past the packet")
    topic = check_topic_name(decode_string(body[2:end]))
    packet_id = 0
    if qos:
        if end + 2 > len(body):
            raise MalformedPacket("PUBLISH without a packet identifier")
        packet_id = _U16.unpack_from(body, end)[0]
        end += 2
        if packet_id == 0:
            raise MalformedPacket("packet identifier 0")
    return Publish(topic, body[end:], qos, retain, dup, packet_id)


def decode_connect(body: bytes) -> Connect:
    """Decode a CONNECT body (MQTT 3.1.1 or 3.1)."""
    r = _Reader(body)
    name, level = r.string(), r.u8()
    if name not in _PROTOCOLS:
        raise MalformedPacket(f"unknown protocol name {name!r}")
    if level != _PROTOCOLS[name]:
        raise UnsupportedProtocolLevel(f"protocol {name!r} level {level}")
    flags, keepalive_s = r.u8(), r.u16()
    if flags & 0x01:
        raise MalformedPacket("reserved CONNECT flag set")
    client_id = r.string()
    will = _decode_will(r, flags)
    username = r.string() if flags & 0x80 else None
    if flags & 0x40 and username is None:
        raise MalformedPacket("password flag without username flag")
    password = r.binary() if flags & 0x40 else None
    r.end()
    return Connect(level, bool(flags & 0x02), keepalive_s, client_id, will, username, password)


def _decode_will(r: _Reader, flags: int) -> Will | None:
    qos, retain = (flags >> 3) & 0b11, bool(flags & 0x20)
    if not flags & 0x04:
        if qos or retain:
            raise MalformedPacket("will QoS or retain without a will")
        return None
    if qos == 3:
        raise MalformedPacket("will QoS 3")
    topic = check_topic_name(r.string())
    return Will(topic, r.binary(), qos, retain)


def decode_subscribe(body: bytes) -> Subscribe:
    """Decode a SUBSCRIBE body: a packet id and one or more (filter, requested QoS)."""
    r = _Reader(body)
    packet_id = _packet_id(r)
    requests: list[tuple[str, int]] = []
    while r.remaining():
        topic_filter, qos = r.string(), r.u8()
        if qos > 2:
            raise MalformedPacket("requested QoS byte out of range")
        requests.append((topic_filter, qos))
    if not requests:
        raise MalformedPacket("SUBSCRIBE without a topic filter")
    return Subscribe(packet_id, tuple(requests))


def decode_unsubscribe(body: bytes) -> Unsubscribe:
    """Decode an UNSUBSCRIBE body: a packet id and one or more filters."""
    r = _Reader(body)
    packet_id = _packet_id(r)
    filters: list[str] = []
    while r.remaining():
        filters.append(r.string())
    if not filters:
        raise MalformedPacket("UNSUBSCRIBE without a topic filter")
    return Unsubscribe(packet_id, tuple(filters))


def decode_puback(body: bytes) -> Puback:
    """Decode a PUBACK body."""
    r = _Reader(body)
    packet_id = r.u16()
    r.end()
    return Puback(packet_id)


def _packet_id(r: _Reader) -> int:
    packet_id = r.u16()
    if packet_id == 0:
        raise MalformedPacket("packet identifier 0")
    return packet_id


def _pingreq(body: bytes) -> PingReq:
    if body:
        raise MalformedPacket("PINGREQ with a body")
    return _PINGREQ


def _disconnect(body: bytes) -> Disconnect:
    if body:
        raise MalformedPacket("DISCONNECT with a body")
    return _DISCONNECT


_PINGREQ, _DISCONNECT = PingReq(), Disconnect()
_DECODERS: dict[int, Callable[[bytes], Packet]] = {
    CONNECT: decode_connect,
    PUBACK: decode_puback,
    SUBSCRIBE: decode_subscribe,
    UNSUBSCRIBE: decode_unsubscribe,
    PINGREQ: _pingreq,
    DISCONNECT: _disconnect,
}


def encode_remaining_length(length: int) -> bytes:
    """The variable-length 'remaining length' field of a fixed header."""
    assert 0 <= length < 128**4
    out = bytearray()
    while True:
        length, digit = divmod(length, 128)
        out.append(digit | (0x80 if length else 0))
        if not length:
            return bytes(out)


def encode_connack(session_present: bool, return_code: int) -> bytes:
    """A CONNACK packet."""
    return bytes((CONNACK << 4, 2, int(session_present), return_code))


def encode_publish(topic: bytes, payload: bytes, qos: int, packet_id: int, dup: bool) -> bytes:
    """A PUBLISH packet; `topic` is already UTF-8, and the retain flag is always clear."""
    first = (PUBLISH << 4) | (0b1000 if dup else 0) | (qos << 1)
    length = 2 + len(topic) + (2 if qos else 0) + len(payload)
    id_field = _U16.pack(packet_id) if qos else b""
    return b"".join(
        (
            bytes((first,)),
            encode_remaining_length(length),
            _U16.pack(len(topic)),
            topic,
            id_field,
            payload,
        )
    )


def encode_puback(packet_id: int) -> bytes:
    """A PUBACK packet."""
    return bytes((PUBACK << 4, 2)) + _U16.pack(packet_id)


def encode_suback(packet_id: int, return_codes: list[int]) -> bytes:
    """A SUBACK packet with one return code per requested filter."""
    body = _U16.pack(packet_id) + bytes(return_codes)
    return bytes((SUBACK << 4,)) + encode_remaining_length(len(body)) + body


def encode_unsuback(packet_id: int) -> bytes:
    """An UNSUBACK packet."""
    return bytes((UNSUBACK << 4, 2)) + _U16.pack(packet_id)
