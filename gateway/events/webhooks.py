"""Webhooks of owners and merchants (contract section 7): add, list, delete, and the delivery log.

The secret is `whsec_` and the base64 of 32 random bytes, shown only when the webhook is added
(the delivery worker needs it in clear to sign, so it is stored as it is). A party has at most
MAX_WEBHOOKS; one more is 409 `too_many_webhooks`, after the checks of the URL and the types
(the contract's order: 422 before 409), counted under the lock that adding one takes alone, so
that two added at once cannot both take the last place.
"""

from __future__ import annotations

import base64
import json
import secrets
from typing import Any

from sqlalchemy import Connection

from gateway import paging
from gateway.context import Context
from gateway.errors import Conflict, Invalid, NotFound
from gateway.events import ssrf
from gateway.events import store as event_store
from gateway.events.envelope import check_subscription
from gateway.paging import Page
from gateway.parties import Party

# Every event a party gets becomes a delivery task for each of its matching webhooks, each tried
# up to 9 times and logged at every attempt, and the delivery worker's slots are shared by all
# parties: the number of webhooks multiplies what one party's events cost everyone else (and
# how many requests the gateway sends a receiver a hostile owner names). 20 is one a receiving
# service per environment, events split by type, with room to rotate (add the new one, then
# delete the old), well beyond what an integration needs, and it bounds the multiplier.
MAX_WEBHOOKS = 20


def check_room(party: Party, count: int) -> None:
    """409 `too_many_webhooks` when a party that has `count` webhooks may add no more."""
    if count >= MAX_WEBHOOKS:
        raise Conflict(
            f"{party.described} may have at most {MAX_WEBHOOKS} webhooks, and you have "
            f"{count}: delete one you no longer need (DELETE /v1/webhooks/{{id}}; "
            "GET /v1/webhooks lists them), then add this one again",
            reason="too_many_webhooks",
        )


def new_secret() -> str:
    """A webhook signing secret as the Standard Webhooks specification writes it."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def create_webhook(ctx: Context, party: Party, url: str, types: list[str] | None) -> dict[str, Any]:
    """Add a webhook for the caller's events; 422 for a URL or event types it may not have."""
    try:
        subscribed = check_subscription(party.kind, types)
    except ValueError as exc:
        raise Invalid(str(exc)) from exc
    try:
        ssrf.check_url(url, allow_private=ctx.settings.webhook_allow_private)
    except ssrf.UrlNotAllowed as refused:
        raise Invalid(str(refused), reason="webhook_url_not_allowed") from refused
    webhook = {
        "id": f"whk_{secrets.token_hex(8)}",
        "party_kind": party.kind,
        "party_id": party.id,
        "url": url,
        "events_json": json.dumps(subscribed),
        "secret": new_secret(),
        "created_at": ctx.clock(),
    }

    def work(conn: Connection) -> None:
        event_store.lock_webhooks(conn)
        check_room(party, event_store.count_webhooks(conn, party.id))
        event_store.insert_webhook(conn, webhook)

    ctx.db.run(work)
    return {**_public(webhook), "secret": webhook["secret"]}


def list_webhooks(
    ctx: Context, party: Party, limit: int, cursor: str | None
) -> Page[dict[str, Any]]:
    """The caller's webhooks, newest first (never their secrets)."""
    start = paging.after("webhooks", cursor, paging.TIME_THEN_ID)
    with ctx.db.read() as conn:
        rows = event_store.webhook_rows(conn, party.id, paging.check_limit(limit) + 1, start)
    page, next_cursor = paging.page_of(rows, limit, "webhooks", lambda r: (r.created_at, r.id))
    return Page([_public(row._asdict()) for row in page], next_cursor)


def delete_webhook(ctx: Context, party: Party, webhook_id: str) -> None:
    """Delete one of the caller's webhooks; attempts still waiting are dropped."""

    def work(conn: Connection) -> None:
        _own(conn, party, webhook_id)
        event_store.delete_webhook(conn, webhook_id)

    ctx.db.run(work)


def list_deliveries(
    ctx: Context, party: Party, webhook_id: str, limit: int, cursor: str | None
) -> Page[dict[str, Any]]:
    """Every attempt to deliver to one of the caller's webhooks, newest first."""
    start = paging.after("deliveries", cursor, paging.SEQUENCE)
    with ctx.db.read() as conn:
        _own(conn, party, webhook_id)
        after = None if start is None else int(str(start[0]))
        rows = event_store.delivery_rows(conn, webhook_id, paging.check_limit(limit) + 1, after)
    page, next_cursor = paging.page_of(rows, limit, "deliveries", lambda r: (r.seq,))
    return Page([_attempt(row) for row in page], next_cursor)


def check_own(ctx: Context, party: Party, webhook_id: str) -> None:
    """404 unless the webhook is the party's: checked before a request's query is (section 2's
    order), so that a stranger learns nothing from a 422."""
    with ctx.db.read() as conn:
        _own(conn, party, webhook_id)


def _own(conn: Connection, party: Party, webhook_id: str) -> None:
    row = event_store.get_webhook(conn, webhook_id)
    if row is None or row.party_id != party.id:
        raise NotFound("no such webhook")


def _public(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "url": row["url"],
        "events": json.loads(row["events_json"]),
        "created_at": row["created_at"].isoformat(),
    }


def _attempt(row: Any) -> dict[str, Any]:
    return {
        "event_id": row.event_id,
        "type": row.type,
        "attempt": row.attempt,
        "status_code": row.status_code,
        "error": row.error,
        "at": row.at.isoformat(),
        "delivered": row.delivered,
    }
