"""Retiring a gateway worker identity without losing what the broker holds for it.

Mosquitto 2.0.11 keeps dealing an offline persistent member of the shared group its turn, for
ever (docs/durability.md): when a deployment runs fewer workers than before, the identities it
no longer runs keep receiving orders that nobody decides. Ending such a session with a clean
connect would throw its queue away. Instead `retire_identity` connects as that identity with
its persistent session, leaves the share group (UNSUBSCRIBE: nothing new is dealt to it while
what is queued still arrives), decides what arrives as a normal worker does (acknowledging
after each commit) until it has been idle for `idle_s`, and disconnects.
"""

from __future__ import annotations

import logging
import time

from devices import keystore
from gateway.context import Context, utcnow
from gateway.mqtt.client import GatewayClient
from gateway.mqtt.housekeeper import Housekeeper
from gateway.mqtt.workers import Publisher, Worker

log = logging.getLogger("kym.retire")


def retire_identity(
    ctx: Context, host: str, port: int, n: int, *, idle_s: float = 2.0, timeout_s: float = 600
) -> int:
    """Decide what the broker holds for `kym-gateway-<n>` and take it out of the share group;
    returns how many messages were decided. Raises TimeoutError when it could not decide
    them all within `timeout_s` (the database away, say): what is left stays with the broker
    in the identity's session, for the next attempt."""
    cert, key = keystore.ensure_gateway_client_identity(ctx.pki, n, utcnow())
    identity = f"kym-gateway-{n}"
    client = GatewayClient(host, port, identity, cert, key, ctx.pki.paths.bundle, join=False)
    publisher = Publisher(client)
    worker = Worker(ctx, client, publisher)
    client.start()
    try:
        if not client.left.wait(10):
            raise RuntimeError(f"{identity} could not leave the share group")
        worker.start()
        _wait_until_idle(worker, idle_s, timeout_s)
        worker.stop()
        worker.join(10)
        _wait_for_pubacks(ctx, publisher)
    finally:
        worker.stop()
        client.stop()
    log.info("%s retired after deciding %d messages", identity, worker.decided)
    return worker.decided


def _wait_until_idle(worker: Worker, idle_s: float, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    seen, quiet_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        if worker.decided != seen or worker.holding or not worker.inbox.empty():
            seen, quiet_since = worker.decided, time.monotonic()
        elif time.monotonic() - quiet_since >= idle_s:
            return
        time.sleep(0.05)
    raise TimeoutError(
        f"{worker.client.identity} still busy after {timeout_s} s ({worker.holding} messages "
        "undecided: is the database up?); what it holds stays with the broker, retire it again"
    )


def _wait_for_pubacks(ctx: Context, publisher: Publisher, timeout_s: float = 5.0) -> None:
    """Mark the results the broker acknowledged; any other is published by a running
    gateway's housekeeper from the outbox."""
    housekeeper = Housekeeper(ctx, [publisher])
    deadline = time.monotonic() + timeout_s
    while publisher.has_pending() and time.monotonic() < deadline:
        housekeeper.mark_published(quiet_only=False)
        time.sleep(0.05)
    housekeeper.mark_published(quiet_only=False)
