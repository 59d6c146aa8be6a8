"""Webhooks (contract section 7): an owner or a merchant adds, lists and deletes them, and reads
each one's delivery log. Delivery itself is `gateway.events.delivery`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from pydantic import Field, StringConstraints

from gateway.events import webhooks
from gateway.http.deps import Ctx, kind_of
from gateway.http.public import Public
from gateway.http.schemas import MAX_TEXT, Body
from gateway.parties import Party

router = APIRouter(tags=["webhooks"])
OwnerOrMerchant = Annotated[Party, Depends(kind_of("owner", "merchant"))]
Limit = Annotated[int, Query(ge=1, le=200, description="1 to 200 items (default 200)")]
Cursor = Annotated[
    str | None, Query(max_length=MAX_TEXT, description="`next_cursor` of the previous page")
]
EventType = Annotated[str, StringConstraints(min_length=1, max_length=40)]


class WebhookCreate(Body):
    url: Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT)]
    events: Annotated[list[EventType], Field(max_length=100)] | None = None


class WebhookPublic(Public):
    id: str
    url: str
    events: list[str]
    created_at: str


class WebhookCreated(WebhookPublic):
    """A new webhook; its signing secret (`whsec_...`) is shown only here."""

    secret: str


class WebhookPage(Public):
    items: list[WebhookPublic]
    next_cursor: str | None


class DeliveryPublic(Public):
    """One attempt to deliver an event (numbered from 1); `status_code` is null when no HTTP
    answer came (refused address, connection error, timeout)."""

    event_id: str
    type: str
    attempt: int
    status_code: int | None
    error: str | None
    at: str
    delivered: bool


class DeliveryPage(Public):
    items: list[DeliveryPublic]
    next_cursor: str | None


@router.post("/v1/webhooks", status_code=201)
def create_webhook(body: WebhookCreate, ctx: Ctx, caller: OwnerOrMerchant) -> WebhookCreated:
    """Add a webhook for the caller's events (all of them when `events` is absent)."""
    created = webhooks.create_webhook(ctx, caller, body.url, body.events)
    return WebhookCreated.model_validate(created)


@router.get("/v1/webhooks")
def list_webhooks(
    ctx: Ctx, caller: OwnerOrMerchant, limit: Limit = 200, cursor: Cursor = None
) -> WebhookPage:
    """The caller's webhooks, newest first (never their secrets)."""
    page = webhooks.list_webhooks(ctx, caller, limit, cursor)
    return WebhookPage.model_validate({"items": page.items, "next_cursor": page.next_cursor})


@router.delete("/v1/webhooks/{webhook_id}", status_code=204, response_class=Response)
def delete_webhook(webhook_id: str, ctx: Ctx, caller: OwnerOrMerchant) -> Response:
    """Delete one of the caller's webhooks; attempts still waiting are dropped."""
    webhooks.delete_webhook(ctx, caller, webhook_id)
    return Response(status_code=204)


def own_webhook(webhook_id: str, ctx: Ctx, caller: OwnerOrMerchant) -> str:
    """The path's webhook, 404 unless it is the caller's: a dependency, so before the query's
    422 (FastAPI solves dependencies before it validates the endpoint's own parameters)."""
    webhooks.check_own(ctx, caller, webhook_id)
    return webhook_id


OwnWebhook = Annotated[str, Depends(own_webhook)]


@router.get("/v1/webhooks/{webhook_id}/deliveries")
def list_deliveries(
    webhook_id: OwnWebhook,
    ctx: Ctx,
    caller: OwnerOrMerchant,
    limit: Limit = 200,
    cursor: Cursor = None,
) -> DeliveryPage:
    """Every attempt to deliver to this webhook, newest first."""
    page = webhooks.list_deliveries(ctx, caller, webhook_id, limit, cursor)
    return DeliveryPage.model_validate({"items": page.items, "next_cursor": page.next_cursor})
