"""Every money field of the console takes the amount as a person writes it, in the major unit of
its currency ("12.50" EUR, "1250" JPY, "1.25" BHD), on the real app and database: saved, shown
again and saved unchanged, the stored minor units stay the same; what is not an amount in that
currency is refused beside its field, with the typed text kept and nothing changed."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support.console import sign_in
from tests.support.world import Dev, World

FIELDS = re.compile(r'name="([a-z_]+)"[^>]*value="([^"]*)"')
SELECTED = re.compile(r'<option value="([^"]+)"[^>]* selected>')
RULES_FIELDS = (
    "currency", "max_amount", "approval_above", "approval_ttl_seconds", "low_balance_alert",
    "limit_day", "limit_week", "limit_month", "limit_year",
    "count_day", "count_week", "count_month", "count_year",
    "allowed_categories", "blocked_categories", "allowed_payees", "blocked_payees",
    "active_hours",
)  # fmt: skip
POLICY = "/v1/owners/me/instalment-policy"


def _key(dev: Dev) -> str:
    return dev.owner["Authorization"].removeprefix("Bearer ")


def _between(page: str, start: str, end: str) -> str:
    part = page[page.index(start) :]
    return part[: part.index(end)]


def _rules_fields(page: str) -> dict[str, str]:
    form = _between(page, 'id="rules"', 'id="mandates"')
    return {k: html.unescape(v) for k, v in FIELDS.findall(form) if k in RULES_FIELDS}


def _field_error(page: str, name: str) -> str:
    found = re.search(rf'<p class="field-error" id="e-{name}"[^>]*>([^<]*)</p>', page)
    assert found, page
    return html.unescape(found.group(1))


def _rules(world: World, car: Dev) -> Any:
    return world.api.get(f"/v1/devices/{car.id}/rules", headers=car.owner).json()


ROUND_TRIPS = [
    (
        "EUR",
        {"max_amount": "12.50", "approval_above": "30", "low_balance_alert": "0.05"},
        {"limit_week": "80, 5.5", "limit_day": "0.01"},
        {"max_amount": 1250, "approval_above": 3000, "low_balance_alert": 5},
        [("day", 1), ("week", 8000), ("week", 550)],
        {"max_amount": "12.50", "approval_above": "30.00", "low_balance_alert": "0.05"},
        {"limit_week": "80.00, 5.50", "limit_day": "0.01"},
    ),
    (
        "JPY",
        {"max_amount": "1250", "approval_above": "3000", "low_balance_alert": "0"},
        {"limit_week": "8000"},
        {"max_amount": 1250, "approval_above": 3000, "low_balance_alert": 0},
        [("week", 8000)],
        {"max_amount": "1250", "approval_above": "3000", "low_balance_alert": "0"},
        {"limit_week": "8000"},
    ),
    (
        "BHD",
        {"max_amount": "1.25", "approval_above": "0.5", "low_balance_alert": "0.001"},
        {"limit_month": "100.125"},
        {"max_amount": 1250, "approval_above": 500, "low_balance_alert": 1},
        [("month", 100125)],
        {"max_amount": "1.250", "approval_above": "0.500", "low_balance_alert": "0.001"},
        {"limit_month": "100.125"},
    ),
]


@pytest.mark.parametrize(
    ("currency", "typed", "typed_limits", "stored", "limits", "shown", "shown_limits"),
    ROUND_TRIPS,
)
def test_rules_amounts_are_typed_in_the_major_unit_and_survive_save_reload_save(
    world: World,
    browser_like: TestClient,
    currency: str,
    typed: dict[str, str],
    typed_limits: dict[str, str],
    stored: dict[str, int],
    limits: list[tuple[str, int]],
    shown: dict[str, str],
    shown_limits: dict[str, str],
) -> None:
    car = world.device("car", top_up=0)
    csrf = sign_in(browser_like, _key(car))
    path = f"/console/devices/{car.id}/rules"
    form = {"currency": currency, **typed, **typed_limits, "csrf_token": csrf}
    saved = browser_like.post(path, data=form)
    assert saved.status_code == 200 and "Rules saved" in saved.text, saved.text
    first = _rules(world, car)
    assert {name: first[name] for name in stored} == stored
    assert sorted((e["period"], e["amount"]) for e in first["limits"]) == sorted(limits)

    page = browser_like.get(f"/console/devices/{car.id}").text
    fields = _rules_fields(page)
    assert {name: fields[name] for name in shown} == shown
    assert {name: fields[name] for name in shown_limits} == shown_limits
    again = browser_like.post(path, data={**fields, "csrf_token": csrf})
    assert again.status_code == 200 and "Rules saved" in again.text, again.text
    assert _rules(world, car) == first  # the same minor units, to the unit


REFUSED = [
    ("max_amount", "12.505", "EUR has 2 decimals: write e.g. 12.50."),
    ("max_amount", "-5", "An amount cannot be negative."),
    ("max_amount", "12,50", "Write the decimals after a point, e.g. 12.50, without commas."),
    ("max_amount", "twelve", "Write the amount in EUR as a number, e.g. 12.50."),
    ("max_amount", "1e9", "Write the amount in EUR as a number, e.g. 12.50."),
    ("max_amount", "99999999999999999", "This is more than any amount the gateway holds"),
    ("max_amount", "0", "Write at least €0.01."),
    ("approval_above", "0.001", "EUR has 2 decimals: write e.g. 12.50."),
    ("low_balance_alert", "-0.01", "An amount cannot be negative."),
    ("limit_day", "12,50", "Write the decimals after a point, e.g. 12.50; separate several"),
    ("limit_week", "100, 12.345", "EUR has 2 decimals: write e.g. 12.50."),
]


@pytest.mark.parametrize(("name", "typed", "message"), REFUSED)
def test_a_rules_amount_that_is_not_one_is_refused_beside_its_field_changing_nothing(
    world: World, browser_like: TestClient, name: str, typed: str, message: str
) -> None:
    car = world.device("car", rules={"currency": "EUR", "max_amount": 5000, "limits": []})
    before = _rules(world, car)
    csrf = sign_in(browser_like, _key(car))
    shown = _rules_fields(browser_like.get(f"/console/devices/{car.id}").text)
    assert shown["max_amount"] == "50.00"
    form = shown | {name: typed, "approval_ttl_seconds": "60", "csrf_token": csrf}
    answer = browser_like.post(f"/console/devices/{car.id}/rules", data=form)
    assert answer.status_code == 422
    assert _field_error(answer.text, name).startswith(message)
    kept = _rules_fields(answer.text)
    assert kept[name] == typed and kept["approval_ttl_seconds"] == "60"
    assert f'id="f-{name}" name="{name}"' in answer.text and 'aria-invalid="true"' in answer.text
    assert _rules(world, car) == before


def test_a_mandate_and_a_top_up_take_major_units_and_refuse_extra_decimals(
    world: World, browser_like: TestClient
) -> None:
    shop = world.merchant()
    car = world.device("car", top_up=0, rules={"currency": "EUR"})
    csrf = sign_in(browser_like, _key(car))
    mandates = f"/console/devices/{car.id}/mandates"
    good = {"payee": shop["id"], "max_amount": "5.25", "limit_period": "week"}
    wrong = browser_like.post(mandates, data=good | {"limit_amount": "20.001", "csrf_token": csrf})
    assert wrong.status_code == 422
    assert (
        _field_error(wrong.text, "mandate-limit_amount") == "EUR has 2 decimals: write e.g. 12.50."
    )
    assert 'value="20.001"' in wrong.text and 'value="5.25"' in wrong.text
    listed = f"/v1/devices/{car.id}/mandates"
    huge = browser_like.post(mandates, data=good | {"max_amount": "1e13", "csrf_token": csrf})
    assert _field_error(huge.text, "mandate-max_amount").startswith(
        "Write the amount in EUR as a number"
    )
    big = browser_like.post(
        mandates, data=good | {"max_amount": "10000000000.01", "csrf_token": csrf}
    )
    assert big.status_code == 422  # the API's own bound, said as the owner typed it
    assert _field_error(big.text, "mandate-max_amount") == "Write at most €10,000,000,000.00."
    assert world.api.get(listed, headers=car.owner).json()["items"] == []
    made = browser_like.post(mandates, data=good | {"limit_amount": "20", "csrf_token": csrf})
    assert made.status_code == 200 and "€5.25" in made.text and "€20.00/week" in made.text
    [mandate] = world.api.get(listed, headers=car.owner).json()["items"]
    assert (mandate["max_amount"], mandate["limits"][0]["amount"]) == (525, 2000)

    top_ups = f"/console/devices/{car.id}/top-ups"
    top_up = {"currency": "EUR", "idempotency_key": "k1", "csrf_token": csrf}
    for typed in ("0.001", "12,50", "-1", "1e3"):
        refused = browser_like.post(top_ups, data=top_up | {"amount": typed})
        assert refused.status_code == 422, typed
        assert f'value="{typed}" aria-invalid="true"' in refused.text
        assert world.balance(car) == 0
    assert browser_like.post(top_ups, data=top_up | {"amount": "12.5"}).status_code == 200
    assert world.balance(car) == 1250


def test_funding_sources_and_the_instalment_policy_take_major_units_and_round_trip(
    world: World, browser_like: TestClient
) -> None:
    car = world.device("car", top_up=0)
    csrf = sign_in(browser_like, _key(car))
    add = "/console/funding-sources"
    balance = {"name": "Savings", "kind": "balance", "currency": "EUR", "csrf_token": csrf}
    refused = browser_like.post(add, data=balance | {"floor": "20.005"})
    assert refused.status_code == 422
    assert _field_error(refused.text, "floor") == "EUR has 2 decimals: write e.g. 12.50."
    assert browser_like.post(add, data=balance | {"floor": "20"}).status_code == 200
    line = {**balance, "name": "Yen card", "kind": "credit_line", "currency": "JPY"}
    yen = browser_like.post(add, data=line | {"credit_limit": "80000.5"})
    assert yen.status_code == 422
    assert _field_error(yen.text, "credit_limit") == "JPY has no decimals: write e.g. 1250."
    assert browser_like.post(add, data=line | {"credit_limit": "80000"}).status_code == 200
    made = {s["name"]: s for s in world.api.get("/v1/owners/me/funding-sources",
                                                 headers=car.owner).json()["items"]}  # fmt: skip
    assert (made["Savings"]["floor"], made["Yen card"]["credit_limit"]) == (2000, 80_000)

    terms = {"source": made["Yen card"]["id"], "min_amount": "1000", "max_amount": "50000"}
    terms |= {"counts": "3, 6", "interval_days": "30", "keep_at_least": "1.5"}
    odd = browser_like.post("/console/instalment-policy", data=terms | {"csrf_token": csrf})
    assert odd.status_code == 422
    assert _field_error(odd.text, "keep_at_least") == "JPY has no decimals: write e.g. 1250."
    terms |= {"keep_at_least": "500", "auto_accept_up_to": "3000"}
    saved = browser_like.post("/console/instalment-policy", data=terms | {"csrf_token": csrf})
    assert saved.status_code == 200 and "Instalment policy saved." in saved.text
    first = world.api.get(POLICY, headers=car.owner).json()
    assert (first["min_amount"], first["max_amount"], first["keep_at_least"]) == (
        1000,
        50_000,
        500,
    )
    page = browser_like.get("/console/funding").text
    form = _between(page, 'action="/console/instalment-policy"', "</form>")
    fields = {k: html.unescape(v) for k, v in FIELDS.findall(form) if k != "action"}
    chosen = SELECTED.search(form)
    assert chosen and fields["min_amount"] == "1000" and fields["auto_accept_up_to"] == "3000"
    fields |= {"source": chosen.group(1), "csrf_token": csrf}
    again = browser_like.post("/console/instalment-policy", data=fields)
    assert again.status_code == 200, again.text
    assert world.api.get(POLICY, headers=car.owner).json() == first


def test_a_dispute_amount_is_typed_in_the_payments_currency(
    world: World, browser_like: TestClient
) -> None:
    pump = world.device("pump", top_up=0, category="fuel")
    car = world.device("car", rules={"currency": "EUR"})
    assert car.pay(pump.id, 3000) == ("approved", None)
    payments = world.api.get(f"/v1/devices/{car.id}/payments", headers=car.owner).json()
    payment_id = payments["items"][0]["payment_id"]
    csrf = sign_in(browser_like, _key(car))
    page = browser_like.get(f"/console/disputes?payment={payment_id}").text
    assert 'placeholder="30.00"' in page and "Amount in EUR" in page
    path = f"/console/payments/{payment_id}/disputes"
    body = {"reason": "defective", "message": "Half of it was water", "csrf_token": csrf}
    wrong = browser_like.post(path, data=body | {"amount": "10.555"})
    assert wrong.status_code == 422
    assert _field_error(wrong.text, "amount") == "EUR has 2 decimals: write e.g. 12.50."
    assert 'value="10.555"' in wrong.text and 'value="Half of it was water"' in wrong.text
    assert world.api.get("/v1/disputes", headers=car.owner).json()["items"] == []
    opened = browser_like.post(path, data=body | {"amount": "10.5"})
    assert opened.status_code == 200 and "Your dispute of €10.50 is open" in opened.text
    [dispute] = world.api.get("/v1/disputes", headers=car.owner).json()["items"]
    assert dispute["amount"] == 1050
