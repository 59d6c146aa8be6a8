"""Saving the console's rules form keeps every rule the owner did not touch exactly as it was:
the form shows all that the API can store, so a save never widens what the device may do."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.consent.rules import rules_to_json
from gateway.console.forms import FORM_ERROR, rules_body, rules_form, validate_rules
from gateway.http.schemas import RulesIn
from tests.support.console import sign_in
from tests.support.world import Dev, World

FIELDS = re.compile(r'name="([a-z_]+)"[^>]*value="([^"]*)"')
RULES_FIELDS = (
    "currency", "max_amount", "approval_above", "approval_ttl_seconds", "low_balance_alert",
    "limit_day", "limit_week", "limit_month", "limit_year",
    "count_day", "count_week", "count_month", "count_year",
    "allowed_categories", "blocked_categories", "allowed_payees", "blocked_payees",
    "active_hours",
)  # fmt: skip
STORED_RULES: list[dict[str, Any]] = [
    {},
    {"currency": "EUR"},
    {"allowed_categories": [], "allowed_payees": []},
    {"allowed_categories": ["fuel"], "allowed_payees": [], "blocked_payees": ["mer_1"]},
    {"limits": [{"period": "day", "amount": 100}, {"period": "day", "amount": 5000}]},
    {
        "limits": [
            {"period": "week", "amount": 700},
            {"period": "day", "amount": 100},
            {"period": "week", "amount": 700},
        ],
        "max_payments": [{"period": "month", "count": 9}, {"period": "month", "count": 3}],
    },
    {
        "currency": "JPY",
        "max_amount": 5000,
        "approval_above": 3000,
        "approval_ttl_seconds": 60,
        "low_balance_alert": 0,
        "blocked_categories": ["gambling", "tolls"],
        "active_hours": {"windows": []},
        "auto_top_up": {"below": 0, "to": 1},
    },
    {"active_hours": {"windows": [{"days": ["sat", "mon"], "from": "22:00", "to": "06:00"}]}},
]


def _stored(rules: dict[str, Any]) -> dict[str, Any]:
    """The rules as `GET /v1/devices/{id}/rules` shows them once PUT."""
    validated = RulesIn.model_validate(rules)
    return rules_to_json(validated.to_rules())


@pytest.mark.parametrize("rules", STORED_RULES)
def test_stored_rules_come_back_unchanged_from_the_form_that_shows_them(
    rules: dict[str, Any],
) -> None:
    stored = _stored(rules)
    assert rules_body(rules_form(stored), stored) == (stored, {})
    validated, errors = validate_rules(rules_form(stored), stored)
    assert errors == {} and validated is not None
    assert _stored(validated.model_dump(by_alias=True, exclude_none=True)) == stored


def test_an_empty_allow_list_and_several_limits_of_a_period_are_shown_in_the_form() -> None:
    stored = _stored(
        {
            "allowed_categories": [],
            "limits": [{"period": "day", "amount": 100}, {"period": "day", "amount": 5000}],
        }
    )
    form = rules_form(stored)
    assert form["allowed_categories"] == "(none)" and "allowed_payees" not in form
    assert form["limit_day"] == "1.00, 50.00"


def test_a_stored_rule_the_form_cannot_show_is_refused_rather_than_loosened() -> None:
    current = {"allowed_payees": ["a,b"], "approval_ttl_seconds": 300}  # no API stores this
    validated, errors = validate_rules(rules_form(current), current)
    assert validated is None
    assert "cannot show" in errors[FORM_ERROR]


def _rules_fields(page: str) -> dict[str, str]:
    """The rules form's fields as the page shows them (the mandate form has a `max_amount` too)."""
    form = page[page.index('id="rules"') : page.index('id="mandates"')]
    return dict(FIELDS.findall(form))


def _save_as_shown(browser_like: TestClient, car: Dev, **change: str) -> None:
    csrf = sign_in(browser_like, car.owner["Authorization"].removeprefix("Bearer "))
    shown = _rules_fields(browser_like.get(f"/console/devices/{car.id}").text)
    form = {k: shown[k] for k in RULES_FIELDS} | change | {"csrf_token": csrf}
    answer = browser_like.post(f"/console/devices/{car.id}/rules", data=form)
    assert answer.status_code == 200 and "Rules saved" in answer.text, answer.text


def test_an_empty_allow_list_survives_a_console_save(
    world: World, browser_like: TestClient
) -> None:
    shop = world.merchant("fuel")
    car = world.device(
        "car", rules={"currency": "EUR", "allowed_categories": [], "allowed_payees": []}
    )
    assert car.pay(shop["id"], 200) == ("declined", "category_not_allowed")
    _save_as_shown(browser_like, car, max_amount="90")
    assert car.pay(shop["id"], 200) == ("declined", "category_not_allowed")
    rules = world.api.get(f"/v1/devices/{car.id}/rules", headers=car.owner).json()
    assert rules["allowed_categories"] == [] and rules["allowed_payees"] == []


