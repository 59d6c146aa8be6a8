"""Delivered webhooks checked against the Standard Webhooks specification by a verifier written
here from the specification (not the `standardwebhooks` package the gateway signs with):
HMAC-SHA256, keyed with the base64-decoded secret after `whsec_`, over
`{webhook-id}.{webhook-timestamp}.{body}`, sent as `v1,<base64>`, space-separated when several."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from gateway.context import Context
from gateway.events.delivery import DeliveryWorker, sign
from tests.events.helpers import add_webhook, run_rounds
from tests.events.receiver import receiver
from tests.support.world import Clock, World


def verified(secret: str, headers: dict[str, str], body: bytes) -> dict[str, object]:
    """The event, if the headers sign this body with this secret as the specification says."""
    assert secret.startswith("whsec_")
    key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    assert len(key) >= 24
    msg_id, timestamp = headers["webhook-id"], headers["webhook-timestamp"]
    assert timestamp.isdigit()
    signed = f"{msg_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    offered = headers["webhook-signature"].split(" ")
    versions = [entry.partition(",") for entry in offered]
    assert any(v == "v1" and hmac.compare_digest(s, expected) for v, _, s in versions), offered
    event = json.loads(body)
    assert isinstance(event, dict) and event["id"] == msg_id
    return event


def test_every_attempt_is_signed_afresh_under_the_same_id(
    world: World, ctx: Context, clock: Clock
) -> None:
    car = world.device("car")
    with receiver(answers=[(500, {}), (204, {})]) as hook:
        webhook = add_webhook(world.api, car.owner, hook.url, ["device.status_changed"])
        assert car.act("suspend").status_code == 200
        worker = DeliveryWorker(ctx, retry_delays_s=(0,))
        run_rounds(worker, rounds=1)
        clock.advance(7)
        run_rounds(worker, rounds=1)
        first, second = hook.wait_for(2)
    one, two = (verified(webhook["secret"], got.headers, got.body) for got in (first, second))
    assert one == two and first.body == second.body
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == one["id"]
    stamps = [int(got.headers["webhook-timestamp"]) for got in (first, second)]
    assert abs(stamps[0] - time.time()) < 60 and stamps[1] - stamps[0] >= 7
    assert first.headers["webhook-signature"] != second.headers["webhook-signature"]
    assert first.headers["content-type"] == "application/json"


def test_a_time_in_another_zone_is_signed_as_the_instant_it_names() -> None:
    """The header and the signature both carry the Unix time of `at`: the signer read an aware
    time in another zone as if it were UTC (the header said one second, the MAC another)."""
    secret = "whsec_" + base64.b64encode(bytes(range(32))).decode()
    event = {"id": "evt_1", "type": "device.status_changed", "created_at": "x", "data": {}}
    at = datetime(2026, 12, 1, 6, 0, tzinfo=ZoneInfo("Europe/Berlin"))
    body, headers = sign(secret, event, at)
    assert headers["webhook-timestamp"] == str(int(at.astimezone(UTC).timestamp()))
    assert verified(secret, headers, body.encode())["id"] == "evt_1"
