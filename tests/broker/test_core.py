"""The broker's state machine without the network: what it sends to whom."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import cast

import pytest

from gateway.broker import BrokerConfig, codec
from gateway.broker.plugin import disconnect_after
from gateway.broker.sessions import BrokerCore, Connection


class RecordingTransport:
    """Stands in for a TLS transport and records what the broker writes to it."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.sent.append(data)

    def is_closing(self) -> bool:
        return self.aborted

    def abort(self) -> None:
        self.aborted = True

    def get_write_buffer_size(self) -> int:
        return 0


def connect(core: BrokerCore, identity: str) -> tuple[Connection, RecordingTransport]:
    transport = RecordingTransport()
    conn = Connection(identity, cast(asyncio.WriteTransport, transport), now=0.0)
    assert core.on_connect(conn, codec.Connect(4, True, 0, "ignored", None, None, None))
    return conn, transport


def test_a_subscription_that_slipped_past_the_acl_still_gets_nothing() -> None:
    core = BrokerCore(BrokerConfig(Path("unused"), Path("unused"), Path("unused")))
    _, device_a = connect(core, "dev-a")
    core.router.add("dev-a", "kym/v1/devices/dev-b/results", 1)  # as if the ACL had erred

    assert core.publish("kym-gateway-0", "kym/v1/devices/dev-b/results", b"for b", 1)
    assert device_a.sent == [codec.encode_connack(False, 0)]


def test_a_forbidden_publish_is_not_routed() -> None:
    core = BrokerCore(BrokerConfig(Path("unused"), Path("unused"), Path("unused")))
    assert not core.publish("dev-a", "kym/v1/devices/dev-b/orders", b"forged", 1)


def test_kick_forgets_a_persistent_session() -> None:
    core = BrokerCore(BrokerConfig(Path("unused"), Path("unused"), Path("unused")))
    conn, transport = connect(core, "dev-a")
    assert core.kick("dev-a") and transport.aborted and conn.ended
    assert "dev-a" not in core.sessions and "dev-a" not in core.live
    assert not core.kick("dev-a")


def test_forbidden_publishes_are_logged_once_a_second_per_sender(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A device that publishes where it may not cannot flood the broker's log."""
    core = BrokerCore(BrokerConfig(Path("unused"), Path("unused"), Path("unused")))
    with caplog.at_level(logging.INFO, logger="kym.broker"):
        for _ in range(1_000):
            assert not core.publish("dev-a", "kym/v1/devices/dev-b/orders", b"forged", 1)
        assert not core.publish("dev-c", "kym/v1/devices/dev-b/orders", b"forged", 1)
    denied = [r.getMessage() for r in caplog.records if "not authorized" in r.getMessage()]
    assert denied == [
        "dropped a message from dev-a to kym/v1/devices/dev-b/orders: not authorized",
        "dropped a message from dev-c to kym/v1/devices/dev-b/orders: not authorized",
    ]


def test_a_device_far_beyond_its_limit_is_disconnected() -> None:
    """Dropped orders past `disconnect_after(burst)`, less the rate since, close the connection;
    within that the device stays connected and is only refused."""
    burst = 4
    limits = (0.001, burst)  # no refill to speak of during the test
    core = BrokerCore(
        BrokerConfig(Path("unused"), Path("unused"), Path("unused"), device_limits=limits)
    )
    conn, _ = connect(core, "dev-a")
    topic = "kym/v1/devices/dev-a/orders"

    def publish(packet_id: int) -> bool:
        packet = codec.Publish(topic, b"order", 1, False, False, packet_id)
        return core.on_packet(conn, packet)

    allowed = burst + disconnect_after(burst)
    assert all(publish(i) for i in range(1, allowed + 1))  # the burst, then dropped ones
    assert not publish(allowed + 1)  # one more: disconnect
    assert core.dropped == disconnect_after(burst) + 1
