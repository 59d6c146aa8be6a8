"""The console's instalment-policy form checks its comma-separated fields as typed, through the
same check as the rules form: an empty item or a field of only commas is refused with what to
type, the input is kept and nothing is saved; a policy that offers in no category shows as such
and survives a save."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.console.money_forms import policy_form, validate_policy
from tests.support.console import sign_in
from tests.support.funding import source
from tests.support.world import Dev, World

FIELDS = re.compile(r'name="([a-z_]+)"[^>]*value="([^"]*)"')
SELECTED = re.compile(r'<option value="([^"]+)"[^>]* selected>')
POLICY = "/v1/owners/me/instalment-policy"
MALFORMED_LISTS = [
    ("counts", "3,,6", "An item is empty"),
    ("counts", "3, 6,", "An item is empty"),
    ("counts", ",", "No count here, only commas: write the numbers of instalments to offer"),
    ("categories", "fuel,,parking", "An item is empty"),
    ("categories", ",fuel", "An item is empty"),
    ("categories", " , ", "No category here, only commas: leave it empty to offer instalments"),
    ("categories", "(none), fuel", "(none) means no category is offered: write it alone"),
]


def _owner_with_a_policy(world: World) -> tuple[Dev, dict[str, Any]]:
    car = world.device("car")
    line = source(world, car.owner, name="Card", kind="credit_line", credit_limit=50_000)
    policy = {"source": line["id"], "min_amount": 1000, "max_amount": 40_000, "counts": [3, 6]}
    policy |= {"interval_days": 30, "categories": ["groceries"]}
    stored = world.api.put(POLICY, json=policy, headers=car.owner)
    assert stored.status_code == 200, stored.text
    return car, stored.json()


def _policy_fields(page: str) -> dict[str, str]:
    """The policy form's fields as the page shows them (not its Remove button's `action`)."""
    form = page[page.index('action="/console/instalment-policy"') :]
    form = form[: form.index("</form>")]
    fields = {k: v for k, v in FIELDS.findall(form) if k != "action"}
    source = SELECTED.search(form)
    assert source, form
    return fields | {"source": source.group(1)}


@pytest.mark.parametrize(("name", "typed", "message"), MALFORMED_LISTS)
def test_a_malformed_policy_list_is_refused_with_what_to_type_and_saves_nothing(
    world: World, browser_like: TestClient, name: str, typed: str, message: str
) -> None:
    car, before = _owner_with_a_policy(world)
    csrf = sign_in(browser_like, car.owner["Authorization"].removeprefix("Bearer "))
    shown = _policy_fields(browser_like.get("/console/funding").text)
    form = shown | {name: typed, "max_amount": "90.00", "csrf_token": csrf}
    answer = browser_like.post("/console/instalment-policy", data=form)
    assert answer.status_code == 422
    error = re.search(rf'<p class="field-error" id="e-{name}"[^>]*>([^<]*)</p>', answer.text)
    assert error, answer.text
    assert message in html.unescape(error.group(1))
    kept = _policy_fields(answer.text)
    assert kept[name] == typed and kept["max_amount"] == "90.00"
    assert world.api.get(POLICY, headers=car.owner).json() == before


def test_a_policy_that_offers_in_no_category_is_shown_and_kept_by_a_save(
    world: World, browser_like: TestClient
) -> None:
    car, stored = _owner_with_a_policy(world)
    nothing = world.api.put(POLICY, json=stored | {"categories": []}, headers=car.owner)
    assert nothing.status_code == 200
    csrf = sign_in(browser_like, car.owner["Authorization"].removeprefix("Bearer "))
    page = browser_like.get("/console/funding").text
    assert "no category: nothing is offered" in page and "any category" not in page
    shown = _policy_fields(page)
    assert shown["categories"] == "(none)"
    saved = browser_like.post(
        "/console/instalment-policy", data=shown | {"max_amount": "90", "csrf_token": csrf}
    )
    assert saved.status_code == 200 and "Instalment policy saved." in saved.text
    policy = world.api.get(POLICY, headers=car.owner).json()
    assert (policy["categories"], policy["max_amount"]) == ([], 9000)


def test_policy_lists_are_named_alongside_the_schemas_other_messages() -> None:
    form = {"source": "src_1", "min_amount": "1000", "max_amount": "0", "counts": "3,,6"}
    body, errors = validate_policy(form | {"interval_days": "30", "categories": "(NONE)"}, "EUR")
    assert body is None
    assert set(errors) == {"counts", "max_amount"}
    assert "An item is empty" in errors["counts"]
    assert errors["max_amount"] == "Write at least €0.01."  # the API's bound, as typed


def test_the_policy_form_shows_every_category_as_empty_and_none_as_none() -> None:
    policy = {"source": "src_1", "min_amount": 1, "max_amount": 2, "counts": [3]}
    policy |= {"interval_days": 30, "keep_at_least": 0, "auto_accept_up_to": 0}
    assert "categories" not in policy_form(policy | {"categories": None}, "EUR")
    assert policy_form(policy | {"categories": []}, "EUR")["categories"] == "(none)"
    assert (
        policy_form(policy | {"categories": ["fuel", "tolls"]}, "EUR")["categories"]
        == "fuel, tolls"
    )
