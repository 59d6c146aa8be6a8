"""A dispute answer that the server refuses keeps what the payee's owner typed, with the reason
beside the field, on the real app and database; nothing about the dispute changes."""

from __future__ import annotations

import html
import re
from typing import Any

from fastapi.testclient import TestClient

from tests.support.console import sign_in
from tests.support.world import ADMIN, Dev, World

TYPED = "We refund gladly, but <not> before Monday & only once"


def _key(dev: Dev) -> str:
    return dev.owner["Authorization"].removeprefix("Bearer ")


def _disputed(world: World) -> tuple[Dev, Dev, dict[str, Any]]:
    """A car that paid a pump 30.00 and disputes it; the pump has spent the money since."""
    shop = world.merchant()
    pump = world.device("pump", top_up=0, category="fuel", rules={"currency": "EUR"})
    car = world.device("car", rules={"currency": "EUR"})
    assert car.pay(pump.id, 3000) == ("approved", None)
    payments = world.api.get(f"/v1/devices/{car.id}/payments", headers=car.owner).json()
    body = {"reason": "not_received", "message": "No fuel came out"}
    path = f"/v1/payments/{payments['items'][0]['payment_id']}/disputes"
    opened = world.api.post(path, json=body, headers=car.owner)
    assert opened.status_code == 201, opened.text
    assert pump.pay(shop["id"], 3000) == ("approved", None)  # the pump's wallet is empty now
    return car, pump, opened.json()


def _answer_field(page: str, dispute_id: str) -> tuple[str, str | None]:
    """The answer input's value and its error, as the page shows them."""
    field = re.search(rf'<input id="answer-{dispute_id}"[^>]*>', page)
    assert field, page
    value = re.search(r'value="([^"]*)"', field.group(0))
    error = re.search(rf'<p class="field-error" id="e-answer-{dispute_id}"[^>]*>([^<]*)</p>', page)
    return (
        html.unescape(value.group(1)) if value else "",
        html.unescape(error.group(1)) if error else None,
    )


def test_a_refused_answer_keeps_the_typed_message_with_the_reason_beside_it(
    world: World, browser_like: TestClient
) -> None:
    car, pump, dispute = _disputed(world)
    csrf = sign_in(browser_like, _key(pump))
    path = f"/console/disputes/{dispute['id']}/response"
    accept = {"decision": "accept", "message": TYPED, "csrf_token": csrf}
    refused = browser_like.post(path, data=accept)
    assert refused.status_code == 409
    value, error = _answer_field(refused.text, dispute["id"])
    assert value == TYPED
    assert error == (
        "Car · ACME M's wallet cannot refund €30.00 now: top it up under Wallets and accept "
        "again, or contest."
    )
    assert f'aria-describedby="e-answer-{dispute["id"]}"' in refused.text
    [listed] = world.api.get("/v1/disputes", headers=car.owner).json()["items"]
    assert (listed["status"], listed.get("response")) == ("open", None)

    contested = browser_like.post(path, data={**accept, "decision": "contest"})
    assert contested.status_code == 200 and "The dispute is now under review." in contested.text
    [listed] = world.api.get("/v1/disputes", headers=car.owner).json()["items"]
    assert listed["response"]["message"] == TYPED


def test_an_answer_the_schema_refuses_keeps_the_typed_message_too(
    world: World, browser_like: TestClient
) -> None:
    _, pump, dispute = _disputed(world)
    csrf = sign_in(browser_like, _key(pump))
    path = f"/console/disputes/{dispute['id']}/response"
    too_long = "x" * 1001  # past the input's maxlength: a script or an old page can send it
    answer = browser_like.post(
        path, data={"decision": "contest", "message": too_long, "csrf_token": csrf}
    )
    assert answer.status_code == 422
    value, error = _answer_field(answer.text, dispute["id"])
    assert value == too_long and error == "String should have at most 1000 characters"
    unknown = browser_like.post(
        path, data={"decision": "shrug", "message": TYPED, "csrf_token": csrf}
    )
    assert unknown.status_code == 422
    value, error = _answer_field(unknown.text, dispute["id"])
    assert value == TYPED and error and error.startswith("decision: Input should be")


def test_an_answer_to_a_dispute_no_longer_open_says_why_at_the_top(
    world: World, browser_like: TestClient
) -> None:
    _, pump, dispute = _disputed(world)
    csrf = sign_in(browser_like, _key(pump))
    path = f"/console/disputes/{dispute['id']}/response"
    contest = {"decision": "contest", "message": "It worked", "csrf_token": csrf}
    contested = browser_like.post(path, data=contest)
    assert contested.status_code == 200
    assert re.search(rf'<input id="answer-{dispute["id"]}"', contested.text)  # may still accept
    assert 'value="contest"' not in contested.text and 'value="accept"' in contested.text
    resolution = {"outcome": "payee", "message": "delivery shown"}
    decided = world.api.post(
        f"/v1/disputes/{dispute['id']}/resolution", json=resolution, headers=ADMIN
    )
    assert decided.status_code == 200, decided.text
    again = browser_like.post(path, data=contest)
    assert again.status_code == 409
    assert re.search(r'<p class="alert" role="alert">[^<]+</p>', again.text), again.text
    assert f'<input id="answer-{dispute["id"]}"' not in again.text


def test_a_payee_who_contested_accepts_from_the_console_and_the_payer_is_refunded(
    world: World, browser_like: TestClient
) -> None:
    car, pump, dispute = _disputed(world)
    csrf = sign_in(browser_like, _key(pump))
    path = f"/console/disputes/{dispute['id']}/response"
    contest = {"decision": "contest", "message": "It worked", "csrf_token": csrf}
    assert browser_like.post(path, data=contest).status_code == 200
    topped = world.api.post(
        f"/v1/devices/{pump.id}/wallet/top-ups",
        json={"amount": 3000, "currency": "EUR", "idempotency_key": "refund-money"},
        headers=pump.owner,
    )
    assert topped.status_code == 201, topped.text
    before = world.balance(car)
    accepted = browser_like.post(path, data={**contest, "decision": "accept"})
    assert accepted.status_code == 200 and "The dispute is now resolved for owner." in accepted.text
    assert world.balance(car) == before + 3000
