"""What a signed-in owner does in the console, and that nothing changes without the CSRF token,
from another site, or on another owner's things."""

from __future__ import annotations

import html
import re

from fastapi.testclient import TestClient

from tests.support.console import sign_in
from tests.support.world import World


def _status(world: World, device_id: str, owner: dict[str, str]) -> str:
    return str(world.api.get(f"/v1/devices/{device_id}", headers=owner).json()["status"])


def test_a_change_needs_the_sessions_csrf_token_and_our_own_site(
    world: World, browser_like: TestClient
) -> None:
    car = world.device("car")
    csrf = sign_in(browser_like, car.owner["Authorization"].removeprefix("Bearer "))
    path = f"/console/devices/{car.id}/status"
    refused = [
        ({"action": "suspend"}, {}),
        ({"action": "suspend", "csrf_token": "x" + csrf}, {}),
        ({"action": "suspend", "csrf_token": csrf}, {"Origin": "https://evil.example"}),
        ({"action": "suspend", "csrf_token": csrf}, {"Sec-Fetch-Site": "cross-site"}),
    ]
    for form, headers in refused:
        answer = browser_like.post(path, data=form, headers=headers)
        assert answer.status_code == 403, (form, headers)
        assert _status(world, car.id, car.owner) == "active"
    answer = browser_like.post(path, data={"action": "suspend", "csrf_token": csrf})
    assert answer.status_code == 200
    notice = re.search(r'<p class="notice" role="status">([^<]*)</p>', answer.text)
    assert notice and notice.group(1) == "Car · ACME M is now suspended."  # not its id
    assert _status(world, car.id, car.owner) == "suspended"
    header = browser_like.post(path, data={"action": "resume"}, headers={"X-CSRF-Token": csrf})
    assert header.status_code == 200
    assert _status(world, car.id, car.owner) == "active"


def test_an_owner_approves_a_waiting_payment_from_the_inbox(
    world: World, browser_like: TestClient
) -> None:
    shop = world.merchant("groceries")
    fridge = world.device("fridge", rules={"currency": "EUR", "approval_above": 1000})
    assert fridge.pay(shop["id"], 2500) == ("pending_approval", None)
    csrf = sign_in(browser_like, fridge.owner["Authorization"].removeprefix("Bearer "))
    inbox = browser_like.get("/console/approvals/pending").text
    assert "€25.00" in inbox and shop["id"] in inbox
    approval_id = re.search(r'data-approval="([^"]+)"', inbox)
    assert approval_id
    answer = browser_like.post(
        f"/console/approvals/{approval_id.group(1)}",
        data={"decision": "approve", "csrf_token": csrf},
    )
    assert answer.status_code == 200 and "approved" in answer.text
    assert "Nothing is waiting for you" in answer.text
    assert "Recently decided" in answer.text and "status-approved" in answer.text
    assert world.balance(fridge) == 10_000 - 2500
    again = browser_like.post(
        f"/console/approvals/{approval_id.group(1)}",
        data={"decision": "decline", "csrf_token": csrf},
    )
    assert again.status_code == 409 and "no longer pending" in again.text


def test_another_owners_things_are_not_found_and_stay_as_they_were(
    world: World, browser_like: TestClient
) -> None:
    shop = world.merchant()
    car = world.device("car", rules={})
    assert car.pay(shop["id"], 500) == ("pending_approval", None)
    stranger = world.device("stranger")
    csrf = sign_in(browser_like, stranger.owner["Authorization"].removeprefix("Bearer "))
    approvals = world.api.get("/v1/approvals?status=pending", headers=car.owner).json()["items"]
    approval_id = approvals[0]["id"]
    decided = browser_like.post(
        f"/console/approvals/{approval_id}", data={"decision": "approve", "csrf_token": csrf}
    )
    assert decided.status_code == 404
    suspended = browser_like.post(
        f"/console/devices/{car.id}/status", data={"action": "revoke", "csrf_token": csrf}
    )
    assert suspended.status_code == 404 and _status(world, car.id, car.owner) == "active"
    assert browser_like.get(f"/console/devices/{car.id}").status_code == 404
    rules = browser_like.post(
        f"/console/devices/{car.id}/rules", data={"currency": "EUR", "csrf_token": csrf}
    )
    assert rules.status_code == 404
    assert car.id not in browser_like.get("/console/devices").text
    pending = world.api.get("/v1/approvals?status=pending", headers=car.owner).json()["items"]
    assert [a["id"] for a in pending] == [approval_id]


