"""`GET /metrics` (contract section 7): the admin's, in the Prometheus text format, counting
what a real `kym serve` decided."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from gateway.events import metrics
from gateway.orders.approvals import expire_approvals
from gateway.orders.decide import decide_messages
from gateway.server import free_port
from tests.e2e.serve_helpers import ADMIN, Car
from tests.support.serve import start
from tests.support.world import ADMIN as WORLD_ADMIN
from tests.support.world import Clock, World

NAMES = {
    "kym_orders",
    "kym_decision_seconds",
    "kym_queue_depth",
    "kym_outbox_unpublished",
    "kym_broker_connected",
    "kym_webhook_deliveries",
}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_are_the_admins(world: World, api: TestClient) -> None:
    response = api.get("/metrics", headers=WORLD_ADMIN)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    families = {f.name for f in text_string_to_metric_families(response.text)}
    assert families >= NAMES
    car = world.device("car", top_up=0)
    assert api.get("/metrics", headers=car.owner).status_code == 403
    assert api.get("/metrics").status_code == 401


def test_a_served_gateway_counts_its_decisions(tmp_path: Path) -> None:
    data, http, mqtt_port = tmp_path / "d", free_port(), free_port()
    process = start(tmp_path, data, http, mqtt_port)
    car = Car(http, tmp_path)
    try:
        car.connect(mqtt_port)
        assert car.pay("o-metrics-1")["status"] == "approved"
        text = httpx.get(f"http://127.0.0.1:{http}/metrics", headers=ADMIN, timeout=5).text
    finally:
        car.close()
        process.send_signal(signal.SIGTERM)
        process.wait(15)
    found = samples(text)
    assert found[("kym_orders_total", (("reason", ""), ("status", "approved")))] == 1
    assert found[("kym_decision_seconds_count", ())] >= 1
    assert found[("kym_broker_connected", ())] == 1
    assert found[("kym_queue_depth", ())] == 0


def test_replays_are_not_counted(world: World) -> None:
    shop = world.merchant()
    car = world.device("car", rules={"currency": "EUR"})
    raw = car.sign(car.order(type="pay", payee=shop["id"], amount=10, currency="EUR"))
    approved = metrics.ORDERS.labels(status="approved", reason="")
    before = approved._value.get()
    for _ in range(2):
        entries = decide_messages(world.ctx, world.keyring, [(car.topic, raw)], world.ctx.clock())
        metrics.observe_decisions([time.monotonic()], entries)
    assert approved._value.get() == before + 1


def test_orders_decided_outside_the_worker_are_counted(world: World, clock: Clock) -> None:
    shop = world.merchant("groceries")
    rules = {"currency": "EUR", "approval_above": 10, "approval_ttl_seconds": 60}
    fridge = world.device("fridge", rules=rules)
    order = fridge.order(type="pay", payee=shop["id"], amount=50, currency="EUR")
    assert fridge.send(order)["status"] == "pending_approval"
    expired = metrics.ORDERS.labels(status="declined", reason="approval_expired")
    before = expired._value.get()
    clock.advance(61)
    assert expire_approvals(world.ctx) == 1
    assert expired._value.get() == before + 1


def test_a_batch_fills_in_what_its_results_count_for(world: World) -> None:
    shop = world.merchant()
    car = world.device("car", rules={"currency": "EUR"})
    raw = car.sign(car.order(type="pay", payee=shop["id"], amount=10, currency="EUR"))
    batch = [(car.topic, raw), (car.topic, b"not a JWS")]
    outcomes: metrics.Outcomes = {("stale", "from an earlier batch"): 1}
    entries = decide_messages(world.ctx, world.keyring, batch, world.ctx.clock(), outcomes)
    assert outcomes == {("approved", ""): 1, ("rejected", "invalid_message"): 1}
    assert outcomes == metrics.outcomes_of(
        p for p in map(metrics._payload, [t for _, _, t in entries]) if p is not None
    )
    decide_messages(world.ctx, world.keyring, [(car.topic, raw)], world.ctx.clock(), outcomes)
    assert outcomes == {}  # a replay's answer counts for nothing
