"""The console's funding, disputes and audit trail pages on the real app and database: what an
owner sees there, what their forms change, and that nothing changes without the CSRF token."""

from __future__ import annotations

import re

from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

from gateway.audit import heads
from gateway.audit import store as audit_store
from gateway.audit.heads import TreeHead
from gateway.http.app import create_app
from tests.support.console import sign_in
from tests.support.funding import sibling, source
from tests.support.world import World

KEY = re.compile(r'name="idempotency_key" value="([^"]+)"')


def _key(dev_owner: dict[str, str]) -> str:
    return dev_owner["Authorization"].removeprefix("Bearer ")


def _sources(world: World, owner: dict[str, str]) -> dict[str, dict[str, object]]:
    items = world.api.get("/v1/owners/me/funding-sources", headers=owner).json()["items"]
    return {s["id"]: s for s in items}


def test_an_owner_sees_their_funding_sources_and_tops_one_up_once(
    world: World, browser_like: TestClient
) -> None:
    car = world.device("car", rules={"currency": "EUR"})
    savings = source(world, car.owner, name="Savings", floor=2000, priority=10)
    line = source(
        world, car.owner, name="Card", kind="credit_line", credit_limit=50_000, apr_bps=1250
    )
    policy = {"source": line["id"], "min_amount": 1000, "max_amount": 40_000, "counts": [3, 6]}
    policy |= {"interval_days": 30, "auto_accept_up_to": 5000}
    assert world.api.put(
        "/v1/owners/me/instalment-policy", json=policy, headers=car.owner
    ).is_success
    csrf = sign_in(browser_like, _key(car.owner))

    shown = browser_like.get("/console/funding")
    assert shown.status_code == 200
    text = shown.text
    assert "Savings" in text and "€20.00" in text  # the floor
    assert "Card" in text and "€500.00" in text and "12.50 %" in text  # limit and APR
    assert "3, 6, every 30 days" in text and "up to €50.00, on 3 instalments" in text
    assert text.index("Savings") < text.index("Card")  # the order they are drawn on
    key = KEY.search(text)
    assert key

    form = {"amount": "75", "currency": "EUR", "idempotency_key": key.group(1)}
    path = f"/console/funding-sources/{savings['id']}/top-ups"
    assert browser_like.post(path, data=form).status_code == 403  # no CSRF token
    assert _sources(world, car.owner)[savings["id"]]["balance"] == 0
    zero = browser_like.post(path, data={**form, "amount": "0", "csrf_token": csrf})
    assert zero.status_code == 422
    error = re.search(rf'id="e-top-up-{savings["id"]}"[^>]*>([^<]*)</p>', zero.text)
    assert error and error.group(1) == "Write at least €0.01."  # the API's bound, as typed
    assert 'value="0" aria-invalid="true"' in zero.text and zero.text.count("aria-invalid") == 1
    assert _sources(world, car.owner)[savings["id"]]["balance"] == 0
    topped = browser_like.post(path, data={**form, "csrf_token": csrf})
    assert topped.status_code == 200, topped.text
    assert "Savings topped up by €75.00: its balance is €75.00." in topped.text
    again = browser_like.post(path, data={**form, "csrf_token": csrf})  # sent twice: once
    assert again.status_code == 200
    listed = _sources(world, car.owner)[savings["id"]]
    assert (listed["balance"], listed["available"]) == (7500, 5500)

    line_path = f"/console/funding-sources/{line['id']}/top-ups"
    refused = browser_like.post(
        line_path, data={**form, "idempotency_key": "k2", "csrf_token": csrf}
    )
    assert refused.status_code == 409 and "credit line takes no top-ups" in refused.text
    bad = browser_like.post(
        path, data={**form, "amount": "0", "idempotency_key": "k3", "csrf_token": csrf}
    )
    assert bad.status_code == 422 and 'value="0" aria-invalid="true"' in bad.text


