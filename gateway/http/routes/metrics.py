"""Prometheus metrics (contract section 7), for the admin only."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from gateway.context import Context
from gateway.events import metrics
from gateway.events import store as event_store
from gateway.http.deps import Admin, Ctx
from gateway.orders import store as order_store

router = APIRouter(tags=["metrics"])
TEXT: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/plain": {"schema": {"type": "string"}}}}
}


def database_gauges(ctx: Context) -> dict[str, float]:
    """The gauges the database answers: results not yet acknowledged by the broker, and events
    not yet handed to the webhook worker."""
    with ctx.db.read() as conn:
        return {
            "outbox_unpublished": float(order_store.count_unpublished(conn)),
            "events_unfanned": event_store.unfanned(conn),
        }


@router.get("/metrics", response_class=Response, responses=TEXT)
def get_metrics(ctx: Ctx, _: Admin) -> Response:
    """The gateway's metrics in the Prometheus text format (admin)."""
    body = metrics.render(lambda: database_gauges(ctx))
    return Response(body, media_type=CONTENT_TYPE_LATEST)
