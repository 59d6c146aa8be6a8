"""Every console page, rendered for an owner with several devices, waiting approvals (one with
an instalment offer), mandates, payments, funding sources, a plan and disputes on both sides,
holds each `id` once and labels only inputs that exist: a `<label for=>` that named a second
input of that id would point a person (and a screen reader) at the wrong field."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from html.parser import HTMLParser

import pytest
from fastapi.testclient import TestClient

from tests.funding.offer_setup import pay, put_policy
from tests.funding.plans_support import Owner, owner_with_line
from tests.support.console import sign_in
from tests.support.funding import sibling
from tests.support.world import World


class Ids(HTMLParser):
    """The `id`s of a page, the `for`s of its labels, and the `aria-describedby`s it names."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.label_for: list[str] = []
        self.described_by: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if found.get("id"):
            self.ids.append(str(found["id"]))
        if tag == "label" and found.get("for"):
            self.label_for.append(str(found["for"]))
        self.described_by += (found.get("aria-describedby") or "").split()


def _faults(page: str) -> list[str]:
    parsed = Ids()
    parsed.feed(page)
    repeated = [f"id {i!r} {n} times" for i, n in Counter(parsed.ids).items() if n > 1]
    known = set(parsed.ids)
    dangling = [f"label for {i!r} names nothing" for i in parsed.label_for if i not in known]
    dangling += [
        f"aria-describedby {i!r} names nothing" for i in parsed.described_by if i not in known
    ]
    return repeated + dangling


@dataclass
class Household:
    owner: Owner
    meter_id: str
    fridge_id: str
    own_payment_id: str


def _key(owner: Owner) -> str:
    return owner.car.owner["Authorization"].removeprefix("Bearer ")


def _household(world: World) -> Household:
    """A car with a credit line, a plan, two mandates and an instalment policy; a meter (a payee
    device of the same owner, paid by the car, disputed); a fridge without rules whose payment
    waits for approval; a suspended fridge; disputes from the car and about the meter."""
    owner = owner_with_line(world, wallet=50_000)
    car, shop = owner.car, owner.shop
    owner.open(30_000)
    put_policy(world, car, owner.line["id"], min_amount=100, max_amount=40_000)
    for body in ({"payee": shop["id"], "max_amount": 2000}, {"max_amount": 500}):
        made = world.api.post(f"/v1/devices/{car.id}/mandates", json=body, headers=car.owner)
        assert made.status_code == 201, made.text
    meter = sibling(world, car, "meter", rules={"currency": "EUR"})
    fridge = sibling(world, car, "fridge", rules={})
    spare = sibling(world, car, "spare", rules={"currency": "EUR"})
    assert spare.act("suspend").status_code == 200
    money = {"amount": 20_000, "currency": "EUR", "idempotency_key": "seed"}
    topped = world.api.post(
        f"/v1/devices/{fridge.id}/wallet/top-ups", json=money, headers=car.owner
    )
    assert topped.status_code == 201, topped.text
    assert pay(car, meter.id, 3000)["status"] == "approved"
    assert pay(car, shop["id"], 1500)["status"] == "approved"
    assert pay(fridge, shop["id"], 700)["status"] == "pending_approval"
    assert pay(fridge, shop["id"], 900)["status"] == "pending_approval"
    paid = world.api.get(f"/v1/devices/{car.id}/payments", headers=car.owner).json()["items"]
    for payment in paid:  # the one to the meter (answerable) and the one to the shop
        body = {"reason": "not_received", "message": "Nothing came"}
        path = f"/v1/payments/{payment['payment_id']}/disputes"
        assert world.api.post(path, json=body, headers=car.owner).status_code == 201
    assert pay(car, shop["id"], 1200)["status"] == "approved"  # not disputed yet
    latest = world.api.get(f"/v1/devices/{car.id}/payments", headers=car.owner).json()["items"]
    return Household(owner, meter.id, fridge.id, latest[0]["payment_id"])


PAGES = [
    "/console",
    "/console/devices",
    "/console/wallets",
    "/console/funding",
    "/console/instalment-plans",
    "/console/payments",
    "/console/disputes",
    "/console/notifications",
    "/console/audit",
    "/console/freeze",
]


def test_no_console_page_repeats_an_id_or_labels_a_missing_input(
    world: World, browser_like: TestClient
) -> None:
    home = _household(world)
    car = home.owner.car
    for signed_out in ("/console", "/console/link"):
        assert _faults(browser_like.get(signed_out).text) == [], signed_out
    csrf = sign_in(browser_like, _key(home.owner))
    pages = [
        *PAGES,
        *(f"/console/devices/{d}" for d in (car.id, home.meter_id, home.fridge_id)),
        f"/console/disputes?payment={home.own_payment_id}",
        f"/console/audit?device={home.meter_id}",
    ]
    faults = {}
    for path in pages:
        shown = browser_like.get(path)
        assert shown.status_code == 200, path
        faults[path] = _faults(shown.text)
    inbox = browser_like.get("/console")
    assert inbox.text.count('class="card approval"') == 2  # both waiting: the forms repeat
    for path, form in _refused_forms(home, csrf):
        answer = browser_like.post(path, data=form)
        assert answer.status_code in (409, 422), (path, answer.text)
        faults[f"POST {path}"] = _faults(answer.text)
    assert {path: found for path, found in faults.items() if found} == {}


def _refused_forms(home: Household, csrf: str) -> list[tuple[str, dict[str, str]]]:
    """Forms that come back with their errors beside the fields, which add ids of their own."""
    car = home.owner.car.id
    everyday = home.owner.everyday["id"]
    bad_amount = {"max_amount": "1,5", "csrf_token": csrf}
    return [
        (f"/console/devices/{car}/rules", {**bad_amount, "approval_ttl_seconds": "0"}),
        (f"/console/devices/{car}/mandates", {**bad_amount, "payee": "mer_nobody"}),
        (f"/console/devices/{car}/top-ups", {"amount": "0", "currency": "EUR", "csrf_token": csrf}),
        (
            f"/console/funding-sources/{everyday}/top-ups",
            {"amount": "x", "currency": "EUR", "idempotency_key": "k", "csrf_token": csrf},
        ),
        ("/console/funding-sources", {"name": "", "kind": "balance", "csrf_token": csrf}),
        ("/console/instalment-policy", {**bad_amount, "counts": "3,,6"}),
        (
            f"/console/payments/{home.own_payment_id}/disputes",
            {"reason": "defective", "amount": "999", "message": "x", "csrf_token": csrf},
        ),
    ]


@pytest.mark.parametrize("page", ["<p id='a'></p><p id='a'></p>", "<label for='b'>x</label>"])
def test_the_check_finds_a_repeated_id_and_a_label_for_nothing(page: str) -> None:
    assert _faults(page) != []
