"""The SDK on a real broker over mutual TLS: orders out, verified results and events in."""

from __future__ import annotations

import base64
import queue
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from devices import contract, wire
from devices.sdk import ConnectFailed, DeviceClient, Event, ResultTimeout
from gateway.server import free_port
from tests.sdk.gatewayside import GatewaySide
from tests.support.stack import Http


@pytest.fixture
def gateway_side(http: Http) -> Iterator[GatewaySide]:
    side = GatewaySide(http.stack)
    yield side
    side.close()


def test_connects_over_mutual_tls_and_subscribes_to_its_results(http: Http) -> None:
    identity, _ = http.provision("car")
    with http.client(identity) as car:
        car.connect()
        assert car.is_connected
        sock = car._mqtt.socket()  # paho leaves Nagle on; the SDK turns it off
        assert isinstance(sock, socket.socket)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_no_broker_at_the_address_is_said_as_such(http: Http) -> None:
    identity, _ = http.provision("car")
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = DeviceClient(identity, "127.0.0.1", port)
    with pytest.raises(ConnectFailed, match="could not open a connection to the broker at"):
        client.connect(timeout_s=3)
    client.close()


@pytest.fixture
def plain_mosquitto(mosquitto_binary: str, tmp_path: Path) -> Iterator[int]:
    """A Mosquitto with one plain MQTT listener (no TLS), as on a broker's port 1883."""
    port = free_port()
    conf = tmp_path / "plain.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    process = subprocess.Popen([mosquitto_binary, "-c", str(conf)], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not _listens(port):
            assert process.poll() is None and time.monotonic() < deadline, "no plain Mosquitto"
            time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(10)


