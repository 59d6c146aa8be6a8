"""Contract section 8: an owner's funding sources over HTTP (SQLite and PostgreSQL)."""

from __future__ import annotations

import sqlalchemy as sa

from gateway.audit import store as audit_store
from tests.support.funding import fund, source
from tests.support.openssl import make_openssl_csr
from tests.support.world import ADMIN, World


def test_sources_are_created_with_their_defaults_and_listed_in_draw_order(world: World) -> None:
    car = world.device("car")
    late = source(world, car.owner, name="late", priority=200)
    first = source(world, car.owner, name="first")
    source(world, car.owner, name="second")  # same priority: creation order
    line = source(
        world, car.owner, name="line", kind="credit_line", credit_limit=50_000, priority=5
    )
    assert first["priority"] == 100 and first["floor"] == 0
    assert (first["balance"], first["available"]) == (0, 0)
    assert first["id"].startswith("fs_") and "credit_limit" not in first
    assert line["apr_bps"] == 0 and line["credit_limit"] == 50_000
    assert (line["balance"], line["available"]) == (0, 50_000) and "floor" not in line
    page = world.api.get("/v1/owners/me/funding-sources", headers=car.owner).json()
    assert page["next_cursor"] is None  # a list's shape (section 7): all of them, one page
    listed = page["items"]
    assert [s["name"] for s in listed] == ["line", "first", "second", "late"]
    assert listed[1] == first and late in listed
    stranger = world.device("stranger")
    theirs = world.api.get("/v1/owners/me/funding-sources", headers=stranger.owner).json()
    assert theirs == {"items": [], "next_cursor": None}


def test_fields_of_the_other_kind_unknown_fields_and_bad_values_are_422(world: World) -> None:
    car = world.device("car")
    bad: list[dict[str, object]] = [
        {"kind": "balance", "credit_limit": 100},
        {"kind": "balance", "apr_bps": 0},
        {"kind": "credit_line", "credit_limit": 100, "floor": 0},
        {"kind": "credit_line"},
        {"kind": "credit_line", "credit_limit": 0},
        {"kind": "credit_line", "credit_limit": 100, "apr_bps": 10_001},
        {"kind": "balance", "floor": -1},
        {"kind": "balance", "flor": 5},
        {"kind": "savings"},
        {"kind": "balance", "priority": 1.5},
    ]
    for body in bad:
        full: dict[str, object] = {"name": "x", "currency": "EUR", **body}
        response = world.api.post("/v1/owners/me/funding-sources", headers=car.owner, json=full)
        assert response.status_code == 422, (body, response.text)
    for code in ("XXX", "XAU", "ABC"):
        body = {"name": "x", "kind": "balance", "currency": code}
        response = world.api.post("/v1/owners/me/funding-sources", headers=car.owner, json=body)
        assert response.status_code == 422, code
        assert response.json()["error"]["code"] == "currency_not_allowed"
    listed = world.api.get("/v1/owners/me/funding-sources", headers=car.owner).json()
    assert listed == {"items": [], "next_cursor": None}


def test_top_ups_are_idempotent_per_source_and_respect_the_floor(world: World) -> None:
    car = world.device("car")
    account = source(world, car.owner, floor=1_000)
    other = source(world, car.owner, name="other")
    low = fund(world, car.owner, account["id"], 600, "k1")
    assert low.status_code == 201, low.text
    assert (low.json()["balance"], low.json()["available"]) == (600, 0)  # under the floor
    exact = fund(world, car.owner, account["id"], 400, "k2").json()
    assert (exact["balance"], exact["available"]) == (1_000, 0)  # the floor reached exactly
    above = fund(world, car.owner, account["id"], 1, "k3").json()
    assert (above["balance"], above["available"]) == (1_001, 1)
    again = fund(world, car.owner, account["id"], 600, "k1")
    assert again.status_code == 201 and again.json() == low.json()  # the first answer again
    conflict = fund(world, car.owner, account["id"], 601, "k1")
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "idempotency_conflict"
    assert fund(world, car.owner, other["id"], 5, "k1").json()["balance"] == 5  # scoped
    listed = world.api.get("/v1/owners/me/funding-sources", headers=car.owner).json()["items"]
    assert listed[0]["balance"] == 1_001
    with world.ctx.db.read() as conn:  # money moved 4 times: 4 entries, not one a request
        entries = conn.execute(
            sa.select(sa.func.count())
            .select_from(audit_store.audit_log)
            .where(audit_store.audit_log.c.action == "funding.top_up")
        ).scalar_one()
    assert entries == 4


