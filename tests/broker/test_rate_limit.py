"""The brokers `kym serve` runs drop a device's orders beyond twice the gateway's rate limit
before queueing them for the gateway (CONTRACT.md section 10): on Mosquitto through the
`kym_ratelimit` plugin that `kym` compiles, on the embedded broker in its session core. So a
flood from one device never fills the gateway's queue ahead of other devices' orders, while
everything within the rate, and a burst, still reaches the gateway, acknowledged or not. A
device that goes on far beyond (`disconnect_after` orders dropped, less the rate since) is
disconnected, so that the broker reads no more of its flood."""

from __future__ import annotations

import contextlib
import queue
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from gateway.broker import plugin
from gateway.broker.plugin import broker_limits, disconnect_after
from tests.broker.kym_brokers import GATEWAY_LIMITS, ORDERS, SHARED_ORDERS, KymBroker
from tests.broker.rawmqtt import publish_packet

FLOOD = 3_000
RATE_PER_S, BURST = broker_limits(*GATEWAY_LIMITS)
CUT_OFF = disconnect_after(BURST)


def _drain(messages: queue.Queue[mqtt.MQTTMessage], quiet_s: float) -> list[mqtt.MQTTMessage]:
    """Every message that arrives until none has for `quiet_s`."""
    got = []
    while True:
        try:
            got.append(messages.get(timeout=quiet_s))
        except queue.Empty:
            return got


def _flood(broker: KymBroker, cn: str, count: int) -> tuple[float, int, bool]:
    """Publish `count` QoS 1 orders as `cn` in one write; once every one is acknowledged or
    the broker closed the connection: (seconds from the first byte, PUBACKs, whether closed)."""
    flooder = broker.raw(cn)
    assert flooder.connect(client_id=cn) == (False, 0)
    topic = ORDERS.format(cn)
    packets = b"".join(publish_packet(topic, b"flood %d" % i, 1, i + 1) for i in range(count))
    started = time.monotonic()
    # Cut off before the whole flood was written (an SSL error, an OSError), what the broker
    # acknowledged until then is read below, then the end of the connection.
    with contextlib.suppress(OSError):
        flooder.send(packets)
    acked: set[int] = set()
    closed = False
    try:
        while len(acked) < count and not closed:
            received = flooder.receive()
            closed = received is None
            if received is not None and received.kind == 4:
                acked.add(int.from_bytes(received.body[:2], "big"))
    finally:
        flooder.close()
    return time.monotonic() - started, len(acked), closed


def test_a_flood_is_cut_at_the_broker_and_the_flooder_disconnected(kym_broker: KymBroker) -> None:
    gateway = kym_broker.paho("kym-gateway-0")
    assert gateway.subscribe(SHARED_ORDERS) == 1
    elapsed_s, acked, closed = _flood(kym_broker, "dev-a", FLOOD)
    assert closed, "the flooder was never disconnected"
    most = BURST + RATE_PER_S * elapsed_s + 1
    assert acked <= most + CUT_OFF + RATE_PER_S * elapsed_s, (acked, elapsed_s)  # read no further
    victim = kym_broker.paho("dev-b")
    for i in range(5):
        victim.publish(ORDERS.format("dev-b"), b"order %d" % i)
    got = _drain(gateway.messages, quiet_s=1.0)
    from_victim = sorted(m.payload for m in got if m.topic == ORDERS.format("dev-b"))
    assert from_victim == [b"order %d" % i for i in range(5)]
    from_flooder = [m.payload for m in got if m.topic == ORDERS.format("dev-a")]
    assert BURST <= len(from_flooder) <= most, (len(from_flooder), elapsed_s)
    assert from_flooder[:BURST] == [b"flood %d" % i for i in range(BURST)]  # the burst, in order
    again = kym_broker.paho("dev-a")  # back at once, within its limit again later
    time.sleep(2 / RATE_PER_S)
    again.publish(ORDERS.format("dev-a"), b"later")
    assert [m.payload for m in _drain(gateway.messages, quiet_s=1.0)] == [b"later"]
    again.close()
    victim.close()
    gateway.close()


def test_a_device_a_little_over_its_limit_stays_connected(kym_broker: KymBroker) -> None:
    """Dropped orders short of the cut-off only cost the device those orders."""
    elapsed_s, acked, closed = _flood(kym_broker, "dev-a", BURST + CUT_OFF // 2)
    assert not closed and acked == BURST + CUT_OFF // 2, (acked, elapsed_s)


def test_orders_within_the_rate_all_pass(kym_broker: KymBroker) -> None:
    """A device that sends its whole burst at once and then keeps to its rate loses nothing."""
    gateway = kym_broker.paho("kym-gateway-0")
    assert gateway.subscribe(SHARED_ORDERS) == 1
    device = kym_broker.paho("dev-c")
    topic, steady = ORDERS.format("dev-c"), 2 * int(RATE_PER_S)
    for i in range(BURST):
        device.client.publish(topic, b"burst %d" % i, qos=1)
    for i in range(steady):
        time.sleep(1.1 / RATE_PER_S)
        device.publish(topic, b"steady %d" % i)
    got = _drain(gateway.messages, quiet_s=1.0)
    expected = [b"burst %d" % i for i in range(BURST)] + [b"steady %d" % i for i in range(steady)]
    assert sorted(m.payload for m in got) == sorted(expected)
    device.close()
    gateway.close()


def test_the_plugin_is_built_once_per_source(tmp_path: Path) -> None:
    built = plugin.build(tmp_path)
    assert built == tmp_path / "kym_ratelimit.so" and built.exists()
    made = built.stat().st_mtime_ns
    assert plugin.build(tmp_path) == built and built.stat().st_mtime_ns == made
    (tmp_path / "kym_ratelimit.sha256").write_text("an older source")
    assert plugin.build(tmp_path) == built and built.stat().st_mtime_ns != made
    lines = plugin.config_lines(built, 2.5, 7)
    assert lines == [
        f"plugin {built}",
        "plugin_opt_rate 5",
        "plugin_opt_burst 14",
        "plugin_opt_disconnect_after 70",
    ]


def test_without_a_compiler_there_is_no_plugin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no cc, gcc or clang on it
    assert plugin.build(tmp_path / "out") is None
    assert "no C compiler" in caplog.text
    assert plugin.config_lines(None, 10, 50) == []


def test_forged_orders_do_not_spend_another_devices_allowance(kym_broker: KymBroker) -> None:
    """Only a device's own orders count: publishes onto its topic from another device are denied
    by the access rules before the limit, so they cannot starve it."""
    gateway = kym_broker.paho("kym-gateway-0")
    assert gateway.subscribe(SHARED_ORDERS) == 1
    forger = kym_broker.raw("dev-b")
    assert forger.connect(client_id="dev-b") == (False, 0)
    forger.send(publish_packet(ORDERS.format("dev-a"), b"forged", qos=0) * FLOOD)
    device = kym_broker.paho("dev-a")
    for i in range(BURST):
        device.publish(ORDERS.format("dev-a"), b"own %d" % i)
    got = _drain(gateway.messages, quiet_s=1.0)
    assert sorted(m.payload for m in got) == sorted(b"own %d" % i for i in range(BURST))
    forger.close()
    device.close()
    gateway.close()
