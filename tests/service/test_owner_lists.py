"""Contract section 7: the paged lists, spending, and what approval items say (SQLite and
PostgreSQL, through the real HTTP app and the real decision)."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from tests.support.openssl import make_openssl_csr
from tests.support.world import ADMIN, Clock, World, bearer

_serials = itertools.count(1)


def register(world: World, integrator: dict[str, Any], owner_id: str, **extra: Any) -> str:
    _key, csr = make_openssl_csr(world.tmp, f"fleet-{next(_serials)}")
    body = {
        "owner_id": owner_id,
        **{"kind": "fridge", "manufacturer": "Kelvin", "model": "Cool 3"},
        **{"serial_number": f"K-{next(_serials)}", "csr": csr, **extra},
    }
    response = world.api.post("/v1/devices", json=body, headers=bearer(integrator["api_key"]))
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def every_page(world: World, path: str, headers: dict[str, str], limit: int) -> list[list[str]]:
    """The ids on each page, following next_cursor to the end."""
    pages, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        response = world.api.get(path, headers=headers, params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append([item.get("id") or item.get("payment_id") for item in body["items"]])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages


def test_devices_page_newest_first_and_a_cursor_keeps_its_place(world: World) -> None:
    owner = world.party("owners", {"name": "Ada", "timezone": "Europe/Berlin"})
    maker = world.party("integrators", {"name": "Kelvin"})
    ids = [register(world, maker, owner["id"]) for _ in range(5)]
    as_owner = bearer(owner["api_key"])
    first = world.api.get("/v1/devices", headers=as_owner, params={"limit": 2}).json()
    assert [d["id"] for d in first["items"]] == ids[::-1][:2]
    assert first["items"][0]["certificate_serial"] and first["items"][0]["status"] == "pending"
    added_later = register(world, maker, owner["id"])
    rest, cursor = [], first["next_cursor"]
    while cursor:
        page = world.api.get("/v1/devices", headers=as_owner, params={"limit": 2, "cursor": cursor})
        rest += [d["id"] for d in page.json()["items"]]
        cursor = page.json()["next_cursor"]
    assert rest == ids[::-1][2:] and added_later not in rest  # never repeated, never skipped
    whole = world.api.get("/v1/devices", headers=as_owner, params={"limit": 6}).json()
    assert whole["next_cursor"] is None and len(whole["items"]) == 6  # the last item is here
    short = world.api.get("/v1/devices", headers=as_owner, params={"limit": 5}).json()
    assert short["next_cursor"] is not None
    by_integrator = world.api.get("/v1/devices", headers=bearer(maker["api_key"])).json()
    assert [d["id"] for d in by_integrator["items"]] == [added_later, *ids[::-1]]
    assert world.api.post(f"/v1/devices/{ids[0]}/approve", headers=as_owner).status_code == 200
    active = world.api.get("/v1/devices?status=active", headers=as_owner).json()["items"]
    assert [d["id"] for d in active] == [ids[0]]
    stranger = world.party("owners", {"name": "Eve", "timezone": "UTC"})
    assert world.api.get("/v1/devices", headers=bearer(stranger["api_key"])).json() == {
        "items": [],
        "next_cursor": None,
    }


def test_payments_page_by_status_for_owner_and_merchant(world: World) -> None:
    shop = world.merchant("fuel")
    car = world.device("car", rules={"currency": "EUR"})
    paid = [car.pay(shop["id"], 100 + i) for i in range(3)]
    assert all(status == "approved" for status, _ in paid)
    hold = car.send(car.order(type="hold", payee=shop["id"], amount=500, currency="EUR"))
    assert hold["status"] == "approved"
    path = f"/v1/devices/{car.id}/payments"
    pages = every_page(world, path, car.owner, 2)
    assert [len(p) for p in pages] == [2, 2] and pages[0][0] == hold["payment_id"]
    held = world.api.get(path, headers=car.owner, params={"status": "held"}).json()["items"]
    assert [p["payment_id"] for p in held] == [hold["payment_id"]]
    done = world.api.get(path, headers=car.owner, params={"status": "completed"}).json()
    assert [p["amount"] for p in done["items"]] == [102, 101, 100]
    merchant = bearer(shop["api_key"])
    merchant_pages = every_page(world, "/v1/merchants/me/payments", merchant, 3)
    assert sum(merchant_pages, []) == sum(pages, [])
    for bogus in ({"status": "pending"}, {"limit": 0}, {"cursor": "bm9wZQ"}):
        refused = world.api.get(path, headers=car.owner, params=bogus)
        assert refused.status_code == 422, bogus
        assert refused.json()["error"]["code"] == "invalid_request"


def test_approval_items_say_what_to_whom_why_and_until_when(world: World) -> None:
    shop = world.party("merchants", {"name": "Corner Shop", "category": "groceries"})
    fridge = world.device("fridge")  # no rules: every payment asks
    asked = fridge.send(
        fridge.order(type="pay", payee=shop["id"], amount=700, currency="EUR", description="milk")
    )
    assert asked["status"] == "pending_approval"
    car = world.device("car", rules={"currency": "EUR", "approval_above": 50})
    charger = world.device("charger")  # a device payee without a category
    big = car.send(car.order(type="hold", payee=charger.id, amount=60, currency="EUR"))
    assert big["status"] == "pending_approval"
    [item] = world.api.get("/v1/approvals", headers=fridge.owner).json()["items"]
    assert item == {
        "id": asked["approval_id"],
        "device_id": fridge.id,
        "order_id": asked["order_id"],
        "kind": "pay",
        "amount": 700,
        "currency": "EUR",
        "payee": shop["id"],
        "payee_name": "Corner Shop",
        "support": {"email": None, "url": None},  # section 9: none disclosed
        "category": "groceries",
        "description": "milk",
        "why": "no_rules",
        "status": "pending",
        "expires_at": item["expires_at"],
        "created_at": item["created_at"],
    }
    expires = datetime.fromisoformat(item["expires_at"]) - datetime.fromisoformat(
        item["created_at"]
    )
    assert expires == timedelta(seconds=300)
    [hold] = world.api.get("/v1/approvals?status=pending", headers=car.owner).json()["items"]
    assert (hold["kind"], hold["why"], hold["category"]) == ("hold", "approval_above", "other")
    assert hold["payee_name"] == "charger M" and hold["description"] is None
    decided = world.api.post(
        f"/v1/approvals/{hold['id']}", headers=car.owner, json={"decision": "decline"}
    )
    assert decided.status_code == 200 and decided.json()["payee_name"] == "charger M"
    assert world.api.get("/v1/approvals?status=pending", headers=car.owner).json()["items"] == []
    declined = world.api.get("/v1/approvals?status=declined", headers=car.owner).json()["items"]
    assert [a["id"] for a in declined] == [hold["id"]]
    bogus = world.api.get("/v1/approvals?status=bogus", headers=car.owner)
    assert bogus.status_code == 422 and bogus.json()["error"]["code"] == "invalid_request"


def test_approvals_page_through_many(world: World) -> None:
    shop = world.merchant("groceries")
    fridge = world.device("fridge")
    asked = [fridge.send(fridge.order(type="pay", payee=shop["id"], amount=i + 1, currency="EUR"))
             for i in range(5)]  # fmt: skip
    pages = every_page(world, "/v1/approvals", fridge.owner, 2)
    assert [len(p) for p in pages] == [2, 2, 1]
    assert sum(pages, []) == [a["approval_id"] for a in reversed(asked)]


def test_mandates_list_used_remaining_and_status(world: World, clock: Clock) -> None:
    shop = world.party("merchants", {"name": "insurer", "category": "insurance"})
    car = world.device("car")
    path = f"/v1/devices/{car.id}/mandates"
    monthly = {"payee": shop["id"], "max_amount": 1000}
    monthly["limits"] = [{"period": "month", "amount": 1500}]
    covering = world.api.post(path, headers=car.owner, json=monthly).json()["id"]
    soon = (clock() + timedelta(hours=1)).isoformat()
    brief = world.api.post(path, headers=car.owner, json={"max_amount": 5, "valid_until": soon})
    spare = world.api.post(path, headers=car.owner, json={"category": "fuel", "max_amount": 9})
    assert (
        world.api.delete(f"/v1/mandates/{spare.json()['id']}", headers=car.owner).status_code == 200
    )
    assert car.pay(shop["id"], 900) == ("approved", None)
    items = world.api.get(path, headers=car.owner).json()["items"]
    assert [m["status"] for m in items] == ["revoked", "active", "active"]
    assert items[2]["id"] == covering and items[2]["limits"] == [
        {"period": "month", "amount": 1500, "used": 900, "remaining": 600}
    ]
    assert items[2]["payee"] == shop["id"] and items[2]["max_amount"] == 1000
    assert items[1]["valid_until"] is not None and items[1]["limits"] == []
    clock.advance(2 * 3600)
    expired = world.api.get(path, headers=car.owner, params={"status": "expired"}).json()
    assert [m["id"] for m in expired["items"]] == [brief.json()["id"]]
    active = world.api.get(path, headers=car.owner, params={"status": "active"}).json()
    assert [m["id"] for m in active["items"]] == [covering]
    later, sooner = (clock() + timedelta(hours=h) for h in (2, 1))
    backwards = {
        "max_amount": 5,
        "valid_from": later.isoformat(),
        "valid_until": sooner.isoformat(),
    }
    refused = world.api.post(path, headers=car.owner, json=backwards)
    assert refused.status_code == 422 and "valid_from" in refused.json()["error"]["message"]
    assert world.api.get(path, headers=car.owner, params={"status": "x"}).status_code == 422
    other = world.device("other")
    assert world.api.get(path, headers=other.owner).status_code == 404


def test_spending_counts_approved_payments_and_says_when_limits_reset(
    world: World, clock: Clock
) -> None:
    shop = world.merchant("fuel")
    rules: dict[str, Any] = {
        "limits": [{"period": "day", "amount": 2000}, {"period": "month", "amount": 5000}]
    }
    rules |= {"max_payments": [{"period": "week", "count": 3}], "approval_above": 1000}
    car = world.device("car", rules=rules)
    assert car.pay(shop["id"], 800) == ("approved", None)
    assert car.pay(shop["id"], 1001)[0] == "pending_approval"  # does not count
    spending = world.api.get(f"/v1/devices/{car.id}/spending", headers=car.owner).json()
    berlin = ZoneInfo("Europe/Berlin")
    local = clock().astimezone(berlin)
    midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), berlin)
    assert spending["currency"] == "EUR"
    day, month = spending["limits"]
    assert day == {
        "period": "day",
        "amount": 2000,
        "spent": 800,
        "remaining": 1200,
        "resets_at": midnight.isoformat(),
    }
    assert (month["spent"], month["remaining"]) == (800, 4200)
    assert month["resets_at"].endswith(("T00:00:00+01:00", "T00:00:00+02:00"))
    [week] = spending["max_payments"]
    assert (week["count"], week["used"], week["remaining"]) == (3, 1, 2)
    monday = datetime.fromisoformat(week["resets_at"])
    assert monday.weekday() == 0 and monday.time() == datetime.min.time() and monday > clock()
    car.put_rules({**rules, "limits": [{"period": "day", "amount": 500}]})
    lowered = world.api.get(f"/v1/devices/{car.id}/spending", headers=car.owner).json()
    assert lowered["limits"][0]["remaining"] == 0  # never below 0
    car.put_rules({})
    bare = world.api.get(f"/v1/devices/{car.id}/spending", headers=car.owner).json()
    assert bare == {"currency": "EUR", "limits": [], "max_payments": []}
    assert world.api.get(f"/v1/devices/{car.id}/spending", headers=ADMIN).status_code == 403


def test_audit_trail_pages_newest_first(world: World) -> None:
    shop = world.merchant("fuel")
    car = world.device("car", rules={"currency": "EUR"})
    for amount in (1, 2, 3):
        car.pay(shop["id"], amount)
    path = f"/v1/devices/{car.id}/audit"
    everything = world.api.get(path, headers=car.owner).json()
    assert everything["next_cursor"] is None
    seqs = [e["seq"] for e in everything["items"]]
    assert seqs == sorted(seqs, reverse=True) and len(seqs) >= 6
    paged: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 4, **({"cursor": cursor} if cursor else {})}
        page = world.api.get(path, headers=car.owner, params=params).json()
        paged += [e["seq"] for e in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        car.pay(shop["id"], 5)  # entries appended meanwhile are not on later pages
    assert paged == seqs


def test_lists_are_no_longer_cut_at_200(world: World) -> None:
    shop = world.merchant("groceries")
    fridge = world.device("fridge")  # no rules: each order waits for its owner
    orders = [
        fridge.order(type="pay", payee=shop["id"], amount=1, currency="EUR") for _ in range(205)
    ]
    out = world.deliver([(fridge.topic, fridge.sign(order)) for order in orders])
    assert sum(m.get("status") == "pending_approval" for m in out) == 205
    first = world.api.get("/v1/approvals", headers=fridge.owner).json()
    assert len(first["items"]) == 200 and first["next_cursor"] is not None
    rest = world.api.get(
        "/v1/approvals", headers=fridge.owner, params={"cursor": first["next_cursor"]}
    ).json()
    assert len(rest["items"]) == 5 and rest["next_cursor"] is None
    ids = [a["order_id"] for a in first["items"] + rest["items"]]
    assert sorted(ids) == sorted(o["order_id"] for o in orders)