def test_every_limit_survives_a_console_save(world: World, browser_like: TestClient) -> None:
    shop = world.merchant()
    limits = [{"period": "day", "amount": 100}, {"period": "day", "amount": 5000}]
    counts = [{"period": "week", "count": 1}, {"period": "week", "count": 50}]
    car = world.device("car", rules={"currency": "EUR", "limits": limits, "max_payments": counts})
    assert car.pay(shop["id"], 200) == ("declined", "period_limit_exceeded")
    _save_as_shown(browser_like, car, max_amount="90")
    assert car.pay(shop["id"], 200) == ("declined", "period_limit_exceeded")
    rules = world.api.get(f"/v1/devices/{car.id}/rules", headers=car.owner).json()
    assert rules["limits"] == limits and rules["max_payments"] == counts


MALFORMED_LISTS = [
    ("allowed_categories", "(none), fuel", "(none) means no category is allowed: write it alone"),
    ("allowed_payees", "mer_1, (none)", "(none) means no payee is allowed: write it alone"),
    ("blocked_categories", "(none), (none)", "(none) means no category is blocked: write it alone"),
    ("allowed_categories", "fuel,,parking", "An item is empty"),
    ("blocked_payees", "mer_1,", "An item is empty"),
    ("allowed_categories", " , ", "No category here, only commas"),
    ("limit_day", "100,,5000", "An item is empty"),
    ("count_week", ",", "No count here, only commas"),
]


@pytest.mark.parametrize(("name", "typed", "message"), MALFORMED_LISTS)
def test_a_malformed_list_is_refused_with_what_to_type_and_saves_nothing(
    world: World, browser_like: TestClient, name: str, typed: str, message: str
) -> None:
    rules = {"currency": "EUR", "allowed_categories": ["parking"], "max_amount": 500}
    car = world.device("car", rules=rules)
    before = world.api.get(f"/v1/devices/{car.id}/rules", headers=car.owner).json()
    csrf = sign_in(browser_like, car.owner["Authorization"].removeprefix("Bearer "))
    shown = _rules_fields(browser_like.get(f"/console/devices/{car.id}").text)
    form = {k: shown[k] for k in RULES_FIELDS} | {name: typed, "max_amount": "90.00"}
    answer = browser_like.post(f"/console/devices/{car.id}/rules", data=form | {"csrf_token": csrf})
    assert answer.status_code == 422
    error = re.search(rf'<p class="field-error" id="e-{name}"[^>]*>([^<]*)</p>', answer.text)
    assert error, answer.text
    assert message in html.unescape(error.group(1))
    kept = _rules_fields(answer.text)
    assert kept[name] == typed and kept["max_amount"] == "90.00"
    after = world.api.get(f"/v1/devices/{car.id}/rules", headers=car.owner).json()
    assert after == before


def test_none_in_any_case_is_an_empty_list() -> None:
    validated, errors = validate_rules(
        {"allowed_payees": " (None) ", "blocked_categories": "(NONE)"}
    )
    assert errors == {} and validated is not None
    assert validated.allowed_payees == [] and validated.blocked_categories == []


def test_a_malformed_list_is_named_alongside_the_schemas_other_messages() -> None:
    validated, errors = validate_rules({"allowed_categories": "(none), fuel", "max_amount": "0"})
    assert validated is None
    assert set(errors) == {"allowed_categories", "max_amount"}
    assert "write it alone" in errors["allowed_categories"]
    assert errors["max_amount"] == "Write at least €0.01."


ACTIVE_HOURS = [
    (
        "{not json",
        "This is not JSON (expecting property name enclosed in double quotes at character 2)",
    ),
    ("[]", 'Input should be a JSON object, e.g. {"windows": [{"days": ["mon"], "from": "06:00"'),
    ('{"windows": [5]}', "windows.0: Input should be a JSON object"),
    (
        '{"windows": [{"days": ["mon"], "from": "6", "to": "22:00"}]}',
        "windows.0.from: Input should be a time as HH:MM, from 00:00 to 24:00",
    ),
]


@pytest.mark.parametrize(("typed", "message"), ACTIVE_HOURS)
def test_active_hours_that_are_not_what_the_api_takes_say_so_without_class_names(
    world: World, browser_like: TestClient, typed: str, message: str
) -> None:
    car = world.device("car", rules={"currency": "EUR", "max_amount": 500})
    before = world.api.get(f"/v1/devices/{car.id}/rules", headers=car.owner).json()
    csrf = sign_in(browser_like, car.owner["Authorization"].removeprefix("Bearer "))
    shown = _rules_fields(browser_like.get(f"/console/devices/{car.id}").text)
    form = {k: shown[k] for k in RULES_FIELDS} | {"active_hours": typed, "csrf_token": csrf}
    answer = browser_like.post(f"/console/devices/{car.id}/rules", data=form)
    assert answer.status_code == 422
    error = re.search(r'<p class="field-error" id="e-active_hours"[^>]*>([^<]*)</p>', answer.text)
    assert error, answer.text
    assert html.unescape(error.group(1)).startswith(message)
    assert "instance of" not in answer.text and "HoursIn" not in answer.text
    assert html.unescape(_rules_fields(answer.text)["active_hours"]) == typed
    assert world.api.get(f"/v1/devices/{car.id}/rules", headers=car.owner).json() == before