def test_another_owners_source_is_not_found(world: World, browser_like: TestClient) -> None:
    mine, theirs = world.device("mine"), world.device("theirs")
    their_source = source(world, theirs.owner, name="Theirs")
    csrf = sign_in(browser_like, _key(mine.owner))
    assert "Theirs" not in browser_like.get("/console/funding").text
    form = {"amount": "100", "currency": "EUR", "idempotency_key": "k", "csrf_token": csrf}
    answer = browser_like.post(f"/console/funding-sources/{their_source['id']}/top-ups", data=form)
    assert answer.status_code == 404
    assert _sources(world, theirs.owner)[their_source["id"]]["balance"] == 0


def test_a_payer_disputes_in_the_console_and_the_payee_device_owner_accepts(
    world: World, browser_like: TestClient
) -> None:
    payer_browser, payee_browser = (
        browser_like,
        TestClient(create_app(world.ctx), follow_redirects=False),
    )
    pump = world.device("pump", top_up=0, category="fuel")
    car = world.device("car", rules={"currency": "EUR"})
    assert car.pay(pump.id, 3000) == ("approved", None)
    payment_id = world.api.get(f"/v1/devices/{car.id}/payments", headers=car.owner).json()["items"][
        0
    ]["payment_id"]
    csrf = sign_in(payer_browser, _key(car.owner))
    payments = payer_browser.get("/console/payments").text
    assert f'href="/console/disputes?payment={payment_id}"' in payments
    form_page = payer_browser.get(f"/console/disputes?payment={payment_id}")
    assert form_page.status_code == 200 and "Open the dispute" in form_page.text

    path = f"/console/payments/{payment_id}/disputes"
    body = {"reason": "not_received", "message": "No fuel came out", "amount": "50.00"}
    assert payer_browser.post(path, data=body).status_code == 403  # no CSRF token
    too_much = payer_browser.post(path, data={**body, "csrf_token": csrf})
    assert too_much.status_code == 422
    error = re.search(r'<p class="field-error" id="e-amount">([^<]*)</p>', too_much.text)
    assert error, too_much.text
    assert error.group(1) == (
        "Dispute at most €30.00 (write 30.00 or less): what was paid, less refunds."
    )
    assert 'aria-invalid="true"' in too_much.text and 'value="50.00"' in too_much.text
    assert 'value="No fuel came out"' in too_much.text
    opened = payer_browser.post(path, data={**body, "amount": "", "csrf_token": csrf})
    assert opened.status_code == 200, opened.text
    assert "Your dispute of €30.00 is open" in opened.text and "status-open" in opened.text
    listed = world.api.get("/v1/disputes", headers=car.owner).json()["items"]
    assert [(d["payment_id"], d["status"], d["amount"]) for d in listed] == [
        (payment_id, "open", 3000)
    ]
    assert "disputed" in payer_browser.get("/console/payments").text
    again = payer_browser.get(f"/console/disputes?payment={payment_id}")
    assert again.status_code == 404 and "Open the dispute" not in again.text

    payee_csrf = sign_in(payee_browser, _key(pump.owner))
    seen = payee_browser.get("/console/disputes").text
    assert "No fuel came out" in seen and "Accept and refund" in seen
    dispute_id = listed[0]["id"]
    answer = {"decision": "accept", "message": "Sorry, refunded", "csrf_token": payee_csrf}
    assert (
        payer_browser.post(  # the payer cannot answer their own dispute
            f"/console/disputes/{dispute_id}/response", data={**answer, "csrf_token": csrf}
        ).status_code
        == 404
    )
    accepted = payee_browser.post(f"/console/disputes/{dispute_id}/response", data=answer)
    assert accepted.status_code == 200, accepted.text
    assert "The dispute is now resolved for owner." in accepted.text
    assert world.balance(car) == 10_000  # refunded to the car's wallet
    assert "status-resolved_for_owner" in payer_browser.get("/console/disputes").text


