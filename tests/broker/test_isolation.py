"""A device acts only as itself: the holes we found in amqtt 0.12.1 stay closed here."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.broker.rawmqtt import RawClient, publish_packet
from tests.broker.testpki import Pki
from tests.support.peers import Peer

ORDERS, RESULTS = "kym/v1/devices/{}/orders", "kym/v1/devices/{}/results"


def test_a_device_cannot_publish_to_another_devices_orders(
    pki: Pki, peers: Callable[..., Peer]
) -> None:
    gateway = peers(pki.gateway)
    assert gateway.subscribe("kym/v1/devices/+/orders") == 1
    device_a = peers(pki.devices["dev-a"])

    device_a.publish(ORDERS.format("dev-b"), b"forged")  # acknowledged, like Mosquitto
    device_a.publish(RESULTS.format("dev-a"), b"forged result")
    device_a.publish(ORDERS.format("dev-a"), b"marker")  # same connection, so it comes later

    assert gateway.expect().payload == b"marker"
    assert gateway.messages.empty()
    assert not device_a.disconnected.is_set()


@pytest.mark.parametrize(
    "topic_filter",
    [
        RESULTS.format("dev-b"),
        "kym/v1/devices/+/results",
        "#",
        "kym/#",
        "+/v1/devices/dev-b/results",
        "kym/v1/devices/dev-b/+",
        "$share/x/kym/v1/devices/dev-b/results",
        "$share/x/#",
        ORDERS.format("dev-a"),
        "kym/v1/devices/+/orders",
        "$SYS/#",
    ],
)
def test_a_device_cannot_subscribe_beyond_its_own_results(
    pki: Pki, peers: Callable[..., Peer], topic_filter: str
) -> None:
    gateway = peers(pki.gateway)
    device_a = peers(pki.devices["dev-a"])
    assert device_a.subscribe(topic_filter) == 0x80
    assert device_a.subscribe(RESULTS.format("dev-a")) == 1

    gateway.publish(RESULTS.format("dev-b"), b"for b")
    gateway.publish(RESULTS.format("dev-a"), b"for a")

    assert device_a.expect().payload == b"for a"
    assert device_a.messages.empty()


def test_a_claimed_username_and_client_id_are_ignored(
    pki: Pki, peers: Callable[..., Peer], raws: Callable[..., RawClient]
) -> None:
    gateway = peers(pki.gateway)
    assert gateway.subscribe("kym/v1/devices/+/orders") == 1
    admin = raws(pki.devices["dev-a"])
    assert admin.connect(client_id="admin", username="admin") == (False, 0)
    assert admin.subscribe(1, "#", "kym/v1/devices/+/orders") == [0x80, 0x80]
    admin.send(publish_packet(ORDERS.format("dev-b"), b"as admin", qos=0))
    admin.send(publish_packet(ORDERS.format("dev-a"), b"as dev-a", qos=0))

    message = gateway.expect()
    assert (message.topic, message.payload) == (ORDERS.format("dev-a"), b"as dev-a")


def test_a_will_on_another_devices_topic_refuses_the_connect(
    pki: Pki, peers: Callable[..., Peer], raws: Callable[..., RawClient]
) -> None:
    gateway = peers(pki.gateway)
    assert gateway.subscribe("kym/v1/devices/+/orders") == 1
    sneaky = raws(pki.devices["dev-a"])
    will = (ORDERS.format("dev-b"), b"forged will", 1)
    assert sneaky.connect(client_id="dev-a", will=will) == (False, 5)
    assert sneaky.closed_by_broker()

    marker = peers(pki.devices["dev-a"])
    marker.publish(ORDERS.format("dev-a"), b"marker")
    assert gateway.expect().payload == b"marker"
    assert gateway.messages.empty()


def test_a_client_with_a_stolen_client_id_does_not_disturb_that_devices_session(
    pki: Pki, peers: Callable[..., Peer]
) -> None:
    gateway = peers(pki.gateway)
    device_b = peers(pki.devices["dev-b"], clean_session=False)
    assert device_b.subscribe(RESULTS.format("dev-b")) == 1

    impostor = peers(pki.devices["dev-a"], client_id="dev-b", clean_session=True)
    assert impostor.session_present is False
    assert impostor.subscribe(RESULTS.format("dev-b")) == 0x80
    assert impostor.subscribe(RESULTS.format("dev-a")) == 1  # it is dev-a, whatever it says
    gateway.publish(RESULTS.format("dev-b"), b"still yours")
    gateway.publish(RESULTS.format("dev-a"), b"for the impostor")

    assert device_b.expect().payload == b"still yours"
    assert impostor.expect().payload == b"for the impostor"
    assert impostor.messages.empty()
    assert not device_b.disconnected.is_set()


def test_a_gateway_cannot_forge_orders_or_read_everything(
    pki: Pki, peers: Callable[..., Peer]
) -> None:
    gateway = peers(pki.gateway)
    assert gateway.subscribe("#") == 0x80
    assert gateway.subscribe("kym/v1/devices/dev-a/results") == 0x80
    assert gateway.subscribe("kym/v1/devices/+/orders") == 1
    gateway.publish(ORDERS.format("dev-a"), b"forged by the gateway")
    peers(pki.devices["dev-a"]).publish(ORDERS.format("dev-a"), b"marker")
    assert gateway.expect().payload == b"marker"


def test_a_stolen_client_id_with_clean_session_does_not_wipe_an_offline_session(
    pki: Pki, peers: Callable[..., Peer]
) -> None:
    gateway = peers(pki.gateway)
    device_b = peers(pki.devices["dev-b"], clean_session=False)
    assert device_b.subscribe(RESULTS.format("dev-b")) == 1
    device_b.close()

    impostor = peers(pki.devices["dev-a"], client_id="dev-b", clean_session=True)
    impostor.close()
    gateway.publish(RESULTS.format("dev-b"), b"kept for b")

    back = peers(pki.devices["dev-b"], clean_session=False)
    assert back.session_present is True
    assert back.expect().payload == b"kept for b"
