"""Contract section 5 over HTTP: rules, mandates, approvals; and the owner's audit view."""

from __future__ import annotations

from functools import partial

from tests.support.concurrency import at_once
from tests.support.world import World


def test_rules_round_trip_and_unknown_fields_are_422(world: World) -> None:
    car = world.device("car", rules=None)
    rules = {
        "currency": "EUR",
        "max_amount": 5000,
        "limits": [{"period": "day", "amount": 20000}],
        "approval_above": 3000,
    }
    put = world.api.put(f"/v1/devices/{car.id}/rules", json=rules, headers=car.owner)
    assert put.status_code == 200
    got = world.api.get(f"/v1/devices/{car.id}/rules", headers=car.owner).json()
    assert {k: got[k] for k in rules} == rules
    for bad in (
        {"max_amont": 5},
        {"max_amount": 1.5},
        {"limits": [{"period": "hour", "amount": 1}]},
    ):
        response = world.api.put(f"/v1/devices/{car.id}/rules", json=bad, headers=car.owner)
        assert response.status_code == 422, bad
    assert world.api.get(f"/v1/devices/{car.id}/rules", headers=car.owner).json() == got


def test_no_rules_means_approval_unless_a_mandate_covers(world: World) -> None:
    shop = world.party("merchants", {"name": "insurer", "category": "insurance"})
    car = world.device("car")  # never PUT rules
    order = car.order(type="pay", payee=shop["id"], amount=900, currency="EUR")
    assert car.send(order)["status"] == "pending_approval"
    unknown = world.api.post(
        f"/v1/devices/{car.id}/mandates",
        headers=car.owner,
        json={"payee": "mer_nobody", "max_amount": 1000},
    )
    assert unknown.status_code == 422 and unknown.json()["error"]["code"] == "unknown_payee"
    created = world.api.post(
        f"/v1/devices/{car.id}/mandates",
        headers=car.owner,
        json={
            "payee": shop["id"],
            "category": "insurance",
            "max_amount": 1000,
            "limits": [{"period": "month", "amount": 1500}],
        },
    )
    assert created.status_code == 201 and created.json()["status"] == "active"
    covered = car.send(car.order(type="pay", payee=shop["id"], amount=900, currency="EUR"))
    assert covered["status"] == "approved"
    over_limit = car.send(car.order(type="pay", payee=shop["id"], amount=900, currency="EUR"))
    assert over_limit["status"] == "pending_approval"  # the mandate's month limit is used up
    revoked = world.api.delete(f"/v1/mandates/{created.json()['id']}", headers=car.owner)
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    small = car.send(car.order(type="pay", payee=shop["id"], amount=10, currency="EUR"))
    assert small["status"] == "pending_approval"
    other = world.device("other")
    assert (
        world.api.delete(f"/v1/mandates/{created.json()['id']}", headers=other.owner).status_code
        == 404
    )


def test_approval_decision_reruns_the_checks(world: World) -> None:
    shop = world.party("merchants", {"name": "grocer", "category": "groceries"})
    fridge = world.device("fridge", top_up=5000, rules={"currency": "EUR", "approval_above": 100})
    first = fridge.send(fridge.order(type="pay", payee=shop["id"], amount=4000, currency="EUR"))
    second = fridge.send(fridge.order(type="pay", payee=shop["id"], amount=4000, currency="EUR"))
    assert first["status"] == second["status"] == "pending_approval"  # reserves nothing
    pending = world.api.get("/v1/approvals?status=pending", headers=fridge.owner).json()["items"]
    assert len(pending) == 2
    decisions = [
        world.api.post(
            f"/v1/approvals/{item['id']}", json={"decision": "approve"}, headers=fridge.owner
        ).json()["result"]
        for item in reversed(pending)
    ]
    assert decisions == [
        {"status": "approved", "reason": None},
        {"status": "declined", "reason": "insufficient_funds"},
    ]
    assert world.balance(fridge) == 1000
    stranger = world.device("stranger")
    assert (
        world.api.post(
            f"/v1/approvals/{pending[0]['id']}",
            json={"decision": "approve"},
            headers=stranger.owner,
        ).status_code
        == 404
    )
    assert (
        world.api.post(
            f"/v1/approvals/{pending[0]['id']}", json={"decision": "maybe"}, headers=fridge.owner
        ).status_code
        == 422
    )


def test_owner_reads_the_audit_trail_of_their_device(world: World) -> None:
    shop = world.party("merchants", {"name": "shop", "category": "fuel"})
    car = world.device("car", rules={"currency": "EUR"})
    car.send(car.order(type="pay", payee=shop["id"], amount=100, currency="EUR"))
    entries = world.api.get(f"/v1/devices/{car.id}/audit", headers=car.owner).json()["items"]
    actions = [e["action"] for e in entries]
    assert actions[-1] == "device.registered" and "order.approved" in actions  # newest first
    assert "device.approve" in actions and "rules.replaced" in actions
    assert [e["seq"] for e in entries] == sorted((e["seq"] for e in entries), reverse=True)
    other = world.device("other")
    assert world.api.get(f"/v1/devices/{car.id}/audit", headers=other.owner).status_code == 404


def test_mandate_dates_a_database_cannot_store_are_422_and_orders_still_flow(
    world: World,
) -> None:
    shop = world.party("merchants", {"name": "insurer", "category": "insurance"})
    car = world.device("car", rules={"currency": "EUR"})
    url = f"/v1/devices/{car.id}/mandates"
    for dates in (
        {"valid_from": "0001-01-01T00:00:00+14:00"},  # 1 BC in UTC: stored by PostgreSQL, unread
        {"valid_until": "9999-12-31T23:59:59-14:00"},  # year 10000 in UTC
        {"valid_from": "1969-12-31T00:00:00Z"},
    ):
        refused = world.api.post(url, headers=car.owner, json={"max_amount": 5, **dates})
        assert refused.status_code == 422, (dates, refused.text)
    assert world.api.get(url, headers=car.owner).json()["items"] == []
    late = {"max_amount": 5, "valid_until": "9998-12-31T00:00:00Z"}
    assert world.api.post(url, headers=car.owner, json=late).status_code == 201
    paid = car.send(car.order(type="pay", payee=shop["id"], amount=3, currency="EUR"))
    assert paid["status"] == "approved"


def test_the_same_rules_put_four_times_at_once_are_stored_and_answered_four_times(
    world: World,
) -> None:
    car = world.device("car", rules={"currency": "EUR"})
    url = f"/v1/devices/{car.id}/rules"
    for n in range(3):  # a DELETE then an INSERT each: the later inserts failed on the key
        rules = {"currency": "EUR", "max_amount": 100 + n}
        answers = at_once([partial(world.api.put, url, json=rules, headers=car.owner)] * 4)
        assert [a.status_code for a in answers] == [200] * 4, [a.text for a in answers]
        assert world.api.get(url, headers=car.owner).json()["max_amount"] == 100 + n
