"""Sessions: persistence, redelivery, takeover, shared groups, keepalive and wills."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from gateway.broker import Broker
from tests.broker.rawmqtt import RawClient, puback_packet, publish_packet
from tests.broker.testpki import Pki
from tests.support.peers import Peer, broker_config, tls_client_context

ORDERS, RESULTS = "kym/v1/devices/{}/orders", "kym/v1/devices/{}/results"


def test_a_persistent_session_gets_the_qos1_messages_published_while_it_was_away(
    pki: Pki, peers: Callable[..., Peer]
) -> None:
    gateway = peers(pki.gateway)
    device = peers(pki.devices["dev-b"], clean_session=False)
    assert device.subscribe(RESULTS.format("dev-b")) == 1
    device.close()
    for n in range(3):
        gateway.publish(RESULTS.format("dev-b"), f"result-{n}".encode())

    back = peers(pki.devices["dev-b"], clean_session=False)
    assert back.session_present is True
    assert [back.expect().payload for _ in range(3)] == [b"result-0", b"result-1", b"result-2"]


def test_a_clean_session_forgets_its_subscriptions(pki: Pki, peers: Callable[..., Peer]) -> None:
    gateway = peers(pki.gateway)
    device = peers(pki.devices["dev-b"], clean_session=True)
    assert device.subscribe(RESULTS.format("dev-b")) == 1
    device.close()
    gateway.publish(RESULTS.format("dev-b"), b"lost")

    back = peers(pki.devices["dev-b"], clean_session=False)
    assert back.session_present is False
    assert back.subscribe(RESULTS.format("dev-b")) == 1
    gateway.publish(RESULTS.format("dev-b"), b"after")
    assert back.expect().payload == b"after"


def test_an_unacknowledged_message_is_resent_with_dup_on_reconnect(
    pki: Pki, peers: Callable[..., Peer], raws: Callable[..., RawClient]
) -> None:
    gateway = peers(pki.gateway)
    device = raws(pki.devices["dev-b"])
    assert device.connect(clean=False) == (False, 0)
    assert device.subscribe(1, RESULTS.format("dev-b")) == [1]
    gateway.publish(RESULTS.format("dev-b"), b"first")
    first = device.receive()
    assert first is not None and (first.payload, first.dup) == (b"first", False)
    device.close()  # without acknowledging it
    gateway.publish(RESULTS.format("dev-b"), b"second")

    again = raws(pki.devices["dev-b"])
    assert again.connect(clean=False) == (True, 0)
    resent, queued = again.receive(), again.receive()
    assert resent is not None and queued is not None
    assert (resent.payload, resent.dup, resent.packet_id) == (b"first", True, first.packet_id)
    assert (queued.payload, queued.dup) == (b"second", False)


def test_the_offline_queue_keeps_only_the_newest_messages(pki: Pki, tmp_path: Path) -> None:
    with Broker(broker_config(pki, tmp_path, max_queued_messages=3)) as broker:
        gateway = Peer(broker.port, pki, pki.gateway).start()
        device = Peer(broker.port, pki, pki.devices["dev-b"], clean_session=False).start()
        back = Peer(broker.port, pki, pki.devices["dev-b"], clean_session=False)
        try:
            assert gateway.accepted() and device.accepted()
            assert device.subscribe(RESULTS.format("dev-b")) == 1
            device.close()
            for n in range(5):
                gateway.publish(RESULTS.format("dev-b"), f"r{n}".encode())
            assert back.start().accepted()
            assert [back.expect().payload for _ in range(3)] == [b"r2", b"r3", b"r4"]
        finally:
            for peer in (gateway, device, back):
                peer.close()


def test_a_second_connection_with_the_same_identity_takes_over(
    pki: Pki, peers: Callable[..., Peer]
) -> None:
    gateway = peers(pki.gateway)
    first = peers(pki.devices["dev-a"], clean_session=False)
    assert first.subscribe(RESULTS.format("dev-a")) == 1
    second = peers(pki.devices["dev-a"], clean_session=False)

    assert second.session_present is True
    assert first.disconnected.wait(5)
    gateway.publish(RESULTS.format("dev-a"), b"to the new one")
    assert second.expect().payload == b"to the new one"


def test_a_shared_group_serves_its_members_in_turn(pki: Pki, peers: Callable[..., Peer]) -> None:
    workers = [peers(pki.gateway), peers(pki.gateway2)]
    for worker in workers:
        assert worker.subscribe("$share/kym/kym/v1/devices/+/orders") == 1
    device = peers(pki.devices["dev-a"])
    for n in range(4):
        device.publish(ORDERS.format("dev-a"), f"o{n}".encode())

    got = sorted([w.expect().payload for w in workers for _ in range(2)])
    assert got == [b"o0", b"o1", b"o2", b"o3"]
    assert all(w.messages.empty() for w in workers)


def test_a_shared_member_that_leaves_hands_its_unacknowledged_order_to_another(
    pki: Pki, peers: Callable[..., Peer], raws: Callable[..., RawClient]
) -> None:
    leaving = raws(pki.gateway)
    assert leaving.connect() == (False, 0)
    assert leaving.subscribe(1, "$share/kym/kym/v1/devices/+/orders") == [1]
    staying = peers(pki.gateway2)
    assert staying.subscribe("$share/kym/kym/v1/devices/+/orders") == 1
    device = peers(pki.devices["dev-a"])

    device.publish(ORDERS.format("dev-a"), b"order")  # the first member in turn gets it
    taken = leaving.receive()
    assert taken is not None and taken.payload == b"order"
    leaving.close()

    handed_over = staying.expect()
    assert (handed_over.topic, handed_over.payload) == (ORDERS.format("dev-a"), b"order")


def test_a_missed_keepalive_closes_the_connection_and_publishes_the_will(
    pki: Pki, peers: Callable[..., Peer], raws: Callable[..., RawClient]
) -> None:
    gateway = peers(pki.gateway)
    assert gateway.subscribe("kym/v1/devices/+/orders") == 1
    silent = raws(pki.devices["dev-a"])
    will = (ORDERS.format("dev-a"), b"gone", 1)
    assert silent.connect(keepalive_s=1, will=will) == (False, 0)

    assert silent.closed_by_broker()  # 1.5 s of silence, within the 5 s socket timeout
    message = gateway.expect()
    assert (message.topic, message.payload, message.qos) == (ORDERS.format("dev-a"), b"gone", 1)


def test_a_will_is_published_when_the_connection_drops_and_not_after_disconnect(
    pki: Pki, peers: Callable[..., Peer], raws: Callable[..., RawClient]
) -> None:
    gateway = peers(pki.gateway)
    assert gateway.subscribe("kym/v1/devices/+/orders") == 1
    polite = raws(pki.devices["dev-a"])
    assert polite.connect(will=(ORDERS.format("dev-a"), b"polite will", 0)) == (False, 0)
    polite.send(bytes((0xE0, 0)))  # DISCONNECT
    assert polite.closed_by_broker()
    dropped = raws(pki.devices["dev-a"])
    assert dropped.connect(will=(ORDERS.format("dev-a"), b"dropped will", 0)) == (False, 0)
    dropped.close()

    assert gateway.expect().payload == b"dropped will"
    assert gateway.messages.empty()


def test_qos1_messages_are_acknowledged_and_acks_free_the_window(pki: Pki, tmp_path: Path) -> None:
    with Broker(broker_config(pki, tmp_path, max_inflight_messages=2)) as broker:
        gateway = Peer(broker.port, pki, pki.gateway).start()
        device = RawClient(broker.port, tls_client_context(pki, pki.devices["dev-a"]))
        try:
            assert gateway.accepted()
            assert device.connect() == (False, 0)
            assert device.subscribe(1, RESULTS.format("dev-a")) == [1]
            for n in range(4):
                gateway.publish(RESULTS.format("dev-a"), f"r{n}".encode())
            got = [device.receive() for _ in range(2)]
            assert [m.payload for m in got if m] == [b"r0", b"r1"]
            for m in got:
                assert m is not None
                device.send(puback_packet(m.packet_id))
            rest = [device.receive() for _ in range(2)]
            assert [m.payload for m in rest if m] == [b"r2", b"r3"]
            device.send(publish_packet(ORDERS.format("dev-a"), b"x", qos=1, packet_id=7))
            ack = device.receive()
            assert ack is not None and (ack.kind, ack.body) == (4, b"\x00\x07")
        finally:
            gateway.close()
            device.close()