def test_credit_lines_take_no_top_ups_and_strangers_find_no_source(world: World) -> None:
    car = world.device("car")
    line = source(world, car.owner, kind="credit_line", credit_limit=100, apr_bps=1_999)
    refused = fund(world, car.owner, line["id"], 10, "k")
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "not_a_balance_source"
    account = source(world, car.owner)
    stranger = world.device("stranger")
    assert fund(world, stranger.owner, account["id"], 10, "k").status_code == 404
    wrong = world.api.post(
        f"/v1/funding-sources/{account['id']}/top-ups",
        headers=car.owner,
        json={"amount": 10, "currency": "USD", "idempotency_key": "k"},
    )
    assert wrong.status_code == 422 and wrong.json()["error"]["code"] == "currency_not_allowed"


def test_text_that_is_no_active_currency_code_is_422_currency_not_allowed_and_moves_nothing(
    world: World,
) -> None:
    """Section 8: a currency that is not an active ISO 4217 code is `currency_not_allowed`,
    lowercase or malformed text included (it was `invalid_request` unless it had the shape
    of a code); so is a top-up whose currency is not the source's or the wallet's."""
    car = world.device("car", top_up=100)
    account = source(world, car.owner)
    assert fund(world, car.owner, account["id"], 50, "k").status_code == 201
    owner_id = world.api.get("/v1/owners/me", headers=car.owner).json()["id"]
    for code in ("eur", "Eur", "EURO", "", "€", "E R"):
        created = world.api.post(
            "/v1/owners/me/funding-sources",
            headers=car.owner,
            json={"name": "x", "kind": "balance", "currency": code},
        )
        merchant = world.api.post(
            "/v1/merchants", headers=ADMIN, json={"name": "m", "category": "fuel", "currency": code}
        )
        _, csr = make_openssl_csr(world.tmp, f"csr-{len(code)}-{code.encode().hex()}")
        device = world.api.post(
            "/v1/devices",
            headers=car.integrator,
            json={"owner_id": owner_id, "kind": "car", "manufacturer": "ACME", "model": "M",
                  "serial_number": f"SN-{code.encode().hex()}", "csr": csr, "currency": code},
        )  # fmt: skip
        top_ups = [
            world.api.post(
                url, headers=car.owner, json={"amount": 5, "currency": code, "idempotency_key": key}
            )
            for url in (f"/v1/funding-sources/{account['id']}/top-ups",
                        f"/v1/devices/{car.id}/wallet/top-ups")
            for key in ("k", "new")  # a reused key as well: 422 before 409
        ]  # fmt: skip
        for answer in (created, merchant, device, *top_ups):
            assert answer.status_code == 422, (code, answer.text)
            assert answer.json()["error"]["code"] == "currency_not_allowed", (code, answer.text)
    not_text = world.api.post(
        "/v1/owners/me/funding-sources",
        headers=car.owner,
        json={"name": "x", "kind": "balance", "currency": 978},
    )
    assert (not_text.status_code, not_text.json()["error"]["code"]) == (422, "invalid_request")
    listed = world.api.get("/v1/owners/me/funding-sources", headers=car.owner).json()["items"]
    assert [(s["id"], s["balance"]) for s in listed] == [(account["id"], 50)]
    assert world.balance(car) == 100
