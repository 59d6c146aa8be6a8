"""Helpers for the events tests: webhooks over the API, the events a party got, a worker."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from gateway.context import Context
from gateway.events import store as event_store
from gateway.events.delivery import DeliveryWorker


def add_webhook(
    api: TestClient, headers: dict[str, str], url: str, events: list[str] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"url": url} | ({"events": events} if events is not None else {})
    response = api.post("/v1/webhooks", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


def events_of(ctx: Context, recipient: str) -> list[dict[str, Any]]:
    """Every event kept for this owner or merchant, oldest first."""
    with ctx.db.read() as conn:
        return [event_store.event_of(r) for r in event_store.events_after(conn, recipient, 0, 1000)]


def types_of(ctx: Context, recipient: str) -> list[str]:
    return [e["type"] for e in events_of(ctx, recipient)]


def deliveries(api: TestClient, headers: dict[str, str], webhook_id: str) -> list[dict[str, Any]]:
    response = api.get(f"/v1/webhooks/{webhook_id}/deliveries", headers=headers)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


def eventually(check: Callable[[], Any], timeout_s: float = 10) -> Any:
    """Poll until `check()` is truthy; its last value."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def run_rounds(worker: DeliveryWorker, rounds: int = 3) -> None:
    """Run the worker's rounds in this thread and wait for the attempts they start."""
    for _ in range(rounds):
        worker.tick()
        worker.wait_idle()


def body_json(raw: bytes) -> dict[str, Any]:
    return dict(json.loads(raw))