def test_the_audit_trail_pages_through_a_devices_entries_beside_the_signed_head(
    world: World, browser_like: TestClient
) -> None:
    car = world.device("car", rules={"currency": "EUR", "max_amount": 100})
    shop = world.merchant("groceries")
    for _ in range(52):
        assert car.pay(shop["id"], 500) == ("declined", "amount_over_limit")
    sign_in(browser_like, _key(car.owner))
    everything = world.api.get(f"/v1/devices/{car.id}/audit", headers=car.owner).json()["items"]
    assert len(everything) > 50
    trail = browser_like.get(f"/console/audit?device={car.id}")
    assert trail.status_code == 200
    assert "Latest signed tree head" in trail.text and "order.declined" in trail.text
    shown = [int(n) for n in re.findall(r">#(\d+)", trail.text)]
    older = re.search(r'href="(/console/audit\?device=[^"]+&amp;cursor=[^"]+)">Older', trail.text)
    assert older, trail.text
    rest = browser_like.get(older.group(1).replace("&amp;", "&"))
    assert rest.status_code == 200 and "Older entries" not in rest.text
    shown += [int(n) for n in re.findall(r">#(\d+)", rest.text)]
    assert shown == [e["seq"] for e in everything]  # every entry once, newest first
    size = re.search(r"data-tree-size>(\d+) ", trail.text)
    assert size and int(size.group(1)) > everything[0]["seq"]  # signed on first demand
    other = world.device("other")
    assert browser_like.get(f"/console/audit?device={other.id}").status_code == 404


def test_an_owner_adds_sources_and_sets_the_instalment_policy_with_the_apis_messages(
    world: World, browser_like: TestClient
) -> None:
    car = world.device("car")
    csrf = sign_in(browser_like, _key(car.owner))
    add = "/console/funding-sources"
    balance = {"name": "Savings", "kind": "balance", "currency": "EUR", "csrf_token": csrf}
    assert browser_like.post(add, data={**balance, "csrf_token": ""}).status_code == 403
    wrong = browser_like.post(add, data={**balance, "credit_limit": "50"})
    assert wrong.status_code == 422
    assert "`credit_limit` and `apr_bps` apply to credit lines only" in wrong.text
    odd = browser_like.post(add, data={**balance, "currency": "XXX"})
    assert odd.status_code == 422 and 'id="e-currency"' in odd.text
    assert _sources(world, car.owner) == {}
    assert browser_like.post(add, data={**balance, "floor": "10"}).status_code == 200
    line = {**balance, "name": "Card", "kind": "credit_line", "credit_limit": "800.00"}
    added = browser_like.post(add, data={**line, "apr_bps": "1200"})
    assert added.status_code == 200 and "Card added as a credit line." in added.text
    made = {s["name"]: s for s in _sources(world, car.owner).values()}
    assert (made["Savings"]["floor"], made["Card"]["credit_limit"]) == (1000, 80_000)
    assert made["Card"]["apr_bps"] == 1200

    put = "/console/instalment-policy"
    terms = {"source": made["Card"]["id"], "min_amount": "10", "max_amount": "500"}
    terms |= {"counts": "3, 3", "interval_days": "30", "csrf_token": csrf}
    twice = browser_like.post(put, data=terms)
    assert twice.status_code == 422 and "`counts` must be distinct" in twice.text
    not_a_line = browser_like.post(
        put, data={**terms, "counts": "3", "source": made["Savings"]["id"]}
    )
    assert not_a_line.status_code == 422 and "must be one of your credit lines" in not_a_line.text
    saved = browser_like.post(put, data={**terms, "counts": "3, 6", "categories": "fuel"})
    assert saved.status_code == 200 and "Instalment policy saved." in saved.text
    assert "3, 6, every 30 days" in saved.text and 'value="3, 6"' in saved.text
    policy = world.api.get("/v1/owners/me/instalment-policy", headers=car.owner).json()
    assert (policy["counts"], policy["categories"], policy["keep_at_least"]) == (
        [3, 6],
        ["fuel"],
        0,
    )
    removed = browser_like.post(put, data={"action": "remove", "csrf_token": csrf})
    assert removed.status_code == 200 and "Instalment policy removed" in removed.text
    answer = world.api.get("/v1/owners/me/instalment-policy", headers=car.owner)
    assert answer.status_code == 404


def test_a_tree_head_whose_signature_does_not_verify_is_shown_as_such(
    world: World, browser_like: TestClient
) -> None:
    car = world.device("car")
    forger = ec.generate_private_key(ec.SECP256R1())
    forged = TreeHead(tree_size=10**6, root_hash="ab" * 32, ts=1_800_000_000)
    world.ctx.db.run(lambda conn: audit_store.insert_head(conn, forged, heads.sign(forged, forger)))
    sign_in(browser_like, _key(car.owner))
    page = browser_like.get(f"/console/audit?device={car.id}")
    assert page.status_code == 200
    assert "does not verify with the gateway" in page.text and "data-tree-size" not in page.text
    assert "device.registered" in page.text  # the entries are still shown


