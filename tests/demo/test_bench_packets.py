"""The bench's MQTT framing: packets split anywhere across reads come out whole and in order."""

from __future__ import annotations

import pytest

from simulators.bench import packets


def stream() -> tuple[bytes, list[tuple[int, bytes]]]:
    """A CONNACK, a QoS 1 PUBLISH with a two-byte remaining length, a PUBACK, a PINGRESP."""
    publish = packets.publish_packet("devices/d-1/results", 7, b"x" * 300)
    sent = [b"\x20\x02\x00\x00", publish, packets.puback_packet(65535), b"\xd0\x00"]
    expected = [
        (0x20, b"\x00\x00"),
        (0x32, publish[3:]),  # 0x32, then 2 bytes of remaining length
        (0x40, b"\xff\xff"),
        (0xD0, b""),
    ]
    return b"".join(sent), expected


@pytest.mark.parametrize("size", [1, 2, 3, 5, 64, 100_000])
def test_packets_split_across_reads_come_out_whole(size: int) -> None:
    data, expected = stream()
    reader = packets.PacketReader()
    got = []
    for at in range(0, len(data), size):
        got.extend(reader.feed(data[at : at + size]))
    assert got == expected


def test_a_publish_reads_back_as_its_topic_packet_id_and_payload() -> None:
    [(first, body)] = packets.PacketReader().feed(packets.publish_packet("a/b", 300, b"{}"))
    assert packets.parse_publish(first, body) == ("a/b", 300, b"{}")
    assert packets.parse_publish(0x30, b"\x00\x03a/b{}") == ("a/b", None, b"{}")  # QoS 0


def test_packet_ids_stay_between_1_and_65535() -> None:
    assert [packets.packet_id_of(s) for s in (0, 1, 65534, 65535)] == [1, 2, 65535, 1]


def test_a_remaining_length_over_four_bytes_is_refused() -> None:
    with pytest.raises(ValueError, match="four bytes"):
        packets.PacketReader().feed(b"\x30\xff\xff\xff\xff\x01")
