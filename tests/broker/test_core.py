"""The broker's state machine without the network: what it sends to whom."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import cast

from gateway.broker import BrokerConfig, codec
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