def test_a_wrong_rules_value_shows_the_apis_own_message_next_to_the_field(
    world: World, browser_like: TestClient
) -> None:
    car = world.device("car", rules={"currency": "EUR", "max_amount": 5000})
    csrf = sign_in(browser_like, car.owner["Authorization"].removeprefix("Bearer "))
    before = world.api.get(f"/v1/devices/{car.id}/rules", headers=car.owner).json()
    api = world.api.put(
        f"/v1/devices/{car.id}/rules", json={"approval_ttl_seconds": 0}, headers=car.owner
    )
    assert api.status_code == 422
    api_message = api.json()["error"]["message"].split(": ", 1)[1]
    form = {"currency": "EUR", "approval_ttl_seconds": "0", "limit_day": "12.505"}
    answer = browser_like.post(
        f"/console/devices/{car.id}/rules", data={**form, "csrf_token": csrf}
    )
    assert answer.status_code == 422
    ttl = re.search(
        r'<p class="field-error" id="e-approval_ttl_seconds"[^>]*>([^<]+)</p>', answer.text
    )
    assert ttl and ttl.group(1) == api_message
    assert re.search(r'id="e-limit_day"[^>]*>EUR has 2 decimals: write e.g. 12.50', answer.text)
    assert 'value="12.505"' in answer.text  # what the owner typed stays in the form
    rules = world.api.get(f"/v1/devices/{car.id}/rules", headers=car.owner).json()
    assert rules == before and rules["max_amount"] == 5000


def test_rules_saved_in_the_console_are_the_devices_rules(
    world: World, browser_like: TestClient
) -> None:
    car = world.device("car")
    csrf = sign_in(browser_like, car.owner["Authorization"].removeprefix("Bearer "))
    form = {
        "currency": "EUR",
        "approval_above": "30",
        "limit_day": "200.00",
        "count_week": "20",
        "blocked_categories": "gambling, tolls",
        "csrf_token": csrf,
    }
    answer = browser_like.post(f"/console/devices/{car.id}/rules", data=form)
    assert answer.status_code == 200 and "Rules saved" in answer.text
    assert world.api.get(f"/v1/devices/{car.id}/rules", headers=car.owner).json() == {
        "currency": "EUR",
        "approval_above": 3000,
        "approval_ttl_seconds": 300,
        "limits": [{"period": "day", "amount": 20000}],
        "max_payments": [{"period": "week", "count": 20}],
        "blocked_categories": ["gambling", "tolls"],
    }
    assert "€200.00" in answer.text  # the day's limit, formatted
    assert "rules.replaced" in answer.text  # the audit trail, newest first


def test_mandates_and_top_ups_from_the_console(world: World, browser_like: TestClient) -> None:
    shop = world.merchant()
    car = world.device("car", top_up=0)
    csrf = sign_in(browser_like, car.owner["Authorization"].removeprefix("Bearer "))
    unknown = {"payee": "mer_nobody", "max_amount": "5", "csrf_token": csrf}
    answer = browser_like.post(f"/console/devices/{car.id}/mandates", data=unknown)
    assert answer.status_code == 422
    assert re.search(r'id="e-mandate-payee"[^>]*>no payee', answer.text)
    good = {**unknown, "payee": shop["id"], "limit_period": "day", "limit_amount": "20.00"}
    answer = browser_like.post(f"/console/devices/{car.id}/mandates", data=good)
    assert answer.status_code == 200 and "is active" in answer.text
    assert "€5.00" in answer.text and "€20.00/day" in answer.text
    payee = f'<td data-label="Payee">m-fuel <span class="muted">({shop["id"]})</span></td>'
    assert payee in answer.text  # the payee by its name, as approvals show it
    top_up = {"amount": "12.50", "currency": "EUR", "idempotency_key": "k1", "csrf_token": csrf}
    for _ in range(2):  # the same form sent twice moves the money once
        answer = browser_like.post(f"/console/devices/{car.id}/top-ups", data=top_up)
        assert answer.status_code == 200
        assert "Car · ACME M topped up by €12.50." in answer.text  # by its name, not its id
    assert world.balance(car) == 1250
    assert "€12.50" in browser_like.get("/console/wallets").text