def _listens(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 0.2).close()
    except OSError:
        return False
    return True


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A TCP port that accepts connections and never answers."""
    with socket.create_server(("127.0.0.1", 0), backlog=16) as listener:
        yield listener.getsockname()[1]  # the kernel completes the handshakes; nobody reads


def test_a_plain_mqtt_port_is_said_not_to_speak_tls(http: Http, plain_mosquitto: int) -> None:
    """The likeliest mistake (port 1883 for 8883) is named, not taken for a certificate one."""
    identity, _ = http.provision("car")
    client = DeviceClient(identity, "127.0.0.1", plain_mosquitto)
    with pytest.raises(ConnectFailed, match=r"does not speak TLS: .*a plain MQTT port\?"):
        client.connect(timeout_s=3)
    client.close()


def test_a_port_that_never_answers_is_said_to_be_silent(http: Http, silent_port: int) -> None:
    identity, _ = http.provision("car")
    client = DeviceClient(identity, "127.0.0.1", silent_port)
    with pytest.raises(ConnectFailed, match="accepted the connection but did not answer a TLS"):
        client.connect(timeout_s=3)
    client.close()


def test_a_broker_whose_certificate_it_refuses_is_said_to_be_a_certificate_matter(
    http: Http,
) -> None:
    """A TLS broker whose certificate the device refuses (here: it names 127.0.0.1, and the
    device dials `localhost`): a handshake failure, not a port that speaks no TLS."""
    identity, _ = http.provision("car")
    client = DeviceClient(identity, "localhost", http.stack.port)
    with pytest.raises(ConnectFailed, match="TLS handshake with the broker at .* failed"):
        client.connect(timeout_s=3)
    client.close()


def test_a_revoked_device_cannot_connect(http: Http) -> None:
    identity, owner = http.provision("car")
    revoked = http.stack.api.post(
        f"/v1/devices/{identity.device_id}/revoke",
        headers={"Authorization": f"Bearer {owner['api_key']}"},
    )
    assert revoked.json()["status"] == "revoked"
    client = DeviceClient(identity, "127.0.0.1", http.stack.port)
    with pytest.raises(ConnectFailed):
        client.connect(timeout_s=3)
    client.close()


@pytest.mark.parametrize("key_type", ["p256", "ed25519"])
def test_a_signed_order_reaches_the_gateway_and_verifies_with_the_registered_certificate(
    http: Http, gateway_side: GatewaySide, key_type: str
) -> None:
    identity, _ = http.provision(f"car-{key_type}", key_type)  # type: ignore[arg-type]
    with http.client(identity) as car:
        car.connect()
        order_id = car.pay("mer_parking", 350, "EUR", description="2 h parking")
        arrived = gateway_side.next_order()
    assert arrived.topic == f"kym/v1/devices/{identity.device_id}/orders"
    token = arrived.payload.decode()
    assert token == car.journal.jws_of(order_id)
    alg, payload = wire.decode(token)
    public_key = identity.certificate.public_key()
    assert isinstance(public_key, wire.PublicKey)
    wire.verify(token, alg, public_key)
    order = wire.parse_order(payload, identity.device_id)
    assert isinstance(order, wire.PayOrder)
    assert (order.order_id, order.payee, order.amount) == (order_id, "mer_parking", 350)


def test_every_order_type_passes_the_gateways_schema(http: Http, gateway_side: GatewaySide) -> None:
    identity, _ = http.provision("pump", kind="fuel_pump")
    with http.client(identity) as pump:
        pump.connect()
        pump.hold("mer_x", 5000, expires_in_s=600)
        pump.capture("pay_1", 4200)
        pump.void("pay_2")
        pump.refund("pay_1", 100, "EUR")
        types = [
            wire.parse_order(
                wire.decode(gateway_side.next_order().payload)[1], identity.device_id
            ).type
            for _ in range(4)
        ]
    assert types == ["hold", "capture", "void", "refund"]


def test_accepts_the_gateways_results_and_drops_forged_and_misaddressed_ones(
    http: Http, gateway_side: GatewaySide
) -> None:
    identity, _ = http.provision("car")
    other, _ = http.provision("other")
    me = identity.device_id
    with http.client(identity) as car:
        car.connect()
        forged = gateway_side.result(me, "o-1", "approved", payment_id="pay_1", amount=5)
        gateway_side.publish(me, forged, key=ec.generate_private_key(ec.SECP256R1()))
        gateway_side.publish(
            me, gateway_side.result(other.device_id, "o-1", "declined", reason="insufficient_funds")
        )
        gateway_side.publish_raw(me, b"not a jws")
        payload = wire.sign(forged, ec.generate_private_key(ec.SECP256R1())).split(".")[1]
        none_header = _b64(b'{"alg":"none"}')
        gateway_side.publish_raw(me, f"{none_header}.{payload}.".encode())
        genuine = gateway_side.result(
            me, "o-1", "approved", payment_id="pay_9", amount=1250, currency="EUR"
        )
        gateway_side.publish(me, genuine)
        result = car.wait_for_result("o-1", timeout_s=5)
        assert (result.status, result.payment_id, result.amount) == ("approved", "pay_9", 1250)
        assert [why for why, _ in car.dropped] == [
            "the signature does not verify",
            "addressed to another device",
            "the order is not a JWS compact serialization",
            "alg 'none' is not allowed for this device's key",
        ]


def test_events_for_this_device_reach_on_event_and_others_are_ignored(
    http: Http, gateway_side: GatewaySide
) -> None:
    identity, _ = http.provision("pump", kind="fuel_pump")
    other, _ = http.provision("car")
    events: queue.Queue[Event] = queue.Queue()
    with http.client(identity, on_event=events.put) as pump:
        pump.connect()
        placed = {
            "order_id": "o-7",
            "payment_id": "pay_7",
            "payer_device_id": other.device_id,
            "amount": 9000,
            "currency": "EUR",
        }
        gateway_side.publish(
            pump.device_id,
            contract.event_payload(
                contract.Event.HOLD_PLACED, other.device_id, int(time.time()), **placed
            ),
        )
        gateway_side.publish(
            pump.device_id,
            contract.event_payload(
                contract.Event.HOLD_PLACED, pump.device_id, int(time.time()), **placed
            ),
        )
        event = events.get(timeout=5)
        assert (event.event, event.payment_id, event.payer_device_id, event.amount) == (
            "hold_placed",
            "pay_7",
            other.device_id,
            9000,
        )
        assert events.empty()
        assert [why for why, _ in pump.dropped] == ["addressed to another device"]


def test_wait_for_result_waits_past_pending_approval_for_the_final_result(
    http: Http, gateway_side: GatewaySide
) -> None:
    identity, _ = http.provision("fridge", kind="fridge")
    me = identity.device_id
    with http.client(identity) as fridge:
        fridge.connect()
        gateway_side.publish(
            me, gateway_side.result(me, "o-big", "pending_approval", amount=12000, currency="EUR")
        )
        pending = fridge.wait_for_result("o-big", timeout_s=5, final=False)
        assert pending.status == "pending_approval"
        with pytest.raises(ResultTimeout):
            fridge.wait_for_result("o-big", timeout_s=0.5)
        later = threading.Timer(
            0.5,
            gateway_side.publish,
            (
                me,
                gateway_side.result(
                    me, "o-big", "approved", payment_id="pay_3", amount=12000, currency="EUR"
                ),
            ),
        )
        later.start()
        final = fridge.wait_for_result("o-big", timeout_s=5)
        later.join()
    assert (final.status, final.payment_id) == ("approved", "pay_3")


def test_a_final_result_marks_the_journaled_order_finished(
    http: Http, gateway_side: GatewaySide
) -> None:
    identity, _ = http.provision("car")
    with http.client(identity) as car:
        car.connect()
        first, second = car.pay("mer_a", 100), car.pay("mer_b", 200)
        me = car.device_id
        gateway_side.publish(
            me, gateway_side.result(me, first, "declined", reason="insufficient_funds")
        )
        gateway_side.publish(me, gateway_side.result(me, second, "pending_approval"))
        assert car.wait_for_result(first).reason == "insufficient_funds"
        car.wait_for_result(second, final=False)
        assert [order_id for order_id, _ in car.journal.unfinished()] == [second]


def test_results_published_while_the_device_was_away_arrive_when_it_returns(
    http: Http, gateway_side: GatewaySide
) -> None:
    identity, _ = http.provision("meter", kind="smart_meter")
    me = identity.device_id
    with http.client(identity) as meter:
        meter.connect()
    gateway_side.publish(me, gateway_side.result(me, "o-away", "approved", payment_id="pay_4"))
    with http.client(identity) as meter:
        meter.connect()
        assert meter.wait_for_result("o-away", timeout_s=5).payment_id == "pay_4"


def test_a_garbage_rejection_without_an_order_id_can_be_awaited(
    http: Http, gateway_side: GatewaySide
) -> None:
    identity, _ = http.provision("car")
    me = identity.device_id
    with http.client(identity) as car:
        car.connect()
        gateway_side.publish(
            me, gateway_side.result(me, None, "rejected", reason="invalid_message")
        )
        assert car.wait_for_unmatched_rejection(5).reason == "invalid_message"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_a_dropped_connection_comes_back_by_itself_and_still_gets_results(
    http: Http, gateway_side: GatewaySide
) -> None:
    identity, _ = http.provision("car")
    me = identity.device_id
    with http.client(identity) as car:
        car.connect()
        sock = car._mqtt.socket()
        assert isinstance(sock, socket.socket)
        sock.shutdown(socket.SHUT_RDWR)  # the network goes away under the device
        deadline = time.monotonic() + 10
        while car.is_connected and time.monotonic() < deadline:
            time.sleep(0.02)
        order_id = car.pay("mer_x", 10)  # queued by paho while it is away
        while not car.is_connected and time.monotonic() < deadline:
            time.sleep(0.05)
        assert car.is_connected, "the SDK did not reconnect"
        arrived = gateway_side.next_order(timeout_s=10)
        assert arrived.payload.decode() == car.journal.jws_of(order_id)
        gateway_side.publish(me, gateway_side.result(me, order_id, "approved"))
        assert car.wait_for_result(order_id).status == "approved"
