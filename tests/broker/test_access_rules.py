"""A device may publish only its orders and subscribe only to its results, on both brokers
`kym serve` runs: every other subscription is refused in the SUBACK, so that no device can
join the gateways' shared subscription and take a share of other devices' orders."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.broker.mosquitto import ExternalMosquitto
from tests.broker import kym_brokers
from tests.broker.kym_brokers import (
    ORDERS,
    REGISTERED,
    RESULTS,
    SHARED_ORDERS,
    KymBroker,
    echo_gateway,
)
from tests.broker.rawmqtt import publish_packet

REFUSED = [
    "#",
    "kym/#",
    "kym/v1/devices/+/results",
    "kym/v1/devices/+/orders",
    "+/v1/devices/dev-b/results",
    RESULTS.format("dev-b"),
    ORDERS.format("dev-b"),
    ORDERS.format("dev-a"),
    RESULTS.format("dev-a") + "/#",
    "$SYS/#",
    "$SYS/broker/clients/connected",
    SHARED_ORDERS,
    "$share/kym/#",
    "$share/other/kym/v1/devices/+/orders",
    "$share/kym/" + ORDERS.format("dev-b"),
    "$share/x/" + RESULTS.format("dev-a"),
    "$CONTROL/dynamic-security/#",
    "$CONTROL/dynamic-security/v1/response",
]


@pytest.fixture(params=kym_brokers.ACCESS_KINDS)
def kym_broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KymBroker]:
    """Both brokers, and the managed Mosquitto with kym_access and with dynsec."""
    yield from kym_brokers.running(request, tmp_path)


def test_a_device_gets_0x80_for_every_subscription_but_its_own_results(
    kym_broker: KymBroker,
) -> None:
    device = kym_broker.raw("dev-a")
    assert device.connect(client_id="dev-a") == (False, 0)
    codes = device.subscribe(1, RESULTS.format("dev-a"), *REFUSED)
    assert dict(zip([RESULTS.format("dev-a"), *REFUSED], codes, strict=True)) == {
        RESULTS.format("dev-a"): 1,
        **{topic_filter: 0x80 for topic_filter in REFUSED},
    }
    device.close()


def test_a_gateway_identity_may_share_the_orders_and_nothing_wider(
    kym_broker: KymBroker,
) -> None:
    gateway = kym_broker.raw("kym-gateway-3")
    assert gateway.connect(client_id="kym-gateway-3") == (False, 0)
    assert gateway.subscribe(1, SHARED_ORDERS, "#", "$SYS/#", RESULTS.format("dev-a")) == [
        1,
        0x80,
        0x80,
        0x80,
    ]
    gateway.close()


def test_a_greedy_subscriber_cannot_make_any_order_go_unanswered(kym_broker: KymBroker) -> None:
    gateways = [echo_gateway(kym_broker, n) for n in (0, 1)]
    attackers = []
    for cn in ("dev-b", "dev-c"):
        attacker = kym_broker.raw(cn)
        assert attacker.connect(client_id=cn, clean=False) == (False, 0)
        greedy = [SHARED_ORDERS, "$share/kym/" + ORDERS.format("dev-a"), "#", "kym/#"]
        assert attacker.subscribe(1, *greedy) == [0x80] * len(greedy)
        attackers.append(attacker)
    bystander = kym_broker.paho("dev-a")
    assert bystander.subscribe(RESULTS.format("dev-a")) == 1
    sent = [f"order-{i}" for i in range(40)]
    for order in sent:
        bystander.publish(ORDERS.format("dev-a"), order.encode())
    answered: set[str] = set()
    workers: set[int] = set()
    deadline = time.monotonic() + 10
    while len(answered) < len(sent) and time.monotonic() < deadline:
        result = json.loads(bystander.messages.get(timeout=10).payload)
        answered.add(result["order"])
        workers.add(result["by"])
    assert answered == set(sent)
    assert workers == {0, 1}, "the gateways did not share the orders"
    for attacker in attackers:  # they got nothing, and the broker did not drop them either
        attacker.sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            attacker.receive()
        attacker.close()
    for client in (bystander, *gateways):
        client.close()


def test_a_device_cannot_publish_into_another_devices_orders(kym_broker: KymBroker) -> None:
    gateway = kym_broker.paho("kym-gateway-0")
    assert gateway.subscribe(SHARED_ORDERS) == 1
    forger = kym_broker.raw("dev-b")
    assert forger.connect(client_id="dev-b") == (False, 0)
    forger.send(publish_packet(ORDERS.format("dev-a"), b"forged", qos=0))
    forger.send(publish_packet(RESULTS.format("dev-a"), b"forged result", qos=0))
    forger.send(publish_packet(ORDERS.format("dev-b"), b"marker", qos=0))
    message = gateway.messages.get(timeout=5)
    assert (message.topic, message.payload) == (ORDERS.format("dev-b"), b"marker")
    assert gateway.messages.empty()
    forger.close()
    gateway.close()


def test_forgetting_a_device_ends_its_live_session(kym_broker: KymBroker) -> None:
    device = kym_broker.raw("dev-c")
    assert device.connect(client_id="dev-c") == (False, 0)
    assert device.subscribe(1, RESULTS.format("dev-c")) == [1]
    kym_broker.control.forget_device("dev-c")
    assert device.closed_by_broker()
    device.close()


def test_on_dynsec_a_device_without_an_entry_may_do_nothing_until_admitted(
    dynsec_broker: KymBroker,
) -> None:
    gateway = dynsec_broker.paho("kym-gateway-0")
    assert gateway.subscribe(SHARED_ORDERS) == 1
    newcomer = dynsec_broker.raw("dev-new")
    assert newcomer.connect(client_id="dev-new") == (False, 0)  # a valid certificate
    assert newcomer.subscribe(1, RESULTS.format("dev-new")) == [0x80]
    newcomer.send(publish_packet(ORDERS.format("dev-new"), b"too early", qos=0))

    dynsec_broker.control.allow_device("dev-new")
    assert newcomer.subscribe(2, RESULTS.format("dev-new"), "#") == [1, 0x80]
    newcomer.send(publish_packet(ORDERS.format("dev-new"), b"admitted", qos=0))
    assert gateway.messages.get(timeout=5).payload == b"admitted"
    assert gateway.messages.empty()
    newcomer.close()
    gateway.close()


def test_on_dynsec_a_forgotten_device_keeps_no_rights(dynsec_broker: KymBroker) -> None:
    dynsec_broker.control.forget_device("dev-b")
    again = dynsec_broker.raw("dev-b")  # the certificate itself is not revoked here
    assert again.connect(client_id="dev-b") == (False, 0)
    assert again.subscribe(1, RESULTS.format("dev-b")) == [0x80]
    again.close()


def test_an_external_broker_gets_entries_for_devices_it_lacks_at_gateway_start(
    dynsec_broker: KymBroker,
) -> None:
    external = ExternalMosquitto(dynsec_broker.pki, "127.0.0.1", dynsec_broker.port, 1)
    assert external.sync([*REGISTERED, "dev-late"]) == 1
    assert external.sync([*REGISTERED, "dev-late"]) == 0
    late = dynsec_broker.raw("dev-late")
    assert late.connect(client_id="dev-late") == (False, 0)
    assert late.subscribe(1, RESULTS.format("dev-late"), "#") == [1, 0x80]
    late.close()


def test_on_kym_access_a_new_device_needs_no_entry_and_a_kicked_one_keeps_no_rights(
    mosquitto_broker: KymBroker,
) -> None:
    """kym_access: any certified device may use its own topics at once (nothing is written per
    device, so registering the millionth costs the broker nothing); one whose session was ended
    for its revocation may do nothing more, even if it reconnects before the CRL is reloaded."""
    gateway = mosquitto_broker.paho("kym-gateway-0")
    assert gateway.subscribe(SHARED_ORDERS) == 1
    newcomer = mosquitto_broker.raw("dev-new")
    assert newcomer.connect(client_id="dev-new") == (False, 0)
    assert newcomer.subscribe(1, RESULTS.format("dev-new"), "#") == [1, 0x80]
    newcomer.send(publish_packet(ORDERS.format("dev-new"), b"at once", qos=0))
    assert gateway.messages.get(timeout=5).payload == b"at once"
    mosquitto_broker.control.forget_device("dev-new")
    assert newcomer.closed_by_broker()
    newcomer.close()
    again = mosquitto_broker.raw("dev-new")  # the certificate itself is not revoked here
    assert again.connect(client_id="dev-new") == (False, 0)
    assert again.subscribe(1, RESULTS.format("dev-new")) == [0x80]
    again.send(publish_packet(ORDERS.format("dev-new"), b"after", qos=0))
    again.send(publish_packet(ORDERS.format("dev-a"), b"marker", qos=0))  # denied too: not its own
    time.sleep(0.5)
    assert gateway.messages.empty()
    again.close()
    gateway.close()
