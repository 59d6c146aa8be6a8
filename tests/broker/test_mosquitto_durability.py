"""The managed Mosquitto keeps the orders queued for an offline gateway across a restart of the
broker (persistence in its work dir), a clean one and a crash after an autosave alike."""

from __future__ import annotations

import os
import signal
import time
from datetime import UTC, datetime

import pytest

from gateway.broker.mosquitto import AUTOSAVE_INTERVAL_S, ManagedMosquitto
from tests.broker.kym_brokers import ORDERS, SHARED_ORDERS, KymBroker

pytestmark = pytest.mark.mosquitto
ORDERS_SENT = [f"order-{i}".encode() for i in range(5)]


def queue_orders_for_an_offline_gateway(broker: KymBroker) -> None:
    gateway = broker.paho("kym-gateway-0", clean_session=False)
    assert gateway.subscribe(SHARED_ORDERS) == 1
    gateway.close()
    device = broker.paho("dev-a")
    for order in ORDERS_SENT:
        device.publish(ORDERS.format("dev-a"), order)
    device.close()


def orders_received_after_reconnecting(broker: KymBroker) -> list[bytes]:
    gateway = broker.paho("kym-gateway-0", clean_session=False)
    got = [gateway.messages.get(timeout=5).payload for _ in ORDERS_SENT]
    gateway.close()
    return got


def test_queued_orders_survive_a_restart_of_the_broker(mosquitto_broker: KymBroker) -> None:
    queue_orders_for_an_offline_gateway(mosquitto_broker)
    control = mosquitto_broker.control
    assert isinstance(control, ManagedMosquitto)
    control.stop()
    control.start(datetime.now(UTC))
    assert orders_received_after_reconnecting(mosquitto_broker) == ORDERS_SENT


def test_queued_orders_survive_a_crash_after_an_autosave(mosquitto_broker: KymBroker) -> None:
    queue_orders_for_an_offline_gateway(mosquitto_broker)
    control = mosquitto_broker.control
    assert isinstance(control, ManagedMosquitto)
    time.sleep(AUTOSAVE_INTERVAL_S + 1.5)
    crashed = control.pid()
    assert crashed is not None
    os.kill(crashed, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while not (control.alive() and control.pid() != crashed) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert control.alive() and control.pid() != crashed, "mosquitto was not restarted"
    assert orders_received_after_reconnecting(mosquitto_broker) == ORDERS_SENT
