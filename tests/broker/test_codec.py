"""MQTT 3.1.1 framing and packets: strict on input, exact on output."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.broker import codec
from tests.broker.rawmqtt import Received, connect_packet, packet, publish_packet, subscribe_packet


def frame(data: bytes, max_size: int = 1 << 20) -> tuple[int, bytes]:
    """The single frame in `data`."""
    frames = codec.Framer(max_size).feed(data)
    assert len(frames) == 1
    return frames[0]


def decode(data: bytes) -> codec.Packet:
    return codec.decode(*frame(data))


@given(st.lists(st.binary(max_size=300), min_size=1, max_size=8), st.data())
def test_frames_come_out_whole_however_the_stream_is_cut(
    payloads: list[bytes], data: st.DataObject
) -> None:
    stream = b"".join(publish_packet("t", p) for p in payloads)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    framer, frames = codec.Framer(1 << 20), []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        frames += framer.feed(stream[start:end])
    assert [codec.decode(*f).payload for f in frames] == payloads  # type: ignore[union-attr]


@pytest.mark.parametrize("size", [0, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152])
def test_remaining_length_round_trips_at_its_boundaries(size: int) -> None:
    data = bytes((0x30,)) + codec.encode_remaining_length(size) + b"\x00" * size
    assert frame(data, max_size=4 << 20) == (0x30, b"\x00" * size)


def test_a_remaining_length_of_five_bytes_is_malformed() -> None:
    with pytest.raises(codec.MalformedPacket):
        codec.Framer(1 << 20).feed(b"\x30\xff\xff\xff\xff\x01")


def test_an_oversize_frame_is_refused_as_soon_as_its_length_is_known() -> None:
    with pytest.raises(codec.PacketTooLarge):
        codec.Framer(100).feed(b"\x30\x63")  # 2 + 99 bytes announced, no body yet
    assert codec.Framer(101).feed(b"\x30\x63") == []


def test_a_reserved_packet_type_is_refused_at_its_first_byte() -> None:
    with pytest.raises(codec.MalformedPacket):
        codec.Framer(100).feed(b"\xf0")


def test_connect_is_decoded() -> None:
    connect = decode(
        connect_packet("cid", clean=False, keepalive_s=42, username="u", will=("kym/w", b"bye", 1))
    )
    assert connect == codec.Connect(
        4, False, 42, "cid", codec.Will("kym/w", b"bye", 1, False), "u", None
    )


@pytest.mark.parametrize("level", [5, 6, 3])
def test_another_protocol_level_of_mqtt_is_unsupported(level: int) -> None:
    body = frame(connect_packet(level=4))[1].replace(b"MQTT\x04", b"MQTT" + bytes((level,)))
    with pytest.raises(codec.UnsupportedProtocolLevel):
        codec.decode_connect(body)


def test_mqtt_3_1_is_decoded() -> None:
    assert decode(connect_packet(level=3)).level == 3  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: b.replace(b"MQTT", b"MQTX"),  # unknown protocol name
        lambda b: b[:7] + bytes((b[7] | 0x01,)) + b[8:],  # reserved flag
        lambda b: b[:7] + bytes((b[7] | 0x40,)) + b[8:] + b"\x00\x00",  # password without username
        lambda b: b[:7] + bytes((b[7] | 0x08,)) + b[8:],  # will QoS without a will
        lambda b: b + b"\x00",  # trailing bytes
        lambda b: b[:-1],  # truncated client id
    ],
)
def test_a_malformed_connect_is_refused(mutate: object) -> None:
    body = frame(connect_packet("cid"))[1]
    with pytest.raises(codec.MalformedPacket):
        codec.decode_connect(mutate(body))  # type: ignore[operator]


def test_publish_is_decoded() -> None:
    publish = decode(publish_packet("kym/a", b"\x00payload", qos=1, packet_id=9, dup=True))
    assert publish == codec.Publish("kym/a", b"\x00payload", 1, False, True, 9)


@pytest.mark.parametrize(
    "first_byte, body",
    [
        (0x36, b"\x00\x01t\x00\x01"),  # QoS 3
        (0x38, b"\x00\x01t"),  # DUP on QoS 0
        (0x32, b"\x00\x01t\x00\x00"),  # packet id 0
        (0x32, b"\x00\x01t"),  # QoS 1 without packet id
        (0x30, b"\x00\x05t"),  # topic past the end
        (0x30, b"\x00\x00"),  # empty topic
        (0x30, b"\x00\x03a/+"),
        (0x30, b"\x00\x03a\x00b"),
        (0x30, b"\x00\x02\xc3\x28"),  # invalid UTF-8
        (0x30, b"\x00\x03\xed\xa0\x80"),  # a UTF-16 surrogate
    ],
)
def test_a_malformed_publish_is_refused(first_byte: int, body: bytes) -> None:
    with pytest.raises(codec.MalformedPacket):
        codec.decode(first_byte, body)


def test_subscribe_is_decoded_and_bad_qos_refused() -> None:
    assert decode(subscribe_packet(3, "a/+", "#", qos=2)) == codec.Subscribe(
        3, (("a/+", 2), ("#", 2))
    )
    with pytest.raises(codec.MalformedPacket):
        decode(packet(0x82, b"\x00\x03\x00\x01#\x03"))


def test_unsubscribe_ping_and_disconnect_are_decoded() -> None:
    assert decode(packet(0xA2, b"\x00\x04\x00\x01#")) == codec.Unsubscribe(4, ("#",))
    assert decode(b"\xc0\x00") == codec.PingReq()
    assert decode(b"\xe0\x00") == codec.Disconnect()
    with pytest.raises(codec.MalformedPacket):
        decode(b"\xe0\x01\x00")


@given(st.integers(0, 255), st.binary(max_size=64))
def test_any_bytes_decode_to_a_packet_or_a_malformed_packet_error(first: int, body: bytes) -> None:
    with contextlib.suppress(codec.MalformedPacket):
        codec.decode(first, body)


@given(
    st.text(min_size=1, max_size=50).filter(lambda t: not set(t) & set("+#\x00")),
    st.binary(max_size=500),
    st.integers(0, 1),
    st.integers(1, 65535),
    st.booleans(),
)
def test_an_encoded_publish_reads_back(
    topic: str, payload: bytes, qos: int, packet_id: int, dup: bool
) -> None:
    data = codec.encode_publish(topic.encode(), payload, qos, packet_id, dup and qos == 1)
    received = Received(*frame(data))
    assert (received.topic, received.payload, received.qos, received.retain) == (
        topic,
        payload,
        qos,
        False,
    )
    assert received.packet_id == (packet_id if qos else 0)


def test_acknowledgements_are_encoded() -> None:
    assert codec.encode_connack(True, 0) == b"\x20\x02\x01\x00"
    assert codec.encode_puback(258) == b"\x40\x02\x01\x02"
    assert codec.encode_suback(1, [0, 1, 0x80]) == b"\x90\x05\x00\x01\x00\x01\x80"
    assert codec.encode_unsuback(7) == b"\xb0\x02" + struct.pack("!H", 7)
