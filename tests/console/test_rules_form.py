"""Saving the console's rules form keeps every rule the owner did not touch exactly as it was:
the form shows all that the API can store, so a save never widens what the device may do."""

from __future__ import annotations

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
    assert rules_body(rules_form(stored), stored) == stored
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
    assert form["limit_day"] == "100, 5000"


def test_a_stored_rule_the_form_cannot_show_is_refused_rather_than_loosened() -> None:
    current = {"allowed_payees": ["a,b"], "approval_ttl_seconds": 300}  # no API stores this
    validated, errors = validate_rules(rules_form(current), current)
    assert validated is None
    assert "cannot show" in errors[FORM_ERROR]


def _save_as_shown(browser_like: TestClient, car: Dev, **change: str) -> None:
    csrf = sign_in(browser_like, car.owner["Authorization"].removeprefix("Bearer "))
    shown = dict(FIELDS.findall(browser_like.get(f"/console/devices/{car.id}").text))
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
    _save_as_shown(browser_like, car, max_amount="9000")
    assert car.pay(shop["id"], 200) == ("declined", "category_not_allowed")
    rules = world.api.get(f"/v1/devices/{car.id}/rules", headers=car.owner).json()
    assert rules["allowed_categories"] == [] and rules["allowed_payees"] == []


def test_every_limit_survives_a_console_save(world: World, browser_like: TestClient) -> None:
    shop = world.merchant()
    limits = [{"period": "day", "amount": 100}, {"period": "day", "amount": 5000}]
    counts = [{"period": "week", "count": 1}, {"period": "week", "count": 50}]
    car = world.device("car", rules={"currency": "EUR", "limits": limits, "max_payments": counts})
    assert car.pay(shop["id"], 200) == ("declined", "period_limit_exceeded")
    _save_as_shown(browser_like, car, max_amount="9000")
    assert car.pay(shop["id"], 200) == ("declined", "period_limit_exceeded")
    rules = world.api.get(f"/v1/devices/{car.id}/rules", headers=car.owner).json()
    assert rules["limits"] == limits and rules["max_payments"] == counts