def test_an_owner_saves_a_payments_evidence_bundle_from_the_console(
    world: World, browser_like: TestClient
) -> None:
    car = world.device("car", rules={"currency": "EUR"})
    shop = world.merchant("groceries")
    assert car.pay(shop["id"], 1050) == ("approved", None)
    payments = world.api.get(f"/v1/devices/{car.id}/payments", headers=car.owner).json()["items"]
    payment_id = payments[0]["payment_id"]
    sign_in(browser_like, _key(car.owner))
    link = f"/console/payments/{payment_id}/evidence"
    assert f'href="{link}" download' in browser_like.get("/console/payments").text
    saved = browser_like.get(link)
    assert saved.status_code == 200 and saved.headers["content-type"] == "application/json"
    disposition = f'attachment; filename="evidence-{payment_id}.json"'
    assert saved.headers["content-disposition"] == disposition
    api = world.api.get(f"/v1/payments/{payment_id}/evidence", headers=car.owner).json()
    mine = saved.json()
    for bundle in (mine, api):  # signed on demand: the same claims, another signature
        bundle["audit"]["tree_head"] = bundle["audit"]["tree_head"].split(".")[1]
        bundle["consent"]["jws"] = bundle["consent"]["jws"].split(".")[1]
    assert mine == api and mine["consent"]["basis"] == "rules"
    other = world.device("other", rules={"currency": "EUR"})
    assert other.pay(shop["id"], 100) == ("approved", None)
    theirs = world.api.get(f"/v1/devices/{other.id}/payments", headers=other.owner).json()
    refused = browser_like.get(f"/console/payments/{theirs['items'][0]['payment_id']}/evidence")
    assert refused.status_code == 404 and "no such payment" in refused.text


def test_an_owner_whose_device_paid_another_of_theirs_answers_the_dispute_too(
    world: World, browser_like: TestClient
) -> None:
    car = world.device("car", rules={"currency": "EUR"})
    charger = sibling(world, car, "charger", rules={"currency": "EUR"})
    assert car.pay(charger.id, 700) == ("approved", None)
    payment_id = world.api.get(f"/v1/devices/{car.id}/payments", headers=car.owner).json()["items"][
        0
    ]["payment_id"]
    csrf = sign_in(browser_like, _key(car.owner))
    body = {"reason": "defective", "message": "It stopped at half", "csrf_token": csrf}
    opened = browser_like.post(f"/console/payments/{payment_id}/disputes", data=body)
    assert opened.status_code == 200, opened.text
    dispute_id = world.api.get("/v1/disputes", headers=car.owner).json()["items"][0]["id"]
    assert f'action="/console/disputes/{dispute_id}/response"' in opened.text
    answer = {"decision": "accept", "message": "Refunded", "csrf_token": csrf}
    accepted = browser_like.post(f"/console/disputes/{dispute_id}/response", data=answer)
    assert accepted.status_code == 200 and "resolved for owner" in accepted.text
    assert world.balance(car) == 10_000


def test_a_low_balance_alert_shows_under_activity_in_words(
    world: World, browser_like: TestClient
) -> None:
    car = world.device("car", rules={"currency": "EUR", "low_balance_alert": 9000})
    shop = world.merchant("groceries")
    assert car.pay(shop["id"], 1050) == ("approved", None)  # 100.00 -> 89.50
    sign_in(browser_like, _key(car.owner))
    shown = browser_like.get("/console/notifications")
    assert shown.status_code == 200 and 'href="/console/notifications"' in shown.text
    rows = {
        m.group(1): m.group(2)
        for m in re.finditer(r'<tr data-event="([a-z_.]+)">(.*?)</tr>', shown.text, re.S)
    }
    low = rows["wallet.low_balance"]
    assert "wallet: low balance" in low and "Car · ACME M" in low
    assert "balance €89.50 · threshold €90.00" in low
    assert "amount €10.50" in rows["payment.approved"]
