"""The gateway's own MQTT reader (`gateway.mqtt.receive`) on a real socket pair: packets cut
anywhere by the network come out whole and once each, refused ones are acknowledged together,
and packets other than PUBLISH still reach paho's own handling."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable, Iterator

import paho.mqtt.client as mqtt
import pytest

from gateway.mqtt.receive import PAHO_READER_USABLE, ReceivingClient, pubacks
from gateway.mqtt.workers import broker_acknowledged
from tests.broker.rawmqtt import packet, puback_packet, publish_packet

TOPIC = "kym/v1/devices/{}/orders"


Connect = Callable[[], tuple[ReceivingClient, socket.socket]]
Got = tuple[str, bytes, int, int]


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()


@pytest.fixture
def connected_pair(sockets: list[socket.socket]) -> Connect:
    """A client whose connection is one end of a socket pair; the test is the broker."""

    def connect() -> tuple[ReceivingClient, socket.socket]:
        client = ReceivingClient(mqtt.CallbackAPIVersion.VERSION2, client_id="t", manual_ack=True)
        return client, reconnect(client, sockets)

    return connect


def reconnect(client: ReceivingClient, sockets: list[socket.socket]) -> socket.socket:
    ours, broker = socket.socketpair()
    sockets += [ours, broker]
    ours.setblocking(False)
    client._sock = ours
    return broker


def received(broker: socket.socket) -> bytes:
    """What the client wrote to the broker so far (paho writes at once without a loop thread)."""
    broker.setblocking(False)
    data = b""
    while True:
        try:
            data += broker.recv(65536)
        except BlockingIOError:
            return data


def recorder(into: list[Got], verdict: bool = True) -> Callable[[str, bytes, int, int], bool]:
    def take(topic: str, payload: bytes, mid: int, qos: int) -> bool:
        into.append((topic, payload, mid, qos))
        return verdict

    return take


def test_paho_has_what_the_reader_uses() -> None:
    assert PAHO_READER_USABLE


@pytest.mark.parametrize("piece", [1, 3, 700, 1 << 20])
def test_publishes_cut_anywhere_arrive_whole_and_refusals_are_acknowledged_together(
    piece: int, connected_pair: Connect
) -> None:
    client, broker = connected_pair()
    sent = [
        (TOPIC.format(f"d{mid % 3}"), bytes([mid % 256]) * size, mid if qos else 0, qos)
        for mid, (size, qos) in enumerate([(0, 1), (5, 0), (127, 1), (128, 1), (20_000, 1)], 1)
    ]
    sent.append(("kym/v1/devices/d1/orders", b"last", 65535, 1))
    got: list[tuple[str, bytes, int, int]] = []

    def take(topic: str, payload: bytes, mid: int, qos: int) -> bool:
        got.append((topic, payload, mid, qos))
        return mid % 2 == 0  # odd ids refused

    client.on_publish_packet = take
    stream = b"".join(publish_packet(t, p, q, m) for t, p, m, q in sent)
    for at in range(0, len(stream), piece):
        broker.sendall(stream[at : at + piece])
        client._packet_read()
    assert got == sent
    assert client._rbuf == b""
    refused = [m for _t, _p, m, q in sent if q and m % 2]
    assert refused == [1, 3, 5, 65535]
    assert received(broker) == pubacks(refused) == b"".join(puback_packet(m) for m in refused)


def test_other_packets_go_to_paho_between_publishes(connected_pair: Connect) -> None:
    client, broker = connected_pair()
    got: list[Got] = []
    subscribed: list[int] = []
    client.on_publish_packet = recorder(got)
    client.on_subscribe = lambda _c, _u, mid, _codes, _p: subscribed.append(mid)
    suback = packet(0x90, struct.pack("!HB", 7, 1))
    broker.sendall(publish_packet(TOPIC.format("a"), b"x", 1, 1) + suback)
    broker.sendall(publish_packet(TOPIC.format("a"), b"y", 1, 2))
    client._packet_read()
    assert ([m for _t, _p, m, _q in got], subscribed) == ([1, 2], [7])
    assert received(broker) == b""  # all taken: nothing acknowledged before the commit


def test_a_new_connection_forgets_the_partial_packet_of_the_old_one(
    connected_pair: Connect, sockets: list[socket.socket]
) -> None:
    client, broker = connected_pair()
    got: list[Got] = []
    client.on_publish_packet = recorder(got)
    whole = publish_packet(TOPIC.format("a"), b"first", 1, 1)
    broker.sendall(whole[:-2])
    client._packet_read()
    broker = reconnect(client, sockets)
    broker.sendall(publish_packet(TOPIC.format("a"), b"second", 1, 2))
    client._packet_read()
    assert got == [(TOPIC.format("a"), b"second", 2, 1)]


def test_a_malformed_remaining_length_is_a_protocol_error(connected_pair: Connect) -> None:
    client, broker = connected_pair()
    client.on_publish_packet = recorder([])
    broker.sendall(b"\x32\xff\xff\xff\xff\x01")
    assert client._packet_read() == mqtt.MQTTErrorCode.MQTT_ERR_PROTOCOL


def test_a_topic_that_is_not_utf8_is_acknowledged_and_dropped(connected_pair: Connect) -> None:
    client, broker = connected_pair()
    got: list[Got] = []
    client.on_publish_packet = recorder(got)
    broker.sendall(publish_packet(b"kym/v1/devices/\xff/orders", b"x", 1, 9))
    broker.sendall(publish_packet(TOPIC.format("a"), b"y", 1, 10))
    client._packet_read()
    assert got == [(TOPIC.format("a"), b"y", 10, 1)]
    assert received(broker) == puback_packet(9)


def test_pubacks_of_our_publishes_are_handled_as_paho_would(connected_pair: Connect) -> None:
    client, broker = connected_pair()
    client._state = mqtt._ConnectionState.MQTT_CS_CONNECTED
    first = client.publish("kym/v1/devices/a/results", b"r1", qos=1)
    second = client.publish("kym/v1/devices/b/results", b"r2", qos=1)
    assert (broker_acknowledged(first), broker_acknowledged(second)) == (False, False)
    inflight = client._inflight_messages
    broker.sendall(puback_packet(first.mid) + puback_packet(999))  # 999: none of ours, ignored
    client._packet_read()  # our reader's own PUBACK path: no on_publish callback
    assert (broker_acknowledged(first), broker_acknowledged(second)) == (True, False)
    assert first.mid not in client._out_messages and second.mid in client._out_messages
    assert client._inflight_messages == inflight - 1
    acknowledged: list[tuple[int, bool]] = []
    client.on_publish = lambda _c, _u, mid, code, _p: acknowledged.append((mid, code.is_failure))
    broker.sendall(puback_packet(second.mid))
    client._packet_read()  # with a callback: paho's own handling, which hands it a reason code
    assert acknowledged == [(second.mid, False)] and broker_acknowledged(second)


class CountingWake:
    """Stands for paho's socket pair end that wakes its network loop: counts the wake-ups."""

    def __init__(self) -> None:
        self.sent = 0

    def send(self, data: bytes) -> int:
        self.sent += 1
        return len(data)

    def close(self) -> None:
        pass


def test_publishes_in_one_wakeup_wake_the_network_loop_once_and_all_go_out(
    connected_pair: Connect,
) -> None:
    client, broker = connected_pair()
    client.max_inflight_messages_set(100)  # paho's 20 would hold the 21st back
    client._state = mqtt._ConnectionState.MQTT_CS_CONNECTED
    wake = CountingWake()
    client._sockpairW, client._thread = wake, threading.Thread()  # as if loop_start had run
    client.publish("kym/v1/devices/a/results", b"alone", qos=1)
    assert wake.sent == 1  # paho's own way: a wake-up per packet
    with client.one_wakeup():
        infos = [client.publish(f"kym/v1/devices/d{i}/results", b"r", qos=1) for i in range(20)]
        assert wake.sent == 1
    assert wake.sent == 2  # once, at the end
    client._thread = None
    while client._out_packet:
        client.loop_write()  # what the woken network loop does
    data = received(broker)
    assert data.count(b"/results") == 21
    assert all(info.rc == mqtt.MQTT_ERR_SUCCESS for info in infos)
