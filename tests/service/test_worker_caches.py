"""Contract sections 5 and 7: a change made through the API applies to the very next batch of every
worker, although each worker keeps copies of certificates, owners' settings, rules, mandates and
instalment policies (`gateway.orders.cache`). Two contexts on one database stand for two gateway
processes: changes go through one's API, orders through the other's worker (SQLite and
PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from gateway.context import Context
from gateway.orders.intake import KeyRing
from gateway.server import build_context
from tests.funding.offer_setup import POLICY_URL, line_for, put_policy
from tests.support.world import Dev, World, counting_transactions


@pytest.fixture
def other(world: World) -> Iterator[World]:
    """A second gateway process on the same database and data dir, with its own worker."""
    ctx: Context = replace(build_context(world.ctx.settings), clock=world.ctx.clock)
    yield World(ctx, world.api, world.tmp, KeyRing())
    ctx.db.dispose()


def pay(worker: World, dev: Dev, payee: str, amount: int) -> tuple[str, str | None]:
    """(status, reason) of a pay in EUR decided by `worker`."""
    order = dev.order(type="pay", payee=payee, amount=amount, currency="EUR")
    out = worker.deliver([(dev.topic, dev.sign(order))])
    result: dict[str, Any] = next(m for m in out if m.get("device_id") == dev.id and "status" in m)
    return result["status"], result["reason"]


def test_another_worker_sees_rules_mandates_freeze_and_revoke_at_once(
    world: World, other: World
) -> None:
    shop = world.merchant("groceries")["id"]
    car = world.device("car", rules={"currency": "EUR"})
    assert pay(other, car, shop, 50) == ("approved", None)  # the other worker has copies now
    assert pay(world, car, shop, 50) == ("approved", None)
    car.put_rules({"currency": "EUR", "max_amount": 20})
    assert pay(other, car, shop, 50) == ("declined", "amount_over_limit")
    car.put_rules({})  # no rules: approval needed unless a mandate covers the order
    assert pay(other, car, shop, 50) == ("pending_approval", None)
    created = world.api.post(
        f"/v1/devices/{car.id}/mandates", headers=car.owner, json={"max_amount": 100}
    )
    assert created.status_code == 201, created.text
    assert pay(other, car, shop, 50) == ("approved", None)
    revoked = world.api.delete(f"/v1/mandates/{created.json()['id']}", headers=car.owner)
    assert revoked.status_code == 200, revoked.text
    assert pay(other, car, shop, 50) == ("pending_approval", None)
    car.put_rules({"currency": "EUR"})
    assert pay(other, car, shop, 50) == ("approved", None)
    assert world.api.post("/v1/owners/me/freeze", headers=car.owner).status_code == 200
    assert pay(other, car, shop, 50) == ("declined", "owner_frozen")
    assert world.api.post("/v1/owners/me/unfreeze", headers=car.owner).status_code == 200
    assert pay(other, car, shop, 50) == ("approved", None)
    assert car.act("revoke").status_code == 200
    assert pay(other, car, shop, 50) == ("declined", "device_not_active")


def test_a_worker_reads_its_copies_only_while_nothing_changed(world: World) -> None:
    shop = world.merchant("groceries")["id"]
    car = world.device("car", rules={"currency": "EUR"})
    assert pay(world, car, shop, 5) == ("approved", None)
    cache = world.keyring.state
    version = cache.version
    assert version is not None
    assert pay(world, car, shop, 5) == ("approved", None)  # decided from the copies
    assert cache.version == version
    car.put_rules({"currency": "EUR", "max_amount": 1})
    assert pay(world, car, shop, 5) == ("declined", "amount_over_limit")
    assert cache.version is not None and cache.version > version


def test_another_worker_sees_an_instalment_policy_put_changed_and_deleted_at_once(
    world: World, other: World
) -> None:
    shop = world.merchant("maintenance")["id"]
    car = world.device("car", top_up=0, rules={"currency": "EUR"})
    line = line_for(world, car)
    uncovered = ("declined", "insufficient_funds")
    assert pay(other, car, shop, 1_000) == uncovered  # the other worker keeps "no policy"
    put_policy(world, car, line["id"])
    assert pay(other, car, shop, 1_000) == ("pending_approval", None)  # an instalment offer
    put_policy(world, car, line["id"], max_amount=500)
    assert pay(other, car, shop, 1_000) == uncovered  # above the policy's amounts now
    put_policy(world, car, line["id"], max_amount=5_000)
    assert pay(other, car, shop, 1_000) == ("pending_approval", None)
    deleted = world.api.delete(POLICY_URL, headers=car.owner)
    assert deleted.status_code in (200, 204), deleted.text
    assert pay(other, car, shop, 1_000) == uncovered


def test_a_batch_decided_from_stale_copies_is_decided_again_before_anything_is_written(
    world: World, other: World
) -> None:
    """The counter is read in the round trip that locks the senders: a batch that used copies
    older than a change is rolled back and decided again, the counter read first."""
    shop = world.merchant("groceries")["id"]
    car = world.device("car", rules={"currency": "EUR"})
    assert pay(other, car, shop, 50) == ("approved", None)  # the other worker has copies now
    with counting_transactions(other.ctx.db.engine) as begins:
        assert pay(other, car, shop, 50) == ("approved", None)
        assert len(begins) == 1  # nothing changed: one transaction
        car.put_rules({"currency": "EUR", "max_amount": 20})
        assert pay(other, car, shop, 50) == ("declined", "amount_over_limit")
        assert len(begins) == 3  # the stale attempt, rolled back, then the batch again
        assert pay(other, car, shop, 10) == ("approved", None)
        assert len(begins) == 4
    assert car.wallet()["available"] == 10_000 - 50 - 50 - 10
