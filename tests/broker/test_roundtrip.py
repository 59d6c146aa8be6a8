"""An order goes from a device to a gateway and its result comes back, over mutual TLS."""

from __future__ import annotations

from collections.abc import Callable

from tests.broker.testpki import Pki
from tests.support.peers import Peer

ORDERS, RESULTS = "kym/v1/devices/{}/orders", "kym/v1/devices/{}/results"


def test_order_and_result_round_trip_between_device_and_gateway(
    pki: Pki, peers: Callable[..., Peer]
) -> None:
    gateway = peers(pki.gateway)
    assert gateway.subscribe("kym/v1/devices/+/orders") == 1
    device = peers(pki.devices["dev-a"])
    assert device.subscribe(RESULTS.format("dev-a")) == 1

    device.publish(ORDERS.format("dev-a"), b"order-1")
    order = gateway.expect()
    assert (order.topic, order.payload, order.qos) == (ORDERS.format("dev-a"), b"order-1", 1)
    gateway.publish(RESULTS.format("dev-a"), b"result-1")
    result = device.expect()
    assert (result.topic, result.payload, result.retain) == (
        RESULTS.format("dev-a"),
        b"result-1",
        False,
    )


def test_round_trip_through_a_shared_subscription(pki: Pki, peers: Callable[..., Peer]) -> None:
    gateway = peers(pki.gateway)
    assert gateway.subscribe("$share/kym/kym/v1/devices/+/orders") == 1
    device = peers(pki.devices["dev-b"])
    assert device.subscribe(RESULTS.format("dev-b")) == 1

    device.publish(ORDERS.format("dev-b"), b"order-2")
    assert gateway.expect().payload == b"order-2"
    gateway.publish(RESULTS.format("dev-b"), b"result-2")
    assert device.expect().payload == b"result-2"
