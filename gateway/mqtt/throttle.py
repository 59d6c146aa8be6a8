"""The per-device rate limit in front of a worker's batches (CONTRACT.md section 10).

A worker passes every message it takes off its queue through `Throttle.admit` before batching,
so a flood from one device costs a dictionary lookup per message, never a signature check, a
database query or a place in a batch that another device's order is waiting for. A refused
message is acknowledged to the broker at once (it is deliberately not decided); the first one
refused in a second gets a signed `rejected`/`rate_limited` result, published directly: it is
not a decision, so it is written neither to the orders, the outbox nor the audit trail.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable
from typing import Any, Protocol

from devices import wire
from devices.contract import Reason, Result, Status, device_of_orders_topic, results_topic
from gateway.context import Context
from gateway.mqtt.client import Inbound
from gateway.orders.ratelimit import RateLimiter, Verdict

log = logging.getLogger("kym.ratelimit")
GATHER_S = 0.05  # how long admitted messages may wait for more to batch with during a flood


class Acknowledger(Protocol):
    """What a refusal needs of the worker's MQTT client (`GatewayClient`)."""

    def ack(self, messages: list[Inbound]) -> int: ...

    def publish(self, topic: str, payload: bytes) -> Any: ...


class Throttle:
    """One worker's token buckets, with what a refusal does: acknowledge, maybe answer."""

    def __init__(
        self,
        ctx: Context,
        client: Acknowledger,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ctx, self.client, self.monotonic = ctx, client, monotonic
        self.limiter = RateLimiter(ctx.settings.device_rate, ctx.settings.device_burst)
        self.refused = 0

    def gather(self, inbox: queue.Queue[Inbound], limit: int, wait_s: float = 0.2) -> list[Inbound]:
        """Up to `limit` admitted messages to decide together: waits up to `wait_s` for the
        first, then takes what is queued for at most GATHER_S, so that a flood refused as fast
        as it arrives never holds back what was admitted."""
        batch: list[Inbound] = []
        deadline_s = self.monotonic() + wait_s
        while len(batch) < limit:
            try:
                if batch:
                    message = inbox.get_nowait()
                else:
                    message = inbox.get(timeout=max(0.0, deadline_s - self.monotonic()))
            except queue.Empty:
                break
            if self.admit(message):
                if not batch:
                    deadline_s = self.monotonic() + GATHER_S
                batch.append(message)
            if self.monotonic() >= deadline_s:
                break
        return batch

    def admit(self, message: Inbound) -> bool:
        """True when the message may be decided; else it is acknowledged and dealt with."""
        device_id = device_of_orders_topic(message.topic)
        if device_id is None:
            return True  # not an order; intake ignores it
        verdict = self.limiter.take(device_id, self.monotonic())
        if verdict is Verdict.ADMIT:
            return True
        self.refused += 1
        self.client.ack([message])
        if verdict is Verdict.NOTIFY:
            self.notify(device_id, message.payload)
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
