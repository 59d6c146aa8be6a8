"""The per-device rate limit on every message a gateway client receives (CONTRACT.md section 10).

`Throttle.admit` runs on the MQTT client's network thread (`GatewayClient.admit`) before a
message is queued for the worker, with the topic and payload as our reader split them off the
socket (`gateway.mqtt.receive`): a flood from one device costs a dictionary lookup and a share of
one PUBACK write per message, never a message object, a signature check, a database query or a
place in a batch, and it is refused as fast as it arrives even while the worker is busy
deciding, so that it never fills the broker's in-flight window that other devices' orders queue
behind. A refused message is acknowledged at once by the client (it is deliberately not
decided); the first one refused in a second gets a signed `rejected`/`rate_limited` result,
published directly: it is not a decision, so it is written neither to the orders, the outbox
nor the audit trail.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from devices import wire
from devices.contract import Reason, Result, Status, device_of_orders_topic, results_topic
from gateway.context import Context
from gateway.orders.ratelimit import RateLimiter, Verdict

log = logging.getLogger("kym.ratelimit")
TOPICS_KEPT = 100_000  # the topic -> device id memo starts again beyond this many


class ResultSender(Protocol):
    """What a refusal needs of the worker's MQTT client (`GatewayClient`)."""

    def publish(self, topic: str, payload: bytes) -> Any: ...


class Throttle:
    """One worker's token buckets, with what a refusal does: maybe answer."""

    def __init__(
        self,
        ctx: Context,
        client: ResultSender,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ctx, self.client, self.monotonic = ctx, client, monotonic
        self.limiter = RateLimiter(ctx.settings.device_rate, ctx.settings.device_burst)
        self.refused = 0
        self._devices: dict[str, str] = {}  # orders topic -> device id, of the devices seen lately

    def admit(self, topic: str, payload: bytes) -> bool:
        """True when the message may be decided; False when it is refused (the caller
        acknowledges it at once). Never raises (an exception would stop paho's network
        thread): on a bug, it admits."""
        try:
            return self._admit(topic, payload)
        except Exception:  # noqa: BLE001 - logged; deciding the message is the safe side
            log.exception("the rate limit failed on a message on %s", topic)
            return True

    def _admit(self, topic: str, payload: bytes) -> bool:
        device_id = self._devices.get(topic)
        if device_id is None:
            device_id = device_of_orders_topic(topic)
            if device_id is None:
                return True  # not an order; intake ignores it
            if len(self._devices) >= TOPICS_KEPT:
                self._devices.clear()
            self._devices[topic] = device_id
        verdict = self.limiter.take(device_id, self.monotonic())
        if verdict is Verdict.ADMIT:
            return True
        self.refused += 1
        if verdict is Verdict.NOTIFY:
            self.notify(device_id, payload)
        return False

    def notify(self, device_id: str, raw: bytes) -> None:
        """The device's one `rate_limited` result of this second, naming this message's order."""
        order_id = wire.order_id_of(wire.payload_of(raw))  # unverified: only to name it
        now = self.ctx.clock()
        result = Result(
            device_id, order_id, Status.REJECTED, int(now.timestamp()), Reason.RATE_LIMITED
        )
        settings = self.ctx.settings
        detail = (
            f"over {settings.device_rate:g} orders a second (bursts of {settings.device_burst}); "
            "not decided, send it again later"
        )
        token = wire.sign(
            result.to_payload() | {"detail": detail},
            self.ctx.pki.signer.private_key,
            self.ctx.signer_jose,
        )
        self.client.publish(results_topic(device_id), token.encode())
        log.info("device %s is over its rate; %d messages refused so far", device_id, self.refused)
