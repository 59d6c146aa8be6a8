"""The gateway's side of a conversation with a device, for tests: publishing signed results
as the gateway's own broker identity, with its real result-signing key."""

from __future__ import annotations

import queue
import time
from typing import Any

from devices import keystore, wire
from devices.contract import Reason, Result, Status, results_topic
from gateway.context import utcnow
from gateway.mqtt.client import Inbound
from tests.support.stack import Session, Stack


class GatewaySide:
    """Publishes as `kym-gateway-1` (a worker the stack does not run) and reads the inbox."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        cert, key = keystore.ensure_gateway_client_identity(stack.ctx.pki, 1, utcnow())
        self.session = Session.open(stack, cert, key, "kym-gateway-1")
        assert self.session.is_up

    def publish(self, device_id: str, payload: dict[str, Any], key: Any = None) -> None:
        """Sign `payload` (with the gateway's key unless `key` is given) and publish it."""
        token = wire.sign(payload, key or self.stack.ctx.pki.signer.private_key)
        self.publish_raw(device_id, token.encode())

    def publish_raw(self, device_id: str, data: bytes) -> None:
        info = self.session.client.publish(results_topic(device_id), data, qos=1)
        info.wait_for_publish(5)

    def result(
        self, device_id: str, order_id: str | None, status: str, **fields: Any
    ) -> dict[str, Any]:
        reason = fields.pop("reason", None)
        return Result(
            device_id,
            order_id,
            Status(status),
            int(time.time()),
            None if reason is None else Reason(reason),
            **fields,
        ).to_payload()

    def next_order(self, timeout_s: float = 5.0) -> Inbound:
        """The next message that reached the gateway's orders subscription."""
        inbox: queue.Queue[Inbound] = self.stack.gateway_inbox
        return inbox.get(timeout=timeout_s)

    def close(self) -> None:
        self.session.close()