def test_odd_forms_are_refused_with_a_message_never_a_500(
    world: World, browser_like: TestClient
) -> None:
    car = world.device("car", top_up=0)
    csrf = sign_in(browser_like, car.owner["Authorization"].removeprefix("Bearer "))
    top_up = {"amount": "12.505", "currency": "EUR", "idempotency_key": "k", "csrf_token": csrf}
    answer = browser_like.post(f"/console/devices/{car.id}/top-ups", data=top_up)
    assert answer.status_code == 422
    error = re.search(
        rf'<p class="field-error" id="e-top-up-{car.id}"[^>]*>([^<]*)</p>', answer.text
    )
    assert error and error.group(1) == "EUR has 2 decimals: write e.g. 12.50."  # beside the field
    assert 'value="12.505" aria-invalid="true"' in answer.text  # what was typed, kept
    nul = {**top_up, "amount": "1.00", "idempotency_key": "k\x00"}
    assert browser_like.post(f"/console/devices/{car.id}/top-ups", data=nul).status_code == 422
    assert world.balance(car) == 0
    mandate = {"payee": "mer\x00x", "max_amount": "5", "csrf_token": csrf}
    assert browser_like.post(f"/console/devices/{car.id}/mandates", data=mandate).status_code == 422
    many = "&".join(f"f{i}=x" for i in range(500)) + f"&csrf_token={csrf}&action=suspend"
    answer = browser_like.post(
        f"/console/devices/{car.id}/status",
        content=many,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 403
    assert _status(world, car.id, car.owner) == "active"


def test_the_freeze_switch_stops_approvals_until_unfrozen(
    world: World, browser_like: TestClient
) -> None:
    shop = world.merchant("groceries")
    fridge = world.device("fridge", rules={"currency": "EUR", "approval_above": 1000})
    assert fridge.pay(shop["id"], 2500) == ("pending_approval", None)
    csrf = sign_in(browser_like, fridge.owner["Authorization"].removeprefix("Bearer "))
    assert browser_like.post("/console/freeze", data={"action": "freeze"}).status_code == 403
    frozen = browser_like.post("/console/freeze", data={"action": "freeze", "csrf_token": csrf})
    assert frozen.status_code == 200 and "All payments are frozen" in frozen.text
    assert world.api.get("/v1/owners/me", headers=fridge.owner).json()["frozen"] is True
    assert fridge.pay(shop["id"], 500) == ("declined", "owner_frozen")
    approval_id = re.search(r'data-approval="([^"]+)"', browser_like.get("/console").text)
    assert approval_id
    path = f"/console/approvals/{approval_id.group(1)}"
    refused = browser_like.post(path, data={"decision": "approve", "csrf_token": csrf})
    assert refused.status_code == 409 and f'data-approval="{approval_id.group(1)}"' in refused.text
    thawed = browser_like.post("/console/freeze", data={"action": "unfreeze", "csrf_token": csrf})
    assert thawed.status_code == 200 and "All payments are frozen" not in thawed.text
    approved = browser_like.post(path, data={"decision": "approve", "csrf_token": csrf})
    assert approved.status_code == 200 and "approved" in approved.text


def test_the_device_page_shows_spending_against_limits(
    world: World, browser_like: TestClient
) -> None:
    shop = world.merchant()
    rules = {
        "currency": "EUR",
        "limits": [{"period": "week", "amount": 8000}],
        "max_payments": [{"period": "day", "count": 4}],
    }
    car = world.device("car", rules=rules)
    assert car.pay(shop["id"], 2500) == ("approved", None)
    sign_in(browser_like, car.owner["Authorization"].removeprefix("Bearer "))
    page = browser_like.get(f"/console/devices/{car.id}").text
    assert "€25.00 of €80.00" in page and "€55.00 left" in page
    assert "1 of 4" in page and "3 left" in page
    assert re.search(r'<meter min="0" max="8000" value="2500"', page)
    payments = browser_like.get("/console/payments").text
    assert "€25.00" in payments and "m-fuel" in payments  # the payee by name


def test_a_revoked_mandate_shows_its_own_device_whatever_the_form_names(
    world: World, browser_like: TestClient
) -> None:
    car = world.device("car")
    stranger = world.device("stranger")
    csrf = sign_in(browser_like, car.owner["Authorization"].removeprefix("Bearer "))
    for form in ({}, {"device_id": stranger.id}, {"device_id": "dev_nobody"}):
        created = world.api.post(
            f"/v1/devices/{car.id}/mandates", json={"max_amount": 500}, headers=car.owner
        )
        mandate_id = created.json()["id"]
        answer = browser_like.post(
            f"/console/mandates/{mandate_id}/revoke", data={**form, "csrf_token": csrf}
        )
        assert answer.status_code == 200, answer.text
        assert f"Mandate {mandate_id} is revoked." in answer.text and car.id in answer.text
        assert stranger.id not in answer.text
    active = world.api.get(f"/v1/devices/{car.id}/mandates?status=active", headers=car.owner)
    assert active.json()["items"] == []


def test_a_mandate_for_another_owners_device_is_the_consoles_not_found_page(
    world: World, browser_like: TestClient
) -> None:
    car = world.device("car")
    stranger = world.device("stranger")
    csrf = sign_in(browser_like, car.owner["Authorization"].removeprefix("Bearer "))
    form = {"max_amount": "500", "csrf_token": csrf}
    answer = browser_like.post(f"/console/devices/{stranger.id}/mandates", data=form)
    assert answer.status_code == 404
    assert answer.headers["content-type"].startswith("text/html")
    assert "No such device." in answer.text
    mandates = world.api.get(f"/v1/devices/{stranger.id}/mandates", headers=stranger.owner)
    assert mandates.json()["items"] == []


def test_a_decision_is_told_with_the_payees_name_and_in_words(
    world: World, browser_like: TestClient
) -> None:
    shop = world.merchant("groceries")  # named m-groceries
    fridge = world.device("fridge", rules={"currency": "EUR", "approval_above": 1000})
    for amount in (2500, 3000, 3500):
        assert fridge.pay(shop["id"], amount) == ("pending_approval", None)
    csrf = sign_in(browser_like, fridge.owner["Authorization"].removeprefix("Bearer "))
    waiting = {
        item["amount"]: f"/console/approvals/{item['id']}"
        for item in world.api.get("/v1/approvals?status=pending", headers=fridge.owner).json()[
            "items"
        ]
    }

    def decide(amount: int, decision: str) -> str:
        """The notice (green) or alert (red) the inbox shows, the latter marked `!`."""
        answer = browser_like.post(waiting[amount], data={"decision": decision, "csrf_token": csrf})
        notice = re.search(r'<p class="(notice|alert)" role="\w+">([^<]*)</p>', answer.text)
        assert notice, answer.text
        return ("!" if notice.group(1) == "alert" else "") + html.unescape(notice.group(2))

    assert decide(2500, "approve") == "€25.00 to m-groceries approved: the device has been told."
    assert decide(3000, "decline") == "€30.00 to m-groceries declined: the device has been told."
    rules = {"currency": "EUR", "approval_above": 1000, "max_amount": 3000}
    assert world.api.put(f"/v1/devices/{fridge.id}/rules", json=rules, headers=fridge.owner)
    assert world.api.post("/v1/owners/me/freeze", headers=fridge.owner).status_code == 200
    assert decide(3500, "approve") == (
        "!Your payments are frozen: unfreeze them to approve this one, which keeps waiting."
    )
    assert world.api.post("/v1/owners/me/unfreeze", headers=fridge.owner).status_code == 200
    assert decide(3500, "approve") == (
        "!€35.00 to m-groceries was declined although you approved it: it is above the "
        "device's largest single payment. The device has been told."
    )
    decided = browser_like.get("/console").text
    row = next(r for r in decided.split("<tr>") if "€35.00" in r)
    assert "status-declined" in row and "status-approved" not in row
    assert "you approved, but it is above the device&#39;s largest single payment" in row


def test_a_mandate_that_has_already_ended_is_refused_not_told_active(
    world: World, browser_like: TestClient
) -> None:
    shop = world.merchant()
    car = world.device("car", top_up=0)
    csrf = sign_in(browser_like, car.owner["Authorization"].removeprefix("Bearer "))
    ended = {"payee": shop["id"], "max_amount": "500", "valid_until": "2020-01-01T00:00:00Z"}
    answer = browser_like.post(
        f"/console/devices/{car.id}/mandates", data=ended | {"csrf_token": csrf}
    )
    assert answer.status_code == 422 and "is active" not in answer.text
    error = re.search(
        r'<p class="field-error" id="e-mandate-valid_until"[^>]*>([^<]*)</p>', answer.text
    )
    assert error and error.group(1).startswith("This time has passed")
    assert 'value="2020-01-01T00:00:00Z"' in answer.text  # the input is kept
    mandates = world.api.get(f"/v1/devices/{car.id}/mandates", headers=car.owner).json()
    assert mandates["items"] == []
    later = ended | {"valid_until": "2099-01-01T00:00:00Z", "csrf_token": csrf}
    answer = browser_like.post(f"/console/devices/{car.id}/mandates", data=later)
    assert answer.status_code == 200 and "is active" in answer.text


def test_a_mandate_date_without_a_zone_is_answered_with_what_to_write(
    world: World, browser_like: TestClient
) -> None:
    car = world.device("car", top_up=0)
    csrf = sign_in(browser_like, car.owner["Authorization"].removeprefix("Bearer "))
    form = {"max_amount": "500", "valid_from": "2026-12-31", "csrf_token": csrf}
    answer = browser_like.post(f"/console/devices/{car.id}/mandates", data=form)
    assert answer.status_code == 422
    error = re.search(
        r'<p class="field-error" id="e-mandate-valid_from"[^>]*>([^<]*)</p>', answer.text
    )
    assert error and html.unescape(error.group(1)) == (
        "Input should have timezone info. Write a date, a time and its zone, "
        "e.g. 2026-12-31T23:59:00+01:00 (Z for UTC)"
    )
