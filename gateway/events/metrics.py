"""Prometheus metrics (contract section 7) with `prometheus_client`, in one registry per process.

Counters and the decision histogram are counted where things happen (the MQTT worker after its
commit, the webhook worker after each attempt); the gauges are read when `/metrics` is scraped,
from the sources `kym serve` registers (`watch`): the workers' queues, the broker connections
and the database's unpublished outbox.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REGISTRY = CollectorRegistry()
ORDERS = Counter(
    "kym_orders",
    "Orders decided, by result status and reason",
    ["status", "reason"],
    registry=REGISTRY,
)
DECISION_SECONDS = Histogram(
    "kym_decision_seconds",
    "From an order's arrival to its committed result",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge(
    "kym_queue_depth", "Orders received, not yet taken by a worker", registry=REGISTRY
)
OUTBOX_UNPUBLISHED = Gauge(
    "kym_outbox_unpublished",
    "Results and device events not yet acknowledged by the broker",
    registry=REGISTRY,
)
BROKER_CONNECTED = Gauge(
    "kym_broker_connected", "1 when every gateway MQTT client is connected", registry=REGISTRY
)
WEBHOOK_DELIVERIES = Counter(
    "kym_webhook_deliveries", "Webhook attempts by outcome", ["outcome"], registry=REGISTRY
)
EVENTS_UNFANNED = Gauge(
    "kym_events_unfanned", "Events not yet handed to the webhook worker", registry=REGISTRY
)
for _outcome in ("delivered", "failed"):
    WEBHOOK_DELIVERIES.labels(outcome=_outcome)

_sources: dict[str, Callable[[], float]] = {}


def watch(name: str, read: Callable[[], float]) -> None:
    """Read the gauge `name` (queue_depth, outbox_unpublished, ...) from `read` at scrape time."""
    _sources[name] = read


def render(read_database: Callable[[], dict[str, float]]) -> bytes:
    """The metrics in the Prometheus text format, gauges read now."""
    gauges = {
        "queue_depth": QUEUE_DEPTH,
        "broker_connected": BROKER_CONNECTED,
        "outbox_unpublished": OUTBOX_UNPUBLISHED,
        "events_unfanned": EVENTS_UNFANNED,
    }
    values = {name: read() for name, read in list(_sources.items())}
    values |= read_database()
    for name, gauge in gauges.items():
        if name in values:
            gauge.set(values[name])
    return generate_latest(REGISTRY)


def webhook_delivery(outcome: str) -> None:
    WEBHOOK_DELIVERIES.labels(outcome=outcome).inc()


Outcomes = dict[tuple[str, str], int]  # (status, reason or "") -> how many


def outcomes_of(payloads: Iterable[Mapping[str, Any]]) -> Outcomes:
    """What a batch's results count for: by status and reason, leaving out duplicates (a
    replay's answer), events (no status) and rate-limit refusals (counted where refused)."""
    counted: Outcomes = {}
    for payload in payloads:
        if "status" not in payload or payload.get("duplicate"):
            continue
        reason = payload.get("reason") or ""
        if reason == "rate_limited":
            continue
        key = (str(payload["status"]), str(reason))
        counted[key] = counted.get(key, 0) + 1
    return counted


def observe_decisions(arrivals: Iterable[float], entries: Iterable[tuple[int, str, str]]) -> None:
    """Count committed outbox entries: their results by status and reason (read back from
    the signed tokens; `observe_outcomes` when the payloads are at hand), and the time from
    each message's arrival (`time.monotonic()`) until now."""
    payloads = (_payload(token) for _, _, token in entries)
    observe_outcomes(arrivals, outcomes_of(p for p in payloads if p is not None))


def observe_outcomes(arrivals: Iterable[float], outcomes: Outcomes) -> None:
    """Count a committed batch's `outcomes` (`outcomes_of` its results' payloads), and the time
    from each message's arrival (`time.monotonic()`) until now."""
    now = time.monotonic()
    for arrived in arrivals:
        if arrived:
            DECISION_SECONDS.observe(max(0.0, now - arrived))
    for (status, reason), count in outcomes.items():
        ORDERS.labels(status=status, reason=reason).inc(count)


def _payload(token: str) -> dict[str, Any] | None:
    try:
        part = token.split(".")[1]
        decoded = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (IndexError, ValueError, binascii.Error):
        return None
    return decoded if isinstance(decoded, dict) else None
